package rootfs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/appliance/appliance/images/apt"
	"github.com/appliance/appliance/images/resolve"
	"github.com/appliance/appliance/internal/atomicfile"
)

// lockFormat is the version of the lock file's layout.
const lockFormat = 1

// Lock is a resolved package set: what appliance.lock holds. It is
// enough to build without reading any index: every package's URL and
// SHA-256 are in it.
type Lock struct {
	Format int `json:"format"`
	// Inputs is the checksum of the request the lock was made for
	// (Request.Inputs).
	Inputs  string       `json:"inputs"`
	Suite   string       `json:"suite"`
	Arch    string       `json:"arch"`
	Base    string       `json:"base"`
	Sources []LockSource `json:"sources"`
	// Requested are the packages asked for on top of the base set.
	Requested []string      `json:"requested"`
	Packages  []LockPackage `json:"packages"`
}

// LockSource is a source as the lock records it.
type LockSource struct {
	Name       string   `json:"name"`
	URL        string   `json:"url"`
	Suite      string   `json:"suite"`
	Components []string `json:"components"`
	// Keys are the fingerprints of the keyring's primary keys.
	Keys     []string `json:"keys"`
	Priority int      `json:"priority"`
	// Signer is the key that signed the Release the lock was made from.
	Signer string `json:"signer,omitempty"`
	// Date is that Release's Date: a later lock refuses an older one
	// (a replay).
	Date time.Time `json:"date,omitzero"`
}

// LockPackage is one package of the root file system.
type LockPackage struct {
	Name          string `json:"name"`
	Version       string `json:"version"`
	Architecture  string `json:"architecture"`
	Source        string `json:"source"`
	SourceVersion string `json:"source_version,omitempty"`
	// Repo is the name of the spec's source it comes from.
	Repo   string `json:"repo"`
	URL    string `json:"url"`
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
	// InstalledSize is in KiB, as the index says.
	InstalledSize int64 `json:"installed_size,omitempty"`
	// Base marks packages of the base set.
	Base bool `json:"base,omitempty"`
	// Unpacked is the SHA-256 of the package's unpacked form (its
	// manifest in the cache), as Unpack made it: a cached manifest is
	// used only if it has this hash, so that what the cache holds is
	// checked against something outside it, never trusted. It is not
	// part of the lock file: it follows from the .deb and appliance's
	// version, and is kept in the site's state (LoadUnpacked,
	// SaveUnpacked).
	Unpacked string `json:"-"`
}

// ID names a locked package for messages.
func (p *LockPackage) ID() string { return p.Name + " " + p.Version }

// Fits reports whether the lock was made for this request.
func (l *Lock) Fits(r *Request) bool { return l.Format == lockFormat && l.Inputs == r.Inputs() }

// DownloadSize is the sum of the packages' sizes.
func (l *Lock) DownloadSize() int64 {
	var n int64
	for _, p := range l.Packages {
		n += p.Size
	}
	return n
}

// ReadLock reads a lock file. A missing file is reported with
// os.ErrNotExist.
func ReadLock(path string) (*Lock, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var l Lock
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&l); err != nil {
		return nil, fmt.Errorf("%s: %w; delete it and run appliance lock", path, err)
	}
	if l.Format != lockFormat {
		return nil, fmt.Errorf("%s has format %d; this appliance reads format %d: run appliance lock", path, l.Format, lockFormat)
	}
	for _, p := range l.Packages {
		if !apt.IsSHA256(p.SHA256) || p.URL == "" || p.Name == "" {
			return nil, fmt.Errorf("%s: package %q has no URL or SHA-256; run appliance lock", path, p.Name)
		}
		if err := apt.CheckPackage(p.Name, p.Version, p.Architecture); err != nil {
			return nil, fmt.Errorf("%s: %w; run appliance lock", path, err)
		}
	}
	return &l, nil
}

// UnpackedName is the file, in a site's state folder, that records
// the hashes of the site's packages' unpacked forms.
const UnpackedName = "unpacked.json"

// unpackedRecord is that file.
type unpackedRecord struct {
	Format int `json:"format"`
	// Packages maps a .deb's SHA-256 to its manifest's.
	Packages map[string]string `json:"packages"`
}

// LoadUnpacked sets the Unpacked hashes of the lock's packages from the
// record at path (in the site's state, which is trusted as the cache is
// not); a missing record sets none.
func (l *Lock) LoadUnpacked(path string) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var r unpackedRecord
	if err := json.Unmarshal(b, &r); err != nil || r.Format != manifestFormat {
		// Unreadable or of another format: every package is
		// unpacked again, and the record written anew.
		return nil
	}
	for i, p := range l.Packages {
		if v := r.Packages[p.SHA256]; apt.IsSHA256(v) {
			l.Packages[i].Unpacked = v
		}
	}
	return nil
}

// SaveUnpacked records the Unpacked hashes of the lock's packages at
// path, if they differ from what it holds.
func (l *Lock) SaveUnpacked(path string) error {
	r := unpackedRecord{Format: manifestFormat, Packages: map[string]string{}}
	for _, p := range l.Packages {
		if p.Unpacked != "" {
			r.Packages[p.SHA256] = p.Unpacked
		}
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, b) {
		return nil
	}
	return atomicfile.WriteFile(path, b, 0o600)
}

// Encode writes the lock as indented JSON, packages sorted by name.
func (l *Lock) Encode(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(l)
}

// WriteFile writes the lock atomically.
func (l *Lock) WriteFile(path string) error {
	var b bytes.Buffer
	if err := l.Encode(&b); err != nil {
		return err
	}
	return atomicfile.WriteFile(path, b.Bytes(), 0o644)
}

// RefuseOlder makes the request refuse, for every source that l was
// made from (the same name, URL and suite), a Release older than the one
// l records: a replay of an old Release cannot take a relock back in
// time, even with the cache emptied.
func (r *Request) RefuseOlder(l *Lock) {
	if l == nil {
		return
	}
	for _, s := range r.Sources {
		for _, ls := range l.Sources {
			if ls.Name == s.Name && ls.URL == strings.TrimSuffix(s.URL, "/") && ls.Suite == s.Suite {
				s.NotBefore = ls.Date
			}
		}
	}
}

// Universe fetches and verifies every source's Release and indexes and
// indexes the packages they offer for the request's architecture, in
// the order of the sources and of their components, which decides ties
// between providers as apt's sources.list order does (see package
// resolve).
func Universe(ctx context.Context, c *apt.Client, req *Request) (*resolve.Universe, map[string]*apt.Release, error) {
	if len(req.Sources) == 0 {
		return nil, nil, errors.New("no apt sources; name at least one in the spec's os block")
	}
	var all []*apt.Package
	releases := map[string]*apt.Release{}
	for _, s := range req.Sources {
		rel, err := c.Release(ctx, s)
		if err != nil {
			return nil, nil, err
		}
		releases[s.Name] = rel
		pkgs, err := c.Packages(ctx, s, rel, req.Arch)
		if err != nil {
			return nil, nil, err
		}
		all = append(all, pkgs...)
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	u, err := resolve.NewUniverse(all, req.Arch)
	return u, releases, err
}

// Plan reads the sources and resolves the request: the base set plus
// the requested packages and their dependencies.
func Plan(ctx context.Context, c *apt.Client, req *Request) (*Lock, error) {
	u, releases, err := Universe(ctx, c, req)
	if err != nil {
		return nil, err
	}
	return plan(ctx, u, releases, req)
}

// plan resolves the request over indexed sources; releases are the
// sources' verified Releases, by source name.
func plan(ctx context.Context, u *resolve.Universe, releases map[string]*apt.Release, req *Request) (*Lock, error) {
	base := u.Required()
	want := append(append([]string{}, base...), req.Packages...)
	pkgs, err := resolve.Resolve(u, want)
	if err != nil {
		return nil, fmt.Errorf("resolving the packages: %w", err)
	}
	// The resolver does not watch ctx: a plan interrupted while it ran
	// ends here, and nothing is made of it.
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	l := &Lock{Format: lockFormat, Inputs: req.Inputs(), Suite: req.Suite, Arch: req.Arch, Base: baseRule, Sources: req.lockSources()}
	for i := range l.Sources {
		rel := releases[l.Sources[i].Name]
		l.Sources[i].Signer, l.Sources[i].Date = rel.Signer, rel.Date.UTC()
	}
	l.Requested = append([]string{}, req.Packages...)
	sort.Strings(l.Requested)
	l.Requested = slices.Compact(l.Requested)
	for _, p := range pkgs {
		_, isBase := slices.BinarySearch(base, p.Name)
		l.Packages = append(l.Packages, LockPackage{
			Name: p.Name, Version: p.Version, Architecture: p.Architecture,
			Source: p.Source, SourceVersion: p.SourceVersion,
			Repo: p.Repo.Name, URL: p.URL(), SHA256: p.SHA256, Size: p.Size,
			InstalledSize: p.InstalledSize, Base: isBase,
		})
	}
	return l, nil
}

// Diff summarises how a new lock differs from an old one, for lock's
// output: added, removed and changed package names.
func Diff(old, cur *Lock) (added, removed, changed []string) {
	om := map[string]string{}
	if old != nil {
		for _, p := range old.Packages {
			om[p.Name] = p.Version
		}
	}
	nm := map[string]bool{}
	for _, p := range cur.Packages {
		nm[p.Name] = true
		v, ok := om[p.Name]
		switch {
		case !ok:
			added = append(added, p.Name)
		case v != p.Version:
			changed = append(changed, fmt.Sprintf("%s %s → %s", p.Name, v, p.Version))
		}
	}
	if old != nil {
		for _, p := range old.Packages {
			if !nm[p.Name] {
				removed = append(removed, p.Name)
			}
		}
	}
	return added, removed, changed
}

// Changes says how a request differs from the one the lock was made
// for, in words ("packages added: chrony"); empty when the lock fits.
func (l *Lock) Changes(r *Request) []string {
	if l.Fits(r) {
		return nil
	}
	var out []string
	if l.Format != lockFormat {
		out = append(out, fmt.Sprintf("lock format %d, not %d", l.Format, lockFormat))
	}
	if l.Suite != r.Suite {
		out = append(out, fmt.Sprintf("suite %s → %s", l.Suite, r.Suite))
	}
	if l.Arch != r.Arch {
		out = append(out, fmt.Sprintf("architecture %s → %s", l.Arch, r.Arch))
	}
	if l.Base != baseRule {
		out = append(out, fmt.Sprintf("base set %q → %q", l.Base, baseRule))
	}
	old := map[string]LockSource{}
	for _, s := range l.Sources {
		s.Signer, s.Date = "", time.Time{}
		old[s.Name] = s
	}
	now := map[string]bool{}
	for _, s := range r.lockSources() {
		now[s.Name] = true
		o, ok := old[s.Name]
		switch {
		case !ok:
			out = append(out, "source added: "+s.Name)
		case o.URL != s.URL || o.Suite != s.Suite || strings.Join(o.Components, " ") != strings.Join(s.Components, " "):
			out = append(out, "source changed: "+s.Name)
		case strings.Join(o.Keys, " ") != strings.Join(s.Keys, " "):
			out = append(out, "keyring changed: "+s.Name)
		case o.Priority != s.Priority:
			out = append(out, fmt.Sprintf("priority of %s %d → %d", s.Name, o.Priority, s.Priority))
		}
	}
	for _, s := range l.Sources {
		if !now[s.Name] {
			out = append(out, "source removed: "+s.Name)
		}
	}
	want := map[string]bool{}
	for _, p := range r.Packages {
		want[p] = true
	}
	had := map[string]bool{}
	var added, removed []string
	for _, p := range l.Requested {
		had[p] = true
		if !want[p] {
			removed = append(removed, p)
		}
	}
	for p := range want {
		if !had[p] {
			added = append(added, p)
		}
	}
	sort.Strings(added)
	if len(added) > 0 {
		out = append(out, "packages added: "+strings.Join(added, ", "))
	}
	if len(removed) > 0 {
		out = append(out, "packages removed: "+strings.Join(removed, ", "))
	}
	if len(out) == 0 {
		out = append(out, "inputs checksum differs")
	}
	return out
}

// StaleError is a lock made for another request: the spec (or the
// modules' packages, or a keyring) changed since it was written.
type StaleError struct {
	LockPath, SpecPath string
	Changes            []string
}

func (e *StaleError) Error() string {
	return fmt.Sprintf("the spec changed since %s was written (%s); run appliance lock %s", e.LockPath, strings.Join(e.Changes, "; "), e.SpecPath)
}

// LoadLock reads the lock at path (the spec's, see spec.Location) for a
// build: nil and no error when there is none (the build then plans), a
// *StaleError naming specPath when it no longer fits the request.
func LoadLock(path, specPath string, req *Request) (*Lock, error) {
	l, err := ReadLock(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if ch := l.Changes(req); len(ch) > 0 {
		return nil, &StaleError{LockPath: path, SpecPath: specPath, Changes: ch}
	}
	return l, nil
}
