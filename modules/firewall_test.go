package modules_test

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/appliance/appliance/internal/testenv"
)

// The firewall test re-runs this test binary inside network namespaces,
// as a listener on the gateway's side or as a client dialling it.
func TestMain(m *testing.M) {
	if ports := os.Getenv("APPLIANCE_TEST_LISTEN"); ports != "" {
		listen(ports)
		return
	}
	if addrs := os.Getenv("APPLIANCE_TEST_DIAL"); addrs != "" {
		dialAll(strings.Split(addrs, ","))
		return
	}
	os.Exit(m.Run())
}

// dialAll tries every address at once and prints, in order, 1 for each
// that accepted a connection and 0 for each that did not.
func dialAll(addrs []string) {
	res := make([]byte, len(addrs))
	done := make(chan struct{})
	for i, a := range addrs {
		go func() {
			res[i] = '0'
			if c, err := net.DialTimeout("tcp", a, 700*time.Millisecond); err == nil {
				res[i] = '1'
				c.Close()
			}
			done <- struct{}{}
		}()
	}
	for range addrs {
		<-done
	}
	fmt.Print(string(res))
}

// listen accepts and closes connections on every port, on every address.
func listen(ports string) {
	for _, p := range strings.Split(ports, ",") {
		l, err := net.Listen("tcp", ":"+p)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
	}
	fmt.Println("listening")
	select {}
}

// netns makes a network namespace for the test.
func netns(t *testing.T, name string) string {
	t.Helper()
	if out, err := testenv.Run("ip", "netns", "add", name); err != nil {
		t.Fatalf("network namespaces are needed for the firewall test (as root): %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	testenv.Run("ip", "-n", name, "link", "set", "lo", "up")
	return name
}

func must(t *testing.T, args ...string) {
	t.Helper()
	if out, err := testenv.Run(args[0], args[1:]...); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
}

// TestFirewall loads the generated ruleset into a gateway namespace whose
// every port has a listener, and connects from two client namespaces on
// different networks: exactly the declared ports open, each only to the
// networks the spec names, for IPv4 and IPv6, SSH rate limited.
func TestFirewall(t *testing.T) {
	testenv.Require(t, "nft", "ip")
	w := newGW(t, siteHCL(`
firewall {
  ssh_from   = ["10.99.0.0/24", "fd99::/64"]
  mqtt_from  = ["10.99.0.0/24", "10.99.1.0/24", "fd99::/64", "fd99:1::/64"]
  https_from = ["10.99.1.0/24", "fd99:1::/64"]
}
`))
	ruleset := w.path("/etc/nftables.conf")
	if out, err := testenv.Run("nft", "-c", "-f", ruleset); err != nil {
		t.Fatalf("nft -c refuses the ruleset: %v\n%s", err, out)
	}

	id := strconv.Itoa(rand.IntN(1e6))
	gwNS, aNS, bNS := netns(t, "apgw"+id), netns(t, "apa"+id), netns(t, "apb"+id)
	for i, c := range []struct{ ns, v4, v6, gw4, gw6 string }{
		{aNS, "10.99.0.2/24", "fd99::2/64", "10.99.0.1/24", "fd99::1/64"},
		{bNS, "10.99.1.2/24", "fd99:1::2/64", "10.99.1.1/24", "fd99:1::1/64"},
	} {
		out, in := fmt.Sprintf("v%d%s", i, id), fmt.Sprintf("g%d%s", i, id)
		must(t, "ip", "link", "add", out, "type", "veth", "peer", "name", in)
		must(t, "ip", "link", "set", out, "netns", c.ns)
		must(t, "ip", "link", "set", in, "netns", gwNS)
		must(t, "ip", "-n", c.ns, "addr", "add", c.v4, "dev", out)
		must(t, "ip", "-n", c.ns, "addr", "add", c.v6, "dev", out, "nodad")
		must(t, "ip", "-n", gwNS, "addr", "add", c.gw4, "dev", in)
		must(t, "ip", "-n", gwNS, "addr", "add", c.gw6, "dev", in, "nodad")
		must(t, "ip", "-n", c.ns, "link", "set", out, "up")
		must(t, "ip", "-n", gwNS, "link", "set", in, "up")
	}
	must(t, "ip", "netns", "exec", gwNS, "nft", "-f", ruleset)

	// Listeners on every service port and one no module asked for.
	s := w.site
	ports := []int{s.SSH.Port, s.MQTT.Port, s.HTTPS.Port, s.HTTPS.RedirectPort, s.InfluxDB.Port, s.Ingest.MetricsPort, 12345}
	var list []string
	for _, p := range ports {
		list = append(list, strconv.Itoa(p))
	}
	self, _ := os.Executable()
	l := exec.Command("ip", "netns", "exec", gwNS, self)
	l.Env = append(os.Environ(), "APPLIANCE_TEST_LISTEN="+strings.Join(list, ","))
	stdout, _ := l.StdoutPipe()
	if err := l.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Process.Kill(); l.Wait() })
	buf := make([]byte, 16)
	if n, _ := stdout.Read(buf); !strings.HasPrefix(string(buf[:n]), "listening") {
		t.Fatalf("listener did not start")
	}

	// dial connects from ns to each address at once; true where it got in.
	dial := func(ns string, addrs []string) []bool {
		c := exec.Command("ip", "netns", "exec", ns, self)
		c.Env = append(os.Environ(), "APPLIANCE_TEST_DIAL="+strings.Join(addrs, ","))
		out, err := c.Output()
		if err != nil || len(out) != len(addrs) {
			t.Fatalf("dialling from %s: %v %q", ns, err, out)
		}
		got := make([]bool, len(addrs))
		for i := range out {
			got[i] = out[i] == '1'
		}
		return got
	}
	open := map[string]map[int]bool{
		aNS: {s.SSH.Port: true, s.MQTT.Port: true},
		bNS: {s.MQTT.Port: true, s.HTTPS.Port: true, s.HTTPS.RedirectPort: true},
	}
	targets := map[string][]string{aNS: {"10.99.0.1", "fd99::1"}, bNS: {"10.99.1.1", "fd99:1::1"}}
	for _, ns := range []string{aNS, bNS} {
		var addrs []string
		for _, host := range targets[ns] {
			for _, p := range ports {
				addrs = append(addrs, net.JoinHostPort(host, strconv.Itoa(p)))
			}
		}
		for i, got := range dial(ns, addrs) {
			p := ports[i%len(ports)]
			if want := open[ns][p]; got != want {
				t.Errorf("from %s to %s: connected %v; want %v", ns, addrs[i], got, want)
			}
		}
	}

	// SSH: a burst of new connections from one address is cut off.
	refused := 0
	burst := make([]string, 12)
	for i := range burst {
		burst[i] = net.JoinHostPort("10.99.0.1", strconv.Itoa(s.SSH.Port))
	}
	for _, ok := range dial(aNS, burst) {
		if !ok {
			refused++
		}
	}
	if refused == 0 {
		t.Errorf("12 quick SSH connections from one address all passed; the rate limit does not work")
	}
	t.Logf("SSH connections cut off by the rate limit: %d of 12", refused)
}
