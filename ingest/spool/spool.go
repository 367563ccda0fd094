// Package spool is ingest's write-ahead log: every accepted reading is
// appended here and fsync'ed before its MQTT message is acknowledged, and
// the InfluxDB writer reads it back in order. It also remembers which
// (node, boot, seq) it has taken, so that a message the broker delivers
// twice — after a reconnect, a broker restart or a kill -9 of ingest — is
// recognised and written once.
//
// On disk, in one folder:
//
//	0000000000000000000.seg …  segments: records appended back to back;
//	                            a segment is named by the position (byte
//	                            offset in the spool's whole history) of its
//	                            first record
//	cursor                      position up to which InfluxDB has the records
//	seen                        the duplicate table as of a position
//
// A record is [length u32][crc32c u32][body], little-endian; the body is
// [node length u8][node][boot u32][seq u32][data]. A crash can leave a
// torn record at the end of the last segment; Open finds it by its length
// or checksum and cuts it off (it was never acknowledged, so the broker
// still has it).
//
// One goroutine appends (Append), one reads (Read, Commit); the two may
// run at the same time.
package spool

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Key identifies a reading: a node's boot and the sequence number within it.
type Key struct {
	Node string
	Boot uint32
	Seq  uint32
}

// Record is one reading in the spool.
type Record struct {
	Key  Key
	Data []byte // one line of InfluxDB line protocol, with its newline
}

// Options configure a spool.
type Options struct {
	Dir string
	// MaxBytes bounds the segments on disk. When they reach it, Append
	// waits until the reader commits and old segments can go.
	MaxBytes int64
	// SegmentBytes is the size at which a new segment starts; 0 picks
	// MaxBytes/16, between 64 KiB and 16 MiB.
	SegmentBytes int64
}

const (
	headerLen  = 8
	maxBody    = 64 << 10
	segSuffix  = ".seg"
	cursorName = "cursor"
	seenName   = "seen"
	// seenEvery is how often the duplicate table is saved so that
	// delivered segments can be deleted: saving it costs a write of every
	// node's window, deleting segments later costs only disk.
	seenEvery = 5 * time.Second
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrFull is what Append returns when its context ends while it waits for
// room.
var ErrFull = errors.New("spool is full: InfluxDB has not taken the readings in it")

type segment struct {
	start uint64
	size  int64
}

func (s segment) end() uint64 { return s.start + uint64(s.size) }

// Spool is an open spool.
type Spool struct {
	dir    string
	max    int64
	segMax int64

	// active is the segment being appended to; only the appender uses it.
	active *os.File
	wbuf   []byte

	mu       sync.Mutex
	segs     []segment
	end      uint64 // every byte before end is written and fsync'ed
	done     uint64 // every record before done is in InfluxDB
	pending  int64  // records in [done, end)
	appended int64  // records appended since Open
	seen     *table
	seenPos  uint64    // the saved table covers records before seenPos
	seenAt   time.Time // when it was saved
	full     bool
	fullAt   time.Time
	corrupt  int64 // bytes cut off by Open

	// reader state, used only by the reading goroutine
	rpos  uint64
	rf    *os.File
	rr    *bufio.Reader
	rseg  uint64 // start of the segment rf reads
	rbuf  []byte
	saved time.Time // when cursor was last written

	data  chan struct{} // a token when end moves
	space chan struct{} // a token when done moves
}

// Stats are a spool's figures for metrics.
type Stats struct {
	Bytes    int64 // on disk
	MaxBytes int64
	Pending  int64 // records not yet in InfluxDB
	Appended int64
	Full     bool
	FullFor  time.Duration
	Corrupt  int64 // bytes of damaged records cut off at Open
	Nodes    int   // nodes in the duplicate table
}

// Open opens or creates the spool in opts.Dir, cutting off a torn record
// left by a crash and rebuilding the duplicate table.
func Open(opts Options) (*Spool, error) {
	if opts.MaxBytes < 1<<20 {
		return nil, fmt.Errorf("spool: size %d is too small; give it at least 1 MiB", opts.MaxBytes)
	}
	seg := opts.SegmentBytes
	if seg == 0 {
		seg = min(max(opts.MaxBytes/16, 64<<10), 16<<20)
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	s := &Spool{dir: opts.Dir, max: opts.MaxBytes, segMax: seg, seen: newTable(),
		data: make(chan struct{}, 1), space: make(chan struct{}, 1)}
	if err := s.recover(); err != nil {
		return nil, fmt.Errorf("spool %s: %w", opts.Dir, err)
	}
	return s, nil
}

func (s *Spool) recover() error {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		name := e.Name()
		if strings.HasSuffix(name, ".tmp") {
			os.Remove(filepath.Join(s.dir, name))
			continue
		}
		if start, ok := strings.CutSuffix(name, segSuffix); ok {
			n, err := strconv.ParseUint(start, 10, 64)
			if err != nil {
				return fmt.Errorf("%s is not a segment name; move it out of the spool folder", name)
			}
			info, err := e.Info()
			if err != nil {
				return err
			}
			s.segs = append(s.segs, segment{start: n, size: info.Size()})
		}
	}
	sort.Slice(s.segs, func(i, j int) bool { return s.segs[i].start < s.segs[j].start })

	s.done = readCursor(filepath.Join(s.dir, cursorName))
	if t, pos, err := loadTable(filepath.Join(s.dir, seenName)); err == nil {
		s.seen, s.seenPos = t, pos
	} else if !errors.Is(err, fs.ErrNotExist) {
		// Without the table, duplicates of readings already delivered
		// would be written again; the segments still on disk rebuild
		// most of it. Go on: refusing to start would lose more.
		s.seen, s.seenPos = newTable(), 0
	}

	for i := range s.segs {
		sg := &s.segs[i]
		last := i == len(s.segs)-1
		if !last && sg.end() <= s.seenPos && sg.end() <= s.done {
			continue // delivered and in the table: nothing to learn from it
		}
		good, err := s.scan(*sg)
		if err != nil {
			return err
		}
		if good < sg.size {
			// A torn or damaged tail: cut it off. In the last segment
			// this is the normal result of a crash mid-append.
			if err := os.Truncate(s.segPath(sg.start), good); err != nil {
				return err
			}
			s.corrupt += sg.size - good
			sg.size = good
		}
	}
	if n := len(s.segs); n > 0 {
		s.end = s.segs[n-1].end()
	}
	if len(s.segs) > 0 && s.done < s.segs[0].start {
		s.done = s.segs[0].start
	}
	if s.done > s.end {
		s.done = s.end
	}
	if s.seenPos > s.end {
		s.seenPos = s.end
	}
	s.rpos = s.done
	s.seenAt = time.Now()
	return s.openActive()
}

// scan reads a segment's records, adding those at or after seenPos to the
// duplicate table and counting those at or after done as pending. It
// returns the length of its undamaged prefix.
func (s *Spool) scan(sg segment) (int64, error) {
	f, err := os.Open(s.segPath(sg.start))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 256<<10)
	var off int64
	var buf []byte
	for {
		var key Key
		var n int
		buf, key, n, err = readRecord(r, buf)
		if err != nil {
			return off, nil // io.EOF, or damage: the prefix is what counts
		}
		pos := sg.start + uint64(off)
		if pos >= s.seenPos {
			s.seen.observe(key)
		}
		if pos >= s.done {
			s.pending++
		}
		off += int64(n)
	}
}

var errDamaged = errors.New("damaged record")

// readRecord reads one record, returning its body buffer, key and length
// on disk. The record's data is body[...] (see dataOf).
func readRecord(r *bufio.Reader, buf []byte) ([]byte, Key, int, error) {
	var h [headerLen]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		if err == io.ErrUnexpectedEOF {
			err = errDamaged
		}
		return buf, Key{}, 0, err
	}
	n := binary.LittleEndian.Uint32(h[0:4])
	sum := binary.LittleEndian.Uint32(h[4:8])
	if n < 1+8 || n > maxBody {
		return buf, Key{}, 0, errDamaged
	}
	buf = append(buf[:0], make([]byte, n)...)
	if _, err := io.ReadFull(r, buf); err != nil {
		return buf, Key{}, 0, errDamaged
	}
	if crc32.Checksum(buf, castagnoli) != sum {
		return buf, Key{}, 0, errDamaged
	}
	nl := int(buf[0])
	if 1+nl+8 > len(buf) {
		return buf, Key{}, 0, errDamaged
	}
	key := Key{
		Node: string(buf[1 : 1+nl]),
		Boot: binary.LittleEndian.Uint32(buf[1+nl:]),
		Seq:  binary.LittleEndian.Uint32(buf[1+nl+4:]),
	}
	return buf, key, headerLen + int(n), nil
}

func dataOf(body []byte) []byte { return body[1+int(body[0])+8:] }

func appendRecord(b []byte, r Record) []byte {
	n := 1 + len(r.Key.Node) + 8 + len(r.Data)
	b = binary.LittleEndian.AppendUint32(b, uint32(n))
	at := len(b)
	b = append(b, 0, 0, 0, 0)
	body := len(b)
	b = append(b, byte(len(r.Key.Node)))
	b = append(b, r.Key.Node...)
	b = binary.LittleEndian.AppendUint32(b, r.Key.Boot)
	b = binary.LittleEndian.AppendUint32(b, r.Key.Seq)
	b = append(b, r.Data...)
	binary.LittleEndian.PutUint32(b[at:], crc32.Checksum(b[body:], castagnoli))
	return b
}

func recordLen(r Record) int64 { return int64(headerLen + 1 + len(r.Key.Node) + 8 + len(r.Data)) }

func (s *Spool) segPath(start uint64) string {
	return filepath.Join(s.dir, fmt.Sprintf("%020d%s", start, segSuffix))
}

// openActive opens the last segment for appending, or starts one.
func (s *Spool) openActive() error {
	if len(s.segs) == 0 || s.segs[len(s.segs)-1].size >= s.segMax {
		return s.newSegment()
	}
	f, err := os.OpenFile(s.segPath(s.segs[len(s.segs)-1].start), os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	s.active = f
	return nil
}

func (s *Spool) newSegment() error {
	if s.active != nil {
		if err := s.active.Close(); err != nil {
			return err
		}
		s.active = nil
	}
	f, err := os.OpenFile(s.segPath(s.end), os.O_WRONLY|os.O_APPEND|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	// The new name must survive a crash before the records in it count.
	if err := syncDir(s.dir); err != nil {
		f.Close()
		return err
	}
	s.active = f
	s.mu.Lock()
	s.segs = append(s.segs, segment{start: s.end})
	s.mu.Unlock()
	return nil
}

// Append writes the records that are not duplicates, fsyncs them, and
// reports which were duplicates. It waits while the spool is full, until
// ctx ends (then it returns ErrFull). Any other error means the disk
// failed: the caller must stop, since what the spool holds in memory may
// no longer match the disk (Open rebuilds it).
func (s *Spool) Append(ctx context.Context, recs []Record) (dup []bool, err error) {
	var need int64
	for _, r := range recs {
		if len(r.Key.Node) > 255 || recordLen(r)-headerLen > maxBody {
			return nil, fmt.Errorf("spool: record for %s is too large", r.Key.Node)
		}
		need += recordLen(r)
	}
	if err := s.waitRoom(ctx, need); err != nil {
		return nil, err
	}

	dup = make([]bool, len(recs))
	s.wbuf = s.wbuf[:0]
	var n int64
	s.mu.Lock()
	for i, r := range recs {
		if s.seen.observe(r.Key) {
			dup[i] = true
			continue
		}
		s.wbuf = appendRecord(s.wbuf, r)
		n++
	}
	s.mu.Unlock()
	if n == 0 {
		return dup, nil
	}

	if s.segs[len(s.segs)-1].size > 0 && s.segs[len(s.segs)-1].size+int64(len(s.wbuf)) > s.segMax {
		if err := s.newSegment(); err != nil {
			return nil, fmt.Errorf("spool: new segment: %w", err)
		}
	}
	if _, err := s.active.Write(s.wbuf); err != nil {
		return nil, fmt.Errorf("spool: write: %w", err)
	}
	if err := s.active.Sync(); err != nil {
		return nil, fmt.Errorf("spool: fsync: %w", err)
	}
	s.mu.Lock()
	s.segs[len(s.segs)-1].size += int64(len(s.wbuf))
	s.end += uint64(len(s.wbuf))
	s.pending += n
	s.appended += n
	s.mu.Unlock()
	select {
	case s.data <- struct{}{}:
	default:
	}
	if err := s.maintain(false); err != nil {
		return dup, err
	}
	if cap(s.wbuf) > 4<<20 {
		s.wbuf = nil // a burst made it large; don't keep it
	}
	return dup, nil
}

// waitRoom waits until need more bytes fit, deleting delivered segments.
func (s *Spool) waitRoom(ctx context.Context, need int64) error {
	if need > s.max/2 {
		return fmt.Errorf("spool: a batch of %d bytes cannot fit a spool of %d", need, s.max)
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		s.mu.Lock()
		used := s.diskBytes()
		s.mu.Unlock()
		if used+need <= s.max {
			break
		}
		if err := s.maintain(true); err != nil {
			return err
		}
		s.mu.Lock()
		used = s.diskBytes()
		if used+need <= s.max {
			s.mu.Unlock()
			break
		}
		if !s.full {
			s.full, s.fullAt = true, time.Now()
		}
		s.mu.Unlock()
		select {
		case <-ctx.Done():
			return ErrFull
		case <-s.space:
		case <-tick.C:
		}
	}
	s.mu.Lock()
	s.full = false
	s.mu.Unlock()
	return nil
}

func (s *Spool) diskBytes() int64 {
	var n int64
	for _, sg := range s.segs {
		n += sg.size
	}
	return n
}

// maintain deletes segments the reader is done with, after saving the
// duplicate table that would otherwise lose their keys. It runs in the
// appending goroutine, right after an fsync, so the table then describes
// exactly the records on disk.
func (s *Spool) maintain(urgent bool) error {
	s.mu.Lock()
	var drop []segment
	for i := 0; i < len(s.segs)-1 && s.segs[i].end() <= s.done; i++ {
		drop = append(drop, s.segs[i])
	}
	due := urgent || time.Since(s.seenAt) >= seenEvery
	s.mu.Unlock()
	if len(drop) == 0 || !due {
		return nil
	}
	s.mu.Lock()
	snap := s.seen.marshal(s.end)
	pos := s.end
	s.mu.Unlock()
	if err := writeAtomic(s.dir, seenName, snap); err != nil {
		return fmt.Errorf("spool: saving the duplicate table: %w", err)
	}
	s.mu.Lock()
	s.seenPos, s.seenAt = pos, time.Now()
	s.mu.Unlock()
	for _, sg := range drop {
		if err := os.Remove(s.segPath(sg.start)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("spool: %w", err)
		}
	}
	s.mu.Lock()
	s.segs = s.segs[len(drop):]
	s.mu.Unlock()
	return nil
}

// Data returns a channel that receives a token whenever records are
// appended.
func (s *Spool) Data() <-chan struct{} { return s.data }

// Read returns up to max records after the last one read (at most
// maxBytes of data, but at least one), and the position after them, to
// pass to Commit once InfluxDB has them. The records' Data is valid until
// the next Read. It returns no records when the reader has caught up.
func (s *Spool) Read(max int, maxBytes int) ([]Record, uint64, error) {
	s.mu.Lock()
	end := s.end
	var segStart, segEnd uint64
	found := false
	for _, sg := range s.segs {
		if sg.end() > s.rpos { // the first segment with records past rpos
			if s.rpos < sg.start {
				s.rpos = sg.start // a gap left by a damaged segment cut short
			}
			segStart, segEnd, found = sg.start, sg.end(), true
			break
		}
	}
	s.mu.Unlock()
	if !found || s.rpos >= end {
		return nil, s.rpos, nil
	}
	if s.rf == nil || s.rseg != segStart {
		if s.rf != nil {
			s.rf.Close()
		}
		f, err := os.Open(s.segPath(segStart))
		if err != nil {
			return nil, s.rpos, fmt.Errorf("spool: %w", err)
		}
		if _, err := f.Seek(int64(s.rpos-segStart), io.SeekStart); err != nil {
			f.Close()
			return nil, s.rpos, fmt.Errorf("spool: %w", err)
		}
		s.rf, s.rseg = f, segStart
		if s.rr == nil {
			s.rr = bufio.NewReaderSize(f, 256<<10)
		} else {
			s.rr.Reset(f)
		}
	}
	limit := min(segEnd, end)
	var recs []Record
	s.rbuf = s.rbuf[:0]
	type span struct {
		key        Key
		start, end int
	}
	var spans []span
	var body []byte
	bytes := 0
	for s.rpos < limit && len(spans) < max && (bytes < maxBytes || len(spans) == 0) {
		var key Key
		var n int
		var err error
		body, key, n, err = readRecord(s.rr, body)
		if err != nil {
			return nil, s.rpos, fmt.Errorf("spool: segment %d at %d: %v", segStart, s.rpos-segStart, err)
		}
		d := dataOf(body)
		spans = append(spans, span{key, len(s.rbuf), len(s.rbuf) + len(d)})
		s.rbuf = append(s.rbuf, d...)
		s.rpos += uint64(n)
		bytes += len(d)
	}
	recs = make([]Record, len(spans))
	for i, sp := range spans {
		recs[i] = Record{Key: sp.key, Data: s.rbuf[sp.start:sp.end:sp.end]}
	}
	return recs, s.rpos, nil
}

// Commit records that every record before pos is in InfluxDB, so that
// its segment may go. n is how many records that was.
func (s *Spool) Commit(pos uint64, n int) error {
	s.mu.Lock()
	if pos > s.done {
		s.done = pos
		s.pending -= int64(n)
	}
	s.mu.Unlock()
	select {
	case s.space <- struct{}{}:
	default:
	}
	// The cursor only saves replaying what InfluxDB already has (which
	// it would take again without harm): once a second is plenty.
	if time.Since(s.saved) < time.Second {
		return nil
	}
	s.saved = time.Now()
	return s.saveCursor()
}

func (s *Spool) saveCursor() error {
	s.mu.Lock()
	done := s.done
	s.mu.Unlock()
	var b [12]byte
	binary.LittleEndian.PutUint64(b[:8], done)
	binary.LittleEndian.PutUint32(b[8:], crc32.Checksum(b[:8], castagnoli))
	if err := writeAtomic(s.dir, cursorName, b[:]); err != nil {
		return fmt.Errorf("spool: saving the cursor: %w", err)
	}
	return nil
}

func readCursor(path string) uint64 {
	b, err := os.ReadFile(path)
	if err != nil || len(b) != 12 || crc32.Checksum(b[:8], castagnoli) != binary.LittleEndian.Uint32(b[8:]) {
		return 0 // replay from the oldest segment: InfluxDB takes repeats
	}
	return binary.LittleEndian.Uint64(b[:8])
}

// Stats returns the spool's current figures.
func (s *Spool) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{Bytes: s.diskBytes(), MaxBytes: s.max, Pending: s.pending, Appended: s.appended, Full: s.full, Corrupt: s.corrupt, Nodes: len(s.seen.nodes)}
	if s.full {
		st.FullFor = time.Since(s.fullAt)
	}
	return st
}

// Close saves the cursor and closes the files. The appender and the
// reader must have stopped.
func (s *Spool) Close() error {
	err := s.saveCursor()
	if s.rf != nil {
		s.rf.Close()
	}
	if s.active != nil {
		if cerr := s.active.Close(); err == nil {
			err = cerr
		}
	}
	return err
}

// writeAtomic replaces dir/name with b: a crash leaves the old or the new
// file, never a mix.
func writeAtomic(dir, name string, b []byte) error {
	tmp := filepath.Join(dir, name+".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
