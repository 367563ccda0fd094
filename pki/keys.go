package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"

	"golang.org/x/crypto/ssh"
)

// MarshalKey writes a private key as unencrypted PKCS#8 PEM, which
// OpenSSL, Mosquitto, Nginx and mbedTLS on the ESP32 all read.
func MarshalKey(k crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, err
	}
	return pemBlock("PRIVATE KEY", der), nil
}

// ParseKey reads a PEM private key in PKCS#8, PKCS#1 or SEC 1 form.
func ParseKey(b []byte) (crypto.Signer, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errors.New("not a PEM private key")
	}
	var k any
	var err error
	switch blk.Type {
	case "PRIVATE KEY":
		k, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(blk.Bytes)
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(blk.Bytes)
	default:
		return nil, fmt.Errorf("unexpected PEM block %q", blk.Type)
	}
	if err != nil {
		return nil, err
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, errors.New("not a signing key")
	}
	return s, nil
}

// MarshalPublic writes a public key as PKIX PEM.
func MarshalPublic(k crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(k)
	if err != nil {
		return nil, err
	}
	return pemBlock("PUBLIC KEY", der), nil
}

// NewSecureBootKey makes the RSA-3072 key that signs app images for ESP32
// Secure Boot V2, the scheme every ESP32 family member supports. It is
// written in PKCS#1 form, as espsecure generate_signing_key writes it.
func NewSecureBootKey() (priv, pub []byte, err error) {
	k, err := rsa.GenerateKey(rand.Reader, 3072)
	if err != nil {
		return nil, nil, err
	}
	pub, err = MarshalPublic(&k.PublicKey)
	if err != nil {
		return nil, nil, err
	}
	return pemBlock("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(k)), pub, nil
}

// NewECDSAKey makes an ECDSA P-256 key (the OTA manifest signing key).
func NewECDSAKey() (priv, pub []byte, err error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	priv, err = MarshalKey(k)
	if err != nil {
		return nil, nil, err
	}
	pub, err = MarshalPublic(k.Public())
	return priv, pub, err
}

// SSHKeyType is an OpenSSH key algorithm appliance makes keys of.
type SSHKeyType string

// The SSH key types: host keys of both, the deploy key of Ed25519.
const (
	SSHEd25519 SSHKeyType = "ed25519"
	SSHECDSA   SSHKeyType = "ecdsa"
)

// NewSSHKey makes an OpenSSH key pair: the private key in OpenSSH's own
// PEM format, as ssh-keygen writes it, and the public key as an
// authorized_keys line.
func NewSSHKey(t SSHKeyType, comment string) (priv, pub []byte, err error) {
	var k crypto.Signer
	switch t {
	case SSHEd25519:
		_, k, err = ed25519.GenerateKey(rand.Reader)
	case SSHECDSA:
		k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	default:
		return nil, nil, fmt.Errorf("unknown SSH key type %q", t)
	}
	if err != nil {
		return nil, nil, err
	}
	blk, err := ssh.MarshalPrivateKey(k, comment)
	if err != nil {
		return nil, nil, err
	}
	sp, err := ssh.NewPublicKey(k.Public())
	if err != nil {
		return nil, nil, err
	}
	line := ssh.MarshalAuthorizedKey(sp)
	if comment != "" {
		line = append(line[:len(line)-1], []byte(" "+comment+"\n")...)
	}
	return pem.EncodeToMemory(blk), line, nil
}

// ParseSSHKey reads an OpenSSH private key.
func ParseSSHKey(b []byte) (ssh.Signer, error) { return ssh.ParsePrivateKey(b) }

// passwordAlphabet avoids characters that need quoting in the INI, YAML
// and shell files the services read them from.
const passwordAlphabet = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789"

// NewPassword returns a random password of n characters (5.8 bits each).
func NewPassword(n int) (string, error) {
	out := make([]byte, n)
	max := big.NewInt(int64(len(passwordAlphabet)))
	for i := range out {
		c, err := rand.Int(rand.Reader, max)
		if err != nil {
			return "", err
		}
		out[i] = passwordAlphabet[c.Int64()]
	}
	return string(out), nil
}

// NewToken returns a random API token: 256 bits, base64url.
func NewToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}
