package build

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/appliance/appliance/images/bmap"
	"github.com/appliance/appliance/images/cache"
	zstd "github.com/appliance/appliance/images/zst"
)

// TestDigestAndCompress checks the compressed copy against zstd -d: it
// decompresses to the image, and the recorded digests are the files'.
// A second copy, its frames from the cache, is the same bytes.
// The bmap made while digesting equals the one bmap makes reading the
// file on its own (itself checked against bmaptool's).
func TestDigestAndCompress(t *testing.T) {
	if _, err := exec.LookPath("zstd"); err != nil {
		t.Fatal("zstd is not installed; run scripts/deps")
	}
	dir := t.TempDir()
	img := filepath.Join(dir, "gateway.img")
	want := make([]byte, 48<<20)
	// Small runs of data, and one long run that spans several chunks
	// and two bmap ranges, one of them ending mid-block.
	runs := [][2]int{{0, 4096}, {9 << 20, 4096}, {12 << 20, 20<<20 + 1000}, {40 << 20, 100}, {len(want) - 4096, 4096}}
	f, _ := os.Create(img)
	f.Truncate(int64(len(want)))
	for _, r := range runs {
		rand.Read(want[r[0] : r[0]+r[1]])
		f.WriteAt(want[r[0]:r[0]+r[1]], int64(r[0]))
	}
	f.Close()
	var wantBmap strings.Builder
	f, _ = os.Open(img)
	if err := bmap.Write(&wantBmap, f); err != nil {
		t.Fatal(err)
	}
	f.Close()
	sum := sha256.Sum256(want)
	c := &cache.Cache{Dir: filepath.Join(dir, "cache")}
	var first []byte
	for _, name := range []string{"cold cache", "warm cache"} {
		zst := filepath.Join(dir, name+".zst")
		d, zstOut, st, err := digestAndCompress(img, zst, zstd.Zstd(), c)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if d.SHA256 != sum || d.Size != int64(len(want)) {
			t.Errorf("%s: image recorded as %d bytes, %x", name, d.Size, d.SHA256)
		}
		if d.Bmap != wantBmap.String() {
			t.Errorf("%s: bmap made while digesting:\n%s\nbmap made alone:\n%s", name, d.Bmap, wantBmap.String())
		}
		b, _ := os.ReadFile(zst)
		zs := sha256.Sum256(b)
		if zstOut.SHA256 != hex.EncodeToString(zs[:]) || zstOut.Size != int64(len(b)) {
			t.Errorf("%s: compressed copy recorded as %+v, is %d bytes", name, zstOut, len(b))
		}
		out, err := exec.Command("zstd", "-d", "-c", "-q", zst).Output()
		if err != nil {
			t.Fatalf("%s: zstd -d: %v", name, err)
		}
		if !bytes.Equal(out, want) {
			t.Errorf("%s: the copy decompresses to %d bytes that are not the image", name, len(out))
		}
		if first == nil {
			first = b
		} else if st.Made != 0 || !bytes.Equal(b, first) {
			t.Errorf("%s: %d frames made; the copy is the same bytes: %v", name, st.Made, bytes.Equal(b, first))
		}
	}
}
