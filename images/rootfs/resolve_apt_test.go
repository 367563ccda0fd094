package rootfs

import (
	"context"
	"sort"
	"strings"
	"testing"

	"github.com/appliance/appliance/images/fixture"
)

// debs reads "name [Field: value ; …]" lines into fixture packages of
// version 1, in the order given: the order of the Packages index, which
// decides apt's ties.
func debs(lines ...string) []*fixture.Deb {
	var out []*fixture.Deb
	for _, l := range lines {
		parts := strings.Split(l, " ; ")
		name, first, _ := strings.Cut(parts[0], " ")
		d := &fixture.Deb{Name: name, Version: "1", Arch: "arm64", Fields: map[string]string{}}
		for _, f := range append([]string{first}, parts[1:]...) {
			if k, v, ok := strings.Cut(f, ": "); ok {
				d.Fields[k] = v
			}
		}
		out = append(out, d)
	}
	return out
}

// TestResolverAgreesWithApt resolves small repositories, each built to
// tell one of apt's rules apart, with appliance and with apt-get install
// --simulate, and wants the same set from both (or exactly the
// difference the package doc states) — and the set the case states, so
// that a case keeps telling its rule apart.
func TestResolverAgreesWithApt(t *testing.T) {
	for _, tc := range []struct {
		name  string
		index []string
		want  []string // requested
		set   string   // what apt installs, sorted
		// differ is how appliance's set differs from apt's, where the
		// package doc says it does.
		differ string
	}{
		{
			// apt installs b's dependencies before it looks at c | d.
			name:  "depth first: a sibling's dependency satisfies an alternative",
			index: []string{"a Depends: b, c | d", "b Depends: d", "c", "d"},
			want:  []string{"a"}, set: "a b d",
		},
		{
			name:  "depth first two levels down",
			index: []string{"a Depends: b, c | e", "b Depends: d", "d Depends: e", "c", "e"},
			want:  []string{"a"}, set: "a b d e",
		},
		{
			// Among equal providers apt takes the package its cache
			// created last: the last one the index mentions first.
			name:  "provider tie: the last created wins",
			index: []string{"aa-prov Provides: v ; Priority: optional", "zz-prov Provides: v ; Priority: optional", "a Depends: v ; Priority: optional"},
			want:  []string{"a"}, set: "a zz-prov",
		},
		{
			name:  "provider tie: the reverse index order",
			index: []string{"zz-prov Provides: v ; Priority: optional", "aa-prov Provides: v ; Priority: optional", "a Depends: v ; Priority: optional"},
			want:  []string{"a"}, set: "a aa-prov",
		},
		{
			// A package is created where it is first named, here in
			// another package's Suggests, before either provider's
			// own paragraph.
			name:  "provider tie: created where first named",
			index: []string{"early Suggests: aa-prov ; Priority: optional", "zz-prov Provides: v ; Priority: optional", "aa-prov Provides: v ; Priority: optional", "a Depends: v ; Priority: optional"},
			want:  []string{"a"}, set: "a zz-prov",
		},
		{
			// "aa:amd64" and "aa:any" are other packages in apt's
			// cache than aa, so aa is created after zz-prov.
			name:  "provider tie: a qualified name is another package",
			index: []string{"early Suggests: aa-prov:amd64, aa-prov:any ; Priority: optional", "zz-prov Provides: v ; Priority: optional", "aa-prov Provides: v ; Priority: optional", "a Depends: v ; Priority: optional"},
			want:  []string{"a"}, set: "a aa-prov",
		},
		{
			name:  "provider: higher priority before the order",
			index: []string{"aa-prov Provides: v ; Priority: important", "zz-prov Provides: v ; Priority: optional", "a Depends: v ; Priority: optional"},
			want:  []string{"a"}, set: "a aa-prov",
		},
		{
			name:  "provider: Protected before priority",
			index: []string{"zz-prov Provides: v ; Priority: important", "aa-prov Provides: v ; Priority: optional ; Protected: yes", "a Depends: v ; Priority: optional"},
			want:  []string{"a"}, set: "a aa-prov",
		},
		{
			name:  "provider: Important before priority",
			index: []string{"zz-prov Provides: v ; Priority: important", "aa-prov Provides: v ; Priority: optional ; Important: yes", "a Depends: v ; Priority: optional"},
			want:  []string{"a"}, set: "a aa-prov",
		},
		{
			// apt ranks a version without a Priority field above
			// every priority.
			name:  "provider: no Priority before important",
			index: []string{"zz-prov Provides: v ; Priority: important", "aa-prov Provides: v", "a Depends: v ; Priority: optional"},
			want:  []string{"a"}, set: "a aa-prov",
		},
		{
			name:  "the real package before its providers",
			index: []string{"prov Provides: v ; Priority: important", "v Priority: optional", "a Depends: v ; Priority: optional"},
			want:  []string{"a"}, set: "a v",
		},
		{
			// apt installs the requests' dependencies in the order of
			// its command line; appliance's is the names sorted.
			name:  "requests in name order",
			index: []string{"y Depends: q", "x Depends: p | q", "p", "q"},
			want:  []string{"y", "x"}, set: "p q x y",
		},
		{
			name:  "backtrack a failing alternative",
			index: []string{"a Depends: b | c", "b Depends: gone", "c"},
			want:  []string{"a"}, set: "a c",
		},
		{
			// apt leaves y marked when b fails, and drops it at the
			// end as garbage.
			name:  "a failed option's dependencies are undone",
			index: []string{"a Depends: b | c", "b Depends: y, x", "x Depends: gone", "y", "c"},
			want:  []string{"a"}, set: "a c",
		},
		{
			// The one difference the package doc states: apt keeps y,
			// which c recommends, so it is no garbage to apt.
			name:  "a failed option's dependency that a choice recommends",
			index: []string{"a Depends: b | c", "b Depends: y, x", "x Depends: gone", "y", "c Recommends: y"},
			want:  []string{"a"}, set: "a c y",
			differ: "y: appliance none, apt 1",
		},
		{
			name:  "a conflict skips an option",
			index: []string{"a Depends: b | c", "b Conflicts: d", "c", "d"},
			want:  []string{"a", "d"}, set: "a c d",
		},
		{
			name:  "a conflict the other way skips an option",
			index: []string{"a Depends: b | c", "b", "c", "d Conflicts: b"},
			want:  []string{"a", "d"}, set: "a c d",
		},
		{
			name:  "a conflict further down undoes an option",
			index: []string{"a Depends: b | c", "b Depends: e", "e Conflicts: x", "c", "x"},
			want:  []string{"a", "x"}, set: "a c x",
		},
		{
			name:  "a versioned dependency skips an alternative",
			index: []string{"a Depends: b (>= 2) | c", "b", "c"},
			want:  []string{"a"}, set: "a c",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newRepo(t, &fixture.Repo{Debs: debs(tc.index...)})
			req := e.request(t, e.fileURL, tc.want...)
			lock, err := Plan(context.Background(), e.client, req)
			if err != nil {
				t.Fatal(err)
			}
			apt := newAptGet(t, "arm64", []aptLine{{URL: e.fileURL, Suite: "trixie", Components: []string{"main"}, Keyring: testKey.Public(false)}})
			got := apt.install(t, aptRequest(req, lock))
			if d := strings.Join(diffWithApt(lock, got), "\n  "); d != tc.differ {
				t.Errorf("appliance and apt differ:\n  %s\nwant:\n  %s", d, tc.differ)
			}
			var names []string
			for n := range got {
				names = append(names, n)
			}
			sort.Strings(names)
			if s := strings.Join(names, " "); s != tc.set {
				t.Errorf("apt installs %s; the case expects %s, so it no longer tells its rule apart", s, tc.set)
			}
		})
	}
}
