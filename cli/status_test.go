package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/appliance/appliance/ingest/health"
	"github.com/appliance/appliance/internal/testenv"
	"github.com/appliance/appliance/modules"
	"github.com/appliance/appliance/pki"
	"github.com/appliance/appliance/push"
)

// TestStatusOverSSH: status asks the gateway's health program (the real
// appliance-health, built for this machine, in a gateway root folder)
// over a real sshd with the host key pinned, reads back the snapshot the
// program keeps, and prints a node table that shows a silent node, the
// firmware and certificate of each, the refusals and the last update.
func TestStatusOverSSH(t *testing.T) {
	t.Setenv("SSH_AUTH_SOCK", "")
	root := t.TempDir()
	bin := filepath.Join(root, modules.HealthBinary)
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/appliance/appliance/cmd/appliance-health").CombinedOutput(); err != nil {
		t.Fatalf("building appliance-health: %v\n%s", err, out)
	}
	stateDir := filepath.Join(root, health.StateDir)
	cfg := health.Config{Site: "demo", InfluxDB: health.InfluxDB{URL: "http://127.0.0.1:8086", Version: 1, Database: "sensors"}, StateDir: stateDir}
	b, _ := json.Marshal(cfg)
	os.MkdirAll(filepath.Join(root, "etc/appliance"), 0o755)
	os.WriteFile(filepath.Join(root, health.ConfigPath), b, 0o644)

	now := time.Date(2026, 12, 2, 16, 0, 0, 0, time.UTC)
	rate := 2.0
	want := health.Status{Site: "demo", Time: now, Since: now.Add(-time.Hour), LastWrite: now,
		Nodes: []health.NodeStatus{
			{Name: "bench-1", Group: "bench", Interval: 30, LastSeen: now.Add(-12 * time.Second), SilentSeconds: 12, SilentIntervals: 0.4, ReadingsPerMinute: &rate,
				Firmware: "1.1.0", CertNotAfter: time.Date(2031, 3, 9, 8, 0, 0, 0, time.UTC), CertDaysLeft: 1558, Refused: 0,
				OTA: &health.OTAStatus{Firmware: "sensor", Version: "1.1.0", Outcome: health.Installed, Time: now.Add(-30 * time.Minute)}},
			{Name: "bench-2", Group: "bench", Interval: 30, SilentSeconds: 3600, SilentIntervals: 120, Refused: 4},
		},
		Certificates: []health.CertStatus{{Name: "ca", Kind: "ca", NotAfter: now.AddDate(10, 0, 0), DaysLeft: 3652}, {Name: "nginx", Kind: "server", NotAfter: now.AddDate(0, 0, 20), DaysLeft: 20}},
		Refused:      []health.RefusedCount{{Service: "ota", Reason: health.Revoked, Count: 4}, {Service: "mqtt", Reason: health.NoCertificate, Count: 2}},
		Ingest:       health.IngestStatus{Up: true, MQTTConnected: true, InfluxDBUp: true},
		Disk:         &health.DiskView{Path: "/var/lib", UsedPercent: 23},
	}
	sb, _ := json.Marshal(want)
	os.MkdirAll(stateDir, 0o700)
	os.WriteFile(filepath.Join(stateDir, health.StatusFile), sb, 0o600)

	hp, hpub, _ := pki.NewSSHKey(pki.SSHEd25519, "host")
	cp, cpub, _ := pki.NewSSHKey(pki.SSHEd25519, "deploy")
	host, _, _, _, _ := ssh.ParseAuthorizedKey(hpub)
	client, _ := pki.ParseSSHKey(cp)
	srv := testenv.StartSSHD(t, hp, cpub)
	ctx := context.Background()
	c, err := push.Dial(ctx, push.Target{Addr: srv.Addr, User: "root", HostKey: host, Keys: []ssh.Signer{client}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got, err := fetchStatus(ctx, c, root)
	if err != nil {
		t.Fatal(err)
	}
	gb, _ := json.Marshal(got)
	if !bytes.Equal(gb, sb) {
		t.Errorf("status over SSH:\n%s\nwant\n%s", gb, sb)
	}

	var out bytes.Buffer
	writeStatus(&out, statusResult{Spec: "demo.hcl", Gateway: srv.Addr, Health: got}, now.Add(5*time.Second))
	text := out.String()
	for _, w := range []string{
		"demo.hcl (" + srv.Addr + "): site demo, snapshot of ",
		"(5s ago); ingest writing, broker connected, 0 readings spooled; disk 23 % used\n",
		"NODE     LAST SEEN",
		"bench-1  12s ago ",
		"1.1.0     2031-03-09 (1558 days)  0        1.1.0 installed\n",
		"(SILENT, 120 intervals)",
		"certificates: ca 3652 days, nginx 20 days (RENEW)\n",
		"mqtt no certificate 2, ota revoked 4\n",
	} {
		if !strings.Contains(text, w) {
			t.Errorf("status lacks %q:\n%s", w, text)
		}
	}
	if line := strings.Split(text, "\n")[3]; !strings.HasPrefix(line, "bench-2") || !strings.Contains(line, "  4  ") {
		t.Errorf("bench-2's line %q: want never seen, 4 refused", line)
	}

	// The program refuses when it has no snapshot yet, and says why.
	os.Remove(filepath.Join(stateDir, health.StatusFile))
	if _, err := fetchStatus(ctx, c, root); err == nil || !strings.Contains(err.Error(), "is appliance-health running?") {
		t.Errorf("no snapshot: %v", err)
	}
}

// TestStatusUnreachable: a gateway that does not answer is an error
// naming where status tried, with no Wi-Fi passphrase asked for.
func TestStatusUnreachable(t *testing.T) {
	dir := t.TempDir()
	spec := filepath.Join(dir, "demo.hcl")
	b, _ := os.ReadFile("../examples/demo.hcl")
	os.WriteFile(spec, b, 0o644)
	env := []string{"HOME=/nonexistent", "XDG_CACHE_HOME=" + filepath.Join(dir, "cache")}
	if code, out, errs := run(t, env, "plan", spec); code != 0 {
		t.Fatalf("plan (which makes the state): %d\n%s%s", code, out, errs)
	}
	port := testenv.FreePort(t)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	code, out, errs := run(t, env, "status", "--host", addr, spec)
	if code != 1 || !strings.Contains(errs, "connecting to "+addr) {
		t.Errorf("status of nothing: exit %d\n%s%s", code, out, errs)
	}
	code, out, _ = run(t, env, "status", "--json", "--host", addr, spec)
	var res []statusResult
	if err := json.Unmarshal([]byte(out), &res); code != 1 || err != nil || len(res) != 1 || res[0].Gateway != addr || res[0].Error == "" {
		t.Errorf("status --json of nothing: exit %d %v\n%s", code, err, out)
	}
}
