package rootfs

import (
	"fmt"
	"io"
	"sync"
	"time"
)

// Progress hears how a long step advances. Implementations must be safe
// for concurrent use: downloads report from several goroutines.
type Progress interface {
	// Begin starts a phase ("downloading") of items and bytes.
	Begin(phase string, items int, bytes int64)
	// Bytes reports n more bytes done.
	Bytes(n int64)
	// Item reports one more item done.
	Item(name string)
	// End closes the phase.
	End()
}

// NoProgress reports nothing.
type NoProgress struct{}

func (NoProgress) Begin(string, int, int64) {}
func (NoProgress) Bytes(int64)              {}
func (NoProgress) Item(string)              {}
func (NoProgress) End()                     {}

// NewProgress reports to w: a bar redrawn in place when w is a terminal,
// otherwise a plain line at every tenth of the items and one at the end.
func NewProgress(w io.Writer, terminal bool) Progress {
	return &meter{w: w, tty: terminal, now: time.Now}
}

type meter struct {
	w   io.Writer
	tty bool
	now func() time.Time

	mu           sync.Mutex
	phase        string
	items, done  int
	total, bytes int64
	start, drawn time.Time
	nextTenth    int
}

func (m *meter) Begin(phase string, items int, bytes int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.phase, m.items, m.total = phase, items, bytes
	m.done, m.bytes, m.nextTenth = 0, 0, 1
	m.start = m.now()
	m.drawn = time.Time{}
	if !m.tty {
		fmt.Fprintf(m.w, "%s %d %s, %s\n", phase, items, plural(items, "package", "packages"), mb(bytes))
	}
}

func (m *meter) Bytes(n int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.bytes += n
	m.draw(false)
}

func (m *meter) Item(name string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.done++
	if !m.tty {
		for m.items > 0 && m.done*10 >= m.nextTenth*m.items && m.nextTenth < 10 {
			fmt.Fprintf(m.w, "  %d/%d %s, %s of %s\n", m.done, m.items, plural(m.items, "package", "packages"), mb(m.bytes), mb(m.total))
			m.nextTenth++
		}
		return
	}
	m.draw(false)
}

func (m *meter) End() {
	m.mu.Lock()
	defer m.mu.Unlock()
	el := m.now().Sub(m.start)
	if m.tty {
		m.draw(true)
		fmt.Fprint(m.w, "\r\033[K")
	}
	fmt.Fprintf(m.w, "%s: %d %s, %s in %.1f s (%s/s)\n", m.phase, m.done, plural(m.done, "package", "packages"), mb(m.bytes), el.Seconds(), mb(rate(m.bytes, el)))
}

// draw redraws the bar at most ten times a second.
func (m *meter) draw(force bool) {
	if !m.tty {
		return
	}
	now := m.now()
	if !force && now.Sub(m.drawn) < 100*time.Millisecond {
		return
	}
	m.drawn = now
	const width = 24
	fill := 0
	if m.total > 0 {
		fill = int(int64(width) * m.bytes / m.total)
	} else if m.items > 0 {
		fill = width * m.done / m.items
	}
	fill = min(fill, width)
	bar := make([]byte, width)
	for i := range bar {
		bar[i] = ' '
		if i < fill {
			bar[i] = '='
		}
	}
	fmt.Fprintf(m.w, "\r\033[K%s [%s] %d/%d %s  %s / %s  %s/s", m.phase, bar, m.done, m.items, plural(m.items, "package", "packages"), mb(m.bytes), mb(m.total), mb(rate(m.bytes, now.Sub(m.start))))
}

func rate(n int64, d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64(float64(n) / d.Seconds())
}

// mb writes a size in decimal units, as Debian's tools do.
func mb(n int64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.2f GB", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.1f MB", float64(n)/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%.0f kB", float64(n)/1e3)
	}
	return fmt.Sprintf("%d B", n)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
