package bmap

import (
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Map is a parsed block map.
type Map struct {
	ImageSize int64
	BlockSize int64
	Ranges    []Range
}

// Parse reads a bmap (format 2.x with SHA-256 range checksums).
func Parse(r io.Reader) (*Map, error) {
	var doc struct {
		Version    string `xml:"version,attr"`
		ImageSize  int64  `xml:"ImageSize"`
		BlockSize  int64  `xml:"BlockSize"`
		ChecksumTy string `xml:"ChecksumType"`
		Ranges     []struct {
			Chksum string `xml:"chksum,attr"`
			Text   string `xml:",chardata"`
		} `xml:"BlockMap>Range"`
	}
	if err := xml.NewDecoder(r).Decode(&doc); err != nil {
		return nil, fmt.Errorf("bmap: %w", err)
	}
	if !strings.HasPrefix(doc.Version, "2.") || strings.TrimSpace(doc.ChecksumTy) != "sha256" || doc.BlockSize <= 0 {
		return nil, fmt.Errorf("bmap: version %q with %q checksums and block size %d: appliance reads format 2 with sha256", doc.Version, doc.ChecksumTy, doc.BlockSize)
	}
	m := &Map{ImageSize: doc.ImageSize, BlockSize: doc.BlockSize}
	for _, x := range doc.Ranges {
		text := strings.TrimSpace(x.Text)
		a, b, ok := strings.Cut(text, "-")
		if !ok {
			b = a
		}
		first, err1 := strconv.ParseInt(strings.TrimSpace(a), 10, 64)
		last, err2 := strconv.ParseInt(strings.TrimSpace(b), 10, 64)
		sum, err3 := hex.DecodeString(x.Chksum)
		if err1 != nil || err2 != nil || err3 != nil || len(sum) != 32 || last < first {
			return nil, fmt.Errorf("bmap: bad range %q", text)
		}
		rg := Range{First: first, Last: last}
		copy(rg.SHA256[:], sum)
		m.Ranges = append(m.Ranges, rg)
	}
	return m, nil
}

// Mapped is the number of bytes the map's ranges cover.
func (m *Map) Mapped() int64 {
	var n int64
	for _, r := range m.Ranges {
		n += (r.Last - r.First + 1) * m.BlockSize
	}
	return min(n, m.ImageSize)
}
