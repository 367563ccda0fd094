package sparse

import (
	"bytes"
	"crypto/rand"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// sample writes a file with data at the start, in the middle and at the
// end, and holes between.
func sample(t *testing.T) (string, []byte) {
	t.Helper()
	const size = 64 << 20
	want := make([]byte, size)
	for _, off := range []int{0, 20 << 20, size - 8192} {
		rand.Read(want[off : off+8192])
	}
	p := filepath.Join(t.TempDir(), "img")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	for _, off := range []int64{0, 20 << 20, size - 8192} {
		if _, err := f.WriteAt(want[off:off+8192], off); err != nil {
			t.Fatal(err)
		}
	}
	return p, want
}

func TestDataCopy(t *testing.T) {
	p, want := sample(t)
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ranges, err := Data(f, int64(len(want)))
	if err != nil {
		t.Fatal(err)
	}
	// The file system may round ranges to its blocks, but every written
	// byte is inside one and the holes are left out.
	var mapped int64
	for _, r := range ranges {
		mapped += r.Len
	}
	if len(ranges) < 3 || mapped >= int64(len(want))/2 {
		t.Errorf("data ranges %v: expected three small ones", ranges)
	}
	for _, off := range []int64{0, 20 << 20, int64(len(want)) - 1} {
		in := false
		for _, r := range ranges {
			in = in || off >= r.Off && off < r.Off+r.Len
		}
		if !in {
			t.Errorf("byte %d holds data but no range %v covers it", off, ranges)
		}
	}

	dst := filepath.Join(t.TempDir(), "copy")
	if err := Copy(dst, p, int64(len(want))*2); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(dst)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2*len(want) || !bytes.Equal(got[:len(want)], want) || !bytes.Equal(got[len(want):], make([]byte, len(want))) {
		t.Errorf("Copy: %d bytes, or the content differs", len(got))
	}
	var st syscall.Stat_t
	if err := syscall.Stat(dst, &st); err != nil {
		t.Fatal(err)
	}
	if used := st.Blocks * 512; used > 8<<20 {
		t.Errorf("the copy allocates %d bytes: its holes were written", used)
	}
}
