package state

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/appliance/appliance/pki"
)

// How long things last. A gateway runs for years untouched, and nothing
// on it can renew what the CA signs (the CA key never leaves the admin's
// machine), so:
//
//   - every certificate and the CRL is issued for the site's support
//     period (Wants.SupportYears), so that a gateway left alone after its
//     first build admits its nodes, and they it, for that long;
//   - the site CA is made to last twice the support period, so that what
//     it issues in its first half lasts the full period; from the day it
//     would cut a new certificate short it is reported (a warning in
//     plan, build and pki list) with the fix, pki renew ca, which
//     extends it with its own key. It is never made anew silently: that
//     would lock out every node;
//   - Renew, which every build calls (and push is to), brings what the
//     gateway holds up to that: it re-signs the CRL and reissues the gateway's
//     server and client certificates, each with a new key, when it ends
//     within RenewBefore or was issued for less than the support period
//     (a state from before the support period existed, or a support
//     period made longer). The new key costs nothing, since nothing
//     pins the gateway's keys (nodes trust the CA) and the key travels
//     to the gateway with its certificate; and a key that lived years on
//     a device is retired.
//   - node certificates are never renewed by Renew: a new one works only
//     once the node is flashed with it, and a state that says "renewed"
//     while the node holds the old one would hide the date the node
//     stops. Plan, build and pki list warn RenewBefore ahead with the fix
//     (pki renew NAME, then flash the node).
//
// RenewBefore is how long before its end Renew replaces what the
// gateway holds, and the warnings about nodes begin.
const RenewBefore = 90 * 24 * time.Hour

// slack absorbs calendar arithmetic (a support period from 29 February)
// and the second-granularity of certificate times when deciding whether
// something was issued for the support period.
const slack = 2 * day

const day = 24 * time.Hour

// support is the support period in years.
func (w Wants) support() int {
	if w.SupportYears <= 0 {
		return pki.DefaultYears
	}
	return w.SupportYears
}

// until is when something issued at t must last until.
func (w Wants) until(t time.Time) time.Time { return t.AddDate(w.support(), 0, 0) }

// caUntil is when a CA made (or extended) at t lasts until.
func (w Wants) caUntil(t time.Time) time.Time { return t.AddDate(2*w.support(), 0, 0) }

// Renewal is a time-limited object of the gateway that Renew renews, or
// in Ensure's and Review's report would renew.
type Renewal struct {
	// Name is "crl" or the certificate's name; What says what it is.
	Name string `json:"name"`
	What string `json:"what"`
	// Ends is when the current one ends; Why says why that is too soon.
	Ends time.Time `json:"ends"`
	Why  string    `json:"why"`
	// Until is when the new one ends, once Renew made it.
	Until time.Time `json:"until,omitzero"`

	req *pki.Request
}

// String says what is due, or once renewed what was done, as
// "name: what".
func (r Renewal) String() string {
	switch {
	case r.Until.IsZero():
		return fmt.Sprintf("%s: %s %s; the next build or push renews it", r.Name, r.What, r.Why)
	case r.req == nil:
		return fmt.Sprintf("%s: %s re-signed, valid until %s (the old one %s)", r.Name, r.What, r.Until.Format(time.DateOnly), r.Why)
	}
	return fmt.Sprintf("%s: new %s and key, valid until %s (the old one %s)", r.Name, r.What, r.Until.Format(time.DateOnly), r.Why)
}

// object is a time-limited object of the state as it is now.
type object struct {
	name, what string
	req        *pki.Request // nil for the CRL
	from, to   time.Time
}

func (o object) gateway() bool { return o.req == nil || o.req.Kind != pki.Node }

// objects are the CRL and the current certificates the spec wants.
// Missing, damaged and revoked ones are Ensure's to report.
func (e *ensurer) objects() ([]object, error) {
	var out []object
	b, err := os.ReadFile(e.s.path("pki", "crl.pem"))
	switch {
	case err == nil:
		crl, err := e.ca.ParseCRL(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", e.s.path("pki", "crl.pem"), err)
		}
		out = append(out, object{name: "crl", what: "CRL", from: crl.ThisUpdate, to: crl.NextUpdate})
	case !errors.Is(err, fs.ErrNotExist):
		return nil, err
	}
	for i, r := range e.w.Certs {
		b, err := os.ReadFile(e.s.path("pki", "issued", r.Name+".crt"))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		cert, err := pki.ParseCert(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", e.s.path("pki", "issued", r.Name+".crt"), err)
		}
		out = append(out, object{name: r.Name, what: string(r.Kind) + " certificate", req: &e.w.Certs[i], from: cert.NotBefore, to: cert.NotAfter})
	}
	return out, nil
}

// why says why an object must be renewed now, or "" if it need not.
// short reports an object issued for less than the support period.
func (e *ensurer) why(o object) (why string, short bool) {
	end := o.to.Format(time.DateOnly)
	switch left := o.to.Sub(e.now); {
	case left <= 0:
		return "expired on " + end, false
	case left < RenewBefore:
		return fmt.Sprintf("ends on %s, in %s", end, plural(int((left+day-1)/day), "day")), false
	case o.to.Before(e.w.until(o.from).Add(-slack)):
		return fmt.Sprintf("ends on %s, within the site's %d-year support period: it was issued for %s", end, e.w.support(), span(o.to.Sub(o.from))), true
	}
	return "", false
}

// span writes a length of time in whole years, or days under a year.
func span(d time.Duration) string {
	days := int(d.Hours() / 24)
	if days < 365 {
		return plural(days, "day")
	}
	return plural(days/365, "year")
}

func plural(n int, unit string) string {
	if n == 1 {
		return "1 " + unit
	}
	return fmt.Sprintf("%d %ss", n, unit)
}

// Review reports, for the spec's wants w at time now, what Renew would
// renew and what about the state's lifetimes the user must act on: the
// CA ending within the support period or ended, node certificates
// ending within RenewBefore or ended, certificates cut short by the CA.
// It writes nothing.
func (s *Store) Review(w Wants, now time.Time) ([]Renewal, []Problem, error) {
	e := &ensurer{s: s, w: w, res: &Result{Due: []Renewal{}, Problems: []Problem{}}, now: now}
	ca, err := s.loadCA()
	if err != nil {
		return nil, nil, err
	}
	e.ca = ca
	if err := e.review(); err != nil {
		return nil, nil, err
	}
	return e.res.Due, e.res.Problems, nil
}

// review is Ensure's step that fills in Due and the lifetime problems.
func (e *ensurer) review() error {
	if e.ca == nil {
		return nil // a dry run on a new state: everything would be new
	}
	caEnd := e.ca.Cert.NotAfter
	switch {
	case !e.now.Before(caEnd):
		e.problem(true, "ca", "the site CA expired on %s, and with it every certificate it issued; the gateway and the nodes refuse each other. Run appliance pki renew {spec} ca, then build and flash the gateway and every node", caEnd.Format(time.DateOnly))
	case caEnd.Before(e.w.until(e.now)):
		e.problem(false, "ca", "the site CA ends on %s, within the site's %d-year support period: every certificate and CRL issued from now on ends with it. Run appliance pki renew {spec} ca to extend it with its own key; then build, and flash every node before %s", caEnd.Format(time.DateOnly), e.w.support(), caEnd.Format(time.DateOnly))
	}
	objs, err := e.objects()
	if err != nil {
		return err
	}
	var shortNodes []string
	for _, o := range objs {
		why, short := e.why(o)
		switch {
		case why == "":
		case !o.gateway() && short:
			shortNodes = append(shortNodes, o.name)
		case !o.gateway():
			expired := !o.to.After(e.now)
			e.problem(expired, o.name, "node certificate %s; run appliance pki renew {spec} %s and flash the node with the new one", why, o.name)
		case e.renewable(o):
			e.res.Due = append(e.res.Due, Renewal{Name: o.name, What: o.what, Ends: o.to, Why: why, req: o.req})
		default:
			// Renewing would give the same end: the CA's.
			e.problem(!o.to.After(e.now), o.name, "%s %s: it ends with the site CA and cannot outlast it; run appliance pki renew {spec} ca", o.what, why)
		}
	}
	if len(shortNodes) > 0 {
		e.problem(false, "nodes", "node certificates end before the site's %d-year support period from their issue is over: %s; to make them last it, run appliance pki renew {spec} NAME… and flash the nodes", e.w.support(), nodeList(shortNodes))
	}
	return nil
}

// nodeList names a few nodes, and how many more.
func nodeList(names []string) string {
	if len(names) <= 3 {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:3], ", "), len(names)-3)
}

// renewable reports whether a renewal made now would end later than o:
// not when o already ends with the CA.
func (e *ensurer) renewable(o object) bool {
	to := e.w.until(e.now)
	if to.After(e.ca.Cert.NotAfter) {
		to = e.ca.Cert.NotAfter
	}
	return to.After(o.to.Add(slack))
}

// Renew brings the gateway's time-limited objects in the state up to
// date for the time now: it re-signs the CRL and reissues the gateway's
// server and client certificates (new key, same names) that Review
// finds due, and returns what it renewed. Build calls it on every
// build, and push is to call it before every push. It never touches the
// CA or a node's certificate (see RenewBefore). The old certificates
// are superseded, not revoked: the gateway's running services keep
// working with them until the new ones reach it.
func (s *Store) Renew(w Wants, now time.Time) ([]Renewal, error) {
	ca, err := s.loadCA()
	if err != nil {
		return nil, err
	}
	idx, err := loadIndex(s.path("pki", "index.json"))
	if err != nil {
		return nil, err
	}
	e := &ensurer{s: s, w: w, res: &Result{Due: []Renewal{}}, now: now, ca: ca, idx: idx}
	if err := e.review(); err != nil {
		return nil, err
	}
	var done []Renewal
	for _, r := range e.res.Due {
		var err error
		r.Until, err = e.renew(r)
		if err != nil {
			return done, fmt.Errorf("renewing %s %s: %w", r.What, r.Name, err)
		}
		done = append(done, r)
	}
	return done, nil
}

// renew replaces one due object, returning when the new one ends.
func (e *ensurer) renew(r Renewal) (time.Time, error) {
	if r.req == nil {
		if err := e.writeCRL(); err != nil {
			return time.Time{}, err
		}
		crl, err := e.loadCRL()
		if err != nil {
			return time.Time{}, err
		}
		return crl.NextUpdate, nil
	}
	cert, err := e.issue(*r.req)
	if err != nil {
		return time.Time{}, err
	}
	return cert.NotAfter, e.idx.save(e.s.path("pki", "index.json"))
}

func (e *ensurer) loadCRL() (*x509.RevocationList, error) {
	b, err := os.ReadFile(e.s.path("pki", "crl.pem"))
	if err != nil {
		return nil, err
	}
	return e.ca.ParseCRL(b)
}
