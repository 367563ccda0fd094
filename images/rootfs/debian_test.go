package rootfs

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/appliance/appliance/images/apt"
	"github.com/appliance/appliance/images/cache"
	"github.com/appliance/appliance/images/tree"
	"github.com/appliance/appliance/keys"
)

// demoRequest is what appliance lock asks for examples/demo.hcl, as its
// lock records it (cli's TestDemoLockFits holds the lock to the spec):
// Debian's sources with the shipped key, and the requested packages.
func demoRequest(t *testing.T) *Request {
	t.Helper()
	lock, err := ReadLock("../../examples/demo.lock")
	if err != nil {
		t.Fatal(err)
	}
	kb, err := keys.Read("debian-archive")
	if err != nil {
		t.Fatal(err)
	}
	kr, err := apt.ReadKeyring(kb)
	if err != nil {
		t.Fatal(err)
	}
	req := &Request{Suite: lock.Suite, Arch: lock.Arch, Packages: lock.Requested}
	for _, s := range lock.Sources {
		req.Sources = append(req.Sources, &apt.Source{Name: s.Name, URL: s.URL, Suite: s.Suite, Components: s.Components, Keyring: kr, Priority: s.Priority})
	}
	if got := req.Inputs(); got != lock.Inputs {
		t.Fatalf("the request made from examples/demo.lock has inputs %s, the lock %s", got, lock.Inputs)
	}
	return req
}

// sharedCache is the user's XDG cache, so the real-archive test
// downloads the ~150 MB of packages once per machine.
func sharedCache(t *testing.T) *cache.Cache {
	t.Helper()
	ca, err := cache.Default()
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// TestDebianTrixie builds the demo site's root file system from the real
// Debian archive (trixie and trixie-security, arm64): resolve, compare
// with apt's own choice, download, unpack, and read the dpkg database
// back with dpkg-query.
func TestDebianTrixie(t *testing.T) {
	if testing.Short() {
		t.Skip("reads the real Debian archive")
	}
	ctx := context.Background()
	req := demoRequest(t)
	ca := sharedCache(t)
	client := &apt.Client{Store: ca, Retries: 3}

	start := time.Now()
	lock, err := Plan(ctx, client, req)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("plan: %d packages, %.1f MB, in %s", len(lock.Packages), float64(lock.DownloadSize())/1e6, time.Since(start).Round(time.Millisecond))
	if !lock.Fits(req) {
		t.Error("a fresh lock does not fit its own request")
	}
	got := map[string]string{}
	for _, p := range lock.Packages {
		got[p.Name] = p.Version
	}
	for _, want := range append([]string{"base-files", "dpkg", "libc6", "apt"}, req.Packages...) {
		if got[want] == "" {
			t.Errorf("the lock lacks %s", want)
		}
	}

	t.Run("apt", func(t *testing.T) { compareWithApt(t, req, lock) })

	start = time.Now()
	if err := Fetch(ctx, client, lock, ca, NoProgress{}); err != nil {
		t.Fatal(err)
	}
	t.Logf("fetch: %s", time.Since(start).Round(time.Millisecond))
	start = time.Now()
	tr, err := Unpack(ctx, lock, ca, UnpackOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("unpack: %d entries in %s", tr.Len(), time.Since(start).Round(time.Millisecond))
	// Again, from the manifests alone: the same tree.
	start = time.Now()
	tr2, err := Unpack(ctx, lock, ca, UnpackOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("unpack from the unpacked cache: %s", time.Since(start).Round(time.Millisecond))
	if a, b := tr.Entries(), tr2.Entries(); !sameTree(a, b) {
		t.Error("two unpacks of one lock differ")
	}

	// Merged /usr as trixie's base-files ships it.
	for _, l := range mergedUsr["arm64"] {
		e := tr.Get(l)
		if e == nil || e.Type != tree.Symlink || e.Link != "usr/"+l || e.Package != "base-files" {
			t.Errorf("/%s = %+v; want base-files' symlink to usr/%s", l, e, l)
		}
	}
	for _, p := range []string{"usr/bin/sh", "usr/lib/ld-linux-aarch64.so.1", "usr/sbin/nginx", "usr/sbin/mosquitto", "usr/sbin/sshd", "etc/pam.d/sshd.dpkg-new", "usr/share/openssh/sshd_config", "etc/nginx/nginx.conf.dpkg-new"} {
		if tr.Get(p) == nil {
			t.Errorf("/%s is missing", p)
		}
	}
	if e := tr.Get("bin/sh"); e != nil {
		t.Errorf("/bin/sh is an entry of its own (%v); it must land in /usr/bin through the /bin link", e.Type)
	}

	// Into an ext4 image, as the build does, checked by e2fsck.
	if _, err := exec.LookPath("debugfs"); err == nil {
		start = time.Now()
		img, err := writeExt4(t, tr, ca, 2<<30)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("ext4 image written and checked in %s", time.Since(start).Round(time.Millisecond))
		for req, want := range map[string]string{
			"stat /usr/bin/sudo":      "Mode:  04755",
			"cat /usr/lib/os-release": `VERSION_CODENAME=trixie`,
			"stat /lib":               `Fast link dest: "usr/lib"`,
		} {
			if out := debugfs(t, img, req); !strings.Contains(out, want) {
				t.Errorf("debugfs %s lacks %q:\n%.500s", req, want, out)
			}
		}
	}

	// Read the dpkg database back with dpkg itself.
	admin := t.TempDir()
	for _, e := range tr.Entries() {
		rel, ok := strings.CutPrefix(e.Path, "var/lib/dpkg/")
		if !ok || e.Type != tree.Regular {
			continue
		}
		p := filepath.Join(admin, rel)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, e.Data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out, err := exec.Command("dpkg-query", "--admindir="+admin, "-W", "-f=${Package} ${Version} ${db:Status-Abbrev}\n").Output()
	if err != nil {
		t.Fatalf("dpkg-query: %v", err)
	}
	n := 0
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 3 {
			t.Errorf("dpkg-query line %q", sc.Text())
			continue
		}
		n++
		if got[f[0]] != f[1] || f[2] != "iU" {
			t.Errorf("dpkg-query: %s %s %s; want version %s, status iU (install, unpacked)", f[0], f[1], f[2], got[f[0]])
		}
	}
	if n != len(lock.Packages) {
		t.Errorf("dpkg-query lists %d packages; the lock has %d", n, len(lock.Packages))
	}
	out, err = exec.Command("dpkg-query", "--admindir="+admin, "-L", "libc6:arm64").Output()
	if err != nil || !strings.Contains(string(out), "/usr/lib/aarch64-linux-gnu/libc.so.6\n") {
		t.Errorf("dpkg-query -L libc6:arm64: %v\n%.300s", err, out)
	}
}

// compareWithApt runs apt-get install --simulate for the same request
// over the same indexes, with a private configuration (no host sources,
// preferences or state; an empty dpkg status; arm64; Recommends off),
// and compares its choice with the lock.
func compareWithApt(t *testing.T, req *Request, lock *Lock) {
	if _, err := exec.LookPath("apt-get"); err != nil {
		t.Skip("no apt-get")
	}
	dir := t.TempDir()
	var sources strings.Builder
	for _, s := range req.Sources {
		kr := filepath.Join(dir, s.Name+".pgp")
		if err := os.WriteFile(kr, debianKeyring(t), 0o644); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&sources, "deb [signed-by=%s] %s %s %s\n", kr, s.URL, s.Suite, strings.Join(s.Components, " "))
	}
	for _, d := range []string{"etc/parts", "etc/prefs", "state/lists/partial", "cache/archives/partial", "log"} {
		os.MkdirAll(filepath.Join(dir, d), 0o755)
	}
	os.WriteFile(filepath.Join(dir, "sources.list"), []byte(sources.String()), 0o644)
	os.WriteFile(filepath.Join(dir, "status"), nil, 0o644)
	conf := fmt.Sprintf(`Dir::Etc::Main "/dev/null";
Dir::Etc::Parts "%[1]s/etc/parts";
Dir::Etc::SourceList "%[1]s/sources.list";
Dir::Etc::SourceParts "%[1]s/etc/parts";
Dir::Etc::Preferences "/dev/null";
Dir::Etc::PreferencesParts "%[1]s/etc/prefs";
Dir::State "%[1]s/state";
Dir::State::status "%[1]s/status";
Dir::Cache "%[1]s/cache";
Dir::Log "%[1]s/log";
APT::Architecture "%[2]s";
APT::Architectures { "%[2]s"; };
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
Debug::NoLocking "true";
`, dir, req.Arch)
	cfg := filepath.Join(dir, "apt.conf")
	os.WriteFile(cfg, []byte(conf), 0o644)
	env := append(os.Environ(), "APT_CONFIG="+cfg)
	cmd := exec.Command("apt-get", "update", "-qq")
	cmd.Env = env
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("apt-get update: %v\n%s", err, out)
	}
	var want []string
	for _, p := range lock.Packages {
		if p.Base {
			want = append(want, p.Name)
		}
	}
	want = append(want, req.Packages...)
	cmd = exec.Command("apt-get", append([]string{"install", "--simulate", "-qq"}, want...)...)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("apt-get install --simulate: %v\n%s", err, out)
	}
	apt := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[0] == "Inst" {
			apt[f[1]] = strings.TrimPrefix(f[2], "(")
		}
	}
	ours := map[string]string{}
	for _, p := range lock.Packages {
		ours[p.Name] = p.Version
	}
	var diffs []string
	for n, v := range ours {
		if apt[n] != v {
			diffs = append(diffs, fmt.Sprintf("%s: appliance %s, apt %q", n, v, apt[n]))
		}
	}
	for n, v := range apt {
		if _, ok := ours[n]; !ok {
			diffs = append(diffs, fmt.Sprintf("%s: appliance none, apt %s", n, v))
		}
	}
	sort.Strings(diffs)
	t.Logf("apt installs %d packages, appliance %d", len(apt), len(ours))
	if len(diffs) > 0 {
		t.Errorf("appliance and apt differ:\n  %s", strings.Join(diffs, "\n  "))
	}
}

// debianKeyring is the keyring both of the demo's sources name, for
// apt's signed-by.
func debianKeyring(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile("../../keys/debian-archive.pgp")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// sameTree compares two trees entry by entry, content included.
func sameTree(a, b []*tree.Entry) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := *a[i], *b[i]
		if !bytes.Equal(x.Data, y.Data) {
			return false
		}
		x.Data, y.Data = nil, nil
		if !reflect.DeepEqual(x, y) {
			return false
		}
	}
	return true
}
