package ota_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/appliance/appliance/firmware/espimage"
	"github.com/appliance/appliance/firmware/ota"
	"github.com/appliance/appliance/internal/testenv"
	"github.com/appliance/appliance/pki"
)

var now = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func newKey(t *testing.T) (crypto.Signer, []byte) {
	t.Helper()
	priv, pub, err := pki.NewECDSAKey()
	if err != nil {
		t.Fatal(err)
	}
	k, err := pki.ParseKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return k, pub
}

func input(key crypto.Signer) ota.Input {
	return ota.Input{
		Firmware: "sensor", Chip: espimage.ESP32S3, Version: "1.4.0", SecureVersion: 2,
		Image: bytes.Repeat([]byte("signed image "), 5000), Expires: now.AddDate(1, 0, 0), Key: key, Now: now,
	}
}

func device() ota.Device {
	return ota.Device{Firmware: "sensor", Chip: "esp32s3", Version: "1.3.0", SecureVersion: 2, ManifestVersion: 0}
}

func TestBuild(t *testing.T) {
	key, pubPEM := newKey(t)
	tree, err := ota.Build(input(key))
	if err != nil {
		t.Fatal(err)
	}
	m := tree.Manifest
	if m.ManifestVersion != 1 || m.Version != "1.4.0" || m.Chip != "esp32s3" || m.SecureVersion != 2 || m.Size != int64(len(input(key).Image)) {
		t.Errorf("manifest %+v", m)
	}
	paths := []string{tree.Files[0].Path, tree.Files[1].Path, tree.Files[2].Path}
	if want := []string{"sensor/manifest.json", "sensor/manifest.json.sig", "sensor/" + m.SHA256 + ".bin"}; strings.Join(paths, " ") != strings.Join(want, " ") {
		t.Errorf("tree paths %v, want %v", paths, want)
	}
	if m.Path != paths[2] {
		t.Errorf("manifest path %q, the tree serves the image at %q", m.Path, paths[2])
	}
	if err := m.CheckImage(tree.Files[2].Data); err != nil {
		t.Error(err)
	}
	got, err := ota.Verify(tree.Release.Manifest, tree.Release.Signature, []*ecdsa.PublicKey{key.Public().(*ecdsa.PublicKey)}, device(), now)
	if err != nil || *got != *m {
		t.Errorf("Verify = %+v, %v", got, err)
	}
	// An independent check of the signature scheme: openssl verifies
	// the DER ECDSA signature over SHA-256 of the file's bytes.
	testenv.Require(t, "openssl")
	dir := t.TempDir()
	if err := ota.Write(dir, tree.Files); err != nil {
		t.Fatal(err)
	}
	pub := filepath.Join(dir, "pub.pem")
	os.WriteFile(pub, pubPEM, 0o644)
	mf, sf := filepath.Join(dir, "sensor/manifest.json"), filepath.Join(dir, "sensor/manifest.json.sig")
	if out := testenv.MustRun(t, "openssl", "dgst", "-sha256", "-verify", pub, "-signature", sf, mf); !strings.Contains(out, "Verified OK") {
		t.Errorf("openssl: %s", out)
	}
	os.WriteFile(mf, append(tree.Release.Manifest, ' '), 0o644)
	if out, err := testenv.Run("openssl", "dgst", "-sha256", "-verify", pub, "-signature", sf, mf); err == nil {
		t.Errorf("openssl verifies a changed manifest: %s", out)
	}
}

// TestVersionsOnlyGoUp: given the previous release, an unchanged build
// publishes the same bytes; a changed one the next version.
func TestVersionsOnlyGoUp(t *testing.T) {
	key, _ := newKey(t)
	first, err := ota.Build(input(key))
	if err != nil {
		t.Fatal(err)
	}
	in := input(key)
	in.Previous = &first.Release
	again, err := ota.Build(in)
	if err != nil {
		t.Fatal(err)
	}
	if !again.Reused || !bytes.Equal(again.Release.Manifest, first.Release.Manifest) || !bytes.Equal(again.Release.Signature, first.Release.Signature) {
		t.Error("an unchanged build does not publish the previous release as it was")
	}
	in.Version = "1.4.1"
	next, err := ota.Build(in)
	if err != nil {
		t.Fatal(err)
	}
	if next.Reused || next.Manifest.ManifestVersion != 2 {
		t.Errorf("a new version: manifest version %d, reused %v", next.Manifest.ManifestVersion, next.Reused)
	}
	// A rotated key re-signs even unchanged content, as a new version.
	other, _ := newKey(t)
	in = input(other)
	in.Previous = &first.Release
	rotated, err := ota.Build(in)
	if err != nil {
		t.Fatal(err)
	}
	if rotated.Reused || rotated.Manifest.ManifestVersion != 2 {
		t.Errorf("after a key change: version %d, reused %v", rotated.Manifest.ManifestVersion, rotated.Reused)
	}
	in = input(key)
	in.Previous = &ota.Release{Manifest: []byte("{}"), Signature: nil}
	if _, err := ota.Build(in); err == nil || !strings.Contains(err.Error(), "previous manifest in the state") {
		t.Errorf("a damaged previous release: %v", err)
	}
	in = input(key)
	in.Expires = now
	if _, err := ota.Build(in); err == nil || !strings.Contains(err.Error(), "expire") {
		t.Errorf("an expiry at build time: %v", err)
	}
}

// signed is a manifest changed by f, signed by key.
func signed(t *testing.T, key crypto.Signer, f func(m *ota.Manifest)) ([]byte, []byte) {
	t.Helper()
	tree, err := ota.Build(input(key))
	if err != nil {
		t.Fatal(err)
	}
	m := *tree.Manifest
	f(&m)
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	sig, err := ota.Sign(b, key)
	if err != nil {
		t.Fatal(err)
	}
	return b, sig
}

// TestDeviceRefuses covers every rule a node applies.
func TestDeviceRefuses(t *testing.T) {
	key, _ := newKey(t)
	other, _ := newKey(t)
	trusted := []*ecdsa.PublicKey{key.Public().(*ecdsa.PublicKey)}
	good, goodSig := signed(t, key, func(*ota.Manifest) {})
	tampered := bytes.Replace(good, []byte(`"1.4.0"`), []byte(`"1.4.9"`), 1)
	garbage := []byte(`{"format":1,"firmware":"sensor"}`)
	garbageSig, _ := ota.Sign(garbage, key)
	big := append(append([]byte(nil), good...), bytes.Repeat([]byte(" "), ota.MaxManifestSize)...)
	bigSig, _ := ota.Sign(big, key)
	otherSig, _ := ota.Sign(good, other)
	type c struct {
		name     string
		manifest []byte
		sig      []byte
		dev      func(d *ota.Device)
		now      time.Time
		want     error
	}
	mk := func(name string, f func(m *ota.Manifest), dev func(d *ota.Device), when time.Time, want error) c {
		b, s := signed(t, key, f)
		return c{name, b, s, dev, when, want}
	}
	same := func(*ota.Device) {}
	for _, tc := range []c{
		{"accepted", good, goodSig, same, now, nil},
		{"too large", big, bigSig, same, now, ota.ErrTooLarge},
		{"signed by another key", good, otherSig, same, now, ota.ErrSignature},
		{"changed after signing", tampered, goodSig, same, now, ota.ErrSignature},
		{"no signature", good, nil, same, now, ota.ErrSignature},
		{"malformed", garbage, garbageSig, same, now, ota.ErrMalformed},
		mk("another firmware", func(m *ota.Manifest) { m.Firmware = "relay"; m.Path = ota.ImagePath("relay", m.SHA256) }, same, now, ota.ErrFirmware),
		mk("another chip", func(m *ota.Manifest) { m.Chip = "esp32c3" }, same, now, ota.ErrChip),
		{"clock not set", good, goodSig, same, time.Unix(30, 0), ota.ErrNoClock},
		{"expired", good, goodSig, same, now.AddDate(1, 0, 1), ota.ErrExpired},
		{"older manifest", good, goodSig, func(d *ota.Device) { d.ManifestVersion = 2 }, now, ota.ErrReplay},
		{"same manifest again", good, goodSig, func(d *ota.Device) { d.ManifestVersion = 1 }, now, ota.ErrReplay},
		{"secure version downgrade", good, goodSig, func(d *ota.Device) { d.SecureVersion = 3 }, now, ota.ErrDowngrade},
		{"unchanged version", good, goodSig, func(d *ota.Device) { d.Version = "1.4.0" }, now, ota.ErrUnchanged},
		mk("newer secure version", func(m *ota.Manifest) { m.SecureVersion = 3 }, same, now, nil),
		mk("older version, same secure version", func(m *ota.Manifest) { m.Version = "1.2.0" }, same, now, nil),
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := device()
			tc.dev(&d)
			m, err := ota.Verify(tc.manifest, tc.sig, trusted, d, tc.now)
			if tc.want == nil {
				if err != nil || m == nil {
					t.Errorf("Verify = %v, want acceptance", err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Errorf("Verify = %v, want %v", err, tc.want)
			}
		})
	}
	// A node trusting two keys (a rotation) accepts either.
	if _, err := ota.Verify(good, otherSig, append(trusted, other.Public().(*ecdsa.PublicKey)), device(), now); err != nil {
		t.Errorf("the second trusted key: %v", err)
	}
}

// TestParseStrict: Parse reads what the device's reader reads, and
// nothing encoding/json would read more loosely.
func TestParseStrict(t *testing.T) {
	key, _ := newKey(t)
	tree, err := ota.Build(input(key))
	if err != nil {
		t.Fatal(err)
	}
	good := string(tree.Release.Manifest)
	for _, tc := range []struct {
		name, old, new string
		ok             bool
	}{
		{"as built", "", "", true},
		{"unknown field", `{`, `{"note":[1,{"a":null}],`, true},
		{"unknown field twice", `{`, `{"x":1,"x":2,`, true},
		{"escaped key", `"format"`, `"\u0066ormat"`, true},
		{"known field twice", `"format":1,`, `"format":1,"format":1,`, false},
		{"another case", `"format"`, `"Format"`, false},
		{"another case beside, ignored", `{`, `{"Secure_Version":9,`, true},
		{"null", `"secure_version":2`, `"secure_version":null`, false},
		{"missing", `"secure_version":2,`, ``, false},
		{"fraction", `"secure_version":2`, `"secure_version":2.0`, false},
		{"string", `"secure_version":2`, `"secure_version":"2"`, false},
		{"data after", "\n", "\n{}", false},
		{"not an object", `{"format"`, `[{"format"`, false},
	} {
		b := strings.Replace(good, tc.old, tc.new, 1)
		if tc.old != "" && b == good {
			t.Fatalf("%s: the edit changed nothing", tc.name)
		}
		m, err := ota.Parse([]byte(b))
		if tc.ok != (err == nil) {
			t.Errorf("%s: Parse = %v, %v", tc.name, m, err)
		}
		if tc.ok && *m != *tree.Manifest {
			t.Errorf("%s: read %+v", tc.name, m)
		}
	}
}
