// Package resolve picks the packages of a root file system: the requested
// ones and everything they depend on, the way apt-get install would on an
// empty system with Recommends off.
//
// Candidates. Of every package name, only one version can be installed:
// the candidate, taken from the sources of the highest priority that
// carry the name and, among those, the highest version — apt's rule with
// pinning. Only the architecture asked for and "all" count.
//
// Dependencies. Pre-Depends and Depends are followed with their
// alternatives in order and their version constraints; a virtual name is
// satisfied through Provides (a versioned dependency only by a versioned
// Provides). Conflicts and Breaks are checked both ways: a choice that
// conflicts with what is already chosen is skipped, and if no alternative
// remains the resolution backtracks to the last choice. Like apt, a
// package first takes all its direct dependencies, then each of those
// takes theirs, so that a dependency one sibling satisfies is not
// satisfied a second time by another alternative. Recommends and
// Suggests are not followed.
//
// Determinism. Everything iterates in a fixed order (requests sorted,
// relations in control-file order, providers by priority class then
// name), so the same indexes and request always give the same set.
package resolve

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/appliance/appliance/images/apt"
	"pault.ag/go/debian/dependency"
	"pault.ag/go/debian/version"
)

// Universe is every package the sources offer for one architecture.
type Universe struct {
	Arch       string
	candidates map[string]*cand
	providers  map[string][]provider
	all        map[string][]*apt.Package // every version of a name, for messages
}

type cand struct {
	pkg *apt.Package
	ver version.Version
	// parsed lazily
	parsed    bool
	deps      []dependency.Relation
	conflicts []dependency.Possibility
	provides  []dependency.Possibility
}

type provider struct {
	c   *cand
	ver string // "" for an unversioned Provides
}

// NewUniverse indexes packages. Packages of other architectures are
// ignored; of every name the candidate is kept (see the package doc).
func NewUniverse(pkgs []*apt.Package, arch string) (*Universe, error) {
	u := &Universe{Arch: arch, candidates: map[string]*cand{}, providers: map[string][]provider{}, all: map[string][]*apt.Package{}}
	for _, p := range pkgs {
		if p.Architecture != arch && p.Architecture != "all" {
			continue
		}
		u.all[p.Name] = append(u.all[p.Name], p)
		v, err := version.Parse(p.Version)
		if err != nil {
			return nil, fmt.Errorf("%s: version %q: %w", p.Name, p.Version, err)
		}
		c := &cand{pkg: p, ver: v}
		old := u.candidates[p.Name]
		if old == nil || better(c, old) {
			u.candidates[p.Name] = c
		}
	}
	names := make([]string, 0, len(u.candidates))
	for n := range u.candidates {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		c := u.candidates[n]
		if c.pkg.Provides == "" {
			continue
		}
		if err := c.parse(); err != nil {
			return nil, err
		}
		for _, pv := range c.provides {
			v := ""
			if pv.Version != nil {
				v = pv.Version.Number
			}
			u.providers[pv.Name] = append(u.providers[pv.Name], provider{c: c, ver: v})
		}
	}
	for n, ps := range u.providers {
		sort.SliceStable(ps, func(i, j int) bool {
			a, b := ps[i].c.pkg, ps[j].c.pkg
			if ra, rb := priorityRank(a), priorityRank(b); ra != rb {
				return ra < rb
			}
			return a.Name < b.Name
		})
		u.providers[n] = ps
	}
	return u, nil
}

// better reports whether a is preferred to b as the candidate of a name:
// higher source priority first, then higher version; on a tie the first
// one read stays, so sources listed earlier win equal versions.
func better(a, b *cand) bool {
	if a.pkg.Repo != nil && b.pkg.Repo != nil && a.pkg.Repo.Priority != b.pkg.Repo.Priority {
		return a.pkg.Repo.Priority > b.pkg.Repo.Priority
	}
	return version.Compare(a.ver, b.ver) > 0
}

// priorityRank orders providers of a virtual package as apt prefers
// them: essential and higher Priority first.
func priorityRank(p *apt.Package) int {
	if p.Essential {
		return 0
	}
	switch p.Priority {
	case "required":
		return 1
	case "important":
		return 2
	case "standard":
		return 3
	case "optional":
		return 4
	}
	return 5
}

func (c *cand) parse() error {
	if c.parsed {
		return nil
	}
	p := c.pkg
	rel := func(field, s string) ([]dependency.Relation, error) {
		if strings.TrimSpace(s) == "" {
			return nil, nil
		}
		d, err := dependency.Parse(s)
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", p.ID(), field, err)
		}
		return d.Relations, nil
	}
	pre, err := rel("Pre-Depends", p.PreDepends)
	if err != nil {
		return err
	}
	dep, err := rel("Depends", p.Depends)
	if err != nil {
		return err
	}
	c.deps = append(pre, dep...)
	for _, f := range []struct{ name, val string }{{"Conflicts", p.Conflicts}, {"Breaks", p.Breaks}} {
		rs, err := rel(f.name, f.val)
		if err != nil {
			return err
		}
		for _, r := range rs {
			c.conflicts = append(c.conflicts, r.Possibilities...)
		}
	}
	prov, err := rel("Provides", p.Provides)
	if err != nil {
		return err
	}
	for _, r := range prov {
		c.provides = append(c.provides, r.Possibilities...)
	}
	c.parsed = true
	return nil
}

// Candidate returns the package a name would install, or nil.
func (u *Universe) Candidate(name string) *apt.Package {
	if c := u.candidates[name]; c != nil {
		return c.pkg
	}
	return nil
}

// Required lists the candidates that are Essential or of Priority
// required, sorted: the base every Debian system has, and what
// debootstrap and mmdebstrap's "required" variant install before
// anything else.
func (u *Universe) Required() []string {
	var out []string
	for n, c := range u.candidates {
		if c.pkg.Essential || c.pkg.Priority == "required" {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// Error is a request that cannot be satisfied, with the chain of
// dependencies that leads to the failure.
type Error struct {
	Chain  []string
	Reason string
}

func (e *Error) Error() string {
	return strings.Join(e.Chain, " → ") + ": " + e.Reason
}

// maxSteps bounds backtracking: Debian resolves in a few thousand.
const maxSteps = 200000

type solver struct {
	u        *Universe
	selected map[string]*cand
	// providedBy maps a name to the selected packages that provide it
	// (each package provides its own name at its version).
	providedBy map[string][]provider
	undo       []func()
	steps      int
}

// Resolve returns the packages to install for the requested names,
// sorted by name, or an *Error naming the chain that fails.
func Resolve(u *Universe, want []string) ([]*apt.Package, error) {
	s := &solver{u: u, selected: map[string]*cand{}, providedBy: map[string][]provider{}}
	want = append([]string(nil), want...)
	sort.Strings(want)
	var roots []*cand
	for _, name := range want {
		if s.selected[name] != nil {
			continue
		}
		c, err := s.top(name)
		if err != nil {
			return nil, err
		}
		if s.selected[c.pkg.Name] == c {
			continue
		}
		if err := s.conflict(c); err != nil {
			return nil, &Error{Chain: []string{name}, Reason: err.Error()}
		}
		s.mark(c)
		roots = append(roots, c)
	}
	for _, c := range roots {
		if err := s.deps(c, []string{c.pkg.Name}); err != nil {
			return nil, err
		}
	}
	out := make([]*apt.Package, 0, len(s.selected))
	for _, c := range s.selected {
		out = append(out, c.pkg)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// top finds what a requested name installs: its candidate, or the only
// provider of a virtual name.
func (s *solver) top(name string) (*cand, error) {
	if c := s.u.candidates[name]; c != nil {
		if err := c.parse(); err != nil {
			return nil, err
		}
		return c, nil
	}
	switch ps := s.u.providers[name]; len(ps) {
	case 0:
		return nil, &Error{Chain: []string{name}, Reason: "not in any source"}
	case 1:
		return ps[0].c, ps[0].c.parse()
	default:
		var names []string
		for _, p := range ps {
			names = append(names, p.c.pkg.Name)
		}
		return nil, &Error{Chain: []string{name}, Reason: "a virtual package provided by " + strings.Join(names, ", ") + "; name one of them"}
	}
}

func (s *solver) mark(c *cand) {
	name := c.pkg.Name
	s.selected[name] = c
	add := func(n, v string) {
		s.providedBy[n] = append(s.providedBy[n], provider{c: c, ver: v})
	}
	add(name, c.pkg.Version)
	for _, pv := range c.provides {
		v := ""
		if pv.Version != nil {
			v = pv.Version.Number
		}
		add(pv.Name, v)
	}
	s.undo = append(s.undo, func() {
		delete(s.selected, name)
		s.providedBy[name] = s.providedBy[name][:len(s.providedBy[name])-1]
		for _, pv := range c.provides {
			l := s.providedBy[pv.Name]
			s.providedBy[pv.Name] = l[:len(l)-1]
		}
	})
}

func (s *solver) rollback(to int) {
	for len(s.undo) > to {
		s.undo[len(s.undo)-1]()
		s.undo = s.undo[:len(s.undo)-1]
	}
}

// matches reports whether a provider satisfies a possibility's version.
func matches(pv provider, p dependency.Possibility) bool {
	if p.Version == nil {
		return true
	}
	if pv.ver == "" {
		return false
	}
	v, err := version.Parse(pv.ver)
	if err != nil {
		return false
	}
	return p.Version.SatisfiedBy(v)
}

func (s *solver) satisfied(r dependency.Relation) bool {
	for _, p := range r.Possibilities {
		for _, pv := range s.providedBy[p.Name] {
			if matches(pv, p) {
				return true
			}
		}
	}
	return false
}

// conflict reports whether c conflicts with (or breaks, or is broken
// by) a selected package.
func (s *solver) conflict(c *cand) error {
	if err := c.parse(); err != nil {
		return err
	}
	for _, p := range c.conflicts {
		for _, pv := range s.providedBy[p.Name] {
			if pv.c != c && matches(pv, p) {
				return fmt.Errorf("%s conflicts with %s (%s), already chosen", c.pkg.ID(), pv.c.pkg.Name, p)
			}
		}
	}
	for _, o := range s.selected {
		if o == c {
			continue
		}
		for _, p := range o.conflicts {
			if p.Name == c.pkg.Name && matches(provider{c: c, ver: c.pkg.Version}, p) {
				return fmt.Errorf("%s, already chosen, conflicts with %s (%s)", o.pkg.ID(), c.pkg.ID(), p)
			}
			for _, pv := range c.provides {
				v := ""
				if pv.Version != nil {
					v = pv.Version.Number
				}
				if p.Name == pv.Name && matches(provider{c: c, ver: v}, p) {
					return fmt.Errorf("%s, already chosen, conflicts with %s, which provides %s", o.pkg.ID(), c.pkg.ID(), p)
				}
			}
		}
	}
	return nil
}

// options lists what could satisfy a relation, in apt's order: each
// alternative's real candidate if its version fits, then its providers.
// why explains an empty list.
func (s *solver) options(r dependency.Relation) (opts []*cand, why string) {
	var reasons []string
	for _, p := range r.Possibilities {
		n := 0
		if c := s.u.candidates[p.Name]; c != nil {
			if p.Version == nil || p.Version.SatisfiedBy(c.ver) {
				opts = append(opts, c)
				n++
			} else {
				reasons = append(reasons, fmt.Sprintf("%s: only version %s is available", p.Name, c.pkg.Version))
			}
		}
		for _, pv := range s.u.providers[p.Name] {
			if matches(pv, p) {
				opts = append(opts, pv.c)
				n++
			}
		}
		if n == 0 && s.u.candidates[p.Name] == nil {
			if len(r.Possibilities) == 1 {
				reasons = append(reasons, "not in any source")
			} else {
				reasons = append(reasons, p.Name+": not in any source")
			}
		}
	}
	return opts, strings.Join(reasons, "; ")
}

// blame is a failure below a choice made at this level, so that the
// level can try the next option for that relation.
type blame struct {
	rel, opt int
	err      error
}

func (b *blame) Error() string { return b.err.Error() }

// deps installs c's dependencies, trying other options when one leads
// to a failure further down.
func (s *solver) deps(c *cand, chain []string) error {
	if err := c.parse(); err != nil {
		return err
	}
	excluded := map[[2]int]bool{}
	for {
		start := len(s.undo)
		err := s.tryDeps(c, chain, excluded)
		if err == nil {
			return nil
		}
		s.rollback(start)
		var b *blame
		if !errors.As(err, &b) {
			return err
		}
		excluded[[2]int{b.rel, b.opt}] = true
		if s.steps > maxSteps {
			return fmt.Errorf("%s: the dependencies are too tangled to resolve (over %d steps)", strings.Join(chain, " → "), maxSteps)
		}
		// If the failing relation has no option left, report the
		// failure below it rather than "nothing left".
		opts, _ := s.options(c.deps[b.rel])
		left := false
		for j, o := range opts {
			if !excluded[[2]int{b.rel, j}] && s.selected[o.pkg.Name] == nil {
				left = true
			}
		}
		if !left {
			return b.err
		}
	}
}

type pick struct {
	rel, opt int
	c        *cand
}

func (s *solver) tryDeps(c *cand, chain []string, excluded map[[2]int]bool) error {
	var picks []pick
	for i, r := range c.deps {
		s.steps++
		if s.satisfied(r) {
			continue
		}
		opts, why := s.options(r)
		chosen := false
		var conflicts []string
		for j, o := range opts {
			if excluded[[2]int{i, j}] {
				continue
			}
			if s.selected[o.pkg.Name] != nil {
				// Another version is chosen and does not fit.
				continue
			}
			if err := s.conflict(o); err != nil {
				conflicts = append(conflicts, err.Error())
				continue
			}
			s.mark(o)
			picks = append(picks, pick{rel: i, opt: j, c: o})
			chosen = true
			break
		}
		if !chosen {
			reason := why
			if len(conflicts) > 0 {
				reason = strings.Join(conflicts, "; ")
			} else if reason == "" {
				reason = "every alternative was tried and fails further down"
			}
			return &Error{Chain: append(append([]string{}, chain...), relString(r)), Reason: reason}
		}
	}
	for _, p := range picks {
		if err := s.deps(p.c, append(append([]string{}, chain...), relString(c.deps[p.rel]))); err != nil {
			return &blame{rel: p.rel, opt: p.opt, err: err}
		}
	}
	return nil
}

func relString(r dependency.Relation) string {
	var parts []string
	for _, p := range r.Possibilities {
		s := p.Name
		if p.Version != nil {
			s += " (" + p.Version.Operator + " " + p.Version.Number + ")"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, " | ")
}
