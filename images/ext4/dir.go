package ext4

// A linear directory: blocks of variable-length entries, each block
// ending in a 12-byte tail that holds its checksum (metadata_csum). The
// last entry of a block stretches to the tail.

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

func dirBlocks(n *node) uint64 { return uint64(dirLayout(n, func(int, int) {})) }

// dirData encodes a directory's blocks, or nil when none are planned.
func (p *plan) dirData(n *node, parent uint32) []byte {
	if n.blocks == 0 {
		return nil
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
		b := out[i*BlockSize : (i+1)*BlockSize]
		t := b[dirBlockData:]
		le.PutUint16(t[4:], dirTailSize)
		t[7] = dirTailType
		le.PutUint32(t[8:], crc32c(seed, b[:dirBlockData]))
	}
	return out
}
