package spec

import (
	"bytes"
	"fmt"
	"io"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
)

// Report holds every diagnostic of one Load, sorted by place, with the
// sources needed to show them.
type Report struct {
	hcl.Diagnostics
	parser *hclparse.Parser
}

// add appends diagnostics, dropping exact repeats (a node block with
// count = 3 is decoded three times, but a mistake in it is one mistake),
// and keeps them sorted: those without a place first, then by file and
// position.
func (r *Report) add(diags hcl.Diagnostics) {
	type key struct {
		sev             hcl.DiagnosticSeverity
		summary, detail string
		rng             hcl.Range
	}
	seen := map[key]bool{}
	var out hcl.Diagnostics
	for _, d := range append(r.Diagnostics, diags...) {
		k := key{d.Severity, d.Summary, d.Detail, hcl.Range{}}
		if d.Subject != nil {
			k.rng = *d.Subject
		}
		if seen[k] {
			continue
		}
		seen[k] = true
		out = append(out, d)
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i].Subject, out[j].Subject
		switch {
		case a == nil || b == nil:
			return a == nil && b != nil
		case a.Filename != b.Filename:
			return a.Filename < b.Filename
		}
		return a.Start.Byte < b.Start.Byte
	})
	r.Diagnostics = out
}

// Count returns the number of errors and of warnings.
func (r *Report) Count() (errors, warnings int) {
	for _, d := range r.Diagnostics {
		if d.Severity == hcl.DiagError {
			errors++
		} else {
			warnings++
		}
	}
	return errors, warnings
}

// WriteText writes every diagnostic as file:line:col, severity, summary
// and detail, followed by the source line with the place underlined —
// except where the line may hold a secret.
func (r *Report) WriteText(w io.Writer) error {
	var buf bytes.Buffer
	for _, d := range r.Diagnostics {
		sev := "error"
		if d.Severity == hcl.DiagWarning {
			sev = "warning"
		}
		if d.Subject != nil {
			fmt.Fprintf(&buf, "%s:%d:%d: %s: %s\n", d.Subject.Filename, d.Subject.Start.Line, d.Subject.Start.Column, sev, d.Summary)
		} else {
			fmt.Fprintf(&buf, "%s: %s\n", sev, d.Summary)
		}
		if d.Detail != "" {
			fmt.Fprintf(&buf, "  %s\n", d.Detail)
		}
		if _, secret := d.Extra.(noSnippet); d.Subject != nil && !secret {
			r.snippet(&buf, *d.Subject)
		}
		buf.WriteString("\n")
	}
	_, err := w.Write(buf.Bytes())
	return err
}

// snippetWidth bounds the source shown under a diagnostic: a long line
// (a key pasted into a list) is cut to a window around the place.
const snippetWidth = 100

func (r *Report) snippet(buf *bytes.Buffer, rng hcl.Range) {
	if r.parser == nil {
		return
	}
	src, ok := r.parser.Sources()[rng.Filename]
	if !ok || rng.Start.Byte > len(src) {
		return
	}
	start := bytes.LastIndexByte(src[:rng.Start.Byte], '\n') + 1
	end := bytes.IndexByte(src[rng.Start.Byte:], '\n')
	if end < 0 {
		end = len(src)
	} else {
		end += rng.Start.Byte
	}
	line := []rune(strings.TrimRight(string(src[start:end]), "\r"))
	from := utf8.RuneCount(src[start:rng.Start.Byte])
	stop := min(max(rng.End.Byte, rng.Start.Byte), end)
	to := from + max(utf8.RuneCount(src[rng.Start.Byte:stop]), 1)

	// Window long lines around the place.
	lo, hi := 0, len(line)
	if len(line) > snippetWidth {
		lo = max(0, min(from-20, len(line)-snippetWidth))
		hi = min(len(line), lo+snippetWidth)
	}
	shown := string(line[lo:hi])
	lead := 0
	if lo > 0 {
		shown = "…" + shown
		lead = 1
	}
	if hi < len(line) {
		shown += "…"
	}
	var under strings.Builder
	for i := 0; i < lead; i++ {
		under.WriteRune(' ')
	}
	for _, c := range line[lo:min(max(from, lo), hi)] {
		if c == '\t' {
			under.WriteRune('\t')
		} else {
			under.WriteRune(' ')
		}
	}
	marks := max(min(to, hi)-max(from, lo), 1)
	num := fmt.Sprintf("%d", rng.Start.Line)
	fmt.Fprintf(buf, "  %s | %s\n", num, shown)
	fmt.Fprintf(buf, "  %s | %s%s\n", strings.Repeat(" ", len(num)), under.String(), strings.Repeat("^", marks))
}

// JSONDiagnostic is a diagnostic as validate --json prints it.
type JSONDiagnostic struct {
	Severity string     `json:"severity"`
	Summary  string     `json:"summary"`
	Detail   string     `json:"detail,omitempty"`
	Range    *JSONRange `json:"range,omitempty"`
}

// JSONRange is a place in a spec file; lines and columns count from 1.
type JSONRange struct {
	Filename string  `json:"filename"`
	Start    JSONPos `json:"start"`
	End      JSONPos `json:"end"`
}

// JSONPos is one position in a file.
type JSONPos struct {
	Line   int `json:"line"`
	Column int `json:"column"`
	Byte   int `json:"byte"`
}

// JSON returns the diagnostics for machine readers.
func (r *Report) JSON() []JSONDiagnostic {
	out := []JSONDiagnostic{}
	for _, d := range r.Diagnostics {
		j := JSONDiagnostic{Severity: "error", Summary: d.Summary, Detail: d.Detail}
		if d.Severity == hcl.DiagWarning {
			j.Severity = "warning"
		}
		if s := d.Subject; s != nil {
			j.Range = &JSONRange{Filename: s.Filename,
				Start: JSONPos{s.Start.Line, s.Start.Column, s.Start.Byte},
				End:   JSONPos{s.End.Line, s.End.Column, s.End.Byte}}
		}
		out = append(out, j)
	}
	return out
}
