package bmap

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/appliance/appliance/internal/testenv"
)

// sparseFile makes a 16 MiB file with data at the start, in the middle (not
// block-aligned, across two blocks), and in the last block.
func sparseFile(t *testing.T) string {
	p := filepath.Join(t.TempDir(), "img")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(16 << 20); err != nil {
		t.Fatal(err)
	}
	for _, w := range []struct {
		off int64
		n   int
	}{{0, 512}, {4096, 8192}, {5<<20 + 4000, 200}, {16<<20 - 4096, 4096}} {
		if _, err := f.WriteAt(bytes.Repeat([]byte{0xA5}, w.n), w.off); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// TestSameAsBmaptool: our bmap is byte for byte what bmaptool create
// writes for the same file.
func TestSameAsBmaptool(t *testing.T) {
	if _, err := exec.LookPath("bmaptool"); err != nil {
		t.Fatalf("bmaptool is needed (scripts/deps installs it): %v", err)
	}
	img := sparseFile(t)
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var ours bytes.Buffer
	if err := Write(&ours, f); err != nil {
		t.Fatal(err)
	}
	theirs, err := exec.Command("bmaptool", "create", img).Output()
	if err != nil {
		t.Fatalf("bmaptool create: %v", err)
	}
	if ours.String() != string(theirs) {
		t.Errorf("our bmap:\n%s\nbmaptool's:\n%s", ours.String(), theirs)
	}
	r, _, err := Ranges(f)
	if err != nil {
		t.Fatal(err)
	}
	want := [][2]int64{{0, 2}, {1280, 1281}, {4095, 4095}}
	if len(r) != len(want) {
		t.Fatalf("ranges %v; want %v", r, want)
	}
	for i := range want {
		if r[i].First != want[i][0] || r[i].Last != want[i][1] {
			t.Errorf("range %d is %d-%d; want %d-%d", i, r[i].First, r[i].Last, want[i][0], want[i][1])
		}
	}
}

// TestCopy: bmaptool copy with our bmap gives back the image, here one
// of 40 MiB of data cut into ranges of 16 MiB.
func TestCopy(t *testing.T) {
	if _, err := exec.LookPath("bmaptool"); err != nil {
		t.Fatalf("bmaptool is needed (scripts/deps installs it): %v", err)
	}
	img := sparseFile(t)
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 40<<20)
	for i := range big {
		big[i] = byte(i * 7 / 4093)
	}
	if _, err := f.WriteAt(big, 20<<20); err != nil {
		t.Fatal(err)
	}
	r, _, err := Ranges(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	if len(r) != 6 || r[3].First != 5120 || r[3].Last != 5120+maxRange-1 {
		t.Fatalf("ranges %v; want the 40 MiB run cut at 16 MiB", r)
	}
	Copy(t, img)
}

// Copy writes img's bmap and checks that bmaptool copy, which verifies
// every range's checksum, reproduces img.
func Copy(t *testing.T, img string) {
	t.Helper()
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	bm := img + ".bmap"
	out, err := os.Create(bm)
	if err != nil {
		t.Fatal(err)
	}
	if err := Write(out, f); err != nil {
		t.Fatal(err)
	}
	out.Close()
	dst := filepath.Join(t.TempDir(), "copy")
	if b, err := exec.Command("bmaptool", "copy", "--bmap", bm, img, dst).CombinedOutput(); err != nil {
		t.Fatalf("bmaptool copy: %v\n%s", err, b)
	}
	if a, b := testenv.FileSHA256(t, img), testenv.FileSHA256(t, dst); a != b {
		t.Fatalf("bmaptool copy gives sha256 %s; the image has %s", b, a)
	}
}
