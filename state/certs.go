package state

import (
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"sort"
	"time"

	"github.com/appliance/appliance/internal/atomicfile"
	"github.com/appliance/appliance/pki"
)

// Certificate states in the index.
const (
	StatusValid      = "valid"
	StatusSuperseded = "superseded" // renewed; the old one still works until it expires
	StatusRevoked    = "revoked"
)

// Entry is one issued certificate, as the index records it: the site's
// audit trail of every certificate it has issued.
type Entry struct {
	Name      string    `json:"name"`
	Kind      pki.Kind  `json:"kind"`
	Serial    string    `json:"serial"`
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
	SANs      []string  `json:"sans,omitempty"`
	Status    string    `json:"status"`
	RevokedAt time.Time `json:"revoked_at,omitzero"`
	Reason    string    `json:"reason,omitempty"`
}

type index struct {
	Version      int     `json:"version"`
	CRLNumber    int64   `json:"crl_number"`
	Certificates []Entry `json:"certificates"`
}

func loadIndex(path string) (*index, error) {
	idx := &index{Version: 1}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return idx, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, idx); err != nil {
		return nil, fmt.Errorf("%s is damaged: %w; restore it from your backup", path, err)
	}
	return idx, nil
}

func (x *index) save(path string) error {
	b, err := json.MarshalIndent(x, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(path, append(b, '\n'), 0o644)
}

// last is the newest entry for a name, or nil.
func (x *index) last(name string) *Entry {
	for i := len(x.Certificates) - 1; i >= 0; i-- {
		if x.Certificates[i].Name == name {
			return &x.Certificates[i]
		}
	}
	return nil
}

func (x *index) names() []string {
	seen := map[string]bool{}
	var out []string
	for _, c := range x.Certificates {
		if !seen[c.Name] {
			seen[c.Name] = true
			out = append(out, c.Name)
		}
	}
	sort.Strings(out)
	return out
}

// add records a newly issued certificate; the name's earlier valid one
// is superseded.
func (x *index) add(r pki.Request, c *x509.Certificate) {
	for i := range x.Certificates {
		if x.Certificates[i].Name == r.Name && x.Certificates[i].Status == StatusValid {
			x.Certificates[i].Status = StatusSuperseded
		}
	}
	sans := append([]string(nil), c.DNSNames...)
	for _, ip := range c.IPAddresses {
		sans = append(sans, ip.String())
	}
	x.Certificates = append(x.Certificates, Entry{
		Name: r.Name, Kind: r.Kind, Serial: pki.SerialHex(c.SerialNumber),
		NotBefore: c.NotBefore.UTC(), NotAfter: c.NotAfter.UTC(), SANs: sans, Status: StatusValid,
	})
}

func (x *index) revoked() []pki.Revoked {
	var out []pki.Revoked
	for _, c := range x.Certificates {
		if c.Status != StatusRevoked {
			continue
		}
		n, ok := new(big.Int).SetString(c.Serial, 16)
		if !ok {
			continue
		}
		out = append(out, pki.Revoked{Serial: n, At: c.RevokedAt, Reason: pki.Reasons[c.Reason]})
	}
	return out
}

// CertInfo describes a certificate for pki list.
type CertInfo struct {
	Entry
	// Current is false for superseded and revoked entries.
	Current bool `json:"current"`
	// File is the certificate's path while it is current.
	File string `json:"file,omitempty"`
}

// Certificates lists every certificate the state has issued, the CA
// first, then by name, newest last.
func (s *Store) Certificates() ([]CertInfo, error) {
	certPEM, err := os.ReadFile(s.path("pki", "ca.crt"))
	if err != nil {
		return nil, fmt.Errorf("reading the site CA: %w", err)
	}
	ca, err := pki.ParseCert(certPEM)
	if err != nil {
		return nil, err
	}
	out := []CertInfo{{Entry: Entry{Name: "ca", Kind: "ca", Serial: pki.SerialHex(ca.SerialNumber), NotBefore: ca.NotBefore.UTC(), NotAfter: ca.NotAfter.UTC(), Status: StatusValid}, Current: true, File: s.path("pki", "ca.crt")}}
	idx, err := loadIndex(s.path("pki", "index.json"))
	if err != nil {
		return nil, err
	}
	entries := append([]Entry(nil), idx.Certificates...)
	sort.SliceStable(entries, func(i, j int) bool { return entries[i].Name < entries[j].Name })
	for _, e := range entries {
		ci := CertInfo{Entry: e, Current: e.Status == StatusValid}
		if ci.Current {
			ci.File = s.path("pki", "issued", e.Name+".crt")
		}
		out = append(out, ci)
	}
	return out, nil
}

// CRLNextUpdate returns when the CRL must be re-signed by.
func (s *Store) CRLNextUpdate() (time.Time, error) {
	b, err := os.ReadFile(s.path("pki", "crl.pem"))
	if err != nil {
		return time.Time{}, err
	}
	ca, err := s.loadCA()
	if err != nil {
		return time.Time{}, err
	}
	crl, err := ca.ParseCRL(b)
	if err != nil {
		return time.Time{}, err
	}
	return crl.NextUpdate, nil
}

func (s *Store) loadCA() (*pki.CA, error) {
	certPEM, err := os.ReadFile(s.path("pki", "ca.crt"))
	if err != nil {
		return nil, fmt.Errorf("reading the site CA: %w", err)
	}
	keyPEM, err := readPrivate(s.path("pki", "ca.key"))
	if err != nil {
		return nil, err
	}
	return pki.LoadCA(certPEM, keyPEM)
}

// RenewCert issues a new key and certificate for a name the spec wants
// (its request in w). The old certificate is superseded, not revoked: a
// node keeps working with it until it is re-flashed; revoke it when it
// must stop working.
func (s *Store) RenewCert(name string, w Wants) (*x509.Certificate, error) {
	var req *pki.Request
	for i := range w.Certs {
		if w.Certs[i].Name == name {
			req = &w.Certs[i]
		}
	}
	if req == nil {
		return nil, fmt.Errorf("the spec has no certificate named %q; appliance pki list shows the names", name)
	}
	ca, err := s.loadCA()
	if err != nil {
		return nil, err
	}
	idx, err := loadIndex(s.path("pki", "index.json"))
	if err != nil {
		return nil, err
	}
	if err := mkdirPrivate(s.path("pki", "issued")); err != nil {
		return nil, err
	}
	e := &ensurer{s: s, w: w, res: &Result{}, now: s.now(), ca: ca, idx: idx}
	cert, err := e.issue(*req)
	if err != nil {
		return nil, err
	}
	if err := idx.save(s.path("pki", "index.json")); err != nil {
		return nil, err
	}
	return cert, nil
}

// Revoke revokes the current certificate of name and re-signs the CRL
// for the support period of w. The certificate and key move to
// pki/revoked/, out of every future build; the name gets no new
// certificate until pki renew.
func (s *Store) Revoke(name, reason string, w Wants) (*Entry, error) {
	if _, ok := pki.Reasons[reason]; !ok {
		return nil, fmt.Errorf("unknown reason %q; use one of unspecified, keyCompromise, affiliationChanged, superseded, cessationOfOperation", reason)
	}
	if name == "ca" {
		return nil, errors.New("the site CA cannot be revoked; to replace it, start a new state and re-flash every node")
	}
	ca, err := s.loadCA()
	if err != nil {
		return nil, err
	}
	idx, err := loadIndex(s.path("pki", "index.json"))
	if err != nil {
		return nil, err
	}
	last := idx.last(name)
	if last == nil {
		return nil, fmt.Errorf("no certificate named %q was issued; appliance pki list shows the names", name)
	}
	if last.Status == StatusRevoked {
		return nil, fmt.Errorf("%s's certificate was already revoked on %s", name, last.RevokedAt.Format(time.DateOnly))
	}
	last.Status = StatusRevoked
	last.RevokedAt = s.now().UTC().Truncate(time.Second)
	last.Reason = reason
	if err := mkdirPrivate(s.path("pki", "revoked")); err != nil {
		return nil, err
	}
	// The CRL goes out first: if anything below fails, the certificate
	// is revoked anyway, which is the safe side.
	e := &ensurer{s: s, w: w, res: &Result{}, now: s.now(), ca: ca, idx: idx}
	if err := e.writeCRL(); err != nil {
		return nil, err
	}
	for _, ext := range []string{".crt", ".key"} {
		from := s.path("pki", "issued", name+ext)
		if exists(from) {
			if err := os.Rename(from, s.path("pki", "revoked", name+"-"+last.Serial+ext)); err != nil {
				return nil, err
			}
		}
	}
	return last, nil
}

// ExtendCA signs a new certificate for the site CA with its own key and
// name, lasting twice the support period from now, and keeps the old
// one as pki/ca-SERIAL.crt. Every certificate the CA issued stays
// valid: the gateway gets the new CA certificate with the next build or
// push, and nodes with their next flash; until then they trust the
// gateway under the old one, as long as it lasts.
func (s *Store) ExtendCA(w Wants) (ext, old *x509.Certificate, err error) {
	ca, err := s.loadCA()
	if err != nil {
		return nil, nil, err
	}
	now := s.now()
	next, err := ca.Extend(now, w.caUntil(now))
	if err != nil {
		return nil, nil, err
	}
	kept := s.path("pki", "ca-"+pki.SerialHex(ca.Cert.SerialNumber)+".crt")
	if err := atomicfile.WriteFile(kept, ca.CertPEM, 0o644); err != nil {
		return nil, nil, err
	}
	if err := atomicfile.WriteFile(s.path("pki", "ca.crt"), next.CertPEM, 0o644); err != nil {
		return nil, nil, err
	}
	return next.Cert, ca.Cert, nil
}
