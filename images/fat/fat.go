// Package fat writes a FAT32 file system image from a list of entries:
// the boot partition the Raspberry Pi firmware reads.
//
// Like images/ext4 it plans everything first and then writes: the
// reserved sectors, both FATs in full, directories, then file contents
// streamed. Names that are not plain 8.3 get VFAT long names. Nothing
// random and no clock: the same entries and Options give the same bytes.
//
// Time stamps: FAT stores a local date and time with 2-second resolution
// and no time zone. The writer stores the entries' times in UTC, rounded
// down to even seconds; Linux's vfat (whose time zone is UTC unless the
// system sets one, as on the gateway) and mtools read them back so.
package fat

import (
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"
	"time"
	"unicode/utf16"
	"unicode/utf8"
)

// Entry is one file or directory.
type Entry struct {
	// Path is absolute and clean ("/overlays/vc4-kms-v3d.dtbo"); a
	// directory comes before anything in it.
	Path string
	Dir  bool
	// MTime is stored in UTC, rounded down to even seconds; "/" may be
	// given to set the volume label's time.
	MTime time.Time
	// Size and Open give a file's content; Open is called once, during
	// Write, and must yield exactly Size bytes (under 4 GiB).
	Size int64
	Open func() (io.ReadCloser, error)
}

// Options describe the file system as a whole.
type Options struct {
	// Size of the partition in bytes, rounded down to 512-byte sectors.
	// FAT32 needs at least 65525 clusters: from about 34 MiB.
	Size int64
	// Label is the volume label: at most 11 characters of A–Z, 0–9,
	// space and !#$%&'()-@^_`{}~; lower case is turned upper, as DOS does.
	Label string
	// VolumeID is the volume serial number (shown as XXXX-XXXX); derive
	// it from the site so it is stable.
	VolumeID uint32
	// HiddenSectors is the partition's first sector on the disk, which the
	// boot sector records.
	HiddenSectors uint32
}

const (
	sectorSize      = 512
	reservedSectors = 32
	numFATs         = 2
	minClusters     = 65525 // fewer, and it is FAT16 by definition
	maxClusters     = 0x0FFFFFF5 - 2
	maxDirEntries   = 65536 // the most a FAT directory may hold
	rootCluster     = 2
	entrySize       = 32
	fatEOC          = 0x0FFFFFFF
	maxFileSize     = 1<<32 - 1

	attrDir     = 0x10
	attrArchive = 0x20
	attrLabel   = 0x08
	attrLFN     = 0x0F
)

// node is a planned file or directory.
type node struct {
	e        *Entry
	name     string
	short    [11]byte
	caseBits uint8 // lower-case base/extension flags of a plain 8.3 name
	long     bool  // needs VFAT long name entries
	children []*node
	parent   *node
	first    uint32 // first cluster, 0 for an empty file
	clusters uint32
}

// geometry of the volume.
type geometry struct {
	sectors    uint32
	perCluster uint32 // sectors per cluster
	reserved   uint32
	fatSectors uint32
	clusters   uint32 // data clusters, numbered from 2
}

func (g *geometry) clusterBytes() int64 { return int64(g.perCluster) * sectorSize }
func (g *geometry) dataStart() int64 {
	return int64(g.reserved+numFATs*g.fatSectors) * sectorSize
}
func (g *geometry) clusterOffset(c uint32) int64 {
	return g.dataStart() + int64(c-2)*g.clusterBytes()
}

// newGeometry picks the largest cluster up to 4 KiB that still makes the
// volume FAT32, and aligns the data area to 4 KiB for the card's sake.
func newGeometry(size int64) (*geometry, error) {
	if size/sectorSize > 1<<32-1 {
		return nil, fmt.Errorf("fat: Size %d is too big for this writer", size)
	}
	if size < 0 {
		size = 0
	}
	for spc := uint32(8); spc >= 1; spc /= 2 {
		g := &geometry{sectors: uint32(size / sectorSize), perCluster: spc, reserved: reservedSectors}
		fat := uint32(1)
		for {
			if g.sectors < g.reserved+numFATs*fat {
				break
			}
			clusters := (g.sectors - g.reserved - numFATs*fat) / spc
			need := uint32(ceilDiv(int64(clusters+2)*4, sectorSize))
			if need <= fat {
				break
			}
			fat = need
		}
		g.fatSectors = fat
		g.reserved += (8 - (g.reserved+numFATs*fat)%8) % 8
		if g.sectors > g.reserved+numFATs*fat {
			g.clusters = (g.sectors - g.reserved - numFATs*fat) / spc
		}
		if g.clusters > maxClusters {
			return nil, fmt.Errorf("fat: Size %d has too many clusters for FAT32; give at most 1 TiB", size)
		}
		if g.clusters >= minClusters+16 {
			return g, nil
		}
	}
	return nil, fmt.Errorf("fat: Size %d is too small for FAT32; give at least 34 MiB", size)
}

func ceilDiv(a, b int64) int64 { return (a + b - 1) / b }

// Write writes the file system for entries to w, which must read as zeros
// wherever Write does not write (a new or truncated file): free clusters
// are left unwritten.
func Write(w io.WriterAt, entries []Entry, opts Options) error {
	label, err := volumeLabel(opts.Label)
	if err != nil {
		return err
	}
	g, err := newGeometry(opts.Size)
	if err != nil {
		return err
	}
	root, nodes, err := collect(entries)
	if err != nil {
		return err
	}
	// Directories first, then files, each in one run of clusters.
	next := uint32(rootCluster)
	alloc := func(n *node, bytes int64) error {
		n.clusters = uint32(ceilDiv(bytes, g.clusterBytes()))
		if n.clusters == 0 {
			return nil
		}
		if int64(next-2)+int64(n.clusters) > int64(g.clusters) {
			return fmt.Errorf("fat: the entries do not fit in %d MiB; give a bigger Size", opts.Size>>20)
		}
		n.first = next
		next += n.clusters
		return nil
	}
	for _, n := range nodes {
		if n.e.Dir {
			if b := dirBytes(n, label != noLabel); b > maxDirEntries*entrySize {
				return fmt.Errorf("fat: %s has more entries than FAT's %d (long names take several); split it", n.e.Path, maxDirEntries)
			}
			if err := alloc(n, dirBytes(n, label != noLabel)); err != nil {
				return err
			}
		}
	}
	for _, n := range nodes {
		if !n.e.Dir {
			if err := alloc(n, n.e.Size); err != nil {
				return err
			}
		}
	}
	if err := writeHead(w, g, opts, label, next); err != nil {
		return fmt.Errorf("fat: %w", err)
	}
	if err := writeFATs(w, g, nodes, next); err != nil {
		return fmt.Errorf("fat: %w", err)
	}
	for _, n := range nodes {
		if n.e.Dir {
			b := dirData(n, root, label, g.clusterBytes())
			if _, err := w.WriteAt(b, g.clusterOffset(n.first)); err != nil {
				return fmt.Errorf("fat: %w", err)
			}
		}
	}
	buf := make([]byte, 1<<20)
	for _, n := range nodes {
		if !n.e.Dir && n.first != 0 {
			if err := copyFile(w, g.clusterOffset(n.first), n.e, buf); err != nil {
				return fmt.Errorf("fat: %s: %w", n.e.Path, err)
			}
		}
	}
	return nil
}

func copyFile(w io.WriterAt, off int64, e *Entry, buf []byte) error {
	r, err := e.Open()
	if err != nil {
		return err
	}
	defer r.Close()
	left := e.Size
	for left > 0 {
		want := min(int64(len(buf)), left)
		got, err := io.ReadFull(r, buf[:want])
		if err != nil {
			return fmt.Errorf("content is %d bytes, not its Size %d: %w", e.Size-left+int64(got), e.Size, err)
		}
		if _, err := w.WriteAt(buf[:want], off); err != nil {
			return err
		}
		off += want
		left -= want
	}
	var one [1]byte
	if k, _ := r.Read(one[:]); k > 0 {
		return errors.New("content is longer than its Size")
	}
	return nil
}

const noLabel = "NO NAME    "

func volumeLabel(s string) (string, error) {
	if s == "" {
		return noLabel, nil
	}
	s = strings.ToUpper(s)
	if len(s) > 11 {
		return "", fmt.Errorf("fat: label %q is longer than 11 characters", s)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c != ' ' && !shortChar(c) {
			return "", fmt.Errorf("fat: label %q: %q is not allowed; use A–Z, 0–9, space and !#$%%&'()-@^_`{}~", s, c)
		}
	}
	return s + strings.Repeat(" ", 11-len(s)), nil
}

// shortChar tells whether c may appear in an 8.3 name (upper case).
func shortChar(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'()-@^_`{}~", c) >= 0
}

func collect(entries []Entry) (*node, []*node, error) {
	root := &node{e: &Entry{Path: "/", Dir: true}}
	byPath := map[string]*node{"/": root}
	folded := map[string]string{"/": "/"} // FAT names ignore case
	nodes := []*node{root}
	for i := range entries {
		e := &entries[i]
		if e.Path == "/" {
			if i != 0 || !e.Dir {
				return nil, nil, errors.New("fat: \"/\" must be the first entry and a directory")
			}
			root.e = e
			continue
		}
		if !strings.HasPrefix(e.Path, "/") || path.Clean(e.Path) != e.Path {
			return nil, nil, fmt.Errorf("fat: %s: path must be absolute and clean", e.Path)
		}
		name := path.Base(e.Path)
		if err := checkName(name); err != nil {
			return nil, nil, fmt.Errorf("fat: %s: %w", e.Path, err)
		}
		if other, ok := folded[strings.ToUpper(e.Path)]; ok {
			return nil, nil, fmt.Errorf("fat: %s and %s are the same name to FAT, which ignores case", other, e.Path)
		}
		parent := byPath[path.Dir(e.Path)]
		if parent == nil || !parent.e.Dir {
			return nil, nil, fmt.Errorf("fat: %s: its directory %s is not listed before it; list parents first", e.Path, path.Dir(e.Path))
		}
		if !e.Dir {
			if e.Size < 0 || e.Size > maxFileSize {
				return nil, nil, fmt.Errorf("fat: %s: size %d is outside FAT's 0 to 4 GiB-1", e.Path, e.Size)
			}
			if e.Size > 0 && e.Open == nil {
				return nil, nil, fmt.Errorf("fat: %s: file without Open", e.Path)
			}
		}
		n := &node{e: e, name: name, parent: parent}
		byPath[e.Path] = n
		folded[strings.ToUpper(e.Path)] = e.Path
		parent.children = append(parent.children, n)
		nodes = append(nodes, n)
	}
	for _, n := range nodes {
		if n.e.Dir {
			slices.SortFunc(n.children, func(a, b *node) int { return strings.Compare(a.name, b.name) })
			shortNames(n.children)
		}
	}
	return root, nodes, nil
}

func checkName(name string) error {
	if !utf8.ValidString(name) {
		return errors.New("name is not UTF-8")
	}
	if len(utf16.Encode([]rune(name))) > 255 {
		return errors.New("name is longer than FAT's 255 UTF-16 units")
	}
	for _, r := range name {
		if r < 0x20 || strings.ContainsRune(`"*/:<>?\|`, r) || r == 0x7F {
			return fmt.Errorf("%q is not allowed in a FAT name", r)
		}
	}
	if strings.HasSuffix(name, ".") || strings.HasSuffix(name, " ") {
		return errors.New("FAT drops a trailing dot or space; rename it")
	}
	return nil
}

// plain83 tells whether name is a valid 8.3 name with each part in one
// case, which needs no long name entries: the NT case bits keep the case.
func plain83(name string) (short [11]byte, caseBits uint8, ok bool) {
	base, ext, dotted := strings.Cut(name, ".")
	if len(base) == 0 || len(base) > 8 || len(ext) > 3 || (dotted && ext == "") || strings.Contains(ext, ".") {
		return short, 0, false
	}
	part := func(s string, lowerBit uint8) (string, bool) {
		hasLower, hasUpper := false, false
		for i := 0; i < len(s); i++ {
			c := s[i]
			switch {
			case c >= 'a' && c <= 'z':
				hasLower = true
			case c >= 'A' && c <= 'Z':
				hasUpper = true
			case !shortChar(c):
				return "", false
			}
		}
		if hasLower && hasUpper {
			return "", false
		}
		if hasLower {
			caseBits |= lowerBit
		}
		return strings.ToUpper(s), true
	}
	b, ok1 := part(base, 0x08)
	x, ok2 := part(ext, 0x10)
	if !ok1 || !ok2 {
		return short, 0, false
	}
	copy(short[:], fmt.Sprintf("%-8s%-3s", b, x))
	return short, caseBits, true
}

// shortNames gives each child its 8.3 name: its own if it is a plain 8.3
// name, else a generated BASIS~N, unique in the directory.
func shortNames(children []*node) {
	taken := map[[11]byte]bool{}
	for _, c := range children {
		if s, bits, ok := plain83(c.name); ok {
			c.short, c.caseBits = s, bits
			taken[s] = true
		}
	}
	for _, c := range children {
		if _, _, ok := plain83(c.name); ok {
			continue
		}
		c.long = true
		base, ext := strings.TrimLeft(c.name, "."), ""
		if i := strings.LastIndexByte(base, '.'); i > 0 {
			base, ext = base[:i], base[i+1:]
		}
		b, x := shortPart(base), shortPart(ext)
		if b == "" {
			b = "_"
		}
		if len(x) > 3 {
			x = x[:3]
		}
		for n := 1; ; n++ {
			tail := fmt.Sprintf("~%d", n)
			cand := b[:min(len(b), 8-len(tail))] + tail
			var s [11]byte
			copy(s[:], fmt.Sprintf("%-8s%-3s", cand, x))
			if !taken[s] {
				c.short = s
				taken[s] = true
				break
			}
		}
	}
}

// shortPart maps a long name's part to 8.3 characters: upper case, spaces
// and dots dropped, anything else not allowed turned into '_'.
func shortPart(s string) string {
	var b strings.Builder
	for _, r := range strings.ToUpper(s) {
		switch {
		case r == ' ' || r == '.':
		case r < 0x80 && shortChar(byte(r)):
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	return b.String()
}
