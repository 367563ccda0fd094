package spool

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"os"
	"sort"
)

// Window is how many sequence numbers back, per node and boot, the
// duplicate table remembers exactly. A node reads at most once a second,
// so this covers redeliveries for about 17 minutes; an older sequence
// number than that is taken for a duplicate (a node sends in order, so a
// genuinely new reading is never that far behind its newest).
const Window = 1024

type window struct {
	valid bool
	boot  uint32
	max   uint32 // newest seq seen
	bits  [Window / 64]uint64
}

// observe marks seq as seen and reports whether it already was.
func (w *window) observe(seq uint32) bool {
	switch {
	case seq > w.max:
		if d := seq - w.max; d >= Window {
			w.bits = [Window / 64]uint64{}
		} else {
			for s := w.max + 1; s != seq; s++ {
				w.bits[s%Window/64] &^= 1 << (s % 64)
			}
		}
		w.max = seq
		w.bits[seq%Window/64] |= 1 << (seq % 64)
		return false
	case w.max-seq >= Window:
		return true
	}
	bit := uint64(1) << (seq % 64)
	old := w.bits[seq%Window/64]&bit != 0
	w.bits[seq%Window/64] |= bit
	return old
}

// nodeSeen keeps a node's current boot and the one before: messages of
// the previous boot may still be redelivered after the node restarted.
type nodeSeen struct{ cur, prev window }

type table struct{ nodes map[string]*nodeSeen }

func newTable() *table { return &table{nodes: map[string]*nodeSeen{}} }

// observe records k and reports whether it was seen before. A boot that
// is neither of the two remembered starts a new window: boot numbers only
// have to differ between consecutive starts of a node, so a node that was
// re-flashed and counts from 1 again is not mistaken for a replay.
func (t *table) observe(k Key) bool {
	n := t.nodes[k.Node]
	if n == nil {
		n = &nodeSeen{}
		t.nodes[k.Node] = n
	}
	switch {
	case n.cur.valid && n.cur.boot == k.Boot:
		return n.cur.observe(k.Seq)
	case n.prev.valid && n.prev.boot == k.Boot:
		return n.prev.observe(k.Seq)
	}
	n.prev = n.cur
	n.cur = window{valid: true, boot: k.Boot, max: k.Seq}
	n.cur.bits[k.Seq%Window/64] |= 1 << (k.Seq % 64)
	return false
}

const seenMagic = "AISEEN01"

// marshal encodes the table as of spool position pos.
func (t *table) marshal(pos uint64) []byte {
	names := make([]string, 0, len(t.nodes))
	for n := range t.nodes {
		names = append(names, n)
	}
	sort.Strings(names)
	b := []byte(seenMagic)
	b = binary.LittleEndian.AppendUint64(b, pos)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(names)))
	for _, name := range names {
		n := t.nodes[name]
		b = append(b, byte(len(name)))
		b = append(b, name...)
		for _, w := range []*window{&n.cur, &n.prev} {
			v := byte(0)
			if w.valid {
				v = 1
			}
			b = append(b, v)
			b = binary.LittleEndian.AppendUint32(b, w.boot)
			b = binary.LittleEndian.AppendUint32(b, w.max)
			for _, x := range w.bits {
				b = binary.LittleEndian.AppendUint64(b, x)
			}
		}
	}
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

var errBadTable = errors.New("the duplicate table is damaged")

func loadTable(path string) (*table, uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, 0, err
	}
	if len(b) < len(seenMagic)+16 || string(b[:len(seenMagic)]) != seenMagic {
		return nil, 0, errBadTable
	}
	body, sum := b[:len(b)-4], binary.LittleEndian.Uint32(b[len(b)-4:])
	if crc32.Checksum(body, castagnoli) != sum {
		return nil, 0, errBadTable
	}
	p := body[len(seenMagic):]
	pos := binary.LittleEndian.Uint64(p)
	count := binary.LittleEndian.Uint32(p[8:])
	p = p[12:]
	t := newTable()
	const winLen = 1 + 4 + 4 + Window/8
	for range count {
		if len(p) < 1 || len(p) < 1+int(p[0])+2*winLen {
			return nil, 0, errBadTable
		}
		name := string(p[1 : 1+int(p[0])])
		p = p[1+int(p[0]):]
		n := &nodeSeen{}
		for _, w := range []*window{&n.cur, &n.prev} {
			w.valid = p[0] == 1
			w.boot = binary.LittleEndian.Uint32(p[1:])
			w.max = binary.LittleEndian.Uint32(p[5:])
			for i := range w.bits {
				w.bits[i] = binary.LittleEndian.Uint64(p[9+8*i:])
			}
			p = p[winLen:]
		}
		t.nodes[name] = n
	}
	if len(p) != 0 {
		return nil, 0, errBadTable
	}
	return t, pos, nil
}
