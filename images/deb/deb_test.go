package deb

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/appliance/appliance/images/fixture"
)

func sample(comp string) *fixture.Deb {
	return &fixture.Deb{Name: "s", Version: "1", Arch: "arm64", Compression: comp,
		Members: map[string]string{"postinst": "#!/bin/sh\n"},
		Files: []fixture.File{
			{Path: "./usr/", Type: tar.TypeDir},
			{Path: "./usr/big", Body: strings.Repeat("appliance ", 100000)},
			{Path: "./usr/link", Type: tar.TypeSymlink, Link: "big"},
		}}
}

// list reads a .deb and describes its members.
func list(t *testing.T, b []byte) (string, error) {
	t.Helper()
	p, err := Read(bytes.NewReader(b))
	if err != nil {
		return "", err
	}
	var out strings.Builder
	fmt.Fprintf(&out, "control %d bytes, postinst %q\n", len(p.Control), p.Member("postinst"))
	err = p.Data(func(h *tar.Header, body io.Reader) error {
		n, err := io.Copy(io.Discard, body)
		fmt.Fprintf(&out, "%s %c %d %s\n", h.Name, h.Typeflag, n, h.Linkname)
		return err
	})
	return out.String(), err
}

// TestCompressions reads the same package in every compression, xz both
// through the host's xz and the Go decoder.
func TestCompressions(t *testing.T) {
	defer func(v bool) { PureGo = v }(PureGo)
	var want string
	for _, c := range []string{"none", "gz", "zst", "xz", "xz-go"} {
		PureGo = c == "xz-go"
		got, err := list(t, sample(strings.TrimSuffix(c, "-go")).Build())
		if err != nil {
			t.Fatalf("%s: %v", c, err)
		}
		if want == "" {
			want = got
			if !strings.Contains(got, "./usr/big 0 1000000") {
				t.Fatalf("unexpected listing:\n%s", got)
			}
		} else if got != want {
			t.Errorf("%s reads as\n%s\nwant\n%s", c, got, want)
		}
	}
}

// TestDamaged: a truncated or corrupted archive is an error, never a
// short read taken for the end.
func TestDamaged(t *testing.T) {
	defer func(v bool) { PureGo = v }(PureGo)
	for _, c := range []string{"gz", "zst", "xz", "xz-go"} {
		PureGo = c == "xz-go"
		b := sample(strings.TrimSuffix(c, "-go")).Build()
		for name, bad := range map[string][]byte{
			"truncated": b[:len(b)-len(b)/3],
			"flipped":   flip(b, len(b)-len(b)/4),
		} {
			if _, err := list(t, bad); err == nil {
				t.Errorf("%s %s: read without error", c, name)
			}
		}
	}
	for _, bad := range [][]byte{[]byte("not a deb at all"), []byte("!<arch>\n")} {
		if _, err := Read(bytes.NewReader(bad)); err == nil {
			t.Errorf("%q read as a .deb", bad)
		}
	}
}

func flip(b []byte, i int) []byte {
	c := append([]byte{}, b...)
	c[i] ^= 0x55
	return c
}
