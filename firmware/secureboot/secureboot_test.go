package secureboot_test

import (
	"bytes"
	"crypto"
	"encoding/hex"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/appliance/appliance/firmware/espimage"
	"github.com/appliance/appliance/firmware/secureboot"
	"github.com/appliance/appliance/internal/fwtest"
	"github.com/appliance/appliance/internal/testenv"
	"github.com/appliance/appliance/pki"
)

// key is a signing key in the forms the site state keeps: the private
// key's PEM and the public key's.
type key struct {
	signer       crypto.Signer
	priv, pubPEM []byte
}

var keys struct {
	sync.Once
	rsa, ec []key
}

// testKeys makes three RSA-3072 and three P-256 keys with the site
// state's own generators (RSA in PKCS#1, as espsecure writes it; P-256
// in PKCS#8).
func testKeys(t testing.TB) (rsaKeys, ecKeys []key) {
	keys.Do(func() {
		for range 3 {
			keys.rsa = append(keys.rsa, mustKey(t, pki.NewSecureBootKey))
			keys.ec = append(keys.ec, mustKey(t, pki.NewECDSAKey))
		}
	})
	return keys.rsa, keys.ec
}

func mustKey(t testing.TB, gen func() ([]byte, []byte, error)) key {
	priv, pub, err := gen()
	if err != nil {
		t.Fatal(err)
	}
	s, err := pki.ParseKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return key{s, priv, pub}
}

func signers(ks []key) []crypto.Signer {
	var out []crypto.Signer
	for _, k := range ks {
		out = append(out, k.signer)
	}
	return out
}

func image(c espimage.Chip) []byte {
	return fwtest.App{Chip: c, Version: "1.4.0", SecureVersion: 1, DataSize: 5000, Seed: 7}.Image()
}

func write(t *testing.T, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestEspsecureVerifies signs images for each chip and scheme with one
// to three keys; espsecure verify_signature must accept each key's
// block and refuse the image after a one-bit flip (exit 2), and so must
// Verify.
func TestEspsecureVerifies(t *testing.T) {
	e := testenv.RequireEsptool(t)
	rsaKeys, ecKeys := testKeys(t)
	dir := t.TempDir()
	for _, tc := range []struct {
		chip espimage.Chip
		keys []key
	}{
		{espimage.ESP32, rsaKeys[:1]},
		{espimage.ESP32S3, rsaKeys[:1]},
		{espimage.ESP32S3, rsaKeys},
		{espimage.ESP32C3, rsaKeys[:2]},
		{espimage.ESP32S2, rsaKeys[1:]},
		{espimage.ESP32C6, rsaKeys},
		{espimage.ESP32C6, ecKeys[:1]},
		{espimage.ESP32C2, ecKeys[1:2]},
	} {
		scheme, _ := secureboot.SchemeOf(tc.keys[0].signer.Public())
		name := tc.chip.String() + "-" + strings.ReplaceAll(scheme.String(), " ", "") + "-" + strconv.Itoa(len(tc.keys))
		t.Run(name, func(t *testing.T) {
			signed, err := secureboot.SignApp(image(tc.chip), tc.chip, signers(tc.keys)...)
			if err != nil {
				t.Fatal(err)
			}
			if len(signed) != len(image(tc.chip))+secureboot.SectorSize {
				t.Errorf("signed image has %d bytes, want the image and one sector", len(signed))
			}
			p := write(t, dir, name+".bin", signed)
			flipped := append([]byte(nil), signed...)
			flipped[100] ^= 0x10
			pf := write(t, dir, name+"-flipped.bin", flipped)
			for i, k := range tc.keys {
				pub := write(t, dir, name+"-"+strconv.Itoa(i)+".pub.pem", k.pubPEM)
				out, code := e.Run(t, "espsecure", "verify_signature", "--version", "2", "--keyfile", pub, p)
				if code != 0 || !strings.Contains(out, "verification successful") {
					t.Errorf("espsecure refuses key %d's block (exit %d):\n%s", i, code, out)
				}
				if _, code := e.Run(t, "espsecure", "verify_signature", "--version", "2", "--keyfile", pub, pf); code != 2 {
					t.Errorf("espsecure verify_signature of a flipped image exits %d, want 2", code)
				}
				blk, err := secureboot.Verify(signed, k.signer.Public())
				if err != nil || blk.Index != i {
					t.Errorf("Verify with key %d = %v, %v", i, blk, err)
				}
				if _, err := secureboot.Verify(flipped, k.signer.Public()); err == nil {
					t.Error("Verify accepts a flipped image")
				}
			}
		})
	}
}

// TestSignDataSameBytes gives espsecure sign_data our signatures
// (--pub-key --signature): the signed file it writes must be ours, byte
// for byte, for RSA and ECDSA blocks. With the private keys instead, its
// RSA output differs only in the (salted) signatures, which Verify
// accepts.
func TestSignDataSameBytes(t *testing.T) {
	e := testenv.RequireEsptool(t)
	rsaKeys, ecKeys := testKeys(t)
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		keys []key
	}{
		{"rsa", rsaKeys[:2]},
		{"ecdsa", ecKeys[:1]},
		{"ecdsa-3", ecKeys},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := image(espimage.ESP32C6)
			signed, err := secureboot.Sign(img, signers(tc.keys)...)
			if err != nil {
				t.Fatal(err)
			}
			blocks, err := secureboot.Blocks(signed)
			if err != nil || len(blocks) != len(tc.keys) {
				t.Fatalf("Blocks = %d blocks, %v", len(blocks), err)
			}
			in := write(t, dir, tc.name+".bin", img)
			// Each option takes its files as one list (nargs="+").
			pubs, sigs := []string{"--pub-key"}, []string{"--signature"}
			for i, b := range blocks {
				pubs = append(pubs, write(t, dir, tc.name+strconv.Itoa(i)+".pub.pem", tc.keys[i].pubPEM))
				sigs = append(sigs, write(t, dir, tc.name+strconv.Itoa(i)+".sig", b.Signature))
			}
			out := filepath.Join(dir, tc.name+".signed")
			args := append(append([]string{"sign_data", "--version", "2"}, pubs...), sigs...)
			e.MustRun(t, "espsecure", append(args, "-o", out, in)...)
			theirs, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(theirs, signed) {
				t.Errorf("espsecure's signed file differs from ours (%d and %d bytes)", len(theirs), len(signed))
			}
		})
	}
	t.Run("rsa-private-keys", func(t *testing.T) {
		img := image(espimage.ESP32S3)
		ours, err := secureboot.Sign(img, signers(rsaKeys)...)
		if err != nil {
			t.Fatal(err)
		}
		args := []string{"sign_data", "--version", "2", "--keyfile"}
		for i, k := range rsaKeys {
			args = append(args, write(t, dir, "k"+strconv.Itoa(i)+".pem", k.priv))
		}
		out := filepath.Join(dir, "theirs.bin")
		e.MustRun(t, "espsecure", append(args, "-o", out, write(t, dir, "img.bin", img))...)
		theirs, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		if len(theirs) != len(ours) || !bytes.Equal(theirs[:len(img)], ours[:len(img)]) {
			t.Fatalf("espsecure's signed file has %d bytes, ours %d, or the images differ", len(theirs), len(ours))
		}
		so, st := ours[len(img):], theirs[len(img):]
		for i := range 3 {
			a, b := so[i*secureboot.BlockSize:], st[i*secureboot.BlockSize:]
			if !bytes.Equal(a[:812], b[:812]) {
				t.Errorf("block %d: header, digest and key material differ", i)
			}
			if !bytes.Equal(a[1200:1216], b[1200:1216]) {
				t.Errorf("block %d: trailing padding differs", i)
			}
		}
		if !bytes.Equal(so[3*secureboot.BlockSize:], st[3*secureboot.BlockSize:]) {
			t.Error("the sectors' unused ends differ")
		}
		for i, k := range rsaKeys {
			if blk, err := secureboot.Verify(theirs, k.signer.Public()); err != nil || blk.Index != i {
				t.Errorf("Verify of espsecure's block %d: %v", i, err)
			}
		}
	})
}

// TestKeyDigest compares the eFuse key digest with espsecure
// digest_sbv2_public_key's.
func TestKeyDigest(t *testing.T) {
	e := testenv.RequireEsptool(t)
	rsaKeys, ecKeys := testKeys(t)
	dir := t.TempDir()
	for i, k := range []key{rsaKeys[0], ecKeys[0]} {
		pub := write(t, dir, strconv.Itoa(i)+".pub.pem", k.pubPEM)
		out := filepath.Join(dir, strconv.Itoa(i)+".digest")
		e.MustRun(t, "espsecure", "digest_sbv2_public_key", "--keyfile", pub, "-o", out)
		want, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		got, err := secureboot.KeyDigest(k.signer.Public())
		if err != nil || !bytes.Equal(got[:], want) {
			t.Errorf("KeyDigest = %x, %v; espsecure says %x", got, err, want)
		}
		signed, err := secureboot.Sign(image(espimage.ESP32C6), k.signer)
		if err != nil {
			t.Fatal(err)
		}
		info := e.MustRun(t, "espsecure", "signature_info_v2", write(t, dir, strconv.Itoa(i)+".signed", signed))
		spaced := strings.TrimSpace(regexp.MustCompile("..").ReplaceAllString(hex.EncodeToString(want), "$0 "))
		if !strings.Contains(info, "Public key digest for block 0: "+spaced) {
			t.Errorf("signature_info_v2 does not list the key digest %x:\n%s", want, info)
		}
	}
}

func TestSignAppRefuses(t *testing.T) {
	rsaKeys, ecKeys := testKeys(t)
	unpadded := fwtest.App{Chip: espimage.ESP32S3, Version: "1", NoPad: true}.Image()
	for _, tc := range []struct {
		name string
		img  []byte
		chip espimage.Chip
		keys []key
		want string
	}{
		{"not an image", []byte("hello"), espimage.ESP32S3, rsaKeys[:1], "header"},
		{"unpadded", unpadded, espimage.ESP32S3, rsaKeys[:1], "--secure-pad-v2"},
		{"other chip", image(espimage.ESP32C3), espimage.ESP32S3, rsaKeys[:1], "built for esp32c3, not esp32s3"},
		{"ECDSA on S3", image(espimage.ESP32S3), espimage.ESP32S3, ecKeys[:1], "ECDSA P-256, which esp32s3's Secure Boot V2 does not verify"},
		{"RSA on C2", image(espimage.ESP32C2), espimage.ESP32C2, rsaKeys[:1], "RSA-3072, which esp32c2"},
		{"two keys on ESP32", image(espimage.ESP32), espimage.ESP32, rsaKeys[:2], "reads 1 signature block"},
		{"four keys", image(espimage.ESP32S3), espimage.ESP32S3, append(rsaKeys, rsaKeys[0]), "4 signing keys"},
		{"mixed schemes", image(espimage.ESP32C6), espimage.ESP32C6, []key{rsaKeys[0], ecKeys[0]}, "one scheme"},
		{"trailing bytes", append(image(espimage.ESP32S3), 1, 2, 3), espimage.ESP32S3, rsaKeys[:1], "3 bytes follow the image"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := secureboot.SignApp(tc.img, tc.chip, signers(tc.keys)...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("SignApp = %v, want an error saying %q", err, tc.want)
			}
		})
	}
}

// TestSignAppReproducible: the same image and keys sign to the same
// bytes, and a signed image given again is re-signed, not signed twice.
func TestSignAppReproducible(t *testing.T) {
	rsaKeys, ecKeys := testKeys(t)
	for _, ks := range [][]key{rsaKeys[:2], ecKeys[:1]} {
		a, err := secureboot.SignApp(image(espimage.ESP32C6), espimage.ESP32C6, signers(ks)...)
		if err != nil {
			t.Fatal(err)
		}
		b, err := secureboot.SignApp(image(espimage.ESP32C6), espimage.ESP32C6, signers(ks)...)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Error("two signings of one image differ")
		}
		c, err := secureboot.SignApp(a, espimage.ESP32C6, signers(ks[:1])...)
		if err != nil {
			t.Fatal(err)
		}
		if len(c) != len(a) || !bytes.Equal(c[:len(c)-secureboot.SectorSize], a[:len(a)-secureboot.SectorSize]) {
			t.Errorf("re-signing: %d bytes from %d", len(c), len(a))
		}
		if blocks, _ := secureboot.Blocks(c); len(blocks) != 1 {
			t.Errorf("re-signed with one key: %d blocks", len(blocks))
		}
	}
}

func TestVerifyRefuses(t *testing.T) {
	rsaKeys, ecKeys := testKeys(t)
	img := image(espimage.ESP32C6)
	signed, err := secureboot.Sign(img, rsaKeys[0].signer, rsaKeys[1].signer)
	if err != nil {
		t.Fatal(err)
	}
	damagedSig := append([]byte(nil), signed...)
	// The first block's signature, with its CRC made right again: the
	// block is well-formed but the signature is wrong.
	sector := len(damagedSig) - secureboot.SectorSize
	damagedSig[sector+900] ^= 1
	fixCRC(damagedSig[sector : sector+secureboot.BlockSize])
	for _, tc := range []struct {
		name   string
		signed []byte
		pub    crypto.PublicKey
		want   string
	}{
		{"other key", signed, rsaKeys[2].signer.Public(), "signed by other keys"},
		{"ECDSA key", signed, ecKeys[0].signer.Public(), "signed by other keys"},
		{"unsigned", append(append([]byte(nil), img...), bytes.Repeat([]byte{0xFF}, 4096)...), rsaKeys[0].signer.Public(), "no valid block"},
		{"not sector-aligned", signed[:len(signed)-1], rsaKeys[0].signer.Public(), "multiple of 4096"},
		{"changed image", flip(signed, 5), rsaKeys[0].signer.Public(), "changed after signing"},
		{"bad signature", damagedSig, rsaKeys[0].signer.Public(), "block 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := secureboot.Verify(tc.signed, tc.pub)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Verify = %v, want an error saying %q", err, tc.want)
			}
		})
	}
	// The second key still verifies its own block in the damaged file.
	if blk, err := secureboot.Verify(damagedSig, rsaKeys[1].signer.Public()); err != nil || blk.Index != 1 {
		t.Errorf("Verify with key 2 = %v, %v", blk, err)
	}
}

func flip(b []byte, i int) []byte {
	out := append([]byte(nil), b...)
	out[i] ^= 1
	return out
}

func fixCRC(blk []byte) {
	// Recomputed with a second implementation: zlib's CRC-32 is
	// reflected 0xEDB88320, initial and final XOR 0xFFFFFFFF.
	crc := ^uint32(0)
	for _, c := range blk[:1196] {
		crc ^= uint32(c)
		for range 8 {
			if crc&1 != 0 {
				crc = crc>>1 ^ 0xEDB88320
			} else {
				crc >>= 1
			}
		}
	}
	crc = ^crc
	blk[1196], blk[1197], blk[1198], blk[1199] = byte(crc), byte(crc>>8), byte(crc>>16), byte(crc>>24)
}
