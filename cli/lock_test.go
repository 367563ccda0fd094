package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/appliance/appliance/desired"
	"github.com/appliance/appliance/images/cache"
	"github.com/appliance/appliance/images/fixture"
	"github.com/appliance/appliance/images/rootfs"
	"github.com/appliance/appliance/spec"
)

const lockSpec = `site "locktest" {}

gateway "gw" {
  board = "qemu-arm64"
}

os {
  suite    = "trixie"
  packages = [%s]

  source "test" {
    url     = "%s"
    keyring = "archive.asc"
  }
}
`

// lockRepo serves a repository holding every package the spec needs, as
// empty packages, plus extra ones.
func lockRepo(t *testing.T, dir string, key *fixture.Key, extra ...string) string {
	t.Helper()
	specPath := filepath.Join(dir, "site.hcl")
	site, rep := spec.Load(specPath, spec.Options{Partial: true, Environ: []string{"HOME=/nonexistent"}})
	if rep.HasErrors() {
		t.Fatalf("spec: %+v", rep)
	}
	gw, err := desired.Compute(site)
	if err != nil {
		t.Fatal(err)
	}
	req, err := gw.Request()
	if err != nil {
		t.Fatal(err)
	}
	debs := []*fixture.Deb{{Name: "base-files", Version: "13.8", Arch: "arm64", Fields: map[string]string{"Essential": "yes", "Priority": "required"}}}
	for _, p := range append(req.Packages, extra...) {
		debs = append(debs, &fixture.Deb{Name: p, Version: "1.0-1", Arch: "arm64"})
	}
	repo := filepath.Join(t.TempDir(), "repo")
	if _, err := (&fixture.Repo{Debs: debs, Key: key}).Write(repo); err != nil {
		t.Fatal(err)
	}
	return repo
}

func writeLockSpec(t *testing.T, dir, url string, pkgs ...string) {
	t.Helper()
	quoted := make([]string, len(pkgs))
	for i, p := range pkgs {
		quoted[i] = fmt.Sprintf("%q", p)
	}
	if err := os.WriteFile(filepath.Join(dir, "site.hcl"), fmt.Appendf(nil, lockSpec, strings.Join(quoted, ", "), url), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestLock: lock writes NAME.lock beside the spec, says when it is up to
// date, --check says when the spec moved on, and --offline works from
// the cache alone and says what is missing.
func TestLock(t *testing.T) {
	key, err := fixture.NewKey("archive")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "archive.asc"), key.Public(true), 0o644)
	srvDir := ""
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.FileServer(http.Dir(srvDir)).ServeHTTP(w, r)
	}))
	defer srv.Close()
	writeLockSpec(t, dir, srv.URL, "less")
	srvDir = lockRepo(t, dir, key, "extra")
	env := []string{"HOME=/nonexistent", "XDG_CACHE_HOME=" + filepath.Join(dir, "cache")}
	spec := filepath.Join(dir, "site.hcl")
	lockPath := filepath.Join(dir, "site.lock")

	code, out, errs := run(t, env, "lock", spec)
	if code != 0 || !strings.Contains(out, lockPath+": ") || !strings.Contains(out, "1 base, ") {
		t.Fatalf("lock: exit %d\n%s%s", code, out, errs)
	}
	if _, err := rootfs.ReadLock(lockPath); err != nil {
		t.Fatal(err)
	}
	code, out, _ = run(t, env, "lock", spec)
	if code != 0 || !strings.Contains(out, "up to date") {
		t.Errorf("second lock: exit %d\n%s", code, out)
	}
	code, out, _ = run(t, env, "lock", "--check", spec)
	if code != 0 || !strings.Contains(out, "fits") {
		t.Errorf("lock --check: exit %d\n%s", code, out)
	}

	writeLockSpec(t, dir, srv.URL, "less", "extra")
	code, _, errs = run(t, env, "lock", "--check", spec)
	want := "appliance lock: the spec changed since " + lockPath + " was written (packages added: extra); run appliance lock " + spec + "\n"
	if code != 1 || errs != want {
		t.Errorf("lock --check after a change: exit %d\n%s\nwant\n%s", code, errs, want)
	}

	// The server is gone: offline, the verified indexes of the first run
	// are enough to lock again.
	srvDir = t.TempDir()
	code, out, errs = run(t, env, "lock", "--offline", spec)
	if code != 0 || !strings.Contains(out, "added: extra") {
		t.Errorf("lock --offline: exit %d\n%s%s", code, out, errs)
	}
	code, _, errs = run(t, env, "lock", "--offline", "--fetch", spec)
	if code != 1 || !strings.Contains(errs, "packages are missing from the cache and --offline forbids downloading:\n") || !strings.Contains(errs, "\n  base-files 13.8 (") {
		t.Errorf("lock --offline --fetch with no packages cached: exit %d\n%s", code, errs)
	}
	empty := []string{"HOME=/nonexistent", "XDG_CACHE_HOME=" + t.TempDir()}
	code, _, errs = run(t, empty, "lock", "--offline", spec)
	if code != 1 || !strings.Contains(errs, "--offline forbids the network") || !strings.Contains(errs, "run appliance lock "+spec+" once without --offline") {
		t.Errorf("lock --offline with an empty cache: exit %d\n%s", code, errs)
	}
}

// TestDemoLockFits keeps the committed examples/demo.lock in step with
// the demo spec and the modules' packages, so that the demo builds
// from it; refresh it with appliance lock examples/demo.hcl. Security
// updates Debian published since the lock was written (exit status 3)
// are reported, and do not make the lock unfit.
func TestDemoLockFits(t *testing.T) {
	code, out, errs := run(t, nil, "lock", "--check", "../examples/demo.hcl")
	if (code != 0 && code != 3) || !strings.Contains(out, "fits") {
		t.Errorf("exit %d\n%s%s", code, out, errs)
	}
	if code == 3 {
		t.Logf("security updates since examples/demo.lock was written:\n%s", out)
	}
}

// TestPlanListsTheLockedRequest: plan --json lists exactly the packages
// the lock requests on top of the base set (the board's kernel among
// them), so what a user reads in the plan is what the image gets.
func TestPlanListsTheLockedRequest(t *testing.T) {
	dir := t.TempDir()
	code, out, errs := run(t, []string{"HOME=/nonexistent", "APPLIANCE_VAR_wifi_psk=plan-lock-test-psk"}, "plan", "--json", "--dry-run", "--state", filepath.Join(dir, "state"), "../examples/demo.hcl")
	if code != 0 {
		t.Fatalf("plan: exit %d\n%s", code, errs)
	}
	var plan struct {
		Gateway struct {
			Packages []string
			Kernel   string
		}
	}
	if err := json.Unmarshal([]byte(out), &plan); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(plan.Gateway.Kernel, "linux-image-cloud-arm64 from Debian") {
		t.Errorf("plan says the kernel is %q", plan.Gateway.Kernel)
	}
	lock, err := rootfs.ReadLock("../examples/demo.lock")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(plan.Gateway.Packages, " "), strings.Join(lock.Requested, " "); got != want {
		t.Errorf("plan lists\n  %s\nthe lock requests\n  %s", got, want)
	}
	if !slices.Contains(plan.Gateway.Packages, "linux-image-cloud-arm64") {
		t.Errorf("plan does not list the board's kernel: %v", plan.Gateway.Packages)
	}
}

// TestLockInterrupted: Ctrl-C or SIGTERM (the context cmd/appliance
// cancels) while lock reads a slow mirror's index stops it: lock says it
// was interrupted, exits 1, and writes no lock and no half file.
func TestLockInterrupted(t *testing.T) {
	key, err := fixture.NewKey("archive")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "archive.asc"), key.Public(true), 0o644)
	writeLockSpec(t, dir, "http://127.0.0.1:1", "less")
	repo := lockRepo(t, dir, key)
	srv := fixture.NewServer(repo)
	defer srv.Close()
	writeLockSpec(t, dir, srv.URL, "less")
	index, err := os.ReadFile(filepath.Join(repo, "dists/trixie/main/binary-arm64/Packages.xz"))
	if err != nil {
		t.Fatal(err)
	}
	started, release := make(chan struct{}), make(chan struct{})
	defer close(release)
	srv.Slow("/dists/trixie/main/binary-arm64/Packages.xz", index, started, release)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-started
		cancel()
	}()
	cacheDir := filepath.Join(dir, "cache")
	var out, errb bytes.Buffer
	spec := filepath.Join(dir, "site.hcl")
	code := Main(ctx, []string{"lock", spec}, Env{Stdout: &out, Stderr: &errb, Environ: []string{"HOME=/nonexistent", "XDG_CACHE_HOME=" + cacheDir}})
	lockPath := filepath.Join(dir, "site.lock")
	if want := "appliance lock: interrupted; " + lockPath + " was not written\n"; code != 1 || errb.String() != want {
		t.Errorf("exit %d, stderr %q; want 1 and %q", code, errb.String(), want)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".lock") || strings.Contains(e.Name(), ".tmp") {
			t.Errorf("%s was written", e.Name())
		}
	}
	if tmp, _ := (&cache.Cache{Dir: filepath.Join(cacheDir, "appliance")}).Temporaries(); len(tmp) > 0 {
		t.Errorf("temporaries left in the cache: %v", tmp)
	}
}

// TestLockReplay: once a lock is made, a mirror that serves an older,
// still valid, signed Release (here two days older, with an older
// version of a package) is refused — from the Release kept in the cache,
// and with the cache emptied from the date the lock records — and the
// lock is left as it was.
func TestLockReplay(t *testing.T) {
	key, err := fixture.NewKey("archive")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "archive.asc"), key.Public(true), 0o644)
	srvDir := ""
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.FileServer(http.Dir(srvDir)).ServeHTTP(w, r)
	}))
	defer srv.Close()
	writeLockSpec(t, dir, srv.URL, "h-ver")
	site, rep := spec.Load(filepath.Join(dir, "site.hcl"), spec.Options{Partial: true, Environ: []string{"HOME=/nonexistent"}})
	if rep.HasErrors() {
		t.Fatalf("spec: %+v", rep)
	}
	gw, err := desired.Compute(site)
	if err != nil {
		t.Fatal(err)
	}
	req, err := gw.Request()
	if err != nil {
		t.Fatal(err)
	}
	repo := func(date time.Time, version string) string {
		debs := []*fixture.Deb{{Name: "base-files", Version: "13.8", Arch: "arm64", Fields: map[string]string{"Essential": "yes", "Priority": "required"}}}
		for _, p := range req.Packages {
			v := "1.0-1"
			if p == "h-ver" {
				v = version
			}
			debs = append(debs, &fixture.Deb{Name: p, Version: v, Arch: "arm64"})
		}
		d := t.TempDir()
		if _, err := (&fixture.Repo{Debs: debs, Key: key, Date: date}).Write(d); err != nil {
			t.Fatal(err)
		}
		return d
	}
	now := time.Now()
	newer, older := repo(now.Add(-time.Hour), "2.0"), repo(now.Add(-49*time.Hour), "1.0")
	spec := filepath.Join(dir, "site.hcl")
	lockPath := filepath.Join(dir, "site.lock")
	env := []string{"HOME=/nonexistent", "XDG_CACHE_HOME=" + filepath.Join(dir, "cache")}

	srvDir = newer
	if code, out, errs := run(t, env, "lock", spec); code != 0 {
		t.Fatalf("lock: exit %d\n%s%s", code, out, errs)
	}
	locked, _ := os.ReadFile(lockPath)
	srvDir = older
	for _, e := range [][]string{env, {"HOME=/nonexistent", "XDG_CACHE_HOME=" + t.TempDir()}} {
		code, out, errs := run(t, e, "lock", spec)
		if code != 1 || !strings.Contains(errs, "InRelease is dated") || !strings.Contains(errs, "an old Release is being replayed") || strings.Contains(out, "h-ver 2.0 → 1.0") {
			t.Errorf("lock against a replayed Release: exit %d\n%s%s", code, out, errs)
		}
		if now, _ := os.ReadFile(lockPath); !bytes.Equal(now, locked) {
			t.Error("the lock changed")
		}
	}
	if code, out, errs := run(t, env, "lock", "--offline", spec); code != 0 || !strings.Contains(out, "up to date") {
		t.Errorf("lock --offline after the replay: exit %d\n%s%s", code, out, errs)
	}
}

// TestPlanSaysWhichKernel: plan names the kernel a Raspberry Pi gets and
// why — Debian's, when its sources hold no Raspberry Pi archive — and
// refuses a Pi 5 from Debian alone with the reason.
func TestPlanSaysWhichKernel(t *testing.T) {
	dir := t.TempDir()
	spec := func(board string) string {
		p := filepath.Join(dir, board+".hcl")
		os.WriteFile(p, []byte(`site "pi" {}
gateway "gw" {
  board = "`+board+`"
}
os {
  source "debian" {
    url        = "http://deb.debian.org/debian"
    components = ["main", "non-free-firmware"]
  }
}
`), 0o644)
		return p
	}
	code, out, errs := run(t, []string{"HOME=/nonexistent"}, "plan", "--dry-run", "--state", filepath.Join(dir, "state"), spec("rpi4"))
	if code != 0 || !strings.Contains(out, "kernel") || !strings.Contains(out, "linux-image-arm64 from Debian, with Debian's raspi-firmware: the os sources hold no Raspberry Pi archive") {
		t.Errorf("plan of a Pi 4 from Debian: exit %d\n%s%s", code, out, errs)
	}
	code, out, errs = run(t, []string{"HOME=/nonexistent"}, "plan", "--dry-run", "--state", filepath.Join(dir, "state5"), spec("rpi5"))
	if code == 0 || !strings.Contains(errs, "RP1") || !strings.Contains(errs, `source "raspberrypi"`) {
		t.Errorf("plan of a Pi 5 from Debian: exit %d\n%s%s", code, out, errs)
	}
}
