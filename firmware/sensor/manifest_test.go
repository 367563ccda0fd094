package sensor_test

import (
	"bufio"
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/appliance/appliance/firmware/espimage"
	"github.com/appliance/appliance/firmware/ota"
	"github.com/appliance/appliance/pki"
)

var update = flag.Bool("update", false, "rewrite test/vectors with manifests firmware/ota signs")

// The vectors' device and clock.
var (
	vectorNow    = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	vectorDevice = ota.Device{Firmware: "sensor", Chip: "esp32s3", Version: "1.3.0", SecureVersion: 2}
)

const vectorDir = "test/vectors"

// resultName is the C core's name for a Verify outcome.
func resultName(err error) string {
	for _, r := range []struct {
		err  error
		name string
	}{
		{ota.ErrTooLarge, "too_large"}, {ota.ErrSignature, "signature"}, {ota.ErrMalformed, "malformed"},
		{ota.ErrFirmware, "firmware"}, {ota.ErrChip, "chip"}, {ota.ErrNoClock, "no_clock"},
		{ota.ErrExpired, "expired"}, {ota.ErrReplay, "replay"}, {ota.ErrDowngrade, "downgrade"},
		{ota.ErrUnchanged, "unchanged"},
	} {
		if errors.Is(err, r.err) {
			return r.name
		}
	}
	if err != nil {
		return "unexpected: " + err.Error()
	}
	return "accepted"
}

// vcase is one verification: files relative to a folder, the device
// and the clock, and what ota.Verify says.
type vcase struct {
	name, manifest, sig string
	keys                []string
	dev                 ota.Device
	now                 time.Time
	want                string
}

func (c vcase) line(dir string) string {
	var keys []string
	for _, k := range c.keys {
		keys = append(keys, filepath.Join(dir, k))
	}
	return fmt.Sprintf("%s %s %s %s %s %s %s %d %d %d", c.name, filepath.Join(dir, c.manifest), filepath.Join(dir, c.sig),
		strings.Join(keys, ","), c.dev.Firmware, c.dev.Chip, c.dev.Version, c.dev.SecureVersion, c.dev.ManifestVersion, c.now.Unix())
}

func readKeys(t testing.TB, dir string, names []string) []*ecdsa.PublicKey {
	t.Helper()
	var keys []*ecdsa.PublicKey
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		blk, _ := pem.Decode(b)
		if blk == nil {
			t.Fatalf("%s: not PEM", n)
		}
		k, err := x509.ParsePKIXPublicKey(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k.(*ecdsa.PublicKey))
	}
	return keys
}

// goVerify is ota.Verify on a case's files.
func goVerify(t testing.TB, dir string, c vcase) (*ota.Manifest, error) {
	t.Helper()
	m, err := os.ReadFile(filepath.Join(dir, c.manifest))
	if err != nil {
		t.Fatal(err)
	}
	s, err := os.ReadFile(filepath.Join(dir, c.sig))
	if err != nil {
		t.Fatal(err)
	}
	return ota.Verify(m, s, readKeys(t, dir, c.keys), c.dev, c.now)
}

// cVerify runs the core's verifier on every case: name → result and,
// when accepted, the manifest it read.
func cVerify(t testing.TB, tool, dir string, cases []vcase) map[string][2]string {
	t.Helper()
	var list strings.Builder
	for _, c := range cases {
		list.WriteString(c.line(dir) + "\n")
	}
	path := filepath.Join(t.TempDir(), "cases.txt")
	if err := os.WriteFile(path, []byte(list.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	got := map[string][2]string{}
	sc := bufio.NewScanner(strings.NewReader(run(t, "", tool, "verify-batch", path)))
	for sc.Scan() {
		f := strings.SplitN(sc.Text(), " ", 3)
		if len(f) == 2 {
			f = append(f, "")
		}
		got[f[0]] = [2]string{f[1], f[2]}
	}
	return got
}

// manifestJSON is a manifest as the core prints it, for comparison.
func manifestJSON(m *ota.Manifest) string {
	b, _ := json.Marshal(m)
	return string(b)
}

// TestManifestVectors checks the manifests in test/vectors, which
// firmware/ota signed (-update signs them anew with fresh keys, keeping
// only the public halves) and which the core's unit tests read too:
// ota.Verify and the core agree with the outcome recorded beside each,
// and the recorded outcomes are the ones the vectors are named for.
func TestManifestVectors(t *testing.T) {
	_, tool := programs(t)
	if *update {
		writeVectors(t)
	}
	cases := readCases(t)
	wantNamed := map[string]string{
		"accepted": "accepted", "rotated-key": "accepted", "tampered": "signature", "wrong-key": "signature",
		"expired": "expired", "no-clock": "no_clock", "replayed": "replay", "downgraded": "downgrade",
		"wrong-chip": "chip", "other-firmware": "firmware", "unchanged": "unchanged", "malformed": "malformed",
		"too-large": "too_large", "no-signature": "signature",
	}
	for name, want := range wantNamed {
		found := false
		for _, c := range cases {
			if c.name == name {
				found = true
				if c.want != want {
					t.Errorf("%s: recorded %s, want %s", name, c.want, want)
				}
			}
		}
		if !found {
			t.Errorf("no vector %s in %s/cases.txt", name, vectorDir)
		}
	}
	got := cVerify(t, tool, vectorDir, cases)
	for _, c := range cases {
		m, err := goVerify(t, vectorDir, c)
		if g := resultName(err); g != c.want {
			t.Errorf("%s: ota.Verify says %s, the vector %s", c.name, g, c.want)
		}
		if got[c.name][0] != c.want {
			t.Errorf("%s: the core says %s, the vector %s", c.name, got[c.name][0], c.want)
		}
		if err == nil && got[c.name][1] != manifestJSON(m) {
			t.Errorf("%s: the core read\n%s\nota.Parse read\n%s", c.name, got[c.name][1], manifestJSON(m))
		}
	}
}

func readCases(t *testing.T) []vcase {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(vectorDir, "cases.txt"))
	if err != nil {
		t.Fatalf("%v (go test -run TestManifestVectors -update writes it)", err)
	}
	var cases []vcase
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 11 {
			t.Fatalf("cases.txt: %q", line)
		}
		sv, _ := strconv.ParseUint(f[7], 10, 32)
		mv, _ := strconv.ParseUint(f[8], 10, 64)
		now, _ := strconv.ParseInt(f[9], 10, 64)
		cases = append(cases, vcase{name: f[0], manifest: f[1], sig: f[2], keys: strings.Split(f[3], ","),
			dev: ota.Device{Firmware: f[4], Chip: f[5], Version: f[6], SecureVersion: uint32(sv), ManifestVersion: mv},
			now: time.Unix(now, 0), want: f[10]})
	}
	return cases
}

func newKey(t testing.TB) (crypto.Signer, []byte) {
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

// baseManifest is the vectors' manifest, as ota.Build makes it.
func baseManifest(t testing.TB, key crypto.Signer) *ota.Manifest {
	t.Helper()
	tree, err := ota.Build(ota.Input{
		Firmware: "sensor", Chip: espimage.ESP32S3, Version: "1.4.0", SecureVersion: 2,
		Image: bytes.Repeat([]byte("signed image "), 5000), Expires: vectorNow.AddDate(1, 0, 0), Key: key, Now: vectorNow,
	})
	if err != nil {
		t.Fatal(err)
	}
	return tree.Manifest
}

func signed(t testing.TB, key crypto.Signer, b []byte) []byte {
	t.Helper()
	s, err := ota.Sign(b, key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func marshal(t testing.TB, m ota.Manifest) []byte {
	t.Helper()
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeVectors(t *testing.T) {
	key, pub := newKey(t)
	other, otherPub := newKey(t)
	base := *baseManifest(t, key)
	files := map[string][]byte{"key-0.pem": pub, "key-1.pem": otherPub}
	add := func(name string, b []byte, k crypto.Signer) {
		files[name+".json"] = b
		files[name+".json.sig"] = signed(t, k, b)
	}
	good := marshal(t, base)
	add("good", good, key)
	files["good.json.sig-1"] = signed(t, other, good)
	files["tampered.json"] = bytes.Replace(good, []byte(`"1.4.0"`), []byte(`"1.4.9"`), 1)
	files["empty.sig"] = nil
	m := base
	m.Chip = "esp32c3"
	add("chip", marshal(t, m), key)
	m = base
	m.Firmware, m.Path = "relay", ota.ImagePath("relay", base.SHA256)
	add("firmware", marshal(t, m), key)
	m = base
	m.SecureVersion = 1
	add("downgrade", marshal(t, m), key)
	add("malformed", []byte(`{"format":1,"firmware":"sensor"}`), key)
	add("big", append(append([]byte(nil), good...), bytes.Repeat([]byte(" "), ota.MaxManifestSize)...), key)

	dev := vectorDevice
	with := func(f func(d *ota.Device)) ota.Device { d := dev; f(&d); return d }
	k0, both := []string{"key-0.pem"}, []string{"key-0.pem", "key-1.pem"}
	cases := []vcase{
		{"accepted", "good.json", "good.json.sig", k0, dev, vectorNow, ""},
		{"rotated-key", "good.json", "good.json.sig-1", both, dev, vectorNow, ""},
		{"wrong-key", "good.json", "good.json.sig-1", k0, dev, vectorNow, ""},
		{"tampered", "tampered.json", "good.json.sig", k0, dev, vectorNow, ""},
		{"no-signature", "good.json", "empty.sig", k0, dev, vectorNow, ""},
		{"expired", "good.json", "good.json.sig", k0, dev, time.Unix(base.Expires, 0), ""},
		{"no-clock", "good.json", "good.json.sig", k0, dev, time.Unix(30, 0), ""},
		{"replayed", "good.json", "good.json.sig", k0, with(func(d *ota.Device) { d.ManifestVersion = 1 }), vectorNow, ""},
		{"downgraded", "downgrade.json", "downgrade.json.sig", k0, dev, vectorNow, ""},
		{"wrong-chip", "chip.json", "chip.json.sig", k0, dev, vectorNow, ""},
		{"other-firmware", "firmware.json", "firmware.json.sig", k0, dev, vectorNow, ""},
		{"unchanged", "good.json", "good.json.sig", k0, with(func(d *ota.Device) { d.Version = "1.4.0" }), vectorNow, ""},
		{"malformed", "malformed.json", "malformed.json.sig", k0, dev, vectorNow, ""},
		{"too-large", "big.json", "big.json.sig", k0, dev, vectorNow, ""},
	}
	if err := os.RemoveAll(vectorDir); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(vectorDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(vectorDir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var list strings.Builder
	list.WriteString("# NAME MANIFEST SIGNATURE KEYS FIRMWARE CHIP VERSION SECURE_VERSION MANIFEST_VERSION NOW RESULT\n")
	list.WriteString("# Written by `go test ./firmware/sensor -run TestManifestVectors -update` with firmware/ota; RESULT is ota.Verify's.\n")
	for _, c := range cases {
		_, err := goVerify(t, vectorDir, c)
		fmt.Fprintf(&list, "%s %s\n", c.line(""), resultName(err))
	}
	if err := os.WriteFile(filepath.Join(vectorDir, "cases.txt"), []byte(list.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestManifestAgreesWithGo signs, with firmware/ota, manifests that
// differ from the build's in every way a JSON reader can disagree on
// (names, types, duplicates, escapes, numbers, nesting, trailing bytes)
// and a few hundred random mutations of a real one, and checks that the
// core and ota.Verify reach the same verdict on each, and read the same
// manifest when they accept it.
func TestManifestAgreesWithGo(t *testing.T) {
	_, tool := programs(t)
	key, pub := newKey(t)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "key.pem"), pub, 0o644)
	good := marshal(t, *baseManifest(t, key))
	g := string(good)
	sub := func(old, new string) []byte { return []byte(strings.Replace(g, old, new, 1)) }
	variants := map[string][]byte{
		"as built":             good,
		"no newline":           bytes.TrimSpace(good),
		"white space":          []byte(" \t\r\n" + strings.ReplaceAll(strings.ReplaceAll(g, ",", " ,\n "), ":", " : ")),
		"unknown fields":       sub(`{`, `{"note":"x","more":{"a":[1,2,{"b":null}],"c":true},"n":-1.5e-3,`),
		"unknown twice":        sub(`{`, `{"x":1,"x":2,`),
		"known twice":          sub(`"format":1,`, `"format":1,"format":1,`),
		"known twice equal":    sub(`"chip":"esp32s3",`, `"chip":"esp32s3","chip":"esp32s3",`),
		"case variant":         sub(`"format"`, `"Format"`),
		"case variant extra":   sub(`{`, `{"Secure_Version":0,`),
		"escaped key":          sub(`"format"`, `"\u0066ormat"`),
		"escaped value":        sub(`"sensor"`, `"\u0073ensor"`),
		"escaped slash":        sub(`"path":"sensor/`, `"path":"sensor\/`),
		"nul in value":         sub(`"chip":"esp32s3"`, `"chip":"esp32s3\u0000"`),
		"non-ascii version":    sub(`"1.4.0"`, `"1.4.0é"`),
		"lone surrogate":       sub(`{`, `{"u":"\ud800",`),
		"surrogate pair":       sub(`{`, `{"u":"\ud83d\ude00",`),
		"invalid utf-8":        sub(`{`, "{\"u\":\"\xff\xfe\","),
		"raw control char":     sub(`{`, "{\"u\":\"a\tb\","),
		"bad escape":           sub(`{`, `{"u":"\x41",`),
		"null field":           sub(`"secure_version":2`, `"secure_version":null`),
		"missing field":        sub(`"secure_version":2,`, ``),
		"string number":        sub(`"secure_version":2`, `"secure_version":"2"`),
		"float integer":        sub(`"secure_version":2`, `"secure_version":2.0`),
		"exponent integer":     sub(`"secure_version":2`, `"secure_version":2e0`),
		"negative zero uint":   sub(`"secure_version":2`, `"secure_version":-0`),
		"negative zero int":    sub(`"format":1`, `"format":-0`),
		"negative secure":      sub(`"secure_version":2`, `"secure_version":-2`),
		"secure 2^32-1":        sub(`"secure_version":2`, `"secure_version":4294967295`),
		"secure 2^32":          sub(`"secure_version":2`, `"secure_version":4294967296`),
		"version 2^53-1":       sub(`"manifest_version":1`, `"manifest_version":9007199254740991`),
		"version 2^53":         sub(`"manifest_version":1`, `"manifest_version":9007199254740992`),
		"version 2^64":         sub(`"manifest_version":1`, `"manifest_version":18446744073709551616`),
		"version 0":            sub(`"manifest_version":1`, `"manifest_version":0`),
		"leading zero":         sub(`"manifest_version":1`, `"manifest_version":01`),
		"plus sign":            sub(`"manifest_version":1`, `"manifest_version":+1`),
		"negative size":        sub(`"size":65000`, `"size":-65000`),
		"size int64 max":       sub(`"size":65000`, `"size":9223372036854775807`),
		"size over int64":      sub(`"size":65000`, `"size":9223372036854775808`),
		"expires min int64":    sub(`"expires":`, `"expires":-9223372036854775808,"x":`),
		"format 2":             sub(`"format":1`, `"format":2`),
		"bool format":          sub(`"format":1`, `"format":true`),
		"object chip":          sub(`"chip":"esp32s3"`, `"chip":{}`),
		"unknown chip":         sub(`"chip":"esp32s3"`, `"chip":"esp8266"`),
		"upper sha":            []byte(strings.Replace(g, `"sha256":"`, `"sha256":"`+strings.ToUpper(g[strings.Index(g, `"sha256":"`)+10:strings.Index(g, `"sha256":"`)+12]), 1)),
		"path elsewhere":       sub(`"path":"sensor/`, `"path":"other/`),
		"trailing comma":       sub(`}`, `,}`),
		"trailing data":        append(append([]byte(nil), good...), 'x'),
		"second object":        append(append([]byte(nil), good...), []byte("{}")...),
		"array":                []byte("[" + g + "]"),
		"bom":                  append([]byte("\xef\xbb\xbf"), good...),
		"deep unknown":         sub(`{`, `{"d":`+strings.Repeat("[", 900)+strings.Repeat("]", 900)+`,`),
		"unclosed":             good[:len(good)-3],
		"empty":                {},
		"empty object":         []byte("{}"),
		"literal prefix":       sub(`{`, `{"t":tru,`),
		"number then garbage":  sub(`"format":1`, `"format":1x`),
		"missing colon":        sub(`"format":1`, `"format" 1`),
		"missing comma":        sub(`"format":1,`, `"format":1 `),
		"version 31 chars":     sub(`"1.4.0"`, `"`+strings.Repeat("1", 31)+`"`),
		"version 32 chars":     sub(`"1.4.0"`, `"`+strings.Repeat("1", 32)+`"`),
		"version with space":   sub(`"1.4.0"`, `"1.4 0"`),
		"firmware 33 chars":    sub(`"firmware":"sensor"`, `"firmware":"`+strings.Repeat("s", 33)+`"`),
		"expires 0":            sub(`"expires":`, `"expires":0,"y":`),
		"huge unknown number":  sub(`{`, `{"n":1e999999,`),
		"fraction unknown":     sub(`{`, `{"n":1.,`),
		"exponent no digits":   sub(`{`, `{"n":1e,`),
		"unicode escape upper": sub(`"sensor"`, `"\u0053ensor"`),
	}
	var cases []vcase
	i := 0
	add := func(name string, b []byte) {
		i++
		file := fmt.Sprintf("m%d.json", i)
		os.WriteFile(filepath.Join(dir, file), b, 0o644)
		os.WriteFile(filepath.Join(dir, file+".sig"), signed(t, key, b), 0o644)
		cases = append(cases, vcase{name: strings.ReplaceAll(name, " ", "_"), manifest: file, sig: file + ".sig", keys: []string{"key.pem"}, dev: vectorDevice, now: vectorNow})
	}
	for name, b := range variants {
		add(name, b)
	}
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 3))
	alphabet := []byte(`{}[]",:\ 0123456789-+.eEtrunlfas` + "\x00\x7f\xff")
	for n := range 400 {
		b := append([]byte(nil), good...)
		for range 1 + rng.IntN(3) {
			switch p := rng.IntN(len(b) + 1); rng.IntN(3) {
			case 0:
				b = append(b[:p], append([]byte{alphabet[rng.IntN(len(alphabet))]}, b[p:]...)...)
			case 1:
				if p < len(b) {
					b = append(b[:p], b[p+1:]...)
				}
			default:
				if p < len(b) {
					b[p] = alphabet[rng.IntN(len(alphabet))]
				}
			}
		}
		add(fmt.Sprintf("mutation-%d", n), b)
	}
	got := cVerify(t, tool, dir, cases)
	accepted := 0
	for _, c := range cases {
		m, err := goVerify(t, dir, c)
		want := resultName(err)
		b, _ := os.ReadFile(filepath.Join(dir, c.manifest))
		if got[c.name][0] != want {
			t.Errorf("seed %d, %s: the core says %s, ota.Verify %s (%v) for\n%q", seed, c.name, got[c.name][0], want, err, b)
			continue
		}
		if err == nil {
			accepted++
			if got[c.name][1] != manifestJSON(m) {
				t.Errorf("%s: the core read\n%s\nota.Parse read\n%s", c.name, got[c.name][1], manifestJSON(m))
			}
		}
	}
	if accepted < 10 {
		t.Errorf("only %d of %d manifests accepted: the comparison says little", accepted, len(cases))
	}
	t.Logf("%d manifests, %d accepted by both", len(cases), accepted)
}
