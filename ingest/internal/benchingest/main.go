// Command benchingest is `make bench-ingest`: simulated nodes publish
// over mutual TLS through mosquitto as fast as the broker takes them;
// ingest writes them to InfluxDB 1.x while, on the same stream in the
// same run, `mosquitto_sub -q 1` receives them too. It prints both
// delivery rates, their ratio, ingest's publish-to-write latency, its
// memory, and whether every reading arrived exactly once.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/appliance/appliance/ingest"
	"github.com/appliance/appliance/ingest/internal/testenv"
	"github.com/appliance/appliance/pki"
)

// tb lets the test helpers run in a program.
type tb struct {
	mu       sync.Mutex
	cleanups []func()
}

func (t *tb) Helper() {}
func (t *tb) Logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
}
func (t *tb) Cleanup(f func()) { t.mu.Lock(); t.cleanups = append(t.cleanups, f); t.mu.Unlock() }
func (t *tb) TempDir() string {
	d, err := os.MkdirTemp("", "bench-ingest-")
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}
func (t *tb) Fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench-ingest: "+format+"\n", args...)
	t.run()
	os.Exit(1)
}
func (t *tb) run() {
	t.mu.Lock()
	c := t.cleanups
	t.cleanups = nil
	t.mu.Unlock()
	for i := len(c) - 1; i >= 0; i-- {
		c[i]()
	}
}

func main() {
	nodes := flag.Int("nodes", 20, "simulated nodes")
	duration := flag.Duration("duration", 20*time.Second, "how long the nodes publish")
	rate := flag.Float64("rate", 0, "readings per second per node; 0 publishes as fast as the broker acknowledges")
	flush := flag.Duration("flush", time.Second, "ingest's flush interval (the spec's default is 1s)")
	batch := flag.Int("batch", 5000, "ingest's batch size")
	cpuprofile := flag.String("cpuprofile", "", "write ingest's CPU profile to `file`")
	flag.Parse()
	if *cpuprofile != "" {
		abs, _ := filepath.Abs(*cpuprofile)
		testenv.IngestArgs = []string{"-cpuprofile", abs}
	}
	t := &tb{}
	defer t.run()
	testenv.Need(t, "mosquitto", "mosquitto_sub", "influxd")

	p := testenv.NewPKI(t, "bench")
	broker := testenv.StartMosquitto(t, p)
	db, _ := testenv.StartInfluxd(t, "sensors", false)
	cert, key := p.Issue(t, pki.Request{Name: "ingest", Kind: pki.Client})
	var names []string
	cfg := ingest.Config{
		MQTT:          ingest.MQTT{Broker: broker.Addr(), ServerName: "localhost", CAFile: p.CAFile, CertFile: cert, KeyFile: key, ClientID: "appliance-ingest"},
		InfluxDB:      ingest.InfluxDB{URL: db.URL(), Version: 1, Database: "sensors"},
		BatchSize:     *batch,
		FlushInterval: ingest.Duration(*flush),
		Spool:         ingest.Spool{Dir: filepath.Join(t.TempDir(), "spool"), MaxBytes: 256 << 20},
		Listen:        "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t)),
		Nodes:         map[string]ingest.Node{},
	}
	for i := 1; i <= *nodes; i++ {
		n := fmt.Sprintf("bench-%d", i)
		names = append(names, n)
		cfg.Nodes[n] = ingest.Node{Sensor: "dht22", Group: "bench", Firmware: "sensor"}
	}
	in := testenv.StartIngest(t, cfg)

	// The peer: mosquitto's own client, QoS 1, a persistent session
	// like ingest's, reading the same subscription. Its output is
	// counted (one line per message) rather than sent to /dev/null.
	sub := exec.Command("mosquitto_sub", "-V", "mqttv5", "-h", "localhost", "-p", strconv.Itoa(broker.Port),
		"--cafile", p.CAFile, "--cert", cert, "--key", key, "-q", "1", "-c", "-i", "bench-sub", "-x", "3600", "-t", "sensors/+/reading")
	out, err := sub.StdoutPipe()
	if err != nil {
		t.Fatalf("%v", err)
	}
	sub.Stderr = os.Stderr
	if err := sub.Start(); err != nil {
		t.Fatalf("mosquitto_sub: %v", err)
	}
	t.Cleanup(func() { sub.Process.Kill(); sub.Wait() })
	var subMu sync.Mutex
	var subCount int64
	var subLast time.Time
	go func() {
		r := bufio.NewReaderSize(out, 1<<20)
		for {
			line, err := r.ReadSlice('\n')
			if len(line) > 0 && line[len(line)-1] == '\n' {
				subMu.Lock()
				subCount++
				subLast = time.Now()
				subMu.Unlock()
			}
			if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
				return
			}
		}
	}()

	var clients []*testenv.Node
	for _, n := range names {
		c := testenv.ConnectNode(t, broker, p, n, n)
		c.DeviceTime = true // publish time in the payload: the latency's start
		clients = append(clients, c)
	}
	time.Sleep(500 * time.Millisecond) // both subscriptions in place

	perNode := *rate
	if perNode == 0 {
		perNode = 1e6
	}
	fmt.Fprintf(os.Stderr, "bench-ingest: %d nodes publishing for %s…\n", *nodes, *duration)
	var rssPeak, rssSum, rssN int64
	start := time.Now()
	stream := testenv.StartStream(clients, perNode)
	for time.Since(start) < *duration {
		time.Sleep(200 * time.Millisecond)
		if r := rss(in.Pid(), "VmRSS"); r > 0 {
			if time.Since(start) > *duration/4 {
				rssSum += r
				rssN++
			}
		}
	}
	published, err := stream.Stop()
	pubEnd := time.Now()
	if err != nil {
		t.Fatalf("publishing: %v", err)
	}
	total := int64(0)
	for _, r := range published {
		if r.Temperature == r.Temperature { // not in doubt
			total++
		}
	}

	// Wait for both to have everything.
	var ingestDone time.Time
	deadline := time.Now().Add(5 * time.Minute)
	for ingestDone.IsZero() || subLast.IsZero() || func() bool { subMu.Lock(); defer subMu.Unlock(); return subCount < total }() {
		if time.Now().After(deadline) {
			t.Fatalf("not everything arrived within 5 minutes")
		}
		m, err := in.Metrics()
		if err == nil && ingestDone.IsZero() && m["ingest_points_written_total"] >= float64(total) && m["ingest_spool_pending"] == 0 {
			ingestDone = time.Now()
		}
		time.Sleep(20 * time.Millisecond)
	}
	rssPeak = rss(in.Pid(), "VmHWM")
	m, _ := in.Metrics()
	subMu.Lock()
	subRate := float64(subCount) / subLast.Sub(start).Seconds()
	subMu.Unlock()
	ingestRate := float64(total) / ingestDone.Sub(start).Seconds()
	p50, p99 := quantile(m, 0.5), quantile(m, 0.99)

	points := db.InfluxPoints(t, "sensors")
	diff := testenv.Compare(published, points)
	loss := "none: every reading once"
	if diff != "" {
		loss = strings.SplitN(diff, "\n", 2)[0] + " … " + lastLine(diff)
	}
	fmt.Printf(`
bench-ingest: %d nodes, %s of publishing, flush interval %s, batch %d
  published (acknowledged by the broker)   %8d readings, %8.0f /s
  mosquitto_sub -q 1 delivery rate         %8.0f msgs/s
  ingest write rate (into InfluxDB)        %8.0f msgs/s
  ratio ingest / mosquitto_sub             %8.2f   (goal ≥ 0.90)
  publish-to-write latency p50 / p99       %8.0f / %.0f ms   (goal p99 < 1000; from ingest's histogram, interpolated)
  ingest RSS steady (mean) / peak          %8.1f / %.1f MB   (goal < 40 steady)
  loss and duplicates                      %s
`, *nodes, *duration, *flush, *batch, total, float64(total)/pubEnd.Sub(start).Seconds(), subRate, ingestRate, ingestRate/subRate,
		p50*1000, p99*1000, float64(rssSum)/float64(max(rssN, 1))/1024, float64(rssPeak)/1024, loss)
	if diff != "" {
		t.run()
		os.Exit(1)
	}
}

func lastLine(s string) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	return l[len(l)-1]
}

// rss reads a /proc/PID/status figure in kB.
func rss(pid int, field string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n
		}
	}
	return 0
}

// quantile interpolates a quantile from ingest's age histogram.
func quantile(m map[string]float64, q float64) float64 {
	type bucket struct{ le, n float64 }
	var bs []bucket
	for k, v := range m {
		if s, ok := strings.CutPrefix(k, `ingest_reading_age_seconds_bucket{le="`); ok {
			le, err := strconv.ParseFloat(strings.TrimSuffix(s, `"}`), 64)
			if err != nil {
				continue // +Inf
			}
			bs = append(bs, bucket{le, v})
		}
	}
	sort.Slice(bs, func(i, j int) bool { return bs[i].le < bs[j].le })
	total := m["ingest_reading_age_seconds_count"]
	if total == 0 || len(bs) == 0 {
		return 0
	}
	rank := q * total
	prevLe, prevN := 0.0, 0.0
	for _, b := range bs {
		if b.n >= rank {
			if b.n == prevN {
				return b.le
			}
			return prevLe + (b.le-prevLe)*(rank-prevN)/(b.n-prevN)
		}
		prevLe, prevN = b.le, b.n
	}
	return bs[len(bs)-1].le
}
