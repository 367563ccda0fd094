package state

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/appliance/appliance/pki"
)

var t0 = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

func wants() Wants {
	return Wants{
		Site: "test",
		Certs: []pki.Request{
			{Name: "mosquitto", Kind: pki.Server, DNSNames: []string{"gw", "gw.local"}, IPs: []net.IP{net.ParseIP("127.0.0.1")}},
			{Name: "ingest", Kind: pki.Client},
			{Name: "bench-1", Kind: pki.Node},
			{Name: "bench-2", Kind: pki.Node},
		},
		Secrets: []SecretWant{{Name: "grafana-admin-password", Kind: Password}, {Name: "influxdb-admin-token", Kind: Token}},
		OTA:     true,
	}
}

// clock is a settable clock for the store.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func open(t *testing.T, dir string, c *clock) *Store {
	t.Helper()
	s, err := Open(dir, Options{Create: true, Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func ensure(t *testing.T, s *Store, w Wants) *Result {
	t.Helper()
	res, err := s.Ensure(w, false)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func problems(r *Result) string {
	var b strings.Builder
	for _, p := range r.Problems {
		b.WriteString(p.Name + ": " + p.Message + "\n")
	}
	return b.String()
}

func TestEnsureCreatesThenKeeps(t *testing.T) {
	dir := filepath.Join(t.TempDir(), ".appliance", "test")
	c := &clock{t0}
	s := open(t, dir, c)
	res := ensure(t, s, wants())
	if len(res.Created) != 1+4+1+3+2+2 || len(res.Problems) != 0 {
		t.Errorf("first Ensure created %d items (%v), problems %v", len(res.Created), res.Created, res.Problems)
	}
	if fi, _ := os.Stat(filepath.Dir(dir)); fi.Mode().Perm() != 0o700 {
		t.Errorf(".appliance has mode %v", fi.Mode())
	}
	res = ensure(t, s, wants())
	if len(res.Created)+len(res.Updated)+len(res.Problems) != 0 {
		t.Errorf("second Ensure did something: %+v", res)
	}
	pw, err := s.Secret("grafana-admin-password")
	if err != nil || len(pw) != 24 {
		t.Errorf("secret %q, %v", pw, err)
	}
	if _, err := Open(dir, Options{Now: c.now}); err == nil || !strings.Contains(err.Error(), "another appliance command") {
		t.Errorf("a second Open while locked: %v", err)
	}
}

func TestDryRunWritesNothing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	res, err := Preview(dir, wants(), Options{Now: func() time.Time { return t0 }})
	if err != nil || len(res.Created) == 0 {
		t.Fatalf("Preview: %v, %+v", err, res)
	}
	if exists(dir) {
		t.Errorf("Preview created %s", dir)
	}
	s := open(t, dir, &clock{t0})
	res, _ = s.Ensure(wants(), true)
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 || entries[0].Name() != ".lock" || len(res.Created) == 0 {
		t.Errorf("dry run wrote %v", entries)
	}
}

func TestSpecChanges(t *testing.T) {
	dir := t.TempDir() + "/s"
	s := open(t, dir, &clock{t0})
	ensure(t, s, wants())

	w := wants()
	w.Certs[0].IPs = append(w.Certs[0].IPs, net.ParseIP("192.168.1.60"))
	w.Certs = append(w.Certs[:3], pki.Request{Name: "bench-3", Kind: pki.Node}) // bench-2 gone, bench-3 new
	res := ensure(t, s, w)
	p := problems(res)
	if !strings.Contains(p, "mosquitto: certificate does not cover 192.168.1.60") {
		t.Errorf("changed address not reported: %s", p)
	}
	if !strings.Contains(p, "bench-2: certificate is still valid but no longer in the spec") {
		t.Errorf("removed node not reported: %s", p)
	}
	if len(res.Created) != 1 || res.Created[0] != "node certificate bench-3" {
		t.Errorf("created %v", res.Created)
	}
	if _, err := s.RenewCert("nosuch", w); err == nil {
		t.Errorf("renewing a name the spec lacks succeeded")
	}
	if _, err := s.Revoke("bench-2", "keyCompromise", w); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Revoke("bench-2", "keyCompromise", w); err == nil || !strings.Contains(err.Error(), "already revoked") {
		t.Errorf("revoking twice: %v", err)
	}
	if _, err := s.Revoke("bench-1", "because", w); err == nil {
		t.Errorf("an unknown reason was accepted")
	}
	res = ensure(t, s, w)
	if strings.Contains(problems(res), "bench-2") {
		t.Errorf("a revoked, removed node is still reported: %s", problems(res))
	}
}

func TestWrongSite(t *testing.T) {
	dir := t.TempDir() + "/s"
	s := open(t, dir, &clock{t0})
	ensure(t, s, wants())
	w := wants()
	w.Site = "other"
	if _, err := s.Ensure(w, false); err == nil || !strings.Contains(err.Error(), `belongs to site "test"`) {
		t.Errorf("Ensure for another site: %v", err)
	}
}

func TestDamagedState(t *testing.T) {
	dir := t.TempDir() + "/s"
	s := open(t, dir, &clock{t0})
	ensure(t, s, wants())
	// A key swapped for another certificate's is caught.
	os.Rename(filepath.Join(dir, "pki/issued/bench-1.key"), filepath.Join(dir, "pki/issued/bench-1.key.bak"))
	b, _ := os.ReadFile(filepath.Join(dir, "pki/issued/bench-2.key"))
	os.WriteFile(filepath.Join(dir, "pki/issued/bench-1.key"), b, 0o600)
	if _, err := s.Ensure(wants(), false); err == nil || !strings.Contains(err.Error(), "does not belong to") {
		t.Errorf("mismatched key: %v", err)
	}
	os.Rename(filepath.Join(dir, "pki/issued/bench-1.key.bak"), filepath.Join(dir, "pki/issued/bench-1.key"))
	// An emptied secret is refused rather than replaced.
	os.WriteFile(filepath.Join(dir, "secrets/influxdb-admin-token"), nil, 0o600)
	if _, err := s.Ensure(wants(), false); err == nil || !strings.Contains(err.Error(), "is empty") {
		t.Errorf("empty secret: %v", err)
	}
	// A deleted certificate is reported, not silently reissued.
	os.WriteFile(filepath.Join(dir, "secrets/influxdb-admin-token"), []byte("x\n"), 0o600)
	os.Remove(filepath.Join(dir, "pki/issued/ingest.crt"))
	res := ensure(t, s, wants())
	if p := problems(res); !strings.Contains(p, "ingest: certificate file") || exists(filepath.Join(dir, "pki/issued/ingest.crt")) {
		t.Errorf("deleted certificate: %s", p)
	}
	// A readable SSH key is refused.
	os.Chmod(filepath.Join(dir, "ssh", DeployKey), 0o640)
	if _, err := s.Ensure(wants(), false); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("group-readable deploy key: %v", err)
	}
}
