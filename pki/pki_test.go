package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

var (
	now     = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	caUntil = now.AddDate(10, 0, 0)
)

func newCA(t *testing.T) (*CA, []byte) {
	t.Helper()
	ca, key, err := NewCA("test", now, caUntil)
	if err != nil {
		t.Fatal(err)
	}
	return ca, key
}

func TestNewCA(t *testing.T) {
	ca, keyPEM := newCA(t)
	c := ca.Cert
	if !c.IsCA || !c.MaxPathLenZero || c.MaxPathLen != 0 {
		t.Errorf("CA constraints: IsCA %v, MaxPathLen %d (zero %v)", c.IsCA, c.MaxPathLen, c.MaxPathLenZero)
	}
	if c.KeyUsage&x509.KeyUsageCertSign == 0 || c.KeyUsage&x509.KeyUsageCRLSign == 0 {
		t.Errorf("CA key usage %v lacks cert or CRL signing", c.KeyUsage)
	}
	if k, ok := c.PublicKey.(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P256() {
		t.Errorf("CA key is %T, want ECDSA P-256", c.PublicKey)
	}
	if !c.NotAfter.Equal(caUntil) || !c.NotBefore.Equal(now.Add(-backdate)) {
		t.Errorf("CA valid %v to %v; want %v to %v", c.NotBefore, c.NotAfter, now.Add(-backdate), caUntil)
	}
	if c.Subject.CommonName != "test site CA" {
		t.Errorf("CN %q", c.Subject.CommonName)
	}
	if _, err := LoadCA(ca.CertPEM, keyPEM); err != nil {
		t.Errorf("LoadCA: %v", err)
	}
	_, other := newCA(t)
	if _, err := LoadCA(ca.CertPEM, other); err == nil || !strings.Contains(err.Error(), "does not belong") {
		t.Errorf("LoadCA with another CA's key: %v", err)
	}
}

func TestIssue(t *testing.T) {
	ca, _ := newCA(t)
	srv := Request{Name: "mosquitto", Kind: Server, DNSNames: []string{"gw", "gw.local"}, IPs: []net.IP{net.ParseIP("192.168.1.50")}}
	_, keyPEM, cert, err := ca.Issue(srv, now)
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.Verify(cert, Server, now); err != nil {
		t.Errorf("server certificate does not verify as a server: %v", err)
	}
	if err := ca.Verify(cert, Client, now); err == nil {
		t.Errorf("server certificate verifies as a client")
	}
	if err := cert.VerifyHostname("gw.local"); err != nil {
		t.Error(err)
	}
	if err := cert.VerifyHostname("192.168.1.50"); err != nil {
		t.Error(err)
	}
	if ok, _ := Covers(cert, srv); !ok {
		t.Errorf("certificate does not cover its own request")
	}
	if ok, missing := Covers(cert, Request{DNSNames: []string{"gw"}, IPs: []net.IP{net.ParseIP("10.0.0.1")}}); ok || missing != "10.0.0.1" {
		t.Errorf("Covers with a new address = %v, %q", ok, missing)
	}
	if !SameKey(cert, keyPEM) {
		t.Errorf("key does not match the certificate")
	}
	if want := now.AddDate(DefaultYears, 0, 0); !cert.NotAfter.Equal(want) {
		t.Errorf("server certificate without an end runs to %v; want %v", cert.NotAfter, want)
	}
	if cert.KeyUsage != x509.KeyUsageDigitalSignature {
		t.Errorf("server key usage %v", cert.KeyUsage)
	}

	until := now.AddDate(8, 0, 0)
	_, _, node, err := ca.Issue(Request{Name: "bench-1", Kind: Node, Until: until}, now)
	if err != nil {
		t.Fatal(err)
	}
	if !node.NotAfter.Equal(until) {
		t.Errorf("node certificate runs to %v; want the requested %v", node.NotAfter, until)
	}
	if node.Subject.CommonName != "bench-1" || len(node.DNSNames) != 0 {
		t.Errorf("node subject %v, SANs %v", node.Subject, node.DNSNames)
	}
	if err := ca.Verify(node, Node, now); err != nil {
		t.Errorf("node certificate: %v", err)
	}
	if err := ca.Verify(node, Server, now); err == nil {
		t.Errorf("node certificate verifies as a server")
	}
	// A certificate never outlives its CA.
	late := caUntil.Add(-24 * time.Hour)
	_, _, capped, err := ca.Issue(Request{Name: "n", Kind: Node}, late)
	if err != nil {
		t.Fatal(err)
	}
	if !capped.NotAfter.Equal(ca.Cert.NotAfter) {
		t.Errorf("node certificate issued a day before the CA expires runs to %v; CA ends %v", capped.NotAfter, ca.Cert.NotAfter)
	}
	if err := ca.Verify(node, Node, until.Add(time.Second)); err == nil {
		t.Errorf("an expired certificate verifies")
	}
	otherCA, _ := newCA(t)
	if err := otherCA.Verify(node, Node, now); err == nil {
		t.Errorf("another CA accepts the node's certificate")
	}
}

func TestCRL(t *testing.T) {
	ca, _ := newCA(t)
	_, _, c, _ := ca.Issue(Request{Name: "bench-2", Kind: Node}, now)
	next := now.AddDate(5, 0, 0)
	b, err := ca.CRL([]Revoked{{Serial: c.SerialNumber, At: now, Reason: Reasons["keyCompromise"]}}, 7, now, next)
	if err != nil {
		t.Fatal(err)
	}
	crl, err := ca.ParseCRL(b)
	if err != nil {
		t.Fatal(err)
	}
	if crl.Number.Int64() != 7 || len(crl.RevokedCertificateEntries) != 1 || crl.RevokedCertificateEntries[0].SerialNumber.Cmp(c.SerialNumber) != 0 || crl.RevokedCertificateEntries[0].ReasonCode != 1 {
		t.Errorf("CRL = number %v, entries %+v", crl.Number, crl.RevokedCertificateEntries)
	}
	if !crl.NextUpdate.Equal(next) || !crl.ThisUpdate.Equal(now.Add(-backdate)) {
		t.Errorf("CRL this update %v, next update %v; want %v, %v", crl.ThisUpdate, crl.NextUpdate, now.Add(-backdate), next)
	}
	// Nor does a CRL outlive its CA.
	b, err = ca.CRL(nil, 8, now, caUntil.AddDate(1, 0, 0))
	if err != nil {
		t.Fatal(err)
	}
	if crl, err := ca.ParseCRL(b); err != nil || !crl.NextUpdate.Equal(caUntil) {
		t.Errorf("CRL asked to outlive the CA: next update %v (%v); want the CA's end %v", crl.NextUpdate, err, caUntil)
	}
	other, _ := newCA(t)
	if _, err := other.ParseCRL(b); err == nil {
		t.Errorf("another CA accepts the CRL")
	}
}

func TestKeys(t *testing.T) {
	priv, pub, err := NewSecureBootKey()
	if err != nil {
		t.Fatal(err)
	}
	if blk, _ := pem.Decode(priv); blk == nil || blk.Type != "RSA PRIVATE KEY" {
		t.Errorf("secure boot key PEM type: %v", blk)
	}
	k, err := ParseKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	rk := k.(*rsa.PrivateKey)
	if rk.N.BitLen() != 3072 || rk.E != 65537 {
		t.Errorf("secure boot key: %d bits, e=%d; want 3072, 65537", rk.N.BitLen(), rk.E)
	}
	if !strings.Contains(string(pub), "PUBLIC KEY") {
		t.Errorf("public key PEM: %s", pub)
	}

	for _, typ := range []SSHKeyType{SSHEd25519, SSHECDSA} {
		priv, pub, err := NewSSHKey(typ, "appliance test")
		if err != nil {
			t.Fatal(err)
		}
		signer, err := ParseSSHKey(priv)
		if err != nil {
			t.Fatal(err)
		}
		pk, comment, _, _, err := ssh.ParseAuthorizedKey(pub)
		if err != nil || comment != "appliance test" || string(pk.Marshal()) != string(signer.PublicKey().Marshal()) {
			t.Errorf("%s: public line %q does not match the key (%v)", typ, pub, err)
		}
	}

	pw, _ := NewPassword(24)
	if len(pw) != 24 || strings.Trim(pw, passwordAlphabet) != "" {
		t.Errorf("password %q", pw)
	}
	pw2, _ := NewPassword(24)
	tok, _ := NewToken()
	if pw == pw2 || len(tok) != 43 {
		t.Errorf("passwords repeat or token %q has the wrong length", tok)
	}
}
