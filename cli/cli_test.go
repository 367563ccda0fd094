package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite golden files (docs/cli.md)")

// run runs the CLI in-process, as gokrazy's tests do.
func run(t *testing.T, env []string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	if env == nil {
		env = []string{"HOME=/nonexistent"}
	}
	code = Main(context.Background(), args, Env{Stdout: &out, Stderr: &errb, Environ: env})
	return code, out.String(), errb.String()
}

// TestHelp checks that every command has --help with examples, and keeps
// docs/cli.md equal to what --help prints.
func TestHelp(t *testing.T) {
	names := make([]string, 0, len(verbs))
	for n := range verbs {
		names = append(names, n)
	}
	sort.Strings(names)
	var doc bytes.Buffer
	doc.WriteString("# appliance command reference\n\nThis file is generated from `appliance COMMAND --help` by `go test ./cli -update`.\n\n")
	code, overview, _ := run(t, nil, "--help")
	if code != 0 || !strings.Contains(overview, "Commands:") {
		t.Errorf("appliance --help: exit %d\n%s", code, overview)
	}
	doc.WriteString("```\n" + overview + "```\n")
	for _, n := range names {
		code, out, errs := run(t, nil, n, "--help")
		if code != 0 || !strings.Contains(out, "Usage:") || errs != "" {
			t.Errorf("appliance %s --help: exit %d\n%s%s", n, code, out, errs)
		}
		if n != "version" && !strings.Contains(out, "Examples:") {
			t.Errorf("appliance %s --help has no examples", n)
		}
		doc.WriteString("\n## appliance " + n + "\n\n```\n" + out + "```\n")
	}
	path := "../docs/cli.md"
	if *update {
		os.MkdirAll(filepath.Dir(path), 0o755)
		if err := os.WriteFile(path, doc.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(want, doc.Bytes()) {
		t.Errorf("docs/cli.md is out of date; run go test ./cli -update")
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"frobnicate"},
		{"validate"},
		{"validate", "a", "b"},
		{"validate", "--nosuchflag", "x.hcl"},
		{"pki"},
		{"pki", "sideways"},
		{},
	} {
		code, _, errs := run(t, nil, args...)
		if code != 1 || errs == "" {
			t.Errorf("appliance %v: exit %d, stderr %q; want exit 1 and a message", args, code, errs)
		}
		if strings.Count(strings.TrimSpace(errs), "\n") > 2 && len(args) > 0 {
			t.Errorf("appliance %v: want one clear message, got\n%s", args, errs)
		}
	}
}

var diagLine = regexp.MustCompile(`(?m)^[^\s:]+\.hcl:\d+:\d+: error: `)

// TestValidateFiveMistakes is the acceptance check: five
// different mistakes, five diagnostics with file:line:col, exit 1.
func TestValidateFiveMistakes(t *testing.T) {
	code, _, errs := run(t, nil, "validate", "../spec/testdata/invalid/five_mistakes.hcl")
	if code != 1 {
		t.Errorf("exit %d; want 1", code)
	}
	if got := len(diagLine.FindAllString(errs, -1)); got != 5 {
		t.Errorf("%d diagnostics; want 5:\n%s", got, errs)
	}
}

func TestValidateExamples(t *testing.T) {
	for _, ex := range []string{"../examples/demo.hcl", "../examples/greenhouse.hcl"} {
		code, out, errs := run(t, nil, "validate", ex)
		if code != 0 || errs != "" || !strings.Contains(out, "valid") {
			t.Errorf("validate %s: exit %d\n%s%s", ex, code, out, errs)
		}
		code, out, _ = run(t, nil, "validate", "--json", ex)
		var res validateResult
		if err := json.Unmarshal([]byte(out), &res); err != nil || code != 0 || !res.Valid || len(res.Pending) == 0 {
			t.Errorf("validate --json %s: exit %d, %v, %+v", ex, code, err, res)
		}
	}
	code, out, _ := run(t, nil, "validate", "--json", "../spec/testdata/invalid/five_mistakes.hcl")
	var res validateResult
	if err := json.Unmarshal([]byte(out), &res); err != nil || code != 1 || res.Valid || res.Errors != 5 || res.Diagnostics[0].Range == nil {
		t.Errorf("validate --json on five mistakes: exit %d, %v, %+v", code, err, res)
	}
}

// snapshot records every file of a tree with its content, mode and
// modification time.
func snapshot(t *testing.T, root string) map[string]string {
	t.Helper()
	snap := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		v := fi.Mode().String() + " " + fi.ModTime().Format(time.RFC3339Nano)
		if !d.IsDir() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			v += " " + string(b)
		}
		snap[p] = v
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

// checkPrivate asserts the state's permission rules: every folder 0700,
// every file holding a key or a secret 0600.
func checkPrivate(t *testing.T, root string) {
	t.Helper()
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		fi, _ := d.Info()
		perm := fi.Mode().Perm()
		if d.IsDir() {
			if perm != 0o700 {
				t.Errorf("%s: folder mode %04o; want 0700", p, perm)
			}
			return nil
		}
		b, _ := os.ReadFile(p)
		secret := bytes.Contains(b, []byte("PRIVATE KEY")) || strings.Contains(p, "/secrets/")
		if secret && perm != 0o600 {
			t.Errorf("%s holds a secret with mode %04o; want 0600", p, perm)
		}
		if perm&0o022 != 0 {
			t.Errorf("%s is writable by others (%04o)", p, perm)
		}
		return nil
	})
}

// TestPlanTwice: the first plan creates the state, the second changes
// no byte of it; keys are private.
func TestPlanTwice(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	code, out, errs := run(t, nil, "plan", "--state", dir, "../examples/greenhouse.hcl")
	if code != 0 {
		t.Fatalf("plan: exit %d\n%s%s", code, out, errs)
	}
	for _, want := range []string{"created site CA", "created node certificate bench-12", "created server certificate grafana", "8883/tcp", "MQTT (TLS)", "from 192.168.1.0/24", "bench-1 … bench-12", "var.wifi_psk is not set"} {
		if !strings.Contains(out, want) {
			t.Errorf("plan output lacks %q:\n%s", want, out)
		}
	}
	checkPrivate(t, dir)
	before := snapshot(t, dir)
	code, out, errs = run(t, nil, "plan", "--state", dir, "../examples/greenhouse.hcl")
	if code != 0 || !strings.Contains(out, "up to date") {
		t.Fatalf("second plan: exit %d\n%s%s", code, out, errs)
	}
	after := snapshot(t, dir)
	for p, v := range before {
		if after[p] != v {
			t.Errorf("second plan changed %s", p)
		}
	}
	if len(after) != len(before) {
		t.Errorf("second plan added files: %d before, %d after", len(before), len(after))
	}
}

func TestPlanDryRun(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	code, out, errs := run(t, nil, "plan", "--dry-run", "--state", dir, "../examples/demo.hcl")
	if code != 0 || !strings.Contains(out, "would create site CA") {
		t.Fatalf("plan --dry-run: exit %d\n%s%s", code, out, errs)
	}
	if _, err := os.Stat(dir); err == nil {
		t.Errorf("plan --dry-run created %s", dir)
	}
}

// TestPlanJSONNoSecrets: with the Wi-Fi passphrase set, the JSON plan is
// complete and does not contain it.
func TestPlanJSONNoSecrets(t *testing.T) {
	const psk = "a-very-secret-wifi-passphrase"
	dir := filepath.Join(t.TempDir(), "state")
	code, out, errs := run(t, []string{"HOME=/nonexistent", "APPLIANCE_VAR_wifi_psk=" + psk}, "plan", "--json", "--state", dir, "../examples/demo.hcl")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, errs)
	}
	if strings.Contains(out+errs, psk) {
		t.Fatalf("the passphrase appears in the plan")
	}
	var p map[string]any
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		t.Fatal(err)
	}
	if n := len(p["nodes"].([]any)); n != 3 {
		t.Errorf("%d nodes; want 3", n)
	}
	if fw := p["firewall"].([]any); len(fw) == 0 {
		t.Errorf("no firewall openings")
	}
	for _, m := range p["missing"].([]any) {
		if strings.Contains(m.(string), "wifi_psk") {
			t.Errorf("wifi_psk is set but listed as missing: %v", m)
		}
	}
	entries, _ := os.ReadDir(filepath.Join(dir, "secrets"))
	for _, e := range entries {
		b, _ := os.ReadFile(filepath.Join(dir, "secrets", e.Name()))
		if strings.Contains(out, strings.TrimSpace(string(b))) {
			t.Errorf("secret %s appears in the plan", e.Name())
		}
	}
}

// TestPKIWithOpenSSL: every issued certificate verifies against the CA
// with openssl for its purpose; a revoked one is refused with
// -crl_check, the others still pass.
func TestPKIWithOpenSSL(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Fatalf("openssl is needed (scripts/deps installs it): %v", err)
	}
	dir := filepath.Join(t.TempDir(), "state")
	spec := "../examples/demo.hcl"
	if code, out, errs := run(t, nil, "plan", "--state", dir, spec); code != 0 {
		t.Fatalf("plan: %s%s", out, errs)
	}
	pkiDir := filepath.Join(dir, "pki")
	ca, crl := filepath.Join(pkiDir, "ca.crt"), filepath.Join(pkiDir, "crl.pem")
	verify := func(cert, purpose string, crlCheck bool) (string, error) {
		args := []string{"verify", "-CAfile", ca, "-purpose", purpose}
		if crlCheck {
			args = append(args, "-crl_check", "-CRLfile", crl)
		}
		out, err := exec.Command("openssl", append(args, cert)...).CombinedOutput()
		return string(out), err
	}
	purposes := map[string]string{"mosquitto": "sslserver", "nginx": "sslserver", "influxdb": "sslserver", "ingest": "sslclient", "bench-1": "sslclient", "bench-2": "sslclient", "bench-3": "sslclient"}
	for name, purpose := range purposes {
		cert := filepath.Join(pkiDir, "issued", name+".crt")
		if out, err := verify(cert, purpose, true); err != nil {
			t.Errorf("openssl verify %s (%s): %v\n%s", name, purpose, err, out)
		}
		wrong := map[string]string{"sslserver": "sslclient", "sslclient": "sslserver"}[purpose]
		if out, err := verify(cert, wrong, false); err == nil {
			t.Errorf("openssl accepts %s for %s, which it is not for:\n%s", name, wrong, out)
		}
	}
	out, err := exec.Command("openssl", "x509", "-in", filepath.Join(pkiDir, "issued", "mosquitto.crt"), "-noout", "-ext", "subjectAltName").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "DNS:demo-gw, DNS:demo-gw.local, DNS:localhost, IP Address:127.0.0.1") {
		t.Errorf("mosquitto SANs: %v\n%s", err, out)
	}

	code, rout, rerr := run(t, nil, "pki", "revoke", "--reason", "keyCompromise", "--state", dir, spec, "bench-2")
	if code != 0 {
		t.Fatalf("pki revoke: %s%s", rout, rerr)
	}
	revoked, _ := filepath.Glob(filepath.Join(pkiDir, "revoked", "bench-2-*.crt"))
	if len(revoked) != 1 {
		t.Fatalf("revoked certificate not kept: %v", revoked)
	}
	if out, err := verify(revoked[0], "sslclient", true); err == nil || !strings.Contains(out, "certificate revoked") {
		t.Errorf("openssl -crl_check accepted the revoked certificate: %v\n%s", err, out)
	}
	if out, err := verify(filepath.Join(pkiDir, "issued", "bench-1.crt"), "sslclient", true); err != nil {
		t.Errorf("bench-1 refused after revoking bench-2: %v\n%s", err, out)
	}
	crlText, _ := exec.Command("openssl", "crl", "-in", crl, "-noout", "-text").CombinedOutput()
	if !strings.Contains(string(crlText), "Key Compromise") {
		t.Errorf("CRL lacks the reason:\n%s", crlText)
	}

	// The plan now says bench-2 needs a new certificate; renew issues one.
	_, out2, _ := run(t, nil, "plan", "--state", dir, spec)
	if !strings.Contains(out2, "bench-2: certificate revoked") {
		t.Errorf("plan after revoke:\n%s", out2)
	}
	if code, o, e := run(t, nil, "pki", "renew", "--state", dir, spec, "bench-2"); code != 0 {
		t.Fatalf("pki renew: %s%s", o, e)
	}
	if out, err := verify(filepath.Join(pkiDir, "issued", "bench-2.crt"), "sslclient", true); err != nil {
		t.Errorf("renewed bench-2: %v\n%s", err, out)
	}
	code, list, _ := run(t, nil, "pki", "list", "--state", dir, spec)
	if code != 0 || !strings.Contains(list, "revoked") || !strings.Contains(list, "CRL: 1 revoked") {
		t.Errorf("pki list:\n%s", list)
	}
	checkPrivate(t, dir)
}

// TestRefuseReadableKey: a private key others can read is not used.
func TestRefuseReadableKey(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	spec := "../examples/demo.hcl"
	if code, out, errs := run(t, nil, "plan", "--state", dir, spec); code != 0 {
		t.Fatalf("plan: %s%s", out, errs)
	}
	key := filepath.Join(dir, "pki", "ca.key")
	os.Chmod(key, 0o644)
	code, _, errs := run(t, nil, "plan", "--state", dir, spec)
	if code != 1 || !strings.Contains(errs, "chmod 600 "+key) {
		t.Errorf("plan with a readable CA key: exit %d\n%s", code, errs)
	}
	os.Chmod(key, 0o600)
	os.Chmod(dir, 0o755)
	code, _, errs = run(t, nil, "plan", "--state", dir, spec)
	if code != 1 || !strings.Contains(errs, "chmod -R go= "+dir) {
		t.Errorf("plan with an open state folder: exit %d\n%s", code, errs)
	}
}

// TestNoSilentRegeneration: a lost CA is reported, not replaced.
func TestNoSilentRegeneration(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	spec := "../examples/demo.hcl"
	run(t, nil, "plan", "--state", dir, spec)
	os.Remove(filepath.Join(dir, "pki", "ca.crt"))
	code, _, errs := run(t, nil, "plan", "--state", dir, spec)
	if code != 1 || !strings.Contains(errs, "restore it from your backup") {
		t.Errorf("plan without ca.crt: exit %d\n%s", code, errs)
	}
	if _, err := os.Stat(filepath.Join(dir, "pki", "ca.crt")); err == nil {
		t.Errorf("a new CA was made")
	}
}

func TestFmt(t *testing.T) {
	dir := t.TempDir()
	messy := filepath.Join(dir, "site.hcl")
	os.WriteFile(messy, []byte("site \"x\" {\ndescription=\"d\"\n}\n"), 0o640)
	code, out, _ := run(t, nil, "fmt", "--check", dir)
	if code != 1 || !strings.Contains(out, messy) {
		t.Errorf("fmt --check on a messy file: exit %d, %q", code, out)
	}
	if code, _, errs := run(t, nil, "fmt", messy); code != 0 {
		t.Fatalf("fmt: %s", errs)
	}
	b, _ := os.ReadFile(messy)
	if string(b) != "site \"x\" {\n  description = \"d\"\n}\n" {
		t.Errorf("formatted: %q", b)
	}
	if fi, _ := os.Stat(messy); fi.Mode().Perm() != 0o640 {
		t.Errorf("fmt changed the mode to %v", fi.Mode())
	}
	if code, _, _ := run(t, nil, "fmt", "-check", dir); code != 0 {
		t.Errorf("fmt -check after fmt: exit %d", code)
	}
	broken := filepath.Join(dir, "broken.hcl")
	os.WriteFile(broken, []byte("site \"x\" {\n"), 0o644)
	code, _, errs := run(t, nil, "fmt", broken)
	if b, _ := os.ReadFile(broken); code != 1 || string(b) != "site \"x\" {\n" || !strings.Contains(errs, "does not parse") {
		t.Errorf("fmt on broken syntax: exit %d, %q, file %q", code, errs, b)
	}
}

func TestVersion(t *testing.T) {
	code, out, _ := run(t, nil, "version")
	if code != 0 || !strings.HasPrefix(out, "appliance ") {
		t.Errorf("version: exit %d %q", code, out)
	}
}
