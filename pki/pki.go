// Package pki makes a site's keys and certificates: the site CA, server
// and client certificates, the CRL, the OTA signing keys, SSH keys and
// generated passwords. It works in memory on PEM bytes; package state
// decides what is needed, how long it lasts, and keeps it on disk.
//
// How long a certificate or CRL lasts is the caller's to say (Request's
// Until, CRL's nextUpdate); pki only sees to it that nothing the CA
// signs outlives the CA, and backdates the start by an hour for clocks
// that run slow.
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"slices"
	"strings"
	"time"
)

// DefaultYears is how long a certificate lasts when its request names
// no end: the default support period of a site.
const DefaultYears = 5

// backdate absorbs clocks that run a little slow: a node that has just
// synced time must not see a certificate as "not yet valid".
const backdate = time.Hour

// Kind is what a certificate is for.
type Kind string

// The kinds of certificate a site issues.
const (
	Server Kind = "server" // TLS server on the gateway
	Client Kind = "client" // TLS client on the gateway (ingest)
	Node   Kind = "node"   // TLS client identity of a sensor node
)

// Request describes a certificate to issue.
type Request struct {
	Name string // the CN, and the name it is filed under
	Kind Kind
	// DNSNames and IPs are the SANs of a server certificate.
	DNSNames []string
	IPs      []net.IP
	// Until is when the certificate ends; zero means DefaultYears after
	// its issue. Either way it ends no later than the CA.
	Until time.Time
}

// CA is a site's certificate authority.
type CA struct {
	Cert    *x509.Certificate
	CertPEM []byte
	key     crypto.Signer
}

func serial() (*big.Int, error) {
	// 128 random bits, positive: unique without a counter to keep.
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

// NewCA makes a CA for the site with a new ECDSA P-256 key, lasting
// until until, returning it and its private key in PEM.
func NewCA(site string, now, until time.Time) (*CA, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	subject := pkix.Name{CommonName: site + " site CA", Organization: []string{"appliance"}, OrganizationalUnit: []string{site}}
	ca, err := selfSign(key, &x509.Certificate{Subject: subject}, now, until)
	if err != nil {
		return nil, nil, err
	}
	keyPEM, err := MarshalKey(key)
	if err != nil {
		return nil, nil, err
	}
	return ca, keyPEM, nil
}

// Extend signs a new certificate for the CA with its own key, subject
// and key identifier, lasting until until. Everything the CA has issued
// verifies under the new certificate as under the old one (a chain is
// built by subject, key identifier and signature, never by the CA's
// serial), so the gateway accepts every node once it holds the new one,
// and nodes that still hold the old one accept the gateway while the
// old one lasts.
func (ca *CA) Extend(now, until time.Time) (*CA, error) {
	if !until.After(ca.Cert.NotAfter) {
		return nil, fmt.Errorf("the CA already lasts until %s", ca.Cert.NotAfter.Format(time.DateOnly))
	}
	// The subject's bytes and the key identifier are kept as they are:
	// issued certificates carry both as their issuer's, and OpenSSL
	// matches them when it builds a chain.
	return selfSign(ca.key, &x509.Certificate{RawSubject: ca.Cert.RawSubject, SubjectKeyId: ca.Cert.SubjectKeyId}, now, until)
}

// selfSign signs a CA certificate for key with the subject and key
// identifier of tmpl.
func selfSign(key crypto.Signer, tmpl *x509.Certificate, now, until time.Time) (*CA, error) {
	sn, err := serial()
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = sn
	tmpl.NotBefore, tmpl.NotAfter = now.Add(-backdate), until
	tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature
	tmpl.BasicConstraintsValid, tmpl.IsCA, tmpl.MaxPathLenZero = true, true, true
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, CertPEM: pemBlock("CERTIFICATE", der), key: key}, nil
}

// LoadCA reads a CA from its certificate and key, and checks that they
// belong together.
func LoadCA(certPEM, keyPEM []byte) (*CA, error) {
	cert, err := ParseCert(certPEM)
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	if !cert.IsCA {
		return nil, errors.New("the CA certificate is not a CA")
	}
	key, err := ParseKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("CA key: %w", err)
	}
	if !publicKeysEqual(cert.PublicKey, key.Public()) {
		return nil, errors.New("the CA key does not belong to the CA certificate")
	}
	return &CA{Cert: cert, CertPEM: certPEM, key: key}, nil
}

// Issue makes a new key and a certificate for it.
func (ca *CA) Issue(req Request, now time.Time) (certPEM, keyPEM []byte, cert *x509.Certificate, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, err
	}
	sn, err := serial()
	if err != nil {
		return nil, nil, nil, err
	}
	notAfter := req.Until
	if notAfter.IsZero() {
		notAfter = now.AddDate(DefaultYears, 0, 0)
	}
	notAfter = ca.cap(notAfter)
	tmpl := &x509.Certificate{
		SerialNumber: sn,
		Subject:      pkix.Name{CommonName: req.Name, Organization: ca.Cert.Subject.OrganizationalUnit},
		NotBefore:    now.Add(-backdate),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		DNSNames:     req.DNSNames,
		IPAddresses:  req.IPs,
	}
	switch req.Kind {
	case Server:
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	case Client, Node:
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	default:
		return nil, nil, nil, fmt.Errorf("unknown certificate kind %q", req.Kind)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.key)
	if err != nil {
		return nil, nil, nil, err
	}
	cert, err = x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, nil, err
	}
	keyPEM, err = MarshalKey(key)
	if err != nil {
		return nil, nil, nil, err
	}
	return pemBlock("CERTIFICATE", der), keyPEM, cert, nil
}

// cap cuts an end date to the CA's own: nothing the CA signs can be
// trusted longer than the CA itself.
func (ca *CA) cap(t time.Time) time.Time {
	if t.After(ca.Cert.NotAfter) {
		return ca.Cert.NotAfter
	}
	return t
}

// Verify checks that cert was issued by the CA and is usable for its
// kind at time now.
func (ca *CA) Verify(cert *x509.Certificate, kind Kind, now time.Time) error {
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	usage := x509.ExtKeyUsageClientAuth
	if kind == Server {
		usage = x509.ExtKeyUsageServerAuth
	}
	_, err := cert.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{usage}})
	return err
}

// Issued checks that cert was issued by the CA for kind use, whatever
// the time now: at the first moment both it and the CA certificate are
// valid (the CA certificate may be newer, after Extend), or by its
// signature alone if there is none.
func (ca *CA) Issued(cert *x509.Certificate, kind Kind) error {
	at := cert.NotBefore
	if ca.Cert.NotBefore.After(at) {
		at = ca.Cert.NotBefore
	}
	if at.After(cert.NotAfter) {
		return cert.CheckSignatureFrom(ca.Cert)
	}
	return ca.Verify(cert, kind, at)
}

// Revoked is one entry of the CRL.
type Revoked struct {
	Serial *big.Int
	At     time.Time
	// Reason is an RFC 5280 CRLReason code; 0 is unspecified.
	Reason int
}

// Reasons are the RFC 5280 reason codes pki revoke accepts.
var Reasons = map[string]int{
	"unspecified":          0,
	"keyCompromise":        1,
	"affiliationChanged":   3,
	"superseded":           4,
	"cessationOfOperation": 5,
}

// CRL makes the CA's certificate revocation list, valid until
// nextUpdate (or the CA's end, if that is sooner). OpenSSL, and so
// Mosquitto and Nginx, refuse every client certificate once the CRL's
// next update has passed: whoever chooses nextUpdate chooses when the
// gateway stops admitting nodes unless it gets a new CRL.
func (ca *CA) CRL(revoked []Revoked, number int64, now, nextUpdate time.Time) ([]byte, error) {
	tmpl := &x509.RevocationList{
		Number:     big.NewInt(number),
		ThisUpdate: now.Add(-backdate),
		NextUpdate: ca.cap(nextUpdate),
	}
	for _, r := range revoked {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries, x509.RevocationListEntry{
			SerialNumber: r.Serial, RevocationTime: r.At.UTC(), ReasonCode: r.Reason,
		})
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, ca.Cert, ca.key)
	if err != nil {
		return nil, err
	}
	return pemBlock("X509 CRL", der), nil
}

// ParseCRL reads a CRL and checks the CA's signature on it.
func (ca *CA) ParseCRL(crlPEM []byte) (*x509.RevocationList, error) {
	b, _ := pem.Decode(crlPEM)
	if b == nil || b.Type != "X509 CRL" {
		return nil, errors.New("not a PEM CRL")
	}
	crl, err := x509.ParseRevocationList(b.Bytes)
	if err != nil {
		return nil, err
	}
	if err := crl.CheckSignatureFrom(ca.Cert); err != nil {
		return nil, fmt.Errorf("CRL not signed by the site CA: %w", err)
	}
	return crl, nil
}

// Covers reports whether cert carries every SAN of req, and says which is
// missing otherwise.
func Covers(cert *x509.Certificate, req Request) (bool, string) {
	for _, n := range req.DNSNames {
		if !slices.Contains(cert.DNSNames, n) {
			return false, n
		}
	}
	for _, ip := range req.IPs {
		if !slices.ContainsFunc(cert.IPAddresses, ip.Equal) {
			return false, ip.String()
		}
	}
	return true, ""
}

// ParseCert reads one PEM certificate.
func ParseCert(b []byte) (*x509.Certificate, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, errors.New("not a PEM certificate")
	}
	return x509.ParseCertificate(blk.Bytes)
}

// Fingerprint is the SHA-256 of the certificate, as openssl x509
// -fingerprint -sha256 shows it.
func Fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	var b strings.Builder
	for i, x := range sum {
		if i > 0 {
			b.WriteByte(':')
		}
		fmt.Fprintf(&b, "%02X", x)
	}
	return b.String()
}

// SerialHex writes a serial number as openssl does.
func SerialHex(n *big.Int) string { return strings.ToUpper(n.Text(16)) }

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	ea, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ea.Equal(b)
}

// SameKey reports whether the private key in keyPEM belongs to cert.
func SameKey(cert *x509.Certificate, keyPEM []byte) bool {
	k, err := ParseKey(keyPEM)
	return err == nil && publicKeysEqual(cert.PublicKey, k.Public())
}
