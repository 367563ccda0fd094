package modules_test

import (
	"crypto/tls"
	"errors"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/appliance/appliance/internal/testenv"
	"github.com/appliance/appliance/pki"
	"github.com/appliance/appliance/state"
)

// TestGatewayLeftAlone runs the gateway as a build leaves it — the real
// Mosquitto and Nginx with the generated configs and the site's own CA,
// CRL and certificates — under libfaketime, so that their OpenSSL checks
// the CRL's next update and every certificate's dates on a clock set to
// the day after the CRL of old (one year) ended, the day after the
// server certificates of old (two years) ended, and two days before the
// support period ends. On each, a valid node is admitted by both, and
// a revoked one refused. The controls show the test can fail: the
// one-year CRL of old, on the same clock, makes both refuse the valid
// node (the broker drops it: mosquitto_pub exits 7, or 1 when it reads
// the alert before the lost connection), though both admit
// it with that CRL on today's clock; and a node refuses a two-year
// server certificate of old the day after its end.
func TestGatewayLeftAlone(t *testing.T) {
	testenv.Require(t, "env", "mosquitto", "mosquitto_pub", "nginx", "openssl")
	mqtt, local, https, redirect := testenv.FreePort(t), testenv.FreePort(t), testenv.FreePort(t), testenv.FreePort(t)
	w := newGW(t, siteHCL(fmt.Sprintf("mqtt {\n  port = %d\n  local_plain_port = %d\n}\nhttps {\n  port = %d\n  redirect_port = %d\n}\n", mqtt, local, https, redirect)))
	issued := time.Now()
	ca := w.caFile(t)
	b1crt, b1key := w.certFiles(t, "bench-1")
	b2crt, b2key := w.certFiles(t, "bench-2")
	bench1, bench2 := mqttClient{ca, b1crt, b1key}, mqttClient{ca, b2crt, b2key}
	tls1, tls2 := w.tlsConfig(t, "bench-1"), w.tlsConfig(t, "bench-2")
	if _, err := w.st.Revoke("bench-2", "keyCompromise", w.g.Wants); err != nil {
		t.Fatal(err)
	}
	w.rewrite(t)
	firmware := []byte("\xe9 firmware image")
	os.MkdirAll(w.path("/var/lib/appliance/ota/fw"), 0o755)
	os.WriteFile(w.path("/var/lib/appliance/ota/fw/1.0.0.bin"), firmware, 0o644)
	os.Chmod(w.path("/var/lib/appliance/ota"), 0o755)
	mconf, nconf := moveMosquitto(t, w), moveNginx(t, w)
	firmwareURL := fmt.Sprintf("https://localhost:%d/ota/fw/1.0.0.bin", https)

	// pub publishes as a node whose clock is offset ahead too: it checks
	// the broker's certificate on that clock.
	pub := func(t *testing.T, c mqttClient, offset string) (string, error) {
		cmd := faked(t, offset, append([]string{"mosquitto_pub"}, append(c.args(mqtt), "-q", "1", "-t", "sensors/bench-1/reading", "-m", "1")...)...)
		out, err := exec.Command(cmd[0], cmd[1:]...).CombinedOutput()
		return string(out), err
	}
	// fetch gets the firmware as a node whose clock is offset ahead.
	fetch := func(c *tls.Config, offset time.Duration) (int, string, error) {
		c = c.Clone()
		c.Time = func() time.Time { return time.Now().Add(offset) }
		resp, body, err := get(t, c, firmwareURL)
		if err != nil {
			return 0, "", err
		}
		return resp.StatusCode, body, nil
	}
	days := func(n int) (string, time.Duration) { return fmt.Sprintf("+%dd", n), time.Duration(n) * 24 * time.Hour }
	supportEnd := int(time.Until(issued.AddDate(w.site.SupportYears, 0, 0)).Hours() / 24)

	for _, clock := range []struct {
		what string
		days int
	}{
		{"the day after the one-year CRL of old ended", 366},
		{"the day after the two-year server certificates of old ended", 731},
		{"two days before the support period ends", supportEnd - 2},
	} {
		t.Run(clock.what, func(t *testing.T) {
			offset, ahead := days(clock.days)
			runMosquitto(t, w, mconf, offset)
			runNginx(t, w, nconf, offset)
			if out, err := pub(t, bench1, offset); err != nil {
				t.Errorf("the broker %s days on refuses bench-1: %v\n%s", offset, err, out)
			}
			if out, err := pub(t, bench2, offset); err == nil {
				t.Errorf("the broker %s days on admits the revoked bench-2:\n%s", offset, out)
			}
			if code, body, err := fetch(tls1, ahead); err != nil || code != 200 || body != string(firmware) {
				t.Errorf("nginx %s days on: bench-1 fetching firmware: %d %v; want 200 and the firmware", offset, code, err)
			}
			if code, _, err := fetch(tls2, ahead); err == nil && code == 200 {
				t.Errorf("nginx %s days on gave the revoked bench-2 the firmware", offset)
			}
		})
	}

	t.Run("control: the one-year CRL of old", func(t *testing.T) {
		oldCRL := oneYearCRL(t, w, issued)
		for _, p := range []string{"/etc/mosquitto/certs/crl.pem", "/etc/nginx/appliance/crl.pem"} {
			if err := os.WriteFile(w.path(p), oldCRL, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		defer restoreCRL(t, w)

		// Today the CRL of old is valid: both admit bench-1 with it.
		today := func(t *testing.T) {
			runMosquitto(t, w, mconf, "")
			runNginx(t, w, nconf, "")
			if out, err := pub(t, bench1, ""); err != nil {
				t.Errorf("with the CRL of old, today, the broker refuses bench-1: %v\n%s", err, out)
			}
			if code, _, err := fetch(tls1, 0); err != nil || code != 200 {
				t.Errorf("with the CRL of old, today, nginx gives bench-1 %d %v; want 200", code, err)
			}
		}
		t.Run("today", today)

		// The day after it ended both refuse bench-1, as OpenSSL says.
		t.Run("a year and a day on", func(t *testing.T) {
			offset, ahead := days(366)
			broker := runMosquitto(t, w, mconf, offset)
			runNginx(t, w, nconf, offset)
			// The broker refuses bench-1's certificate once the client's
			// TLS 1.3 handshake is over: mosquitto_pub says so as a lost
			// connection (exit 7, as seen on a real gateway) or, when it
			// reads the alert first, as a protocol error (exit 1).
			out, err := pub(t, bench1, offset)
			var exit *exec.ExitError
			if !errors.As(err, &exit) || (exit.ExitCode() != 7 && exit.ExitCode() != 1) {
				t.Errorf("with the CRL of old, a year and a day on, mosquitto_pub as bench-1: %v, want exit 7 or 1 (the broker drops the connection)\n%s", err, out)
			}
			if !logged(broker, "certificate verify failed") {
				t.Errorf("the broker did not refuse bench-1's certificate:\n%s", broker.Output())
			}
			if code, body, err := fetch(tls1, ahead); err != nil || code != 400 || !strings.Contains(body, "The SSL certificate error") {
				t.Errorf("with the CRL of old, a year and a day on, nginx gives bench-1 %d %v; want 400, The SSL certificate error\n%s", code, err, body)
			}
			crlFile := filepath.Join(t.TempDir(), "crl.pem")
			os.WriteFile(crlFile, oldCRL, 0o644)
			at := fmt.Sprint(time.Now().Add(ahead).Unix())
			if out, err := testenv.Run("openssl", "verify", "-attime", at, "-crl_check", "-CRLfile", crlFile, "-CAfile", ca, b1crt); err == nil || !strings.Contains(out, "CRL has expired") {
				t.Errorf("openssl verify with the CRL of old, a year and a day on: %v, want \"CRL has expired\"\n%s", err, out)
			}
		})
	})

	t.Run("control: a two-year server certificate of old", func(t *testing.T) {
		cacert, err := pki.LoadCA(w.stateFile(t, "pki/ca.crt"), w.stateFile(t, "pki/ca.key"))
		if err != nil {
			t.Fatal(err)
		}
		var req pki.Request
		for _, r := range w.g.Wants.Certs {
			if r.Name == "mosquitto" {
				req = r
			}
		}
		req.Until = issued.Add(730 * 24 * time.Hour)
		crt, key, _, err := cacert.Issue(req, issued)
		if err != nil {
			t.Fatal(err)
		}
		crtPath, keyPath := w.path("/etc/mosquitto/certs/server.crt"), w.path("/etc/mosquitto/certs/server.key")
		keep, _ := os.ReadFile(crtPath)
		keepKey, _ := os.ReadFile(keyPath)
		os.WriteFile(crtPath, crt, 0o644)
		os.WriteFile(keyPath, key, 0o600)
		defer func() {
			os.WriteFile(crtPath, keep, 0o644)
			os.WriteFile(keyPath, keepKey, 0o600)
		}()
		for _, c := range []struct {
			days int
			ok   bool
		}{{729, true}, {731, false}} {
			offset, _ := days(c.days)
			broker := runMosquitto(t, w, mconf, offset)
			out, err := pub(t, bench1, offset)
			if c.ok && err != nil {
				t.Errorf("%s days on, bench-1 refuses the two-year server certificate of old before its end: %v\n%s", offset, err, out)
			}
			if !c.ok && (err == nil || !strings.Contains(out, "A TLS error occurred")) {
				t.Errorf("%s days on, bench-1 did not refuse the two-year server certificate of old, ended the day before: %v\n%s", offset, err, out)
			}
			// OpenSSL's client on the same clock says why.
			sc := faked(t, offset, "openssl", "s_client", "-connect", fmt.Sprintf("127.0.0.1:%d", mqtt), "-servername", "localhost", "-CAfile", ca, "-cert", b1crt, "-key", b1key, "-verify_return_error", "-brief")
			cmd := exec.Command(sc[0], sc[1:]...)
			cmd.Stdin = strings.NewReader("")
			so, err := cmd.CombinedOutput()
			if expired := strings.Contains(string(so), "certificate has expired"); expired == c.ok {
				t.Errorf("%s days on, openssl s_client on the broker: %v, expired %v; want %v\n%s", offset, err, expired, !c.ok, so)
			}
			broker.Stop()
		}
	})
}

// faked runs a command with its clock offset ahead by libfaketime (such
// as "+366d"), or as it is when offset is empty. The library is
// preloaded through env rather than the faketime wrapper, which keeps a
// named semaphore per process and refuses to start when a stopped
// server's is left behind.
func faked(t testing.TB, offset string, cmd ...string) []string {
	t.Helper()
	if offset == "" {
		return cmd
	}
	libs, _ := filepath.Glob("/usr/lib/*/faketime/libfaketime.so.1")
	if len(libs) == 0 {
		t.Fatalf("libfaketime is needed by this test and is not installed; run scripts/deps (as root) to install it")
	}
	return append([]string{"env", "LD_PRELOAD=" + libs[0], "FAKETIME=" + offset}, cmd...)
}

// logged waits a little for a line in a server's log: the broker writes
// why it dropped a client after the client has seen it drop.
func logged(p *testenv.Proc, what string) bool {
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if strings.Contains(p.Output(), what) {
			return true
		}
	}
	return false
}

// oneYearCRL is the CRL as appliance used to sign it, for a year: the
// site's CA and revocations, issued when the state was.
func oneYearCRL(t *testing.T, w *gw, issued time.Time) []byte {
	t.Helper()
	ca, err := pki.LoadCA(w.stateFile(t, "pki/ca.crt"), w.stateFile(t, "pki/ca.key"))
	if err != nil {
		t.Fatal(err)
	}
	certs, err := w.st.Certificates()
	if err != nil {
		t.Fatal(err)
	}
	var revoked []pki.Revoked
	for _, c := range certs {
		if c.Status == state.StatusRevoked {
			n, _ := new(big.Int).SetString(c.Serial, 16)
			revoked = append(revoked, pki.Revoked{Serial: n, At: c.RevokedAt, Reason: pki.Reasons[c.Reason]})
		}
	}
	if len(revoked) != 1 {
		t.Fatalf("%d revoked certificates; want bench-2's", len(revoked))
	}
	crl, err := ca.CRL(revoked, 99, issued, issued.Add(365*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	return crl
}

// restoreCRL puts the state's CRL back where the servers read it.
func restoreCRL(t *testing.T, w *gw) {
	crl := w.stateFile(t, "pki/crl.pem")
	for _, p := range []string{"/etc/mosquitto/certs/crl.pem", "/etc/nginx/appliance/crl.pem"} {
		os.WriteFile(w.path(p), crl, 0o644)
	}
}
