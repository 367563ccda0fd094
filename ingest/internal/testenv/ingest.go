package testenv

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/appliance/appliance/ingest"
)

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// Binary builds cmd/ingest once per process and returns its path: the
// fault tests kill and restart the real program. RemoveBinary deletes it.
func Binary(t TB) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "appliance-ingest-test-")
		if buildErr != nil {
			return
		}
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "../../..")
		cmd := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(buildDir, "appliance-ingest"), "./cmd/ingest")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if os.Getenv("INGEST_RACE") != "" {
			// INGEST_RACE=1 go test ./ingest runs the service under the
			// race detector (which needs cgo).
			cmd.Args = append(cmd.Args[:2], append([]string{"-race"}, cmd.Args[2:]...)...)
			cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/ingest: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatalf("%v", buildErr)
	}
	return filepath.Join(buildDir, "appliance-ingest")
}

// RemoveBinary removes what Binary built.
func RemoveBinary() {
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
}

// IngestArgs are added to ingest's command line (the benchmark's
// -cpuprofile).
var IngestArgs []string

// Ingest is the ingest service running as a process.
type Ingest struct {
	*Proc
	Config     ingest.Config
	ConfigPath string
}

// StartIngest writes cfg and starts the binary with it; env is added to
// the environment. It waits until the metrics endpoint answers.
func StartIngest(t TB, cfg ingest.Config, env ...string) *Ingest {
	t.Helper()
	bin := Binary(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "ingest.json")
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		t.Fatalf("%v", err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatalf("%v", err)
	}
	args := append([]string{"-config", path}, IngestArgs...)
	in := &Ingest{Proc: newProc(t, bin, filepath.Join(dir, "ingest.log"), args...), Config: cfg, ConfigPath: path}
	in.env = env
	in.Start()
	t.Cleanup(func() {
		if strings.Contains(in.Log(), "WARNING: DATA RACE") {
			t.Fatalf("the race detector found a data race in ingest:\n%s", tail(in.Log()))
		}
	})
	return in
}

// Start starts ingest (again) and waits for its metrics endpoint.
func (in *Ingest) Start() {
	in.t.Helper()
	in.Proc.Start()
	WaitFor(in.t, "ingest to serve /metrics", 30*time.Second, func() error {
		if ok, state := in.Exited(); ok {
			in.t.Fatalf("ingest exited (%s):\n%s", state, tail(in.Log()))
		}
		_, err := in.Metrics()
		return err
	})
}

// Metrics reads /metrics into name{labels} → value.
func (in *Ingest) Metrics() (map[string]float64, error) {
	resp, err := http.Get("http://" + in.Config.Listen + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	m := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			return nil, fmt.Errorf("metrics line %q: %v", line, err)
		}
		m[line[:i]] = v
	}
	return m, sc.Err()
}

// Health returns /healthz's status and body.
func (in *Ingest) Health() (int, string, error) {
	resp, err := http.Get("http://" + in.Config.Listen + "/healthz")
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	var b strings.Builder
	bufio.NewReader(resp.Body).WriteTo(&b)
	return resp.StatusCode, strings.TrimSpace(b.String()), nil
}

// Point is a reading as stored in the database.
type Point struct {
	Key
	Time                  time.Time
	Temperature, Humidity float64
	Tags                  map[string]string
}

// InfluxPoints reads every reading in db.
func (in *Influx) InfluxPoints(t TB, db string) []Point {
	t.Helper()
	b, err := in.TryQuery(`SELECT boot, seq, temperature, humidity FROM reading GROUP BY *`, db)
	if err != nil {
		t.Fatalf("reading points: %v", err)
	}
	var resp struct {
		Results []struct {
			Series []struct {
				Tags    map[string]string `json:"tags"`
				Columns []string          `json:"columns"`
				Values  [][]json.Number   `json:"values"`
			} `json:"series"`
		} `json:"results"`
	}
	if err := json.Unmarshal(b, &resp); err != nil {
		t.Fatalf("query answer: %v", err)
	}
	var out []Point
	for _, r := range resp.Results {
		for _, s := range r.Series {
			for _, v := range s.Values {
				row := map[string]json.Number{}
				for i, c := range s.Columns {
					row[c] = v[i]
				}
				ns, _ := row["time"].Int64()
				boot, _ := row["boot"].Int64()
				seq, _ := row["seq"].Int64()
				temp, _ := row["temperature"].Float64()
				hum, _ := row["humidity"].Float64()
				out = append(out, Point{Key: Key{s.Tags["node"], uint32(boot), uint32(seq)}, Time: time.Unix(0, ns), Temperature: temp, Humidity: hum, Tags: s.Tags})
			}
		}
	}
	return out
}

// VMPoints reads every reading from victoria-metrics, joining the
// per-field series it makes (reading_seq, reading_temperature, …) by
// series and timestamp.
func (vm *VM) VMPoints(t TB) []Point {
	t.Helper()
	if resp, err := http.Get(vm.URL() + "/internal/force_flush"); err == nil {
		resp.Body.Close()
	}
	resp, err := http.Get(vm.URL() + `/api/v1/export?match[]={__name__=~"reading_.*"}`)
	if err != nil {
		t.Fatalf("export: %v", err)
	}
	defer resp.Body.Close()
	type sample struct {
		fields map[string]float64
		tags   map[string]string
	}
	byKey := map[string]*sample{}
	dec := json.NewDecoder(resp.Body)
	for dec.More() {
		var s struct {
			Metric     map[string]string `json:"metric"`
			Values     []float64         `json:"values"`
			Timestamps []int64           `json:"timestamps"`
		}
		if err := dec.Decode(&s); err != nil {
			t.Fatalf("export: %v", err)
		}
		field := strings.TrimPrefix(s.Metric["__name__"], "reading_")
		tags := map[string]string{}
		var tk []string
		for k, v := range s.Metric {
			if k != "__name__" {
				tags[k] = v
				tk = append(tk, k+"="+v)
			}
		}
		sort.Strings(tk)
		series := strings.Join(tk, ",")
		for i, ts := range s.Timestamps {
			k := series + "@" + strconv.FormatInt(ts, 10)
			p := byKey[k]
			if p == nil {
				p = &sample{fields: map[string]float64{"ts": float64(ts)}, tags: tags}
				byKey[k] = p
			}
			p.fields[field] = s.Values[i]
		}
	}
	var out []Point
	for _, p := range byKey {
		out = append(out, Point{
			Key:         Key{p.tags["node"], uint32(p.fields["boot"]), uint32(p.fields["seq"])},
			Time:        time.UnixMilli(int64(p.fields["ts"])),
			Temperature: p.fields["temperature"], Humidity: p.fields["humidity"], Tags: p.tags,
		})
	}
	return out
}

// Compare checks that the stored points are exactly the published
// readings: each once, with its values. Readings in doubt (NaN: the
// publisher stopped before the broker answered) may be there once or
// not at all. It returns a description of every difference, or "".
func Compare(published map[Key]Reading, stored []Point) string {
	var problems []string
	seen := map[Key]int{}
	for _, p := range stored {
		seen[p.Key]++
		want, ok := published[p.Key]
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("unexpected point %+v", p.Key))
		case math.IsNaN(want.Temperature):
		case math.Abs(p.Temperature-want.Temperature) > 1e-9 || math.Abs(p.Humidity-want.Humidity) > 1e-9:
			problems = append(problems, fmt.Sprintf("%+v: stored %.1f °C %.1f %%, published %.1f °C %.1f %%", p.Key, p.Temperature, p.Humidity, want.Temperature, want.Humidity))
		case !want.Time.IsZero() && !p.Time.Truncate(time.Millisecond).Equal(want.Time.Truncate(time.Millisecond)):
			problems = append(problems, fmt.Sprintf("%+v: stored at %s, device time %s", p.Key, p.Time, want.Time))
		}
	}
	var lost, dups int
	for k, r := range published {
		if seen[k] == 0 && !math.IsNaN(r.Temperature) {
			lost++
			if lost <= 5 {
				problems = append(problems, fmt.Sprintf("lost %+v", k))
			}
		}
	}
	for k, n := range seen {
		if n > 1 {
			dups++
			if dups <= 5 {
				problems = append(problems, fmt.Sprintf("%+v stored %d times", k, n))
			}
		}
	}
	if lost > 0 || dups > 0 {
		problems = append(problems, fmt.Sprintf("%d lost, %d duplicated, of %d published, %d stored", lost, dups, len(published), len(stored)))
	}
	sort.Strings(problems)
	return strings.Join(problems, "\n")
}
