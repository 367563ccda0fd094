package evidence

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"pault.ag/go/debian/version"

	"github.com/appliance/appliance/images/apt"
)

// Locked is a package of the lock, as far as the security check needs
// it.
type Locked struct {
	Name, Version, Arch, Source string
	// SourceVersion is the source package's version, when it differs.
	SourceVersion string
	Repo          string
}

// Update is a locked package with a newer version in a security suite.
type Update struct {
	Locked
	// Newer is the security suite's version; Suite the suite.
	Newer, Suite string
	// Package is the newer version as the suite's index gives it.
	Package *apt.Package
}

func (u Update) String() string {
	return fmt.Sprintf("%s %s → %s (%s)", u.Name, u.Version, u.Newer, u.Suite)
}

// SecuritySources are the sources of a request that are security
// suites: those the spec names (suite "<suite>-security"), or else one
// made from each source of Debian's archive by Debian's convention
// (…/debian → …/debian-security, suite <suite>-security), signed by the
// same keys.
func SecuritySources(sources []*apt.Source, suite string) []*apt.Source {
	var out []*apt.Source
	for _, s := range sources {
		if strings.HasSuffix(s.Suite, "-security") {
			out = append(out, s)
		}
	}
	if len(out) > 0 {
		return out
	}
	for _, s := range sources {
		if base, ok := strings.CutSuffix(strings.TrimSuffix(s.URL, "/"), "/debian"); ok && s.Suite == suite {
			c := *s
			c.Name, c.URL, c.Suite = s.Name+"-security", base+"/debian-security", suite+"-security"
			c.Components = []string{"main"}
			out = append(out, &c)
		}
	}
	return out
}

// SecurityUpdates fetches (or reads from the cache, offline) each
// security suite's index and returns the locked packages it has newer
// versions of, by name.
func SecurityUpdates(ctx context.Context, c *apt.Client, sources []*apt.Source, arch string, locked []Locked) ([]Update, error) {
	newest := map[string]*apt.Package{}
	suites := map[*apt.Package]string{}
	for _, s := range sources {
		rel, err := c.Release(ctx, s)
		if err != nil {
			return nil, fmt.Errorf("the security suite %s: %w", s, err)
		}
		pkgs, err := c.Packages(ctx, s, rel, arch)
		if err != nil {
			return nil, fmt.Errorf("the security suite %s: %w", s, err)
		}
		for _, p := range pkgs {
			key := p.Name + "\x00" + p.Architecture
			if cur, ok := newest[key]; !ok || compare(p.Version, cur.Version) > 0 {
				newest[key] = p
				suites[p] = s.Suite
			}
		}
	}
	var out []Update
	for _, l := range locked {
		p, ok := newest[l.Name+"\x00"+l.Arch]
		if ok && compare(p.Version, l.Version) > 0 {
			out = append(out, Update{Locked: l, Newer: p.Version, Suite: suites[p], Package: p})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// compare orders Debian versions as dpkg does; a version that does not
// parse sorts as text.
func compare(a, b string) int {
	va, erra := version.Parse(a)
	vb, errb := version.Parse(b)
	if erra != nil || errb != nil {
		return strings.Compare(a, b)
	}
	return version.Compare(va, vb)
}
