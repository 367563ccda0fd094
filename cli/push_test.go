package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/appliance/appliance/desired"
	"github.com/appliance/appliance/generation"
	"github.com/appliance/appliance/images/rootfs"
	"github.com/appliance/appliance/internal/testenv"
	"github.com/appliance/appliance/pki"
	"github.com/appliance/appliance/spec"
	"github.com/appliance/appliance/state"
)

// fakeTools writes stand-ins for the gateway's systemctl, dpkg and the
// actions' commands: each records its arguments in calls; systemctl
// answers is-active with "failed" for the units listed in failing, and
// "active" otherwise.
func fakeTools(t *testing.T, dir string) (calls, failing string, args []string) {
	t.Helper()
	calls, failing = filepath.Join(dir, "calls"), filepath.Join(dir, "failing")
	os.WriteFile(failing, nil, 0o644)
	script := `#!/bin/sh
echo "$(basename "$0") $*" >>` + calls + `
if [ "$(basename "$0")" = systemctl ]; then
	case $1 in
	is-active) if grep -qx "$2" ` + failing + `; then echo failed; exit 3; fi; echo active ;;
	is-system-running) echo running ;;
	esac
fi
exit 0
`
	for _, tool := range []string{"systemctl", "dpkg", "run", "systemd-run"} {
		p := filepath.Join(dir, tool)
		if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--apply-arg=--"+tool+"="+p)
	}
	// Only what the stand-ins answer: the services do not run here.
	args = append(args, "--apply-arg=--checks=unit,system", "--apply-arg=--check-timeout=2s")
	return calls, failing, args
}

// builtGateway makes a gateway root as appliance build leaves one: the
// desired files, and generation 1 recording them, with the host's
// accounts (the image's come from base-passwd) and the site's own.
func builtGateway(t *testing.T, specPath, stateDir string, env []string) string {
	t.Helper()
	root := t.TempDir()
	site, rep := spec.Load(specPath, spec.Options{Environ: env})
	if rep.HasErrors() {
		var b bytes.Buffer
		rep.WriteText(&b)
		t.Fatal(b.String())
	}
	g, err := desired.Compute(site)
	if err != nil {
		t.Fatal(err)
	}
	st, err := state.Open(stateDir, state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	r, err := g.Resolve(st, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	// The accounts of Debian's base-passwd that the site's files use,
	// then the site's own, as the image has them.
	for _, d := range []string{"etc", "usr/bin", "usr/sbin", "usr/lib", "var/lib"} {
		os.MkdirAll(filepath.Join(root, d), 0o755)
	}
	for f, body := range map[string]string{
		"passwd":  "root:x:0:0:root:/root:/bin/sh\nwww-data:x:33:33:www-data:/var/www:/usr/sbin/nologin\n",
		"group":   "root:x:0:\nadm:x:4:\nsudo:x:27:\nwww-data:x:33:\nshadow:x:42:\n",
		"shadow":  "root:*:20000:0:99999:7:::\nwww-data:*:20000:0:99999:7:::\n",
		"gshadow": "root:*::\nadm:*::\nsudo:*::\nwww-data:*::\nshadow:*::\n",
	} {
		os.WriteFile(filepath.Join(root, "etc", f), []byte(body), 0o644)
	}
	for _, gr := range r.Groups {
		testenv.MustRun(t, "groupadd", "--prefix", root, "-g", strconv.Itoa(gr.GID), gr.Name)
	}
	for _, u := range r.Users {
		args := []string{"--prefix", root, "-u", strconv.Itoa(u.UID), "-g", u.Group, "-d", u.Home, "-s", u.Shell, "-M"}
		if len(u.Groups) > 0 {
			args = append(args, "-G", strings.Join(u.Groups, ","))
		}
		testenv.MustRun(t, "useradd", append(args, u.Name)...)
	}
	if err := r.Apply(desired.Folder{Root: root}); err != nil {
		t.Fatal(err)
	}
	lock, err := rootfs.ReadLock(site.Location.Lock)
	if err != nil {
		t.Fatal(err)
	}
	var pkgs []generation.Package
	for _, p := range lock.Packages {
		pkgs = append(pkgs, generation.Package{Name: p.Name, Version: p.Version, Arch: p.Architecture, SHA256: p.SHA256})
	}
	// Without appliance's programs, which the build puts in for the
	// gateway's architecture and push for this machine's.
	gen := r.Generation(1, time.Now(), "test", nil, pkgs)
	data, _ := gen.Manifest.Marshal()
	manifest, current, target := desired.GenerationFiles(1)
	os.MkdirAll(filepath.Dir(filepath.Join(root, manifest)), 0o700)
	os.WriteFile(filepath.Join(root, manifest), data, 0o600)
	os.Symlink(target, filepath.Join(root, current))
	return root
}

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
	root := builtGateway(t, specPath, stateDir, env)
	st, _ := state.Open(stateDir, state.Options{})
	hostKey, _ := st.ReadFile("ssh/" + state.HostKeyEd25519)
	deployPub, _ := st.ReadFile("ssh/" + state.DeployKey + ".pub")
	st.Close()
	srv := testenv.StartSSHD(t, hostKey, deployPub)
	calls, failing, tools := fakeTools(t, t.TempDir())
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
