package state

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/appliance/appliance/pki"
)

func cert(t *testing.T, dir, name string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "pki", "issued", name+".crt"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := pki.ParseCert(b)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func crlOf(t *testing.T, s *Store) *x509.RevocationList {
	t.Helper()
	ca, err := s.loadCA()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(s.path("pki", "crl.pem"))
	if err != nil {
		t.Fatal(err)
	}
	crl, err := ca.ParseCRL(b)
	if err != nil {
		t.Fatal(err)
	}
	return crl
}

func names(rs []Renewal) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Name)
	}
	slices.Sort(out)
	return out
}

func renew(t *testing.T, s *Store, w Wants, now time.Time) []Renewal {
	t.Helper()
	rs, err := s.Renew(w, now)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// TestIssuedForSupportPeriod: every certificate and the CRL last the
// support period from their issue, the CA twice that, and a new state
// has nothing due and nothing to say.
func TestIssuedForSupportPeriod(t *testing.T) {
	for _, years := range []int{0, 5, 8} {
		want := years
		if want == 0 {
			want = pki.DefaultYears
		}
		dir := t.TempDir() + "/s"
		s := open(t, dir, &clock{t0})
		w := wants()
		w.SupportYears = years
		res := ensure(t, s, w)
		if len(res.Due) != 0 || len(res.Problems) != 0 {
			t.Errorf("%d years: a new state has due %v, problems %s", years, res.Due, problems(res))
		}
		end := t0.AddDate(want, 0, 0)
		for _, r := range w.Certs {
			if c := cert(t, dir, r.Name); !c.NotAfter.Equal(end) {
				t.Errorf("%d years: %s ends %v; want %v", years, r.Name, c.NotAfter, end)
			}
		}
		if crl := crlOf(t, s); !crl.NextUpdate.Equal(end) {
			t.Errorf("%d years: CRL next update %v; want %v", years, crl.NextUpdate, end)
		}
		ca, _ := s.loadCA()
		if caEnd := t0.AddDate(2*want, 0, 0); !ca.Cert.NotAfter.Equal(caEnd) {
			t.Errorf("%d years: CA ends %v; want %v", years, ca.Cert.NotAfter, caEnd)
		}
	}
}

// TestRenewOverTheYears follows a state through ten years of builds with
// an injected clock: the gateway's objects are renewed 90 days before
// their end, each certificate with a new key; nodes are warned about,
// never renewed; the CA is reported once it would cut new certificates
// short, and extending it lets renewal go on.
func TestRenewOverTheYears(t *testing.T) {
	dir := t.TempDir() + "/s"
	c := &clock{t0}
	s := open(t, dir, c)
	w := wants()
	ensure(t, s, w)
	oldKey, _ := os.ReadFile(filepath.Join(dir, "pki/issued/mosquitto.key"))
	oldBench := cert(t, dir, "bench-1")

	// The day after the one-year CRL of old would have expired, and the
	// day after the two-year server certificates would have: nothing is
	// due.
	for _, at := range []time.Time{t0.AddDate(1, 0, 1), t0.AddDate(2, 0, 1), t0.AddDate(5, 0, 0).Add(-RenewBefore - day)} {
		c.t = at
		if rs := renew(t, s, w, at); len(rs) != 0 {
			t.Errorf("%s: renewed %v", at.Format(time.DateOnly), rs)
		}
		if res := ensure(t, s, w); len(res.Due)+len(res.Problems) != 0 {
			t.Errorf("%s: due %v, problems %s", at.Format(time.DateOnly), res.Due, problems(res))
		}
	}

	// 89 days before the end: the CRL and the gateway's certificates are
	// due, the nodes are warned about.
	c.t = t0.AddDate(5, 0, 0).Add(-89 * day)
	res := ensure(t, s, w)
	if got := names(res.Due); !slices.Equal(got, []string{"crl", "ingest", "mosquitto"}) {
		t.Errorf("due at 89 days: %v; want the CRL and the gateway's certificates", got)
	}
	p := problems(res)
	for _, n := range []string{"bench-1", "bench-2"} {
		if !strings.Contains(p, n+": node certificate ends on "+t0.AddDate(5, 0, 0).Format(time.DateOnly)+", in 89 days; run appliance pki renew SPEC "+n+" and flash the node") {
			t.Errorf("no warning for %s:\n%s", n, p)
		}
	}
	if res.Errors() {
		t.Errorf("a node ending in 89 days stops the build:\n%s", p)
	}
	rs := renew(t, s, w, c.t)
	if got := names(rs); !slices.Equal(got, []string{"crl", "ingest", "mosquitto"}) {
		t.Fatalf("renewed %v", got)
	}
	for _, r := range rs {
		if want := c.t.AddDate(5, 0, 0); !r.Until.Equal(want) {
			t.Errorf("%s renewed until %v; want %v", r.Name, r.Until, want)
		}
	}
	if newKey, _ := os.ReadFile(filepath.Join(dir, "pki/issued/mosquitto.key")); string(newKey) == string(oldKey) {
		t.Errorf("the renewed server certificate kept its key")
	}
	if !cert(t, dir, "bench-1").Equal(oldBench) {
		t.Errorf("Renew reissued a node's certificate")
	}
	if crl := crlOf(t, s); !crl.NextUpdate.Equal(c.t.AddDate(5, 0, 0)) {
		t.Errorf("CRL next update %v", crl.NextUpdate)
	}
	list, _ := s.Certificates()
	superseded := 0
	for _, ci := range list {
		if ci.Status == StatusSuperseded {
			superseded++
		}
	}
	if superseded != 2 {
		t.Errorf("%d superseded certificates in the index; want the 2 renewed", superseded)
	}
	if rs := renew(t, s, w, c.t); len(rs) != 0 {
		t.Errorf("a second Renew renewed %v", rs)
	}

	// Past the nodes' end: an expired node stops the build.
	c.t = t0.AddDate(5, 0, 1)
	if res := ensure(t, s, w); !res.Errors() || !strings.Contains(problems(res), "bench-1: node certificate expired on") {
		t.Errorf("expired node:\n%s", problems(res))
	}
	for _, n := range []string{"bench-1", "bench-2"} {
		if _, err := s.RenewCert(n, w); err != nil {
			t.Fatal(err)
		}
	}
	// From now the CA (ten years) ends within the support period.
	res = ensure(t, s, w)
	if p := problems(res); !strings.Contains(p, "ca: the site CA ends on "+t0.AddDate(10, 0, 0).Format(time.DateOnly)+", within the site's 5-year support period") || !strings.Contains(p, "pki renew SPEC ca") || res.Errors() {
		t.Errorf("CA within the support period:\n%s", p)
	}
	if bench := cert(t, dir, "bench-1"); !bench.NotAfter.Equal(t0.AddDate(10, 0, 0)) {
		t.Errorf("a node certificate issued in the CA's second half ends %v; want the CA's end", bench.NotAfter)
	}

	// 90 days before the CA's end the gateway's certificates end with
	// it: they are not renewed again and again, and say why.
	c.t = t0.AddDate(10, 0, 0).Add(-60 * day)
	rs = renew(t, s, w, c.t)
	if got := names(rs); !slices.Equal(got, []string{"crl", "ingest", "mosquitto"}) {
		t.Fatalf("renewed %v before the CA's end", got)
	}
	if rs := renew(t, s, w, c.t.Add(day)); len(rs) != 0 {
		t.Errorf("objects that end with the CA were renewed again: %v", rs)
	}
	res = ensure(t, s, w)
	if p := problems(res); !strings.Contains(p, "mosquitto: server certificate ends on "+t0.AddDate(10, 0, 0).Format(time.DateOnly)+", in 60 days: it ends with the site CA") || len(res.Due) != 0 {
		t.Errorf("capped by the CA: due %v\n%s", res.Due, p)
	}

	// Extending the CA with its own key: what it issued still verifies,
	// the warnings go, renewal goes on.
	oldCA, _ := s.loadCA()
	ext, old, err := s.ExtendCA(w)
	if err != nil {
		t.Fatal(err)
	}
	if want := c.t.AddDate(10, 0, 0); !ext.NotAfter.Equal(want) {
		t.Errorf("extended CA ends %v; want %v", ext.NotAfter, want)
	}
	if !old.Equal(oldCA.Cert) {
		t.Errorf("ExtendCA names another certificate as the old one")
	}
	if _, err := os.Stat(filepath.Join(dir, "pki", "ca-"+pki.SerialHex(oldCA.Cert.SerialNumber)+".crt")); err != nil {
		t.Errorf("the old CA certificate is not kept: %v", err)
	}
	newCA, _ := s.loadCA()
	if err := newCA.Verify(cert(t, dir, "bench-1"), pki.Node, c.t); err != nil {
		t.Errorf("a node certificate from before the extension: %v", err)
	}
	rs = renew(t, s, w, c.t)
	if got := names(rs); !slices.Equal(got, []string{"crl", "ingest", "mosquitto"}) {
		t.Errorf("after extending the CA, renewed %v", got)
	}
	res = ensure(t, s, w)
	if strings.Contains(problems(res), "ca:") || strings.Contains(problems(res), "mosquitto") || len(res.Due) != 0 {
		t.Errorf("after extending the CA: due %v\n%s", res.Due, problems(res))
	}
}

// TestExpiredGatewayCertRenewed: a gateway certificate that has already
// ended is renewed by the next build rather than stopping it.
func TestExpiredGatewayCertRenewed(t *testing.T) {
	dir := t.TempDir() + "/s"
	c := &clock{t0}
	s := open(t, dir, c)
	w := wants()
	w.Certs = w.Certs[:2] // no nodes: they would stop the build
	ensure(t, s, w)
	c.t = t0.AddDate(5, 0, 3)
	res := ensure(t, s, w)
	if res.Errors() || len(res.Due) != 3 {
		t.Fatalf("expired gateway: due %v\n%s", res.Due, problems(res))
	}
	for _, r := range res.Due {
		if !strings.Contains(r.String(), r.Name+": "+r.What+" expired on "+t0.AddDate(5, 0, 0).Format(time.DateOnly)+"; the next build or push renews it") {
			t.Errorf("due line %q", r)
		}
	}
	renew(t, s, w, c.t)
	ca, _ := s.loadCA()
	if err := ca.Verify(cert(t, dir, "mosquitto"), pki.Server, c.t); err != nil {
		t.Errorf("renewed server certificate: %v", err)
	}
}

// TestOldStateBroughtUp: a state from before the support period — a
// one-year CRL, two-year gateway certificates — is brought up to it by
// the next Renew, though nothing is within 90 days of its end; the
// nodes' five years already cover it.
func TestOldStateBroughtUp(t *testing.T) {
	dir := t.TempDir() + "/s"
	c := &clock{t0}
	s := open(t, dir, c)
	w := wants()
	ensure(t, s, w)
	ca, _ := s.loadCA()
	crl, err := ca.CRL(nil, 9, t0, t0.AddDate(1, 0, 0))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "pki", "crl.pem"), crl, 0o644)
	for _, r := range w.Certs[:2] {
		r.Until = t0.Add(730 * day)
		crt, key, _, err := ca.Issue(r, t0)
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, "pki", "issued", r.Name+".key"), key, 0o600)
		os.WriteFile(filepath.Join(dir, "pki", "issued", r.Name+".crt"), crt, 0o644)
	}

	c.t = t0.AddDate(0, 1, 0)
	res := ensure(t, s, w)
	if got := names(res.Due); !slices.Equal(got, []string{"crl", "ingest", "mosquitto"}) {
		t.Fatalf("due in an old state: %v (%s)", got, problems(res))
	}
	for _, r := range res.Due {
		want := map[string]string{"crl": "it was issued for 1 year", "mosquitto": "it was issued for 2 years", "ingest": "it was issued for 2 years"}[r.Name]
		if !strings.Contains(r.Why, "within the site's 5-year support period: "+want) {
			t.Errorf("%s due because %q; want %q", r.Name, r.Why, want)
		}
	}
	renew(t, s, w, c.t)
	if got := crlOf(t, s).NextUpdate; !got.Equal(c.t.AddDate(5, 0, 0)) {
		t.Errorf("CRL brought up to %v", got)
	}
	if got := cert(t, dir, "mosquitto").NotAfter; !got.Equal(c.t.AddDate(5, 0, 0)) {
		t.Errorf("mosquitto brought up to %v", got)
	}
	if res := ensure(t, s, w); len(res.Due) != 0 || len(res.Problems) != 0 {
		t.Errorf("after Renew: due %v\n%s", res.Due, problems(res))
	}
}

// TestSupportRaised: a longer support period makes the gateway's
// objects due at once, and the nodes are told, in one line, that theirs
// end before it.
func TestSupportRaised(t *testing.T) {
	dir := t.TempDir() + "/s"
	c := &clock{t0}
	s := open(t, dir, c)
	ensure(t, s, wants())
	w := wants()
	w.SupportYears = 8
	res := ensure(t, s, w)
	if got := names(res.Due); !slices.Equal(got, []string{"crl", "ingest", "mosquitto"}) {
		t.Errorf("due after raising the support period: %v", got)
	}
	if p := problems(res); !strings.Contains(p, "nodes: node certificates end before the site's 8-year support period from their issue is over: bench-1, bench-2;") || strings.Count(p, "\n") != 1 || res.Errors() {
		t.Errorf("nodes after raising the support period:\n%s", p)
	}
	renew(t, s, w, t0)
	if got := cert(t, dir, "ingest").NotAfter; !got.Equal(t0.AddDate(8, 0, 0)) {
		t.Errorf("ingest now ends %v", got)
	}
}

// TestRevokeSignsForSupport: a revocation re-signs the CRL for the
// support period too.
func TestRevokeSignsForSupport(t *testing.T) {
	dir := t.TempDir() + "/s"
	c := &clock{t0}
	s := open(t, dir, c)
	w := wants()
	w.SupportYears = 7
	ensure(t, s, w)
	c.t = t0.AddDate(1, 0, 0)
	if _, err := s.Revoke("bench-2", "keyCompromise", w); err != nil {
		t.Fatal(err)
	}
	crl := crlOf(t, s)
	if !crl.NextUpdate.Equal(c.t.AddDate(7, 0, 0)) || len(crl.RevokedCertificateEntries) != 1 {
		t.Errorf("CRL after revoking: next update %v, %d entries", crl.NextUpdate, len(crl.RevokedCertificateEntries))
	}
}

// TestReviewWritesNothing: Review reports what is due and changes no
// file of the state.
func TestReviewWritesNothing(t *testing.T) {
	dir := t.TempDir() + "/s"
	s := open(t, dir, &clock{t0})
	ensure(t, s, wants())
	before := snapshot(t, dir)
	due, probs, err := s.Review(wants(), t0.AddDate(5, 0, 0).Add(-10*day))
	if err != nil {
		t.Fatal(err)
	}
	if len(due) != 3 || len(probs) != 2 {
		t.Errorf("Review: due %v, problems %v", due, probs)
	}
	if after := snapshot(t, dir); after != before {
		t.Errorf("Review changed the state:\n%s\n---\n%s", before, after)
	}
}

func snapshot(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			c, _ := os.ReadFile(p)
			b.WriteString(p + " " + string(c) + "\n")
		}
		return nil
	})
	return b.String()
}
