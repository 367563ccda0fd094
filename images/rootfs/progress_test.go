package rootfs

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// TestProgress: plain lines at every tenth and a summary when the output
// is not a terminal; a bar redrawn in place when it is.
func TestProgress(t *testing.T) {
	clock := time.Unix(0, 0)
	for _, tty := range []bool{false, true} {
		var b bytes.Buffer
		p := NewProgress(&b, tty).(*meter)
		p.now = func() time.Time { return clock }
		p.Begin("downloading", 20, 20e6)
		for i := range 20 {
			clock = clock.Add(100 * time.Millisecond)
			p.Bytes(1e6)
			p.Item(string(rune('a' + i)))
		}
		p.End()
		out := b.String()
		if !strings.HasSuffix(out, "downloading: 20 packages, 20.0 MB in 2.0 s (10.0 MB/s)\n") {
			t.Errorf("tty %v: no summary:\n%q", tty, out)
		}
		if tty {
			if !strings.Contains(out, "\r\033[Kdownloading [============            ] 9/20 packages  10.0 MB / 20.0 MB  10.0 MB/s") {
				t.Errorf("no bar at half way:\n%q", out)
			}
			continue
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 11 || lines[0] != "downloading 20 packages, 20.0 MB" || lines[5] != "  10/20 packages, 10.0 MB of 20.0 MB" || strings.Contains(out, "\r") {
			t.Errorf("plain output:\n%s", out)
		}
	}
}
