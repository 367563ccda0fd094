package ext4

import (
	"encoding/binary"
	"io"
	"slices"
)

// Feature flags set: those of Debian's mke2fs -t ext4 (1.47), less
// orphan_file, which trixie's mke2fs adds but the writer does not need.
const (
	compatHasJournal  = 0x4
	compatExtAttr     = 0x8
	compatResizeInode = 0x10
	compatDirIndex    = 0x20

	incompatFiletype = 0x2
	incompatExtents  = 0x40
	incompat64bit    = 0x80
	incompatFlexBG   = 0x200

	roSparseSuper  = 0x1
	roLargeFile    = 0x2
	roHugeFile     = 0x8
	roDirNlink     = 0x20
	roExtraIsize   = 0x40
	roMetadataCsum = 0x400

	flagsUnsignedHash = 0x2
	mountUserXattrACL = 0x4 | 0x8
)

// superblock encodes the superblock as stored in group's copy.
func (p *plan) superblock(group uint32, freeBlocks uint64, freeInodes uint32, journalIBlock []byte) []byte {
	g, o := p.geo, p.opts
	b := make([]byte, 1024)
	t := uint32(o.Time.Unix())
	le.PutUint32(b[0x00:], g.inodes())
	le.PutUint32(b[0x04:], uint32(g.blocks))
	le.PutUint32(b[0x150:], uint32(g.blocks>>32))
	r := g.blocks * uint64(o.ReservedBlocksPercent) / 100
	le.PutUint32(b[0x08:], uint32(r))
	le.PutUint32(b[0x154:], uint32(r>>32))
	le.PutUint32(b[0x0C:], uint32(freeBlocks))
	le.PutUint32(b[0x158:], uint32(freeBlocks>>32))
	le.PutUint32(b[0x10:], freeInodes)
	le.PutUint32(b[0x14:], 0)              // first data block
	le.PutUint32(b[0x18:], 2)              // 1024 << 2
	le.PutUint32(b[0x1C:], 2)              // cluster size = block size
	le.PutUint32(b[0x20:], blocksPerGroup) // blocks per group
	le.PutUint32(b[0x24:], blocksPerGroup) // clusters per group
	le.PutUint32(b[0x28:], g.inodesPerGrp) //
	le.PutUint32(b[0x30:], t)              // write time
	le.PutUint16(b[0x36:], 0xFFFF)         // max mount count: never check by count
	le.PutUint16(b[0x38:], 0xEF53)         // magic
	le.PutUint16(b[0x3A:], 1)              // clean
	le.PutUint16(b[0x3C:], 1)              // on errors: continue
	le.PutUint32(b[0x40:], t)              // last check
	le.PutUint32(b[0x4C:], 1)              // dynamic revision
	le.PutUint32(b[0x54:], firstIno)       //
	le.PutUint16(b[0x58:], inodeSize)      //
	le.PutUint16(b[0x5A:], uint16(group))  // which copy this is
	le.PutUint32(b[0x5C:], compatHasJournal|compatExtAttr|compatResizeInode|compatDirIndex)
	le.PutUint32(b[0x60:], incompatFiletype|incompatExtents|incompat64bit|incompatFlexBG)
	le.PutUint32(b[0x64:], roSparseSuper|roLargeFile|roHugeFile|roDirNlink|roExtraIsize|roMetadataCsum)
	copy(b[0x68:0x78], o.UUID[:])
	copy(b[0x78:0x88], o.Label)
	le.PutUint16(b[0xCE:], uint16(g.reservedGDT))
	le.PutUint32(b[0xE0:], journalIno)
	for i := range 4 {
		le.PutUint32(b[0xEC+4*i:], le.Uint32(o.HashSeed[4*i:]))
	}
	b[0xFC] = 1 // half_md4, mke2fs's default directory hash
	b[0xFD] = 1 // s_jnl_blocks holds a copy of the journal's i_block
	le.PutUint16(b[0xFE:], descSize)
	le.PutUint32(b[0x100:], mountUserXattrACL)
	le.PutUint32(b[0x108:], t) // mkfs time
	copy(b[0x10C:], journalIBlock)
	jsize := uint64(g.journalBlocks) * BlockSize
	le.PutUint32(b[0x10C+15*4:], uint32(jsize>>32))
	le.PutUint32(b[0x10C+16*4:], uint32(jsize))
	le.PutUint16(b[0x15C:], extraIsize) // min extra isize
	le.PutUint16(b[0x15E:], extraIsize) // want extra isize
	le.PutUint32(b[0x160:], flagsUnsignedHash)
	b[0x174] = 4 // log2 of flexSize
	b[0x175] = 1 // crc32c
	le.PutUint32(b[0x3FC:], crc32c(^uint32(0), b[:0x3FC]))
	return b
}

// groupDesc encodes one group descriptor.
func (p *plan) groupDesc(b []byte, group uint32, m groupMeta, freeBlocks, freeInodes, dirs, unused uint32, blockBitmap, inodeBitmap []byte) {
	put64 := func(lo, hi int, v uint64) {
		le.PutUint32(b[lo:], uint32(v))
		le.PutUint32(b[hi:], uint32(v>>32))
	}
	put32 := func(lo, hi int, v uint32) {
		le.PutUint16(b[lo:], uint16(v))
		le.PutUint16(b[hi:], uint16(v>>16))
	}
	put64(0x00, 0x20, m.blockBitmap)
	put64(0x04, 0x24, m.inodeBitmap)
	put64(0x08, 0x28, m.inodeTable)
	put32(0x0C, 0x2C, freeBlocks)
	put32(0x0E, 0x2E, freeInodes)
	put32(0x10, 0x30, dirs)
	put32(0x1C, 0x32, unused)
	put32(0x18, 0x38, crc32c(p.seed, blockBitmap[:blocksPerGroup/8]))
	put32(0x1A, 0x3A, crc32c(p.seed, inodeBitmap[:p.geo.inodesPerGrp/8]))
	// No INODE_UNINIT/BLOCK_UNINIT: every bitmap is written. No
	// ITABLE_ZEROED either: unused inode table blocks are not written,
	// and the kernel's lazyinit zeroes them on the device.
	var gb [4]byte
	le.PutUint32(gb[:], group)
	c := crc32c(p.seed, gb[:])
	c = crc32c(c, b[:descSize])
	le.PutUint16(b[0x1E:], uint16(c))
}

// journalSuper is an empty jbd2 journal's superblock (big-endian), as
// mke2fs writes it: nothing to replay.
func (p *plan) journalSuper() []byte {
	be := binary.BigEndian
	b := make([]byte, 1024)
	be.PutUint32(b[0x00:], 0xC03B3998) // magic
	be.PutUint32(b[0x04:], 4)          // superblock v2
	be.PutUint32(b[0x0C:], BlockSize)
	be.PutUint32(b[0x10:], p.geo.journalBlocks)
	be.PutUint32(b[0x14:], 1) // first log block
	be.PutUint32(b[0x18:], 1) // first transaction's sequence
	copy(b[0x30:0x40], p.opts.UUID[:])
	be.PutUint32(b[0x40:], 1) // users: this file system
	return b
}

// backupGroups lists the groups holding superblock copies, past group 0.
func (p *plan) backupGroups() []uint32 {
	var out []uint32
	for g := uint32(1); g < p.geo.groups; g++ {
		if hasSuper(g) {
			out = append(out, g)
		}
	}
	return out
}

// resizeInode fills inode 7, whose blocks map the reserved GDT blocks so
// that online resize finds them: a double indirect block pointing to each
// reserved GDT block of group 0, each of which lists its copies in the
// backup groups. It returns the blocks to write.
func (p *plan) resizeInode(b []byte) map[uint64][]byte {
	g := p.geo
	inodeBase(b, modeReg|0o600, 0, 0, p.opts.Time, 1)
	size := uint64(addrPerBlock*addrPerBlock+addrPerBlock+12) * BlockSize
	setSize(b, size)
	le.PutUint32(b[0x28+13*4:], uint32(p.dind))
	backups := p.backupGroups()
	setBlocks(b, 1+uint64(g.reservedGDT)*uint64(1+len(backups)))
	p.sealInode(b, resizeIno)

	out := map[uint64][]byte{}
	dind := make([]byte, BlockSize)
	for j := range g.reservedGDT {
		primary := uint64(1 + g.descBlocks + j)
		le.PutUint32(dind[4*((g.descBlocks+j)%addrPerBlock):], uint32(primary))
		ind := make([]byte, BlockSize)
		for k, grp := range backups {
			le.PutUint32(ind[4*k:], uint32(uint64(grp)*blocksPerGroup+primary))
		}
		out[primary] = ind
	}
	out[p.dind] = dind
	return out
}

// writeMetadata writes everything but file contents: superblocks, group
// descriptors, bitmaps, inode tables, the journal, directories, symlink
// blocks and extent leaves.
func (p *plan) writeMetadata(w io.WriterAt) error {
	g := p.geo
	itable := make([]byte, int(p.maxIno)*inodeSize)
	blocks := map[uint64][]byte{} // single metadata blocks, by number
	add := func(m map[uint64][]byte) {
		for k, v := range m {
			blocks[k] = v
		}
	}
	at := func(ino uint32) []byte { return itable[(ino-1)*inodeSize : ino*inodeSize] }

	// Inode 1 (bad blocks) has its times, as mke2fs writes it; 3–6, 9
	// and 10 stay zero.
	inodeBase(at(badBlocksIno), 0, 0, 0, p.opts.Time, 0)
	p.sealInode(at(badBlocksIno), badBlocksIno)
	add(p.resizeInode(at(resizeIno)))

	add(p.inode(at(journalIno), p.journal))
	parents := map[uint32]uint32{rootIno: rootIno}
	for _, n := range p.nodes {
		for _, c := range n.children {
			if c.hardlink == nil {
				parents[c.ino] = n.ino
			}
		}
	}
	var dirs []*node
	for _, n := range p.nodes {
		add(p.inode(at(n.ino), n))
		if n.e.Type == Dir {
			dirs = append(dirs, n)
		}
	}

	// Directories and long symlink targets, each written in its runs.
	for _, n := range dirs {
		if err := writeRuns(w, n.runs, p.dirData(n, parents[n.ino])); err != nil {
			return err
		}
	}
	for _, n := range p.nodes {
		if n.e.Type == Symlink && n.blocks > 0 {
			b := make([]byte, BlockSize)
			copy(b, n.e.LinkTarget)
			blocks[n.runs[0].start] = b
		}
	}

	// The journal: its superblock, then zeros, written so that no stale
	// journal blocks on the card can look like transactions to replay.
	zero := make([]byte, 1<<20)
	first := true
	for _, r := range p.journal.runs {
		for off := uint64(0); off < r.n*BlockSize; {
			n := min(uint64(len(zero)), r.n*BlockSize-off)
			buf := zero[:n]
			if first {
				buf = slices.Clone(buf)
				copy(buf, p.journalSuper())
				first = false
			}
			if _, err := w.WriteAt(buf, int64(r.start*BlockSize+off)); err != nil {
				return err
			}
			off += n
		}
	}

	// Per group: bitmaps, inode table, descriptor.
	gdt := make([]byte, uint64(g.descBlocks)*BlockSize)
	var freeBlocks uint64
	var freeInodes uint32
	dirsIn := make([]uint32, g.groups)
	for _, n := range dirs {
		grp, _ := p.inodeGroup(n.ino)
		dirsIn[grp]++
	}
	for grp := range g.groups {
		m := p.groups[grp]
		bb := make([]byte, BlockSize)
		start := uint64(grp) * blocksPerGroup
		n := min(uint64(blocksPerGroup), g.blocks-start)
		var free uint32
		for i := range uint64(blocksPerGroup) {
			if i >= n || p.alloc.isUsed(start+i) {
				bb[i/8] |= 1 << (i % 8)
			} else {
				free++
			}
		}
		ib := make([]byte, BlockSize)
		used := uint32(0)
		if first := grp * g.inodesPerGrp; p.maxIno > first {
			used = min(p.maxIno-first, g.inodesPerGrp)
		}
		for i := range uint32(BlockSize * 8) {
			if i < used || i >= g.inodesPerGrp {
				ib[i/8] |= 1 << (i % 8)
			}
		}
		p.groupDesc(gdt[grp*descSize:], grp, m, free, g.inodesPerGrp-used, dirsIn[grp], g.inodesPerGrp-used, bb, ib)
		freeBlocks += uint64(free)
		freeInodes += g.inodesPerGrp - used
		blocks[m.blockBitmap] = bb
		blocks[m.inodeBitmap] = ib
		if used > 0 {
			first := uint64(grp) * uint64(g.inodesPerGrp) * inodeSize
			tb := make([]byte, ceilDiv(uint64(used), inodesPerBlock)*BlockSize)
			copy(tb, itable[first:first+uint64(used)*inodeSize])
			if _, err := w.WriteAt(tb, int64(m.inodeTable*BlockSize)); err != nil {
				return err
			}
		}
	}

	// Superblock copies with the descriptors after each. Group 0's block 0
	// is written whole, clearing whatever signature was there before.
	for grp := range g.groups {
		if !hasSuper(grp) {
			continue
		}
		sb := p.superblock(grp, freeBlocks, freeInodes, at(journalIno)[0x28:0x28+60])
		head := make([]byte, BlockSize+len(gdt))
		off := 0
		if grp == 0 {
			off = 1024
		}
		copy(head[off:], sb)
		copy(head[BlockSize:], gdt)
		if _, err := w.WriteAt(head, int64(grp)*blocksPerGroup*BlockSize); err != nil {
			return err
		}
	}

	// Single blocks, in block order so the writes go front to back.
	keys := make([]uint64, 0, len(blocks))
	for k := range blocks {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if _, err := w.WriteAt(blocks[k], int64(k*BlockSize)); err != nil {
			return err
		}
	}
	return nil
}

// writeRuns writes data across runs of blocks.
func writeRuns(w io.WriterAt, runs []run, data []byte) error {
	for _, r := range runs {
		n := r.n * BlockSize
		if _, err := w.WriteAt(data[:n], int64(r.start*BlockSize)); err != nil {
			return err
		}
		data = data[n:]
	}
	return nil
}
