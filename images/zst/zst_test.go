package zst

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/appliance/appliance/images/bmap"
	"github.com/appliance/appliance/images/cache"
)

// image writes a 48 MiB sparse image: small runs of data, and one long
// run that the bmap cuts into two ranges, the last ending mid-block.
func image(t *testing.T, dir string) (string, []byte) {
	p := filepath.Join(dir, "gateway.img")
	want := make([]byte, 48<<20)
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.Truncate(int64(len(want)))
	for _, r := range [][2]int{{0, 4096}, {9 << 20, 4096}, {12 << 20, 20<<20 + 1000}, {40 << 20, 100}, {len(want) - 4096, 4096}} {
		rand.Read(want[r[0] : r[0]+r[1]])
		if _, err := f.WriteAt(want[r[0]:r[0]+r[1]], int64(r[0])); err != nil {
			t.Fatal(err)
		}
	}
	return p, want
}

// compress runs Write on the image as it is now.
func compress(t *testing.T, img string, comp *Compressor, c *cache.Cache) ([]byte, Stats) {
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ranges, size, err := bmap.Ranges(f)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	st, err := Write(&out, f, size, ranges, nil, comp, c)
	if err != nil {
		t.Fatalf("%s: %v", comp.ID, err)
	}
	return out.Bytes(), st
}

// unzstd decodes with the zstd program, and counts the frames it sees.
func unzstd(t *testing.T, z []byte) ([]byte, int) {
	p := filepath.Join(t.TempDir(), "copy.zst")
	os.WriteFile(p, z, 0o644)
	out, err := exec.Command("zstd", "-d", "-q", "-c", p).Output()
	if err != nil {
		t.Fatalf("zstd -d: %v", err)
	}
	list, err := exec.Command("zstd", "-lv", p).CombinedOutput()
	if err != nil {
		t.Fatalf("zstd -lv: %v\n%s", err, list)
	}
	m := regexp.MustCompile(`# Zstandard Frames: (\d+)`).FindSubmatch(list)
	if m == nil {
		t.Fatalf("zstd -lv names no frame count:\n%s", list)
	}
	n, _ := strconv.Atoi(string(m[1]))
	return out, n
}

// TestFramesAndCache: the copy decodes with the zstd program to the
// image, one frame per range and hole; a second copy comes whole from the
// cache and is the same bytes; after a change to one range only that
// range is compressed again.
func TestFramesAndCache(t *testing.T) {
	if _, err := exec.LookPath("zstd"); err != nil {
		t.Fatalf("the zstd program is needed (scripts/deps installs it): %v", err)
	}
	comp := Zstd()
	dir := t.TempDir()
	img, want := image(t, dir)
	c := &cache.Cache{Dir: filepath.Join(dir, "cache")}

	first, st := compress(t, img, comp, c)
	got, frames := unzstd(t, first)
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: the copy decodes to %d bytes that are not the image", comp.ID, len(got))
	}
	// Six ranges — blocks 0, 2304, 3072–7167 and 7168–8192 (one run
	// cut at 16 MiB), 10240, 12287 — and the four holes between them.
	if st.Frames != 10 || frames != st.Frames || st.Made != st.Frames {
		t.Errorf("%s: %+v, zstd sees %d frames; want 10 made", comp.ID, st, frames)
	}

	second, st := compress(t, img, comp, c)
	if st.Made != 0 || !bytes.Equal(second, first) {
		t.Errorf("%s: second copy: %+v, same bytes %v; want all from the cache", comp.ID, st, bytes.Equal(second, first))
	}

	f, _ := os.OpenFile(img, os.O_RDWR, 0)
	f.WriteAt([]byte("changed"), 20<<20)
	f.Close()
	copy(want[20<<20:], "changed")
	third, st := compress(t, img, comp, c)
	if st.Made != 1 || st.Compressed != 16<<20 {
		t.Errorf("%s: after changing one range: %+v; want that range alone compressed", comp.ID, st)
	}
	if got, _ := unzstd(t, third); !bytes.Equal(got, want) {
		t.Errorf("%s: after the change, the copy is not the image", comp.ID)
	}
	if tmp, _ := c.Temporaries(); len(tmp) > 0 {
		t.Errorf("%s: temporaries left in the cache: %v", comp.ID, tmp)
	}
}

// TestDamagedFrame: a cached frame that was damaged is not used but
// made again.
func TestDamagedFrame(t *testing.T) {
	dir := t.TempDir()
	img, want := image(t, dir)
	c := &cache.Cache{Dir: filepath.Join(dir, "cache")}
	compress(t, img, Zstd(), c)
	var biggest string
	var size int64
	filepath.WalkDir(filepath.Join(c.Dir, Kind), func(p string, d os.DirEntry, err error) error {
		if fi, err := os.Stat(p); err == nil && !d.IsDir() && fi.Size() > size {
			biggest, size = p, fi.Size()
		}
		return nil
	})
	b, _ := os.ReadFile(biggest)
	b[len(b)/2] ^= 0xff
	os.WriteFile(biggest, b, 0o644)

	z, st := compress(t, img, Zstd(), c)
	if st.Made != 1 {
		t.Errorf("after damaging a cached frame: %+v; want that one made again", st)
	}
	if got, _ := unzstd(t, z); !bytes.Equal(got, want) {
		t.Errorf("the copy made with a damaged frame in the cache is not the image")
	}
	if _, st = compress(t, img, Zstd(), c); st.Made != 0 {
		t.Errorf("the frame made again was not cached: %+v", st)
	}
}

// TestSwappedFrame: the cache is not trusted. Every cached frame swapped
// for another valid frame — of another range, or of the right length
// with other content, or a hole's frame for a range — with its
// self-hash fixed is refused and made again, and the copy decodes to the
// image.
func TestSwappedFrame(t *testing.T) {
	dir := t.TempDir()
	img, want := image(t, dir)
	c := &cache.Cache{Dir: filepath.Join(dir, "cache")}
	_, first := compress(t, img, Zstd(), c)
	var frames []string
	filepath.WalkDir(filepath.Join(c.Dir, Kind), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			frames = append(frames, p)
		}
		return nil
	})
	if len(frames) != first.Frames {
		t.Fatalf("%d frames cached; want %d", len(frames), first.Frames)
	}
	// Each frame's file gets the next one's content: a valid frame with a
	// valid self-hash, holding something else.
	contents := make([][]byte, len(frames))
	for i, p := range frames {
		contents[i], _ = os.ReadFile(p)
	}
	for i, p := range frames {
		os.WriteFile(p, contents[(i+1)%len(frames)], 0o644)
	}
	z, st := compress(t, img, Zstd(), c)
	if st.Made != st.Frames {
		t.Errorf("after swapping every cached frame: %+v; want every frame made again", st)
	}
	if got, _ := unzstd(t, z); !bytes.Equal(got, want) {
		t.Errorf("the copy made from a tampered cache is not the image")
	}
}

// TestCompressorFails: a failing compressor ends Write with its error —
// no hang, no frame cached for what failed.
func TestCompressorFails(t *testing.T) {
	dir := t.TempDir()
	img, _ := image(t, dir)
	c := &cache.Cache{Dir: filepath.Join(dir, "cache")}
	fail := &Compressor{ID: "failing", compress: func(dst io.Writer, src io.Reader, size int64) error {
		if size > 1<<20 {
			return errors.New("disk full")
		}
		_, err := io.Copy(dst, src)
		return err
	}}
	f, _ := os.Open(img)
	defer f.Close()
	ranges, size, err := bmap.Ranges(f)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Write(io.Discard, f, size, ranges, nil, fail, c)
	if err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("Write with a failing compressor: %v", err)
	}
	var cached int
	filepath.WalkDir(filepath.Join(c.Dir, Kind), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			cached++
		}
		return nil
	})
	// Only the small segments (at most 1 MiB) made frames.
	if cached > 6 {
		t.Errorf("%d frames cached; the failed ones must not be", cached)
	}
}

// TestPrune removes the frames unused for the given time and keeps the
// rest; a copy refreshes the frames it uses.
func TestPrune(t *testing.T) {
	dir := t.TempDir()
	img, _ := image(t, dir)
	c := &cache.Cache{Dir: filepath.Join(dir, "cache")}
	_, st := compress(t, img, Zstd(), c)
	var frames []string
	filepath.WalkDir(filepath.Join(c.Dir, Kind), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			frames = append(frames, p)
		}
		return nil
	})
	if len(frames) != st.Frames {
		t.Fatalf("%d frames in the cache, %d made", len(frames), st.Frames)
	}
	old := time.Now().Add(-40 * 24 * time.Hour)
	for _, p := range frames {
		os.Chtimes(p, old, old)
	}
	// A copy uses every frame again: none is pruned.
	compress(t, img, Zstd(), c)
	if freed, err := Prune(c, 30*24*time.Hour); err != nil || freed != 0 {
		t.Errorf("Prune after a copy used every frame: freed %d, %v", freed, err)
	}
	os.Chtimes(frames[0], old, old)
	if freed, err := Prune(c, 30*24*time.Hour); err != nil || freed == 0 {
		t.Errorf("Prune of an old frame: freed %d, %v", freed, err)
	}
	if _, err := os.Stat(frames[0]); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the old frame is still there")
	}
	if _, err := os.Stat(frames[1]); err != nil {
		t.Errorf("a used frame was pruned: %v", err)
	}
}
