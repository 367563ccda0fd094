package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/appliance/appliance/firmware/sim"
	"github.com/appliance/appliance/firmware/sim/simtest"
	"github.com/appliance/appliance/ingest"
	"github.com/appliance/appliance/modules"
)

// stream is part (b).
func stream(t *tb, f *fleet) error {
	s := f.site
	simtest.Need(t, "mosquitto", "mosquitto_sub", "influxd", "go")
	fmt.Fprintf(os.Stderr, "bench-nodes: (b) building appliance and the ingest service…\n")
	bin := t.TempDir()
	for _, p := range []string{"./cmd/appliance", "./cmd/ingest"} {
		cmd := exec.Command("go", "build", "-trimpath", "-o", bin+"/", p)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %v\n%s", p, err, out)
		}
	}
	s.Rewrite(t)
	s.StartMosquitto(t)
	db := startInfluxd(t, f.influx, s.Spec.InfluxDB.Bucket)
	in := startIngest(t, s, filepath.Join(bin, "ingest"), db)
	peer := startPeer(t, s)
	time.Sleep(time.Second) // both subscriptions in place

	fmt.Fprintf(os.Stderr, "bench-nodes: (b) appliance sim: %d nodes, %g reading/s each, for %s…\n", len(f.info.Nodes), *rate, *duration)
	simCmd := exec.Command(filepath.Join(bin, "appliance"), "sim", "--json", "--broker", fmt.Sprintf("127.0.0.1:%d", s.Spec.MQTT.Port),
		"--rate", fmt.Sprint(*rate), "--duration", duration.String(), "--drain", "60s", s.Out)
	var simOut, simErr bytes.Buffer
	simCmd.Stdout, simCmd.Stderr = &simOut, &simErr
	start := time.Now()
	if err := simCmd.Start(); err != nil {
		return fmt.Errorf("appliance sim: %v", err)
	}
	// Sampled from /proc: wait4's ru_maxrss would count the memory of
	// this process, which the child shared until it exec'd.
	rssDone := make(chan struct{})
	var rssSamples []int64
	var hwm int64
	go func() {
		defer close(rssDone)
		for {
			time.Sleep(500 * time.Millisecond)
			r, h := procStatus(simCmd.Process.Pid, "VmRSS"), procStatus(simCmd.Process.Pid, "VmHWM")
			if r == 0 {
				return
			}
			rssSamples, hwm = append(rssSamples, r), h
		}
	}()
	if err := simCmd.Wait(); err != nil {
		return fmt.Errorf("appliance sim: %v\n%s", err, simErr.String())
	}
	simWall := time.Since(start)
	<-rssDone
	rssMid := int64(0)
	if len(rssSamples) > 0 {
		rssMid = rssSamples[len(rssSamples)/2]
	}
	ru := simCmd.ProcessState.SysUsage().(*syscall.Rusage)
	var sum struct{ Readings sim.Result }
	if err := json.Unmarshal(simOut.Bytes(), &sum); err != nil {
		return fmt.Errorf("appliance sim --json: %v\n%s", err, simOut.String())
	}
	res := sum.Readings
	tot := res.Total

	// Wait for ingest's writes and the peer's deliveries.
	var ingestDone, peerDone time.Duration
	deadline := time.Now().Add(2 * time.Minute)
	for (ingestDone == 0 || peerDone == 0) && time.Now().Before(deadline) {
		m, err := in.metrics()
		if ingestDone == 0 && err == nil && m["ingest_points_written_total"] >= float64(tot.Acked) && m["ingest_spool_pending"] == 0 {
			ingestDone = time.Since(start)
		}
		if peerDone == 0 && peer.count() >= tot.Acked {
			peerDone = time.Since(start)
		}
		time.Sleep(50 * time.Millisecond)
	}
	m, _ := in.metrics()
	points, err := db.readings(s.Spec.InfluxDB.Bucket)
	if err != nil {
		return err
	}
	verdict, ok := compare(res, points)
	pp50, pp99, ps99 := peer.latency()
	fmt.Printf(`
bench-nodes (b): appliance sim, %d nodes × %g reading/s for %s, through mosquitto (the gateway's config) into ingest and influxd (%d CPUs)
  sim: readings taken / acknowledged    %d / %d   (refused %d, resent %d, dropped %d, pending %d, connections %d, errors %d)
  sim: wall %.1f s, CPU %.1f s (%.0f%% of one core), RSS half-way %.0f MB, peak (VmHWM) %.0f MB
  peer mosquitto_sub -q 1: received     %d (distinct readings %d), all by %s; arrival after the reading's t p50 / p99 %.0f / %.0f ms (p99 from seq 5 on: %.0f ms)
  ingest: points written                %.0f, duplicates dropped %.0f, refused %.0f, all by %s; publish-to-write p50 / p99 %.0f / %.0f ms
  InfluxDB, counted per (node, boot, seq): %s
`, len(f.info.Nodes), *rate, *duration, runtime.NumCPU(),
		tot.Readings, tot.Acked, tot.Refused, tot.Resent, tot.Dropped, tot.Pending, tot.Connections, tot.Errors,
		simWall.Seconds(), tv(ru.Utime)+tv(ru.Stime), 100*(tv(ru.Utime)+tv(ru.Stime))/simWall.Seconds(), float64(rssMid)/1024, float64(hwm)/1024,
		peer.count(), peer.distinct(), since(peerDone), pp50, pp99, ps99,
		m["ingest_points_written_total"], m["ingest_messages_duplicate_total"], rejected(m), since(ingestDone), quantile(m, 0.5)*1000, quantile(m, 0.99)*1000,
		verdict)
	if !ok || tot.Acked != tot.Readings {
		return errors.New("not every reading arrived once")
	}
	return nil
}

// procStatus reads a /proc/PID/status figure in kB (0 once the process
// is gone).
func procStatus(pid int, field string) int64 {
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

func since(d time.Duration) string {
	if d == 0 {
		return "never (2 minutes)"
	}
	return fmt.Sprintf("%.1f s after the sim started", d.Seconds())
}

func tv(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }

func rejected(m map[string]float64) float64 {
	n := 0.0
	for k, v := range m {
		if strings.HasPrefix(k, "ingest_messages_rejected_total") {
			n += v
		}
	}
	return n
}

type key struct {
	node      string
	boot, seq uint32
}

// compare counts the stored points per (node, boot, seq) against what
// the sim says each node had acknowledged: seq 0 … acked-1 of its boot.
func compare(res sim.Result, points []key) (string, bool) {
	seen := map[key]int{}
	for _, p := range points {
		seen[p]++
	}
	var lost, dups, extra int
	var examples []string
	want := map[key]bool{}
	for _, st := range res.Nodes {
		for seq := range uint32(st.Acked) {
			k := key{st.Node, st.Boot, seq}
			want[k] = true
			switch n := seen[k]; {
			case n == 0:
				lost++
				if len(examples) < 3 {
					examples = append(examples, fmt.Sprintf("lost %s/%d/%d", k.node, k.boot, k.seq))
				}
			case n > 1:
				dups++
			}
		}
	}
	for k := range seen {
		if !want[k] {
			extra++
		}
	}
	if lost == 0 && dups == 0 && extra == 0 {
		return fmt.Sprintf("%d points, every acknowledged reading exactly once", len(points)), true
	}
	return fmt.Sprintf("%d points: %d lost, %d duplicated, %d not acknowledged by the sim %v", len(points), lost, dups, extra, examples), false
}

// influx is a running influxd (1.x API) with authentication on.
type influx struct {
	port           int
	admin, adminPW string
	ingestPW       string
}

func startInfluxd(t *tb, port int, db string) *influx {
	dir := t.TempDir()
	conf := fmt.Sprintf(`reporting-disabled = true
bind-address = "127.0.0.1:%d"
[meta]
  dir = "%s/meta"
[data]
  dir = "%s/data"
  wal-dir = "%s/wal"
  query-log-enabled = false
[http]
  enabled = true
  bind-address = "127.0.0.1:%d"
  auth-enabled = true
  log-enabled = false
  max-row-limit = 0
[monitor]
  store-enabled = false
[subscriber]
  enabled = false
[continuous_queries]
  enabled = false
[logging]
  level = "warn"
`, simtest.FreePort(t), dir, dir, dir, port)
	path := filepath.Join(dir, "influxdb.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatalf("%v", err)
	}
	p := simtest.Start(t, "influxd", "-config", path)
	p.WaitPort(t, fmt.Sprintf("127.0.0.1:%d", port), 60*time.Second)
	in := &influx{port: port, admin: "admin", adminPW: "bench-admin-" + strconv.Itoa(port), ingestPW: "bench-ingest-" + strconv.Itoa(port)}
	for _, q := range []string{
		fmt.Sprintf("CREATE USER %s WITH PASSWORD '%s' WITH ALL PRIVILEGES", in.admin, in.adminPW),
		"CREATE DATABASE " + db,
		fmt.Sprintf("CREATE USER %s WITH PASSWORD '%s'", ingest.User, in.ingestPW),
		fmt.Sprintf("GRANT WRITE ON %s TO %s", db, ingest.User),
	} {
		if _, err := in.query(q, ""); err != nil {
			t.Fatalf("influxd: %v", err)
		}
	}
	return in
}

func (in *influx) query(q, db string) ([]byte, error) {
	form := url.Values{"q": {q}, "epoch": {"ns"}}
	if db != "" {
		form.Set("db", db)
	}
	req, _ := http.NewRequest(http.MethodPost, fmt.Sprintf("http://127.0.0.1:%d/query", in.port), strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(in.admin, in.adminPW)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || bytes.Contains(b, []byte(`"error"`)) {
		return nil, fmt.Errorf("InfluxQL %q: %s: %s", q, resp.Status, b)
	}
	return b, nil
}

// readings are every stored reading's (node, boot, seq).
func (in *influx) readings(db string) ([]key, error) {
	b, err := in.query("SELECT boot, seq FROM reading GROUP BY node", db)
	if err != nil {
		return nil, err
	}
	var resp struct {
		Results []struct {
			Series []struct {
				Tags   map[string]string `json:"tags"`
				Values [][]json.Number   `json:"values"`
			} `json:"series"`
		} `json:"results"`
	}
	if err := json.Unmarshal(b, &resp); err != nil {
		return nil, err
	}
	var out []key
	for _, r := range resp.Results {
		for _, s := range r.Series {
			for _, v := range s.Values {
				boot, _ := v[1].Int64()
				seq, _ := v[2].Int64()
				out = append(out, key{s.Tags["node"], uint32(boot), uint32(seq)})
			}
		}
	}
	return out, nil
}

// ingestProc is the ingest service, run with the configuration the
// ingest module generates for the site, its credentials in
// $CREDENTIALS_DIRECTORY as the unit hands them over.
type ingestProc struct {
	listen string
}

func startIngest(t *tb, s *simtest.Site, bin string, db *influx) *ingestProc {
	cfg := modules.IngestConfig(s.Spec)
	dir := t.TempDir()
	cfg.Spool.Dir = filepath.Join(dir, "spool")
	creds := filepath.Join(dir, "credentials")
	os.MkdirAll(creds, 0o700)
	for name, rel := range map[string]string{ingest.CredCA: "pki/ca.crt", ingest.CredCert: "pki/issued/ingest.crt", ingest.CredKey: "pki/issued/ingest.key"} {
		os.WriteFile(filepath.Join(creds, name), s.StateFile(t, rel), 0o600)
	}
	os.WriteFile(filepath.Join(creds, ingest.CredPassword), []byte(db.ingestPW+"\n"), 0o600)
	b, _ := json.MarshalIndent(cfg, "", "  ")
	path := filepath.Join(dir, "ingest.json")
	os.WriteFile(path, b, 0o600)
	cmd := exec.Command(bin, "-config", path)
	cmd.Env = append(os.Environ(), "CREDENTIALS_DIRECTORY="+creds)
	p := simtest.StartCmd(t, cmd)
	in := &ingestProc{listen: cfg.Listen}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := in.metrics(); err == nil {
			return in
		}
		if time.Now().After(deadline) {
			t.Fatalf("ingest does not serve /metrics:\n%s", p.Output())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (in *ingestProc) metrics() (map[string]float64, error) {
	resp, err := http.Get("http://" + in.listen + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	m := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		l := sc.Text()
		if l == "" || l[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(l, ' ')
		if v, err := strconv.ParseFloat(l[i+1:], 64); err == nil {
			m[l[:i]] = v
		}
	}
	return m, sc.Err()
}

// quantile interpolates a quantile of ingest's publish-to-write
// histogram.
func quantile(m map[string]float64, q float64) float64 {
	type bucket struct{ le, n float64 }
	var bs []bucket
	for k, v := range m {
		if s, ok := strings.CutPrefix(k, `ingest_reading_age_seconds_bucket{le="`); ok {
			if le, err := strconv.ParseFloat(strings.TrimSuffix(s, `"}`), 64); err == nil {
				bs = append(bs, bucket{le, v})
			}
		}
	}
	sort.Slice(bs, func(i, j int) bool { return bs[i].le < bs[j].le })
	total := m["ingest_reading_age_seconds_count"]
	if total == 0 || len(bs) == 0 {
		return 0
	}
	rank, prevLe, prevN := q*total, 0.0, 0.0
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

// peer is mosquitto_sub -q 1 on the same stream, with the ingest
// identity (the ACL lets it read every reading) under a client id of its
// own, counting what arrives and how long after the reading was taken.
type peer struct {
	mu   sync.Mutex
	n    int
	seen map[key]bool
	lat  []float64
	// steady leaves out each node's first readings, taken while the
	// fleet's TLS handshakes were under way.
	steady []float64
}

func startPeer(t *tb, s *simtest.Site) *peer {
	dir := t.TempDir()
	for f, rel := range map[string]string{"ca.crt": "pki/ca.crt", "c.crt": "pki/issued/ingest.crt", "c.key": "pki/issued/ingest.key"} {
		os.WriteFile(filepath.Join(dir, f), s.StateFile(t, rel), 0o600)
	}
	cmd := exec.Command("mosquitto_sub", "-V", "mqttv5", "-h", "localhost", "-p", strconv.Itoa(s.Spec.MQTT.Port),
		"--cafile", filepath.Join(dir, "ca.crt"), "--cert", filepath.Join(dir, "c.crt"), "--key", filepath.Join(dir, "c.key"),
		"-q", "1", "-c", "-i", "bench-peer", "-x", "3600", "-t", "sensors/+/reading", "-F", "%U %t %p")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatalf("%v", err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("mosquitto_sub: %v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	p := &peer{seen: map[key]bool{}}
	go func() {
		r := bufio.NewReaderSize(out, 1<<20)
		for {
			line, err := r.ReadString('\n')
			if line != "" {
				p.add(line)
			}
			if err != nil {
				return
			}
		}
	}()
	return p
}

func (p *peer) add(line string) {
	f := strings.SplitN(strings.TrimSpace(line), " ", 3)
	if len(f) != 3 {
		return
	}
	at, _ := strconv.ParseFloat(f[0], 64)
	var r struct {
		Boot, Seq uint32
		T         int64
	}
	json.Unmarshal([]byte(f[2]), &r)
	node := strings.TrimSuffix(strings.TrimPrefix(f[1], "sensors/"), "/reading")
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n++
	p.seen[key{node, r.Boot, r.Seq}] = true
	if r.T > 0 {
		p.lat = append(p.lat, at*1000-float64(r.T))
		if r.Seq >= 5 {
			p.steady = append(p.steady, at*1000-float64(r.T))
		}
	}
}

func (p *peer) count() int { p.mu.Lock(); defer p.mu.Unlock(); return p.n }

func (p *peer) distinct() int { p.mu.Lock(); defer p.mu.Unlock(); return len(p.seen) }

func (p *peer) latency() (p50, p99, steady99 float64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	q := func(l []float64, f float64) float64 {
		if len(l) == 0 {
			return 0
		}
		l = append([]float64(nil), l...)
		sort.Float64s(l)
		return l[int(float64(len(l)-1)*f)]
	}
	return q(p.lat, 0.5), q(p.lat, 0.99), q(p.steady, 0.99)
}
