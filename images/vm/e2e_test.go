//go:build boottest

// The end-to-end part of the boot test: the booted demo with its nodes
// running from their own identity images, readings to InfluxDB across a
// broker restart, an OTA round through push, a fleet change and a
// rollback, and what an outsider meets.
package vm_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/appliance/appliance/cli"
	"github.com/appliance/appliance/firmware/espimage"
	"github.com/appliance/appliance/images/vm"
	"github.com/appliance/appliance/internal/fwtest"
	"github.com/appliance/appliance/internal/testenv"
	"github.com/appliance/appliance/pki"
	"github.com/appliance/appliance/state"
	"golang.org/x/crypto/ssh"
)

// phases times the end to end's phases, printed at the end.
type phases struct {
	t    *testing.T
	last time.Time
	list []string
}

func newPhases(t *testing.T) *phases { return &phases{t: t, last: time.Now()} }

func (p *phases) done(name string) {
	d := time.Since(p.last).Round(time.Second)
	p.list = append(p.list, fmt.Sprintf("%-28s %v", name, d))
	p.last = time.Now()
	p.t.Logf("phase %s: %v", name, d)
}

func (p *phases) print() {
	p.t.Logf("phases:\n  %s", strings.Join(p.list, "\n  "))
}

// appImage writes the sensor firmware's app image of version v where
// the spec's firmware.image points: what idf.py build would leave.
func appImage(t *testing.T, specDir, v string) {
	t.Helper()
	os.MkdirAll(filepath.Join(specDir, "build"), 0o755)
	img := fwtest.App{Chip: espimage.ESP32S3, Version: v, Project: "sensor", IDFVersion: "v5.3", DataSize: 64 << 10}.Image()
	if err := os.WriteFile(filepath.Join(specDir, "build", "sensor.bin"), img, 0o644); err != nil {
		t.Fatal(err)
	}
}

// withFirmware gives the demo's firmware the app image of version v.
func withFirmware(t *testing.T, spec []byte, v string) []byte {
	t.Helper()
	old := "firmware \"sensor\" {\n  chip    = \"esp32s3\"\n  version = \"1.0.0\"\n}"
	if !bytes.Contains(spec, []byte(old)) {
		t.Fatalf("the demo's firmware block changed; the test looks for:\n%s", old)
	}
	return bytes.Replace(spec, []byte(old), []byte(fmt.Sprintf("firmware \"sensor\" {\n  chip    = \"esp32s3\"\n  version = %q\n  image   = \"build/sensor.bin\"\n}", v)), 1)
}

// e2e is what the end to end's steps share.
type e2e struct {
	t   *testing.T
	m   *vm.VM
	c   *ssh.Client
	out string
	// out2 is where builds after the boot go: out holds the running VM's
	// disk.
	out2    string
	specDir string
	state   string
	run     func(*ssh.Client, string) (string, error)
	pool    *x509.CertPool
	name    string
}

func (x *e2e) env() []string {
	home, _ := os.UserHomeDir()
	env := []string{"HOME=" + home, "APPLIANCE_VAR_wifi_psk=test-passphrase", "SSH_AUTH_SOCK="}
	if v := os.Getenv("XDG_CACHE_HOME"); v != "" {
		env = append(env, "XDG_CACHE_HOME="+v)
	}
	return env
}

// cli runs appliance in-process; it returns the exit code, stdout and
// stderr.
func (x *e2e) cli(args ...string) (int, string, string) {
	var out, errs strings.Builder
	code := cli.Main(context.Background(), args, cli.Env{Stdout: &out, Stderr: &errs, Environ: x.env()})
	return code, out.String(), errs.String()
}

func (x *e2e) push(extra ...string) string {
	x.t.Helper()
	args := append([]string{"push", "--state", x.state, "--host", net.JoinHostPort("127.0.0.1", strconv.Itoa(x.m.SSHPort))}, extra...)
	code, out, errs := x.cli(append(args, filepath.Join(x.specDir, "demo.hcl"))...)
	if code != 0 {
		x.t.Fatalf("push %v: exit %d\n%s%s", extra, code, errs, out)
	}
	return errs
}

// sim runs the build's nodes with the given arguments and returns what
// sim --json printed.
type simResult struct {
	Readings *struct {
		Nodes []struct {
			Node        string `json:"node"`
			Boot        uint32 `json:"boot"`
			Readings    int    `json:"readings"`
			Acked       int    `json:"acknowledged"`
			Refused     int    `json:"refused"`
			Pending     int    `json:"pending"`
			Dropped     int    `json:"dropped"`
			Connections int    `json:"connections"`
			Reason      string `json:"reason"`
		} `json:"nodes"`
	} `json:"readings"`
	OTA []struct {
		Node     string `json:"node"`
		Status   string `json:"status"`
		Reason   string `json:"reason"`
		Manifest *struct {
			Version         string `json:"version"`
			ManifestVersion uint64 `json:"manifest_version"`
		} `json:"manifest"`
	} `json:"ota"`
}

func (x *e2e) sim(args ...string) (*simResult, int, string) {
	x.t.Helper()
	full := append([]string{"sim", "--json", "--broker", net.JoinHostPort("127.0.0.1", strconv.Itoa(x.m.MQTTPort)),
		"--https", net.JoinHostPort("127.0.0.1", strconv.Itoa(x.m.HTTPSPort))}, args...)
	code, out, errs := x.cli(full...)
	var r simResult
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		x.t.Fatalf("sim %v: exit %d, %v\n%s%s", args, code, err, out, errs)
	}
	return &r, code, errs
}

// influx queries the gateway's InfluxDB over the gateway's own loopback
// (its sshd forwards no ports), with the admin's password from the state.
func (x *e2e) influx(q string) [][]any {
	x.t.Helper()
	st, err := state.Open(x.state, state.Options{})
	if err != nil {
		x.t.Fatal(err)
	}
	pw, _ := st.ReadFile("secrets/influxdb-admin-password")
	st.Close()
	auth := base64.StdEncoding.EncodeToString([]byte("admin:" + strings.TrimSpace(string(pw))))
	path := "/query?db=sensors&q=" + url.QueryEscape(q)
	cmd := fmt.Sprintf(`exec 3<>/dev/tcp/127.0.0.1/8086; printf 'GET %%s HTTP/1.0\r\nAuthorization: Basic %%s\r\n\r\n' %s %s >&3; cat <&3`, shellQuote(path), shellQuote(auth))
	out, err := x.run(x.c, "timeout 20 bash -c "+shellQuote(cmd))
	if err != nil {
		x.t.Fatalf("querying InfluxDB: %v\n%s", err, out)
	}
	_, body, _ := strings.Cut(out, "\r\n\r\n")
	var res struct {
		Results []struct {
			Series []struct {
				Values [][]any `json:"values"`
			} `json:"series"`
			Error string `json:"error"`
		} `json:"results"`
	}
	if err := json.Unmarshal([]byte(body), &res); err != nil || len(res.Results) == 0 || res.Results[0].Error != "" {
		x.t.Fatalf("InfluxDB's answer to %s: %v\n%s", q, err, out)
	}
	if len(res.Results[0].Series) == 0 {
		return nil
	}
	return res.Results[0].Series[0].Values
}

// onceEach checks that the node's readings of a boot are in InfluxDB
// exactly once each, and returns how many there are.
func (x *e2e) onceEach(node string, boot uint32) int {
	x.t.Helper()
	rows := x.influx(fmt.Sprintf("SELECT boot, seq FROM reading WHERE node = '%s' AND boot = %d", node, boot))
	seen := map[int64]int{}
	for _, r := range rows {
		if len(r) < 3 {
			continue
		}
		seq, _ := r[2].(float64)
		seen[int64(seq)]++
	}
	for seq, n := range seen {
		if n != 1 {
			x.t.Errorf("%s boot %d seq %d is in InfluxDB %d times", node, boot, seq, n)
		}
	}
	return len(seen)
}

// readings runs bench-1 and bench-2 as simulated nodes and bench-3 as
// the firmware's host build, from their own identity images, through
// the forwarded MQTT port for a minute, across a restart of the broker
// on the gateway; every reading the broker acknowledged is in InfluxDB
// exactly once.
func (x *e2e) readings(p *phases) {
	t := x.t
	host := x.hostFirmware("bench-3")
	defer host.Stop()
	done := make(chan *simResult, 1)
	go func() {
		r, code, errs := x.sim("--rate", "2", "--duration", "60s", x.out, "bench-1", "bench-2")
		if code != 0 {
			t.Errorf("sim: exit %d\n%s", code, errs)
		}
		done <- r
	}()
	first := time.Now()
	for time.Since(first) < time.Minute {
		if rows := x.influx("SELECT count(seq) FROM reading"); len(rows) > 0 {
			break
		}
		time.Sleep(2 * time.Second)
	}
	p.done("first reading in InfluxDB")
	time.Sleep(15 * time.Second)
	if out, err := x.run(x.c, "sudo systemctl restart mosquitto.service"); err != nil {
		t.Errorf("restarting the broker: %v %s", err, out)
	}
	r := <-done
	if r == nil || r.Readings == nil {
		t.Fatal("sim printed no readings")
	}
	// ingest writes within a second of the broker's acknowledgement.
	time.Sleep(5 * time.Second)
	for _, n := range r.Readings.Nodes {
		if n.Acked == 0 || n.Pending != 0 || n.Dropped != 0 || n.Connections < 2 {
			t.Errorf("%s: %+v; want every reading acknowledged, across a reconnect", n.Node, n)
		}
		if got := x.onceEach(n.Node, n.Boot); got != n.Acked {
			t.Errorf("%s: %d of its %d acknowledged readings are in InfluxDB", n.Node, got, n.Acked)
		}
	}
	host.Stop()
	if rows := x.influx("SELECT seq FROM reading WHERE node = 'bench-3'"); len(rows) == 0 {
		t.Errorf("no reading of the firmware's host build (bench-3) reached InfluxDB:\n%s", host.Output())
	}
	p.done("readings")
}

// hostFirmware runs the sensor firmware's Linux build as node, from the
// identity that appliance node export takes out of its LittleFS image,
// pointed at the VM's forwarded ports (the broker's certificate names
// 127.0.0.1 too).
func (x *e2e) hostFirmware(node string) *testenv.Proc {
	t := x.t
	build := t.TempDir()
	if out, err := exec.Command("make", "--no-print-directory", "-C", "../../firmware/sensor", "BUILD="+build, "host").CombinedOutput(); err != nil {
		t.Fatalf("building the firmware's host program: %v\n%s", err, out)
	}
	id := filepath.Join(t.TempDir(), "identity")
	if code, out, errs := x.cli("node", "export", x.out, node, id); code != 0 {
		t.Fatalf("node export: %s%s", out, errs)
	}
	cfgPath := filepath.Join(id, "config.json")
	b, _ := os.ReadFile(cfgPath)
	var cfg map[string]any
	json.Unmarshal(b, &cfg)
	cfg["mqtt"].(map[string]any)["host"] = "127.0.0.1"
	cfg["mqtt"].(map[string]any)["port"] = x.m.MQTTPort
	cfg["ota"].(map[string]any)["url"] = fmt.Sprintf("https://127.0.0.1:%d/ota", x.m.HTTPSPort)
	cfg["interval_ms"] = 5000
	b, _ = json.Marshal(cfg)
	os.WriteFile(cfgPath, b, 0o600)
	return testenv.Start(t, filepath.Join(build, "sensor-host"), "--identity", id, "--state", t.TempDir(), "--version", "1.0.0", "--backoff-cap", "3000", "-v")
}

// ota publishes firmware 1.1.0 with push; the nodes' OTA check over the
// forwarded HTTPS port, with their client certificates, sees it and
// verifies manifest, signature and image; an image tampered with on
// the gateway is refused.
func (x *e2e) ota(p *phases, spec []byte) {
	t := x.t
	appImage(t, x.specDir, "1.1.0")
	os.WriteFile(filepath.Join(x.specDir, "demo.hcl"), withFirmware(t, spec, "1.1.0"), 0o644)
	x.push()
	r, code, errs := x.sim("--ota", "--duration", "0", x.out, "bench-1", "bench-2")
	if code != 0 || len(r.OTA) != 2 {
		t.Fatalf("OTA check: exit %d %+v\n%s", code, r.OTA, errs)
	}
	var image string
	for _, o := range r.OTA {
		if o.Status != "update" || o.Manifest == nil || o.Manifest.Version != "1.1.0" || o.Manifest.ManifestVersion < 2 {
			t.Errorf("%s's OTA check: %+v", o.Node, o)
		}
	}
	out, _ := x.run(x.c, "sudo sh -c 'ls /var/lib/appliance/ota/sensor/*.bin'")
	image = strings.TrimSpace(strings.Split(out, "\n")[0])
	if image == "" {
		t.Fatalf("no image in the gateway's OTA tree")
	}
	if out, err := x.run(x.c, "sudo dd if=/dev/urandom of="+image+" bs=1 count=4 seek=40000 conv=notrunc status=none"); err != nil {
		t.Fatalf("tampering with %s: %v %s", image, err, out)
	}
	r, code, _ = x.sim("--ota", "--duration", "0", x.out, "bench-1")
	if code == 0 || len(r.OTA) != 1 || r.OTA[0].Status != "refused" || !strings.Contains(r.OTA[0].Reason, "SHA-256") {
		t.Errorf("the OTA check of a tampered image: exit %d %+v", code, r.OTA)
	}
	p.done("OTA round")
}

// fleet adds a node and revokes bench-2 with one push: the revoked node
// is refused by the broker and by Nginx, the new one publishes; the
// gateway keeps the generation before, and push --rollback returns to it.
func (x *e2e) fleet(p *phases, spec []byte) {
	t := x.t
	spec = append(append([]byte(nil), spec...), "\nnode \"door\" {\n  firmware = firmware.sensor\n  sensor   = { type = \"dht22\", pin = 5 }\n  interval = \"10s\"\n  wifi     = { ssid = \"demo-sensors\", psk = var.wifi_psk }\n}\n"...)
	os.WriteFile(filepath.Join(x.specDir, "demo.hcl"), spec, 0o644)
	if code, out, errs := x.cli("pki", "revoke", "--state", x.state, filepath.Join(x.specDir, "demo.hcl"), "bench-2"); code != 0 {
		t.Fatalf("pki revoke: %s%s", out, errs)
	}
	// bench-2 stays in the spec, revoked: the state says so, and push
	// goes on (the gateway must get the CRL).
	before, _ := x.run(x.c, "sudo readlink /var/lib/appliance/current")
	x.push()
	// The new node's bundle comes with a build.
	os.MkdirAll(filepath.Dir(x.out2), 0o755)
	if code, out, errs := x.cli("build", "--state", x.state, "--out", x.out2, filepath.Join(x.specDir, "demo.hcl")); code != 0 {
		t.Fatalf("build after the fleet change: %s%s", out, errs)
	}
	// The new node from the new build; the revoked one as it was
	// flashed, from the build before.
	r, code, errs := x.sim("--rate", "2", "--duration", "10s", x.out2, "door")
	if code != 0 || len(r.Readings.Nodes) != 1 || r.Readings.Nodes[0].Acked == 0 {
		t.Errorf("the new node: exit %d %+v\n%s", code, r.Readings, errs)
	}
	r, code, _ = x.sim("--rate", "2", "--duration", "10s", x.out, "bench-2")
	if n := r.Readings.Nodes; code == 0 || len(n) != 1 || n[0].Acked != 0 || !strings.Contains(n[0].Reason, "revoked") {
		t.Errorf("the revoked node: exit %d %+v; want it refused as revoked", code, r.Readings)
	}
	o, _, _ := x.sim("--ota", "--duration", "0", x.out, "bench-2")
	if len(o.OTA) != 1 || o.OTA[0].Status == "update" || o.OTA[0].Status == "current" {
		t.Errorf("Nginx served the revoked node: %+v", o.OTA)
	}
	code, gens, errs := x.cli("generations", "--state", x.state, "--host", net.JoinHostPort("127.0.0.1", strconv.Itoa(x.m.SSHPort)), filepath.Join(x.specDir, "demo.hcl"))
	if code != 0 || strings.Count(gens, "\n") < 3 {
		t.Errorf("generations: exit %d\n%s%s", code, gens, errs)
	}
	x.push("--rollback")
	after, _ := x.run(x.c, "sudo readlink /var/lib/appliance/current")
	if after == before {
		t.Errorf("push --rollback left the gateway on %s", after)
	}
	if out, _ := x.run(x.c, "sudo grep -c door /etc/nginx/appliance/nodes.map"); out != "0" {
		t.Errorf("after the rollback Nginx still knows the new node: %q", out)
	}
	p.done("fleet change and rollback")
}

// outside checks what someone without the site's keys meets: MQTT and
// /ota/ refuse a client without a certificate and one of another CA; the
// gateway listens on nothing it did not declare; SSH takes neither
// passwords nor root.
func (x *e2e) outside() {
	t := x.t
	otherCA, _, err := pki.NewCA("intruder", time.Now(), time.Now().AddDate(1, 0, 0))
	if err != nil {
		t.Fatal(err)
	}
	crt, key, _, err := otherCA.Issue(pki.Request{Name: "bench-1", Kind: pki.Node}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	other, err := tls.X509KeyPair(crt, key)
	if err != nil {
		t.Fatal(err)
	}
	for name, certs := range map[string][]tls.Certificate{"no certificate": nil, "another CA's certificate": {other}} {
		mq := x.tlsTalk(x.m.MQTTPort, certs, []byte{0x10, 0x0c, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x05, 0x02, 0x00, 0x3c, 0x00, 0x00})
		if mq != nil {
			t.Errorf("MQTT with %s: the broker answered a CONNECT with % x", name, mq)
		}
		status := x.otaStatus(certs)
		if status == http.StatusOK || status == http.StatusNotFound {
			t.Errorf("/ota/ with %s: answered %d", name, status)
		}
	}
	// Listening sockets: only declared ones, on the network; the rest on
	// loopback.
	out, err := x.run(x.c, "ss -H -tuln")
	if err != nil {
		t.Fatalf("ss: %v", err)
	}
	declared := map[string]bool{}
	for _, l := range x.m.Info.Listeners {
		declared[l.Proto+"/"+strconv.Itoa(l.Port)] = true
	}
	var stray []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		host, port, _ := net.SplitHostPort(f[4])
		ip := net.ParseIP(strings.Trim(strings.Split(host, "%")[0], "[]"))
		if ip != nil && ip.IsLoopback() {
			continue
		}
		// networkd's DHCP clients receive their leases on these; they
		// answer nothing unsolicited.
		if f[0] == "udp" && (port == "68" || port == "546") {
			continue
		}
		if !declared[f[0]+"/"+port] {
			stray = append(stray, line)
		}
	}
	sort.Strings(stray)
	if len(stray) > 0 {
		t.Errorf("the gateway listens beyond loopback on what it did not declare:\n%s", strings.Join(stray, "\n"))
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(x.m.SSHPort))
	st, _ := state.Open(x.state, state.Options{})
	deploy, _ := st.ReadFile("ssh/deploy_ed25519")
	st.Close()
	signer, _ := ssh.ParsePrivateKey(deploy)
	for _, cfg := range []*ssh.ClientConfig{
		{User: "root", Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)}, HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 20 * time.Second},
		{User: x.m.Info.Admin, Auth: []ssh.AuthMethod{ssh.Password("password")}, HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 20 * time.Second},
	} {
		if c, err := ssh.Dial("tcp", addr, cfg); err == nil {
			c.Close()
			t.Errorf("SSH let %s in with %v", cfg.User, cfg.Auth)
		} else if !strings.Contains(err.Error(), "unable to authenticate") {
			t.Errorf("SSH as %s: %v", cfg.User, err)
		}
	}
}

// tlsTalk handshakes with port presenting certs, sends b and returns
// what came back (nil: the connection was refused or closed).
func (x *e2e) tlsTalk(port int, certs []tls.Certificate, b []byte) []byte {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		&tls.Config{RootCAs: x.pool, ServerName: x.name, Certificates: certs, MinVersion: tls.VersionTLS12})
	if err != nil {
		return nil
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write(b); err != nil {
		return nil
	}
	buf := make([]byte, 64)
	n, err := conn.Read(buf)
	if n == 0 || err != nil {
		return nil
	}
	return buf[:n]
}

// otaStatus fetches the OTA manifest presenting certs: the HTTP status,
// or 0 when the connection was refused.
func (x *e2e) otaStatus(certs []tls.Certificate) int {
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: x.pool, ServerName: x.name, Certificates: certs, MinVersion: tls.VersionTLS12}}}
	resp, err := hc.Get(fmt.Sprintf("https://127.0.0.1:%d/ota/sensor/manifest.json", x.m.HTTPSPort))
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// keepEvidence leaves, when the test has failed, the console log and
// the gateway's journal as files, and says where: deferred while the VM
// still runs.
func keepEvidence(t *testing.T, m *vm.VM, journal func() string) {
	{
		if !t.Failed() {
			return
		}
		dir := os.Getenv("APPLIANCE_BOOT_EVIDENCE")
		if dir == "" {
			dir = filepath.Join(os.TempDir(), "appliance-boot-test-"+time.Now().Format("20060102-150405"))
		}
		os.MkdirAll(dir, 0o755)
		if b, err := os.ReadFile(m.ConsoleLog); err == nil {
			os.WriteFile(filepath.Join(dir, "console.log"), b, 0o644)
		}
		if j := journal(); j != "" {
			os.WriteFile(filepath.Join(dir, "journal.txt"), []byte(j), 0o644)
		}
		t.Logf("the console log and the gateway's journal are in %s", dir)
	}
}
