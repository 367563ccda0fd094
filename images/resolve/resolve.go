// Package resolve picks the packages of a root file system: the requested
// ones and everything they depend on, as apt-get install picks them on
// an empty system with Recommends off — apt's own solver, the
// depth-first MarkInstall of its pkgDepCache, whose choices the tests
// compare with apt-get install --simulate.
//
// Candidates. Of every package name, only one version can be installed:
// the candidate, taken from the sources of the highest priority that
// carry the name and, among those, the highest version — apt's rule with
// pinning. Only the architecture asked for and "all" count.
//
// Order. The requests are marked first; then their dependencies are
// installed request by request, in name order (apt-get install takes its
// command line in order, so this is apt-get install with the names
// sorted). A package's Pre-Depends and then Depends are taken in
// control-file order; a relation that what is chosen so far satisfies
// (by name or Provides, a versioned dependency only through a versioned
// Provides) is passed over; otherwise its first installable option is
// chosen and that option's own dependencies are installed, depth first,
// before the next relation is looked at. So a relation that a sibling's
// dependencies satisfy is not satisfied a second time.
//
// Options. A relation's options are, alternative by alternative, the
// alternative's own candidate if its version fits, then the candidates
// that provide the name, best first: Essential, then Important (or
// Protected), then the higher Priority — a package without the field
// ranks first, as apt has it, and an unknown word as "extra" — and on a
// tie the package apt's cache created last. apt creates a package where
// its indexes first name it: its own paragraph, or a relationship field
// of an earlier paragraph (Pre-Depends, Depends, Conflicts, Breaks,
// Recommends, Suggests, Replaces, Enhances, Provides, in that order),
// the sources read in order and each index from the top; a name
// qualified with another architecture or ":any" is another package. So,
// as for apt, the order of the sources and indexes decides such ties
// (NewUniverse takes the packages in that order).
//
// Failure. An option that conflicts (Conflicts or Breaks, either way)
// with what is chosen is skipped. An option whose dependencies cannot be
// installed is undone, with everything it brought in, and the next
// option is tried; when none is left the failure goes up to the choice
// that led there. apt gets there another way — a choice may unmark a
// package chosen before that conflicts with it, its problem resolver
// repairs what that breaks, and what a failed option brought in stays
// marked until apt drops it at the end as garbage — and to the same set
// in every case the tests try but one: a package that a failed option
// brought in and that a chosen package recommends or suggests is no
// garbage to apt, so apt installs it and appliance does not. Recommends
// and Suggests are not followed.
//
// Determinism. The same indexes in the same order give the same set for
// a request, whatever the request's order.
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
	// created orders the providers as apt's cache creates their
	// packages (see creation).
	created map[string]int
}

type cand struct {
	pkg *apt.Package
	ver version.Version
	// parsed lazily: provides when indexing, the rest when visited
	parsed    bool
	deps      []dependency.Relation
	conflicts []dependency.Possibility
	provides  []dependency.Possibility
}

type provider struct {
	c   *cand
	ver string // "" for an unversioned Provides
}

// NewUniverse indexes packages, in the order the sources and their
// indexes are read (which decides ties between providers, see the
// package doc). Packages of other architectures are ignored; of every
// name the candidate is kept.
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
	for n, c := range u.candidates {
		if c.pkg.Provides != "" {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	u.creation(pkgs, names)
	for _, n := range names {
		c := u.candidates[n]
		if err := c.parseProvides(); err != nil {
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
		sort.SliceStable(ps, func(i, j int) bool { return u.preferred(ps[i].c.pkg, ps[j].c.pkg) })
		u.providers[n] = ps
	}
	return u, nil
}

// creation finds where apt's cache creates the package of each name
// asked for: a package is created where the indexes first name it — its
// own paragraph, or any relationship field of an earlier one, in apt's
// order of the fields. Only the order among providers is ever used, so
// only theirs is kept.
func (u *Universe) creation(pkgs []*apt.Package, names []string) {
	u.created = make(map[string]int, len(names))
	for _, n := range names {
		u.created[n] = -1
	}
	next, left := 0, len(names)
	mention := func(name string) {
		if o, ok := u.created[name]; ok && o < 0 {
			u.created[name] = next
			next++
			left--
		}
	}
	for _, p := range pkgs {
		if left == 0 {
			return
		}
		if p.Architecture != u.Arch && p.Architecture != "all" {
			continue
		}
		mention(p.Name)
		for _, f := range [...]string{p.PreDepends, p.Depends, p.Conflicts, p.Breaks, p.Recommends, p.Suggests, p.Replaces, p.Enhances, p.Provides} {
			mentions(f, u.Arch, mention)
		}
	}
}

// mentions calls f with every package name a relationship field names,
// in order. A name qualified with another architecture, or with ":any",
// is another package in apt's cache and is left out. It reads the field
// once, without allocating: indexing calls it for every field of every
// package.
func mentions(field, arch string, f func(string)) {
	for i := 0; i < len(field); {
		for i < len(field) && isSpace(field[i]) {
			i++
		}
		start := i
		for i < len(field) && !isSpace(field[i]) && !strings.ContainsRune("([<,|:", rune(field[i])) {
			i++
		}
		name := field[start:i]
		if i < len(field) && field[i] == ':' {
			q := i + 1
			for i < len(field) && !isSpace(field[i]) && !strings.ContainsRune("([<,|", rune(field[i])) {
				i++
			}
			if qual := field[q:i]; qual != arch && qual != "native" {
				name = ""
			}
		}
		if name != "" {
			f(name)
		}
		// on to the next alternative or relation
		for i < len(field) && field[i] != ',' && field[i] != '|' {
			i++
		}
		i++
	}
}

func isSpace(b byte) bool { return b == ' ' || b == '\t' || b == '\n' || b == '\r' }

// preferred reports whether a is the better provider of a virtual
// package, by apt's rule for packages not installed yet: Essential
// first, then Important (or Protected), then the higher Priority; on a
// tie, the package apt's cache created last.
func (u *Universe) preferred(a, b *apt.Package) bool {
	if a.Essential != b.Essential {
		return a.Essential
	}
	if a.Important != b.Important {
		return a.Important
	}
	if ra, rb := priorityRank(a.Priority), priorityRank(b.Priority); ra != rb {
		return ra < rb
	}
	return u.created[a.Name] > u.created[b.Name]
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

// priorityRank is apt's number for a Priority, lower preferred. A
// package without the field ranks first, as apt has it; an unknown
// word ranks as "extra".
func priorityRank(prio string) int {
	switch strings.ToLower(prio) {
	case "":
		return 0
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

// relations parses one relationship field of c's package.
func (c *cand) relations(field, s string) ([]dependency.Relation, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	d, err := dependency.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("%s: %s: %w", c.pkg.ID(), field, err)
	}
	return d.Relations, nil
}

// parseProvides parses Provides alone, which indexing needs of every
// package that has the field.
func (c *cand) parseProvides() error {
	if c.provides != nil || c.pkg.Provides == "" {
		return nil
	}
	prov, err := c.relations("Provides", c.pkg.Provides)
	if err != nil {
		return err
	}
	c.provides = []dependency.Possibility{}
	for _, r := range prov {
		c.provides = append(c.provides, r.Possibilities...)
	}
	return nil
}

// parse parses the rest, for a package the resolution visits.
func (c *cand) parse() error {
	if c.parsed {
		return nil
	}
	if err := c.parseProvides(); err != nil {
		return err
	}
	p := c.pkg
	pre, err := c.relations("Pre-Depends", p.PreDepends)
	if err != nil {
		return err
	}
	dep, err := c.relations("Depends", p.Depends)
	if err != nil {
		return err
	}
	c.deps = append(pre, dep...)
	for _, f := range []struct{ name, val string }{{"Conflicts", p.Conflicts}, {"Breaks", p.Breaks}} {
		rs, err := c.relations(f.name, f.val)
		if err != nil {
			return err
		}
		for _, r := range rs {
			c.conflicts = append(c.conflicts, r.Possibilities...)
		}
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

// errTangled ends a resolution that took over maxSteps.
var errTangled = errors.New("the dependencies are too tangled to resolve")

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
// sorted by name, or an *Error naming the chain that fails. The
// requests are taken in name order, as apt-get install would take them
// so named on its command line.
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
		if err := s.install(c, []string{c.pkg.Name}); err != nil {
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
		sort.Strings(names)
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

// install satisfies the dependencies of c, which is marked, in order;
// each choice has its own dependencies installed before the next
// relation is looked at, as apt's MarkInstall does.
func (s *solver) install(c *cand, chain []string) error {
	if err := c.parse(); err != nil {
		return err
	}
	for _, r := range c.deps {
		s.steps++
		if s.steps > maxSteps {
			return fmt.Errorf("%s: %w (over %d steps)", strings.Join(chain, " → "), errTangled, maxSteps)
		}
		if s.satisfied(r) {
			continue
		}
		if err := s.satisfy(r, append(chain[:len(chain):len(chain)], relString(r))); err != nil {
			return err
		}
	}
	return nil
}

// satisfy tries r's options in order until one installs with all its
// dependencies; what a failed option installed is undone before the
// next is tried.
func (s *solver) satisfy(r dependency.Relation, chain []string) error {
	opts, why := s.options(r)
	var conflicts []string
	var below error
	for _, o := range opts {
		if s.selected[o.pkg.Name] != nil {
			// A guard: one version per name, so a chosen option
			// would satisfy r already.
			continue
		}
		if err := s.conflict(o); err != nil {
			conflicts = append(conflicts, err.Error())
			continue
		}
		start := len(s.undo)
		s.mark(o)
		err := s.install(o, chain)
		if err == nil {
			return nil
		}
		s.rollback(start)
		if errors.Is(err, errTangled) {
			return err
		}
		below = err
	}
	if below != nil {
		// The last option failed further down: say where.
		return below
	}
	reason := why
	if len(conflicts) > 0 {
		reason = strings.Join(conflicts, "; ")
	} else if reason == "" {
		reason = "every alternative was tried and fails further down"
	}
	return &Error{Chain: chain, Reason: reason}
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
