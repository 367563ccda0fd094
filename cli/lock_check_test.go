package cli

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/appliance/appliance/images/fixture"
)

const securitySpec = `site "sectest" {}

gateway "gw" {
  board = "qemu-arm64"
}

os {
  suite    = "trixie"
  packages = ["less"]

  source "test" {
    url     = "%[1]s"
    keyring = "archive.asc"
  }

  source "test-security" {
    url     = "%[1]s"
    suite   = "trixie-security"
    keyring = "archive.asc"
  }
}
`

// TestLockCheckSecurity: lock --check says the lock fits and that the
// security suite has nothing newer (exit 0); once the fixture archive's
// security suite gets a newer "less", it names the package, the locked
// and the newer version on a line of its own, and exits with status 3;
// offline it reads the suite's index from the cache; a security suite
// that cannot be read is an error, not a pass.
func TestLockCheckSecurity(t *testing.T) {
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
	spec := filepath.Join(dir, "site.hcl")
	os.WriteFile(spec, []byte(strings.ReplaceAll(securitySpec, "%[1]s", srv.URL)), 0o644)
	srvDir = lockRepo(t, dir, key)
	security := func(debs ...*fixture.Deb) {
		t.Helper()
		if _, err := (&fixture.Repo{Suite: "trixie-security", Debs: debs, Key: key}).Write(srvDir); err != nil {
			t.Fatal(err)
		}
	}
	security(&fixture.Deb{Name: "unrelated", Version: "1.0-1", Arch: "arm64"})
	env := []string{"HOME=/nonexistent", "XDG_CACHE_HOME=" + filepath.Join(dir, "cache")}
	if code, out, errs := run(t, env, "lock", spec); code != 0 {
		t.Fatalf("lock: exit %d\n%s%s", code, out, errs)
	}

	code, out, errs := run(t, env, "lock", "--check", spec)
	if code != 0 || !strings.Contains(out, "fits") || !strings.Contains(out, "no locked package has a newer version in trixie-security") {
		t.Errorf("lock --check, nothing newer: exit %d\n%s%s", code, out, errs)
	}

	security(&fixture.Deb{Name: "less", Version: "1.0-1+deb13u1", Arch: "arm64"}, &fixture.Deb{Name: "unrelated", Version: "1.0-1", Arch: "arm64"})
	code, out, errs = run(t, env, "lock", "--check", spec)
	if code != 3 || !strings.Contains(out, "\nsecurity update: less 1.0-1 → 1.0-1+deb13u1 (trixie-security)\n") || strings.Count(out, "security update:") != 1 {
		t.Errorf("lock --check with a newer less: exit %d, want 3\n%s%s", code, out, errs)
	}
	if !strings.Contains(errs, "run appliance lock "+spec) {
		t.Errorf("lock --check does not say what to do: %s", errs)
	}

	// Offline, from the index the last run verified.
	srvDir = t.TempDir()
	code, out, errs = run(t, env, "lock", "--check", "--offline", spec)
	if code != 3 || !strings.Contains(out, "security update: less") {
		t.Errorf("lock --check --offline: exit %d\n%s%s", code, out, errs)
	}
	// The archive is gone and the cache holds nothing: an error.
	empty := []string{"HOME=/nonexistent", "XDG_CACHE_HOME=" + t.TempDir()}
	code, _, errs = run(t, empty, "lock", "--check", spec)
	if code != 1 || !strings.Contains(errs, "checking for security updates") {
		t.Errorf("lock --check with the security suite unreachable: exit %d\n%s", code, errs)
	}
}
