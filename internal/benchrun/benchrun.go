// Package benchrun times the commands of appliance's benchmarks
// (cmd/bench-*) — wall time and peak memory — and prints the medians of
// several rounds side by side.
package benchrun

import (
	"bytes"
	"cmp"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"syscall"
	"text/tabwriter"
	"time"
)

// Result is one timed run.
type Result struct {
	What string
	Wall time.Duration
	// RSSKB is the peak memory of the largest process of the run's tree.
	RSSKB int64
	// Detail is printed beside the median run, if any run has one.
	Detail string
}

// Add counts o into r, as one step of a series: wall times summed, peak
// memory the largest.
func (r *Result) Add(o Result) {
	r.Wall += o.Wall
	r.RSSKB = max(r.RSSKB, o.RSSKB)
}

// Timed runs cmd and measures its wall time and peak memory (from
// wait4's rusage); it returns what cmd printed on standard output. Unless
// the caller set cmd.Stderr, standard error goes into the error.
func Timed(what string, cmd *exec.Cmd) (Result, []byte, error) {
	// Flush what earlier runs left dirty first, so no run pays for the
	// writeback of another.
	syscall.Sync()
	var stderr bytes.Buffer
	if cmd.Stderr == nil {
		cmd.Stderr = &stderr
	}
	t := time.Now()
	out, err := cmd.Output()
	r := Result{What: what, Wall: time.Since(t)}
	if cmd.ProcessState != nil {
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			r.RSSKB = ru.Maxrss
		}
	}
	if err != nil {
		return r, out, fmt.Errorf("%s: %w\n%s", what, err, stderr.Bytes())
	}
	return r, out, nil
}

// Table prints, for each name in order, the median, fastest and slowest
// of its runs and their peak memory, and returns the medians.
func Table(w io.Writer, order []string, all map[string][]Result) map[string]time.Duration {
	details := false
	for _, rs := range all {
		for _, r := range rs {
			details = details || r.Detail != ""
		}
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "run\tmedian\tmin\tmax\tpeak RSS")
	if details {
		fmt.Fprintf(tw, "\tmedian run's phases")
	}
	fmt.Fprintln(tw)
	med := map[string]time.Duration{}
	for _, what := range order {
		rs := all[what]
		if len(rs) == 0 {
			continue
		}
		slices.SortFunc(rs, func(a, b Result) int { return cmp.Compare(a.Wall, b.Wall) })
		m := rs[len(rs)/2]
		med[what] = m.Wall
		var rss int64
		for _, x := range rs {
			rss = max(rss, x.RSSKB)
		}
		fmt.Fprintf(tw, "%s\t%.2f s\t%.2f s\t%.2f s\t%d MB", what, m.Wall.Seconds(), rs[0].Wall.Seconds(), rs[len(rs)-1].Wall.Seconds(), rss/1024)
		if details {
			fmt.Fprintf(tw, "\t%s", m.Detail)
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
	return med
}
