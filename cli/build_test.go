package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/appliance/appliance/internal/testenv"
)

// TestBuildFlashVM drives build, flash and vm as a user would: a build
// of the demo, an unchanged rebuild, a build missing a variable, the
// image flashed onto a file, and vm on a folder with no build.
func TestBuildFlashVM(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the demo from Debian's archive (through the shared cache); -short skips it")
	}
	dir := t.TempDir()
	stateDir, out := filepath.Join(dir, "state"), filepath.Join(dir, "out")
	const secret = "cli-test-passphrase-7f3a"
	env := append(os.Environ(), "APPLIANCE_VAR_wifi_psk="+secret, "SOURCE_DATE_EPOCH=1767225600")
	build := func(env []string) (int, string, string) {
		return run(t, env, "build", "--state", stateDir, "--out", out, "../examples/demo.hcl")
	}
	code, stdout, stderr := build(env)
	if code != 0 || !strings.Contains(stdout, "gateway.img and its companions, built in") {
		t.Fatalf("build: exit %d\n%s%s", code, stdout, stderr)
	}
	if strings.Contains(stdout+stderr, secret) {
		t.Errorf("the build printed the Wi-Fi passphrase")
	}
	for _, f := range []string{"gateway.img", "gateway.img.bmap", "gateway.img.zst", "SHA256SUMS", "sbom.cdx.json", "build-info.json"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Errorf("the build did not write %s: %v", f, err)
		}
	}
	if code, stdout, stderr = build(env); code != 0 || !strings.Contains(stdout, "up to date") {
		t.Errorf("unchanged rebuild: exit %d\n%s%s", code, stdout, stderr)
	}
	sums, _ := os.ReadFile(filepath.Join(out, "SHA256SUMS"))

	// A build replaces an earlier build's output, marked as such, and
	// touches nothing beside it (once, "out.old" was removed).
	if _, err := os.Stat(filepath.Join(out, ".appliance-output")); err != nil {
		t.Errorf("the output is not marked as a build's: %v", err)
	}
	// It holds the gateway's and the nodes' keys: for its owner only.
	if fi, err := os.Stat(out); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("the output folder's mode: %v %v; want 0700", fi.Mode().Perm(), err)
	}
	for _, n := range []string{"bench-1", "bench-2", "bench-3"} {
		if _, err := os.Stat(filepath.Join(out, "nodes", n, "littlefs.bin")); err != nil {
			t.Errorf("no identity image for %s: %v", n, err)
		}
	}
	if !strings.Contains(stdout, "names no app image") || !strings.Contains(stdout, "idf.py set-target esp32s3 && idf.py build") {
		t.Errorf("the build does not say the nodes have no app yet, with the command that builds it:\n%s", stdout)
	}
	beside := filepath.Join(dir, "out.old", "keep.txt")
	os.MkdirAll(filepath.Dir(beside), 0o755)
	os.WriteFile(beside, []byte("keep"), 0o644)
	var otherEpoch []string
	for _, kv := range env {
		if strings.HasPrefix(kv, "SOURCE_DATE_EPOCH=") {
			kv = "SOURCE_DATE_EPOCH=1767312000"
		}
		otherEpoch = append(otherEpoch, kv)
	}
	if code, stdout, stderr = build(otherEpoch); code != 0 || !strings.Contains(stdout, "built in") {
		t.Errorf("rebuild into the earlier output: exit %d\n%s%s", code, stdout, stderr)
	}
	if b, err := os.ReadFile(beside); err != nil || string(b) != "keep" {
		t.Errorf("the rebuild touched a folder beside its output: %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 3 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("the rebuild left debris beside its output: %v", names)
	}
	if code, stdout, stderr = build(env); code != 0 || !strings.Contains(stdout, "built in") {
		t.Fatalf("rebuild: exit %d\n%s%s", code, stdout, stderr)
	}

	// A build needs every variable; it stops before touching the outputs.
	var noVar []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, "APPLIANCE_VAR_") {
			noVar = append(noVar, kv)
		}
	}
	code, _, stderr = build(noVar)
	if code != 1 || !strings.Contains(stderr, "wifi_psk") {
		t.Errorf("a build without var.wifi_psk: exit %d, stderr:\n%s", code, stderr)
	}
	if now, _ := os.ReadFile(filepath.Join(out, "SHA256SUMS")); string(now) != string(sums) {
		t.Errorf("a failed build changed the outputs")
	}

	card := filepath.Join(dir, "card.img")
	code, _, stderr = run(t, env, "flash", filepath.Join(out, "gateway.img"), card)
	if code != 1 || !strings.Contains(stderr, "does not exist") {
		t.Errorf("flash onto a missing device: exit %d\n%s", code, stderr)
	}
	os.WriteFile(card, nil, 0o644)
	code, stdout, stderr = run(t, env, "flash", filepath.Join(out, "gateway.img"), card)
	if code != 0 || !strings.Contains(stdout, "checked back") {
		t.Errorf("flash onto a file: exit %d\n%s%s", code, stdout, stderr)
	}
	for _, phase := range []string{"check", "write", "verify"} {
		if !strings.Contains(stderr, phase+":") {
			t.Errorf("flash did not report its %s phase:\n%s", phase, stderr)
		}
	}
	if a, b := testenv.FileSHA256(t, card), testenv.FileSHA256(t, filepath.Join(out, "gateway.img")); a != b {
		t.Errorf("the flashed file is not the image: SHA-256 %s, the image's %s", a, b)
	}

	code, _, stderr = run(t, env, "vm", dir)
	if code != 1 || !strings.Contains(stderr, "holds no build") || !strings.Contains(stderr, "appliance build") {
		t.Errorf("vm on a folder without a build: exit %d\n%s", code, stderr)
	}

	// Thirty days before the end of the support period the build renews
	// what the gateway holds, and the image changes with it; the build
	// after that has nothing to renew.
	late := time.Now().AddDate(5, 0, -30)
	buildAt := func() (int, string, string) {
		var o, e bytes.Buffer
		code := Main(context.Background(), []string{"build", "--state", stateDir, "--out", out, "../examples/demo.hcl"}, Env{Stdout: &o, Stderr: &e, Environ: env, Now: func() time.Time { return late }})
		return code, o.String(), e.String()
	}
	code, stdout, stderr = buildAt()
	if code != 0 || strings.Contains(stdout, "up to date") {
		t.Fatalf("build 30 days before the support period ends: exit %d\n%s%s", code, stdout, stderr)
	}
	for _, want := range []string{"state      renewed crl: CRL re-signed, valid until " + late.AddDate(5, 0, 0).Format(time.DateOnly), "state      renewed nginx: new server certificate and key", "state      renewed mosquitto: new server certificate and key", "state      renewed ingest: new client certificate and key"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("the late build did not say %q:\n%s", want, stderr)
		}
	}
	if now, _ := os.ReadFile(filepath.Join(out, "SHA256SUMS")); string(now) == string(sums) {
		t.Errorf("renewing changed nothing in the image")
	}
	if code, stdout, stderr = buildAt(); code != 0 || !strings.Contains(stdout, "up to date") || strings.Contains(stderr, "renewed") {
		t.Errorf("the build after the renewals: exit %d\n%s%s", code, stdout, stderr)
	}
}
