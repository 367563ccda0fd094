package deb

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing"
)

func TestParagraphRoundTrip(t *testing.T) {
	in := "Package: tool\nVersion: 1:2.0-1\nDepends: a (>= 1),\n b | c\nDescription: short\n long line\n .\n more\nConffiles:\n /etc/a 0123\n"
	p, err := ParseControl([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Get("depends"); got != "a (>= 1),\n b | c" {
		t.Errorf("Depends = %q", got)
	}
	var b bytes.Buffer
	p.WriteTo(&b)
	if b.String() != in {
		t.Errorf("written back:\n%s\nwant:\n%s", b.String(), in)
	}
}

func TestParagraphReader(t *testing.T) {
	r := NewParagraphReader(strings.NewReader("\n\nPackage: a\n# comment\nVersion: 1\n\n\nPackage: b\nVersion: 2"))
	var names []string
	for {
		p, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, p.Get("Package")+"="+p.Get("Version"))
	}
	if strings.Join(names, " ") != "a=1 b=2" {
		t.Errorf("paragraphs %v", names)
	}
	if _, err := NewParagraphReader(strings.NewReader(" continuation first\n")).Next(); err == nil {
		t.Error("a continuation line before any field was accepted")
	}
}

// longField is a paragraph whose one field has n continuation lines of
// about 50 bytes: 200,000 of them are 10 MB.
func longField(n int) []byte {
	var b bytes.Buffer
	b.WriteString("Package: big\nVersion: 1\nDescription: a long one\n")
	for i := range n {
		fmt.Fprintf(&b, " line %07d of a description that goes on and on\n", i)
	}
	b.WriteString("Architecture: all\n")
	return b.Bytes()
}

// TestLongField: a field of 200,000 continuation lines (10 MB) is read
// whole, every line in place, and the fields after it too.
func TestLongField(t *testing.T) {
	const n = 200000
	p, err := ParseControl(longField(n))
	if err != nil {
		t.Fatal(err)
	}
	d := p.Get("Description")
	if got := strings.Count(d, "\n"); got != n {
		t.Errorf("Description has %d continuation lines; want %d", got, n)
	}
	if !strings.HasPrefix(d, "a long one\n line 0000000 of") || !strings.HasSuffix(d, "line 0199999 of a description that goes on and on") {
		t.Errorf("Description starts %.40q and ends %q", d, d[len(d)-60:])
	}
	if p.Get("Architecture") != "all" || len(p) != 4 {
		t.Errorf("fields after the long one: %d fields, Architecture %q", len(p), p.Get("Architecture"))
	}
	// Linear work, counted rather than timed: reading a field must not
	// allocate once per line (each allocation a copy of the field so
	// far, which made the reading quadratic).
	in := longField(20000)
	if allocs := testing.AllocsPerRun(1, func() { ParseControl(in) }); allocs > 200 {
		t.Errorf("reading a field of 20,000 lines took %.0f allocations; want a few dozen", allocs)
	}
}

// BenchmarkLongField reads one field of n continuation lines: linear
// time means the 200,000-line case costs about 20 times the 10,000-line
// one.
func BenchmarkLongField(b *testing.B) {
	for _, n := range []int{10000, 50000, 200000} {
		in := longField(n)
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			b.SetBytes(int64(len(in)))
			for b.Loop() {
				if _, err := ParseControl(in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
