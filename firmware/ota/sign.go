package ota

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/appliance/appliance/firmware/espimage"
	"github.com/appliance/appliance/internal/atomicfile"
)

// Sign signs manifest bytes: ECDSA P-256 over their SHA-256, ASN.1 DER.
// An *ecdsa.PrivateKey signs deterministically (RFC 6979).
func Sign(manifest []byte, key crypto.Signer) ([]byte, error) {
	pub, ok := key.Public().(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return nil, fmt.Errorf("the OTA manifest key is a %T; it must be ECDSA P-256 (the state's ota/manifest-ecdsa-p256.pem)", key.Public())
	}
	var r io.Reader = rand.Reader
	if _, ok := key.(*ecdsa.PrivateKey); ok {
		r = nil
	}
	h := sha256.Sum256(manifest)
	return key.Sign(r, h[:], crypto.SHA256)
}

// VerifySignature checks a detached signature against any of the keys.
func VerifySignature(manifest, sig []byte, keys []*ecdsa.PublicKey) error {
	h := sha256.Sum256(manifest)
	for _, k := range keys {
		if k != nil && k.Curve == elliptic.P256() && ecdsa.VerifyASN1(k, h[:], sig) {
			return nil
		}
	}
	return ErrSignature
}

// Input is what Build makes a firmware's tree from.
type Input struct {
	Firmware      string
	Chip          espimage.Chip
	Version       string
	SecureVersion uint32
	// Image is the signed app image (secureboot.SignApp's output).
	Image []byte
	// Expires is when devices stop accepting the manifest; the build
	// must publish a new one before then.
	Expires time.Time
	// Key is the site's OTA manifest key.
	Key crypto.Signer
	// Previous is the Release the last build returned, from the site
	// state; nil for a firmware's first.
	Previous *Release
	// Now is the build's clock.
	Now time.Time
}

// Release is a published manifest and its signature: what the caller
// keeps in the site state between builds.
type Release struct {
	Manifest  []byte
	Signature []byte
}

// File is one file of the OTA tree, at a slash-separated path relative
// to the OTA root.
type File struct {
	Path string
	Data []byte
}

// Tree is one firmware's part of the OTA tree.
type Tree struct {
	Files    []File
	Manifest *Manifest
	// Release is to be kept in the state and given as Previous next time.
	Release Release
	// Reused reports that the previous manifest was unchanged and is
	// published again as it was.
	Reused bool
}

// Build makes a firmware's manifest, its signature and the tree that
// serves them with the image:
//
//	<firmware>/manifest.json
//	<firmware>/manifest.json.sig
//	<firmware>/<sha256>.bin
func Build(in Input) (*Tree, error) {
	if !in.Expires.After(in.Now) {
		return nil, fmt.Errorf("firmware %q: the manifest would expire on %s, not after the build; give a later expiry", in.Firmware, in.Expires.UTC().Format(time.RFC3339))
	}
	sum := sha256.Sum256(in.Image)
	m := &Manifest{
		Format: Format, Firmware: in.Firmware, Chip: in.Chip.String(), Version: in.Version,
		SecureVersion: in.SecureVersion, ManifestVersion: 1, Size: int64(len(in.Image)),
		SHA256: hex.EncodeToString(sum[:]), Expires: in.Expires.Unix(),
	}
	m.Path = ImagePath(m.Firmware, m.SHA256)
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("firmware %q: %w", in.Firmware, err)
	}
	rel, reused, err := release(m, in)
	if err != nil {
		return nil, fmt.Errorf("firmware %q: %w", in.Firmware, err)
	}
	return &Tree{
		Files: []File{
			{Path: in.Firmware + "/" + ManifestFile, Data: rel.Manifest},
			{Path: in.Firmware + "/" + SignatureFile, Data: rel.Signature},
			{Path: m.Path, Data: in.Image},
		},
		Manifest: m, Release: rel, Reused: reused,
	}, nil
}

// release reuses the previous release when only its version would
// differ and its signature is by the same key, else signs version+1.
func release(m *Manifest, in Input) (Release, bool, error) {
	if in.Previous != nil {
		prev, err := Parse(in.Previous.Manifest)
		if err != nil {
			return Release{}, false, fmt.Errorf("the previous manifest in the state: %w", err)
		}
		if prev.Firmware != m.Firmware {
			return Release{}, false, fmt.Errorf("the previous manifest in the state is for firmware %q", prev.Firmware)
		}
		pub, _ := in.Key.Public().(*ecdsa.PublicKey)
		same := *prev
		same.ManifestVersion = m.ManifestVersion
		if same == *m && VerifySignature(in.Previous.Manifest, in.Previous.Signature, []*ecdsa.PublicKey{pub}) == nil {
			*m = *prev
			return *in.Previous, true, nil
		}
		if prev.ManifestVersion >= MaxManifestVersion {
			return Release{}, false, errors.New("the manifest version is at its maximum")
		}
		m.ManifestVersion = prev.ManifestVersion + 1
	}
	b, err := m.Marshal()
	if err != nil {
		return Release{}, false, err
	}
	sig, err := Sign(b, in.Key)
	if err != nil {
		return Release{}, false, err
	}
	return Release{Manifest: b, Signature: sig}, false, nil
}

// Write writes the files under dir, each replaced atomically.
func Write(dir string, files []File) error {
	for _, f := range files {
		p := filepath.Join(dir, filepath.FromSlash(f.Path))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := atomicfile.WriteFile(p, f.Data, 0o644); err != nil {
			return fmt.Errorf("writing the OTA tree: %w", err)
		}
	}
	return nil
}
