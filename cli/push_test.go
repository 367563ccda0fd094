package cli

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/appliance/appliance/generation"
	"github.com/appliance/appliance/internal/testenv"
	"github.com/appliance/appliance/pki"
	"github.com/appliance/appliance/push/pushtest"
	"github.com/appliance/appliance/state"
)

// TestPushOverSSH pushes the demo site to a gateway behind a real sshd,
// the gateway being a root folder and stand-ins for systemctl: the first
// push brings appliance's programs; an unchanged push changes nothing; a
// changed setting changes exactly its file and restarts exactly its
// service; a failing check rolls back and says which; --rollback returns
// to the generation before; a wrong host key and an unknown key are
// refused.
func TestPushOverSSH(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the gateway's programs; -short skips it")
	}
	t.Setenv("SSH_AUTH_SOCK", "")
	dir := t.TempDir()
	siteDir := filepath.Join(dir, "site")
	os.MkdirAll(siteDir, 0o755)
	specPath := filepath.Join(siteDir, "demo.hcl")
	demo, _ := os.ReadFile("../examples/demo.hcl")
	lock, _ := os.ReadFile("../examples/demo.lock")
	os.WriteFile(specPath, demo, 0o644)
	os.WriteFile(filepath.Join(siteDir, "demo.lock"), lock, 0o644)
	home, _ := os.UserHomeDir()
	env := []string{"HOME=/nonexistent", "XDG_CACHE_HOME=" + filepath.Join(home, ".cache"), "APPLIANCE_VAR_wifi_psk=push-test-passphrase"}
	stateDir := filepath.Join(siteDir, ".appliance", "demo")
	if code, _, errs := run(t, env, "plan", specPath); code != 0 {
		t.Fatalf("plan: %s", errs)
	}
	root := t.TempDir()
	if err := pushtest.Gateway(root, specPath, stateDir, env); err != nil {
		t.Fatal(err)
	}
	st, _ := state.Open(stateDir, state.Options{})
	hostKey, _ := st.ReadFile("ssh/" + state.HostKeyEd25519)
	deployPub, _ := st.ReadFile("ssh/" + state.DeployKey + ".pub")
	st.Close()
	srv := testenv.StartSSHD(t, hostKey, deployPub)
	ft, err := pushtest.FakeTools(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	calls, failing := ft.Calls, ft.Failing
	var tools []string
	for _, a := range ft.ApplyArgs {
		tools = append(tools, "--apply-arg="+a)
	}
	push := func(extra ...string) (int, string, string) {
		t.Helper()
		args := append([]string{"push", "--host", srv.Addr, "--gateway-root", root, "--gateway-arch", runtime.GOARCH}, tools...)
		// The site's admin is ops; the test's sshd lets root in.
		args = append(args, "--user=root")
		args = append(append(args, extra...), specPath)
		os.Remove(calls)
		return run(t, env, args...)
	}
	callsNow := func() string { b, _ := os.ReadFile(calls); return string(b) }
	tree := func() string { return testenv.TreeDigest(t, root) }

	// The first push: the image's generation 1 has no programs built for
	// this machine, so they are new.
	code, out, errs := push()
	if code != 0 || !strings.Contains(errs, "runs generation 2") {
		t.Fatalf("first push: exit %d\n%s%s", code, out, errs)
	}
	if _, err := os.Stat(filepath.Join(root, generation.ApplyPath)); err != nil {
		t.Errorf("the apply program is not on the gateway: %v", err)
	}

	// Unchanged: nothing happens.
	before := tree()
	code, _, errs = push()
	if code != 0 || !strings.Contains(errs, "up to date (generation 2)") {
		t.Errorf("unchanged push: exit %d\n%s", code, errs)
	}
	if after := tree(); after != before {
		t.Errorf("an unchanged push changed the gateway:\n%s", testenv.DiffTrees(before, after))
	}
	if c := callsNow(); strings.Contains(c, "restart") || strings.Contains(c, "reload") {
		t.Errorf("an unchanged push acted: %s", c)
	}

	// One setting: exactly its file changes, and its service restarts.
	os.WriteFile(specPath, append(demo, []byte("\ningest {\n  batch_size = 1234\n}\n")...), 0o644)
	before = tree()
	code, out, errs = push()
	if code != 0 || !strings.Contains(errs, "runs generation 3") {
		t.Fatalf("push of a setting: exit %d\n%s%s", code, out, errs)
	}
	// It was committed only once confirmed over a new connection.
	if !strings.Contains(errs, "waits for a new connection to confirm it") || !strings.Contains(errs, "generation 3 committed") {
		t.Errorf("the switch was not confirmed over a new connection:\n%s", errs)
	}
	diff := testenv.DiffTrees(before, tree())
	for _, l := range strings.Split(diff, "\n") {
		if l != "" && !strings.Contains(l, "etc/appliance/ingest.json") && !strings.Contains(l, "var/lib/appliance") {
			t.Errorf("the push changed more than ingest.json: %s", l)
		}
	}
	if !strings.Contains(diff, "etc/appliance/ingest.json") {
		t.Errorf("the push did not change ingest.json:\n%s", diff)
	}
	if c := callsNow(); !strings.Contains(c, "systemctl restart appliance-ingest.service") || strings.Count(c, "restart") != 1 {
		t.Errorf("the push ran:\n%s; want exactly a restart of appliance-ingest.service", c)
	}

	// A failing check: the gateway returns to generation 3, and says why.
	os.WriteFile(specPath, append(demo, []byte("\ningest {\n  batch_size = 4321\n}\n")...), 0o644)
	os.WriteFile(failing, []byte("appliance-ingest.service\n"), 0o644)
	before = tree()
	code, _, errs = push()
	t.Logf("a push whose check fails:\n%s", errs)
	if code == 0 || !strings.Contains(errs, "ingest running") || !strings.Contains(errs, "stayed on its previous generation") {
		t.Errorf("a push whose check fails: exit %d\n%s", code, errs)
	}
	if after := tree(); testenv.DiffTrees(before, after) != "" {
		for _, l := range strings.Split(testenv.DiffTrees(before, after), "\n") {
			if !strings.Contains(l, "var/lib/appliance/") {
				t.Errorf("after the rollback the gateway differs: %s", l)
			}
		}
	}
	os.WriteFile(failing, nil, 0o644)

	// --rollback returns to generation 2's content.
	code, _, errs = push("--rollback")
	if code != 0 {
		t.Errorf("push --rollback: exit %d\n%s", code, errs)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "etc/appliance/ingest.json")); strings.Contains(string(b), "1234") {
		t.Errorf("after --rollback ingest.json still has the setting of generation 3")
	}

	// A login key the gateway does not know is refused, saying which keys
	// it takes.
	bad := filepath.Join(dir, "other_ed25519")
	priv, _, _ := pki.NewSSHKey(pki.SSHEd25519, "other")
	os.WriteFile(bad, priv, 0o600)
	code, _, errs = push("--key", bad)
	if code == 0 || !strings.Contains(errs, "refuses root's keys") {
		t.Errorf("push with an unknown key: exit %d\n%s", code, errs)
	}
}
