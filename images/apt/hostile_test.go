package apt

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/appliance/appliance/images/cache"
	"github.com/appliance/appliance/images/deb"
	"github.com/appliance/appliance/images/fixture"
)

var archiveKey = func() *fixture.Key {
	k, err := fixture.NewKey("archive")
	if err != nil {
		panic(err)
	}
	return k
}()

// mirror is a fixture repository served on loopback, and a client of it
// with a private cache.
type mirror struct {
	dir    string
	srv    *fixture.Server
	client *Client
	src    *Source
}

func serve(t *testing.T, r *fixture.Repo) *mirror {
	t.Helper()
	if r.Key == nil {
		r.Key = archiveKey
	}
	if r.Debs == nil {
		r.Debs = []*fixture.Deb{{Name: "hello", Version: "2.0", Arch: "arm64"}}
	}
	dir := t.TempDir()
	if _, err := r.Write(dir); err != nil {
		t.Fatal(err)
	}
	srv := fixture.NewServer(dir)
	t.Cleanup(srv.Close)
	kr, err := ReadKeyring(archiveKey.Public(false))
	if err != nil {
		t.Fatal(err)
	}
	ca := &cache.Cache{Dir: filepath.Join(t.TempDir(), "cache")}
	return &mirror{dir: dir, srv: srv,
		client: &Client{Store: ca, HTTP: fixture.Client()},
		src:    &Source{Name: "test", URL: srv.URL, Suite: "trixie", Components: []string{"main"}, Keyring: kr}}
}

// packages reads the mirror's Release and index.
func (m *mirror) packages(ctx context.Context) ([]*Package, error) {
	rel, err := m.client.Release(ctx, m.src)
	if err != nil {
		return nil, err
	}
	return m.client.Packages(ctx, m.src, rel, "arm64")
}

func wantError(t *testing.T, err error, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error; want one saying %q", want)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q\nlacks %q", err, w)
		}
	}
}

// TestOversize: a mirror that answers with an endless body is cut off
// where the signed data (or, for a Release, MaxReleaseSize) says the
// file ends. The server counts what it sent: no more than that size and
// the connection's buffers (fixture.Slack), out of a gibibyte.
func TestOversize(t *testing.T) {
	const served = 1 << 30
	index := "/dists/trixie/main/binary-arm64/Packages.xz"
	for _, tc := range []struct {
		name    string
		path    string
		declare bool
		limit   func(m *mirror) int64
		want    []string
	}{
		{"InRelease", "/dists/trixie/InRelease", false, func(*mirror) int64 { return MaxReleaseSize }, []string{"InRelease", "more than the 10000000 bytes expected"}},
		{"InRelease with its length declared", "/dists/trixie/InRelease", true, func(*mirror) int64 { return 0 }, []string{"InRelease", "more than the 10000000 bytes expected"}},
		{"Packages.xz", index, false, func(m *mirror) int64 { return m.release(t).Files["main/binary-arm64/Packages.xz"].Size }, []string{"Packages.xz", "more than the", "bytes expected"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := serve(t, &fixture.Repo{})
			limit := tc.limit(m)
			m.srv.Huge(tc.path, served, tc.declare)
			_, err := m.packages(context.Background())
			wantError(t, err, tc.want...)
			var tl *TooLargeError
			if !errors.As(err, &tl) {
				t.Errorf("error %v is not a *TooLargeError", err)
			}
			m.srv.Close()
			sent := m.srv.Sent(tc.path)
			t.Logf("limit %d, sent %d", limit, sent)
			if sent > limit+fixture.Slack {
				t.Errorf("the server sent %d bytes of %s before the client stopped; want at most %d + %d", sent, tc.path, limit, fixture.Slack)
			}
			if tmp, _ := (&cache.Cache{Dir: m.client.Store.(*cache.Cache).Dir}).Temporaries(); len(tmp) > 0 {
				t.Errorf("temporaries left: %v", tmp)
			}
		})
	}
}

// release reads the mirror's Release with a client of its own.
func (m *mirror) release(t *testing.T) *Release {
	t.Helper()
	rel, err := (&Client{}).Release(context.Background(), m.src)
	if err != nil {
		t.Fatal(err)
	}
	return rel
}

// TestIndexBomb: a signed Packages.xz that expands to 16 MiB, where the
// Release gives the uncompressed index a few hundred bytes, is refused
// having read no more than that size and one byte from the
// decompressor — through the host's xz and the Go decoder alike.
func TestIndexBomb(t *testing.T) {
	defer func(v bool) { deb.PureGo = v }(deb.PureGo)
	bomb := fixture.XZBomb(16 << 20)
	for _, pure := range []bool{false, true} {
		deb.PureGo = pure
		m := serve(t, &fixture.Repo{Override: map[string][]byte{"main/binary-arm64/Packages.xz": bomb}})
		plain := m.release(t).Files["main/binary-arm64/Packages"].Size
		before := decompressed.Load()
		_, err := m.packages(context.Background())
		wantError(t, err, "Packages.xz", "decompresses past the", "decompression bomb")
		if read := decompressed.Load() - before; read > plain+1 {
			t.Errorf("pure Go %v: %d bytes read from the decompressor; want at most %d (the Release's size of the index, and one)", pure, read, plain+1)
		}
		if c := m.client.Store.(*cache.Cache); c.Has("indexes", m.release(t).Files["main/binary-arm64/Packages"].SHA256) {
			t.Error("a bomb's output was kept as the index")
		}
	}
}

// TestReplay: a Release older than one seen before — kept from an
// earlier run, or recorded in the lock (NotBefore) — is refused, and
// does not replace the newer one; one dated ahead of the clock by more
// than MaxFuture is refused, within it accepted.
func TestReplay(t *testing.T) {
	now := time.Now()
	ctx := context.Background()
	newer := &fixture.Repo{Date: now.Add(-time.Hour), Debs: []*fixture.Deb{{Name: "h-ver", Version: "2.0", Arch: "arm64"}}}
	older := &fixture.Repo{Key: archiveKey, Date: now.Add(-49 * time.Hour), Debs: []*fixture.Deb{{Name: "h-ver", Version: "1.0", Arch: "arm64"}}}

	m := serve(t, newer)
	if _, err := m.packages(ctx); err != nil {
		t.Fatal(err)
	}
	// The mirror now serves the older, still valid, signed Release.
	os.RemoveAll(filepath.Join(m.dir, "dists"))
	if _, err := older.Write(m.dir); err != nil {
		t.Fatal(err)
	}
	_, err := m.packages(ctx)
	wantError(t, err, "InRelease is dated", "before the Release of", "read here earlier", "replayed")
	// The newer one is still what offline runs read.
	off := &Client{Store: m.client.Store, Offline: true}
	pkgs, err := (&mirror{client: off, src: m.src}).packages(ctx)
	if err != nil || len(pkgs) != 1 || pkgs[0].Version != "2.0" {
		t.Errorf("offline after the replay: %v, %v; want h-ver 2.0", pkgs, err)
	}

	// With an empty cache, the lock's date refuses it too, online and
	// offline.
	fresh := serve(t, older)
	fresh.src.NotBefore = now.Add(-time.Hour).Truncate(time.Second)
	_, err = fresh.packages(ctx)
	wantError(t, err, "before the Release of", "that the lock was made from")
	m.src.NotBefore = now.Add(time.Hour)
	_, err = (&mirror{client: off, src: m.src}).packages(ctx)
	wantError(t, err, "that the lock was made from")

	for _, tc := range []struct {
		ahead time.Duration
		ok    bool
	}{{30 * 24 * time.Hour, false}, {MaxFuture + time.Minute, false}, {MaxFuture - time.Minute, true}} {
		m := serve(t, &fixture.Repo{Date: now.Add(tc.ahead)})
		_, err := m.packages(ctx)
		if tc.ok && err != nil {
			t.Errorf("dated %s ahead: %v", tc.ahead, err)
		}
		if !tc.ok {
			wantError(t, err, "ahead of this machine's clock", "check the clock")
			if _, kerr := m.client.Store.GetNamed("releases", releaseKey(m.src)+".InRelease", MaxReleaseSize); kerr == nil {
				t.Errorf("dated %s ahead: the refused Release was kept", tc.ahead)
			}
		}
	}
	m = serve(t, &fixture.Repo{OmitDate: true})
	_, err = m.packages(ctx)
	wantError(t, err, "has no Date")
}

// TestBadStanzas: an index stanza whose name, version, architecture,
// source, file name, size or hash is not what Debian's policy allows is
// refused, naming it, before anything of the index is used.
func TestBadStanzas(t *testing.T) {
	want := map[string]string{
		"name that is a path":         `"evil/../../../../etc/cron.d/pwn" is not a package name`,
		"upper-case name":             `"Evil" is not a package name`,
		"name starting with a dot":    `".evil" is not a package name`,
		"version with a slash":        `"1.0/../../x" is not a Debian version`,
		"version with a space":        `"1.0 2" is not a Debian version`,
		"epoch not a number":          `"x:1.0" is not a Debian version: the epoch`,
		"empty revision":              `"1.0-" is not a Debian version: the revision`,
		"architecture that is path":   `"arm64/../../x" is not an architecture name`,
		"source that is a path":       `Source: "../../evil" is not a package name`,
		"source version with a path":  `Source: "1.0/../x" is not a Debian version`,
		"hash that is a path":         "no SHA256 or Filename",
		"filename with dot dot":       `Filename: "pool/../../../etc/shadow" has an empty, "." or ".." component`,
		"absolute filename":           `Filename: "/etc/shadow" is absolute`,
		"negative size":               `bad Size "-1"`,
		"duplicate with another hash": "lists fine 1.0-1 (arm64) twice",
	}
	stanzas := fixture.BadStanzas()
	for name, stanza := range stanzas {
		t.Run(name, func(t *testing.T) {
			w, ok := want[name]
			if !ok {
				t.Fatalf("no expectation for the fixture's case %q", name)
			}
			m := serve(t, &fixture.Repo{ExtraIndex: stanza})
			_, err := m.packages(context.Background())
			wantError(t, err, "source test", "Packages.xz", w)
		})
	}
	if len(want) != len(stanzas) {
		t.Errorf("%d expectations for %d cases", len(want), len(stanzas))
	}
}

// TestNames: Debian's own names, versions and architectures pass; the
// real archive's every stanza is read in TestDebianTrixie (rootfs).
func TestNames(t *testing.T) {
	for _, n := range []string{"libstdc++6", "g++-14", "python3.13", "0ad", "libc6", "a"} {
		if err := ValidName(n); err != nil {
			t.Errorf("ValidName(%q) = %v", n, err)
		}
	}
	for _, v := range []string{"1:2.41-12+deb13u1", "2.0.21-1~bpo12+1", "1.0+dfsg", "0.9.8~rc1", "2:9.1.0016-1", "1.2.3-4-5", "20240101", "1:2:3-1", "r1.0"} {
		if err := ValidVersion(v); err != nil {
			t.Errorf("ValidVersion(%q) = %v", v, err)
		}
	}
	for _, v := range []string{"", ":1", "1:", "-1", "1.0 ", "1.0_1", "1.0-a_b", "1:2/3"} {
		if ValidVersion(v) == nil {
			t.Errorf("ValidVersion(%q) accepted it", v)
		}
	}
	for _, a := range []string{"arm64", "all", "armhf", "amd64", "ppc64el", "hurd-i386"} {
		if err := ValidArch(a); err != nil {
			t.Errorf("ValidArch(%q) = %v", a, err)
		}
	}
}

// TestUnsigned: a repository with neither InRelease nor Release.gpg is
// refused as unsigned, not as a missing file; one with no Release at
// all says to check the URL and suite.
func TestUnsigned(t *testing.T) {
	m := serve(t, &fixture.Repo{Unsigned: true})
	_, err := m.packages(context.Background())
	wantError(t, err, "source test: the repository is unsigned", "neither InRelease nor Release.gpg", "only signed repositories")
	if strings.Contains(err.Error(), "404") {
		t.Errorf("the refusal speaks of a 404: %v", err)
	}
	m.src.Suite = "bookworm"
	_, err = m.packages(context.Background())
	wantError(t, err, "dists/bookworm/ has neither InRelease nor Release", "check the source's URL and suite")
}

// TestParseInterrupted: parsing an index stops once its context is done.
func TestParseInterrupted(t *testing.T) {
	var b strings.Builder
	for i := range 10000 {
		b.WriteString("Package: p" + strings.Repeat("x", i%7) + "\nVersion: 1\nArchitecture: all\nFilename: pool/p.deb\nSize: 1\nSHA256: " + strings.Repeat("0", 64) + "\n\n")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	pkgs, err := parseParallel(ctx, []byte(b.String()), &Source{Name: "test"})
	if !errors.Is(err, context.Canceled) || pkgs != nil {
		t.Errorf("parse with a done context: %d packages, %v; want context.Canceled", len(pkgs), err)
	}
}
