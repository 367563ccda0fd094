package apply

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/appliance/appliance/generation"
	"github.com/appliance/appliance/internal/testenv"
	"golang.org/x/sys/unix"
)

// TestRollbackAndList: rollback makes generation 3 with generation 1's
// files, from the store; list shows the kept generations with their
// dates and changes; a second rollback returns to generation 2's files.
func TestRollbackAndList(t *testing.T) {
	g := newGateway(t)
	m1 := g.gen1()
	g.mustSwitch(m1)
	at1 := g.digest()
	if _, code, stderr := g.run("rollback"); code != 1 || !strings.Contains(stderr, "generation 1 is the only one on this gateway") {
		t.Errorf("rollback with one generation: exit %d, %s", code, stderr)
	}
	m2 := g.gen2(m1)
	g.mustSwitch(m2)
	at2 := g.digest()
	g.clearCalls()

	evs, code, stderr := g.run("rollback")
	if code != 0 {
		t.Fatalf("rollback: exit %d: %s\n%s", code, stderr, dump(evs))
	}
	m3 := *m1
	m3.Generation = 3
	g.assertOn(&m3, m2)
	if got := g.calls(); !reflect.DeepEqual(got, acted) {
		t.Errorf("rollback's systemctl calls %q, want %q", got, acted)
	}
	if d := managedDiff(at1, g.digest()); d != "" {
		t.Errorf("after the rollback the files differ from generation 1's:\n%s", d)
	}

	l := g.list()
	if l.Current != 3 || len(l.Generations) != 2 || l.Generations[0].Generation != 2 || l.Generations[1].Generation != 3 || !l.Generations[1].Current || l.Generations[0].Current {
		t.Fatalf("list: %+v", l)
	}
	if c := l.Generations[1].Changes; len(c) != 1 || c[0] != "rollback from generation 2 to generation 1 (of 2026-03-01)" {
		t.Errorf("generation 3's changes: %q", c)
	}
	if l.Generations[0].Appliance != "v1.1.0" || !l.Generations[0].Created.Equal(m2.Created) {
		t.Errorf("generation 2 listed as %+v", l.Generations[0])
	}
	if _, err := os.Stat(filepath.Join(g.root, genDir(1))); !os.IsNotExist(err) {
		t.Errorf("generation 1 was not pruned: %v", err)
	}

	if _, code, stderr := g.run("rollback"); code != 0 {
		t.Fatalf("second rollback: exit %d: %s", code, stderr)
	}
	m4 := *m2
	m4.Generation = 4
	g.assertOn(&m4, m1)
	if d := managedDiff(at2, g.digest()); d != "" {
		t.Errorf("after the second rollback the files differ from generation 2's:\n%s", d)
	}
	// The store keeps only the previous generation's (3's) bytes that 4
	// replaced.
	store, _ := os.ReadDir(filepath.Join(g.root, storeDir))
	need := map[string]bool{}
	for _, e := range m1.Entries {
		need[e.SHA256] = true
	}
	for _, f := range store {
		if !need[f.Name()] {
			t.Errorf("store keeps %s, which generation 3 does not have", f.Name())
		}
	}
	if len(store) == 0 {
		t.Errorf("the store is empty: generation 3 cannot come back")
	}
}

// managedDiff is DiffTrees without apply's own folder.
func managedDiff(a, b string) string {
	var out []string
	for _, l := range strings.Split(testenv.DiffTrees(a, b), "\n") {
		if l != "" && !strings.HasPrefix(l[2:], "var/lib/appliance") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func (g *gateway) list() generation.Listing {
	g.t.Helper()
	var out, errb strings.Builder
	if code := Main(context.Background(), []string{"list", "--root", g.root}, &out, &errb); code != 0 {
		g.t.Fatalf("list: exit %d: %s", code, errb.String())
	}
	var l generation.Listing
	must(g.t, json.Unmarshal([]byte(out.String()), &l))
	return l
}

// TestListUnderWay: list shows an apply that has not finished.
func TestListUnderWay(t *testing.T) {
	g, _, _, _ := killSetup(t, false)
	g.runBinary(5, "switch")
	l := g.list()
	if l.Current != 1 || l.UnderWay == nil || l.UnderWay.From != 1 || l.UnderWay.To != 2 || l.UnderWay.Phase != "install" || l.UnderWay.Kind != "switch" {
		t.Errorf("list: %+v, under way %+v", l, l.UnderWay)
	}
}

// TestAccountsAdded: a user already there is added to the groups a new
// generation gives it (usermod), and files belong to the gateway's IDs.
func TestAccountsAdded(t *testing.T) {
	g := newGateway(t)
	m1 := g.gen1()
	g.mustSwitch(m1)
	m2 := next(m1)
	m2.Users = []generation.User{{Name: "demo", UID: 2001, Group: "demo", Home: "/nonexistent", Shell: "/usr/sbin/nologin", Groups: []string{"www", "adm"}}}
	m2.Groups = append(m2.Groups, generation.Group{Name: "extra", GID: 2010})
	set(m2, g.file("/etc/demo/extra.conf", "x\n", 0o640, "demo", "extra"))
	evs := g.mustSwitch(m2)
	if find(evs, "install", "added user demo to adm") == nil || find(evs, "install", "made group extra (GID 2010)") == nil {
		t.Errorf("events:\n%s", dump(evs))
	}
	b, _ := os.ReadFile(filepath.Join(g.root, "etc/group"))
	if !strings.Contains(string(b), "adm:x:4:demo") || !strings.Contains(string(b), "extra:x:2010:") {
		t.Errorf("/etc/group:\n%s", b)
	}
	var st unix.Stat_t
	must(t, unix.Lstat(filepath.Join(g.root, "etc/demo/extra.conf"), &st))
	if st.Uid != 2001 || st.Gid != 2010 {
		t.Errorf("extra.conf is %d:%d, want 2001:2010", st.Uid, st.Gid)
	}
}

// TestPackages: a generation with a new package installs the staged
// .deb with the real dpkg (into the root's own dpkg database) before its
// files; a package is not rolled back with them.
func TestPackages(t *testing.T) {
	testenv.Require(t, "dpkg", "dpkg-deb")
	g := newGateway(t)
	for _, d := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates", "usr/share"} {
		must(t, os.MkdirAll(filepath.Join(g.root, d), 0o755))
	}
	g.write("var/lib/dpkg/status", "", 0o644)
	m1 := g.gen1()
	g.mustSwitch(m1)

	src := t.TempDir()
	g.write("../pkg/DEBIAN/control", "", 0o644) // makes the folder beside the root
	pkg := filepath.Join(filepath.Dir(g.root), "pkg")
	must(t, os.WriteFile(filepath.Join(pkg, "DEBIAN/control"), []byte("Package: apphello\nVersion: 1.0\nArchitecture: all\nMaintainer: Test <test@example.org>\nDescription: a test package\n"), 0o644))
	must(t, os.MkdirAll(filepath.Join(pkg, "usr/share/apphello"), 0o755))
	must(t, os.WriteFile(filepath.Join(pkg, "usr/share/apphello/hello.txt"), []byte("hello\n"), 0o644))
	deb := filepath.Join(src, "apphello.deb")
	testenv.MustRun(t, "dpkg-deb", "--root-owner-group", "-b", pkg, deb)
	b, err := os.ReadFile(deb)
	must(t, err)
	sum := sha256.Sum256(b)

	m2 := next(m1)
	m2.Packages = []generation.Package{{Name: "apphello", Version: "1.0", Arch: "all", SHA256: hex.EncodeToString(sum[:])}}
	m2.Checks = append(m2.Checks, generation.Check{Name: "closed", Kind: "tcp", Port: testenv.FreePort(t)})
	set(m2, g.file("/etc/demo/broker.conf", "changed\n", 0o644, "root", "root"))
	g.stage(m2)
	g.write(filepath.Join(stagingDir, "debs/apphello.deb"), string(b), 0o644)
	evs, code, stderr := g.run("switch", "--dpkg", "dpkg")
	if code != 1 {
		t.Fatalf("exit %d, want 1 (a failing check): %s\n%s", code, stderr, dump(evs))
	}
	if find(evs, "install", "installing packages: apphello 1.0") == nil || find(evs, "install", "packages installed") == nil {
		t.Errorf("events:\n%s", dump(evs))
	}
	g.assertOn(m1)
	if got, err := os.ReadFile(filepath.Join(g.root, "usr/share/apphello/hello.txt")); err != nil || string(got) != "hello\n" {
		t.Errorf("the package's file after the rollback: %q, %v", got, err)
	}
	status, _ := os.ReadFile(filepath.Join(g.root, "var/lib/dpkg/status"))
	if !strings.Contains(string(status), "Package: apphello\nStatus: install ok installed") {
		t.Errorf("dpkg status:\n%s", status)
	}
	if _, err := os.Stat(filepath.Join(g.root, debsDir, "apphello.deb")); !os.IsNotExist(err) {
		t.Errorf("the checked copy of the package was left: %v", err)
	}
}

// TestLocked: a second appliance-apply waits for none: it refuses while
// the first holds the lock.
func TestLocked(t *testing.T) {
	g := newGateway(t)
	g.mustSwitch(g.gen1())
	f, err := os.OpenFile(filepath.Join(g.root, lockPath), os.O_RDWR, 0)
	must(t, err)
	defer f.Close()
	must(t, unix.Flock(int(f.Fd()), unix.LOCK_EX))
	g.stage(g.gen2(g.gen1()))
	if _, code, stderr := g.run("switch"); code != 1 || !strings.Contains(stderr, "another appliance-apply is running") {
		t.Errorf("exit %d: %s", code, stderr)
	}
}

// TestNoFollow: the file layer refuses a path through a link, and
// replaces a link at the path itself rather than writing through it.
func TestNoFollow(t *testing.T) {
	g := newGateway(t)
	outside := t.TempDir()
	must(t, os.WriteFile(filepath.Join(outside, "target"), []byte("outside\n"), 0o644))
	must(t, os.Symlink(outside, filepath.Join(g.root, "etc/out")))
	must(t, os.Symlink(filepath.Join(outside, "target"), filepath.Join(g.root, "etc/file-link")))
	a := g.applier(t)
	if _, err := a.fs.at("/etc/out/x"); err == nil || !strings.Contains(err.Error(), "a link on the gateway lies on the way (/etc/out -> "+outside) {
		t.Errorf("through a link: %v", err)
	}
	if _, err := a.fs.hashFile("/etc/file-link"); err == nil {
		t.Errorf("read through a link")
	}
	n, err := a.fs.at("/etc/file-link")
	must(t, err)
	defer n.close()
	if _, err := n.writeFile(strings.NewReader("inside\n"), "", 0o644, 0, 0); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(outside, "target")); string(b) != "outside\n" {
		t.Errorf("the write went through the link: %q", b)
	}
	if fi, err := os.Lstat(filepath.Join(g.root, "etc/file-link")); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("the link was not replaced: %v", err)
	}
}

// BenchmarkSwitch switches back and forth between two generations that
// differ in 200 files of 4 KiB (a site's configs, certificates and
// keys), each switch verified, saved, journaled, synced and committed.
func BenchmarkSwitch(b *testing.B) {
	g := newGateway(b)
	m1 := g.gen1()
	m1.Checks = nil
	set(m1, dir("/etc/many", 0o755))
	m2 := next(m1)
	for i := range 200 {
		p := fmt.Sprintf("/etc/many/f%03d.conf", i)
		set(m1, g.file(p, strings.Repeat("a", 4095)+fmt.Sprint(i%10), 0o644, "root", "root"))
		set(m2, g.file(p, strings.Repeat("b", 4095)+fmt.Sprint(i%10), 0o644, "root", "root"))
	}
	g.mustSwitch(m1)
	ms := []*generation.Manifest{m2, m1}
	b.ResetTimer()
	for i := range b.N {
		m := *ms[i%2]
		m.Generation = i + 2
		b.StopTimer()
		g.stage(&m)
		b.StartTimer()
		if _, code, stderr := g.run("switch"); code != 0 {
			b.Fatalf("switch: %s", stderr)
		}
	}
}
