package littlefs

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"path"
	"sort"
	"strings"
)

// node is a directory or file of the tree being written.
type node struct {
	name     string
	dir      bool
	data     []byte
	children []*node
	// pairs are the directory's metadata pairs, in order; head is the
	// file's last CTZ block.
	pairs []*mpair
	head  uint32
}

// mpair is one metadata pair and the entries it holds.
type mpair struct {
	blocks  [2]uint32
	entries []*node
	// tail links to the next pair of the metadata list.
	tail     *mpair
	hardTail bool
}

// Build writes a file system of the geometry holding the entries.
func Build(g Geometry, entries []Entry) ([]byte, error) {
	if err := g.check(); err != nil {
		return nil, err
	}
	root, err := tree(g, entries)
	if err != nil {
		return nil, err
	}
	w := &writer{g: g}
	w.split(root, true)
	w.next = uint32(2 * len(w.list))
	if err := w.allocFiles(root); err != nil {
		return nil, err
	}
	img := bytes.Repeat([]byte{0xFF}, g.BlockSize*g.BlockCount)
	w.img = img
	w.writeFiles(root)
	for _, p := range w.list {
		if err := w.writePair(p, p == w.list[0]); err != nil {
			return nil, err
		}
	}
	return img, nil
}

// tree checks the entries and builds the directory tree, each folder's
// entries in littlefs's order.
func tree(g Geometry, entries []Entry) (*node, error) {
	root := &node{dir: true}
	byPath := map[string]*node{"/": root}
	var mkdir func(p string) (*node, error)
	mkdir = func(p string) (*node, error) {
		if n, ok := byPath[p]; ok {
			if !n.dir {
				return nil, fmt.Errorf("littlefs: %s is a file and a folder", p)
			}
			return n, nil
		}
		parent, err := mkdir(path.Dir(p))
		if err != nil {
			return nil, err
		}
		n := &node{name: path.Base(p), dir: true}
		parent.children = append(parent.children, n)
		byPath[p] = n
		return n, nil
	}
	for _, e := range entries {
		if err := checkPath(g, e.Path); err != nil {
			return nil, err
		}
		if e.Dir {
			if _, err := mkdir(e.Path); err != nil {
				return nil, err
			}
			continue
		}
		if _, dup := byPath[e.Path]; dup {
			return nil, fmt.Errorf("littlefs: %s is given twice", e.Path)
		}
		if uint64(len(e.Data)) > uint64(g.FileMax) {
			return nil, fmt.Errorf("littlefs: %s has %d bytes, more than file_max %d", e.Path, len(e.Data), g.FileMax)
		}
		parent, err := mkdir(path.Dir(e.Path))
		if err != nil {
			return nil, err
		}
		n := &node{name: path.Base(e.Path), data: e.Data}
		parent.children = append(parent.children, n)
		byPath[e.Path] = n
	}
	for _, n := range byPath {
		sort.Slice(n.children, func(i, j int) bool { return less(n.children[i].name, n.children[j].name) })
	}
	return root, nil
}

func checkPath(g Geometry, p string) error {
	if !strings.HasPrefix(p, "/") || p == "/" || path.Clean(p) != p {
		return fmt.Errorf("littlefs: %q is not a clean absolute path to a file or folder", p)
	}
	for _, name := range strings.Split(p[1:], "/") {
		if uint32(len(name)) >= g.NameMax {
			return fmt.Errorf("littlefs: %q in %s has %d bytes; names must be shorter than name_max (%d), which leaves room for the NUL of the device's name buffer", name, p, len(name), g.NameMax)
		}
		if strings.ContainsRune(name, 0) {
			return fmt.Errorf("littlefs: %q holds a NUL byte", p)
		}
	}
	return nil
}

type writer struct {
	g    Geometry
	img  []byte
	list []*mpair // the metadata list, in order
	next uint32   // the next free block
}

// entrySize is an entry's bytes in a commit: its name and struct tags.
func (w *writer) entrySize(n *node) int {
	s := 4 + len(n.name) + 4
	switch {
	case n.dir || !w.inline(n):
		s += 8
	default:
		s += len(n.data)
	}
	return s
}

func (w *writer) inline(n *node) bool { return len(n.data) <= w.g.InlineMax || len(n.data) == 0 }

// split cuts each directory into pairs whose entries fit as littlefs
// leaves them after compaction (half a block, fewer than 255 entries),
// and threads all pairs into the metadata list, depth first.
func (w *writer) split(d *node, root bool) {
	limit := min(w.g.BlockSize-36, (w.g.BlockSize/2+w.g.ProgSize-1)/w.g.ProgSize*w.g.ProgSize)
	p := &mpair{}
	size := 12 // the tail
	if root {
		size += 12 + 28 // the superblock's name and struct
	}
	for _, c := range d.children {
		s := w.entrySize(c)
		if len(p.entries) > 0 && (size+s > limit || len(p.entries) >= 254) {
			d.pairs = append(d.pairs, p)
			p, size = &mpair{}, 12
		}
		p.entries = append(p.entries, c)
		size += s
	}
	d.pairs = append(d.pairs, p)
	for i, p := range d.pairs {
		n := uint32(len(w.list))
		p.blocks = [2]uint32{2 * n, 2*n + 1}
		if len(w.list) > 0 {
			prev := w.list[len(w.list)-1]
			prev.tail, prev.hardTail = p, i > 0
		}
		w.list = append(w.list, p)
	}
	for _, c := range d.children {
		if c.dir {
			w.split(c, false)
		}
	}
}

// allocFiles gives each CTZ file its blocks, in tree order.
func (w *writer) allocFiles(d *node) error {
	for _, c := range d.children {
		if c.dir {
			if err := w.allocFiles(c); err != nil {
				return err
			}
			continue
		}
		if w.inline(c) {
			continue
		}
		n := uint32(ctzBlocks(w.g.BlockSize, len(c.data)))
		if uint64(w.next)+uint64(n) > uint64(w.g.BlockCount) {
			return fmt.Errorf("littlefs: the entries need more than the %d blocks of %d bytes the file system has; give the partition more room or the files fewer bytes", w.g.BlockCount, w.g.BlockSize)
		}
		w.next += n
	}
	if uint64(w.next) > uint64(w.g.BlockCount) {
		return fmt.Errorf("littlefs: the folders alone need %d blocks; the file system has %d", w.next, w.g.BlockCount)
	}
	return nil
}

// ctzBlocks is how many blocks a CTZ file of size bytes takes: block 0
// holds data only, block n > 0 first ctz(n)+1 pointers.
func ctzBlocks(blockSize, size int) int {
	n := 0
	for left := size; left > 0; n++ {
		c := blockSize
		if n > 0 {
			c -= 4 * (ctz(uint32(n)) + 1)
		}
		left -= c
	}
	return n
}

// writeFiles writes the CTZ files' blocks, allocated in the order
// allocFiles walked, after the metadata pairs.
func (w *writer) writeFiles(d *node) {
	block := uint32(2 * len(w.list))
	var walk func(d *node)
	walk = func(d *node) {
		for _, c := range d.children {
			if c.dir {
				walk(c)
				continue
			}
			if w.inline(c) {
				continue
			}
			c.head = w.writeCTZ(block, c.data)
			block += uint32(ctzBlocks(w.g.BlockSize, len(c.data)))
		}
	}
	walk(d)
}

// writeCTZ writes data as a skip-list in the blocks from first on and
// returns the last block, the file's head.
func (w *writer) writeCTZ(first uint32, data []byte) uint32 {
	bs := w.g.BlockSize
	for n := uint32(0); len(data) > 0; n++ {
		b := w.img[int(first+n)*bs : int(first+n+1)*bs]
		off := 0
		if n > 0 {
			for x := range ctz(n) + 1 {
				binary.LittleEndian.PutUint32(b[off:], first+n-(1<<x))
				off += 4
			}
		}
		k := copy(b[off:], data)
		data = data[k:]
		if len(data) == 0 {
			return first + n
		}
	}
	return first
}

// commit assembles one compacted commit of a metadata block.
type commit struct {
	buf  []byte
	ptag tag
	crc  uint32
}

func (c *commit) add(t tag, data []byte) {
	var raw [4]byte
	binary.BigEndian.PutUint32(raw[:], uint32(t^c.ptag))
	c.buf = append(c.buf, raw[:]...)
	c.buf = append(c.buf, data...)
	c.crc = crc(c.crc, raw[:])
	c.crc = crc(c.crc, data)
	c.ptag = t
}

func le32s(vs ...uint32) []byte {
	b := make([]byte, 0, 4*len(vs))
	for _, v := range vs {
		b = binary.LittleEndian.AppendUint32(b, v)
	}
	return b
}

// writePair writes a pair's commit into its first block, with revision
// 1; the second block stays erased, so the newer block is the first.
func (w *writer) writePair(p *mpair, root bool) error {
	g := w.g
	c := &commit{ptag: 0xFFFFFFFF, crc: 0xFFFFFFFF}
	rev := le32s(1)
	c.buf, c.crc = append(c.buf, rev...), crc(c.crc, rev)
	id := uint32(0)
	if root {
		c.add(mktag(typeSuperblock, 0, 8), []byte(magic))
		c.add(mktag(typeInline, 0, 24), le32s(diskVersion, uint32(g.BlockSize), uint32(g.BlockCount), g.NameMax, g.FileMax, g.AttrMax))
		id = 1
	}
	for _, n := range p.entries {
		switch {
		case n.dir:
			c.add(mktag(typeDir, id, uint32(len(n.name))), []byte(n.name))
			first := n.pairs[0].blocks
			c.add(mktag(typeDirStruct, id, 8), le32s(first[0], first[1]))
		case w.inline(n):
			c.add(mktag(typeReg, id, uint32(len(n.name))), []byte(n.name))
			c.add(mktag(typeInline, id, uint32(len(n.data))), n.data)
		default:
			c.add(mktag(typeReg, id, uint32(len(n.name))), []byte(n.name))
			c.add(mktag(typeCTZ, id, 8), le32s(n.head, uint32(len(n.data))))
		}
		id++
	}
	if p.tail != nil {
		typ := uint32(typeSoftTail)
		if p.hardTail {
			typ = typeHardTail
		}
		c.add(mktag(typ, idNone, 8), le32s(p.tail.blocks[0], p.tail.blocks[1]))
	}
	// Close the commit as lfs_dir_commitcrc does: an FCRC of the next
	// prog unit's erased bytes, then the CRC, padded to a prog unit.
	end := min(len(c.buf)+20, g.BlockSize)
	end = (end + g.ProgSize - 1) / g.ProgSize * g.ProgSize
	if end > g.BlockSize {
		return fmt.Errorf("littlefs: a folder's entries do not fit one %d-byte block", g.BlockSize)
	}
	if end <= g.BlockSize-g.ProgSize {
		erased := crc(0xFFFFFFFF, bytes.Repeat([]byte{0xFF}, g.ProgSize))
		c.add(mktag(typeFCRC, idNone, 8), le32s(uint32(g.ProgSize), erased))
	}
	ccrc := mktag(typeCCRC, idNone, uint32(end-(len(c.buf)+4)))
	var raw [4]byte
	binary.BigEndian.PutUint32(raw[:], uint32(ccrc^c.ptag))
	c.buf = append(c.buf, raw[:]...)
	c.crc = crc(c.crc, raw[:])
	c.buf = append(c.buf, le32s(c.crc)...)
	copy(w.img[int(p.blocks[0])*g.BlockSize:], c.buf)
	return nil
}
