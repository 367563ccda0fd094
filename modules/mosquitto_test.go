package modules_test

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/appliance/appliance/internal/testenv"
)

// startMosquitto runs Debian's mosquitto with the generated config,
// moved under the test's root.
func startMosquitto(t *testing.T, w *gw) *testenv.Proc {
	t.Helper()
	return runMosquitto(t, w, moveMosquitto(t, w), "")
}

// moveMosquitto moves the generated config's paths under the test's
// root, once, and returns the config's path.
func moveMosquitto(t *testing.T, w *gw) string {
	t.Helper()
	conf := w.path("/etc/mosquitto/mosquitto.conf")
	testenv.Rewrite(t, conf,
		"/etc/mosquitto/", w.path("/etc/mosquitto")+"/",
		"/var/lib/mosquitto/", w.path("/var/lib/mosquitto")+"/",
		// The test runs as root and its files are root's: keep root
		// rather than drop to the mosquitto user, as the gateway does.
		"user mosquitto", "user root")
	return conf
}

// runMosquitto starts the broker on a moved config; with a libfaketime
// offset (such as "+366d") its clock runs that far ahead.
func runMosquitto(t *testing.T, w *gw, conf, offset string) *testenv.Proc {
	t.Helper()
	c := faked(t, offset, "mosquitto", "-c", conf)
	p := testenv.Start(t, c[0], c[1:]...)
	p.WaitPort(t, fmt.Sprintf("127.0.0.1:%d", w.site.MQTT.Port), 10*time.Second)
	return p
}

type mqttClient struct {
	ca, crt, key string
}

func (c mqttClient) args(port int) []string {
	a := []string{"-h", "localhost", "-p", fmt.Sprint(port), "-V", "mqttv5", "--cafile", c.ca}
	if c.crt != "" {
		a = append(a, "--cert", c.crt, "--key", c.key)
	}
	return a
}

func (c mqttClient) pub(port int, topic, msg string) (string, error) {
	out, err := exec.Command("mosquitto_pub", append(c.args(port), "-q", "1", "-t", topic, "-m", msg)...).CombinedOutput()
	return string(out), err
}

// TestMosquitto runs the broker with the generated config and
// certificates: node certificates connect and publish to their own
// topics only; no certificate, another CA's, an expired and a revoked one
// are refused; the ingest identity reads what nodes publish and nothing
// they were not allowed to.
func TestMosquitto(t *testing.T) {
	testenv.Require(t, "mosquitto", "mosquitto_pub", "mosquitto_sub")
	port, local := testenv.FreePort(t), testenv.FreePort(t)
	w := newGW(t, siteHCL(fmt.Sprintf("mqtt {\n  port = %d\n  local_plain_port = %d\n}\n", port, local)))
	broker := startMosquitto(t, w)
	ca := w.caFile(t)
	b1crt, b1key := w.certFiles(t, "bench-1")
	icrt, ikey := w.certFiles(t, "ingest")
	bench1 := mqttClient{ca, b1crt, b1key}
	ingest := mqttClient{ca, icrt, ikey}

	// The ingest identity subscribes to every reading.
	sub := exec.Command("mosquitto_sub", append(ingest.args(port), "-q", "1", "-t", "sensors/#", "-v", "-C", "2", "-W", "20")...)
	subOut := &strings.Builder{}
	sub.Stdout, sub.Stderr = subOut, subOut
	if err := sub.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // let the subscription reach the broker

	// bench-1 tries to publish as bench-2 first; that must never arrive.
	bench1.pub(port, "sensors/bench-2/reading", "forged")
	for _, m := range []string{"one", "two"} {
		if out, err := bench1.pub(port, "sensors/bench-1/reading", m); err != nil {
			t.Fatalf("bench-1 could not publish: %v\n%s", err, out)
		}
	}
	if err := sub.Wait(); err != nil {
		t.Fatalf("ingest subscriber: %v\n%s", err, subOut)
	}
	if got := subOut.String(); got != "sensors/bench-1/reading one\nsensors/bench-1/reading two\n" {
		t.Errorf("ingest received %q; want bench-1's two readings and nothing forged", got)
	}

	// A node may not read other nodes' readings.
	out, _ := exec.Command("mosquitto_sub", append(bench1.args(port), "-t", "sensors/#", "-C", "1", "-W", "3")...).CombinedOutput()
	go bench1.pub(port, "sensors/bench-1/reading", "three")
	if strings.Contains(string(out), "three") {
		t.Errorf("bench-1 read sensors/#: %s", out)
	}

	foreignCrt, foreignKey, expiredCrt, expiredKey := w.badCerts(t)
	for name, c := range map[string]mqttClient{
		"no certificate": {ca, "", ""},
		"another CA's":   {ca, foreignCrt, foreignKey},
		"an expired one": {ca, expiredCrt, expiredKey},
	} {
		if out, err := c.pub(port, "sensors/bench-1/reading", "x"); err == nil {
			t.Errorf("a client with %s could publish:\n%s", name, out)
		}
	}

	// Loopback listener: anonymous may read, never write.
	anonArgs := []string{"-h", "127.0.0.1", "-p", fmt.Sprint(local), "-V", "mqttv5"}
	anonSub := exec.Command("mosquitto_sub", append(anonArgs, "-t", "sensors/#", "-v", "-C", "1", "-W", "10")...)
	anonOut := &strings.Builder{}
	anonSub.Stdout = anonOut
	anonSub.Start()
	time.Sleep(300 * time.Millisecond)
	exec.Command("mosquitto_pub", append(anonArgs, "-q", "1", "-t", "sensors/bench-2/reading", "-m", "anon")...).Run()
	bench1.pub(port, "sensors/bench-1/reading", "four")
	anonSub.Wait()
	if got := anonOut.String(); got != "sensors/bench-1/reading four\n" {
		t.Errorf("anonymous loopback reader got %q; want only bench-1's reading", got)
	}

	// Revoke bench-1; after a restart (the CRL is read at start) it is
	// refused and bench-2 still works.
	if _, err := w.st.Revoke("bench-1", "keyCompromise", w.g.Wants); err != nil {
		t.Fatal(err)
	}
	w.rewrite(t)
	broker.Stop()
	startMosquitto(t, w)
	if out, err := bench1.pub(port, "sensors/bench-1/reading", "revoked"); err == nil {
		t.Errorf("a revoked certificate could publish:\n%s", out)
	}
	b2crt, b2key := w.certFiles(t, "bench-2")
	if out, err := (mqttClient{ca, b2crt, b2key}).pub(port, "sensors/bench-2/reading", "ok"); err != nil {
		t.Errorf("bench-2 refused after bench-1 was revoked: %v\n%s", err, out)
	}
}
