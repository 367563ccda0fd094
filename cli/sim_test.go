package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/appliance/appliance/firmware/sim"
	"github.com/appliance/appliance/internal/testenv"
)

// TestSimCommand runs appliance sim in-process against the site's own
// mosquitto and nginx: every reading acknowledged (--json), the boot
// counters kept in OUT/sim; until interrupted (Ctrl-C), then the
// summary; the OTA check alone (--duration 0 --ota); a
// revoked node refused and counted, the command failing with the reason;
// no secret in any output.
func TestSimCommand(t *testing.T) {
	testenv.Require(t, "mosquitto", "nginx")
	s := nodeSite(t, false)
	secret := secrets(t, s)
	broker := s.StartMosquitto(t)
	s.StartNginx(t)
	brokerAddr := fmt.Sprintf("127.0.0.1:%d", s.Spec.MQTT.Port)

	code, out, errs := run(t, nil, "sim", "--broker", brokerAddr, "--rate", "5", "--duration", "1s", "--json", s.Out)
	if code != 0 {
		t.Fatalf("sim: exit %d\n%s%s", code, out, errs)
	}
	var sum struct {
		Readings sim.Result       `json:"readings"`
		OTA      []*sim.OTAResult `json:"ota"`
	}
	if err := json.Unmarshal([]byte(out), &sum); err != nil {
		t.Fatalf("sim --json: %v\n%s", err, out)
	}
	tot := sum.Readings.Total
	if len(sum.Readings.Nodes) != 2 || tot.Readings < 8 || tot.Acked != tot.Readings || tot.Refused != 0 || sum.OTA != nil {
		t.Errorf("sim --json: %+v", sum)
	}
	if !strings.Contains(errs, "appliance sim: 2 nodes, broker "+brokerAddr+" (its certificate checked for testgw.local), 5 readings per second each, for 1s") {
		t.Errorf("sim's stderr: %s", errs)
	}
	var boots struct{ Boots map[string]uint32 }
	b, _ := os.ReadFile(filepath.Join(s.Out, "sim", sim.BootsFile))
	if json.Unmarshal(b, &boots); boots.Boots["bench-1"] != sum.Readings.Nodes[0].Boot {
		t.Errorf("boots.json %s; bench-1 ran boot %d", b, sum.Readings.Nodes[0].Boot)
	}
	outputs := []string{out, errs}

	// Without --duration it runs until interrupted, then prints the
	// summary and ends without error.
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(1500*time.Millisecond, cancel)
	var ob, eb bytes.Buffer
	start := time.Now()
	code = Main(ctx, []string{"sim", "--broker", brokerAddr, "--rate", "5", s.Out, "bench-1"}, Env{Stdout: &ob, Stderr: &eb, Environ: []string{"HOME=/nonexistent"}})
	if code != 0 || time.Since(start) > 10*time.Second || !strings.Contains(ob.String(), "\nbench-1 ") || !strings.Contains(ob.String(), "\ntotal ") || !strings.Contains(eb.String(), "Ctrl-C stops") {
		t.Errorf("interrupted sim: exit %d after %s\n%s%s", code, time.Since(start), ob.String(), eb.String())
	}
	outputs = append(outputs, ob.String(), eb.String())

	code, out, errs = run(t, nil, "sim", "--ota", "--duration", "0", "--https", fmt.Sprintf("127.0.0.1:%d", s.Spec.HTTPS.Port), s.Out, "bench-2")
	if code != 0 || !strings.Contains(out, "bench-2: up to date: the gateway serves sensor 1.0.0 (manifest 1)") || strings.Contains(out, "NODE") {
		t.Errorf("sim --ota: exit %d\n%s%s", code, out, errs)
	}
	outputs = append(outputs, out, errs)

	if _, err := s.State.Revoke("bench-2", "keyCompromise", s.Gateway.Wants); err != nil {
		t.Fatal(err)
	}
	s.Rewrite(t)
	broker.Stop()
	s.StartMosquitto(t)
	code, out, errs = run(t, nil, "sim", "--broker", brokerAddr, "--rate", "5", "--duration", "1s", "--drain", "1s", s.Out)
	if code != 1 {
		t.Errorf("sim with a revoked node: exit %d, want 1", code)
	}
	for _, w := range []string{"appliance sim: bench-2: refused: the broker refused the TLS handshake: tls: revoked certificate", "appliance sim: the gateway refused 1 node"} {
		if !strings.Contains(errs, w) {
			t.Errorf("stderr lacks %q:\n%s", w, errs)
		}
	}
	lines := strings.Split(out, "\n")
	if len(lines) < 4 || !strings.HasPrefix(lines[0], "NODE") || !strings.HasPrefix(lines[1], "bench-1 ") || !strings.Contains(lines[1], " ok") ||
		!strings.HasPrefix(lines[2], "bench-2 ") || !strings.Contains(lines[2], "refused") || !strings.HasPrefix(lines[3], "total ") {
		t.Errorf("summary:\n%s", out)
	}
	outputs = append(outputs, out, errs)

	code, _, errs = run(t, nil, "sim", "--broker", fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)), "--duration", "1s", "--drain", "1s", "--rate", "5", s.Out, "bench-1")
	if code != 1 || !strings.Contains(errs, "the broker acknowledged no reading; is the broker at") {
		t.Errorf("sim without a broker: exit %d\n%s", code, errs)
	}
	noSecrets(t, secret, "sim", append(outputs, errs)...)
}

func TestSimUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"sim"}, "missing OUT"},
		{[]string{"sim", "--duration", "0", "out"}, "add --ota"},
		{[]string{"sim", "--nodes", "2", "out", "bench-1"}, "not both"},
	} {
		code, _, errs := run(t, nil, tc.args...)
		if code != 1 || !strings.Contains(errs, tc.want) {
			t.Errorf("%q: exit %d: %s", tc.args, code, errs)
		}
	}
	code, _, errs := run(t, nil, "sim", t.TempDir())
	if code != 1 || !strings.Contains(errs, "has no build-info.json") {
		t.Errorf("sim of an empty folder: exit %d: %s", code, errs)
	}
}
