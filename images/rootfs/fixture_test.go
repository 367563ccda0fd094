package rootfs

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/appliance/appliance/images/apt"
	"github.com/appliance/appliance/images/cache"
	"github.com/appliance/appliance/images/ext4"
	"github.com/appliance/appliance/images/fixture"
	"github.com/appliance/appliance/images/sbom"
	"github.com/appliance/appliance/images/tree"
	"github.com/appliance/appliance/internal/testenv"
)

var testKey, otherKey = mustKey("archive"), mustKey("intruder")

func mustKey(name string) *fixture.Key {
	k, err := fixture.NewKey(name)
	if err != nil {
		panic(err)
	}
	return k
}

// goodDebs is a small distribution: a base-files with the merged-/usr
// links, a tool with alternatives, a virtual dependency, a conffile, a
// hard link, a setuid file, maintainer scripts and triggers, and the
// libraries it needs, in every compression dpkg reads.
func goodDebs(arch string) []*fixture.Deb {
	return []*fixture.Deb{
		{Name: "base-files", Version: "13.8", Arch: arch, Fields: map[string]string{"Essential": "yes", "Priority": "required"},
			Files: []fixture.File{
				{Path: "./etc/", Type: tar.TypeDir}, {Path: "./etc/os-release", Body: "ID=test\n"},
				{Path: "./usr/", Type: tar.TypeDir}, {Path: "./usr/bin/", Type: tar.TypeDir}, {Path: "./usr/lib/", Type: tar.TypeDir}, {Path: "./usr/sbin/", Type: tar.TypeDir},
				{Path: "./tmp/", Type: tar.TypeDir, Mode: 0o1777},
				{Path: "./bin", Type: tar.TypeSymlink, Link: "usr/bin"}, {Path: "./lib", Type: tar.TypeSymlink, Link: "usr/lib"}, {Path: "./sbin", Type: tar.TypeSymlink, Link: "usr/sbin"},
			}},
		{Name: "tool", Version: "1:2.0-1", Arch: arch, Compression: "zst",
			Fields: map[string]string{"Depends": "libmissing | libfoo (>= 1.0), virt-x (>= 2)", "Recommends": "unrelated", "Source": "toolsrc (2.0-1)"},
			Files: []fixture.File{
				{Path: "./bin/", Type: tar.TypeDir},
				{Path: "./bin/tool", Body: "#!/bin/sh\necho tool\n", Mode: 0o4755},
				{Path: "./usr/bin/", Type: tar.TypeDir},
				{Path: "./usr/bin/tool-again", Type: tar.TypeLink, Link: "./bin/tool"},
				{Path: "./etc/", Type: tar.TypeDir},
				{Path: "./etc/tool.conf", Body: "setting = 1\n"},
				{Path: "./usr/share/", Type: tar.TypeDir},
				{Path: "./usr/share/tool/", Type: tar.TypeDir},
				{Path: "./usr/share/tool/link", Type: tar.TypeSymlink, Link: "../../bin/tool"},
			},
			Members: map[string]string{
				"conffiles": "/etc/tool.conf\n",
				"preinst":   "#!/bin/sh\nset -e\necho \"preinst $*\" >> \"$DPKG_ROOT/var/log/tool.log\"\n",
				"postinst":  "#!/bin/sh\nset -e\necho \"postinst $*\" >> \"$DPKG_ROOT/var/log/tool.log\"\n",
				"triggers":  "interest /usr/share/tool\ninterest-noawait tool-refresh\n",
			}},
		{Name: "libfoo", Version: "0.9", Arch: arch, Compression: "gz"},
		{Name: "libfoo", Version: "1.2", Arch: arch, Compression: "gz", Fields: map[string]string{"Multi-Arch": "same"},
			Files:   []fixture.File{{Path: "./usr/", Type: tar.TypeDir}, {Path: "./usr/lib/", Type: tar.TypeDir}, {Path: "./usr/lib/libfoo.so.1", Body: "ELF"}},
			Members: map[string]string{"md5sums": "0a3f4a7c1f1f1f1f1f1f1f1f1f1f1f1f  usr/lib/libfoo.so.1\n"}},
		{Name: "provider-x", Version: "1.0", Arch: "all", Compression: "none", Fields: map[string]string{"Provides": "virt-x (= 2.1)"},
			Files: []fixture.File{{Path: "./var/", Type: tar.TypeDir}, {Path: "./var/log/", Type: tar.TypeDir}, {Path: "./usr/", Type: tar.TypeDir}, {Path: "./usr/share/", Type: tar.TypeDir}, {Path: "./usr/share/x", Body: "x\n"}}},
		{Name: "unrelated", Version: "1.0", Arch: arch},
	}
}

type repoEnv struct {
	w       *fixture.Written
	url     string // http://…
	fileURL string
	ca      *cache.Cache
	client  *apt.Client
}

func newRepo(t *testing.T, r *fixture.Repo) *repoEnv {
	t.Helper()
	if r.Key == nil {
		r.Key = testKey
	}
	dir := t.TempDir()
	w, err := r.Write(dir)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.FileServer(http.Dir(dir)))
	t.Cleanup(srv.Close)
	ca := &cache.Cache{Dir: filepath.Join(t.TempDir(), "cache")}
	return &repoEnv{w: w, url: srv.URL, fileURL: "file://" + dir, ca: ca, client: &apt.Client{Store: ca}}
}

func (e *repoEnv) request(t *testing.T, url string, pkgs ...string) *Request {
	t.Helper()
	kr, err := apt.ReadKeyring(testKey.Public(false))
	if err != nil {
		t.Fatal(err)
	}
	return &Request{Suite: "trixie", Arch: "arm64", Packages: pkgs,
		Sources: []*apt.Source{{Name: "test", URL: url, Suite: "trixie", Components: []string{"main"}, Keyring: kr, Priority: DefaultPriority}}}
}

// build runs plan, fetch and unpack.
func (e *repoEnv) build(t *testing.T, req *Request) (*Lock, *tree.Tree, error) {
	t.Helper()
	ctx := context.Background()
	l, err := Plan(ctx, e.client, req)
	if err != nil {
		return nil, nil, err
	}
	if err := Fetch(ctx, e.client, l, e.ca, nil); err != nil {
		return l, nil, err
	}
	tr, err := Unpack(ctx, l, e.ca, UnpackOptions{})
	return l, tr, err
}

// assertClean checks that a refused input left nothing behind: no
// temporary files, and none of the kinds given.
func assertClean(t *testing.T, ca *cache.Cache, kinds ...string) {
	t.Helper()
	tmp, err := ca.Temporaries()
	if err != nil {
		t.Fatal(err)
	}
	if len(tmp) > 0 {
		t.Errorf("temporary files left in the cache: %v", tmp)
	}
	for _, k := range kinds {
		var files []string
		filepath.WalkDir(filepath.Join(ca.Dir, k), func(p string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				files = append(files, p)
			}
			return nil
		})
		if len(files) > 0 {
			t.Errorf("%s left in the cache: %v", k, files)
		}
	}
}

func TestFixtureGoodPath(t *testing.T) {
	for _, tc := range []struct {
		name string
		repo fixture.Repo
		file bool
	}{
		{name: "http InRelease", repo: fixture.Repo{}},
		{name: "http Release.gpg by-hash", repo: fixture.Repo{Detached: true, ByHash: true}},
		{name: "file", repo: fixture.Repo{}, file: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.repo.Debs = goodDebs("arm64")
			e := newRepo(t, &tc.repo)
			url := e.url
			if tc.file {
				url = e.fileURL
			}
			req := e.request(t, url, "tool")
			l, tr, err := e.build(t, req)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, p := range l.Packages {
				names = append(names, p.Name+"="+p.Version)
			}
			want := []string{"base-files=13.8", "libfoo=1.2", "provider-x=1.0", "tool=1:2.0-1"}
			if !reflect.DeepEqual(names, want) {
				t.Errorf("packages %v; want %v (libmissing is no package, unrelated only recommended)", names, want)
			}
			checkGoodTree(t, tr)
			assertClean(t, e.ca)
		})
	}
}

func checkGoodTree(t *testing.T, tr *tree.Tree) {
	t.Helper()
	for p, want := range map[string]string{
		"bin":                            "symlink usr/bin base-files",
		"usr/bin/tool":                   "file 4755 tool",
		"usr/bin/tool-again":             "hardlink usr/bin/tool tool",
		"etc/tool.conf.dpkg-new":         "file 644 tool",
		"usr/share/tool/link":            "symlink ../../bin/tool tool",
		"usr/lib/libfoo.so.1":            "file 644 libfoo",
		"tmp":                            "dir 1777 base-files",
		"var/lib/dpkg/info/format":       "file 644 ",
		"var/lib/dpkg/info/tool.preinst": "file 755 ",
	} {
		e := tr.Get(p)
		if e == nil {
			t.Errorf("/%s is missing", p)
			continue
		}
		var got string
		switch e.Type {
		case tree.Symlink, tree.Hardlink:
			got = e.Type.String() + " " + e.Link + " " + e.Package
		case tree.CharDev:
			got = fmt.Sprintf("%s %d,%d %s", e.Type, e.Major, e.Minor, e.Package)
		default:
			got = fmt.Sprintf("%s %o %s", e.Type, e.Mode, e.Package)
		}
		if got != want {
			t.Errorf("/%s: %s; want %s", p, got, want)
		}
	}
	for _, p := range []string{"bin/tool", "etc/tool.conf"} {
		if tr.Get(p) != nil {
			t.Errorf("/%s exists; want it through the merged-/usr link or as .dpkg-new", p)
		}
	}
	status := string(tr.Get("var/lib/dpkg/status").Data)
	for _, want := range []string{
		"Package: tool\nStatus: install ok unpacked\nMaintainer: Test <test@example.org>\nArchitecture: arm64\nSource: toolsrc (2.0-1)\nVersion: 1:2.0-1\nDepends: libmissing | libfoo (>= 1.0), virt-x (>= 2)\nRecommends: unrelated\nConffiles:\n /etc/tool.conf newconffile\nDescription: test package tool\n Built by a test.\n .\n Second paragraph.\n\n",
		"Package: libfoo\nStatus: install ok unpacked\n",
	} {
		if !strings.Contains(status, want) {
			t.Errorf("status lacks\n%s\nin\n%s", want, status)
		}
	}
	files := map[string]string{
		"var/lib/dpkg/info/tool.list":            "/.\n/bin\n/bin/tool\n/usr/bin\n/usr/bin/tool-again\n/etc\n/etc/tool.conf\n/usr/share\n/usr/share/tool\n/usr/share/tool/link\n",
		"var/lib/dpkg/info/tool.conffiles":       "/etc/tool.conf\n",
		"var/lib/dpkg/info/libfoo:arm64.md5sums": "0a3f4a7c1f1f1f1f1f1f1f1f1f1f1f1f  usr/lib/libfoo.so.1\n",
		"var/lib/dpkg/info/provider-x.md5sums":   "401b30e3b8b5d629635a5c613cdb7919  usr/share/x\n",
		"var/lib/dpkg/triggers/File":             "/usr/share/tool tool\n",
		"var/lib/dpkg/triggers/tool-refresh":     "tool/noawait\n",
		"var/lib/dpkg/arch":                      "arm64\n",
	}
	for p, want := range files {
		e := tr.Get(p)
		if e == nil {
			t.Errorf("/%s is missing", p)
		} else if string(e.Data) != want {
			t.Errorf("/%s = %q; want %q", p, e.Data, want)
		}
	}
}

// TestFixtureLockRoundTrip: a lock written and read back builds the same
// tree offline, without any index; a changed request no longer fits.
// The unpacked packages' hashes travel beside it, in the state's record.
func TestFixtureLockRoundTrip(t *testing.T) {
	e := newRepo(t, &fixture.Repo{Debs: goodDebs("arm64")})
	req := e.request(t, e.url, "tool")
	l, tr, err := e.build(t, req)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "site.lock")
	if err := l.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	record := filepath.Join(t.TempDir(), UnpackedName)
	if err := l.SaveUnpacked(record); err != nil {
		t.Fatal(err)
	}
	l2, err := ReadLock(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := l2.LoadUnpacked(record); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(l, l2) {
		t.Errorf("lock read back differs:\n%+v\n%+v", l, l2)
	}
	if !l2.Fits(req) {
		t.Error("the lock does not fit the request it was made for")
	}
	for _, changed := range []*Request{
		e.request(t, e.url, "tool", "unrelated"),
		func() *Request { r := e.request(t, e.url, "tool"); r.Arch = "amd64"; return r }(),
		func() *Request { r := e.request(t, e.url, "tool"); r.Sources[0].Priority = 900; return r }(),
		func() *Request {
			r := e.request(t, e.url, "tool")
			r.Sources[0].Keyring, _ = apt.ReadKeyring(otherKey.Public(true))
			return r
		}(),
	} {
		if l2.Fits(changed) {
			t.Errorf("the lock fits a changed request %+v", changed)
		}
	}
	// Offline, from the lock: no index is read (the repository is gone).
	os.RemoveAll(e.w.Dir)
	off := &apt.Client{Store: e.ca, Offline: true}
	if err := Fetch(context.Background(), off, l2, e.ca, nil); err != nil {
		t.Fatal(err)
	}
	tr2, err := Unpack(context.Background(), l2, e.ca, UnpackOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !sameTree(tr.Entries(), tr2.Entries()) {
		t.Error("the tree built from the lock read back differs")
	}
	// And the same again with the .debs gone: the unpacked cache holds
	// all a build needs.
	os.RemoveAll(filepath.Join(e.ca.Dir, "debs"))
	tr3, err := Unpack(context.Background(), l2, e.ca, UnpackOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !sameTree(tr.Entries(), tr3.Entries()) {
		t.Error("the tree built from manifests alone differs")
	}
}

// TestFixtureOffline: offline, a lock needs every package in the cache,
// and the error lists exactly the missing ones; a plan needs the
// verified Release and indexes of a previous online run.
func TestFixtureOffline(t *testing.T) {
	e := newRepo(t, &fixture.Repo{Debs: goodDebs("arm64")})
	req := e.request(t, e.url, "tool")
	off := &apt.Client{Store: e.ca, Offline: true}
	if _, err := Plan(context.Background(), off, req); !errors.Is(err, apt.ErrOffline) {
		t.Fatalf("offline plan with an empty cache: %v; want ErrOffline", err)
	}
	l, err := Plan(context.Background(), e.client, req)
	if err != nil {
		t.Fatal(err)
	}
	l2, err := Plan(context.Background(), off, req)
	if err != nil {
		t.Fatalf("offline plan after an online one: %v", err)
	}
	if !reflect.DeepEqual(l, l2) {
		t.Error("the offline plan differs from the online one")
	}
	err = Fetch(context.Background(), off, l, e.ca, nil)
	var me *MissingError
	if !errors.As(err, &me) || len(me.Packages) != 4 {
		t.Fatalf("offline fetch on an empty cache: %v; want the 4 packages listed", err)
	}
	for _, p := range l.Packages {
		if !strings.Contains(err.Error(), p.Name+" "+p.Version+" ("+p.URL+")") {
			t.Errorf("the error does not name %s:\n%v", p.Name, err)
		}
	}
	// Fetch one package, then only the other three are missing.
	one := *l
	one.Packages = l.Packages[:1]
	if err := Fetch(context.Background(), e.client, &one, e.ca, nil); err != nil {
		t.Fatal(err)
	}
	err = Fetch(context.Background(), off, l, e.ca, nil)
	if !errors.As(err, &me) || len(me.Packages) != 3 || strings.Contains(err.Error(), l.Packages[0].URL) {
		t.Errorf("offline fetch with one package cached: %v", err)
	}
	if _, err := Unpack(context.Background(), l, e.ca, UnpackOptions{}); !errors.As(err, &me) || len(me.Packages) != 3 {
		t.Errorf("unpack with three packages missing: %v", err)
	}
}

// TestFixtureRefused: every broken input is refused with an error that
// says what and where, and leaves nothing in the cache.
func TestFixtureRefused(t *testing.T) {
	past := time.Now().Add(-time.Hour)
	for _, tc := range []struct {
		name   string
		repo   fixture.Repo
		want   []string
		breaks func(t *testing.T, e *repoEnv)
		after  func(t *testing.T, e *repoEnv)
		clean  []string
		pkgs   []string
	}{
		{name: "bad signature", repo: fixture.Repo{Key: otherKey}, want: []string{"InRelease", "signed by no key of the keyring"}, clean: []string{"indexes", "releases", "debs"}},
		{name: "altered Release", want: []string{"InRelease", "bad signature"}, clean: []string{"indexes", "releases", "debs"},
			breaks: func(t *testing.T, e *repoEnv) {
				p := filepath.Join(e.w.Dir, "dists/trixie/InRelease")
				b, _ := os.ReadFile(p)
				os.WriteFile(p, bytes.Replace(b, []byte("Origin: Test"), []byte("Origin: Evil"), 1), 0o644)
			}},
		{name: "expired Release", repo: fixture.Repo{ValidUntil: past}, want: []string{"InRelease expired on", "Valid-Until"}, clean: []string{"indexes", "releases"}},
		{name: "wrong index hash", want: []string{"Packages.xz", "does not match the Release", "nothing of it was used"}, clean: []string{"indexes", "debs"},
			breaks: func(t *testing.T, e *repoEnv) {
				p := filepath.Join(e.w.Dir, e.w.IndexPath)
				b, _ := os.ReadFile(p)
				b[len(b)/2] ^= 0xff
				os.WriteFile(p, b, 0o644)
			}},
		{name: "wrong deb hash", want: []string{"libfoo 1.2", "SHA-256", "not the expected", "nothing was kept"}, clean: []string{"blobs", "manifests"},
			after: func(t *testing.T, e *repoEnv) {
				// The other packages may be complete; the damaged one
				// must not be there.
				matches, _ := filepath.Glob(filepath.Join(e.ca.Dir, "debs/sha256/*/*.deb"))
				if len(matches) > 3 {
					t.Errorf("%d .debs in the cache; at most the 3 good ones may be", len(matches))
				}
			},
			breaks: func(t *testing.T, e *repoEnv) {
				p := filepath.Join(e.w.Dir, e.w.DebPath["libfoo"])
				b, _ := os.ReadFile(p)
				b[len(b)-3] ^= 0xff
				os.WriteFile(p, b, 0o644)
			}},
		{name: "deb gone from the archive", want: []string{"libfoo 1.2", "not found (404)", "superseded", "run appliance lock"}, clean: []string{"blobs", "manifests"},
			breaks: func(t *testing.T, e *repoEnv) { os.Remove(filepath.Join(e.w.Dir, e.w.DebPath["libfoo"])) }},
		{name: "unsatisfiable", repo: fixture.Repo{Debs: []*fixture.Deb{
			{Name: "mosquitto", Version: "2.0.21-1", Arch: "arm64", Fields: map[string]string{"Depends": "libc6, libwebsockets19t64 (>= 4.3)"}},
			{Name: "libc6", Version: "2.41-12", Arch: "arm64"},
			{Name: "libwebsockets19t64", Version: "4.2-1", Arch: "arm64"},
		}}, pkgs: []string{"mosquitto"}, want: []string{"mosquitto → libwebsockets19t64 (>= 4.3): libwebsockets19t64: only version 4.2-1 is available"}, clean: []string{"debs"}},
		{name: "not in any source", repo: fixture.Repo{Debs: []*fixture.Deb{
			{Name: "mosquitto", Version: "2.0.21-1", Arch: "arm64", Fields: map[string]string{"Depends": "libwebsockets19t64 (>= 4.3)"}},
		}}, pkgs: []string{"mosquitto"}, want: []string{"resolving the packages: mosquitto → libwebsockets19t64 (>= 4.3): not in any source"}, clean: []string{"debs"}},
		{name: "conflict", repo: fixture.Repo{Debs: []*fixture.Deb{
			{Name: "chrony", Version: "4.6-1", Arch: "arm64", Fields: map[string]string{"Conflicts": "time-daemon", "Provides": "time-daemon"}},
			{Name: "systemd-timesyncd", Version: "257-1", Arch: "arm64", Fields: map[string]string{"Conflicts": "time-daemon", "Provides": "time-daemon"}},
		}}, pkgs: []string{"chrony", "systemd-timesyncd"}, want: []string{"systemd-timesyncd", "conflicts with chrony"}, clean: []string{"debs"}},
		{name: "dot dot", repo: fixture.Repo{Debs: []*fixture.Deb{
			{Name: "evil", Version: "1", Arch: "arm64", Files: []fixture.File{{Path: "./usr/", Type: tar.TypeDir}, {Path: "./usr/ok", Body: "fine"}, {Path: "./usr/../../etc/passwd", Body: "root::0:0::/:/bin/sh\n"}}},
		}}, pkgs: []string{"evil"}, want: []string{"package evil", `"./usr/../../etc/passwd" contains ".."`, "leaves the root file system"}, clean: []string{"blobs", "manifests"}},
		{name: "absolute path", repo: fixture.Repo{Debs: []*fixture.Deb{
			{Name: "evil", Version: "1", Arch: "arm64", Files: []fixture.File{{Path: "/etc/shadow", Body: "x"}}},
		}}, pkgs: []string{"evil"}, want: []string{"package evil", `"/etc/shadow" is an absolute path`}, clean: []string{"blobs", "manifests"}},
		{name: "escaping symlink", repo: fixture.Repo{Debs: []*fixture.Deb{
			{Name: "evil", Version: "1", Arch: "arm64", Files: []fixture.File{
				{Path: "./usr/", Type: tar.TypeDir}, {Path: "./usr/share/", Type: tar.TypeDir},
				{Path: "./usr/share/out", Type: tar.TypeSymlink, Link: "../../../../../tmp"},
				{Path: "./usr/share/out/owned", Body: "x"},
			}},
		}}, pkgs: []string{"evil"}, want: []string{"package evil: /usr/share/out/owned: symlink /usr/share/out → ../../../../../tmp leaves the root file system"}, clean: []string{"blobs", "manifests"}},
		{name: "escaping symlink of another package", repo: fixture.Repo{Debs: []*fixture.Deb{
			{Name: "aaa-link", Version: "1", Arch: "arm64", Files: []fixture.File{
				{Path: "./usr/", Type: tar.TypeDir}, {Path: "./usr/share/", Type: tar.TypeDir},
				{Path: "./usr/share/out", Type: tar.TypeSymlink, Link: "../../../../../tmp"},
			}},
			{Name: "bbb-write", Version: "1", Arch: "arm64", Files: []fixture.File{
				{Path: "./usr/", Type: tar.TypeDir}, {Path: "./usr/share/", Type: tar.TypeDir}, {Path: "./usr/share/out/", Type: tar.TypeDir},
				{Path: "./usr/share/out/owned", Body: "x"},
			}},
		}}, pkgs: []string{"aaa-link", "bbb-write"}, want: []string{"package bbb-write: /usr/share/out: symlink /usr/share/out → ../../../../../tmp leaves the root file system"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.repo.Debs == nil {
				tc.repo.Debs = goodDebs("arm64")
			}
			e := newRepo(t, &tc.repo)
			if tc.breaks != nil {
				tc.breaks(t, e)
			}
			pkgs := tc.pkgs
			if pkgs == nil {
				pkgs = []string{"tool"}
			}
			_, tr, err := e.build(t, e.request(t, e.url, pkgs...))
			if err == nil {
				t.Fatal("built; want a refusal")
			}
			if tr != nil {
				t.Error("a tree was returned with the error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\nlacks %q", err, w)
				}
			}
			assertClean(t, e.ca, tc.clean...)
			if tc.after != nil {
				tc.after(t, e)
			}
		})
	}
}

// TestFixtureFileConflicts: two packages shipping one path need Replaces.
func TestFixtureFileConflicts(t *testing.T) {
	file := []fixture.File{{Path: "./etc/", Type: tar.TypeDir}, {Path: "./etc/shared", Body: "a"}}
	e := newRepo(t, &fixture.Repo{Debs: []*fixture.Deb{
		{Name: "aaa", Version: "1", Arch: "arm64", Files: file},
		{Name: "bbb", Version: "1", Arch: "arm64", Files: file},
		{Name: "ccc", Version: "1", Arch: "arm64", Files: file, Fields: map[string]string{"Replaces": "aaa (<< 2)"}},
	}})
	_, _, err := e.build(t, e.request(t, e.url, "aaa", "bbb"))
	if err == nil || !strings.Contains(err.Error(), "package bbb: /etc/shared is also in package aaa, and neither Replaces the other") {
		t.Errorf("aaa and bbb: %v", err)
	}
	_, tr, err := e.build(t, e.request(t, e.url, "aaa", "ccc"))
	if err != nil {
		t.Fatal(err)
	}
	if got := tr.Get("etc/shared").Package; got != "ccc" {
		t.Errorf("/etc/shared belongs to %s; want ccc, which replaces aaa", got)
	}
	if got := string(tr.Get("var/lib/dpkg/info/aaa.list").Data); got != "/.\n/etc\n" {
		t.Errorf("aaa.list = %q; want /etc/shared gone to ccc", got)
	}
}

// TestFixturePrecedence: the higher-priority source wins whatever the
// versions; among equal priorities the higher version wins.
func TestFixturePrecedence(t *testing.T) {
	debian := newRepo(t, &fixture.Repo{Debs: []*fixture.Deb{{Name: "raspi-firmware", Version: "1:1.20250430-4", Arch: "all"}, {Name: "libcamera0", Version: "0.5-1", Arch: "arm64"}}})
	rpi := newRepo(t, &fixture.Repo{Debs: []*fixture.Deb{{Name: "raspi-firmware", Version: "1:1.20250305-1+rpt1", Arch: "all"}, {Name: "libcamera0", Version: "0.4-1+rpt1", Arch: "arm64"}}})
	req := debian.request(t, debian.url, "raspi-firmware", "libcamera0")
	second := *req.Sources[0]
	second.Name, second.URL = "raspberrypi", rpi.url
	req.Sources = append(req.Sources, &second)
	for _, tc := range []struct {
		prio int
		want string
	}{
		{DefaultPriority, "libcamera0 0.5-1 test, raspi-firmware 1:1.20250430-4 test"},
		{RaspberryPiPriority, "libcamera0 0.4-1+rpt1 raspberrypi, raspi-firmware 1:1.20250305-1+rpt1 raspberrypi"},
	} {
		second.Priority = tc.prio
		l, err := Plan(context.Background(), debian.client, req)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, p := range l.Packages {
			got = append(got, p.Name+" "+p.Version+" "+p.Repo)
		}
		if strings.Join(got, ", ") != tc.want {
			t.Errorf("priority %d: %s; want %s", tc.prio, strings.Join(got, ", "), tc.want)
		}
	}
}

// TestFixtureReproducible: two builds of one lock give the same tree;
// SOURCE_DATE_EPOCH clamps every time; the SBOM lists every package.
func TestFixtureReproducible(t *testing.T) {
	e := newRepo(t, &fixture.Repo{Debs: goodDebs("arm64")})
	l, tr, err := e.build(t, e.request(t, e.url, "tool"))
	if err != nil {
		t.Fatal(err)
	}
	newest := int64(0)
	for _, x := range tr.Entries() {
		newest = max(newest, x.MTime)
	}
	if want := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC).Unix(); newest != want || tr.Get("var/lib/dpkg/status").MTime != want {
		t.Errorf("newest time %d, status dated %d; want the packages' %d", newest, tr.Get("var/lib/dpkg/status").MTime, want)
	}
	epoch := int64(1700000000)
	tr2, err := Unpack(context.Background(), l, e.ca, UnpackOptions{SourceDateEpoch: &epoch})
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range tr2.Entries() {
		if x.MTime > epoch {
			t.Fatalf("/%s dated %d, after SOURCE_DATE_EPOCH %d", x.Path, x.MTime, epoch)
		}
	}
	var a, b bytes.Buffer
	for _, buf := range []*bytes.Buffer{&a, &b} {
		if err := sbom.Write(buf, sbom.Document{Subject: sbom.Component{Type: "operating-system", Name: "gw", Version: "1"}, Components: SBOM(l)}); err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Error("two SBOMs of one lock differ")
	}
	var doc struct {
		SpecVersion string `json:"specVersion"`
		Components  []struct {
			Name, Version, Purl string
			Hashes              []struct{ Alg, Content string }
			Properties          []struct{ Name, Value string }
		} `json:"components"`
	}
	if err := json.Unmarshal(a.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.SpecVersion != "1.6" || len(doc.Components) != len(l.Packages) {
		t.Fatalf("SBOM: spec %s, %d components; want 1.6 and %d", doc.SpecVersion, len(doc.Components), len(l.Packages))
	}
	tool := doc.Components[3]
	if tool.Name != "tool" || tool.Purl != "pkg:deb/test/tool@1%3A2.0-1?arch=arm64" || tool.Hashes[0].Content != l.Packages[3].SHA256 || tool.Properties[0].Value != "toolsrc" {
		t.Errorf("SBOM component for tool: %+v", tool)
	}
}

// TestFixtureDpkgConfigure is the contract with the gateway's first
// boot: after the tree is written out, running each preinst with
// "install" and then dpkg --configure -a finishes the installation.
// The packages are built for the host's architecture so the host's dpkg
// can configure them (with chrootless scripts, which honour DPKG_ROOT).
func TestFixtureDpkgConfigure(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("writes device nodes and ownership: needs root")
	}
	testenv.Require(t, "dpkg")
	out, err := exec.Command("dpkg", "--print-architecture").Output()
	if err != nil {
		t.Fatal(err)
	}
	arch := strings.TrimSpace(string(out))
	e := newRepo(t, &fixture.Repo{Debs: goodDebs(arch), Arch: arch})
	req := e.request(t, e.url, "tool")
	req.Arch = arch
	_, tr, err := e.build(t, req)
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(t.TempDir(), "root")
	if err := tree.WriteDir(tr, root, e.ca, tree.WriteOptions{Verify: true, Owners: true}); err != nil {
		t.Fatal(err)
	}
	var a, b syscall.Stat_t
	syscall.Stat(filepath.Join(root, "usr/bin/tool"), &a)
	syscall.Stat(filepath.Join(root, "usr/bin/tool-again"), &b)
	if a.Ino != b.Ino || a.Mode&0o7777 != 0o4755 {
		t.Errorf("usr/bin/tool: inode %d mode %o, tool-again inode %d; want one setuid inode", a.Ino, a.Mode&0o7777, b.Ino)
	}
	want := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	for _, p := range []string{"usr/bin/tool", "usr/share/tool", "usr/share/tool/link", "var/lib/dpkg/status", ""} {
		fi, err := os.Lstat(filepath.Join(root, p))
		if err != nil || !fi.ModTime().Equal(want) {
			t.Errorf("/%s: time %v, %v; want %v", p, fi.ModTime(), err, want)
		}
	}
	run := func(name string, args ...string) {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Env = append(os.Environ(), "DPKG_ROOT="+root)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
	}
	run(filepath.Join(root, "var/lib/dpkg/info/tool.preinst"), "install")
	run("dpkg", "--root="+root, "--force-script-chrootless", "--force-not-root", "--configure", "-a")
	log, _ := os.ReadFile(filepath.Join(root, "var/log/tool.log"))
	if string(log) != "preinst install\npostinst configure \n" {
		t.Errorf("maintainer scripts ran as %q", log)
	}
	if b, err := os.ReadFile(filepath.Join(root, "etc/tool.conf")); err != nil || string(b) != "setting = 1\n" {
		t.Errorf("/etc/tool.conf after configure: %q, %v", b, err)
	}
	out, err = exec.Command("dpkg-query", "--admindir="+root+"/var/lib/dpkg", "-W", "-f=${Package}:${db:Status-Abbrev};").Output()
	if err != nil || string(out) != "base-files:ii ;libfoo:ii ;provider-x:ii ;tool:ii ;" {
		t.Errorf("dpkg-query after configure: %q, %v", out, err)
	}
}

// TestFixtureTar: the tree as a tar is the same bytes every time, and
// GNU tar reads it back with owners, modes, links and devices.
func TestFixtureTar(t *testing.T) {
	e := newRepo(t, &fixture.Repo{Debs: goodDebs("arm64")})
	_, tr, err := e.build(t, e.request(t, e.url, "tool"))
	if err != nil {
		t.Fatal(err)
	}
	var a, b bytes.Buffer
	if err := tree.WriteTar(&a, tr, e.ca); err != nil {
		t.Fatal(err)
	}
	tree.WriteTar(&b, tr, e.ca)
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Error("two tars of one tree differ")
	}
	testenv.Require(t, "tar")
	cmd := exec.Command("tar", "-tv", "--numeric-owner", "--full-time", "-f", "-")
	cmd.Stdin = &a
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("tar -t: %v", err)
	}
	for _, want := range []string{
		"-rwsr-xr-x 0/0              20 2025-06-01 00:00:00 usr/bin/tool\n",
		"hrwsr-xr-x 0/0               0 2025-06-01 00:00:00 usr/bin/tool-again link to usr/bin/tool\n",
		"lrwxrwxrwx 0/0               0 2025-06-01 00:00:00 bin -> usr/bin\n",
		"-rw-r--r-- 0/0              12 2025-06-01 00:00:00 etc/tool.conf.dpkg-new\n",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("tar -tv lacks %q:\n%s", want, out)
		}
	}
}

// TestFixtureRetry: a server that fails a download or cuts it short is
// asked again; the partial file never reaches the cache.
func TestFixtureRetry(t *testing.T) {
	dir := t.TempDir()
	w, err := (&fixture.Repo{Debs: goodDebs("arm64"), Key: testKey}).Write(dir)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	seen := map[string]int{}
	files := http.FileServer(http.Dir(dir))
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen[r.URL.Path]++
		n := seen[r.URL.Path]
		mu.Unlock()
		switch {
		case n == 1 && strings.HasSuffix(r.URL.Path, "tool_1%3a2.0-1_arm64.deb"):
			http.Error(rw, "busy", http.StatusServiceUnavailable)
		case n == 1 && strings.HasPrefix(r.URL.Path, "/pool/main/libfoo/"):
			// Half the body, then the connection drops.
			b, _ := os.ReadFile(filepath.Join(dir, r.URL.Path))
			rw.Header().Set("Content-Length", fmt.Sprint(len(b)))
			rw.Write(b[:len(b)/2])
			panic(http.ErrAbortHandler)
		default:
			files.ServeHTTP(rw, r)
		}
	}))
	defer srv.Close()
	_ = w
	ca := &cache.Cache{Dir: filepath.Join(t.TempDir(), "cache")}
	e := &repoEnv{url: srv.URL, ca: ca, client: &apt.Client{Store: ca, Retries: 2}}
	if _, _, err := e.build(t, e.request(t, srv.URL, "tool")); err != nil {
		t.Fatalf("with retries: %v", err)
	}
	if seen["/pool/main/tool/tool_1%3a2.0-1_arm64.deb"] != 2 || seen["/pool/main/libfoo/libfoo_1.2_arm64.deb"] != 2 {
		t.Errorf("requests: %v", seen)
	}
	assertClean(t, ca)
}

// writeExt4 writes a tree into an ext4 image and checks it with e2fsck.
func writeExt4(t *testing.T, tr *tree.Tree, blobs tree.Blobs, size int64) (string, error) {
	t.Helper()
	img := filepath.Join(t.TempDir(), "root.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := ext4.Write(f, Ext4Entries(tr, blobs), ext4.Options{Size: size, Time: time.Unix(1700000000, 0)}); err != nil {
		return "", err
	}
	if out, err := exec.Command("e2fsck", "-fn", img).CombinedOutput(); err != nil {
		t.Fatalf("e2fsck -fn: %v\n%s", err, out)
	}
	return img, nil
}

func debugfs(t *testing.T, img, req string) string {
	t.Helper()
	out, err := exec.Command("debugfs", "-R", req, img).CombinedOutput()
	if err != nil {
		t.Fatalf("debugfs -R %q: %v\n%s", req, err, out)
	}
	return string(out)
}

// TestFixtureExt4: the tree goes into an ext4 image that e2fsck accepts,
// with its hard links, device nodes, setuid bits and times; a damaged
// blob fails the write.
func TestFixtureExt4(t *testing.T) {
	testenv.Require(t, "e2fsck", "debugfs")
	e := newRepo(t, &fixture.Repo{Debs: goodDebs("arm64")})
	_, tr, err := e.build(t, e.request(t, e.url, "tool"))
	if err != nil {
		t.Fatal(err)
	}
	// No package ships a device node; appliance adds the few a system
	// needs.
	tr.MkdirAll("dev", tree.Entry{Mode: 0o755})
	tr.Put(&tree.Entry{Path: "dev/tool0", Type: tree.CharDev, Major: 1, Minor: 3, Mode: 0o600})
	img, err := writeExt4(t, tr, e.ca, 64<<20)
	if err != nil {
		t.Fatal(err)
	}
	for req, want := range map[string][]string{
		"stat /usr/bin/tool-again":     {"Mode:  04755", "Links: 2", "Size: 20"},
		"cat /usr/bin/tool":            {"#!/bin/sh\necho tool\n"},
		"stat /dev/tool0":              {"Type: character special", "Device major/minor number: 01:03"},
		"stat /bin":                    {"Type: symlink", `Fast link dest: "usr/bin"`},
		"stat /etc/tool.conf.dpkg-new": {"mtime: 0x683b9800", "Mode:  0644"},
	} {
		out := debugfs(t, img, req)
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("debugfs %s lacks %q:\n%s", req, w, out)
			}
		}
	}
	blob := e.ca.BlobPath(tr.Get("usr/lib/libfoo.so.1").Blob)
	os.WriteFile(blob, []byte("FLE"), 0o644)
	if _, err := writeExt4(t, tr, e.ca, 64<<20); err == nil || !strings.Contains(err.Error(), "was damaged") || !strings.Contains(err.Error(), "removed it") {
		t.Errorf("a damaged blob: %v", err)
	}
	if _, err := os.Stat(blob); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the damaged blob is still in the cache: %v", err)
	}
}
