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

// debianSets are package sets of every kind — containers, desktops,
// toolchains, databases, web servers, network and system services —
// each resolved on top of the base set, as appliance lock would; "demo"
// stands for the packages of examples/demo.hcl's gateway. The last ones
// depend on a virtual package whose providers tie on Essential,
// Important and Priority, so apt's order of creation decides (by name
// they would go the other way).
var debianSets = [][]string{
	{"demo", "podman"},
	{"podman"},
	{"xfce4", "lightdm"},
	{"python3-full"},
	{"build-essential"},
	{"postgresql"},
	{"nginx-full", "certbot"},
	{"network-manager"},
	{"systemd-container"},
	{"mariadb-server"},
	{"qemu-system-arm"},
	{"wireguard"},       // wireguard-modules: linux-image-rt-arm64, not linux-image-arm64
	{"php8.4-imagick"},  // phpapi-20240924: php8.4-phpdbg, not libapache2-mod-php8.4
	{"sa-exim"},         // exim4-localscanapi-6.0: exim4-daemon-light, not -heavy
	{"tk-itk4"},         // libtk: libtk9.0, not libtk8.6
	{"qemu-system-gui"}, // qemu-system-any: qemu-system-s390x, not qemu-system-arm
}

// TestDebianPackageSets resolves debianSets over trixie and
// trixie-security for arm64 and wants, for each, exactly the packages
// and versions apt-get install --simulate picks over the same indexes.
func TestDebianPackageSets(t *testing.T) {
	if testing.Short() {
		t.Skip("reads the real Debian archive")
	}
	ctx := context.Background()
	demo := demoRequest(t)
	ca := sharedCache(t)
	base := &Request{Suite: demo.Suite, Arch: demo.Arch, Sources: demo.Sources}
	u, signers, err := Universe(ctx, &apt.Client{Store: ca, Retries: 3}, base)
	if err != nil {
		t.Fatal(err)
	}
	aptGet := newAptGet(t, base.Arch, debianMirror(t, ca, base))
	for _, set := range debianSets {
		t.Run(strings.Join(set, "+"), func(t *testing.T) {
			req := *base
			for _, p := range set {
				if p == "demo" {
					req.Packages = append(req.Packages, demo.Packages...)
				} else {
					req.Packages = append(req.Packages, p)
				}
			}
			lock, err := plan(ctx, u, signers, &req)
			if err != nil {
				t.Fatal(err)
			}
			got := aptGet.install(t, aptRequest(&req, lock))
			t.Logf("%s: appliance %d packages, apt %d", strings.Join(set, " "), len(lock.Packages), len(got))
			if diffs := diffWithApt(lock, got); len(diffs) > 0 {
				t.Errorf("appliance and apt differ:\n  %s", strings.Join(diffs, "\n  "))
			}
		})
	}
}

// compareWithApt runs apt-get install --simulate for the same request
// over the same indexes (see debianMirror) and compares its choice with
// the lock.
func compareWithApt(t *testing.T, req *Request, lock *Lock) {
	ca := sharedCache(t)
	apt := newAptGet(t, req.Arch, debianMirror(t, ca, req))
	got := apt.install(t, aptRequest(req, lock))
	t.Logf("apt installs %d packages, appliance %d", len(got), len(lock.Packages))
	if diffs := diffWithApt(lock, got); len(diffs) > 0 {
		t.Errorf("appliance and apt differ:\n  %s", strings.Join(diffs, "\n  "))
	}
}

// debianMirror copies, for apt-get, the very InRelease and indexes the
// resolver read — the verified files the cache keeps — into a file://
// repository per source, so that both read the same state of the
// archive and apt-get needs no network. apt verifies them again.
func debianMirror(t *testing.T, ca *cache.Cache, req *Request) []aptLine {
	t.Helper()
	offline := &apt.Client{Store: ca, Offline: true}
	var lines []aptLine
	for i, s := range req.Sources {
		rel, err := offline.Release(context.Background(), s)
		if err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(t.TempDir(), fmt.Sprint(i))
		dists := filepath.Join(dir, "dists", s.Suite)
		write := func(p string, b []byte) {
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		write(filepath.Join(dists, "InRelease"), rel.Raw)
		for _, comp := range s.Components {
			name := comp + "/binary-" + req.Arch + "/Packages"
			fh, ok := rel.Files[name]
			if !ok {
				t.Fatalf("source %s: the Release lists no %s", s.Name, name)
			}
			b, err := os.ReadFile(ca.Path("indexes", fh.SHA256))
			if err != nil {
				t.Fatalf("source %s: %s is not in the cache: %v", s.Name, name, err)
			}
			write(filepath.Join(dists, name), b)
		}
		lines = append(lines, aptLine{URL: "file://" + dir, Suite: s.Suite, Components: s.Components, Keyring: debianKeyring(t)})
	}
	return lines
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
