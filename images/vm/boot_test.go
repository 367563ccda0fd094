//go:build boottest

// The boot test builds the demo site from the real Debian archive,
// boots it under QEMU and checks over SSH that the gateway runs. It
// takes ten minutes or more under emulation, so make test runs it on its
// own (make boot-test, with -tags boottest).
package vm_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/appliance/appliance/cli"
	"github.com/appliance/appliance/images/build"
	"github.com/appliance/appliance/images/build/buildtest"
	"github.com/appliance/appliance/images/vm"
	"github.com/appliance/appliance/internal/dpkglog"
	"github.com/appliance/appliance/state"
	"golang.org/x/crypto/ssh"
)

// firstBootDeadline bounds the whole boot: the first boot configures
// every package under emulation (about 3½ minutes on an idle 2-core
// machine; make bench-firstboot measures it). It is a time-box for a
// hung boot, not the budget: a loaded machine takes twice as long.
const firstBootDeadline = 15 * time.Minute

func TestBootDemo(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), firstBootDeadline+10*time.Minute)
	defer cancel()
	dir := t.TempDir()
	// The demo with MQTT on another port than the default: the VM must
	// forward the port the spec chose (build-info.json records it).
	specDir := filepath.Join(dir, "site")
	os.MkdirAll(specDir, 0o755)
	demo, err := os.ReadFile("../../examples/demo.hcl")
	if err != nil {
		t.Fatal(err)
	}
	lock, err := os.ReadFile("../../examples/demo.lock")
	if err != nil {
		t.Fatal(err)
	}
	// And with its firmware's app image, so that the nodes' bundles, the
	// gateway's OTA tree and an OTA round have one.
	demoWithPort := append(demo, []byte("\nmqtt {\n  port = 8884\n}\n")...)
	appImage(t, specDir, "1.0.0")
	os.WriteFile(filepath.Join(specDir, "demo.hcl"), withFirmware(t, demoWithPort, "1.0.0"), 0o644)
	p := newPhases(t)
	os.WriteFile(filepath.Join(specDir, "demo.lock"), lock, 0o644)
	opt, st := buildtest.Options(t, filepath.Join(specDir, "demo.hcl"))
	gw := opt.Gateway
	out := filepath.Join(dir, "out", "demo")
	os.MkdirAll(filepath.Dir(out), 0o755)
	var log bytes.Buffer
	opt.OutDir, opt.Log, opt.Version = out, &log, "boot-test"
	if _, err := build.Build(ctx, opt); err != nil {
		t.Fatalf("build: %v\n%s", err, log.String())
	}
	t.Logf("build:\n%s", log.String())
	p.done("build")

	m, err := vm.Start(ctx, vm.Options{Out: out, DiskSize: 4 << 30})
	if err != nil {
		t.Fatal(err)
	}
	if l := m.Info.Listener("mqtt.port"); l == nil || l.Port != 8884 {
		t.Fatalf("build-info.json records MQTT as %+v; want port 8884", l)
	}
	defer m.Stop(time.Minute)
	console := func() string {
		b, _ := os.ReadFile(m.ConsoleLog)
		if len(b) > 6000 {
			b = b[len(b)-6000:]
		}
		return string(b)
	}

	// Log in as the admin with appliance's deploy key, and accept only the
	// host key the state holds: push pins the host the same way.
	cfg := adminSSH(t, st, gw.Admin)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(m.SSHPort))
	connect := func(within time.Duration) *ssh.Client {
		t.Helper()
		deadline := time.Now().Add(within)
		for {
			select {
			case <-m.Done():
				t.Fatalf("QEMU ended: %v\nconsole:\n%s", m.Err(), console())
			default:
			}
			c, err := ssh.Dial("tcp", addr, cfg)
			if err == nil {
				return c
			}
			if time.Now().After(deadline) {
				t.Fatalf("no SSH login within %v (%v)\nconsole:\n%s", within, err, console())
			}
			time.Sleep(5 * time.Second)
		}
	}
	run := func(c *ssh.Client, cmd string) (string, error) {
		s, err := c.NewSession()
		if err != nil {
			return "", err
		}
		defer s.Close()
		out, err := s.CombinedOutput(cmd)
		return strings.TrimSpace(string(out)), err
	}
	started := time.Now()
	c := connect(firstBootDeadline)
	t.Logf("SSH login %v after boot start", time.Since(started).Round(time.Second))
	checkRunning := func(c *ssh.Client) {
		t.Helper()
		state, _ := run(c, "systemctl is-system-running --wait")
		if state != "running" {
			failed, _ := run(c, "systemctl --failed --no-legend --plain")
			journal, _ := run(c, "sudo journalctl -b -p warning --no-pager | tail -40")
			t.Fatalf("systemctl is-system-running: %q; failed units:\n%s\njournal:\n%s", state, failed, journal)
		}
	}
	checkRunning(c)
	t.Logf("system running %v after boot start", time.Since(started).Round(time.Second))
	p.done("first boot")
	defer keepEvidence(t, m, func() string {
		j, _ := run(c, "sudo journalctl -b --no-pager | tail -5000")
		return j
	})
	firstBoots := func(c *ssh.Client) string {
		n, err := run(c, "sudo grep -c '^appliance first boot: [0-9]' /var/log/appliance-firstboot.log")
		if err != nil {
			t.Fatalf("reading the first boot's log: %v %s", err, n)
		}
		return n
	}
	if n := firstBoots(c); n != "1" {
		t.Errorf("the first boot ran %s times", n)
	}
	timing, _ := run(c, "sudo grep -E 'first boot: .* (done|finished) in' /var/log/appliance-firstboot.log")
	t.Logf("first boot:\n%s", timing)
	// Where the time went, package by package, from dpkg's own log.
	if dlog, err := run(c, "sudo cat /var/log/dpkg.log"); err != nil {
		t.Errorf("reading dpkg's log: %v", err)
	} else if prof, err := dpkglog.Read(strings.NewReader(dlog)); err != nil {
		t.Error(err)
	} else {
		var b strings.Builder
		prof.Table(&b, 25)
		t.Logf("the first boot's dpkg, slowest first:\n%s", b.String())
	}

	// Every unit and port the modules name as a health check.
	for _, chk := range gw.Checks {
		switch chk.Kind {
		case "unit":
			if out, err := run(c, "systemctl is-active "+chk.Unit); err != nil || out != "active" {
				t.Errorf("%s: %s is %q", chk.Name, chk.Unit, out)
			}
		case "tcp":
			if out, err := run(c, fmt.Sprintf("timeout 5 bash -c '</dev/tcp/127.0.0.1/%d'", chk.Port)); err != nil {
				t.Errorf("%s: port %d: %v %s", chk.Name, chk.Port, err, out)
			}
		case "http":
			if strings.HasPrefix(chk.URL, "http://") {
				u, _ := url.Parse(chk.URL)
				get := fmt.Sprintf(`exec 3<>/dev/tcp/127.0.0.1/%s; printf 'GET %s HTTP/1.0\r\n\r\n' >&3; head -1 <&3`, u.Port(), u.Path)
				if out, err := run(c, "timeout 5 bash -c "+shellQuote(get)); err != nil || !strings.Contains(out, " 20") {
					t.Errorf("%s: %s answers %q (%v)", chk.Name, chk.URL, out, err)
				}
			}
		}
	}
	// The broker and Nginx answer TLS with the site's certificates, through
	// QEMU's forwarded ports.
	pool := x509.NewCertPool()
	caPEM, _ := st.ReadFile("pki/ca.crt")
	pool.AppendCertsFromPEM(caPEM)
	crt, _ := st.ReadFile("pki/issued/ingest.crt")
	keyPEM, _ := st.ReadFile("pki/issued/ingest.key")
	pair, _ := tls.X509KeyPair(crt, keyPEM)
	mqttSerial := serverSerial(t, m.MQTTPort, pool, pair, gw.Hostname)
	for name, port := range map[string]int{"mqtt": m.MQTTPort, "https": m.HTTPSPort} {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 20 * time.Second}, "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
			&tls.Config{RootCAs: pool, ServerName: gw.Hostname, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12})
		if err != nil {
			t.Errorf("%s over TLS: %v", name, err)
			continue
		}
		conn.Close()
	}
	if t.Failed() {
		return
	}

	// appliance push changes a setting and a certificate on the running
	// gateway: the services they belong to restart and pass their checks,
	// and the gateway keeps the new generation across the reboot below.
	pushed := time.Now()
	base := append(demoWithPort, []byte("\ningest {\n  batch_size = 2500\n}\n")...)
	pushToVM(t, m, specDir, st, func(path string) {
		os.WriteFile(path, withFirmware(t, base, "1.0.0"), 0o644)
	})
	t.Logf("push: %v", time.Since(pushed).Round(time.Second))
	p.done("push")
	checkRunning(c)
	if out, _ := run(c, "sudo grep -c '\"batch_size\": 2500' /etc/appliance/ingest.json"); out != "1" {
		t.Errorf("the pushed setting is not on the gateway: %q", out)
	}
	if out, _ := run(c, "systemctl is-active mosquitto.service appliance-ingest.service"); out != "active\nactive" {
		t.Errorf("after the push: %q", out)
	}
	newCert := serverSerial(t, m.MQTTPort, pool, pair, gw.Hostname)
	if newCert == mqttSerial {
		t.Errorf("the broker still serves the certificate it had before the push (serial %s)", newCert)
	}

	// The whole site, from the outside: nodes, OTA, a fleet change.
	x := &e2e{t: t, m: m, c: c, out: out, out2: filepath.Join(dir, "out2", "demo"), specDir: specDir, state: st.Dir, run: run, pool: pool, name: gw.Hostname}
	x.readings(p)
	x.ota(p, base)
	x.fleet(p, withFirmware(t, base, "1.1.0"))
	x.outside()
	p.print()
	generation, _ := run(c, "sudo readlink /var/lib/appliance/current")

	// A second boot runs no first boot again.
	run(c, "sudo systemctl reboot")
	c.Close()
	time.Sleep(10 * time.Second)
	rebooted := time.Now()
	c = connect(10 * time.Minute)
	defer c.Close()
	checkRunning(c)
	t.Logf("second boot: running %v after reboot", time.Since(rebooted).Round(time.Second))
	if n := firstBoots(c); n != "1" {
		t.Errorf("after a reboot the first boot has run %s times", n)
	}
	if out, _ := run(c, "sudo readlink /var/lib/appliance/current"); out != generation {
		t.Errorf("after the reboot the gateway runs %q; want the pushed %s", out, generation)
	}
	if s := serverSerial(t, m.MQTTPort, pool, pair, gw.Hostname); s != newCert {
		t.Errorf("after the reboot the broker serves serial %s; want the pushed %s", s, newCert)
	}

	// A first boot that fails says so on the console and in the journal,
	// leaves the system degraded, and is tried again on the next boot:
	// a package whose postinst fails is unpacked and the first boot is
	// made to run again.
	const broken = `set -e
d=$(mktemp -d); mkdir -p $d/DEBIAN
printf 'Package: appliance-broken\nVersion: 1\nArchitecture: all\nMaintainer: test <t@example.org>\nDescription: fails to configure\n' > $d/DEBIAN/control
printf '#!/bin/sh\necho broken postinst >&2\nexit 1\n' > $d/DEBIAN/postinst; chmod 755 $d/DEBIAN/postinst
dpkg-deb --build $d /tmp/broken.deb >/dev/null
sudo dpkg --unpack /tmp/broken.deb
sudo rm /var/lib/appliance/firstboot.done`
	if out, err := run(c, broken); err != nil {
		t.Fatalf("preparing a failing first boot: %v\n%s", err, out)
	}
	reboot := func() *ssh.Client {
		run(c, "sudo systemctl reboot")
		c.Close()
		time.Sleep(10 * time.Second)
		return connect(10 * time.Minute)
	}
	c = reboot()
	defer c.Close()
	state, _ := run(c, "systemctl is-system-running --wait")
	failedUnit, _ := run(c, "systemctl is-failed appliance-firstboot-check.service")
	journal, _ := run(c, "sudo journalctl -b -u appliance-firstboot-check.service --no-pager")
	if state != "degraded" || failedUnit != "failed" || !strings.Contains(journal, "appliance first boot failed") || !strings.Contains(journal, "appliance-broken") {
		t.Errorf("after a failed first boot: system %q, check unit %q, its journal:\n%s", state, failedUnit, journal)
	}
	if all, _ := os.ReadFile(m.ConsoleLog); !strings.Contains(string(all), "appliance first boot FAILED") {
		t.Errorf("the console does not show the failed first boot")
	}
	// The fix (here: a postinst that succeeds) is picked up by the next
	// boot, which runs the first boot again and finishes it.
	if out, err := run(c, "sudo sed -i 's/^exit 1$/exit 0/' /var/lib/dpkg/info/appliance-broken.postinst"); err != nil {
		t.Fatalf("fixing the package: %v %s", err, out)
	}
	c = reboot()
	defer c.Close()
	checkRunning(c)
	if n := firstBoots(c); n != "3" {
		t.Errorf("the failed first boot was not retried exactly once: %s first boots", n)
	}
	if st, _ := run(c, "dpkg-query -W -f '${Status}' appliance-broken"); st != "install ok installed" {
		t.Errorf("the retried first boot left the package %q", st)
	}
	if _, err := run(c, "test ! -e /var/lib/appliance/firstboot.failed"); err != nil {
		t.Errorf("the failure marker outlived a successful first boot")
	}
}

// pushToVM renews the broker's certificate, lets edit change the spec,
// and runs appliance push against the VM as a user would.
func pushToVM(t *testing.T, m *vm.VM, specDir string, st *state.Store, edit func(path string)) {
	t.Helper()
	spec := filepath.Join(specDir, "demo.hcl")
	edit(spec)
	// The state is the CLI's now: the build is done with it.
	st.Close()
	home, _ := os.UserHomeDir()
	env := []string{"HOME=" + home, "APPLIANCE_VAR_wifi_psk=test-passphrase"}
	if x := os.Getenv("XDG_CACHE_HOME"); x != "" {
		env = append(env, "XDG_CACHE_HOME="+x)
	}
	var out, errs strings.Builder
	e := cli.Env{Stdout: &out, Stderr: &errs, Environ: env}
	if code := cli.Main(context.Background(), []string{"pki", "renew", "--state", st.Dir, spec, "mosquitto"}, e); code != 0 {
		t.Fatalf("pki renew mosquitto: exit %d\n%s%s", code, out.String(), errs.String())
	}
	code := cli.Main(context.Background(), []string{"push", "--state", st.Dir, "--host", net.JoinHostPort("127.0.0.1", strconv.Itoa(m.SSHPort)), spec}, e)
	t.Logf("push:\n%s%s", errs.String(), out.String())
	if code != 0 {
		t.Fatalf("push to the VM: exit %d", code)
	}
	for _, want := range []string{"restart mosquitto.service", "restart appliance-ingest.service", "runs generation 2"} {
		if !strings.Contains(errs.String(), want) {
			t.Errorf("push did not report %q", want)
		}
	}
}

// serverSerial is the serial of the certificate a TLS server on a
// forwarded port presents.
func serverSerial(t *testing.T, port int, pool *x509.CertPool, pair tls.Certificate, name string) string {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 20 * time.Second}, "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		&tls.Config{RootCAs: pool, ServerName: name, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Errorf("TLS to port %d: %v", port, err)
		return ""
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
}

// adminSSH logs in as the admin with appliance's deploy key and accepts
// only the host key the state holds, as push does.
func adminSSH(t *testing.T, st *state.Store, admin string) *ssh.ClientConfig {
	t.Helper()
	key, err := st.ReadFile("ssh/deploy_ed25519")
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.ParsePrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	hostPub, _ := st.ReadFile("ssh/ssh_host_ed25519_key.pub")
	host, _, _, _, err := ssh.ParseAuthorizedKey(hostPub)
	if err != nil {
		t.Fatal(err)
	}
	return &ssh.ClientConfig{User: admin, Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: ssh.FixedHostKey(host), HostKeyAlgorithms: []string{ssh.KeyAlgoED25519}, Timeout: 20 * time.Second}
}

// shellQuote quotes s for the gateway's shell.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
