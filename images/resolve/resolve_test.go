package resolve

import (
	"strings"
	"testing"

	"github.com/appliance/appliance/images/apt"
)

var main = &apt.Source{Name: "main", Priority: 500}

// pkgs reads "name version [field: value]…" lines, fields separated by
// " ; ".
func pkgs(lines ...string) []*apt.Package {
	var out []*apt.Package
	for _, l := range lines {
		parts := strings.Split(l, " ; ")
		nv := strings.Fields(parts[0])
		p := &apt.Package{Name: nv[0], Version: nv[1], Architecture: "arm64", Repo: main}
		for _, f := range parts[1:] {
			k, v, _ := strings.Cut(f, ": ")
			switch k {
			case "Depends":
				p.Depends = v
			case "Pre-Depends":
				p.PreDepends = v
			case "Provides":
				p.Provides = v
			case "Conflicts":
				p.Conflicts = v
			case "Breaks":
				p.Breaks = v
			case "Priority":
				p.Priority = v
			case "Suggests":
				p.Suggests = v
			case "Essential":
				p.Essential = v == "yes"
			case "Important":
				p.Important = v == "yes"
			case "Arch":
				p.Architecture = v
			}
		}
		out = append(out, p)
	}
	return out
}

func resolve(t *testing.T, universe []*apt.Package, want ...string) (string, error) {
	t.Helper()
	u, err := NewUniverse(universe, "arm64")
	if err != nil {
		t.Fatal(err)
	}
	got, err := Resolve(u, want)
	var names []string
	for _, p := range got {
		names = append(names, p.Name+"="+p.Version)
	}
	return strings.Join(names, " "), err
}

func TestResolve(t *testing.T) {
	for _, tc := range []struct {
		name     string
		universe []string
		want     []string
		got      string
		err      string
	}{
		{name: "candidate is the highest version", universe: []string{"a 1.0", "a 1.10", "a 1.9"}, want: []string{"a"}, got: "a=1.10"},
		{name: "other architectures are ignored", universe: []string{"a 1 ; Arch: amd64", "b 1 ; Arch: all"}, want: []string{"b"}, got: "b=1"},
		{name: "pre-depends and depends", universe: []string{"a 1 ; Pre-Depends: b ; Depends: c (>= 2)", "b 1", "c 2"}, want: []string{"a"}, got: "a=1 b=1 c=2"},
		{name: "first installable alternative", universe: []string{"a 1 ; Depends: x | c | b", "b 1", "c 1"}, want: []string{"a"}, got: "a=1 c=1"},
		{name: "alternative already chosen", universe: []string{"a 1 ; Depends: c | b", "b 1", "c 1"}, want: []string{"a", "b"}, got: "a=1 b=1"},
		// apt installs b and b's dependencies before it looks at c | d.
		{name: "sibling satisfies an alternative", universe: []string{"a 1 ; Depends: b, c | d", "b 1 ; Depends: d", "c 1", "d 1"}, want: []string{"a"}, got: "a=1 b=1 d=1"},
		{name: "depth first two levels down", universe: []string{"a 1 ; Depends: b, c | e", "b 1 ; Depends: d", "d 1 ; Depends: e", "c 1", "e 1"}, want: []string{"a"}, got: "a=1 b=1 d=1 e=1"},
		{name: "an earlier sibling's choice stands", universe: []string{"a 1 ; Depends: c | d, b", "b 1 ; Depends: d", "c 1", "d 1"}, want: []string{"a"}, got: "a=1 b=1 c=1 d=1"},
		{name: "versioned constraint skips an alternative", universe: []string{"a 1 ; Depends: b (>= 2) | c", "b 1", "c 1"}, want: []string{"a"}, got: "a=1 c=1"},
		{name: "virtual through provides", universe: []string{"a 1 ; Depends: mta", "z-mta 1 ; Provides: mta ; Priority: optional", "b-mta 1 ; Provides: mta ; Priority: important"}, want: []string{"a"}, got: "a=1 b-mta=1"},
		{name: "provider tie: the last created", universe: []string{"aa 1 ; Provides: v", "zz 1 ; Provides: v", "a 1 ; Depends: v"}, want: []string{"a"}, got: "a=1 zz=1"},
		{name: "provider tie: the last created, reversed", universe: []string{"zz 1 ; Provides: v", "aa 1 ; Provides: v", "a 1 ; Depends: v"}, want: []string{"a"}, got: "a=1 aa=1"},
		{name: "provider tie: created where first named", universe: []string{"e 1 ; Suggests: aa", "zz 1 ; Provides: v", "aa 1 ; Provides: v", "a 1 ; Depends: v"}, want: []string{"a"}, got: "a=1 zz=1"},
		{name: "provider tie: an other-architecture mention is another package", universe: []string{"e 1 ; Suggests: aa:amd64, aa:any", "zz 1 ; Provides: v", "aa 1 ; Provides: v", "a 1 ; Depends: v"}, want: []string{"a"}, got: "a=1 aa=1"},
		{name: "provider: essential first", universe: []string{"zz 1 ; Provides: v ; Priority: required", "aa 1 ; Provides: v ; Priority: optional ; Essential: yes", "a 1 ; Depends: v"}, want: []string{"a"}, got: "a=1 aa=1"},
		{name: "provider: important before priority", universe: []string{"zz 1 ; Provides: v ; Priority: required", "aa 1 ; Provides: v ; Priority: optional ; Important: yes", "a 1 ; Depends: v"}, want: []string{"a"}, got: "a=1 aa=1"},
		{name: "provider: no priority before required", universe: []string{"zz 1 ; Provides: v ; Priority: required", "aa 1 ; Provides: v", "a 1 ; Depends: v"}, want: []string{"a"}, got: "a=1 aa=1"},
		{name: "real package before providers", universe: []string{"p 1 ; Provides: v ; Priority: required", "v 1 ; Priority: optional", "a 1 ; Depends: v"}, want: []string{"a"}, got: "a=1 v=1"},
		{name: "requests in name order", universe: []string{"y 1 ; Depends: q", "x 1 ; Depends: p | q", "p 1", "q 1"}, want: []string{"y", "x"}, got: "p=1 q=1 x=1 y=1"},
		{name: "versioned provides", universe: []string{"a 1 ; Depends: v (>= 2)", "old 1 ; Provides: v", "new 1 ; Provides: v (= 2.5)"}, want: []string{"a"}, got: "a=1 new=1"},
		{name: "only provider of a requested virtual", universe: []string{"p 1 ; Provides: v"}, want: []string{"v"}, got: "p=1"},
		{name: "conflict skips an alternative", universe: []string{"a 1 ; Depends: b | c", "b 1 ; Conflicts: d", "c 1", "d 1"}, want: []string{"a", "d"}, got: "a=1 c=1 d=1"},
		{name: "breaks checked both ways", universe: []string{"a 1 ; Depends: b | c", "b 1", "c 1", "d 1 ; Breaks: b (<< 2)"}, want: []string{"a", "d"}, got: "a=1 c=1 d=1"},
		{name: "backtrack a failing choice", universe: []string{"a 1 ; Depends: b | c", "b 1 ; Depends: gone", "c 1"}, want: []string{"a"}, got: "a=1 c=1"},
		{name: "backtrack a conflict deep down", universe: []string{"a 1 ; Depends: b | c", "b 1 ; Depends: e", "e 1 ; Conflicts: x", "c 1", "x 1"}, want: []string{"a", "x"}, got: "a=1 c=1 x=1"},
		{name: "unknown request", universe: []string{"a 1"}, want: []string{"nope"}, err: "nope: not in any source"},
		{name: "chain to a missing package", universe: []string{"mosquitto 2 ; Depends: libc6, libwebsockets19t64 (>= 4.3)", "libc6 2.41"}, want: []string{"mosquitto"}, err: "mosquitto → libwebsockets19t64 (>= 4.3): not in any source"},
		{name: "chain to a version", universe: []string{"a 1 ; Depends: b", "b 1 ; Depends: c (>= 3)", "c 2"}, want: []string{"a"}, err: "a → b → c (>= 3): c: only version 2 is available"},
		{name: "ambiguous virtual request", universe: []string{"p 1 ; Provides: v", "q 1 ; Provides: v"}, want: []string{"v"}, err: "v: a virtual package provided by p, q; name one of them"},
		{name: "requests conflict", universe: []string{"a 1 ; Conflicts: b", "b 1"}, want: []string{"a", "b"}, err: "b: a 1 (arm64), already chosen, conflicts with b 1 (arm64) (b)"},
		{name: "self conflict through a virtual is fine", universe: []string{"a 1 ; Provides: mta ; Conflicts: mta"}, want: []string{"a"}, got: "a=1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := resolve(t, pkgs(tc.universe...), tc.want...)
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Errorf("Resolve(%v) = %q, %v; want error %q", tc.want, got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.got {
				t.Errorf("Resolve(%v) = %q, %v; want %q", tc.want, got, err, tc.got)
			}
		})
	}
}

// TestDeterministic: the same index gives the same set every time,
// whatever the order of the request; the index's order decides ties
// between providers only, as apt's (see "provider tie" in TestResolve).
func TestDeterministic(t *testing.T) {
	u := pkgs("a 1 ; Depends: v", "p 1 ; Provides: v", "q 1 ; Provides: v", "b 1 ; Depends: p | q", "c 1 ; Depends: b, v")
	first, err := resolve(t, u, "a", "b", "c")
	if err != nil {
		t.Fatal(err)
	}
	if first != "a=1 b=1 c=1 q=1" {
		t.Fatalf("%q; want a's v to be q, created after p", first)
	}
	for range 20 {
		got, err := resolve(t, u, "c", "b", "a")
		if err != nil || got != first {
			t.Fatalf("%q, %v; want %q every time", got, err, first)
		}
	}
}

func TestPriorityWins(t *testing.T) {
	rpi := &apt.Source{Name: "rpi", Priority: 600}
	ps := pkgs("a 2.0", "a 3.0")
	ps[0].Repo = rpi
	got, err := resolve(t, ps, "a")
	if err != nil || got != "a=2.0" {
		t.Errorf("%q, %v; want the higher priority source's a=2.0", got, err)
	}
}

// TestMentions: the names a relationship field gives apt's cache, in
// order.
func TestMentions(t *testing.T) {
	for field, want := range map[string]string{
		"":                                   "",
		"libc6 (>= 2.38), libssl3t64 (>= 3)": "libc6 libssl3t64",
		"a | b (<< 1:2.0) | c":               "a b c",
		"python3:any, perl:arm64, x:amd64, y:native (>= 1)": "perl y",
		"a [amd64] <!nocheck>,\n b":                         "a b",
		" a (= 1.0) ,  , b":                                 "a b",
	} {
		var got []string
		mentions(field, "arm64", func(n string) { got = append(got, n) })
		if strings.Join(got, " ") != want {
			t.Errorf("mentions(%q) = %q; want %q", field, got, want)
		}
	}
}
