package fat

import (
	"encoding/binary"
	"io"
	"time"
	"unicode/utf16"
)

var le = binary.LittleEndian

// lfnCount is how many long name entries a name takes: 13 UTF-16 units
// each.
func lfnCount(name string) int {
	return (len(utf16.Encode([]rune(name))) + 12) / 13
}

// dirBytes is the size of a directory's entries.
func dirBytes(n *node, label bool) int64 {
	count := 2 // "." and ".."
	if n.parent == nil {
		count = 0
		if label {
			count = 1
		}
	}
	for _, c := range n.children {
		count++
		if c.long {
			count += lfnCount(c.name)
		}
	}
	return max(int64(count)*entrySize, 1) // even an empty root has a cluster
}

// fatTime encodes t as FAT's date and time, in UTC with 2 s resolution;
// times outside FAT's 1980–2107 are clamped.
func fatTime(t time.Time) (date, tod uint16, tenths uint8) {
	t = t.UTC()
	if t.Year() < 1980 {
		t = time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	if t.Year() > 2107 {
		t = time.Date(2107, 12, 31, 23, 59, 58, 0, time.UTC)
	}
	date = uint16(t.Year()-1980)<<9 | uint16(t.Month())<<5 | uint16(t.Day())
	tod = uint16(t.Hour())<<11 | uint16(t.Minute())<<5 | uint16(t.Second()/2)
	// The creation time keeps the odd second, in hundredths.
	return date, tod, uint8(t.Second()%2) * 100
}

// putEntry writes a short directory entry.
func putEntry(b []byte, name [11]byte, attr, caseBits uint8, cluster uint32, size uint32, t time.Time) {
	copy(b[0:11], name[:])
	b[11] = attr
	b[12] = caseBits
	date, tod, tenths := fatTime(t)
	b[13] = tenths
	le.PutUint16(b[14:], tod)  // created
	le.PutUint16(b[16:], date) //
	le.PutUint16(b[18:], date) // accessed
	le.PutUint16(b[20:], uint16(cluster>>16))
	le.PutUint16(b[22:], tod) // written
	le.PutUint16(b[24:], date)
	le.PutUint16(b[26:], uint16(cluster))
	le.PutUint32(b[28:], size)
}

// shortSum is the checksum of a short name that its long name entries
// carry.
func shortSum(name [11]byte) uint8 {
	var s uint8
	for _, c := range name {
		s = (s&1)<<7 + s>>1 + c
	}
	return s
}

// putLFN writes a name's long name entries, last part first, as they
// come before the short entry; it returns the bytes used.
func putLFN(b []byte, name string, short [11]byte) int {
	units := utf16.Encode([]rune(name))
	count := (len(units) + 12) / 13
	sum := shortSum(short)
	for i := count; i >= 1; i-- {
		e := b[(count-i)*entrySize:]
		seq := uint8(i)
		if i == count {
			seq |= 0x40
		}
		e[0] = seq
		e[11] = attrLFN
		e[13] = sum
		for k := range 13 {
			j := (i-1)*13 + k
			u := uint16(0xFFFF) // padding after the terminator
			if j < len(units) {
				u = units[j]
			} else if j == len(units) {
				u = 0
			}
			var off int
			switch {
			case k < 5:
				off = 1 + 2*k
			case k < 11:
				off = 14 + 2*(k-5)
			default:
				off = 28 + 2*(k-11)
			}
			le.PutUint16(e[off:], u)
		}
	}
	return count * entrySize
}

// dirData encodes a directory's clusters.
func dirData(n *node, root *node, label string, clusterBytes int64) []byte {
	b := make([]byte, int64(n.clusters)*clusterBytes)
	off := 0
	t := n.e.MTime
	if n == root {
		if label != noLabel {
			var l [11]byte
			copy(l[:], label)
			putEntry(b, l, attrLabel, 0, 0, 0, t)
			off += entrySize
		}
	} else {
		dot := [11]byte{'.', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '}
		putEntry(b[off:], dot, attrDir, 0, n.first, 0, t)
		dot[1] = '.'
		parent := n.parent.first
		if n.parent == root {
			parent = 0 // ".." of a top directory names the root as 0
		}
		putEntry(b[off+entrySize:], dot, attrDir, 0, parent, 0, t)
		off += 2 * entrySize
	}
	for _, c := range n.children {
		if c.long {
			off += putLFN(b[off:], c.name, c.short)
		}
		attr, size := uint8(attrArchive), uint32(c.e.Size)
		if c.e.Dir {
			attr, size = attrDir, 0
		}
		putEntry(b[off:], c.short, attr, c.caseBits, c.first, size, c.e.MTime)
		off += entrySize
	}
	return b
}

// writeHead writes the reserved sectors: boot sector, FSInfo and their
// backups, zeros in between.
func writeHead(w io.WriterAt, g *geometry, opts Options, label string, next uint32) error {
	b := make([]byte, g.reserved*sectorSize)
	bs := b[:sectorSize]
	copy(bs, []byte{0xEB, 0x58, 0x90})
	copy(bs[3:11], "MSWIN4.1") // the OEM name the FAT specification recommends
	le.PutUint16(bs[0x0B:], sectorSize)
	bs[0x0D] = uint8(g.perCluster)
	le.PutUint16(bs[0x0E:], uint16(g.reserved))
	bs[0x10] = numFATs
	bs[0x15] = 0xF8 // fixed disk
	le.PutUint16(bs[0x18:], 63)
	le.PutUint16(bs[0x1A:], 255)
	le.PutUint32(bs[0x1C:], opts.HiddenSectors)
	le.PutUint32(bs[0x20:], g.sectors)
	le.PutUint32(bs[0x24:], g.fatSectors)
	le.PutUint32(bs[0x2C:], rootCluster)
	le.PutUint16(bs[0x30:], 1) // FSInfo sector
	le.PutUint16(bs[0x32:], 6) // backup boot sector
	bs[0x40] = 0x80
	bs[0x42] = 0x29
	le.PutUint32(bs[0x43:], opts.VolumeID)
	copy(bs[0x47:0x52], label)
	copy(bs[0x52:0x5A], "FAT32   ")
	bs[0x1FE], bs[0x1FF] = 0x55, 0xAA

	fi := b[sectorSize : 2*sectorSize]
	le.PutUint32(fi[0:], 0x41615252)
	le.PutUint32(fi[484:], 0x61417272)
	le.PutUint32(fi[488:], g.clusters-(next-2)) // free clusters
	nextFree := next
	if next-2 >= g.clusters {
		nextFree = 0xFFFFFFFF
	}
	le.PutUint32(fi[492:], nextFree)
	le.PutUint32(fi[508:], 0xAA550000)

	copy(b[6*sectorSize:], b[:2*sectorSize]) // backups
	_, err := w.WriteAt(b, 0)
	return err
}

// writeFATs writes both FATs whole: free entries must read as zero on the
// card too, where the image is written only where it has data.
func writeFATs(w io.WriterAt, g *geometry, nodes []*node, next uint32) error {
	fat := make([]byte, int64(g.fatSectors)*sectorSize)
	le.PutUint32(fat[0:], 0x0FFFFFF8)
	le.PutUint32(fat[4:], fatEOC)
	for _, n := range nodes {
		for i := range n.clusters {
			c := n.first + i
			v := c + 1
			if i == n.clusters-1 {
				v = fatEOC
			}
			le.PutUint32(fat[4*c:], v)
		}
	}
	for i := range int64(numFATs) {
		if _, err := w.WriteAt(fat, int64(g.reserved)*sectorSize+i*int64(len(fat))); err != nil {
			return err
		}
	}
	return nil
}
