// Package ext4 writes an ext4 file system image in one pass from a list
// of entries: the root file system of the gateway image.
//
// It is a write-once writer, not a file system implementation: the whole
// layout (inode numbers, block runs, directories) is planned from the
// entries before anything is written, then metadata and file contents
// are written with large positional writes, file contents streamed from
// their sources a chunk at a time. Nothing random and no clock: the same
// entries and Options give the same bytes.
//
// The result is what mke2fs -t ext4 would make on Debian (4 KiB blocks,
// 256-byte inodes, extents, flex_bg, 64bit, metadata_csum, a journal,
// resize_inode with reserved GDT blocks for 1024× online growth), so that
// e2fsck, the Linux kernel and resize2fs treat it as any other ext4.
//
// A directory that fits in one block is written linear; a larger one as
// an htree indexed by the half-MD4 hash of its names with Options.HashSeed
// (two levels from about 500 leaf blocks), as the kernel builds them.
package ext4

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"slices"
	"strings"
	"time"
)

// Type is the kind of an entry.
type Type uint8

// Entry types.
const (
	Regular Type = iota + 1
	Dir
	Symlink
	CharDev
	BlockDev
	FIFO
	Socket
)

func (t Type) String() string {
	switch t {
	case Regular:
		return "regular file"
	case Dir:
		return "directory"
	case Symlink:
		return "symlink"
	case CharDev:
		return "character device"
	case BlockDev:
		return "block device"
	case FIFO:
		return "fifo"
	case Socket:
		return "socket"
	}
	return fmt.Sprintf("type %d", uint8(t))
}

// Entry is one file system object.
type Entry struct {
	// Path is absolute and clean ("/usr/bin/sh"). A directory must come
	// before anything in it. "/" may be given to set the root's owner,
	// mode and time; it must then be first.
	Path string
	Type Type
	Mode fs.FileMode // permission bits, with fs.ModeSetuid, ModeSetgid, ModeSticky
	UID  uint32
	GID  uint32
	// MTime is used for mtime, ctime, atime and crtime; zero means
	// Options.Time. Times before 1901-12-13T20:45:52Z or after
	// 2446-05-10T22:38:55Z, which ext4 cannot hold, are clamped to that
	// range, as the kernel clamps them.
	MTime time.Time

	// Size and Open give a regular file's content. Open is called once,
	// during Write, and must yield exactly Size bytes. Every block of the
	// content is written: an Entry describes no holes, so a sparse file
	// becomes a full one.
	Size int64
	Open func() (io.ReadCloser, error)

	LinkTarget   string // Symlink
	Major, Minor uint32 // CharDev, BlockDev

	// HardLinkTo makes this path another name of an earlier entry that
	// is not a directory; every other field is then ignored.
	HardLinkTo string

	// Xattrs are extended attributes such as "security.capability" (file
	// capabilities). They are stored in the inode, so together they must
	// fit in its 92 spare bytes; POSIX ACLs are not supported.
	Xattrs map[string][]byte
}

// Options describe the file system as a whole.
type Options struct {
	// Size of the file system in bytes (the partition); rounded down to
	// whole 4 KiB blocks. A last block group too small to be useful is
	// left out, as mke2fs does.
	Size int64
	// Label is the volume label, at most 16 bytes.
	Label string
	// UUID of the file system. Derive it from the site, so it is stable.
	UUID [16]byte
	// HashSeed seeds the directory hash the kernel uses for the htree
	// indexes it builds.
	HashSeed [16]byte
	// Time is every time stamp not taken from an entry: the superblock's,
	// the journal's, the root's and lost+found's if not given.
	Time time.Time
	// ReservedBlocksPercent is kept for root (0–50). mke2fs uses 5.
	ReservedBlocksPercent int
	// InodeRatio is bytes of file system per inode; 0 means 16384 as
	// mke2fs. Raised automatically if the entries need more inodes. Each
	// block group keeps its inode count when the file system grows.
	InodeRatio int64
	// GrowTo is the largest size in bytes the file system must be able to
	// grow to online. Room for 1024× the initial size (at most 16 TiB) is
	// always reserved, as mke2fs does; set GrowTo to ask for more.
	GrowTo int64
}

// BlockSize is the file system block size.
const BlockSize = 4096

// Write writes the file system for entries to w, which must read as
// zeros wherever Write does not write (a new or truncated file): free
// blocks and unused inode table blocks are left unwritten, so a file
// stays sparse and its bmap small.
func Write(w io.WriterAt, entries []Entry, opts Options) error {
	p, err := newPlan(entries, opts)
	if err != nil {
		return err
	}
	if err := p.writeMetadata(w); err != nil {
		return fmt.Errorf("ext4: writing metadata: %w", err)
	}
	return p.writeContents(w)
}

// node is one inode being planned.
type node struct {
	e        *Entry
	ino      uint32
	name     string // in its parent
	children []*node
	subdirs  uint32
	nlink    uint32
	ftype    uint8 // directory entry file type
	blocks   uint64
	runs     []run
	leaves   []uint64 // extent tree leaf blocks
	xattrs   []xattr
	synth    bool   // made up here: root or lost+found not in the entries
	htree    *htree // a directory's index, if it has one
	hardlink *node
}

type run struct{ start, n uint64 }

func checkEntry(e *Entry) error {
	if e.Path != "/" {
		if !strings.HasPrefix(e.Path, "/") || path.Clean(e.Path) != e.Path {
			return errors.New("path must be absolute and clean")
		}
		if len(path.Base(e.Path)) > 255 {
			return errors.New("name is longer than 255 bytes, the ext4 limit")
		}
	}
	if e.HardLinkTo != "" {
		return nil
	}
	switch e.Type {
	case Regular:
		if e.Size < 0 {
			return errors.New("negative size")
		}
		if e.Size > 0 && e.Open == nil {
			return errors.New("regular file without Open")
		}
	case Symlink:
		if e.LinkTarget == "" || len(e.LinkTarget) >= BlockSize {
			return fmt.Errorf("symlink target must be 1 to %d bytes", BlockSize-1)
		}
	case Dir, CharDev, BlockDev, FIFO, Socket:
	default:
		return fmt.Errorf("unknown %v", e.Type)
	}
	if e.Mode&^(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky) != 0 {
		return fmt.Errorf("mode %v has type bits; give only permissions and setuid, setgid, sticky", e.Mode)
	}
	if e.Major >= 1<<12 || e.Minor >= 1<<20 {
		return fmt.Errorf("device %d:%d is out of range", e.Major, e.Minor)
	}
	return nil
}

// fileType is the directory entry type code.
func fileType(t Type) uint8 {
	switch t {
	case Regular:
		return 1
	case Dir:
		return 2
	case CharDev:
		return 3
	case BlockDev:
		return 4
	case FIFO:
		return 5
	case Socket:
		return 6
	case Symlink:
		return 7
	}
	return 0
}

// collect turns entries into inodes with numbers, parents and names.
// Inode numbers follow the entries' order, so directories come out close
// to their parents and files in the order they are listed.
func collect(entries []Entry, t time.Time) ([]*node, error) {
	root := &node{e: &Entry{Path: "/", Type: Dir, Mode: 0o755, MTime: t}, ino: rootIno, synth: true}
	byPath := map[string]*node{"/": root}
	nodes := []*node{root}
	next := uint32(firstIno + 1) // firstIno is lost+found's
	var lpf *node
	for i := range entries {
		e := &entries[i]
		if err := checkEntry(e); err != nil {
			return nil, fmt.Errorf("ext4: %s: %w", e.Path, err)
		}
		if e.Path == "/" {
			if i != 0 || e.Type != Dir {
				return nil, errors.New("ext4: \"/\" must be the first entry and a directory")
			}
			root.e, root.synth = e, false
			continue
		}
		if byPath[e.Path] != nil {
			return nil, fmt.Errorf("ext4: %s is listed twice", e.Path)
		}
		parent := byPath[path.Dir(e.Path)]
		if parent == nil || parent.e.Type != Dir || parent.hardlink != nil {
			return nil, fmt.Errorf("ext4: %s: its directory %s is not listed before it; list parents first", e.Path, path.Dir(e.Path))
		}
		n := &node{e: e, name: path.Base(e.Path)}
		if e.HardLinkTo != "" {
			target := byPath[e.HardLinkTo]
			if target == nil || target.e.Type == Dir {
				return nil, fmt.Errorf("ext4: %s: hard link target %s is not an earlier non-directory entry", e.Path, e.HardLinkTo)
			}
			for target.hardlink != nil {
				target = target.hardlink
			}
			n.hardlink = target
			target.nlink++
			if target.nlink > maxLinks {
				return nil, fmt.Errorf("ext4: %s has more than %d hard links, the ext4 limit", target.e.Path, maxLinks)
			}
			n.ftype = target.ftype
		} else {
			n.nlink = 1
			n.ftype = fileType(e.Type)
			if e.Path == "/lost+found" {
				if e.Type != Dir {
					return nil, fmt.Errorf("ext4: /lost+found is a %v; e2fsck needs it to be a directory", e.Type)
				}
				n.ino = firstIno
				lpf = n
			} else {
				n.ino = next
				next++
			}
			x, err := encodeXattrs(e.Xattrs)
			if err != nil {
				return nil, fmt.Errorf("ext4: %s: %w", e.Path, err)
			}
			n.xattrs = x
			nodes = append(nodes, n)
		}
		byPath[e.Path] = n
		parent.children = append(parent.children, n)
		if e.Type == Dir && n.hardlink == nil {
			parent.subdirs++
		}
	}
	if lpf == nil {
		lpf = &node{e: &Entry{Path: "/lost+found", Type: Dir, Mode: 0o700, MTime: t}, ino: firstIno, name: "lost+found", nlink: 1, ftype: 2, synth: true}
		root.children = append(root.children, lpf)
		root.subdirs++
		nodes = append(nodes, lpf)
	}
	for _, n := range nodes {
		if n.e.Type == Dir {
			// Byte order, as the names are: any order is valid for a
			// linear directory, a fixed one keeps the image stable.
			slices.SortFunc(n.children, func(a, b *node) int { return strings.Compare(a.name, b.name) })
			n.nlink = 2 + n.subdirs
			if n.nlink > maxLinks {
				n.nlink = 1 // dir_nlink: "many"
			}
		}
	}
	slices.SortFunc(nodes, func(a, b *node) int { return int(a.ino) - int(b.ino) })
	return nodes, nil
}
