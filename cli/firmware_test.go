package cli

import (
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/appliance/appliance/firmware/espimage"
	"github.com/appliance/appliance/firmware/sim/simtest"
	"github.com/appliance/appliance/internal/testenv"
	"github.com/appliance/appliance/state"
)

// elf2image makes an app image with Debian trixie's esptool from an ELF
// file, as ESP-IDF does for a Secure Boot V2 app (--secure-pad-v2 unless
// pad is false).
func elf2image(t *testing.T, e *testenv.Esptool, dir string, pad bool) string {
	t.Helper()
	_, elf := simtest.App(espimage.ESP32S3, "1.4.0", 2)
	in, out := filepath.Join(dir, "app.elf"), filepath.Join(dir, "app.bin")
	if !pad {
		out = filepath.Join(dir, "app-unpadded.bin")
	}
	if err := os.WriteFile(in, elf, 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"--chip", "esp32s3", "elf2image", "--flash_mode", "dio", "--flash_size", "4MB", "--elf-sha256-offset", "0xb0", "-o", out}
	if pad {
		args = append(args, "--secure-pad-v2")
	}
	e.MustRun(t, "esptool", append(args, in)...)
	return out
}

// TestFirmwareSignVerify signs an image that esptool elf2image made,
// with the state's key and with a key espsecure generated, and checks
// the result with espsecure verify_signature (and appliance's own
// verify); a flipped bit and a key that did not sign are refused by
// both, exit status 1 with the reason.
func TestFirmwareSignVerify(t *testing.T) {
	e := testenv.RequireEsptool(t)
	s := nodeSite(t, false)
	s.State.Close() // the commands open it themselves
	secret := secrets(t, s)
	dir := t.TempDir()
	app := elf2image(t, e, dir, true)
	statePub := filepath.Join(s.State.Dir, "ota", strings.TrimSuffix(state.SecureBootKey, ".pem")+".pub.pem")

	signed := filepath.Join(dir, "signed.bin")
	code, out, errs := run(t, nil, "firmware", "sign", "--state", s.State.Dir, app, signed)
	if code != 0 {
		t.Fatalf("sign --state: exit %d: %s", code, errs)
	}
	if !strings.Contains(out, `app "sensor" 1.4.0, secure version 2 signed for the esp32s3`) || !strings.Contains(out, "block 0  RSA-3072  key digest ") {
		t.Errorf("sign says:\n%s", out)
	}
	outputs := []string{out, errs}
	if o, code := e.Run(t, "espsecure", "verify_signature", "--version", "2", "--keyfile", statePub, signed); code != 0 {
		t.Fatalf("espsecure refuses appliance's signature: exit %d\n%s", code, o)
	}
	code, out, errs = run(t, nil, "firmware", "verify", "--key", statePub, signed)
	if code != 0 || !strings.Contains(out, "signature verified") {
		t.Errorf("verify: exit %d\n%s%s", code, out, errs)
	}
	outputs = append(outputs, out, errs)

	// A second key, made by espsecure: two signature blocks, each
	// verified by espsecure.
	other := filepath.Join(dir, "other.pem")
	e.MustRun(t, "espsecure", "generate_signing_key", "--version", "2", "--scheme", "rsa3072", other)
	otherPub := filepath.Join(dir, "other.pub.pem")
	e.MustRun(t, "espsecure", "extract_public_key", "--version", "2", "--keyfile", other, otherPub)
	two := filepath.Join(dir, "two.bin")
	code, out, errs = run(t, nil, "firmware", "sign", "--key", filepath.Join(s.State.Dir, "ota", state.SecureBootKey), "--key", other, "--chip", "esp32s3", app, two)
	if code != 0 || !strings.Contains(out, "block 1  RSA-3072") {
		t.Fatalf("sign with two keys: exit %d\n%s%s", code, out, errs)
	}
	outputs = append(outputs, out, errs)
	for _, k := range []string{statePub, otherPub} {
		if o, code := e.Run(t, "espsecure", "verify_signature", "--version", "2", "--keyfile", k, two); code != 0 {
			t.Errorf("espsecure refuses the block of %s: exit %d\n%s", k, code, o)
		}
	}
	if code, out, errs = run(t, nil, "firmware", "verify", "--key", statePub, "--key", otherPub, two); code != 0 {
		t.Errorf("verify with both keys: exit %d\n%s%s", code, out, errs)
	}

	// Refusals, by espsecure and by appliance.
	code, _, errs = run(t, nil, "firmware", "verify", "--key", otherPub, signed)
	if code != 1 || !strings.Contains(errs, "not signed by "+otherPub) {
		t.Errorf("verify with a key that did not sign: exit %d: %s", code, errs)
	}
	b, _ := os.ReadFile(signed)
	b[0x1000] ^= 0x10
	flipped := filepath.Join(dir, "flipped.bin")
	os.WriteFile(flipped, b, 0o644)
	if o, code := e.Run(t, "espsecure", "verify_signature", "--version", "2", "--keyfile", statePub, flipped); code != 2 {
		t.Errorf("espsecure on a flipped bit: exit %d, want 2\n%s", code, o)
	}
	code, _, errs = run(t, nil, "firmware", "verify", "--state", s.State.Dir, flipped)
	if code != 1 || !strings.Contains(errs, flipped+": not signed by") {
		t.Errorf("verify of a flipped bit: exit %d: %s", code, errs)
	}
	outputs = append(outputs, errs)
	noSecrets(t, secret, "firmware sign/verify", outputs...)
}

// TestFirmwareSignRefuses: what SignApp refuses reaches the user as one
// error, and nothing is written.
func TestFirmwareSignRefuses(t *testing.T) {
	e := testenv.RequireEsptool(t)
	s := nodeSite(t, false)
	s.State.Close() // the commands open it themselves
	dir := t.TempDir()
	app := elf2image(t, e, dir, true)
	unpadded := elf2image(t, e, dir, false)
	pub := filepath.Join(s.State.Dir, "ota", strings.TrimSuffix(state.SecureBootKey, ".pem")+".pub.pem")
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"unpadded image", []string{"--state", s.State.Dir, unpadded}, "64 KiB"},
		{"another chip", []string{"--state", s.State.Dir, "--chip", "esp32c3", app}, "esp32c3"},
		{"a public key", []string{"--key", pub, app}, "is a public key"},
		{"not an image", []string{"--state", s.State.Dir, pub}, "is not an ESP-IDF app image"},
		{"no state", []string{"--state", filepath.Join(dir, "nothing"), app}, "no state yet"},
	} {
		out := filepath.Join(dir, "out-"+strings.ReplaceAll(tc.name, " ", "-"))
		code, _, errs := run(t, nil, append(append([]string{"firmware", "sign"}, tc.args...), out)...)
		if code != 1 || !strings.Contains(errs, tc.want) || strings.Count(errs, "\n") != 1 {
			t.Errorf("%s: exit %d: %q; want one line saying %q", tc.name, code, errs, tc.want)
		}
		if _, err := os.Stat(out); err == nil {
			t.Errorf("%s: %s written", tc.name, out)
		}
	}
	code, _, errs := run(t, nil, "firmware", "sign", app, filepath.Join(dir, "x"))
	if code != 1 || !strings.Contains(errs, "--key KEY.pem (repeatable) or --state DIR") {
		t.Errorf("sign without keys: exit %d: %s", code, errs)
	}
}

// TestFirmwareKeys prints the key digests that espsecure
// digest_sbv2_public_key computes and the espefuse command that would
// burn them, marked one-way; appliance runs nothing.
func TestFirmwareKeys(t *testing.T) {
	e := testenv.RequireEsptool(t)
	s := nodeSite(t, false)
	s.State.Close() // the commands open it themselves
	pub := filepath.Join(s.State.Dir, "ota", strings.TrimSuffix(state.SecureBootKey, ".pem")+".pub.pem")
	digestFile := filepath.Join(t.TempDir(), "digest.bin")
	e.MustRun(t, "espsecure", "digest_sbv2_public_key", "--keyfile", pub, "-o", digestFile)
	d, _ := os.ReadFile(digestFile)
	want := hex.EncodeToString(d)

	code, out, errs := run(t, nil, "firmware", "keys", "--state", s.State.Dir)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, w := range []string{
		"0  RSA-3072  " + want + "  " + pub,
		"espefuse.py --chip esp32s3 --port PORT burn_key_digest BLOCK_KEY0 " + pub + " SECURE_BOOT_DIGEST0",
		"ONE-WAY", "appliance never runs this command",
	} {
		if !strings.Contains(out, w) {
			t.Errorf("firmware keys lacks %q:\n%s", w, out)
		}
	}
	noSecrets(t, secrets(t, s), "firmware keys", out, errs)

	// The ESP32 has one key block and its own form of the command.
	code, out, _ = run(t, nil, "firmware", "keys", "--key", pub, "--chip", "esp32")
	if code != 0 || !strings.Contains(out, "espefuse.py --chip esp32 --port PORT burn_key_digest "+pub+"\n") {
		t.Errorf("keys for the esp32: exit %d\n%s", code, out)
	}
	// The ESP32-C2 verifies ECDSA only.
	code, _, errs = run(t, nil, "firmware", "keys", "--key", pub, "--chip", "esp32c2")
	if code != 1 || !strings.Contains(errs, "verifies [ECDSA") {
		t.Errorf("an RSA key for the esp32c2: exit %d: %s", code, errs)
	}
}
