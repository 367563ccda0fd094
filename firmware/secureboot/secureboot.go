// Package secureboot signs and verifies images for ESP32 Secure Boot V2,
// byte-compatible with `espsecure sign_data --version 2` and
// `espsecure verify_signature --version 2` (esptool 4.7):
//
//   - the signed file is the image, padded with 0xFF to a multiple of
//     4 KiB, followed by one 4 KiB signature sector;
//   - the sector holds up to three 1216-byte blocks at offsets 0, 1216
//     and 2432 (one per key, so keys can be rotated and revoked), the
//     rest 0xFF;
//   - a block is magic 0xE7, a version (0x02 RSA-3072-PSS, 0x03 ECDSA),
//     the SHA-256 of everything before the sector, the public key in the
//     ROM's little-endian form, the signature, and a CRC-32 of the
//     block's first 1196 bytes.
//
// RSA signatures are PSS with SHA-256, MGF1-SHA-256 and a 32-byte salt;
// for an *rsa.PrivateKey the salt is derived from the key and the
// digest, so signing the same image with the same key gives the same
// bytes (a rebuild changes nothing). ECDSA P-256 signatures are
// deterministic (RFC 6979) for an *ecdsa.PrivateKey. Other
// crypto.Signers (an HSM) sign with random salts and nonces.
//
// SignApp is the policy the build uses: an ESP-IDF app image, padded by
// elf2image --secure-pad-v2 to 64 KiB so that the signature sector lies
// outside every page the MMU maps, signed with keys of a scheme the chip
// supports, as many as it has key slots for.
package secureboot

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/big"

	"github.com/appliance/appliance/firmware/espimage"
)

// Sizes of the format.
const (
	SectorSize = 4096
	BlockSize  = 1216
	MaxBlocks  = 3
	// AppAlign is the alignment of an app image that the bootloader
	// verifies whole (elf2image --secure-pad-v2).
	AppAlign = 65536

	blockMagic   = 0xE7
	versionRSA   = 0x02
	versionECDSA = 0x03
	curveP256    = 2
	crcOffset    = 1196
	rsaBits      = 3072
	rsaBytes     = rsaBits / 8
)

// Scheme is a signature scheme of Secure Boot V2.
type Scheme int

// The schemes.
const (
	RSA3072 Scheme = iota + 1
	ECDSAP256
)

func (s Scheme) String() string {
	switch s {
	case RSA3072:
		return "RSA-3072"
	case ECDSAP256:
		return "ECDSA P-256"
	}
	return "unknown scheme"
}

// SchemeOf is the scheme of a public key, or an error saying which keys
// Secure Boot V2 takes.
func SchemeOf(pub crypto.PublicKey) (Scheme, error) {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() != rsaBits {
			return 0, fmt.Errorf("an RSA key of %d bits; Secure Boot V2 takes RSA-3072 only", k.N.BitLen())
		}
		if k.N.Bit(0) == 0 || k.E <= 0 || int64(k.E) > 0xFFFFFFFF {
			return 0, errors.New("an RSA key whose modulus is even or whose exponent does not fit 32 bits")
		}
		return RSA3072, nil
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return 0, fmt.Errorf("an ECDSA key on %s; appliance signs with P-256 only", k.Curve.Params().Name)
		}
		return ECDSAP256, nil
	}
	return 0, fmt.Errorf("a %T key; Secure Boot V2 takes RSA-3072 or ECDSA P-256 keys", pub)
}

// ChipSupport is what a chip's ROM verifies: its schemes and how many
// signature blocks (key slots) it reads.
type ChipSupport struct {
	Schemes   []Scheme
	MaxBlocks int
}

// Support is the Secure Boot V2 support of each chip (ESP-IDF's
// secure-boot-v2 guide). The ESP32 has it from ECO3 (revision 3.0) on.
var Support = map[espimage.Chip]ChipSupport{
	espimage.ESP32:   {[]Scheme{RSA3072}, 1},
	espimage.ESP32S2: {[]Scheme{RSA3072}, 3},
	espimage.ESP32S3: {[]Scheme{RSA3072}, 3},
	espimage.ESP32C3: {[]Scheme{RSA3072}, 3},
	espimage.ESP32C2: {[]Scheme{ECDSAP256}, 1},
	espimage.ESP32C6: {[]Scheme{RSA3072, ECDSAP256}, 3},
	espimage.ESP32H2: {[]Scheme{RSA3072, ECDSAP256}, 3},
}

// Sign pads data with 0xFF to a multiple of 4 KiB and appends a
// signature sector with one block per key, as `espsecure sign_data
// --version 2 --keyfile k1 [k2 [k3]]` does.
func Sign(data []byte, keys ...crypto.Signer) ([]byte, error) {
	if len(keys) == 0 || len(keys) > MaxBlocks {
		return nil, fmt.Errorf("%d signing keys; Secure Boot V2 takes 1 to %d", len(keys), MaxBlocks)
	}
	out := make([]byte, 0, len(data)+2*SectorSize)
	out = append(out, data...)
	for len(out)%SectorSize != 0 {
		out = append(out, 0xFF)
	}
	digest := sha256.Sum256(out)
	var sector []byte
	for i, k := range keys {
		blk, err := signBlock(digest, k)
		if err != nil {
			return nil, fmt.Errorf("signing key %d: %w", i+1, err)
		}
		sector = append(sector, blk...)
	}
	return append(out, pad(sector)...), nil
}

// pad fills a sector's unused end with 0xFF.
func pad(sector []byte) []byte {
	return append(sector, bytes.Repeat([]byte{0xFF}, SectorSize-len(sector))...)
}

// SignApp signs an ESP-IDF app image for a chip: it must be an app
// image for that chip, padded to 64 KiB, and the keys must be of one
// scheme the chip verifies and no more than it has slots for. A
// signature sector already after the image is replaced.
func SignApp(app []byte, chip espimage.Chip, keys ...crypto.Signer) ([]byte, error) {
	img, err := espimage.Parse(app)
	if err != nil {
		return nil, err
	}
	if img.Chip != chip {
		return nil, fmt.Errorf("the image is built for %s, not %s; build it for %s or fix the firmware's chip", img.Chip, chip, chip)
	}
	if img.App == nil {
		return nil, errors.New("the image has no app descriptor: not an ESP-IDF application")
	}
	if img.Size%AppAlign != 0 {
		return nil, fmt.Errorf("the image is %#x bytes, not a multiple of 64 KiB: build it with Secure Boot V2 signing enabled (CONFIG_SECURE_SIGNED_APPS_RSA_SCHEME or _ECDSA_V2_SCHEME, which has elf2image pass --secure-pad-v2), so that the bootloader's check covers every mapped page", img.Size)
	}
	switch rest := len(app) - img.Size; {
	case rest == 0:
	case rest == SectorSize && app[img.Size] == blockMagic:
		// Signed before (CONFIG_SECURE_BOOT_BUILD_SIGNED_BINARIES): re-signed here.
	default:
		return nil, fmt.Errorf("%d bytes follow the image, which are no signature sector; give the app binary as the build wrote it", rest)
	}
	if err := CheckKeys(chip, keys); err != nil {
		return nil, err
	}
	return Sign(app[:img.Size], keys...)
}

// CheckKeys reports whether a chip verifies signatures by these keys.
func CheckKeys(chip espimage.Chip, keys []crypto.Signer) error {
	sup, ok := Support[chip]
	if !ok {
		return fmt.Errorf("%s has no Secure Boot V2", chip)
	}
	if len(keys) == 0 || len(keys) > sup.MaxBlocks {
		return fmt.Errorf("%d signing keys for %s, whose bootloader reads %d signature block(s)", len(keys), chip, sup.MaxBlocks)
	}
	var first Scheme
	for i, k := range keys {
		s, err := SchemeOf(k.Public())
		if err != nil {
			return fmt.Errorf("signing key %d: %w", i+1, err)
		}
		if i == 0 {
			first = s
		} else if s != first {
			return fmt.Errorf("signing key %d is %s, key 1 %s: a bootloader verifies one scheme", i+1, s, first)
		}
		found := false
		for _, cs := range sup.Schemes {
			found = found || cs == s
		}
		if !found {
			return fmt.Errorf("signing key %d is %s, which %s's Secure Boot V2 does not verify", i+1, s, chip)
		}
	}
	return nil
}

func signBlock(digest [32]byte, k crypto.Signer) ([]byte, error) {
	scheme, err := SchemeOf(k.Public())
	if err != nil {
		return nil, err
	}
	var sig []byte
	switch scheme {
	case RSA3072:
		var r io.Reader = rand.Reader
		if rk, ok := k.(*rsa.PrivateKey); ok {
			r = saltReader(rk, digest)
		}
		sig, err = k.Sign(r, digest[:], &rsa.PSSOptions{SaltLength: 32, Hash: crypto.SHA256})
	case ECDSAP256:
		var r io.Reader = rand.Reader
		if _, ok := k.(*ecdsa.PrivateKey); ok {
			r = nil // RFC 6979
		}
		sig, err = k.Sign(r, digest[:], crypto.SHA256)
	}
	if err != nil {
		return nil, err
	}
	return MakeBlock(digest, k.Public(), sig)
}

// saltReader yields the PSS salt for a digest: HMAC-SHA-256 keyed by a
// hash of the private exponent. Secret and unique per image, so the
// salt keeps its purpose, and the same image signs to the same bytes.
func saltReader(k *rsa.PrivateKey, digest [32]byte) io.Reader {
	key := sha256.Sum256(k.D.Bytes())
	m := hmac.New(sha256.New, key[:])
	m.Write([]byte("appliance secure boot v2 pss salt"))
	m.Write(digest[:])
	return bytes.NewReader(m.Sum(nil))
}

// MakeBlock makes a signature block from a signature computed elsewhere (an
// HSM, a remote signer), as `espsecure sign_data --pub-key --signature`
// does: an RSA-PSS signature in its usual big-endian form, or an ECDSA
// signature in ASN.1 DER. The signature is verified first.
func MakeBlock(digest [32]byte, pub crypto.PublicKey, sig []byte) ([]byte, error) {
	scheme, err := SchemeOf(pub)
	if err != nil {
		return nil, err
	}
	b := make([]byte, BlockSize)
	b[0] = blockMagic
	copy(b[4:36], digest[:])
	switch scheme {
	case RSA3072:
		k := pub.(*rsa.PublicKey)
		if err := rsa.VerifyPSS(k, crypto.SHA256, digest[:], sig, &rsa.PSSOptions{SaltLength: 32}); err != nil {
			return nil, fmt.Errorf("the RSA-PSS signature does not verify with the key: %w", err)
		}
		b[1] = versionRSA
		copy(b[36:812], rsaKeyBytes(k))
		copy(b[812:812+rsaBytes], reversed(leftPad(sig, rsaBytes)))
	case ECDSAP256:
		k := pub.(*ecdsa.PublicKey)
		r, s, err := parseDER(sig)
		if err != nil {
			return nil, err
		}
		if !ecdsa.Verify(k, digest[:], r, s) {
			return nil, errors.New("the ECDSA signature does not verify with the key")
		}
		b[1] = versionECDSA
		copy(b[36:101], ecKeyBytes(k))
		copy(b[101:133], le(r, 32))
		copy(b[133:165], le(s, 32))
	}
	binary.LittleEndian.PutUint32(b[crcOffset:], crc32.ChecksumIEEE(b[:crcOffset]))
	return b, nil
}

// rsaKeyBytes is the key as the block and the eFuse digest hold it:
// modulus, exponent, R = 2^6144 mod n and M' = -n⁻¹ mod 2^32, which the
// ROM's Montgomery multiplication needs, all little-endian.
func rsaKeyBytes(k *rsa.PublicKey) []byte {
	b := make([]byte, 0, 776)
	b = append(b, le(k.N, rsaBytes)...)
	b = binary.LittleEndian.AppendUint32(b, uint32(k.E))
	rr := new(big.Int).Lsh(big.NewInt(1), 2*rsaBits)
	b = append(b, le(rr.Mod(rr, k.N), rsaBytes)...)
	two32 := new(big.Int).Lsh(big.NewInt(1), 32)
	inv := new(big.Int).ModInverse(new(big.Int).Mod(k.N, two32), two32)
	m := new(big.Int).Sub(two32, inv)
	return binary.LittleEndian.AppendUint32(b, uint32(m.Uint64()))
}

// ecKeyBytes is the curve id and the point X‖Y, little-endian.
func ecKeyBytes(k *ecdsa.PublicKey) []byte {
	x, y := ecPoint(k)
	return append(append([]byte{curveP256}, le(x, 32)...), le(y, 32)...)
}

func ecPoint(k *ecdsa.PublicKey) (x, y *big.Int) {
	raw, err := k.Bytes() // 0x04 ‖ X ‖ Y
	if err != nil || len(raw) != 65 {
		return new(big.Int), new(big.Int)
	}
	return new(big.Int).SetBytes(raw[1:33]), new(big.Int).SetBytes(raw[33:])
}

// KeyDigest is the SHA-256 of the public key as the signature block
// holds it: what is burnt into the eFuse key block (KEY_PURPOSE
// SECURE_BOOT_DIGESTn), and what `espsecure digest_sbv2_public_key`
// prints.
func KeyDigest(pub crypto.PublicKey) ([32]byte, error) {
	scheme, err := SchemeOf(pub)
	if err != nil {
		return [32]byte{}, err
	}
	if scheme == RSA3072 {
		return sha256.Sum256(rsaKeyBytes(pub.(*rsa.PublicKey))), nil
	}
	return sha256.Sum256(ecKeyBytes(pub.(*ecdsa.PublicKey))), nil
}

func le(n *big.Int, size int) []byte {
	return reversed(n.FillBytes(make([]byte, size)))
}

func leftPad(b []byte, size int) []byte {
	if len(b) >= size {
		return b
	}
	return append(make([]byte, size-len(b)), b...)
}

func reversed(b []byte) []byte {
	out := make([]byte, len(b))
	for i, c := range b {
		out[len(b)-1-i] = c
	}
	return out
}
