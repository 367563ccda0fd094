package sim_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/appliance/appliance/firmware/espimage"
	"github.com/appliance/appliance/firmware/sim"
	"github.com/appliance/appliance/firmware/sim/simtest"
	"github.com/appliance/appliance/ingest/wire"
	"github.com/appliance/appliance/pki"
)

// siteHCL is a site like the demo: DHT11 bench nodes and a DHT22 one,
// on ports of the test's own, the firmware at version and with an image
// at build/sensor.bin unless noApp.
func siteHCL(mqtt, https, redirect int, version string, noApp bool) string {
	image := `image = "build/sensor.bin"`
	if noApp {
		image = ""
	}
	return fmt.Sprintf(`
site "t" {}
gateway "gw" {
  board    = "qemu-arm64"
  hostname = "testgw"
}
mqtt {
  port = %d
}
https {
  port          = %d
  redirect_port = %d
}
firmware "sensor" {
  chip           = "esp32s3"
  version        = "%s"
  secure_version = 1
  %s
}
node "bench" {
  count    = 3
  firmware = firmware.sensor
  sensor   = { type = "dht11", pin = 4 }
  interval = "1s"
  wifi     = { ssid = "demo-sensors", psk = "a secret passphrase" }
  tags     = { room = "lab" }
}
node "cold" {
  firmware = firmware.sensor
  sensor   = { type = "dht22", pin = 5 }
  interval = "2s"
  wifi     = { ssid = "demo-sensors", psk = "a secret passphrase" }
}
`, mqtt, https, redirect, version, image)
}

// app is the firmware's image at version, as idf.py build leaves it.
func app(version string) simtest.AppFile {
	return simtest.AppFile{Path: "build/sensor.bin", Chip: espimage.ESP32S3, Version: version, SecureVersion: 1, Bootloader: true}
}

func newSite(t *testing.T) *simtest.Site {
	t.Helper()
	s := simtest.New(t, siteHCL(simtest.FreePort(t), simtest.FreePort(t), simtest.FreePort(t), "1.0.0", false), app("1.0.0"))
	s.Build(t)
	return s
}

// subscriber is mosquitto_sub reading every node's readings at QoS 1 with
// the ingest service's certificate, in a persistent session that outlives
// a broker restart.
type subscriber struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	msgs map[string][][]byte // by topic
	n    int
}

func subscribe(t *testing.T, s *simtest.Site) *subscriber {
	t.Helper()
	simtest.Need(t, "mosquitto_sub")
	dir := t.TempDir()
	files := map[string]string{"ca.crt": "pki/ca.crt", "ingest.crt": "pki/issued/ingest.crt", "ingest.key": "pki/issued/ingest.key"}
	for f, rel := range files {
		os.WriteFile(filepath.Join(dir, f), s.StateFile(t, rel), 0o600)
	}
	sub := &subscriber{msgs: map[string][][]byte{}}
	sub.cmd = exec.Command("mosquitto_sub", "-V", "mqttv5", "-h", "localhost", "-p", fmt.Sprint(s.Spec.MQTT.Port),
		"--cafile", filepath.Join(dir, "ca.crt"), "--cert", filepath.Join(dir, "ingest.crt"), "--key", filepath.Join(dir, "ingest.key"),
		"-q", "1", "-c", "-i", "test-ingest", "-x", "600", "-v", "-t", wire.TopicFilter)
	out, err := sub.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	sub.cmd.Stderr = &stderr
	if err := sub.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sub.cmd.Process.Kill()
		sub.cmd.Wait()
		if t.Failed() {
			t.Logf("mosquitto_sub said: %s", stderr.String())
		}
	})
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			topic, payload, _ := strings.Cut(sc.Text(), " ")
			sub.mu.Lock()
			sub.msgs[topic] = append(sub.msgs[topic], []byte(payload))
			sub.n++
			sub.mu.Unlock()
		}
	}()
	time.Sleep(700 * time.Millisecond) // the subscription reaches the broker
	return sub
}

// wait waits until n messages arrived.
func (s *subscriber) wait(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		s.mu.Lock()
		got := s.n
		s.mu.Unlock()
		if got >= n {
			time.Sleep(300 * time.Millisecond) // and no more than that
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("mosquitto_sub received %d of %d readings", s.n, n)
}

// decoded are the readings of one node that mosquitto_sub received,
// decoded by ingest's own decoder: each must be a reading ingest takes.
func (s *subscriber) decoded(t *testing.T, node, sensor string) []wire.Reading {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	topic := wire.TopicPrefix + node + wire.TopicSuffix
	var out []wire.Reading
	for _, p := range s.msgs[topic] {
		r, werr := wire.Decode(wire.NodeFromTopic(topic), wire.Sensors[sensor], p, time.Now())
		if werr != nil {
			t.Errorf("%s: ingest refuses %s: %v", node, p, werr)
			continue
		}
		out = append(out, r)
	}
	return out
}

func run(t *testing.T, s *simtest.Site, names []string, o sim.Options) (*sim.Result, map[string]uint32) {
	t.Helper()
	nodes, err := sim.Load(s.Out, names)
	if err != nil {
		t.Fatal(err)
	}
	b, err := sim.OpenBoots(filepath.Join(s.Out, "sim"))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	var ns []string
	for _, n := range nodes {
		ns = append(ns, n.Name)
	}
	boots, err := b.Next(ns)
	if err != nil {
		t.Fatal(err)
	}
	if o.Broker == "" {
		o.Broker = fmt.Sprintf("127.0.0.1:%d", s.Spec.MQTT.Port)
	}
	res, err := sim.Run(context.Background(), nodes, boots, o)
	if err != nil {
		t.Fatal(err)
	}
	return res, boots
}

// checkOnce asserts that a node's readings are those of one boot with
// seq 0 … n-1, each exactly once (or at least once when dups are
// allowed), carrying the firmware's version.
func checkOnce(t *testing.T, node string, rs []wire.Reading, boot uint32, n int, dups bool) {
	t.Helper()
	seen := map[uint32]int{}
	for _, r := range rs {
		if r.Boot != boot {
			t.Errorf("%s: boot %d, want %d", node, r.Boot, boot)
		}
		if r.Firmware != "1.0.0" {
			t.Errorf("%s: fw %q, want the app's version 1.0.0", node, r.Firmware)
		}
		if !r.DeviceTime || time.Since(r.Time) > time.Minute {
			t.Errorf("%s: time %v (from the device: %v), want the node's clock", node, r.Time, r.DeviceTime)
		}
		seen[r.Seq]++
	}
	for seq := range uint32(n) {
		switch c := seen[seq]; {
		case c == 0:
			t.Errorf("%s: seq %d never arrived", node, seq)
		case c > 1 && !dups:
			t.Errorf("%s: seq %d arrived %d times", node, seq, c)
		}
	}
	if len(seen) != n {
		t.Errorf("%s: %d distinct readings arrived, the node acknowledged %d", node, len(seen), n)
	}
}

// TestSimPublishes runs the nodes of a demo-like site through the
// gateway's own mosquitto (generated config, certificates, ACL) and
// checks what arrives with ingest's decoder: every reading the broker
// acknowledged arrived once, in the wire format, with the node's boot,
// seq 0, 1, 2, …, its firmware's version and plausible values for its
// sensor; a second run counts the next boot.
func TestSimPublishes(t *testing.T) {
	s := newSite(t)
	s.StartMosquitto(t)
	sub := subscribe(t, s)
	res, boots := run(t, s, nil, sim.Options{Rate: 5, Duration: 2 * time.Second, Drain: 5 * time.Second})
	if len(res.Nodes) != 4 {
		t.Fatalf("%d nodes ran, want 4", len(res.Nodes))
	}
	tot := res.Total
	if tot.Readings < 4*8 || tot.Acked != tot.Readings || tot.Sent != tot.Readings || tot.Refused != 0 || tot.Pending != 0 || tot.Dropped != 0 || tot.Errors != 0 {
		t.Errorf("total %+v; want every reading sent and acknowledged once", tot)
	}
	sub.wait(t, tot.Acked)
	sensors := map[string]string{"bench-1": "dht11", "bench-2": "dht11", "bench-3": "dht11", "cold": "dht22"}
	for _, st := range res.Nodes {
		rs := sub.decoded(t, st.Node, sensors[st.Node])
		checkOnce(t, st.Node, rs, boots[st.Node], st.Acked, false)
		if st.Connections != 1 || st.Boot != boots[st.Node] {
			t.Errorf("%s: %+v", st.Node, st)
		}
		for _, r := range rs {
			if sensors[st.Node] == "dht11" && r.Humidity != float64(int(r.Humidity)) {
				t.Errorf("%s: a DHT11 reports whole percent, not %v", st.Node, r.Humidity)
			}
			if r.Temperature < 0 || r.Temperature > 50 || r.Humidity < 5 || r.Humidity > 95 {
				t.Errorf("%s: implausible %v °C %v %%", st.Node, r.Temperature, r.Humidity)
			}
		}
	}
	// The next start is the next boot.
	_, again := run(t, s, []string{"cold"}, sim.Options{Rate: 5, Duration: 500 * time.Millisecond})
	if again["cold"] != boots["cold"]+1 {
		t.Errorf("second start's boot %d, want %d", again["cold"], boots["cold"]+1)
	}
}

// TestSimRevoked revokes a node's certificate (state Revoke, the CRL
// rewritten, the broker restarted to read it): the broker refuses its
// TLS handshake, which the sim counts as refused with the reason, while
// the others go on.
func TestSimRevoked(t *testing.T) {
	s := newSite(t)
	if _, err := s.State.Revoke("bench-2", "keyCompromise", s.Gateway.Wants); err != nil {
		t.Fatal(err)
	}
	s.Rewrite(t)
	s.StartMosquitto(t)
	var mu sync.Mutex
	var events []string
	res, _ := run(t, s, []string{"bench-1", "bench-2"}, sim.Options{Rate: 5, Duration: 2 * time.Second, Drain: 3 * time.Second,
		Event: func(node, what string) { mu.Lock(); events = append(events, node+": "+what); mu.Unlock() }})
	b1, b2 := res.Nodes[0], res.Nodes[1]
	if b1.Acked == 0 || b1.Acked != b1.Readings || b1.Refused != 0 {
		t.Errorf("bench-1: %+v", b1)
	}
	if b2.Acked != 0 || b2.Refused == 0 || b2.RefusedConnections != b2.Refused || b2.Connections != 0 || b2.Pending != b2.Readings {
		t.Errorf("bench-2 (revoked): %+v; want every connection refused and nothing acknowledged", b2)
	}
	if !strings.Contains(b2.Reason, "refused the TLS handshake") || !strings.Contains(b2.Reason, "revoked") {
		t.Errorf("bench-2's reason %q; want the TLS handshake refused for a revoked certificate", b2.Reason)
	}
	if res.Total.Refused != b2.Refused {
		t.Errorf("total refused %d, want bench-2's %d", res.Total.Refused, b2.Refused)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(events) != 1 || !strings.HasPrefix(events[0], "bench-2: refused: ") {
		t.Errorf("events %q; want one, bench-2's refusal", events)
	}
}

// TestSimResends stops the broker while nodes publish and starts it
// again: the nodes reconnect and send what it had not acknowledged,
// with the same boot and seq, so every reading arrives, none lost.
func TestSimResends(t *testing.T) {
	s := newSite(t)
	broker := s.StartMosquitto(t)
	sub := subscribe(t, s)
	done := make(chan struct{})
	go func() {
		defer close(done)
		time.Sleep(1500 * time.Millisecond)
		broker.Stop()
		time.Sleep(1500 * time.Millisecond)
		s.StartMosquitto(t)
	}()
	res, boots := run(t, s, []string{"bench-1", "cold"}, sim.Options{Rate: 10, Duration: 5 * time.Second, Drain: 30 * time.Second})
	<-done
	t.Logf("total %+v in %.1fs", res.Total, res.Seconds)
	for _, st := range res.Nodes {
		if st.Acked != st.Readings || st.Pending != 0 || st.Dropped != 0 || st.Connections < 2 || st.Errors == 0 {
			t.Errorf("%s: %+v; want every reading acknowledged over two connections or more", st.Node, st)
		}
	}
	sub.wait(t, res.Total.Acked)
	checkOnce(t, "bench-1", sub.decoded(t, "bench-1", "dht11"), boots["bench-1"], res.Nodes[0].Acked, true)
	checkOnce(t, "cold", sub.decoded(t, "cold", "dht22"), boots["cold"], res.Nodes[1].Acked, true)
}

// TestSimQueueBound: with the broker gone the queue keeps the newest
// readings up to its bound and counts the dropped ones.
func TestSimQueueBound(t *testing.T) {
	s := newSite(t)
	res, _ := run(t, s, []string{"bench-1"}, sim.Options{Rate: 20, Duration: time.Second, Queue: 5})
	st := res.Nodes[0]
	if st.Pending != 5 || st.Dropped != st.Readings-5 || st.Sent != 0 || st.Errors == 0 {
		t.Errorf("%+v; want 5 pending, the rest dropped, connection errors", st)
	}
	if !strings.Contains(st.Reason, "connection refused") {
		t.Errorf("reason %q", st.Reason)
	}
}

func TestBootsLocked(t *testing.T) {
	dir := t.TempDir()
	b, err := sim.OpenBoots(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := sim.OpenBoots(dir); err == nil || !strings.Contains(err.Error(), "another appliance sim") {
		t.Errorf("second OpenBoots: %v", err)
	}
	first, _ := b.Next([]string{"a"})
	second, _ := b.Next([]string{"a"})
	if second["a"] != first["a"]+1 {
		t.Errorf("boots %d then %d", first["a"], second["a"])
	}
	var rec struct{ Boots map[string]uint32 }
	data, _ := os.ReadFile(filepath.Join(dir, sim.BootsFile))
	if json.Unmarshal(data, &rec); rec.Boots["a"] != second["a"] {
		t.Errorf("recorded %s", data)
	}
}

// proxy forwards TCP to the broker; while muted it passes nothing back,
// so the broker takes readings whose PUBACKs the node never sees.
type proxy struct {
	l     net.Listener
	to    string
	mu    sync.Mutex
	mute  bool
	conns []net.Conn
}

func startProxy(t *testing.T, to string) *proxy {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{l: l, to: to}
	t.Cleanup(func() { l.Close(); p.cut() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			b, err := net.Dial("tcp", to)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, b)
			p.mu.Unlock()
			go io.Copy(b, c)
			go func() {
				buf := make([]byte, 32<<10)
				for {
					n, err := b.Read(buf)
					p.mu.Lock()
					muted := p.mute
					p.mu.Unlock()
					if n > 0 && !muted {
						c.Write(buf[:n])
					}
					if err != nil {
						c.Close()
						return
					}
				}
			}()
		}
	}()
	return p
}

func (p *proxy) setMute(m bool) { p.mu.Lock(); p.mute = m; p.mu.Unlock() }

// cut closes every connection through the proxy.
func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// TestSimResendsUnacknowledged loses the PUBACKs of readings the broker
// took, then the connection: the node sends them again after
// reconnecting, with the same boot, seq and values, so the broker sees
// them twice (ingest's duplicate table is what makes them count once)
// and no reading is missing.
func TestSimResendsUnacknowledged(t *testing.T) {
	s := newSite(t)
	s.StartMosquitto(t)
	sub := subscribe(t, s)
	p := startProxy(t, fmt.Sprintf("127.0.0.1:%d", s.Spec.MQTT.Port))
	go func() {
		time.Sleep(1200 * time.Millisecond)
		p.setMute(true)
		time.Sleep(700 * time.Millisecond)
		p.cut()
		p.setMute(false)
	}()
	res, boots := run(t, s, []string{"bench-1"}, sim.Options{Broker: p.l.Addr().String(), Rate: 10, Duration: 3 * time.Second, Drain: 20 * time.Second})
	st := res.Nodes[0]
	t.Logf("%+v in %.1fs", st, res.Seconds)
	if st.Resent == 0 || st.Acked != st.Readings || st.Pending != 0 || st.Connections < 2 {
		t.Errorf("%+v; want a reading sent again and every one acknowledged", st)
	}
	sub.wait(t, st.Acked+st.Resent)
	rs := sub.decoded(t, "bench-1", "dht11")
	checkOnce(t, "bench-1", rs, boots["bench-1"], st.Acked, true)
	bySeq := map[uint32]wire.Reading{}
	dups := 0
	for _, r := range rs {
		if prev, ok := bySeq[r.Seq]; ok {
			dups++
			if prev.Temperature != r.Temperature || prev.Humidity != r.Humidity || !prev.Time.Equal(r.Time) {
				t.Errorf("seq %d sent again with other values: %+v then %+v", r.Seq, prev, r)
			}
		}
		bySeq[r.Seq] = r
	}
	if dups == 0 {
		t.Errorf("the broker saw no reading twice; the resends did not reach it")
	}
}

// TestSimUntrustedBroker: a broker whose certificate is another CA's,
// though it names the gateway, is not the gateway; the node does not
// send it anything, and says why.
func TestSimUntrustedBroker(t *testing.T) {
	s := newSite(t)
	other, _, err := pki.NewCA("intruder", time.Now(), time.Now().AddDate(1, 0, 0))
	if err != nil {
		t.Fatal(err)
	}
	crt, key, _, err := other.Issue(pki.Request{Name: "mosquitto", Kind: pki.Server, DNSNames: []string{"testgw.local"}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	pair, _ := tls.X509KeyPair(crt, key)
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{pair}})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var got atomic.Int64
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				n, _ := io.Copy(io.Discard, c)
				got.Add(n)
			}()
		}
	}()
	res, _ := run(t, s, []string{"bench-1"}, sim.Options{Broker: l.Addr().String(), Rate: 5, Duration: time.Second})
	st := res.Nodes[0]
	if st.Connections != 0 || st.Sent != 0 || st.Refused != 0 || st.Errors == 0 || !strings.Contains(st.Reason, "the broker's certificate (mosquitto) does not verify") {
		t.Errorf("%+v; want every connection abandoned for the certificate", st)
	}
	if got.Load() != 0 {
		t.Errorf("the node sent %d bytes past the handshake", got.Load())
	}
}
