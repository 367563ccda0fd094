// Package ota makes and verifies the OTA manifests that tell a sensor
// node which firmware to run, and lays out the tree the gateway's Nginx
// serves them from. docs/ota.md is the contract with the C firmware.
//
// A manifest is a small JSON file naming the firmware, its chip,
// version, secure version, the signed image's size, SHA-256 and path,
// an expiry and a manifest version that only goes up. It is signed
// with the site's OTA manifest key (ECDSA P-256): the signature is
// ECDSA over the SHA-256 of the manifest file's exact bytes, in ASN.1
// DER, in a detached file beside it. Nothing is canonicalised: the
// device verifies the bytes it received and parses only those.
//
// Build makes one firmware's tree; the caller keeps the Release it
// returns in the site state and gives it back as Previous on the next
// build, which is how the manifest version only goes up: unchanged
// content reuses the previous manifest and signature byte for byte,
// changed content gets the previous version plus one. Verify applies
// the device's rules, so the Go side and the firmware refuse the same
// manifests.
package ota

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"time"

	"github.com/appliance/appliance/firmware/espimage"
)

// Format is the manifest format this package writes and reads.
const Format = 1

// MaxManifestSize bounds what a device reads before verifying.
const MaxManifestSize = 4096

// The files of a firmware's tree, under the OTA root (the folder Nginx
// serves at the site's OTA path).
const (
	ManifestFile  = "manifest.json"
	SignatureFile = "manifest.json.sig"
)

// Manifest is the content of manifest.json.
type Manifest struct {
	Format          int    `json:"format"`
	Firmware        string `json:"firmware"`
	Chip            string `json:"chip"`
	Version         string `json:"version"`
	SecureVersion   uint32 `json:"secure_version"`
	ManifestVersion uint64 `json:"manifest_version"`
	Size            int64  `json:"size"`
	SHA256          string `json:"sha256"`
	Path            string `json:"path"`
	// Expires is Unix time in seconds.
	Expires int64 `json:"expires"`
}

// MaxManifestVersion keeps manifest versions exact in a C double (cJSON
// reads numbers as doubles) and in a signed 64-bit NVS value.
const MaxManifestVersion = 1<<53 - 1

var (
	nameRE    = regexp.MustCompile(`^[A-Za-z0-9_-]{1,32}$`)
	versionRE = regexp.MustCompile(`^[A-Za-z0-9.+_-]{1,31}$`)
	pathRE    = regexp.MustCompile(`^[A-Za-z0-9_-]{1,32}/[0-9a-f]{64}\.bin$`)
	sha256RE  = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// ImagePath is where a firmware's signed image is served, relative to
// the OTA root: named by its SHA-256, so a manifest never points at an
// image that a later build replaced.
func ImagePath(firmware string, sha256hex string) string {
	return firmware + "/" + sha256hex + ".bin"
}

// Validate checks every field's form.
func (m *Manifest) Validate() error {
	_, chipErr := espimage.ParseChip(m.Chip)
	switch {
	case m.Format != Format:
		return fmt.Errorf("manifest format %d; this reads format %d", m.Format, Format)
	case !nameRE.MatchString(m.Firmware):
		return fmt.Errorf("firmware name %q: 1 to 32 letters, digits, '-' or '_'", m.Firmware)
	case chipErr != nil:
		return chipErr
	case !versionRE.MatchString(m.Version):
		return fmt.Errorf("version %q: 1 to 31 letters, digits and . + _ - (it must fit esp_app_desc_t's 32 bytes)", m.Version)
	case m.ManifestVersion < 1 || m.ManifestVersion > MaxManifestVersion:
		return fmt.Errorf("manifest version %d: 1 to 2^53−1", m.ManifestVersion)
	case m.Size <= 0:
		return fmt.Errorf("image size %d", m.Size)
	case !sha256RE.MatchString(m.SHA256):
		return fmt.Errorf("sha256 %q: 64 lower-case hex digits", m.SHA256)
	case m.Path != ImagePath(m.Firmware, m.SHA256) || !pathRE.MatchString(m.Path):
		return fmt.Errorf("path %q: want %q", m.Path, ImagePath(m.Firmware, m.SHA256))
	case m.Expires <= 0:
		return fmt.Errorf("expiry %d", m.Expires)
	}
	return nil
}

// Marshal is the manifest's bytes: compact JSON, fields in a fixed
// order, and a newline.
func (m *Manifest) Marshal() ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// Parse reads manifest bytes (which must have been verified first),
// strictly and exactly as the C firmware's reader does: one JSON object
// whose known fields each appear once, with their names as written here
// (encoding/json alone would also take "Format" for "format", and the
// last of two keys where other readers take the first), each with its JSON
// type (a string, or an integer without fraction or exponent; never
// null). Unknown fields are ignored.
func Parse(b []byte) (*Manifest, error) {
	if len(b) > MaxManifestSize {
		return nil, fmt.Errorf("a manifest of %d bytes; at most %d", len(b), MaxManifestSize)
	}
	fields, err := objectFields(b)
	if err != nil {
		return nil, fmt.Errorf("reading the manifest: %w", err)
	}
	var m Manifest
	for _, f := range []struct {
		name string
		dst  any
	}{
		{"format", &m.Format}, {"firmware", &m.Firmware}, {"chip", &m.Chip}, {"version", &m.Version},
		{"secure_version", &m.SecureVersion}, {"manifest_version", &m.ManifestVersion}, {"size", &m.Size},
		{"sha256", &m.SHA256}, {"path", &m.Path}, {"expires", &m.Expires},
	} {
		raw, ok := fields[f.name]
		if !ok {
			return nil, fmt.Errorf("reading the manifest: no %q", f.name)
		}
		if string(raw) == "null" {
			return nil, fmt.Errorf("reading the manifest: %q is null", f.name)
		}
		if err := json.Unmarshal(raw, f.dst); err != nil {
			return nil, fmt.Errorf("reading the manifest: %q: %w", f.name, err)
		}
	}
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("the manifest: %w", err)
	}
	return &m, nil
}

// manifestFields are the keys Parse reads; a second one of these is an
// error, a second one of any other key is not looked at.
var manifestFields = map[string]bool{
	"format": true, "firmware": true, "chip": true, "version": true, "secure_version": true,
	"manifest_version": true, "size": true, "sha256": true, "path": true, "expires": true,
}

// objectFields splits one JSON object, and nothing after it, into its
// top-level fields by exact key.
func objectFields(b []byte) (map[string]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	if tok, err := dec.Token(); err != nil {
		return nil, err
	} else if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, errors.New("not a JSON object")
	}
	fields := map[string]json.RawMessage{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key, _ := tok.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, err
		}
		if _, dup := fields[key]; dup && manifestFields[key] {
			return nil, fmt.Errorf("%q appears twice", key)
		}
		if _, dup := fields[key]; !dup {
			fields[key] = raw
		}
	}
	if _, err := dec.Token(); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the JSON object")
	}
	return fields, nil
}

// CheckImage reports whether an image is the one the manifest names.
func (m *Manifest) CheckImage(image []byte) error {
	if int64(len(image)) != m.Size {
		return fmt.Errorf("the image has %d bytes, the manifest says %d", len(image), m.Size)
	}
	if sum := sha256.Sum256(image); hex.EncodeToString(sum[:]) != m.SHA256 {
		return fmt.Errorf("the image's SHA-256 is %x, the manifest says %s", sum, m.SHA256)
	}
	return nil
}

// ExpiresAt is the expiry as a time.
func (m *Manifest) ExpiresAt() time.Time { return time.Unix(m.Expires, 0).UTC() }
