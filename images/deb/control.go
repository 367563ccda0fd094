package deb

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strings"
)

// Field is one field of a control paragraph. Value keeps continuation
// lines exactly as written (newline, leading space and all), so a
// paragraph written back is byte for byte what was read — what dpkg's
// status file needs of a package's control file.
type Field struct {
	Name  string
	Value string
}

// Paragraph is a control paragraph (a package's control file, one
// stanza of a Packages index or of dpkg's status) in field order.
//
// pault.ag/go/debian's control reader would do, but it imports the
// golang.org/x/crypto/openpgp package, which x/crypto no longer ships,
// and it rewrites continuation lines.
type Paragraph []Field

// Get returns a field's value with surrounding space trimmed; field
// names are case-insensitive.
func (p Paragraph) Get(name string) string {
	for _, f := range p {
		if strings.EqualFold(f.Name, name) {
			return strings.TrimSpace(f.Value)
		}
	}
	return ""
}

// ParagraphReader reads paragraphs one at a time, in time linear in
// their size: a field's continuation lines are gathered in one buffer
// and made a string once, when the field ends (appending each line to
// a string would copy the field once per line, and a field of 200,000
// lines — 10 MB — would take minutes).
type ParagraphReader struct {
	r    *bufio.Reader
	line int
	// value gathers the value of the field being read.
	value []byte
}

// NewParagraphReader reads paragraphs from r.
func NewParagraphReader(r io.Reader) *ParagraphReader {
	return &ParagraphReader{r: bufio.NewReaderSize(r, 256<<10)}
}

// Line is the number of the last line read, for messages.
func (pr *ParagraphReader) Line() int { return pr.line }

// Next returns the next paragraph, or io.EOF after the last.
func (pr *ParagraphReader) Next() (Paragraph, error) {
	var p Paragraph
	// end closes the field being read: its value becomes a string.
	end := func() Paragraph {
		if len(p) > 0 {
			p[len(p)-1].Value = string(pr.value)
		}
		pr.value = pr.value[:0]
		return p
	}
	for {
		line, err := pr.r.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			// A very long line: fall back to an allocating read.
			rest, err2 := pr.r.ReadBytes('\n')
			line = append(append([]byte{}, line...), rest...)
			err = err2
		}
		if len(line) == 0 && err != nil {
			if err == io.EOF && len(p) > 0 {
				return end(), nil
			}
			return nil, err
		}
		pr.line++
		l := bytes.TrimRight(line, "\r\n")
		switch {
		case len(bytes.TrimSpace(l)) == 0:
			if len(p) > 0 {
				return end(), nil
			}
		case l[0] == '#':
			// dpkg allows comments in control files.
		case l[0] == ' ' || l[0] == '\t':
			if len(p) == 0 {
				return nil, fmt.Errorf("line %d: continuation line before any field", pr.line)
			}
			pr.value = append(append(pr.value, '\n'), l...)
		default:
			i := bytes.IndexByte(l, ':')
			if i <= 0 {
				return nil, fmt.Errorf("line %d: %q is not a field", pr.line, truncate(l, 80))
			}
			if !validFieldName(l[:i]) {
				return nil, fmt.Errorf("line %d: %q is not a field name", pr.line, truncate(l[:i], 80))
			}
			end()
			p = append(p, Field{Name: string(l[:i])})
			pr.value = append(pr.value, bytes.TrimLeft(l[i+1:], " \t")...)
		}
		if err == io.EOF {
			if len(p) > 0 {
				return end(), nil
			}
			return nil, io.EOF
		}
		if err != nil {
			return nil, err
		}
	}
}

// validFieldName reports whether a field name is one deb822 allows:
// printable US-ASCII other than space and colon, not starting with
// "#" or "-" (Debian Policy 5.1).
func validFieldName(b []byte) bool {
	if len(b) == 0 || b[0] == '#' || b[0] == '-' {
		return false
	}
	for _, c := range b {
		if c <= ' ' || c > '~' || c == ':' {
			return false
		}
	}
	return true
}

// truncate shortens b for a message.
func truncate(b []byte, n int) string {
	if len(b) <= n {
		return string(b)
	}
	return string(b[:n]) + "…"
}

// ParseControl reads a single paragraph, such as a package's control
// file.
func ParseControl(b []byte) (Paragraph, error) {
	p, err := NewParagraphReader(bytes.NewReader(b)).Next()
	if err == io.EOF {
		return nil, fmt.Errorf("empty control file")
	}
	return p, err
}

// WriteTo writes the paragraph in control-file form, without the blank
// line that separates paragraphs.
func (p Paragraph) WriteTo(w io.Writer) (int64, error) {
	var b strings.Builder
	for _, f := range p {
		b.WriteString(f.Name)
		b.WriteString(":")
		if f.Value != "" && !strings.HasPrefix(f.Value, "\n") {
			b.WriteString(" ")
		}
		b.WriteString(f.Value)
		b.WriteString("\n")
	}
	n, err := io.WriteString(w, b.String())
	return int64(n), err
}
