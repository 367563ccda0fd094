package dpkglog

import (
	"strings"
	"testing"
	"time"
)

// A log as dpkg --configure -a writes it, then a later run hours after.
const sample = `2026-12-03 06:30:00 startup packages configure
2026-12-03 06:30:00 configure base-files:arm64 13.8 <none>
2026-12-03 06:30:00 status unpacked base-files:arm64 13.8
2026-12-03 06:30:01 status installed base-files:arm64 13.8
2026-12-03 06:30:01 configure python3.13-minimal:arm64 3.13.5-2 <none>
2026-12-03 06:30:01 status half-configured python3.13-minimal:arm64 3.13.5-2
2026-12-03 06:30:41 status installed python3.13-minimal:arm64 3.13.5-2
2026-12-03 06:30:41 trigproc libc-bin:arm64 2.41-12 <none>
2026-12-03 06:30:44 status installed libc-bin:arm64 2.41-12
2026-12-03 06:30:44 configure tzdata:all 2025b-4 <none>
2026-12-03 06:30:50 status installed tzdata:all 2025b-4
2026-12-03 06:30:50 trigproc libc-bin:arm64 2.41-12 <none>
2026-12-03 06:30:52 status installed libc-bin:arm64 2.41-12
2026-12-03 09:00:00 startup archives unpack
2026-12-03 09:00:05 configure tzdata:all 2025c-1 2025c-1
2026-12-03 09:00:07 status installed tzdata:all 2025c-1
`

func TestRead(t *testing.T) {
	p, err := Read(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]time.Duration{
		"base-files configure":         1 * time.Second,
		"python3.13-minimal configure": 40 * time.Second,
		"libc-bin trigproc":            5 * time.Second,
		"tzdata configure":             8 * time.Second,
	}
	if len(p.Steps) != len(want) {
		t.Errorf("%d steps, want %d: %+v", len(p.Steps), len(want), p.Steps)
	}
	for _, s := range p.Steps {
		if w := want[s.Package+" "+s.Action]; s.Took != w {
			t.Errorf("%s %s took %v, want %v", s.Package, s.Action, s.Took, w)
		}
	}
	// 52 s of the first run and 7 s of the second; not the hours between.
	if p.Total != 59*time.Second {
		t.Errorf("total %v, want 59s", p.Total)
	}
	if s := p.Slowest(1); s[0].Package != "python3.13-minimal" {
		t.Errorf("slowest %+v", s)
	}
	var b strings.Builder
	p.Table(&b, 2)
	for _, line := range []string{"40s", "68%", "python3.13-minimal configure", "2 others", "59s", "dpkg in all (4 steps)"} {
		if !strings.Contains(b.String(), line) {
			t.Errorf("table lacks %q:\n%s", line, b.String())
		}
	}
}

func TestReadBadTime(t *testing.T) {
	if _, err := Read(strings.NewReader("yesterday at noon, configure foo\n")); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("got %v", err)
	}
}
