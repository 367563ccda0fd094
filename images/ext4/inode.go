package ext4

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"slices"
	"strings"
	"time"
)

var le = binary.LittleEndian

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// crc32c is the kernel's crc32c_le: no inversion on the way in or out,
// which hash/crc32 does, so undo it.
func crc32c(crc uint32, p []byte) uint32 { return ^crc32.Update(^crc, castagnoli, p) }

const (
	fastSymlinkMax = 60 // targets shorter than this live in the inode

	flagExtents = 0x80000

	modeFIFO   = 0x1000
	modeChr    = 0x2000
	modeDir    = 0x4000
	modeBlk    = 0x6000
	modeReg    = 0x8000
	modeLink   = 0xA000
	modeSocket = 0xC000

	extraIsize   = 32
	xattrStart   = 128 + extraIsize // in-inode extended attributes
	xattrMagic   = 0xEA020000
	extentMagic  = 0xF30A
	inodeCsumLo  = 0x7C
	inodeCsumHi  = 0x82
	dirTailSize  = 12
	dirTailType  = 0xDE
	dirBlockData = BlockSize - dirTailSize
)

func unixMode(n *node) uint16 {
	m := n.e.Mode
	bits := uint16(m.Perm())
	if m&fs.ModeSetuid != 0 {
		bits |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		bits |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		bits |= 0o1000
	}
	switch n.e.Type {
	case Regular:
		bits |= modeReg
	case Dir:
		bits |= modeDir
	case Symlink:
		bits |= modeLink
	case CharDev:
		bits |= modeChr
	case BlockDev:
		bits |= modeBlk
	case FIFO:
		bits |= modeFIFO
	case Socket:
		bits |= modeSocket
	}
	return bits
}

// The range of ext4's timestamps with extra_isize: a signed 32-bit count
// of seconds widened by two epoch bits, 1901-12-13T20:45:52Z to
// 2446-05-10T22:38:55Z.
const (
	minTime = -1 << 31
	maxTime = 1<<34 - 1<<31 - 1
)

// putTime stores t as ext4 does with extra_isize: 32 bits of seconds in
// the inode, two epoch bits (years past 2038) and nanoseconds in extra.
// A time outside the range is clamped to its end with no nanoseconds, as
// the kernel's timestamp_truncate does, instead of wrapping around.
func putTime(b []byte, off, extraOff int, t time.Time) {
	sec := t.Unix()
	if sec < minTime || sec > maxTime {
		t = time.Unix(min(max(sec, minTime), maxTime), 0)
		sec = t.Unix()
	}
	le.PutUint32(b[off:], uint32(sec))
	epoch := uint32((sec-int64(int32(sec)))>>32) & 3
	le.PutUint32(b[extraOff:], uint32(t.Nanosecond())<<2|epoch)
}

// inodeBase fills what every inode has: mode, owner, times, links.
func inodeBase(b []byte, mode uint16, uid, gid uint32, t time.Time, links uint32) {
	le.PutUint16(b[0x00:], mode)
	le.PutUint16(b[0x02:], uint16(uid))
	le.PutUint16(b[0x78:], uint16(uid>>16))
	le.PutUint16(b[0x18:], uint16(gid))
	le.PutUint16(b[0x7A:], uint16(gid>>16))
	le.PutUint16(b[0x1A:], uint16(links))
	le.PutUint16(b[0x80:], extraIsize)
	putTime(b, 0x08, 0x8C, t) // atime
	putTime(b, 0x0C, 0x84, t) // ctime
	putTime(b, 0x10, 0x88, t) // mtime
	putTime(b, 0x90, 0x94, t) // crtime
}

func setSize(b []byte, size uint64) {
	le.PutUint32(b[0x04:], uint32(size))
	le.PutUint32(b[0x6C:], uint32(size>>32))
}

// setBlocks stores the inode's block count in 512-byte sectors.
func setBlocks(b []byte, blocks uint64) {
	sectors := blocks * (BlockSize / 512)
	le.PutUint32(b[0x1C:], uint32(sectors))
	le.PutUint16(b[0x74:], uint16(sectors>>32))
}

// inodeSeed is the checksum seed of everything that belongs to an inode.
func (p *plan) inodeSeed(ino, gen uint32) uint32 {
	var b [4]byte
	le.PutUint32(b[:], ino)
	c := crc32c(p.seed, b[:])
	le.PutUint32(b[:], gen)
	return crc32c(c, b[:])
}

// sealInode sets the inode's checksum; the checksum fields must be zero.
func (p *plan) sealInode(b []byte, ino uint32) {
	c := crc32c(p.inodeSeed(ino, le.Uint32(b[0x64:])), b[:inodeSize])
	le.PutUint16(b[inodeCsumLo:], uint16(c))
	le.PutUint16(b[inodeCsumHi:], uint16(c>>16))
}

// extent is one mapped range of a file.
type extent struct {
	logical uint32
	start   uint64
	n       uint16
}

func splitExtents(runs []run) []extent {
	var out []extent
	var logical uint64
	for _, r := range runs {
		for off := uint64(0); off < r.n; off += maxExtentLen {
			n := min(r.n-off, maxExtentLen)
			out = append(out, extent{uint32(logical + off), r.start + off, uint16(n)})
		}
		logical += r.n
	}
	return out
}

func extentCount(runs []run) int { return len(splitExtents(runs)) }

func putExtentHeader(b []byte, entries, maxEntries, depth uint16) {
	le.PutUint16(b[0:], extentMagic)
	le.PutUint16(b[2:], entries)
	le.PutUint16(b[4:], maxEntries)
	le.PutUint16(b[6:], depth)
}

func putExtent(b []byte, e extent) {
	le.PutUint32(b[0:], e.logical)
	le.PutUint16(b[4:], e.n)
	le.PutUint16(b[6:], uint16(e.start>>32))
	le.PutUint32(b[8:], uint32(e.start))
}

// extentTree writes a node's extent tree: into the inode's i_block if it
// fits, else an index there and leaf blocks, which it returns by block.
func (p *plan) extentTree(ib []byte, n *node) map[uint64][]byte {
	ext := splitExtents(n.runs)
	if len(n.leaves) == 0 {
		putExtentHeader(ib, uint16(len(ext)), extentsInInode, 0)
		for i, e := range ext {
			putExtent(ib[12+12*i:], e)
		}
		return nil
	}
	leaves := map[uint64][]byte{}
	putExtentHeader(ib, uint16(len(n.leaves)), extentsInInode, 1)
	seed := p.inodeSeed(n.ino, 0)
	for i, blk := range n.leaves {
		part := ext[i*extentsInLeaf : min(len(ext), (i+1)*extentsInLeaf)]
		idx := ib[12+12*i:]
		le.PutUint32(idx[0:], part[0].logical)
		le.PutUint32(idx[4:], uint32(blk))
		le.PutUint16(idx[8:], uint16(blk>>32))
		b := make([]byte, BlockSize)
		putExtentHeader(b, uint16(len(part)), extentsInLeaf, 0)
		for j, e := range part {
			putExtent(b[12+12*j:], e)
		}
		tail := 12 + 12*extentsInLeaf
		le.PutUint32(b[tail:], crc32c(seed, b[:tail]))
		leaves[blk] = b
	}
	return leaves
}

// inode encodes a planned node. Extent leaf blocks, if any, are returned
// to be written with the metadata.
func (p *plan) inode(b []byte, n *node) map[uint64][]byte {
	e := n.e
	t := e.MTime
	if t.IsZero() {
		t = p.opts.Time
	}
	inodeBase(b, unixMode(n), e.UID, e.GID, t, n.nlink)
	var leaves map[uint64][]byte
	ib := b[0x28 : 0x28+60]
	switch e.Type {
	case Regular, Dir:
		flags := uint32(flagExtents)
		if n.htree != nil {
			flags |= flagIndex
		}
		le.PutUint32(b[0x20:], flags)
		size := uint64(e.Size)
		if e.Type == Dir {
			size = n.blocks * BlockSize
		}
		setSize(b, size)
		setBlocks(b, n.blocks+uint64(len(n.leaves)))
		leaves = p.extentTree(ib, n)
	case Symlink:
		setSize(b, uint64(len(e.LinkTarget)))
		if n.blocks == 0 {
			copy(ib, e.LinkTarget)
		} else {
			le.PutUint32(b[0x20:], flagExtents)
			setBlocks(b, 1)
			leaves = p.extentTree(ib, n)
		}
	case CharDev, BlockDev:
		// The old encoding when it fits, as the kernel writes them.
		if e.Major < 256 && e.Minor < 256 {
			le.PutUint32(ib[0:], e.Major<<8|e.Minor)
		} else {
			le.PutUint32(ib[4:], e.Minor&0xff|e.Major<<8|(e.Minor&^0xff)<<12)
		}
	}
	off := xattrStart
	if len(n.xattrs) > 0 {
		putXattrs(b[off:inodeSize], n.xattrs)
	}
	p.sealInode(b, n.ino)
	return leaves
}

// xattr is one extended attribute, with its name split as ext4 stores it.
type xattr struct {
	index uint8
	name  string
	value []byte
}

// xattrPrefixes are the name prefixes ext4 stores as an index number.
var xattrPrefixes = []struct {
	prefix string
	index  uint8
}{
	{"user.", 1},
	{"trusted.", 4},
	{"security.", 6},
	{"system.", 7},
}

func align4(n int) int { return (n + 3) &^ 3 }

func encodeXattrs(m map[string][]byte) ([]xattr, error) {
	if len(m) == 0 {
		return nil, nil
	}
	var out []xattr
	space := inodeSize - xattrStart - 4 - 4 // magic, end marker
	for name, v := range m {
		if strings.HasPrefix(name, "system.posix_acl") {
			return nil, fmt.Errorf("xattr %s: POSIX ACLs are not supported", name)
		}
		x := xattr{value: v}
		for _, p := range xattrPrefixes {
			if strings.HasPrefix(name, p.prefix) {
				x.index, x.name = p.index, name[len(p.prefix):]
				break
			}
		}
		if x.index == 0 || x.name == "" || len(x.name) > 255 {
			return nil, fmt.Errorf("xattr %q: the name needs a user., trusted., security. or system. prefix", name)
		}
		space -= 16 + align4(len(x.name)) + align4(len(v))
		out = append(out, x)
	}
	if space < 0 {
		return nil, errors.New("extended attributes do not fit in the inode; this writer stores them only there (92 bytes)")
	}
	slices.SortFunc(out, func(a, b xattr) int {
		if a.index != b.index {
			return int(a.index) - int(b.index)
		}
		return strings.Compare(a.name, b.name)
	})
	return out, nil
}

// putXattrs writes the in-inode attribute area: magic, entries from the
// front, values from the back, offsets counted from the first entry.
func putXattrs(b []byte, xs []xattr) {
	le.PutUint32(b, xattrMagic)
	area := b[4:]
	entry, value := 0, len(area)
	for _, x := range xs {
		value -= align4(len(x.value))
		copy(area[value:], x.value)
		e := area[entry:]
		e[0] = uint8(len(x.name))
		e[1] = x.index
		if len(x.value) > 0 {
			le.PutUint16(e[2:], uint16(value))
		}
		le.PutUint32(e[8:], uint32(len(x.value)))
		le.PutUint32(e[12:], xattrHash(x.name, area[value:value+align4(len(x.value))]))
		copy(e[16:], x.name)
		entry += 16 + align4(len(x.name))
	}
}

// xattrHash is ext4's attribute entry hash, over the name and the value
// padded to whole words.
func xattrHash(name string, value []byte) uint32 {
	var h uint32
	for i := 0; i < len(name); i++ {
		h = h<<5 ^ h>>27 ^ uint32(name[i])
	}
	for i := 0; i+4 <= len(value); i += 4 {
		h = h<<16 ^ h>>16 ^ le.Uint32(value[i:])
	}
	return h
}
