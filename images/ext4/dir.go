package ext4

import (
	"slices"
	"strings"
)

// A linear directory: blocks of variable-length entries, each block
// ending in a 12-byte tail that holds its checksum (metadata_csum). The
// last entry of a block stretches to the tail.
//
// A directory of more than one block is written as an htree instead, as
// the kernel would make it: a root block indexing leaf blocks by the hash
// of the names in them (with a second level of index blocks past 507
// leaves), so that lookups read a block or two, not the whole directory.

func direntSize(nameLen int) int { return 8 + align4(nameLen) }

// dirLayout calls f with each block's entries: the index of the first
// child in the block and the number of children. Block 0 also holds "."
// and "..".
func dirLayout(n *node, f func(first, count int)) int {
	used := direntSize(1) + direntSize(2)
	blocks, first := 0, 0
	for i, c := range n.children {
		s := direntSize(len(c.name))
		if used+s > dirBlockData {
			f(first, i-first)
			blocks++
			first, used = i, 0
		}
		used += s
	}
	f(first, len(n.children)-first)
	return blocks + 1
}

// htree is a planned hash-indexed directory.
type htree struct {
	leaves [][]*node // children of each leaf block, in hash order
	hashes []uint32  // each leaf's lowest hash; bit 0 set when it goes on with the previous leaf's last hash
	nodes  int       // second-level index blocks, 0 for one level
}

const (
	flagIndex     = 0x1000
	dxRootLimit   = (BlockSize - 32 - 8) / 8 // after ".", "..", the root info; before the tail
	dxNodeLimit   = (BlockSize - 8 - 8) / 8  // after an empty entry; before the tail
	dxCountOffset = 32                       // where the root's count and limit are
)

// dirBlocks plans a directory: linear if it fits in one block, else an
// htree, whose plan it keeps on the node.
func (p *plan) dirBlocks(n *node) uint64 {
	if n.htree != nil {
		return uint64(1 + n.htree.nodes + len(n.htree.leaves))
	}
	if blocks := dirLayout(n, func(int, int) {}); blocks == 1 {
		return 1
	}
	type hashed struct {
		c           *node
		hash, minor uint32
	}
	hs := make([]hashed, len(n.children))
	for i, c := range n.children {
		h, m := dirHash(c.name, p.opts.HashSeed)
		hs[i] = hashed{c, h, m}
	}
	slices.SortFunc(hs, func(a, b hashed) int {
		switch {
		case a.hash != b.hash:
			return cmpU32(a.hash, b.hash)
		case a.minor != b.minor:
			return cmpU32(a.minor, b.minor)
		}
		return strings.Compare(a.c.name, b.c.name)
	})
	t := &htree{}
	used := dirBlockData
	for i, h := range hs {
		s := direntSize(len(h.c.name))
		if used+s > dirBlockData {
			start := h.hash
			if i > 0 && hs[i-1].hash == h.hash {
				start |= 1
			}
			if len(t.leaves) == 0 {
				start = 0 // the first leaf takes every hash below the second's
			}
			t.leaves = append(t.leaves, nil)
			t.hashes = append(t.hashes, start)
			used = 0
		}
		t.leaves[len(t.leaves)-1] = append(t.leaves[len(t.leaves)-1], h.c)
		used += s
	}
	if len(t.leaves) > dxRootLimit {
		t.nodes = int(ceilDiv(uint64(len(t.leaves)), dxNodeLimit))
	}
	n.htree = t
	return uint64(1 + t.nodes + len(t.leaves))
}

func cmpU32(a, b uint32) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// putDirent writes one directory entry whose record is rec bytes long.
func putDirent(b []byte, ino uint32, name string, ftype uint8, rec int) {
	le.PutUint32(b, ino)
	le.PutUint16(b[4:], uint16(rec))
	b[6] = uint8(len(name))
	b[7] = ftype
	copy(b[8:], name)
}

func childIno(c *node) uint32 {
	if c.hardlink != nil {
		return c.hardlink.ino
	}
	return c.ino
}

// putLeaf fills a block with entries, the last one stretched to the tail.
func putLeaf(b []byte, children []*node) {
	off := 0
	for i, c := range children {
		rec := direntSize(len(c.name))
		if i == len(children)-1 {
			rec = dirBlockData - off
		}
		putDirent(b[off:], childIno(c), c.name, c.ftype, rec)
		off += direntSize(len(c.name))
	}
}

// htreeData encodes an htree directory: root, index nodes, leaves.
func (p *plan) htreeData(n *node, parent uint32) []byte {
	t := n.htree
	out := make([]byte, n.blocks*BlockSize)
	block := func(i int) []byte { return out[i*BlockSize : (i+1)*BlockSize] }
	seed := p.inodeSeed(n.ino, 0)
	firstLeaf := 1 + t.nodes

	// putIndex writes count entries of (hash, logical block) at countOff
	// and seals the block with its dx tail.
	putIndex := func(b []byte, countOff, limit int, hashes []uint32, blocks []int) {
		e := b[countOff:]
		le.PutUint16(e[0:], uint16(limit))
		le.PutUint16(e[2:], uint16(len(blocks)))
		le.PutUint32(e[4:], uint32(blocks[0]))
		for i := 1; i < len(blocks); i++ {
			le.PutUint32(e[8*i:], hashes[i])
			le.PutUint32(e[8*i+4:], uint32(blocks[i]))
		}
		c := crc32c(seed, b[:countOff+8*len(blocks)])
		c = crc32c(c, make([]byte, 8)) // the tail's reserved word, then its checksum as zero
		le.PutUint32(b[countOff+8*limit+4:], c)
	}

	root := block(0)
	putDirent(root, n.ino, ".", 2, 12)
	putDirent(root[12:], parent, "..", 2, BlockSize-12)
	root[24+4] = 1 // half_md4; unsigned, as the superblock says
	root[24+5] = 8 // info length
	if t.nodes == 0 {
		blocks := make([]int, len(t.leaves))
		for i := range blocks {
			blocks[i] = firstLeaf + i
		}
		putIndex(root, dxCountOffset, dxRootLimit, t.hashes, blocks)
	} else {
		root[24+6] = 1 // one level of index nodes below the root
		var rootHashes []uint32
		var rootBlocks []int
		for k := range t.nodes {
			lo, hi := k*dxNodeLimit, min((k+1)*dxNodeLimit, len(t.leaves))
			rootHashes = append(rootHashes, t.hashes[lo])
			rootBlocks = append(rootBlocks, 1+k)
			b := block(1 + k)
			le.PutUint16(b[4:], BlockSize) // an empty entry spanning the block
			blocks := make([]int, hi-lo)
			for i := range blocks {
				blocks[i] = firstLeaf + lo + i
			}
			putIndex(b, 8, dxNodeLimit, t.hashes[lo:hi], blocks)
		}
		putIndex(root, dxCountOffset, dxRootLimit, rootHashes, rootBlocks)
	}
	for i, children := range t.leaves {
		putLeaf(block(firstLeaf+i), children)
	}
	for i := firstLeaf; i < int(n.blocks); i++ {
		sealDirBlock(block(i), seed)
	}
	return out
}

func sealDirBlock(b []byte, seed uint32) {
	t := b[dirBlockData:]
	le.PutUint16(t[4:], dirTailSize)
	t[7] = dirTailType
	le.PutUint32(t[8:], crc32c(seed, b[:dirBlockData]))
}

// dirData encodes a directory's blocks, or nil when none are planned.
func (p *plan) dirData(n *node, parent uint32) []byte {
	if n.blocks == 0 {
		return nil
	}
	if n.htree != nil {
		return p.htreeData(n, parent)
	}
	out := make([]byte, n.blocks*BlockSize)
	put := func(b []byte, off int, ino uint32, name string, ftype uint8) int {
		le.PutUint32(b[off:], ino)
		le.PutUint16(b[off+4:], uint16(direntSize(len(name))))
		b[off+6] = uint8(len(name))
		b[off+7] = ftype
		copy(b[off+8:], name)
		return off
	}
	blk := 0
	dirLayout(n, func(first, count int) {
		b := out[blk*BlockSize : (blk+1)*BlockSize]
		off, last := 0, -1
		if blk == 0 {
			put(b, 0, n.ino, ".", 2)
			last = put(b, 12, parent, "..", 2)
			off = 24
		}
		for _, c := range n.children[first : first+count] {
			ino := c.ino
			if c.hardlink != nil {
				ino = c.hardlink.ino
			}
			last = put(b, off, ino, c.name, c.ftype)
			off += direntSize(len(c.name))
		}
		if last < 0 { // an empty block: one unused entry spans it
			last = 0
		}
		le.PutUint16(b[last+4:], uint16(dirBlockData-last))
		blk++
	})
	// Blocks past the entries (lost+found's spares) are empty.
	for ; blk < int(n.blocks); blk++ {
		le.PutUint16(out[blk*BlockSize+4:], dirBlockData)
	}
	seed := p.inodeSeed(n.ino, 0)
	for i := 0; i < int(n.blocks); i++ {
		sealDirBlock(out[i*BlockSize:(i+1)*BlockSize], seed)
	}
	return out
}
