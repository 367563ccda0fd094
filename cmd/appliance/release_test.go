package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/appliance/appliance/internal/testenv"
)

// TestReleaseBinaryAlone: a release binary (make build) copied into an
// empty folder, with no Go on PATH and no source beside it, builds the
// demo, and the image holds exactly the programs the binary carries.
func TestReleaseBinaryAlone(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the demo from Debian's archive (through the shared cache); -short skips it")
	}
	testenv.Require(t, "make")
	home, _ := os.UserHomeDir()
	cacheHome := os.Getenv("XDG_CACHE_HOME")
	if cacheHome == "" {
		cacheHome = filepath.Join(home, ".cache")
	}
	made := filepath.Join(t.TempDir(), "appliance")
	testenv.MustRun(t, "make", "-C", "../..", "build", "BIN="+made)

	dir := t.TempDir()
	bin := filepath.Join(dir, "appliance")
	copyFile(t, made, bin, 0o755)
	copyFile(t, "../../examples/demo.hcl", filepath.Join(dir, "demo.hcl"), 0o644)
	copyFile(t, "../../examples/demo.lock", filepath.Join(dir, "demo.lock"), 0o644)
	env := []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + dir, "XDG_CACHE_HOME=" + cacheHome, "APPLIANCE_VAR_wifi_psk=release-binary-test", "SOURCE_DATE_EPOCH=1767225600"}
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Dir, cmd.Env = dir, env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("appliance %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	if out, err := exec.Command("/bin/sh", "-c", "PATH="+strings.TrimPrefix(env[0], "PATH=")+" command -v go").CombinedOutput(); err == nil {
		t.Fatalf("go is on the test's PATH (%s): the test would not show that the binary needs no Go", out)
	}
	out := run("build", "demo.hcl")
	if !strings.Contains(out, "embedded in appliance") {
		t.Errorf("the build did not use the embedded programs:\n%s", out)
	}
	var v struct {
		Programs []struct{ Package, Arch, SHA256 string }
	}
	if err := json.Unmarshal([]byte(run("version", "--json")), &v); err != nil || len(v.Programs) == 0 {
		t.Fatalf("version --json lists no programs: %v", err)
	}
	sbom, err := os.ReadFile(filepath.Join(dir, "out", "demo", "sbom.cdx.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range v.Programs {
		if !strings.Contains(string(sbom), p.SHA256) {
			t.Errorf("the image's SBOM has no %s with the embedded binary's SHA-256 %s", p.Package, p.SHA256)
		}
	}
}

func copyFile(t *testing.T, src, dst string, mode os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, mode); err != nil {
		t.Fatal(err)
	}
}
