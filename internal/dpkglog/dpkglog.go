// Package dpkglog reads dpkg's log (/var/log/dpkg.log) and says where a
// run's time went: how long each package took to configure and each
// trigger to run. The first boot's budget is spent there, so the boot
// test and make bench-firstboot print this table from the gateway's own
// log rather than guessing.
//
// dpkg stamps its lines to the second. A package's time is taken from
// its "configure" (or "trigproc") line to the next action line, so the
// times add up to the whole run exactly, while a single short package
// may read a second long or short.
package dpkglog

import (
	"bufio"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// Step is one package's share of a run.
type Step struct {
	Package string
	// Action is "configure" for the maintainer scripts, "trigproc" for
	// the triggers a package ran on behalf of others.
	Action string
	Took   time.Duration
}

// Profile is what a log holds: the steps in the order they first ran,
// and the time of the runs (dpkg's "startup" to its last line) summed,
// so the hours between two runs of dpkg count for nothing.
type Profile struct {
	Steps []Step
	Total time.Duration
}

const stamp = "2006-01-02 15:04:05"

// Read parses a dpkg log. Lines it does not know (status changes,
// conffile decisions) only mark time.
func Read(r io.Reader) (*Profile, error) {
	p := &Profile{}
	index := map[[2]string]int{}
	var cur = -1
	var first, last, since time.Time
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		if len(line) < len(stamp)+1 {
			continue
		}
		at, err := time.Parse(stamp, line[:len(stamp)])
		if err != nil {
			return nil, fmt.Errorf("dpkg log line %d: %q is not a time", n, line[:len(stamp)])
		}
		f := strings.Fields(line[len(stamp):])
		if len(f) < 2 {
			continue
		}
		if f[0] == "startup" && !first.IsZero() {
			if cur >= 0 {
				p.Steps[cur].Took += last.Sub(since)
			}
			p.Total += last.Sub(first)
			first, cur = time.Time{}, -1
		}
		if first.IsZero() {
			first = at
		}
		last = at
		if f[0] != "configure" && f[0] != "trigproc" {
			continue
		}
		if cur >= 0 {
			p.Steps[cur].Took += at.Sub(since)
		}
		name, _, _ := strings.Cut(f[1], ":")
		key := [2]string{name, f[0]}
		i, ok := index[key]
		if !ok {
			i = len(p.Steps)
			index[key] = i
			p.Steps = append(p.Steps, Step{Package: name, Action: f[0]})
		}
		cur, since = i, at
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if cur >= 0 {
		p.Steps[cur].Took += last.Sub(since)
	}
	p.Total += last.Sub(first)
	return p, nil
}

// Slowest returns the n steps that took longest, longest first.
func (p *Profile) Slowest(n int) []Step {
	s := append([]Step(nil), p.Steps...)
	sort.SliceStable(s, func(i, j int) bool { return s[i].Took > s[j].Took })
	return s[:min(n, len(s))]
}

// Table writes the n slowest steps with their share of the whole, and
// what the rest took together.
func (p *Profile) Table(w io.Writer, n int) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	pct := func(d time.Duration) string {
		if p.Total <= 0 {
			return "-"
		}
		return fmt.Sprintf("%.0f%%", 100*float64(d)/float64(p.Total))
	}
	var shown time.Duration
	for _, s := range p.Slowest(n) {
		fmt.Fprintf(tw, "%s\t%s\t%s %s\n", s.Took, pct(s.Took), s.Package, s.Action)
		shown += s.Took
	}
	if rest := len(p.Steps) - min(n, len(p.Steps)); rest > 0 {
		fmt.Fprintf(tw, "%s\t%s\t%d others\n", p.Total-shown, pct(p.Total-shown), rest)
	}
	fmt.Fprintf(tw, "%s\t%s\tdpkg in all (%d steps)\n", p.Total, pct(p.Total), len(p.Steps))
	tw.Flush()
}
