package desired

import (
	"crypto"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/appliance/appliance/firmware"
	"github.com/appliance/appliance/firmware/bundle"
	"github.com/appliance/appliance/firmware/identity"
	"github.com/appliance/appliance/firmware/ota"
	"github.com/appliance/appliance/modules"
	"github.com/appliance/appliance/pki"
	"github.com/appliance/appliance/spec"
	"github.com/appliance/appliance/state"
)

// Firmware is what the site's nodes run of one spec firmware, signed
// and published.
type Firmware struct {
	Name, Chip, Version string
	// NoApp: the spec names no app image yet, so the bundles hold only
	// the identity and nothing is published for OTA.
	NoApp bool
	// AppSHA256 is the signed app's digest (hex).
	AppSHA256 string
	// Release is the OTA manifest published now: the build or push that
	// puts it on the gateway records it in the state (SaveRelease).
	Release *state.Release
}

// Node is what one sensor node is flashed with.
type Node struct {
	Name     string
	Firmware *Firmware
	Bundle   *bundle.Bundle
	// CertExpires is when the node's certificate ends.
	CertExpires time.Time
}

// nodes signs every firmware of the site, puts its OTA tree among the
// gateway's files (under the folder Nginx serves at the OTA path,
// readable by nginx only), and makes every node's identity and bundle.
func (r *Resolved) nodes(st *state.Store, now time.Time) error {
	s := r.Site
	if len(s.Nodes) == 0 {
		return nil
	}
	keys, err := signingKeys(st)
	if err != nil {
		return err
	}
	ca, err := st.ReadFile("pki/ca.crt")
	if err != nil {
		return err
	}
	manifestPub, err := st.ReadFile("ota/" + state.ManifestKeyPublic)
	if err != nil {
		return err
	}
	for i := range s.Firmware {
		sf := &s.Firmware[i]
		var ids []identity.Identity
		var names []string
		for _, n := range s.Nodes {
			if n.Firmware != sf.Name {
				continue
			}
			id, err := nodeIdentity(s, &n, st, ca, manifestPub)
			if errors.Is(err, fs.ErrNotExist) {
				// Revoked and not renewed: the gateway still gets the CRL
				// that refuses it, the node gets nothing to flash.
				r.Unflashable = append(r.Unflashable, n.Name)
				continue
			}
			if err != nil {
				return fmt.Errorf("node %q: %w", n.Name, err)
			}
			ids, names = append(ids, id), append(names, n.Name)
		}
		if len(ids) == 0 && sf.Image == "" {
			continue
		}
		fw, out, err := r.firmware(sf, keys, ids, st, now)
		if err != nil {
			return err
		}
		r.Firmware = append(r.Firmware, fw)
		for k, b := range out.Bundles {
			crt, _ := st.ReadFile("pki/issued/" + names[k] + ".crt")
			var end time.Time
			if c, err := pki.ParseCert(crt); err == nil {
				end = c.NotAfter
			}
			r.Nodes = append(r.Nodes, Node{Name: names[k], Firmware: fw, Bundle: b, CertExpires: end})
		}
	}
	return nil
}

// firmware signs one firmware and publishes it into the OTA tree.
func (r *Resolved) firmware(sf *spec.Firmware, keys firmwareKeys, ids []identity.Identity, st *state.Store, now time.Time) (*Firmware, *firmware.Output, error) {
	fw := firmware.Firmware{Name: sf.Name, Chip: sf.Chip, Version: sf.Version, SecureVersion: sf.SecureVersion,
		FlashSize: int(sf.FlashSize), SigningKeys: []crypto.Signer{keys.boot}, ManifestKey: keys.manifest}
	if sf.Image != "" {
		var err error
		if fw.App, err = os.ReadFile(sf.Image); err != nil {
			return nil, nil, fmt.Errorf("firmware %q: %w", sf.Name, err)
		}
		// idf.py build leaves the bootloader beside the app.
		bl := filepath.Join(filepath.Dir(sf.Image), "bootloader", "bootloader.bin")
		if b, err := os.ReadFile(bl); err == nil {
			fw.Bootloader = b
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, nil, fmt.Errorf("firmware %q: %w", sf.Name, err)
		}
	}
	prev, err := st.Release(sf.Name)
	if err != nil {
		return nil, nil, err
	}
	if prev != nil {
		fw.Previous = &ota.Release{Manifest: prev.Manifest, Signature: prev.Signature}
	}
	fw.ManifestExpires = manifestExpiry(fw.Previous, now, r.Site.SupportYears)
	out, err := firmware.Build(fw, ids, now)
	if err != nil {
		return nil, nil, err
	}
	f := &Firmware{Name: sf.Name, Chip: sf.Chip, Version: sf.Version, NoApp: out.NoApp}
	if !out.NoApp {
		sum := sha256.Sum256(out.SignedApp)
		f.AppSHA256 = hex.EncodeToString(sum[:])
	}
	if out.OTA != nil {
		f.Release = &state.Release{Manifest: out.OTA.Release.Manifest, Signature: out.OTA.Release.Signature}
		dir := path.Join(modules.OTADir, sf.Name)
		r.Dirs = append(r.Dirs, Dir{Path: dir, Mode: 0o750, Owner: "root", Group: "www-data"})
		for _, of := range out.OTA.Files {
			r.Files = append(r.Files, File{File: modules.File{Path: path.Join(modules.OTADir, of.Path), Mode: 0o640, Owner: "root", Group: "www-data"}, Data: of.Data})
		}
	}
	return f, out, nil
}

// manifestExpiry keeps the expiry of the manifest last published while
// it has more than the renewal margin to run, so that an unchanged
// firmware publishes the very same manifest again; otherwise a new
// manifest lasts the site's support period, as the gateway's
// certificates do, so that a gateway left alone keeps offering nodes
// their update.
func manifestExpiry(prev *ota.Release, now time.Time, supportYears int) time.Time {
	if prev != nil {
		if m, err := ota.Parse(prev.Manifest); err == nil {
			if exp := time.Unix(m.Expires, 0); exp.Sub(now) > state.RenewBefore {
				return exp
			}
		}
	}
	if supportYears == 0 {
		supportYears = pki.DefaultYears
	}
	return now.AddDate(supportYears, 0, 0).Truncate(time.Second)
}

type firmwareKeys struct{ boot, manifest crypto.Signer }

func signingKeys(st *state.Store) (firmwareKeys, error) {
	var k firmwareKeys
	for _, x := range []struct {
		file string
		dst  *crypto.Signer
	}{{state.SecureBootKey, &k.boot}, {state.ManifestKey, &k.manifest}} {
		b, err := st.ReadFile("ota/" + x.file)
		if err != nil {
			return k, err
		}
		if *x.dst, err = pki.ParseKey(b); err != nil {
			return k, fmt.Errorf("state ota/%s: %w", x.file, err)
		}
	}
	return k, nil
}

// nodeIdentity is what goes on a node's identity image: its settings,
// the site CA, its certificate and key, the OTA manifest key.
func nodeIdentity(s *spec.Site, n *spec.Node, st *state.Store, ca, manifestPub []byte) (identity.Identity, error) {
	crt, err := st.ReadFile("pki/issued/" + n.Name + ".crt")
	if err != nil {
		return identity.Identity{}, err
	}
	key, err := st.ReadFile("pki/issued/" + n.Name + ".key")
	if err != nil {
		return identity.Identity{}, err
	}
	host := s.Gateway.Address
	ota := "https://" + host
	if s.HTTPS.Port != 443 {
		ota = "https://" + net.JoinHostPort(host, strconv.Itoa(s.HTTPS.Port))
	}
	ota += strings.TrimSuffix(s.OTA.Path, "/")
	c := identity.Config{
		Format: 1, Node: n.Name, Firmware: n.Firmware,
		WiFi:       identity.WiFi{SSID: n.WiFi.SSID, PSK: n.WiFi.PSK.Reveal(), Country: n.WiFi.Country},
		MQTT:       identity.MQTT{Host: host, Port: s.MQTT.Port, Topic: "sensors/" + n.Name + "/reading"},
		IntervalMS: n.Interval.Milliseconds(),
		Sensor:     identity.Sensor{Type: n.Sensor.Type, Pin: n.Sensor.Pin},
		OTA:        identity.OTA{URL: ota},
		TimeServer: host,
		Tags:       n.Tags,
	}
	return identity.Identity{Config: c, CA: ca, Cert: crt, Key: key, ManifestKeys: [][]byte{manifestPub}}, nil
}
