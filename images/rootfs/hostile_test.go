package rootfs

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/appliance/appliance/images/apt"
	"github.com/appliance/appliance/images/cache"
	"github.com/appliance/appliance/images/fixture"
	"github.com/appliance/appliance/images/tree"
	"github.com/appliance/appliance/internal/testenv"
)

// TestFixtureHostileDebs: every hostile package of the fixture is
// refused at unpacking with one error that names the package, its .deb
// and what is wrong, and leaves neither blobs nor a manifest behind.
func TestFixtureHostileDebs(t *testing.T) {
	want := map[string][]string{
		"dot dot":                     {`"./usr/../../etc/passwd" contains ".."`, "leaves the root file system"},
		"absolute path":               {`"/etc/shadow" is an absolute path`},
		"escaping symlink":            {"/usr/share/out/owned: symlink /usr/share/out → ../../../../../tmp leaves the root file system"},
		"escaping hard link":          {"/usr/share/shadow: hard link target", `contains ".."`},
		"absolute hard link":          {"/usr/share/shadow: hard link target", "is an absolute path"},
		"hard link through a symlink": {"/usr/share/shadow: hard link to /usr/share/up/etc/shadow", "leaves the root file system"},
		"char device":                 {"/dev/mem0 is a character device", "Debian Policy (10.6) forbids device files"},
		"block device":                {"/dev/sda9 is a block device", "Debian Policy (10.6)"},
		"fifo":                        {"/usr/share/pipe is a FIFO", "Debian Policy (10.6)"},
		"long name":                   {`name "./usr/share/nnnn`, "is 5012 bytes; a path has at most 4095"},
		"long component":              {"has a component of 256 bytes; a file name has at most 255"},
		"long path":                   {"is 4213 bytes; a path has at most 4095"},
		"long symlink target":         {"/usr/share/l: symlink target", "is 5000 bytes; a path has at most 4095"},
		"newline in a name":           {"holds a newline or NUL, which dpkg refuses"},
		"unknown compressor":          {`data.tar.lz4: unknown compression ".lz4"`},
		"cut data.tar.gz":             {"data.tar.gz: cut short", "the archive is incomplete"},
		"status field":                {"its control file sets Status, which only dpkg's database holds"},
		"control member list":         {`control member "list" cannot be a file of dpkg's info folder`},
		"another package's control":   {"its control file says it is bash 1 (arm64), not what the index gives"},
		"data bomb":                   {"data.tar.zst decompresses past 16779264 bytes", "more than twice the Installed-Size the index gives (1 KiB)", "decompression bomb"},
	}
	cases := fixture.HostileDebs()
	for _, h := range cases {
		t.Run(h.Case, func(t *testing.T) {
			w, ok := want[h.Case]
			if !ok {
				t.Fatalf("no expectation for the fixture's case %q", h.Case)
			}
			e := newRepo(t, &fixture.Repo{Debs: []*fixture.Deb{h.Deb}})
			_, tr, err := e.build(t, e.request(t, e.url, "evil"))
			if err == nil {
				t.Fatal("built; want a refusal")
			}
			if tr != nil {
				t.Error("a tree was returned with the error")
			}
			file := filepath.Base(e.w.DebPath["evil"])
			for _, s := range append([]string{"package evil 1 (" + file + ")"}, w...) {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q\nlacks %q", err, s)
				}
			}
			assertClean(t, e.ca, "blobs", "manifests")
		})
	}
	if len(want) != len(cases) {
		t.Errorf("%d expectations for %d cases", len(want), len(cases))
	}
}

// TestFixtureOversizeDeb: a mirror that serves 2 GiB for a package the
// index gives as a few hundred bytes is cut off there: the server sent
// no more than the size and the connection's buffers, nothing was kept.
func TestFixtureOversizeDeb(t *testing.T) {
	dir := t.TempDir()
	w, err := (&fixture.Repo{Debs: goodDebs("arm64"), Key: testKey}).Write(dir)
	if err != nil {
		t.Fatal(err)
	}
	srv := fixture.NewServer(dir)
	defer srv.Close()
	ca := &cache.Cache{Dir: filepath.Join(t.TempDir(), "cache")}
	e := &repoEnv{ca: ca, client: &apt.Client{Store: ca, HTTP: fixture.Client(), Retries: 2}}
	l, err := Plan(context.Background(), e.client, e.request(t, srv.URL, "tool"))
	if err != nil {
		t.Fatal(err)
	}
	var size int64
	for _, p := range l.Packages {
		if p.Name == "libfoo" {
			size = p.Size
		}
	}
	path := "/" + w.DebPath["libfoo"]
	srv.Huge(path, 2<<30, false)
	err = Fetch(context.Background(), e.client, l, ca, nil)
	if err == nil || !strings.Contains(err.Error(), "libfoo 1.2") || !strings.Contains(err.Error(), "more than the") {
		t.Errorf("a 2 GiB body for a %d-byte package: %v", size, err)
	}
	srv.Close()
	if sent := srv.Sent(path); sent > size+fixture.Slack {
		t.Errorf("the server sent %d bytes before the client stopped; want at most %d + %d", sent, size, fixture.Slack)
	}
	if ca.Has("debs", l.Packages[1].SHA256) {
		t.Error("the oversize package was kept")
	}
	assertClean(t, ca)
}

// built is a fixture repository built once into a private cache: the
// lock, the tree, and the SBOM of the lock.
func built(t *testing.T) (*repoEnv, *Lock, *tree.Tree) {
	t.Helper()
	e := newRepo(t, &fixture.Repo{Debs: goodDebs("arm64")})
	l, tr, err := e.build(t, e.request(t, e.url, "tool"))
	if err != nil {
		t.Fatal(err)
	}
	return e, l, tr
}

// tamper changes the first occurrence of old in a file.
func tamper(t *testing.T, path, old, new string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte(old)) {
		t.Fatalf("%s does not hold %q", path, old)
	}
	if err := os.WriteFile(path, bytes.Replace(b, []byte(old), []byte(new), 1), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestFixtureTamperedManifest: a one-byte change to a cached manifest
// ("mode":420 → 422, a world-writable file) is not believed: the
// manifest no longer has the hash the lock's record gives, so the
// package is unpacked again from its .deb — or, with the .debs gone,
// downloaded again — and the tree is the untampered one. Offline, with
// no .deb to unpack it from, the package is reported missing.
func TestFixtureTamperedManifest(t *testing.T) {
	for _, debsGone := range []bool{false, true} {
		e, l, want := built(t)
		libfoo := l.Packages[1]
		if libfoo.Name != "libfoo" || libfoo.Unpacked == "" {
			t.Fatalf("package 1 is %s, Unpacked %q", libfoo.Name, libfoo.Unpacked)
		}
		// The lock and its record, as a later run reads them.
		record := filepath.Join(t.TempDir(), UnpackedName)
		if err := l.SaveUnpacked(record); err != nil {
			t.Fatal(err)
		}
		l2 := *l
		l2.Packages = append([]LockPackage{}, l.Packages...)
		for i := range l2.Packages {
			l2.Packages[i].Unpacked = ""
		}
		if err := l2.LoadUnpacked(record); err != nil {
			t.Fatal(err)
		}
		manifest := e.ca.Path("manifests", libfoo.SHA256)
		tamper(t, manifest, `"mode":420`, `"mode":422`)
		if debsGone {
			os.RemoveAll(filepath.Join(e.ca.Dir, "debs"))
			off := UnpackOptions{Client: &apt.Client{Store: e.ca, Offline: true}}
			_, err := Unpack(context.Background(), &l2, e.ca, off)
			var me *MissingError
			if !errors.As(err, &me) || len(me.Packages) != 1 || me.Packages[0].Name != "libfoo" {
				t.Fatalf("offline, a tampered manifest and no .deb: %v; want libfoo missing", err)
			}
			if m := Missing(&l2, e.ca); len(m) != 1 || m[0].Name != "libfoo" {
				t.Errorf("Missing lists %v; want libfoo, whose manifest the record does not vouch for", m)
			}
		}
		got, err := Unpack(context.Background(), &l2, e.ca, UnpackOptions{Client: e.client})
		if err != nil {
			t.Fatal(err)
		}
		if f := got.Get("usr/lib/libfoo.so.1"); f == nil || f.Mode != 0o644 {
			t.Errorf(".deb gone %v: /usr/lib/libfoo.so.1 is %+v; want mode 644 as the package has it", debsGone, f)
		}
		if !sameTree(want.Entries(), got.Entries()) {
			t.Errorf(".deb gone %v: the tree from a tampered cache differs from the first", debsGone)
		}
		if l2.Packages[1].Unpacked != libfoo.Unpacked {
			t.Errorf("the manifest made again has hash %s; the first had %s", l2.Packages[1].Unpacked, libfoo.Unpacked)
		}
		if _, ok := readManifest(e.ca, l2.Packages[1]); !ok {
			t.Error("the cached manifest was not repaired")
		}
		assertClean(t, e.ca)
	}
}

// TestFixtureCacheRepair: damage anywhere in the cache is repaired by
// unpacking or downloading again, never left for the user to delete: a
// cached .deb that is no longer an ar archive, a manifest naming a blob
// that is gone, a blob whose content was altered (found as the image is
// written, removed, and made again by the next run).
func TestFixtureCacheRepair(t *testing.T) {
	ctx := context.Background()
	t.Run("deb not an ar archive", func(t *testing.T) {
		e, l, want := built(t)
		os.RemoveAll(filepath.Join(e.ca.Dir, "manifests"))
		deb := e.ca.Path("debs", l.Packages[1].SHA256)
		if err := os.WriteFile(deb, []byte("not a deb at all\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		for run := range 2 {
			got, err := Unpack(ctx, l, e.ca, UnpackOptions{Client: e.client})
			if err != nil {
				t.Fatalf("run %d: %v", run, err)
			}
			if !sameTree(want.Entries(), got.Entries()) {
				t.Errorf("run %d: the tree differs from the first", run)
			}
		}
		if err := e.ca.Verify("debs", l.Packages[1].SHA256); err != nil {
			t.Errorf("the damaged .deb was not downloaded again: %v", err)
		}
		assertClean(t, e.ca)
	})
	t.Run("deb damaged, offline", func(t *testing.T) {
		e, l, _ := built(t)
		os.RemoveAll(filepath.Join(e.ca.Dir, "manifests"))
		os.WriteFile(e.ca.Path("debs", l.Packages[1].SHA256), []byte("!<arch>\ndamaged"), 0o644)
		_, err := Unpack(ctx, l, e.ca, UnpackOptions{Client: &apt.Client{Store: e.ca, Offline: true}})
		var me *MissingError
		if !errors.As(err, &me) || len(me.Packages) != 1 || !strings.Contains(err.Error(), "run once without --offline") {
			t.Errorf("offline, a damaged .deb: %v; want it listed as missing", err)
		}
		if e.ca.Has("debs", l.Packages[1].SHA256) {
			t.Error("the damaged .deb is still in the cache")
		}
	})
	t.Run("blob gone", func(t *testing.T) {
		for _, debsGone := range []bool{false, true} {
			e, l, want := built(t)
			blob := e.ca.BlobPath(want.Get("usr/lib/libfoo.so.1").Blob)
			os.Remove(blob)
			if debsGone {
				os.RemoveAll(filepath.Join(e.ca.Dir, "debs"))
			}
			got, err := Unpack(ctx, l, e.ca, UnpackOptions{Client: e.client})
			if err != nil {
				t.Fatal(err)
			}
			if !sameTree(want.Entries(), got.Entries()) {
				t.Errorf(".debs gone %v: the tree differs from the first", debsGone)
			}
			if _, err := os.Stat(blob); err != nil {
				t.Errorf(".debs gone %v: the blob was not made again: %v", debsGone, err)
			}
		}
	})
	t.Run("blob altered", func(t *testing.T) {
		testenv.Require(t, "e2fsck", "debugfs")
		e, l, tr := built(t)
		blob := e.ca.BlobPath(tr.Get("usr/lib/libfoo.so.1").Blob)
		os.WriteFile(blob, []byte("FLE"), 0o644)
		if _, err := writeExt4(t, tr, e.ca, 64<<20); err == nil || !strings.Contains(err.Error(), "removed it: build again") {
			t.Fatalf("a damaged blob: %v", err)
		}
		if _, err := os.Stat(blob); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("the damaged blob is still there: %v", err)
		}
		tr2, err := Unpack(ctx, l, e.ca, UnpackOptions{Client: e.client})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := writeExt4(t, tr2, e.ca, 64<<20); err != nil {
			t.Errorf("the next run: %v", err)
		}
	})
}

// cancelAtEOF cancels a context once a response body of a path ending
// in suffix has been read to its end: the moment a download is done and
// the work on it (decompressing, parsing, resolving) begins, which no
// network read would notice being interrupted.
type cancelAtEOF struct {
	suffix string
	cancel context.CancelFunc
}

func (c cancelAtEOF) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(r)
	if err == nil && strings.HasSuffix(r.URL.Path, c.suffix) {
		resp.Body = &eofBody{ReadCloser: resp.Body, cancel: c.cancel}
	}
	return resp, err
}

type eofBody struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *eofBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.cancel()
	}
	return n, err
}

// TestPlanInterrupted: a plan interrupted once the index is downloaded
// — while it is decompressed, parsed and resolved — ends with the
// context's error and no lock.
func TestPlanInterrupted(t *testing.T) {
	e := newRepo(t, &fixture.Repo{Debs: goodDebs("arm64")})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := &apt.Client{HTTP: &http.Client{Transport: cancelAtEOF{suffix: "/Packages.xz", cancel: cancel}}}
	l, err := Plan(ctx, c, e.request(t, e.url, "tool"))
	if !errors.Is(err, context.Canceled) || l != nil {
		t.Errorf("Plan interrupted after the download: lock %v, error %v; want context.Canceled and no lock", l != nil, err)
	}
}
