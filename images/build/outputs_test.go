package build

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestHashAndCompress checks both ways of making the compressed copy —
// the host's zstd and the Go fallback — against zstd -d: each copy
// decompresses to the image, and the recorded digests are the files'.
func TestHashAndCompress(t *testing.T) {
	if _, err := exec.LookPath("zstd"); err != nil {
		t.Fatal("zstd is not installed; run scripts/deps")
	}
	dir := t.TempDir()
	img := filepath.Join(dir, "gateway.img")
	want := make([]byte, 48<<20)
	for _, off := range []int{0, 9 << 20, 30 << 20, len(want) - 4096} {
		rand.Read(want[off : off+4096])
	}
	f, _ := os.Create(img)
	f.Truncate(int64(len(want)))
	for _, off := range []int{0, 9 << 20, 30 << 20, len(want) - 4096} {
		f.WriteAt(want[off:off+4096], int64(off))
	}
	f.Close()
	sum := sha256.Sum256(want)
	for name, fn := range map[string]func(string, string) (Output, Output, error){"host zstd": hashAndCompress, "Go": hashAndCompressGo} {
		zst := filepath.Join(dir, name+".zst")
		imgOut, zstOut, err := fn(img, zst)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if imgOut.SHA256 != hex.EncodeToString(sum[:]) || imgOut.Size != int64(len(want)) {
			t.Errorf("%s: image recorded as %+v", name, imgOut)
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
	}
}
