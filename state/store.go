// Package state keeps a site's generated state beside its spec, in
// .appliance/<site>/: the CA and every certificate, the CRL, the OTA
// signing keys, the gateway's SSH host keys, appliance's deploy key, and
// generated passwords and tokens. State is created on first use and
// reused after; nothing in it is ever regenerated silently. Private keys
// are 0600 in 0700 folders, and a key others can read is refused.
//
// Everything the CA signs lasts the site's support period from its
// issue, and the CA twice that. Ensure creates what is missing and
// reports; Renew, which every build calls (and push is to), renews what
// the gateway holds before it ends; Review says what Renew would do and
// what the user must do (nodes, the CA). RenewBefore says why, in full.
package state

import (
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/appliance/appliance/internal/atomicfile"
	"github.com/appliance/appliance/pki"
)

// FormatVersion is the layout version written to state.json.
const FormatVersion = 1

// Options control Open.
type Options struct {
	// Create makes the state folder when it does not exist yet.
	Create bool
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Spec is the spec's path as the user names it, for the commands
	// that messages suggest ("appliance pki renew SPEC NAME").
	Spec string
}

// Store is an open, locked state folder.
type Store struct {
	Dir  string
	spec string
	now  func() time.Time
	lock *os.File
}

// ErrNoState is returned by Open when the folder does not exist and
// Create is off.
var ErrNoState = errors.New("no state yet")

// Open opens the state folder, checks that no one else can read it, and
// locks it until Close.
func Open(dir string, o Options) (*Store, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		if !o.Create {
			return nil, fmt.Errorf("%w in %s; appliance plan or build creates it", ErrNoState, dir)
		}
		// The .appliance folder holds every site's keys: private too.
		if err := mkdirPrivate(filepath.Dir(dir)); err != nil {
			return nil, fmt.Errorf("creating state: %w", err)
		}
		if err := mkdirPrivate(dir); err != nil {
			return nil, fmt.Errorf("creating state: %w", err)
		}
	} else if err != nil {
		return nil, err
	}
	for _, sub := range []string{"", "pki", "pki/issued", "pki/revoked", "ota", "ssh", "secrets"} {
		p := filepath.Join(dir, sub)
		if sub != "" && !exists(p) {
			continue
		}
		if err := checkPrivateDir(p); err != nil {
			return nil, err
		}
	}
	lock, err := lockFile(filepath.Join(dir, ".lock"))
	if err != nil {
		return nil, err
	}
	return &Store{Dir: dir, spec: o.Spec, now: o.Now, lock: lock}, nil
}

// Close releases the lock.
func (s *Store) Close() error {
	if s.lock == nil {
		return nil
	}
	err := s.lock.Close()
	s.lock = nil
	return err
}

func (s *Store) path(elem ...string) string {
	return filepath.Join(append([]string{s.Dir}, elem...)...)
}

// SecretKind is the form of a generated secret.
type SecretKind string

// Kinds of generated secrets.
const (
	Password SecretKind = "password" // 24 characters, for people and INI files
	Token    SecretKind = "token"    // 256 bits, base64url, for APIs
)

// SecretWant is a generated secret a module needs.
type SecretWant struct {
	Name string // file name under secrets/, e.g. "grafana-admin-password"
	Kind SecretKind
}

// Wants is everything the site needs from its state.
type Wants struct {
	Site    string
	Certs   []pki.Request
	Secrets []SecretWant
	// OTA asks for the firmware signing keys (when the site has nodes).
	OTA bool
	// SupportYears is the site's support period; zero means
	// pki.DefaultYears.
	SupportYears int
}

// specToken stands for the spec's path in the commands that messages
// name; the store fills in Options.Spec.
const specToken = "{spec}"

// fill puts the spec's path into a message.
func (s *Store) fill(msg string) string {
	spec := s.spec
	if spec == "" {
		spec = "SPEC"
	} else if strings.ContainsAny(spec, " \t'\"$`\\;&|<>()*?[]#~") {
		spec = "'" + strings.ReplaceAll(spec, "'", `'\''`) + "'"
	}
	return strings.ReplaceAll(msg, specToken, spec)
}

// Problem is something in the state the user must act on.
type Problem struct {
	// Error problems stop a build; warnings do not.
	Error   bool   `json:"error"`
	Name    string `json:"name"`
	Message string `json:"message"`
}

// Result is what Ensure did, or in a dry run would do.
type Result struct {
	Created  []string  `json:"created"`
	Updated  []string  `json:"updated"`
	Problems []Problem `json:"problems"`
	// Due is what the next Renew (every build, and push) renews.
	Due []Renewal `json:"due"`
}

// Errors reports whether any problem stops a build.
func (r *Result) Errors() bool {
	for _, p := range r.Problems {
		if p.Error {
			return true
		}
	}
	return false
}

func (e *ensurer) problem(err bool, name, format string, args ...any) {
	e.res.Problems = append(e.res.Problems, Problem{Error: err, Name: name, Message: e.s.fill(fmt.Sprintf(format, args...))})
}

type stateFile struct {
	Version int       `json:"version"`
	Site    string    `json:"site"`
	Created time.Time `json:"created"`
}

// Ensure makes whatever w asks for that the state lacks, checks what is
// there, and reports both. With dryRun it writes nothing and reports
// what it would create.
func (s *Store) Ensure(w Wants, dryRun bool) (*Result, error) {
	res := &Result{Created: []string{}, Updated: []string{}, Problems: []Problem{}, Due: []Renewal{}}
	e := &ensurer{s: s, w: w, dry: dryRun, res: res, now: s.now()}
	steps := []struct {
		what string
		fn   func() error
	}{
		{"state record", e.record},
		{"site CA", e.ensureCA},
		{"certificates", e.certs},
		{"CRL", e.crl},
		{"SSH keys", e.ssh},
		{"OTA keys", e.ota},
		{"secrets", e.secrets},
		{"lifetimes", e.review},
	}
	for _, st := range steps {
		if err := st.fn(); err != nil {
			return nil, fmt.Errorf("%s: %w", st.what, err)
		}
	}
	return res, nil
}

type ensurer struct {
	s   *Store
	w   Wants
	dry bool
	res *Result
	now time.Time
	ca  *pki.CA
	idx *index
}

func (e *ensurer) mkdir(sub string) error {
	if e.dry {
		return nil
	}
	return mkdirPrivate(e.s.path(sub))
}

func (e *ensurer) record() error {
	p := e.s.path("state.json")
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		if e.dry {
			return nil
		}
		b, _ := json.MarshalIndent(stateFile{Version: FormatVersion, Site: e.w.Site, Created: e.now.UTC()}, "", "  ")
		if err := atomicfile.WriteFile(p, append(b, '\n'), 0o600); err != nil {
			return err
		}
		return atomicfile.WriteFile(e.s.path("README"), []byte(readme), 0o600)
	}
	if err != nil {
		return err
	}
	var sf stateFile
	if err := json.Unmarshal(b, &sf); err != nil {
		return fmt.Errorf("%s is damaged: %w", p, err)
	}
	if sf.Version > FormatVersion {
		return fmt.Errorf("%s was written by a newer appliance (layout %d); upgrade appliance", p, sf.Version)
	}
	if sf.Site != e.w.Site {
		return fmt.Errorf("%s belongs to site %q, not %q; point --state at the right folder", e.s.Dir, sf.Site, e.w.Site)
	}
	return nil
}

const readme = `This folder is a site's appliance state: its CA and certificates,
OTA signing keys, SSH keys and generated passwords.

Back it up, and keep it out of version control: whoever has it can
impersonate the gateway and sign firmware for the nodes.
`

func (e *ensurer) ensureCA() error {
	certPath, keyPath := e.s.path("pki", "ca.crt"), e.s.path("pki", "ca.key")
	haveCert, haveKey := exists(certPath), exists(keyPath)
	idx, err := loadIndex(e.s.path("pki", "index.json"))
	if err != nil {
		return err
	}
	e.idx = idx
	switch {
	case haveCert && haveKey:
		certPEM, err := os.ReadFile(certPath)
		if err != nil {
			return err
		}
		keyPEM, err := readPrivate(keyPath)
		if err != nil {
			return err
		}
		ca, err := pki.LoadCA(certPEM, keyPEM)
		if err != nil {
			return fmt.Errorf("%s: %w", e.s.path("pki"), err)
		}
		e.ca = ca
		return nil
	case !haveCert && !haveKey && len(idx.Certificates) == 0:
		e.res.Created = append(e.res.Created, "site CA (ECDSA P-256)")
		if e.dry {
			return nil
		}
		if err := e.mkdir("pki"); err != nil {
			return err
		}
		ca, keyPEM, err := pki.NewCA(e.w.Site, e.now, e.w.caUntil(e.now))
		if err != nil {
			return err
		}
		// Key first: a certificate on disk always has its key.
		if err := atomicfile.WriteFile(keyPath, keyPEM, 0o600); err != nil {
			return err
		}
		if err := atomicfile.WriteFile(certPath, ca.CertPEM, 0o644); err != nil {
			return err
		}
		e.ca = ca
		return nil
	}
	missing := certPath
	if haveCert {
		missing = keyPath
	}
	return fmt.Errorf("%s is missing, but the state holds certificates issued by the site CA; restore it from your backup. appliance will not make a new CA silently: that would lock out every node", missing)
}

func (e *ensurer) certs() error {
	if e.ca == nil {
		// Dry run on a new state: everything would be issued.
		for _, r := range e.w.Certs {
			e.res.Created = append(e.res.Created, fmt.Sprintf("%s certificate %s", r.Kind, r.Name))
		}
		return nil
	}
	if err := e.mkdir("pki/issued"); err != nil {
		return err
	}
	wanted := map[string]bool{}
	changed := false
	for _, r := range e.w.Certs {
		wanted[r.Name] = true
		crtPath, keyPath := e.s.path("pki", "issued", r.Name+".crt"), e.s.path("pki", "issued", r.Name+".key")
		last := e.idx.last(r.Name)
		if !exists(crtPath) {
			switch {
			case last != nil && last.Status == StatusRevoked && r.Kind == pki.Node:
				// The gateway must get the CRL that refuses the node: that
				// stops no build or push; the node gets no bundle.
				e.problem(false, r.Name, "certificate revoked on %s: the gateway refuses the node and the build makes it no bundle; run appliance pki renew {spec} %s to give it a new one, or remove it from the spec", last.RevokedAt.Format(time.DateOnly), r.Name)
				continue
			case last != nil && last.Status == StatusRevoked:
				e.problem(true, r.Name, "certificate revoked on %s; run appliance pki renew {spec} %s to issue a new one", last.RevokedAt.Format(time.DateOnly), r.Name)
				continue
			case last != nil:
				e.problem(true, r.Name, "certificate file %s is missing; restore it from your backup, or run appliance pki renew {spec} %s", crtPath, r.Name)
				continue
			}
			e.res.Created = append(e.res.Created, fmt.Sprintf("%s certificate %s", r.Kind, r.Name))
			if e.dry {
				continue
			}
			if _, err := e.issue(r); err != nil {
				return err
			}
			changed = true
			continue
		}
		crtPEM, err := os.ReadFile(crtPath)
		if err != nil {
			return err
		}
		cert, err := pki.ParseCert(crtPEM)
		if err != nil {
			return fmt.Errorf("%s: %w", crtPath, err)
		}
		keyPEM, err := readPrivate(keyPath)
		if err != nil {
			return fmt.Errorf("the key of certificate %s: %w", r.Name, err)
		}
		if !pki.SameKey(cert, keyPEM) {
			return errors.New(e.s.fill(fmt.Sprintf("%s does not belong to %s; restore both from your backup, or run appliance pki renew {spec} %s", keyPath, crtPath, r.Name)))
		}
		if err := e.ca.Issued(cert, r.Kind); err != nil {
			return errors.New(e.s.fill(fmt.Sprintf("%s was not issued by this state's CA for %s use (%v); run appliance pki renew {spec} %s", crtPath, r.Kind, err, r.Name)))
		}
		if last == nil || pki.SerialHex(cert.SerialNumber) != last.Serial {
			// Written before a crash kept the index from recording it.
			e.idx.add(r, cert)
			changed = true
		}
		if ok, missing := pki.Covers(cert, r); !ok {
			e.problem(true, r.Name, "certificate does not cover %s, which the spec now names; run appliance pki renew {spec} %s", missing, r.Name)
		}
	}
	for _, name := range e.idx.names() {
		if last := e.idx.last(name); !wanted[name] && last.Status == StatusValid && exists(e.s.path("pki", "issued", name+".crt")) {
			e.problem(false, name, "certificate is still valid but no longer in the spec; if the device is gone, run appliance pki revoke {spec} %s", name)
		}
	}
	if changed && !e.dry {
		return e.idx.save(e.s.path("pki", "index.json"))
	}
	return nil
}

// issue makes a new key and certificate for r, lasting the support
// period (or as long as the CA, if that is sooner).
func (e *ensurer) issue(r pki.Request) (*x509.Certificate, error) {
	r.Until = e.w.until(e.now)
	crtPEM, keyPEM, cert, err := e.ca.Issue(r, e.now)
	if err != nil {
		return nil, err
	}
	if err := atomicfile.WriteFile(e.s.path("pki", "issued", r.Name+".key"), keyPEM, 0o600); err != nil {
		return nil, err
	}
	if err := atomicfile.WriteFile(e.s.path("pki", "issued", r.Name+".crt"), crtPEM, 0o644); err != nil {
		return nil, err
	}
	e.idx.add(r, cert)
	return cert, nil
}

func (e *ensurer) crl() error {
	if e.ca == nil {
		e.res.Created = append(e.res.Created, "CRL")
		return nil
	}
	p := e.s.path("pki", "crl.pem")
	why := "CRL"
	if b, err := os.ReadFile(p); err == nil {
		crl, err := e.ca.ParseCRL(b)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		listed := map[string]bool{}
		for _, r := range crl.RevokedCertificateEntries {
			listed[pki.SerialHex(r.SerialNumber)] = true
		}
		complete := true
		for _, c := range e.idx.Certificates {
			if c.Status == StatusRevoked && !listed[c.Serial] {
				complete = false
			}
		}
		// Its time runs out in Renew's hands; here it only must list
		// every revocation (a crash can come between the two).
		if complete {
			return nil
		}
		if !e.dry {
			e.res.Updated = append(e.res.Updated, "CRL (revocations added)")
		}
	} else if errors.Is(err, fs.ErrNotExist) {
		e.res.Created = append(e.res.Created, why)
	} else {
		return err
	}
	if e.dry {
		return nil
	}
	return e.writeCRL()
}

func (e *ensurer) writeCRL() error {
	e.idx.CRLNumber++
	crl, err := e.ca.CRL(e.idx.revoked(), e.idx.CRLNumber, e.now, e.w.until(e.now))
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(e.s.path("pki", "crl.pem"), crl, 0o644); err != nil {
		return err
	}
	return e.idx.save(e.s.path("pki", "index.json"))
}

// SSH key files in ssh/.
const (
	HostKeyEd25519 = "ssh_host_ed25519_key"
	HostKeyECDSA   = "ssh_host_ecdsa_key"
	DeployKey      = "deploy_ed25519"
)

func (e *ensurer) ssh() error {
	keys := []struct {
		file, what string
		typ        pki.SSHKeyType
	}{
		{HostKeyEd25519, "SSH host key (Ed25519)", pki.SSHEd25519},
		{HostKeyECDSA, "SSH host key (ECDSA)", pki.SSHECDSA},
		{DeployKey, "deploy key (Ed25519)", pki.SSHEd25519},
	}
	for _, k := range keys {
		p := e.s.path("ssh", k.file)
		if exists(p) {
			b, err := readPrivate(p)
			if err != nil {
				return err
			}
			if _, err := pki.ParseSSHKey(b); err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
			continue
		}
		e.res.Created = append(e.res.Created, k.what)
		if e.dry {
			continue
		}
		if err := e.mkdir("ssh"); err != nil {
			return err
		}
		comment := "appliance " + e.w.Site
		if k.file == DeployKey {
			comment = "appliance-deploy@" + e.w.Site
		}
		priv, pub, err := pki.NewSSHKey(k.typ, comment)
		if err != nil {
			return err
		}
		if err := atomicfile.WriteFile(p, priv, 0o600); err != nil {
			return err
		}
		if err := atomicfile.WriteFile(p+".pub", pub, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// OTA key files in ota/.
const (
	SecureBootKey  = "secure-boot-rsa3072.pem"
	ManifestKey    = "manifest-ecdsa-p256.pem"
	publicSuffixed = ".pub.pem"
)

func (e *ensurer) ota() error {
	if !e.w.OTA {
		return nil
	}
	keys := []struct {
		file, what string
		gen        func() ([]byte, []byte, error)
	}{
		{SecureBootKey, "firmware signing key (RSA-3072, Secure Boot V2)", pki.NewSecureBootKey},
		{ManifestKey, "OTA manifest key (ECDSA P-256)", pki.NewECDSAKey},
	}
	for _, k := range keys {
		p := e.s.path("ota", k.file)
		if exists(p) {
			b, err := readPrivate(p)
			if err != nil {
				return err
			}
			if _, err := pki.ParseKey(b); err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
			continue
		}
		e.res.Created = append(e.res.Created, k.what)
		if e.dry {
			continue
		}
		if err := e.mkdir("ota"); err != nil {
			return err
		}
		priv, pub, err := k.gen()
		if err != nil {
			return err
		}
		if err := atomicfile.WriteFile(p, priv, 0o600); err != nil {
			return err
		}
		if err := atomicfile.WriteFile(strings.TrimSuffix(p, ".pem")+publicSuffixed, pub, 0o644); err != nil {
			return err
		}
	}
	return nil
}

func (e *ensurer) secrets() error {
	sort.Slice(e.w.Secrets, func(i, j int) bool { return e.w.Secrets[i].Name < e.w.Secrets[j].Name })
	for _, sw := range e.w.Secrets {
		p := e.s.path("secrets", sw.Name)
		if exists(p) {
			b, err := readPrivate(p)
			if err != nil {
				return err
			}
			if len(strings.TrimSpace(string(b))) == 0 {
				return fmt.Errorf("%s is empty; restore it from your backup, or delete it to have a new %s made (and change it where it is used)", p, sw.Kind)
			}
			continue
		}
		e.res.Created = append(e.res.Created, fmt.Sprintf("%s %s", sw.Kind, sw.Name))
		if e.dry {
			continue
		}
		if err := e.mkdir("secrets"); err != nil {
			return err
		}
		var v string
		var err error
		if sw.Kind == Token {
			v, err = pki.NewToken()
		} else {
			v, err = pki.NewPassword(24)
		}
		if err != nil {
			return err
		}
		if err := atomicfile.WriteFile(p, []byte(v+"\n"), 0o600); err != nil {
			return err
		}
	}
	return nil
}

// Secret reads a generated secret.
func (s *Store) Secret(name string) (string, error) {
	b, err := readPrivate(s.path("secrets", name))
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// Preview reports what Ensure would do for w, writing nothing and
// creating no folder.
func Preview(dir string, w Wants, o Options) (*Result, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if !exists(dir) {
		return (&Store{Dir: dir, spec: o.Spec, now: o.Now}).Ensure(w, true)
	}
	o.Create = false
	s, err := Open(dir, o)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	return s.Ensure(w, true)
}

// ReadFile reads a file of the state by its path in the state folder,
// such as "pki/issued/mosquitto.key", refusing a private file others can
// read.
func (s *Store) ReadFile(rel string) ([]byte, error) {
	clean := filepath.Clean(rel)
	if filepath.IsAbs(clean) || clean == ".." || strings.HasPrefix(clean, "../") {
		return nil, fmt.Errorf("%q is not a path inside the state", rel)
	}
	p := s.path(clean)
	if private(clean) {
		return readPrivate(p)
	}
	return os.ReadFile(p)
}

// private reports whether a state file holds a secret, by the layout
// this package writes: whatever its mode now says.
func private(rel string) bool {
	switch {
	case strings.HasPrefix(rel, "secrets/"), strings.HasSuffix(rel, ".key"):
		return true
	case strings.HasPrefix(rel, "ssh/"):
		return !strings.HasSuffix(rel, ".pub")
	case strings.HasPrefix(rel, "ota/"):
		return !strings.HasSuffix(rel, publicSuffixed)
	}
	return false
}
