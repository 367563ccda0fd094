package secureboot

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/asn1"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math/big"
)

// Block is a valid signature block of a signature sector.
type Block struct {
	// Index is the block's place in the sector: 0, 1 or 2.
	Index  int
	Scheme Scheme
	// Digest is the image digest the block signs.
	Digest [32]byte
	Key    crypto.PublicKey
	// KeyDigest is the SHA-256 of the key as the block holds it, which
	// the eFuse must hold for the ROM to accept the block.
	KeyDigest [32]byte
	// Signature is in its usual form: big-endian RSA-PSS, or ECDSA DER.
	Signature []byte
}

// Blocks reads the signature sector at the end of a signed image: its
// valid blocks, as `espsecure signature_info_v2` lists them. A block
// with a wrong magic, version or CRC is skipped, as the ROM skips it.
func Blocks(signed []byte) ([]Block, error) {
	if len(signed) < SectorSize || len(signed)%SectorSize != 0 {
		return nil, fmt.Errorf("a signed image is a non-zero multiple of %d bytes; this one has %d", SectorSize, len(signed))
	}
	sector := signed[len(signed)-SectorSize:]
	var out []Block
	for i := range MaxBlocks {
		b := sector[i*BlockSize : (i+1)*BlockSize]
		if b[0] != blockMagic || (b[1] != versionRSA && b[1] != versionECDSA) ||
			binary.LittleEndian.Uint32(b[crcOffset:]) != crc32.ChecksumIEEE(b[:crcOffset]) {
			continue
		}
		blk, err := parseBlock(i, b)
		if err != nil {
			return nil, fmt.Errorf("signature block %d: %w", i, err)
		}
		out = append(out, blk)
	}
	return out, nil
}

func parseBlock(i int, b []byte) (Block, error) {
	blk := Block{Index: i}
	copy(blk.Digest[:], b[4:36])
	if b[1] == versionRSA {
		blk.Scheme = RSA3072
		k := &rsa.PublicKey{N: new(big.Int).SetBytes(reversed(b[36 : 36+rsaBytes])), E: int(binary.LittleEndian.Uint32(b[420:]))}
		if _, err := SchemeOf(k); err != nil {
			return blk, err
		}
		if !bytes.Equal(rsaKeyBytes(k), b[36:812]) {
			return blk, errors.New("its R or M' does not belong to its modulus")
		}
		blk.Key = k
		blk.KeyDigest = sha256.Sum256(b[36:812])
		blk.Signature = reversed(b[812 : 812+rsaBytes])
		return blk, nil
	}
	blk.Scheme = ECDSAP256
	if b[36] != curveP256 {
		return blk, fmt.Errorf("curve id %d; appliance verifies P-256 (2) only", b[36])
	}
	raw := append([]byte{4}, reversed(b[37:69])...)
	raw = append(raw, reversed(b[69:101])...)
	k, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), raw)
	if err != nil {
		return blk, fmt.Errorf("its public key: %w", err)
	}
	blk.Key = k
	blk.KeyDigest = sha256.Sum256(b[36:101])
	r := new(big.Int).SetBytes(reversed(b[101:133]))
	s := new(big.Int).SetBytes(reversed(b[133:165]))
	blk.Signature, err = asn1.Marshal(struct{ R, S *big.Int }{r, s})
	return blk, err
}

// Verify checks a signed image against a trusted public key, as
// `espsecure verify_signature --version 2` and the ROM do: the sector's
// digest must be the SHA-256 of everything before it, and one block
// must hold this key and a signature by it. It returns that block.
func Verify(signed []byte, pub crypto.PublicKey) (*Block, error) {
	want, err := KeyDigest(pub)
	if err != nil {
		return nil, err
	}
	blocks, err := Blocks(signed)
	if err != nil {
		return nil, err
	}
	if len(blocks) == 0 {
		return nil, errors.New("the signature sector has no valid block: the image is unsigned or its sector is damaged")
	}
	digest := sha256.Sum256(signed[:len(signed)-SectorSize])
	for _, b := range blocks {
		if b.Digest != digest {
			return nil, fmt.Errorf("signature block %d signs digest %x, the image's is %x: the image was changed after signing", b.Index, b.Digest, digest)
		}
	}
	for _, b := range blocks {
		if b.KeyDigest != want {
			continue
		}
		if err := verifySig(b, digest); err != nil {
			return nil, fmt.Errorf("signature block %d: %w", b.Index, err)
		}
		return &b, nil
	}
	return nil, fmt.Errorf("no signature block holds the key with digest %x; the image is signed by other keys", want)
}

func verifySig(b Block, digest [32]byte) error {
	if b.Scheme == RSA3072 {
		return rsa.VerifyPSS(b.Key.(*rsa.PublicKey), crypto.SHA256, digest[:], b.Signature, &rsa.PSSOptions{SaltLength: 32})
	}
	if !ecdsa.VerifyASN1(b.Key.(*ecdsa.PublicKey), digest[:], b.Signature) {
		return errors.New("the ECDSA signature does not verify")
	}
	return nil
}

func parseDER(sig []byte) (r, s *big.Int, err error) {
	var v struct{ R, S *big.Int }
	rest, err := asn1.Unmarshal(sig, &v)
	if err != nil || len(rest) != 0 || v.R == nil || v.S == nil || v.R.Sign() <= 0 || v.S.Sign() <= 0 {
		return nil, nil, errors.New("the ECDSA signature is not an ASN.1 DER (r, s) pair")
	}
	return v.R, v.S, nil
}
