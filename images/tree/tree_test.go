package tree

import (
	"errors"
	"slices"
	"testing"
)

func TestClean(t *testing.T) {
	for in, want := range map[string]string{
		"./":              "",
		".":               "",
		"./usr/bin/":      "usr/bin",
		"./usr//bin/./sh": "usr/bin/sh",
		"etc/passwd":      "etc/passwd",
	} {
		if got, err := Clean(in); err != nil || got != want {
			t.Errorf("Clean(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"/etc/passwd", "./../x", "./usr/../../x", "a/..", "../"} {
		if got, err := Clean(in); !errors.Is(err, ErrEscape) {
			t.Errorf("Clean(%q) = %q, %v; want ErrEscape", in, got, err)
		}
	}
}

func mergedTree(t *testing.T) *Tree {
	t.Helper()
	tr := New()
	for _, e := range []*Entry{
		{Path: "usr", Type: Dir}, {Path: "usr/bin", Type: Dir}, {Path: "usr/lib", Type: Dir},
		{Path: "bin", Type: Symlink, Link: "usr/bin"},
		{Path: "lib", Type: Symlink, Link: "/usr/lib"},
		{Path: "usr/lib/up", Type: Symlink, Link: "../.."},
		{Path: "usr/lib/out", Type: Symlink, Link: "../../.."},
		{Path: "usr/lib/loop", Type: Symlink, Link: "loop"},
	} {
		if err := tr.Put(e); err != nil {
			t.Fatal(err)
		}
	}
	return tr
}

func TestResolve(t *testing.T) {
	tr := mergedTree(t)
	for in, want := range map[string]string{
		"bin/sh":            "usr/bin/sh",
		"bin":               "bin", // the last component is not followed
		"lib/ld.so":         "usr/lib/ld.so",
		"lib/up/etc/passwd": "etc/passwd",
		"usr/lib/up/bin/x":  "usr/bin/x",
	} {
		if got, err := tr.Resolve(in); err != nil || got != want {
			t.Errorf("Resolve(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	_, err := tr.Resolve("lib/out/etc/shadow")
	var esc *EscapeError
	if !errors.As(err, &esc) || esc.Link != "usr/lib/out" || err.Error() != "/lib/out/etc/shadow: symlink /usr/lib/out → ../../.. leaves the root file system" {
		t.Errorf("through an escaping link: %v", err)
	}
	if _, err := tr.Resolve("lib/loop/x"); err == nil {
		t.Error("a symlink loop resolved")
	}
}

func TestEntriesOrder(t *testing.T) {
	tr := New()
	for _, p := range []string{"a", "a-b", "a/b", "a/b/c", "a.d", "b"} {
		tr.Put(&Entry{Path: p, Type: Dir})
	}
	var got []string
	for _, e := range tr.Entries() {
		got = append(got, e.Path)
	}
	want := []string{"", "a", "a/b", "a/b/c", "a-b", "a.d", "b"}
	if !slices.Equal(got, want) {
		t.Errorf("Entries() = %q; want parents first, depth first: %q", got, want)
	}
}

func TestPutNeedsFolder(t *testing.T) {
	tr := mergedTree(t)
	if err := tr.Put(&Entry{Path: "nowhere/x", Type: Regular}); err == nil {
		t.Error("put under a missing folder")
	}
	if err := tr.Put(&Entry{Path: "bin/x", Type: Regular}); err == nil {
		t.Error("put under a symlink: paths must be resolved first")
	}
}
