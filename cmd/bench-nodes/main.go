// Command bench-nodes is `make bench-nodes`, a benchmark that prints
// figures (it asserts no timing):
//
//   - (a) the artifacts of a fleet of nodes (1,000 by default), as a build
//     makes them: the site state issuing every node's certificate and
//     key, the nodes' inputs read back from the state, firmware.Build
//     signing a 1 MB app and making every identity image and bundle, and
//     writing the bundles (merged.bin included) to disk; then the same
//     again for the unchanged fleet (a warm rebuild), and what checking
//     that nothing changed costs, by hashing every node's inputs;
//   - (b) `appliance sim` running the fleet at one reading per second per
//     node through the gateway's own mosquitto (its generated config,
//     certificates and ACL) into the real ingest service writing to a
//     real influxd, with `mosquitto_sub -q 1` on the same stream as the
//     peer; InfluxDB is then queried and every (node, boot, seq) counted:
//     each reading must be there once.
//
// Run it with make bench-nodes (root not needed; mosquitto, mosquitto_sub
// and influxd from scripts/deps; a few GB of disk for the bundles).
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

var (
	nodes    = flag.Int("nodes", 1000, "nodes in the fleet")
	duration = flag.Duration("duration", 30*time.Second, "how long the simulated nodes take readings in (b)")
	rate     = flag.Float64("rate", 1, "readings per second per node in (b)")
	work     = flag.String("work", "", "folder for the spec, state, outputs and servers (default: a new one under /var/tmp, removed at the end)")
	skipB    = flag.Bool("only-artifacts", false, "run (a) only")
)

func main() {
	flag.Parse()
	t := &tb{}
	code := 0
	if err := bench(t); err != nil {
		fmt.Fprintln(os.Stderr, "bench-nodes:", err)
		code = 1
	}
	t.run()
	os.Exit(code)
}

func bench(t *tb) error {
	dir := *work
	if dir == "" {
		d, err := os.MkdirTemp("/var/tmp", "appliance-bench-nodes-")
		if err != nil {
			return err
		}
		dir = d
		t.Cleanup(func() { os.RemoveAll(d) })
	}
	t.dir = dir
	f, err := artifacts(t, dir, *nodes)
	if err != nil {
		return fmt.Errorf("(a): %w", err)
	}
	if *skipB {
		return nil
	}
	return stream(t, f)
}

// tb lets the test helpers (simtest) run in a program: a failure ends
// it after the clean-ups.
type tb struct {
	mu       sync.Mutex
	cleanups []func()
	dir      string
	n        int
}

func (t *tb) Helper() {}
func (t *tb) Logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
}
func (t *tb) Cleanup(f func()) { t.mu.Lock(); t.cleanups = append(t.cleanups, f); t.mu.Unlock() }
func (t *tb) TempDir() string {
	t.mu.Lock()
	t.n++
	d := filepath.Join(t.dir, fmt.Sprintf("tmp-%03d", t.n))
	t.mu.Unlock()
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatalf("%v", err)
	}
	return d
}
func (t *tb) Fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench-nodes: "+format+"\n", args...)
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

// steps times named steps and prints them as a table.
type steps struct {
	names []string
	times []time.Duration
	notes []string
}

func (s *steps) time(name string, f func() error) error {
	start := time.Now()
	err := f()
	s.add(name, time.Since(start), "")
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

func (s *steps) add(name string, d time.Duration, note string) {
	s.names = append(s.names, name)
	s.times = append(s.times, d)
	s.notes = append(s.notes, note)
}

func (s *steps) total(from int) time.Duration {
	var d time.Duration
	for _, x := range s.times[from:] {
		d += x
	}
	return d
}

// row is a line of figures: a name, a time and a note.
type row struct {
	name string
	d    time.Duration
	note string
}

// print prints the steps, then the extra rows, aligned.
func (s *steps) print(indent string, extra ...row) {
	rows := make([]row, 0, len(s.names)+len(extra))
	for i, n := range s.names {
		rows = append(rows, row{n, s.times[i], s.notes[i]})
	}
	rows = append(rows, extra...)
	w := 0
	for _, r := range rows {
		w = max(w, len(r.name))
	}
	for _, r := range rows {
		line := fmt.Sprintf("%s%-*s %8.3f s", indent, w, r.name, r.d.Seconds())
		if r.note != "" {
			line += "   " + r.note
		}
		fmt.Println(strings.TrimRight(line, " "))
	}
}
