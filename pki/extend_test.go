package pki

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/appliance/appliance/internal/testenv"
)

// TestExtendWithOpenSSL: a CA extended with its own key is, to OpenSSL,
// the same CA: certificates issued before the extension verify under
// the new CA certificate (and its CRL still revokes them), certificates
// issued after verify under the old one while it lasts, and after the
// old one's end only the new one vouches for anything.
func TestExtendWithOpenSSL(t *testing.T) {
	testenv.Require(t, "openssl")
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	oldCA, _, err := NewCA("test", now, now.AddDate(2, 0, 0))
	if err != nil {
		t.Fatal(err)
	}
	before, _, beforeCert, err := oldCA.Issue(Request{Name: "bench-1", Kind: Node}, now)
	if err != nil {
		t.Fatal(err)
	}
	revokedPEM, _, revoked, err := oldCA.Issue(Request{Name: "bench-2", Kind: Node}, now)
	if err != nil {
		t.Fatal(err)
	}

	later := now.AddDate(1, 0, 0)
	extCA, err := oldCA.Extend(later, later.AddDate(10, 0, 0))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(extCA.Cert.RawSubject, oldCA.Cert.RawSubject) || !bytes.Equal(extCA.Cert.SubjectKeyId, oldCA.Cert.SubjectKeyId) || !publicKeysEqual(extCA.Cert.PublicKey, oldCA.Cert.PublicKey) {
		t.Fatalf("the extended CA is another CA: subject %q, key id %x; was %q, %x", extCA.Cert.Subject, extCA.Cert.SubjectKeyId, oldCA.Cert.Subject, oldCA.Cert.SubjectKeyId)
	}
	if extCA.Cert.SerialNumber.Cmp(oldCA.Cert.SerialNumber) == 0 {
		t.Errorf("the extended CA certificate reuses the old serial")
	}
	if err := extCA.Issued(beforeCert, Node); err != nil {
		t.Errorf("the extended CA does not recognise a certificate it issued before: %v", err)
	}
	if err := extCA.Issued(beforeCert, Server); err == nil {
		t.Errorf("a node certificate passes as a server's")
	}
	if other, _ := newCA(t); other.Issued(beforeCert, Node) == nil {
		t.Errorf("another CA claims the node's certificate")
	}
	if _, err := oldCA.Extend(later, now.AddDate(1, 0, 0)); err == nil {
		t.Errorf("Extend to an earlier end than the CA's own succeeded")
	}
	after, _, _, err := extCA.Issue(Request{Name: "mosquitto", Kind: Server, DNSNames: []string{"localhost"}, Until: later.AddDate(5, 0, 0)}, later)
	if err != nil {
		t.Fatal(err)
	}
	crl, err := extCA.CRL([]Revoked{{Serial: revoked.SerialNumber, At: later}}, 2, later, later.AddDate(5, 0, 0))
	if err != nil {
		t.Fatal(err)
	}

	oldFile, newFile, crlFile := write("old-ca.crt", oldCA.CertPEM), write("new-ca.crt", extCA.CertPEM), write("crl.pem", crl)
	verify := func(ca, cert string, at time.Time, crlCheck bool) (string, error) {
		args := []string{"verify", "-CAfile", ca, "-attime", fmt.Sprint(at.Unix())}
		if crlCheck {
			args = append(args, "-crl_check", "-CRLfile", crlFile)
		}
		out, err := exec.Command("openssl", append(args, cert)...).CombinedOutput()
		return string(out), err
	}
	beforeFile, afterFile, revokedFile := write("bench-1.crt", before), write("mosquitto.crt", after), write("bench-2.crt", revokedPEM)
	soon, pastOld := later.Add(time.Hour), now.AddDate(3, 0, 0)
	for _, c := range []struct {
		what, ca, cert string
		at             time.Time
		crl, ok        bool
	}{
		{"a node certificate from before the extension, under the new CA and its CRL", newFile, beforeFile, soon, true, true},
		{"a revoked one from before, under the new CA and its CRL", newFile, revokedFile, soon, true, false},
		{"a server certificate from after, under the old CA (a node not yet re-flashed)", oldFile, afterFile, soon, false, true},
		{"the server certificate after the old CA's end, under the new CA", newFile, afterFile, pastOld, true, true},
		{"the server certificate after the old CA's end, under the old CA", oldFile, afterFile, pastOld, false, false},
	} {
		out, err := verify(c.ca, c.cert, c.at, c.crl)
		if (err == nil) != c.ok {
			t.Errorf("openssl verify, %s: %v, want ok %v\n%s", c.what, err, c.ok, out)
		}
		if !c.ok && c.ca == newFile && !strings.Contains(out, "certificate revoked") {
			t.Errorf("openssl verify, %s: refused for another reason than revocation:\n%s", c.what, out)
		}
	}
}
