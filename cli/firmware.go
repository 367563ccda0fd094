package cli

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/appliance/appliance/firmware/espimage"
	"github.com/appliance/appliance/firmware/secureboot"
	"github.com/appliance/appliance/internal/atomicfile"
	"github.com/appliance/appliance/pki"
	"github.com/appliance/appliance/state"
)

func init() {
	register(&verb{
		name:    "firmware",
		summary: "Sign and verify ESP32 app images built elsewhere; show the eFuse key digests",
		usage:   "firmware sign (--key KEY.pem... | --state DIR) [--chip CHIP] IN OUT\nfirmware verify (--key PUB.pem... | --state DIR) IMAGE\nfirmware keys (--key KEY.pem... | --state DIR) [--chip CHIP]",
		examples: `
appliance firmware sign --state examples/.appliance/demo build/sensor.bin sensor-signed.bin
appliance firmware sign --key sb-key.pem --chip esp32s3 build/sensor.bin sensor-signed.bin
appliance firmware verify --key sb-key.pub.pem sensor-signed.bin
appliance firmware keys --state examples/.appliance/demo --chip esp32s3`,
		run: runFirmware,
	})
}

type firmwareOpts struct {
	keys  []string
	state string
	chip  string
}

func runFirmware(ctx context.Context, e *Env, args []string) error {
	v := verbs["firmware"]
	if len(args) == 0 {
		return usagef(v.name, "missing subcommand: sign, verify or keys")
	}
	fs := newFlags(v)
	o := &firmwareOpts{}
	fs.StringArrayVar(&o.keys, "key", nil, "a Secure Boot V2 key file (PEM; repeatable, one signature block each): private for sign, public or private for verify and keys")
	fs.StringVar(&o.state, "state", "", "use the site state's firmware signing key (ota/"+state.SecureBootKey+") instead of --key")
	fs.StringVar(&o.chip, "chip", "", "sign, keys: the chip (esp32, esp32s2, esp32s3, esp32c2, esp32c3, esp32c6, esp32h2); sign defaults to the image's, keys to esp32s3")
	sub := args[0]
	switch sub {
	case "sign", "verify", "keys":
	case "-h", "--help", "help":
		writeUsage(e.Stdout, v, fs)
		return nil
	default:
		return usagef(v.name, "unknown subcommand %q: use sign, verify or keys", sub)
	}
	if err := parse(e, v, fs, args[1:]); err != nil {
		return err
	}
	if (len(o.keys) == 0) == (o.state == "") {
		return usagef(v.name, "%s takes --key KEY.pem (repeatable) or --state DIR, one of the two", sub)
	}
	want := map[string]int{"sign": 2, "verify": 1, "keys": 0}[sub]
	if fs.NArg() != want {
		return usagef(v.name, "%s takes %s", sub, map[string]string{"sign": "IN and OUT", "verify": "IMAGE", "keys": "no arguments"}[sub])
	}
	if sub == "verify" && o.chip != "" {
		return usagef(v.name, "verify takes no --chip: the image says it")
	}
	switch sub {
	case "sign":
		return firmwareSign(e, o, fs.Arg(0), fs.Arg(1))
	case "verify":
		return firmwareVerify(e, o, fs.Arg(0))
	}
	return firmwareKeys(e, o)
}

// sbKey is a Secure Boot V2 key as given: its file, its public half,
// and its private half when the file holds it.
type sbKey struct {
	file   string
	pub    crypto.PublicKey
	signer crypto.Signer
}

// loadKeys reads the keys of --key, or the state's; private says the
// private halves are needed (signing).
func loadKeys(e *Env, o *firmwareOpts, private bool) ([]sbKey, error) {
	if o.state != "" {
		return stateKey(o.state, private)
	}
	var keys []sbKey
	for _, f := range o.keys {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		k, err := parseKeyFile(f, b, private)
		if err != nil {
			return nil, err
		}
		if k.signer != nil {
			if fi, err := os.Stat(f); err == nil && fi.Mode().Perm()&0o077 != 0 {
				fmt.Fprintf(e.Stderr, "appliance firmware: warning: %s holds a private key that others may read; chmod 600 it\n", f)
			}
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// stateKey reads the site state's firmware signing key: the state is
// opened (and locked) only to read it.
func stateKey(dir string, private bool) ([]sbKey, error) {
	st, err := state.Open(dir, state.Options{})
	if err != nil {
		return nil, err
	}
	defer st.Close()
	rel := "ota/" + state.SecureBootKey
	if !private {
		rel = "ota/" + strings.TrimSuffix(state.SecureBootKey, ".pem") + ".pub.pem"
	}
	b, err := st.ReadFile(rel)
	if err != nil {
		return nil, fmt.Errorf("the state's firmware signing key: %w; appliance plan or build makes it for a site with nodes", err)
	}
	k, err := parseKeyFile(filepath.Join(dir, rel), b, private)
	if err != nil {
		return nil, err
	}
	return []sbKey{k}, nil
}

// parseKeyFile reads a PEM key: a private key (PKCS#8, PKCS#1, SEC 1),
// or, when private is false, a public one (SubjectPublicKeyInfo or
// PKCS#1), which is what espsecure writes and reads.
func parseKeyFile(file string, b []byte, private bool) (sbKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return sbKey{}, fmt.Errorf("%s is not a PEM key file", file)
	}
	k := sbKey{file: file}
	switch blk.Type {
	case "PUBLIC KEY", "RSA PUBLIC KEY":
		if private {
			return sbKey{}, fmt.Errorf("%s is a public key; signing needs the private key (espsecure generate_signing_key writes one)", file)
		}
		var err error
		if blk.Type == "PUBLIC KEY" {
			k.pub, err = x509.ParsePKIXPublicKey(blk.Bytes)
		} else {
			k.pub, err = x509.ParsePKCS1PublicKey(blk.Bytes)
		}
		if err != nil {
			return sbKey{}, fmt.Errorf("%s: %w", file, err)
		}
	default:
		s, err := pki.ParseKey(b)
		if err != nil {
			return sbKey{}, fmt.Errorf("%s: %w", file, err)
		}
		k.signer, k.pub = s, s.Public()
	}
	if _, err := secureboot.SchemeOf(k.pub); err != nil {
		return sbKey{}, fmt.Errorf("%s: %w", file, err)
	}
	return k, nil
}

func digestHex(pub crypto.PublicKey) string {
	d, _ := secureboot.KeyDigest(pub)
	return hex.EncodeToString(d[:])
}

func describeApp(img *espimage.Image) string {
	if img.App == nil {
		return "no app descriptor"
	}
	return fmt.Sprintf("app %q %s, secure version %d", img.App.ProjectName, img.App.Version, img.App.SecureVersion)
}

func firmwareSign(e *Env, o *firmwareOpts, in, out string) error {
	keys, err := loadKeys(e, o, true)
	if err != nil {
		return err
	}
	app, err := os.ReadFile(in)
	if err != nil {
		return err
	}
	img, err := espimage.Parse(app)
	if err != nil {
		return fmt.Errorf("%s is not an ESP-IDF app image: %w", in, err)
	}
	chip := img.Chip
	if o.chip != "" {
		if chip, err = espimage.ParseChip(o.chip); err != nil {
			return err
		}
	}
	signers := make([]crypto.Signer, len(keys))
	for i, k := range keys {
		signers[i] = k.signer
	}
	signed, err := secureboot.SignApp(app, chip, signers...)
	if err != nil {
		return fmt.Errorf("%s: %w", in, err)
	}
	if err := atomicfile.WriteFile(out, signed, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(e.Stdout, "%s: %s signed for the %s, %d bytes:\n", out, describeApp(img), chip, len(signed))
	for i, k := range keys {
		fmt.Fprintf(e.Stdout, "  block %d  %s  key digest %s  (%s)\n", i, mustScheme(k.pub), digestHex(k.pub), k.file)
	}
	return nil
}

func mustScheme(pub crypto.PublicKey) secureboot.Scheme {
	s, _ := secureboot.SchemeOf(pub)
	return s
}

// firmwareVerify checks that every given key signed the image, as the
// ROM and `espsecure verify_signature --version 2` check it.
func firmwareVerify(e *Env, o *firmwareOpts, image string) error {
	keys, err := loadKeys(e, o, false)
	if err != nil {
		return err
	}
	b, err := os.ReadFile(image)
	if err != nil {
		return err
	}
	var lines []string
	for _, k := range keys {
		blk, err := secureboot.Verify(b, k.pub)
		if err != nil {
			return fmt.Errorf("%s: not signed by %s (key digest %s): %w", image, k.file, digestHex(k.pub), err)
		}
		lines = append(lines, fmt.Sprintf("  block %d  %s  key digest %s  (%s)", blk.Index, blk.Scheme, hex.EncodeToString(blk.KeyDigest[:]), k.file))
	}
	what := "signature verified"
	if img, err := espimage.Parse(b); err == nil {
		what = fmt.Sprintf("%s for the %s: signature verified", describeApp(img), img.Chip)
	}
	fmt.Fprintf(e.Stdout, "%s: %s\n%s\n", image, what, strings.Join(lines, "\n"))
	return nil
}

// firmwareKeys prints each key's eFuse digest and the espefuse command
// that would burn it, which appliance never runs.
func firmwareKeys(e *Env, o *firmwareOpts) error {
	keys, err := loadKeys(e, o, false)
	if err != nil {
		return err
	}
	name := o.chip
	if name == "" {
		name = "esp32s3"
	}
	chip, err := espimage.ParseChip(name)
	if err != nil {
		return err
	}
	sup, ok := secureboot.Support[chip]
	if !ok {
		return fmt.Errorf("the %s has no Secure Boot V2", chip)
	}
	if len(keys) > sup.MaxBlocks {
		return fmt.Errorf("%d keys, and the %s holds %d key digest(s) in its eFuses", len(keys), chip, sup.MaxBlocks)
	}
	for _, k := range keys {
		s := mustScheme(k.pub)
		found := false
		for _, cs := range sup.Schemes {
			found = found || cs == s
		}
		if !found {
			return fmt.Errorf("%s is a %s key, and the %s verifies %v only", k.file, s, chip, sup.Schemes)
		}
	}
	writeKeys(e.Stdout, chip, keys)
	return nil
}

func writeKeys(w io.Writer, chip espimage.Chip, keys []sbKey) {
	fmt.Fprintf(w, "Secure Boot V2 key digests for the %s (SHA-256 of the public key as its signature block holds it; espsecure digest_sbv2_public_key prints the same):\n", chip)
	for i, k := range keys {
		fmt.Fprintf(w, "  %d  %s  %s  %s\n", i, mustScheme(k.pub), digestHex(k.pub), k.file)
	}
	fmt.Fprintf(w, "\nTo make a chip boot only apps these keys signed, burn the digests into its eFuses:\n\n  %s\n\n", espefuseCommand(chip, keys))
	fmt.Fprintf(w, "ONE-WAY: burnt eFuses cannot be changed or erased. Once ESP-IDF's bootloader with\n"+
		"Secure Boot V2 enables it on the chip, the chip refuses every app these keys did\n"+
		"not sign, for ever; losing the keys leaves it unable to take any new firmware.\n"+
		"appliance never runs this command. Check the digests against the key files,\n"+
		"back the keys up, and run it yourself, once per chip.\n")
}

// espefuseCommand is esptool 4's command for a chip's key digests: the
// ESP32 (ECO3) and ESP32-C2 have one fixed key block; the others take a
// key block and a purpose per key.
func espefuseCommand(chip espimage.Chip, keys []sbKey) string {
	args := []string{"espefuse.py", "--chip", chip.String(), "--port", "PORT", "burn_key_digest"}
	switch chip {
	case espimage.ESP32, espimage.ESP32C2:
		args = append(args, shellQuote(keys[0].file))
	default:
		for i, k := range keys {
			args = append(args, fmt.Sprintf("BLOCK_KEY%d", i), shellQuote(k.file), fmt.Sprintf("SECURE_BOOT_DIGEST%d", i))
		}
	}
	return strings.Join(args, " ")
}

func shellQuote(s string) string {
	if s != "" && !strings.ContainsAny(s, " \t\n'\"$`\\;&|<>()*?[]#~!{}") {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
