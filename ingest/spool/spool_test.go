package spool

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func rec(node string, boot, seq uint32) Record {
	return Record{Key: Key{node, boot, seq}, Data: fmt.Appendf(nil, "reading,node=%s seq=%di %d\n", node, seq, seq)}
}

func open(t *testing.T, dir string, max, seg int64) *Spool {
	t.Helper()
	s, err := Open(Options{Dir: dir, MaxBytes: max, SegmentBytes: seg})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func appendAll(t *testing.T, s *Spool, recs ...Record) []bool {
	t.Helper()
	dup, err := s.Append(context.Background(), recs)
	if err != nil {
		t.Fatal(err)
	}
	return dup
}

// readAll reads every record, committing each batch.
func readAll(t *testing.T, s *Spool, commit bool) []string {
	t.Helper()
	var out []string
	for {
		recs, pos, err := s.Read(7, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 0 {
			return out
		}
		for _, r := range recs {
			out = append(out, string(r.Data))
		}
		if commit {
			if err := s.Commit(pos, len(recs)); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func segments(t *testing.T, dir string) int {
	m, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	return len(m)
}

func TestOrderAcrossSegmentsAndReopen(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, 1<<20, 64<<10)
	var want []string
	for i := range uint32(3000) {
		r := rec("bench-1", 1, i)
		want = append(want, string(r.Data))
		if dup := appendAll(t, s, r); dup[0] {
			t.Fatalf("seq %d reported as a duplicate", i)
		}
	}
	if n := segments(t, dir); n < 2 {
		t.Fatalf("%d segments after %d bytes; want a rotation", n, s.Stats().Bytes)
	}
	got := readAll(t, s, false)
	if len(got) != len(want) {
		t.Fatalf("read %d records, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("record %d = %q, want %q", i, got[i], want[i])
		}
	}
	// Nothing committed: after a restart, everything is read again.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, dir, 1<<20, 64<<10)
	if st := s.Stats(); st.Pending != 3000 {
		t.Fatalf("pending after reopen = %d, want 3000", st.Pending)
	}
	if got := readAll(t, s, true); len(got) != 3000 || got[2999] != want[2999] {
		t.Fatalf("after reopen read %d records, want 3000", len(got))
	}
	// All committed: after a restart, nothing is read again, and the
	// delivered segments are deleted once the table is saved.
	appendAll(t, s, rec("bench-1", 1, 3000))
	if err := s.maintain(true); err != nil {
		t.Fatal(err)
	}
	if n := segments(t, dir); n != 1 {
		t.Fatalf("%d segments after everything was delivered, want only the active one", n)
	}
	s.Close()
	s = open(t, dir, 1<<20, 64<<10)
	if got := readAll(t, s, true); len(got) != 1 || got[0] != string(rec("bench-1", 1, 3000).Data) {
		t.Fatalf("after reopen read %q, want only the last record", got)
	}
	s.Close()
}

func TestTornTailIsCutOff(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, 1<<20, 0)
	appendAll(t, s, rec("a", 1, 1), rec("a", 1, 2))
	s.Close()
	segs, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	f, err := os.OpenFile(segs[len(segs)-1], os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Half a record, as a crash in the middle of a write leaves it.
	whole := appendRecord(nil, rec("a", 1, 3))
	f.Write(whole[:len(whole)-5])
	f.Close()

	s = open(t, dir, 1<<20, 0)
	if st := s.Stats(); st.Corrupt != int64(len(whole)-5) {
		t.Errorf("corrupt bytes = %d, want %d", st.Corrupt, len(whole)-5)
	}
	// seq 3 never made it: it is not a duplicate, and appends go on
	// after the good records.
	if dup := appendAll(t, s, rec("a", 1, 3), rec("a", 1, 2)); dup[0] || !dup[1] {
		t.Fatalf("duplicates = %v, want [false true]", dup)
	}
	got := readAll(t, s, true)
	if len(got) != 3 || got[2] != string(rec("a", 1, 3).Data) {
		t.Fatalf("read %q", got)
	}
	s.Close()

	// A flipped bit in a record is found by its checksum.
	b, _ := os.ReadFile(segs[len(segs)-1])
	b[len(b)-3] ^= 0x40
	os.WriteFile(segs[len(segs)-1], b, 0o600)
	s = open(t, dir, 1<<20, 0)
	if st := s.Stats(); st.Corrupt == 0 {
		t.Errorf("a damaged record went unnoticed")
	}
	s.Close()
}

func TestDuplicatesSurviveRestartsAndDeletion(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, 1<<20, 64<<10)
	for i := range uint32(2000) {
		appendAll(t, s, rec("n", 7, i))
	}
	if dup := appendAll(t, s, rec("n", 7, 1999), rec("n", 7, 2000), rec("n", 7, 2000)); !dup[0] || dup[1] || !dup[2] {
		t.Fatalf("duplicates = %v, want [true false true]", dup)
	}
	s.Close()

	// From the segments.
	s = open(t, dir, 1<<20, 64<<10)
	if dup := appendAll(t, s, rec("n", 7, 1500)); !dup[0] {
		t.Fatal("a redelivered reading was taken again after a restart")
	}
	readAll(t, s, true)
	appendAll(t, s, rec("n", 7, 2001))
	if err := s.maintain(true); err != nil {
		t.Fatal(err)
	}
	s.Close()

	// From the saved table, the segments being gone.
	s = open(t, dir, 1<<20, 64<<10)
	if dup := appendAll(t, s, rec("n", 7, 1999), rec("n", 8, 1999)); !dup[0] || dup[1] {
		t.Fatalf("duplicates = %v, want [true false]: boot 8 is a new start", dup)
	}
	// The previous boot is still remembered.
	if dup := appendAll(t, s, rec("n", 7, 1998)); !dup[0] {
		t.Fatal("a redelivery from the previous boot was taken again")
	}
	s.Close()
}

func TestFullSpoolWaits(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, 1<<20, 64<<10)
	var n uint32
	for s.Stats().Bytes < 1<<20-(64<<10) {
		batch := make([]Record, 100)
		for i := range batch {
			batch[i] = rec("n", 1, n)
			n++
		}
		appendAll(t, s, batch...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	var err error
	for err == nil {
		_, err = s.Append(ctx, []Record{rec("n", 1, n)})
		n++
	}
	if !errors.Is(err, ErrFull) {
		t.Fatalf("Append on a full spool: %v, want ErrFull", err)
	}
	if !s.Stats().Full {
		t.Fatal("Stats does not say the spool is full")
	}
	if s.Stats().Bytes > 1<<20 {
		t.Fatalf("spool holds %d bytes, more than its 1 MiB", s.Stats().Bytes)
	}
	// The writer catches up: room comes back.
	done := make(chan error)
	go func() {
		_, err := s.Append(context.Background(), []Record{rec("n", 1, n)})
		done <- err
	}()
	readAll(t, s, true)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if s.Stats().Full {
		t.Fatal("still full after the reader caught up")
	}
	s.Close()
}

func TestWindow(t *testing.T) {
	var w window
	w.valid = true
	for _, c := range []struct {
		seq  uint32
		want bool
	}{{0, false}, {0, true}, {1, false}, {5, false}, {3, false}, {3, true}, {5, true}, {5000, false}, {5000 - Window + 1, false}, {5000 - Window, true}, {4999, false}, {4, true}} {
		if got := w.observe(c.seq); got != c.want {
			t.Errorf("observe(%d) = %v; want %v", c.seq, got, c.want)
		}
	}
}
