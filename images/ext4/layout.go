package ext4

import (
	"errors"
	"fmt"
	"time"
)

const (
	blocksPerGroup = 8 * BlockSize // one block of bitmap
	inodeSize      = 256
	inodesPerBlock = BlockSize / inodeSize
	descSize       = 64 // 64bit feature
	descPerBlock   = BlockSize / descSize
	flexSize       = 16 // groups whose bitmaps and inode tables sit together
	addrPerBlock   = BlockSize / 4
	maxExtentLen   = 32768
	extentsInInode = 4
	extentsInLeaf  = (BlockSize - 12 - 4) / 12 // header, entries, checksum tail
	maxLinks       = 65000

	badBlocksIno = 1
	rootIno      = 2
	resizeIno    = 7
	journalIno   = 8
	firstIno     = 11 // the first one not reserved: lost+found's
)

// geometry is the shape of the file system: everything that follows from
// its size and inode count alone.
type geometry struct {
	blocks        uint64
	groups        uint32
	inodesPerGrp  uint32
	itableBlocks  uint32 // per group
	descBlocks    uint32
	reservedGDT   uint32
	journalBlocks uint32
}

func (g *geometry) inodes() uint32 { return g.groups * g.inodesPerGrp }

// hasSuper tells whether a group holds a superblock backup (sparse_super:
// groups 0, 1 and powers of 3, 5 and 7).
func hasSuper(g uint32) bool {
	if g <= 1 {
		return true
	}
	for _, b := range []uint32{3, 5, 7} {
		n := b
		for n < g {
			n *= b
		}
		if n == g {
			return true
		}
	}
	return false
}

// superBlocks is the number of blocks a group's superblock copy takes:
// the superblock, the group descriptors and the reserved GDT blocks.
func (g *geometry) superBlocks(group uint32) uint64 {
	if !hasSuper(group) {
		return 0
	}
	return 1 + uint64(g.descBlocks) + uint64(g.reservedGDT)
}

func ceilDiv(a, b uint64) uint64 { return (a + b - 1) / b }

// newGeometry follows mke2fs's choices, so that the result is what e2fsck,
// resize2fs and the kernel expect of a file system this size.
func newGeometry(size int64, inodesNeeded uint32, opts Options) (*geometry, error) {
	ratio := opts.InodeRatio
	if ratio == 0 {
		ratio = 16384
	}
	if ratio < BlockSize {
		return nil, fmt.Errorf("ext4: InodeRatio %d is below the block size %d", ratio, BlockSize)
	}
	g := &geometry{blocks: uint64(size) / BlockSize}
	const minBlocks = 2048 // the journal needs a file system this big
	if g.blocks < minBlocks {
		return nil, fmt.Errorf("ext4: Size %d is too small; give at least %d MiB", size, minBlocks*BlockSize>>20)
	}
	for {
		g.groups = uint32(ceilDiv(g.blocks, blocksPerGroup))
		want := max(g.blocks*BlockSize/uint64(ratio), uint64(inodesNeeded)+uint64(inodesNeeded)/16+16)
		ipg := ceilDiv(want, uint64(g.groups))
		ipg = ceilDiv(ipg, inodesPerBlock) * inodesPerBlock
		if ipg > blocksPerGroup {
			return nil, fmt.Errorf("ext4: %d inodes do not fit in %d MiB; give a bigger Size", inodesNeeded, size>>20)
		}
		g.inodesPerGrp = uint32(ipg)
		g.itableBlocks = uint32(ipg / inodesPerBlock)
		g.descBlocks = uint32(ceilDiv(uint64(g.groups), descPerBlock))
		g.reservedGDT = reservedGDT(g, opts.GrowTo)

		// Like mke2fs, leave out a last group too small for its own
		// metadata and some data.
		overhead := uint64(3 + g.itableBlocks + g.reservedGDT)
		rem := g.blocks % blocksPerGroup
		if g.groups == 1 && rem != 0 && rem < overhead {
			return nil, fmt.Errorf("ext4: Size %d is too small for its metadata; give at least %d MiB", size, (overhead+minBlocks)*BlockSize>>20)
		}
		if rem != 0 && rem < overhead+50 {
			g.blocks -= rem
			continue
		}
		break
	}
	g.journalBlocks = journalBlocks(g.blocks)
	return g, nil
}

// reservedGDT is how many blocks to keep after the group descriptors for
// descriptors of groups added by online growth: as mke2fs, enough for
// 1024× the size or 2^32 blocks, whichever is smaller, or for growTo.
func reservedGDT(g *geometry, growTo int64) uint32 {
	maxBlocks := uint64(1<<32 - 1)
	if g.blocks < maxBlocks/1024 {
		maxBlocks = g.blocks * 1024
	}
	if b := uint64(growTo) / BlockSize; growTo > 0 && b > maxBlocks {
		maxBlocks = min(b, 1<<32-1)
	}
	groups := ceilDiv(maxBlocks, blocksPerGroup)
	rsv := ceilDiv(groups, descPerBlock) - uint64(g.descBlocks)
	return uint32(min(rsv, addrPerBlock))
}

// journalBlocks is mke2fs's default journal size for a file system of
// this many blocks.
func journalBlocks(blocks uint64) uint32 {
	switch {
	case blocks < 32768:
		return 1024
	case blocks < 256*1024:
		return 4096
	case blocks < 512*1024:
		return 8192
	case blocks < 4096*1024:
		return 16384
	case blocks < 8192*1024:
		return 32768
	case blocks < 16384*1024:
		return 65536
	case blocks < 32768*1024:
		return 131072
	}
	return 262144
}

// allocator hands out blocks front to back, skipping blocks already used.
type allocator struct {
	used   []uint64 // bit set
	n      uint64
	next   uint64
	maxRun uint64 // tests only: see testMaxRun
}

// testMaxRun, when set by a test, ends every run of data blocks after
// this many blocks and leaves the next block free, so that small files
// need extent tree leaves and directories several extents.
var testMaxRun uint64

func newAllocator(n uint64) *allocator {
	return &allocator{used: make([]uint64, ceilDiv(n, 64)), n: n, maxRun: testMaxRun}
}

func (a *allocator) isUsed(b uint64) bool { return a.used[b/64]&(1<<(b%64)) != 0 }
func (a *allocator) mark(start, n uint64) {
	for b := start; b < start+n; b++ {
		a.used[b/64] |= 1 << (b % 64)
	}
}

var errFull = errors.New("file system full")

// contiguous takes the first n free blocks in a row at or after start.
func (a *allocator) contiguous(start, n uint64) (uint64, error) {
	for b := start; b+n <= a.n; {
		ok := true
		for i := uint64(0); i < n; i++ {
			if a.isUsed(b + i) {
				b += i + 1
				ok = false
				break
			}
		}
		if ok {
			a.mark(b, n)
			return b, nil
		}
	}
	return 0, errFull
}

// take takes n blocks from the front, in as few runs as used blocks allow.
func (a *allocator) take(n uint64) ([]run, error) {
	var runs []run
	for n > 0 {
		for a.next < a.n && a.isUsed(a.next) {
			a.next++
		}
		if a.next >= a.n {
			return nil, errFull
		}
		r := run{start: a.next}
		for r.n < n && a.next < a.n && !a.isUsed(a.next) && (a.maxRun == 0 || r.n < a.maxRun) {
			a.next++
			r.n++
		}
		a.mark(r.start, r.n)
		if a.maxRun != 0 && r.n == a.maxRun {
			a.next++
		}
		runs = append(runs, r)
		n -= r.n
	}
	return runs, nil
}

// groupMeta is where a group's bitmaps and inode table are.
type groupMeta struct {
	blockBitmap, inodeBitmap, inodeTable uint64
}

// plan is the whole layout, decided before anything is written.
type plan struct {
	geo     *geometry
	opts    Options
	nodes   []*node // by inode number, root first
	alloc   *allocator
	groups  []groupMeta
	journal *node
	dind    uint64 // resize inode's double indirect block
	maxIno  uint32
	seed    uint32 // metadata checksum seed
}

func newPlan(entries []Entry, opts Options) (*plan, error) {
	if len(opts.Label) > 16 {
		return nil, fmt.Errorf("ext4: label %q is longer than 16 bytes", opts.Label)
	}
	if opts.ReservedBlocksPercent < 0 || opts.ReservedBlocksPercent > 50 {
		return nil, fmt.Errorf("ext4: ReservedBlocksPercent %d is outside 0–50", opts.ReservedBlocksPercent)
	}
	if opts.Time.IsZero() {
		opts.Time = time.Unix(0, 0)
	}
	nodes, err := collect(entries, opts.Time)
	if err != nil {
		return nil, err
	}
	maxIno := nodes[len(nodes)-1].ino
	geo, err := newGeometry(opts.Size, maxIno, opts)
	if err != nil {
		return nil, err
	}
	p := &plan{geo: geo, opts: opts, nodes: nodes, maxIno: maxIno, alloc: newAllocator(geo.blocks)}
	p.seed = crc32c(^uint32(0), opts.UUID[:])
	if err := p.allocate(); err != nil {
		if errors.Is(err, errFull) {
			return nil, fmt.Errorf("ext4: the entries need about %d MiB but Size is %d MiB; give a bigger Size", p.needed()>>20, opts.Size>>20)
		}
		return nil, err
	}
	return p, nil
}

// needed estimates the bytes the entries need, for the error when they do
// not fit.
func (p *plan) needed() int64 {
	var blocks uint64
	for _, n := range p.nodes {
		blocks += p.dataBlocks(n)
	}
	meta := uint64(p.geo.groups)*(2+uint64(p.geo.itableBlocks)) + uint64(p.geo.journalBlocks) + 1 + uint64(p.geo.descBlocks+p.geo.reservedGDT)*4
	return int64((blocks+meta)*BlockSize) * 21 / 20
}

// dataBlocks is how many blocks a node's content takes.
func (p *plan) dataBlocks(n *node) uint64 {
	switch n.e.Type {
	case Regular:
		return ceilDiv(uint64(n.e.Size), BlockSize)
	case Symlink:
		if len(n.e.LinkTarget) >= fastSymlinkMax {
			return 1
		}
	case Dir:
		if n.ino == firstIno && n.synth {
			return 4 // as mke2fs: room for e2fsck to link orphans into
		}
		return p.dirBlocks(n)
	}
	return 0
}

// allocate places every group's metadata, the journal, and every node's
// blocks: directories first, together, then file contents in entry order,
// each file in as few runs as possible.
func (p *plan) allocate() error {
	g, a := p.geo, p.alloc
	for grp := uint32(0); grp < g.groups; grp++ {
		a.mark(uint64(grp)*blocksPerGroup, g.superBlocks(grp))
	}
	p.groups = make([]groupMeta, g.groups)
	for leader := uint32(0); leader < g.groups; leader += flexSize {
		n := min(flexSize, g.groups-leader)
		start := uint64(leader) * blocksPerGroup
		for i := range n {
			b, err := a.contiguous(start, 1)
			if err != nil {
				return err
			}
			p.groups[leader+i].blockBitmap = b
		}
		for i := range n {
			b, err := a.contiguous(start, 1)
			if err != nil {
				return err
			}
			p.groups[leader+i].inodeBitmap = b
		}
		for i := range n {
			b, err := a.contiguous(start, uint64(g.itableBlocks))
			if err != nil {
				return err
			}
			p.groups[leader+i].inodeTable = b
		}
	}
	p.journal = &node{e: &Entry{Type: Regular, Mode: 0o600, MTime: p.opts.Time, Size: int64(g.journalBlocks) * BlockSize}, ino: journalIno, nlink: 1}
	if err := p.allocNode(p.journal); err != nil {
		return err
	}
	r, err := a.take(1)
	if err != nil {
		return err
	}
	p.dind = r[0].start
	// Directories first, so that a walk of the tree reads one region.
	for _, n := range p.nodes {
		if n.e.Type == Dir {
			if err := p.allocNode(n); err != nil {
				return err
			}
		}
	}
	for _, n := range p.nodes {
		if n.e.Type != Dir {
			if err := p.allocNode(n); err != nil {
				return err
			}
		}
	}
	return nil
}

func (p *plan) allocNode(n *node) error {
	n.blocks = p.dataBlocks(n)
	if n.blocks == 0 {
		return nil
	}
	runs, err := p.alloc.take(n.blocks)
	if err != nil {
		return err
	}
	n.runs = runs
	if ext := extentCount(runs); ext > extentsInInode {
		leaves := ceilDiv(uint64(ext), extentsInLeaf)
		if leaves > extentsInInode {
			return fmt.Errorf("ext4: %s is in %d pieces, more than this writer's extent tree holds", n.e.Path, ext)
		}
		for range leaves {
			r, err := p.alloc.take(1)
			if err != nil {
				return err
			}
			n.leaves = append(n.leaves, r[0].start)
		}
	}
	return nil
}

// group of an inode number, and its index in that group.
func (p *plan) inodeGroup(ino uint32) (uint32, uint32) {
	return (ino - 1) / p.geo.inodesPerGrp, (ino - 1) % p.geo.inodesPerGrp
}
