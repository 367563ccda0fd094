package littlefs

import (
	"encoding/binary"
	"fmt"
	"path"
)

// Image is a read file system.
type Image struct {
	Geometry
	Version uint32
	// Entries are every folder and file, depth first, each folder's
	// entries in littlefs's order.
	Entries []Entry
}

// Read reads an image of blocks of blockSize bytes.
func Read(img []byte, blockSize int) (*Image, error) {
	if blockSize < 128 || blockSize&(blockSize-1) != 0 || len(img) < 2*blockSize || len(img)%blockSize != 0 {
		return nil, fmt.Errorf("littlefs: an image of %d bytes is not at least two blocks of %d bytes", len(img), blockSize)
	}
	r := &reader{img: img, bs: blockSize, count: uint32(len(img) / blockSize)}
	root, err := r.fetch([2]uint32{0, 1})
	if err != nil {
		return nil, fmt.Errorf("the superblock pair: %w", err)
	}
	out := &Image{}
	if err := r.superblock(root, out); err != nil {
		return nil, err
	}
	if err := r.gstate(); err != nil {
		return nil, err
	}
	if err := r.walkDir("/", [2]uint32{0, 1}, &out.Entries, 0); err != nil {
		return nil, err
	}
	return out, nil
}

type reader struct {
	img   []byte
	bs    int
	count uint32
	// move is a pending move from the global state: the entry it names
	// is gone from its old place.
	movePair [2]uint32
	moveID   uint32
	hasMove  bool
	fetches  int
}

// dentry is a directory entry as a metadata log leaves it.
type dentry struct {
	typ      uint32 // typeReg, typeDir, typeSuperblock
	name     []byte
	structT  uint32
	structD  []byte
	hasName  bool
	hasStruc bool
}

// mdir is a fetched metadata block.
type mdir struct {
	pair    [2]uint32
	entries []*dentry
	tail    [2]uint32
	split   bool
	gdelta  []byte
}

func (r *reader) block(b uint32) []byte {
	return r.img[int(b)*r.bs : int(b+1)*r.bs]
}

// fetch reads a pair: the block with the newer revision, replayed up
// to its last valid commit, else the other block.
func (r *reader) fetch(pair [2]uint32) (*mdir, error) {
	if r.fetches++; r.fetches > 4*int(r.count)+16 {
		return nil, corrupt("the metadata list does not end")
	}
	if pair[0] >= r.count || pair[1] >= r.count {
		return nil, corrupt("metadata pair {%d, %d} past the last block %d", pair[0], pair[1], r.count-1)
	}
	revs := [2]uint32{binary.LittleEndian.Uint32(r.block(pair[0])), binary.LittleEndian.Uint32(r.block(pair[1]))}
	first := 0
	if int32(revs[1]-revs[0]) > 0 {
		first = 1
	}
	for i := range 2 {
		b := pair[(first+i)%2]
		if d, ok := r.replay(b); ok {
			d.pair = [2]uint32{b, pair[(first+i+1)%2]}
			return d, nil
		}
	}
	return nil, corrupt("metadata pair {%d, %d} has no valid commit", pair[0], pair[1])
}

// replay reads a metadata block's commits, keeping the state at the
// last commit whose CRC matches.
func (r *reader) replay(b uint32) (*mdir, bool) {
	blk := r.block(b)
	var good *mdir
	cur := &mdir{tail: [2]uint32{blockNull, blockNull}}
	sum := crc(0xFFFFFFFF, blk[:4])
	ptag := tag(0xFFFFFFFF)
	off := 4
	for off+4 <= len(blk) {
		raw := blk[off : off+4]
		t := tag(binary.BigEndian.Uint32(raw)) ^ ptag
		if !t.valid() || off+t.dsize() > len(blk) {
			break
		}
		sum = crc(sum, raw)
		data := blk[off+4 : off+t.dsize()]
		ptag = t
		if t.type3()&0x780 == typeCCRC {
			if len(data) < 4 || binary.LittleEndian.Uint32(data) != sum {
				break
			}
			ptag ^= tag(t.chunk()&1) << 31
			good = cur.clone()
			sum = 0xFFFFFFFF
			off += t.dsize()
			continue
		}
		sum = crc(sum, data)
		if !cur.apply(t, data) {
			break
		}
		off += t.dsize()
	}
	return good, good != nil
}

func (d *mdir) clone() *mdir {
	c := *d
	c.entries = make([]*dentry, len(d.entries))
	for i, e := range d.entries {
		ec := *e
		c.entries[i] = &ec
	}
	c.gdelta = append([]byte(nil), d.gdelta...)
	return &c
}

// apply updates the log's state with one tag; false means a tag no
// valid littlefs writes.
func (d *mdir) apply(t tag, data []byte) bool {
	id := int(t.id())
	at := func() *dentry {
		for len(d.entries) <= id {
			d.entries = append(d.entries, &dentry{})
		}
		return d.entries[id]
	}
	switch {
	case t.type3() == typeCreate:
		if id > len(d.entries) {
			return false
		}
		d.entries = append(d.entries, nil)
		copy(d.entries[id+1:], d.entries[id:])
		d.entries[id] = &dentry{}
	case t.type3() == typeDelete:
		if id >= len(d.entries) {
			return false
		}
		d.entries = append(d.entries[:id], d.entries[id+1:]...)
	case t.type1() == 0: // NAME
		if id == idNone || t.size() == sizeDelete {
			return false
		}
		e := at()
		e.typ, e.name, e.hasName = t.type3(), data, true
	case t.type1() == typeDirStruct: // STRUCT
		if id == idNone {
			return false
		}
		e := at()
		e.structT, e.structD, e.hasStruc = t.type3(), data, true
	case t.type1() == typeUserAttr:
		// User attributes (esp_littlefs's mtime) carry no file data.
	case t.type1() == typeSoftTail:
		if len(data) != 8 {
			return false
		}
		d.tail = [2]uint32{binary.LittleEndian.Uint32(data), binary.LittleEndian.Uint32(data[4:])}
		d.split = t.chunk()&1 == 1
	case t.type3() == typeMoveState:
		if len(data) != 12 {
			return false
		}
		d.gdelta = xor12(d.gdelta, data)
	case t.type3() == typeFCRC:
	default:
		return false
	}
	return true
}

func xor12(a, b []byte) []byte {
	out := make([]byte, 12)
	copy(out, a)
	for i := range out {
		out[i] ^= b[i]
	}
	return out
}

func (r *reader) superblock(root *mdir, out *Image) error {
	if len(root.entries) == 0 {
		return corrupt("the superblock pair has no entries")
	}
	sb := root.entries[0]
	if sb.typ != typeSuperblock || string(sb.name) != magic {
		return corrupt("no \"littlefs\" superblock in blocks 0 and 1: not a littlefs image, or not of %d-byte blocks", r.bs)
	}
	if sb.structT != typeInline || len(sb.structD) < 24 {
		return corrupt("the superblock's parameters are missing")
	}
	v := func(i int) uint32 { return binary.LittleEndian.Uint32(sb.structD[4*i:]) }
	out.Version = v(0)
	out.Geometry = Geometry{BlockSize: int(v(1)), BlockCount: int(v(2)), NameMax: v(3), FileMax: v(4), AttrMax: v(5)}
	switch {
	case out.Version>>16 != 2 || out.Version&0xFFFF > 1:
		return fmt.Errorf("littlefs: on-disk version %d.%d; this reader knows 2.0 and 2.1", out.Version>>16, out.Version&0xFFFF)
	case out.BlockSize != r.bs:
		return fmt.Errorf("littlefs: the superblock says blocks of %d bytes, not %d", out.BlockSize, r.bs)
	case uint32(out.BlockCount) != r.count:
		return fmt.Errorf("littlefs: the superblock says %d blocks; the image has %d", out.BlockCount, r.count)
	}
	return nil
}

// gstate XORs the global state of every pair in the metadata list: a
// pending move hides the moved entry's old copy.
func (r *reader) gstate() error {
	g := make([]byte, 12)
	pair := [2]uint32{0, 1}
	for {
		d, err := r.fetch(pair)
		if err != nil {
			return err
		}
		if d.gdelta != nil {
			g = xor12(g, d.gdelta)
		}
		if d.tail[0] == blockNull || d.tail[1] == blockNull {
			break
		}
		pair = d.tail
	}
	t := tag(binary.LittleEndian.Uint32(g))
	if t.type1() != 0 {
		r.hasMove, r.moveID = true, t.id()
		r.movePair = [2]uint32{binary.LittleEndian.Uint32(g[4:]), binary.LittleEndian.Uint32(g[8:])}
	}
	r.fetches = 0
	return nil
}

func (r *reader) walkDir(dir string, pair [2]uint32, out *[]Entry, depth int) error {
	if depth > 64 {
		return corrupt("folders nested deeper than 64 under %s", dir)
	}
	for {
		d, err := r.fetch(pair)
		if err != nil {
			return fmt.Errorf("%s: %w", dir, err)
		}
		for id, e := range d.entries {
			if r.hasMove && int(r.moveID) == id && samePair(r.movePair, d.pair) {
				continue
			}
			if e.typ == typeSuperblock || !e.hasName {
				continue
			}
			if err := r.entry(dir, e, out, depth); err != nil {
				return err
			}
		}
		if !d.split {
			return nil
		}
		pair = d.tail
	}
}

func samePair(a, b [2]uint32) bool {
	return (a[0] == b[0] && a[1] == b[1]) || (a[0] == b[1] && a[1] == b[0])
}

func (r *reader) entry(dir string, e *dentry, out *[]Entry, depth int) error {
	name := string(e.name)
	p := path.Join(dir, name)
	if name == "" || name == "." || name == ".." || path.Base(p) != name {
		return corrupt("a name %q in %s", name, dir)
	}
	if !e.hasStruc {
		return corrupt("%s has no struct", p)
	}
	switch e.typ {
	case typeDir:
		if e.structT != typeDirStruct || len(e.structD) != 8 {
			return corrupt("folder %s has no pair", p)
		}
		*out = append(*out, Entry{Path: p, Dir: true})
		sub := [2]uint32{binary.LittleEndian.Uint32(e.structD), binary.LittleEndian.Uint32(e.structD[4:])}
		return r.walkDir(p, sub, out, depth+1)
	case typeReg:
		var data []byte
		switch e.structT {
		case typeInline:
			data = append([]byte(nil), e.structD...)
		case typeCTZ:
			if len(e.structD) != 8 {
				return corrupt("file %s has a short CTZ struct", p)
			}
			var err error
			data, err = r.readCTZ(binary.LittleEndian.Uint32(e.structD), binary.LittleEndian.Uint32(e.structD[4:]))
			if err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
		default:
			return corrupt("file %s has struct type %#x", p, e.structT)
		}
		*out = append(*out, Entry{Path: p, Data: data})
		return nil
	}
	return corrupt("%s has entry type %#x", p, e.typ)
}

// readCTZ reads a CTZ skip-list file from its head back to block 0.
func (r *reader) readCTZ(head, size uint32) ([]byte, error) {
	if size == 0 {
		return nil, nil
	}
	if uint64(size) > uint64(len(r.img)) {
		return nil, corrupt("a file of %d bytes in an image of %d", size, len(r.img))
	}
	// Walk the block indexes from the last back to 0: block n's
	// first pointer is block n-1.
	last := ctzIndex(r.bs, size-1)
	blocks := make([]uint32, last+1)
	b := head
	for n := last; ; n-- {
		if b >= r.count {
			return nil, corrupt("CTZ block %d past the last block", b)
		}
		blocks[n] = b
		if n == 0 {
			break
		}
		b = binary.LittleEndian.Uint32(r.block(b))
	}
	data := make([]byte, 0, size)
	for n, b := range blocks {
		blk := r.block(b)
		if n > 0 {
			blk = blk[4*(ctz(uint32(n))+1):]
		}
		k := min(len(blk), int(size)-len(data))
		data = append(data, blk[:k]...)
	}
	return data, nil
}

// ctzIndex is the index of the block holding byte off of a CTZ file.
func ctzIndex(blockSize int, off uint32) int {
	n := 0
	for left := int64(off); ; n++ {
		c := int64(blockSize)
		if n > 0 {
			c -= int64(4 * (ctz(uint32(n)) + 1))
		}
		if left < c {
			return n
		}
		left -= c
	}
}
