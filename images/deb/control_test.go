package deb

import (
	"bytes"
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
