package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/appliance/appliance/internal/testenv"
)

// TestBuildOutRefused: --out never replaces what a build reads or a
// folder it did not make. Each refusal comes before any work, and leaves
// the spec, its lock, the state and the user's files as they were.
func TestBuildOutRefused(t *testing.T) {
	dir := t.TempDir()
	siteDir := filepath.Join(dir, "site")
	spec := filepath.Join(siteDir, "demo.hcl")
	for src, dst := range map[string]string{"../examples/demo.hcl": spec, "../examples/demo.lock": filepath.Join(siteDir, "demo.lock"), "../keys/debian-archive.pgp": filepath.Join(dir, "keys", "debian-archive.pgp")} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		os.MkdirAll(filepath.Dir(dst), 0o755)
		if err := os.WriteFile(dst, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	env := []string{"HOME=/nonexistent", "XDG_CACHE_HOME=" + filepath.Join(dir, "cache"), "APPLIANCE_VAR_wifi_psk=build-out-test-psk"}
	if code, _, stderr := run(t, env, "plan", spec); code != 0 {
		t.Fatalf("plan: exit %d\n%s", code, stderr)
	}
	stateDir := filepath.Join(siteDir, ".appliance", "demo")
	mine := filepath.Join(dir, "mine")
	os.MkdirAll(mine, 0o755)
	os.WriteFile(filepath.Join(mine, "notes.txt"), []byte("mine"), 0o644)
	before := testenv.TreeDigest(t, dir)

	for _, c := range []struct{ out, says string }{
		{siteDir, "holds the spec"},
		{dir, "holds the spec"},
		{spec, "holds the spec"},
		{filepath.Join(siteDir, "demo.lock"), "holds the lock"},
		{filepath.Join(siteDir, ".appliance"), "holds the site's state"},
		{stateDir, "holds the site's state"},
		{filepath.Join(dir, "cache"), "holds the package cache"},
		{mine, "no build made it"},
		{filepath.Join(mine, "notes.txt"), "is a file"},
	} {
		code, _, stderr := run(t, env, "build", "--out", c.out, spec)
		if code != 1 || !strings.Contains(stderr, c.says) || !strings.Contains(stderr, c.out) {
			t.Errorf("build --out %s: exit %d; want a refusal that names it and says %q:\n%s", c.out, code, c.says, stderr)
		}
	}
	if after := testenv.TreeDigest(t, dir); after != before {
		t.Errorf("a refused build changed the files:\n%s", testenv.DiffTrees(before, after))
	}
}
