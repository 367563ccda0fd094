package firmware

import (
	"crypto"
	"fmt"
	"runtime"
	"time"

	"github.com/appliance/appliance/firmware/bundle"
	"github.com/appliance/appliance/firmware/espimage"
	"github.com/appliance/appliance/firmware/identity"
	"github.com/appliance/appliance/firmware/ota"
	"github.com/appliance/appliance/firmware/partition"
	"github.com/appliance/appliance/firmware/secureboot"
	"golang.org/x/sync/errgroup"
)

// Firmware is one firmware of the site and what signs it.
type Firmware struct {
	Name          string
	Chip          string // "esp32s3"
	Version       string
	SecureVersion int
	// App is the app image as ESP-IDF built it, nil when there is none.
	App []byte
	// Bootloader is the build output's bootloader.bin, or nil.
	Bootloader []byte
	// FlashSize is the nodes' flash in bytes (4 << 20).
	FlashSize int
	// SigningKeys are the Secure Boot V2 keys (the state's RSA-3072 key,
	// and any being rotated in), one signature block each.
	SigningKeys []crypto.Signer
	// ManifestKey is the state's OTA manifest key (ECDSA P-256).
	ManifestKey crypto.Signer
	// ManifestExpires is when nodes stop accepting the manifest.
	ManifestExpires time.Time
	// Previous is the OTA release the last build kept in the state.
	Previous *ota.Release
}

// Output is what Build makes.
type Output struct {
	// NoApp reports that the firmware has no app image: the bundles
	// hold no app and there is no OTA tree.
	NoApp bool
	// SignedApp is the signed app image.
	SignedApp []byte
	// OTA is the firmware's part of the gateway's OTA tree; its Release
	// goes into the state for the next build.
	OTA *ota.Tree
	// Bundles are the nodes' flash bundles, in the order of the nodes.
	Bundles []*bundle.Bundle
}

// Build signs the firmware, makes its OTA tree and every node's
// identity image and bundle. The nodes' configs must name this
// firmware.
func Build(fw Firmware, nodes []identity.Identity, now time.Time) (*Output, error) {
	chip, err := espimage.ParseChip(fw.Chip)
	if err != nil {
		return nil, fmt.Errorf("firmware %q: %w", fw.Name, err)
	}
	out := &Output{NoApp: fw.App == nil}
	if fw.Bootloader != nil {
		if _, err := espimage.Parse(fw.Bootloader); err != nil {
			return nil, fmt.Errorf("firmware %q: the bootloader: %w", fw.Name, err)
		}
	}
	if fw.App != nil {
		if err := out.signAndPublish(fw, chip, now); err != nil {
			return nil, fmt.Errorf("firmware %q: %w", fw.Name, err)
		}
	}
	if err := out.bundles(fw, chip, nodes); err != nil {
		return nil, err
	}
	return out, nil
}

func (out *Output) signAndPublish(fw Firmware, chip espimage.Chip, now time.Time) error {
	img, err := espimage.Parse(fw.App)
	if err != nil {
		return err
	}
	if err := img.Check(fw.Version, fw.SecureVersion); err != nil {
		return err
	}
	signed, err := secureboot.SignApp(fw.App, chip, fw.SigningKeys...)
	if err != nil {
		return fmt.Errorf("signing: %w", err)
	}
	tree, err := ota.Build(ota.Input{
		Firmware: fw.Name, Chip: chip, Version: fw.Version, SecureVersion: uint32(fw.SecureVersion),
		Image: signed, Expires: fw.ManifestExpires, Key: fw.ManifestKey, Previous: fw.Previous, Now: now,
	})
	if err != nil {
		return err
	}
	out.SignedApp, out.OTA = signed, tree
	return nil
}

// bundles makes the nodes' images and bundles, a few at a time.
func (out *Output) bundles(fw Firmware, chip espimage.Chip, nodes []identity.Identity) error {
	out.Bundles = make([]*bundle.Bundle, len(nodes))
	var g errgroup.Group
	g.SetLimit(runtime.GOMAXPROCS(0))
	for i := range nodes {
		g.Go(func() error {
			n := &nodes[i]
			if n.Config.Firmware != fw.Name {
				return fmt.Errorf("node %q follows firmware %q, not %q", n.Config.Node, n.Config.Firmware, fw.Name)
			}
			img, err := n.Image(partition.LittleFSSize)
			if err != nil {
				return err
			}
			b, err := bundle.Build(bundle.Input{Chip: chip, FlashSize: fw.FlashSize, Bootloader: fw.Bootloader, App: out.SignedApp, Identity: img})
			if err != nil {
				return fmt.Errorf("node %q: %w", n.Config.Node, err)
			}
			out.Bundles[i] = b
			return nil
		})
	}
	return g.Wait()
}
