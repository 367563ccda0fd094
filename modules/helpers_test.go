package modules_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/appliance/appliance/desired"
	"github.com/appliance/appliance/pki"
	"github.com/appliance/appliance/spec"
	"github.com/appliance/appliance/state"
)

// gw is a site built for a test: its desired state, its state folder
// (CA, certificates, keys, secrets) and its files written under root.
type gw struct {
	site  *spec.Site
	g     *desired.Gateway
	st    *state.Store
	root  string
	files []desired.File
}

// newGW loads a spec from text and writes the gateway's files under a
// temporary root.
func newGW(t *testing.T, src string) *gw {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "site.hcl")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	site, rep := spec.Load(path, spec.Options{Environ: []string{"HOME=/nonexistent"}})
	if rep.HasErrors() {
		var b bytes.Buffer
		rep.WriteText(&b)
		t.Fatalf("spec: %s", b.String())
	}
	g, err := desired.Compute(site)
	if err != nil {
		t.Fatal(err)
	}
	st, err := state.Open(filepath.Join(dir, "state"), state.Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if res, err := st.Ensure(g.Wants, false); err != nil || res.Errors() {
		t.Fatalf("state: %v %+v", err, res)
	}
	r, err := g.Resolve(st, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(dir, "root")
	if err := r.Apply(desired.Folder{Root: root}); err != nil {
		t.Fatal(err)
	}
	return &gw{site: site, g: g, st: st, root: root, files: r.Files}
}

func (w *gw) path(p string) string { return filepath.Join(w.root, p) }

// rewrite writes the gateway's files again after a change to the state,
// as a build or push would.
func (w *gw) rewrite(t *testing.T) {
	t.Helper()
	r, err := w.g.Resolve(w.st, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Apply(desired.Folder{Root: w.root}); err != nil {
		t.Fatal(err)
	}
	w.files = r.Files
}

// stateFile reads a file of the site's state.
func (w *gw) stateFile(t *testing.T, rel string) []byte {
	t.Helper()
	b, err := w.st.ReadFile(rel)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// certFile writes a state certificate and its key where test clients
// can use them.
func (w *gw) certFiles(t *testing.T, name string) (crt, key string) {
	t.Helper()
	dir := t.TempDir()
	crt, key = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	os.WriteFile(crt, w.stateFile(t, "pki/issued/"+name+".crt"), 0o644)
	os.WriteFile(key, w.stateFile(t, "pki/issued/"+name+".key"), 0o600)
	return crt, key
}

// caFile writes the site's CA certificate to a file.
func (w *gw) caFile(t *testing.T) string {
	p := filepath.Join(t.TempDir(), "ca.crt")
	os.WriteFile(p, w.stateFile(t, "pki/ca.crt"), 0o644)
	return p
}

// tlsConfig is a client configuration trusting the site CA, presenting
// the named certificate when name is not empty.
func (w *gw) tlsConfig(t *testing.T, name string) *tls.Config {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(w.stateFile(t, "pki/ca.crt"))
	cfg := &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS12}
	if name != "" {
		pair, err := tls.X509KeyPair(w.stateFile(t, "pki/issued/"+name+".crt"), w.stateFile(t, "pki/issued/"+name+".key"))
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg
}

// foreignCert is a client certificate of another CA, and one of this
// CA's that has expired: both must be refused.
func (w *gw) badCerts(t *testing.T) (foreignCrt, foreignKey, expiredCrt, expiredKey string) {
	t.Helper()
	dir := t.TempDir()
	other, _, err := pki.NewCA("intruder", time.Now(), time.Now().AddDate(10, 0, 0))
	if err != nil {
		t.Fatal(err)
	}
	c, k, _, err := other.Issue(pki.Request{Name: "bench-1", Kind: pki.Node}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	foreignCrt, foreignKey = filepath.Join(dir, "foreign.crt"), filepath.Join(dir, "foreign.key")
	os.WriteFile(foreignCrt, c, 0o644)
	os.WriteFile(foreignKey, k, 0o600)

	ca, err := pki.LoadCA(w.stateFile(t, "pki/ca.crt"), w.stateFile(t, "pki/ca.key"))
	if err != nil {
		t.Fatal(err)
	}
	c, k, _, err = ca.Issue(pki.Request{Name: "bench-1", Kind: pki.Node}, time.Now().AddDate(-pki.DefaultYears, 0, -2))
	if err != nil {
		t.Fatal(err)
	}
	expiredCrt, expiredKey = filepath.Join(dir, "expired.crt"), filepath.Join(dir, "expired.key")
	os.WriteFile(expiredCrt, c, 0o644)
	os.WriteFile(expiredKey, k, 0o600)
	return
}

// siteHCL is a small QEMU site with the ports the test chose.
func siteHCL(extra string) string {
	return fmt.Sprintf(`
site "t" {}
gateway "gw" {
  board    = "qemu-arm64"
  hostname = "testgw"
}
firmware "fw" {
  chip    = "esp32s3"
  version = "1.0.0"
}
node "bench" {
  count  = 2
  sensor = { type = "dht22", pin = 4 }
  wifi   = { ssid = "lab", psk = "long enough passphrase" }
}
%s
`, extra)
}

func contains(t *testing.T, what, s string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(s, w) {
			t.Errorf("%s lacks %q:\n%s", what, w, s)
		}
	}
}
