package flash

import (
	"bytes"
	"crypto/sha256"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/appliance/appliance/images/bmap"
	"github.com/appliance/appliance/images/disk"
	"github.com/appliance/appliance/images/ext4"
	"github.com/appliance/appliance/images/fat"
)

// image writes a small gateway-like disk image with its bmap.
func image(t *testing.T) string {
	t.Helper()
	t0 := time.Unix(1767225600, 0)
	text := func(s string) func() (io.ReadCloser, error) {
		return func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(s)), nil }
	}
	big := strings.Repeat("appliance ", 300_000)
	img := filepath.Join(t.TempDir(), "gateway.img")
	err := disk.Write(img, disk.Layout{
		DiskID: 0x1234abcd, BootSize: 40 << 20, RootSize: 64 << 20,
		Boot: fat.Options{Label: "BOOTFS", VolumeID: 1},
		Root: ext4.Options{Label: "rootfs", Time: t0},
	}, []fat.Entry{{Path: "/cmdline.txt", MTime: t0, Size: 5, Open: text("root\n")}},
		[]ext4.Entry{
			{Path: "/etc", Type: ext4.Dir, Mode: 0o755, MTime: t0},
			{Path: "/etc/big", Type: ext4.Regular, Mode: 0o644, MTime: t0, Size: int64(len(big)), Open: text(big)},
		})
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func mapOf(t *testing.T, img string) *bmap.Map {
	t.Helper()
	f, err := os.Open(img + ".bmap")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := bmap.Parse(f)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestFlashFile flashes onto a file filled with a pattern: every mapped
// block then equals the image, the card's first and last MiB are zeroed
// (no old partition table survives), and every other unmapped block
// still holds the pattern — only what the bmap maps was written.
func TestFlashFile(t *testing.T) {
	img := image(t)
	m := mapOf(t, img)
	if m.Mapped() >= m.ImageSize/2 {
		t.Fatalf("the test image maps %d of %d bytes; want a mostly sparse image", m.Mapped(), m.ImageSize)
	}
	card := filepath.Join(t.TempDir(), "card")
	pattern := bytes.Repeat([]byte{0xA5}, int(m.ImageSize))
	os.WriteFile(card, pattern, 0o644)
	var phases []string
	err := Flash(img, card, Options{Progress: func(phase string, done, total int64) {
		if done == total && (len(phases) == 0 || phases[len(phases)-1] != phase) {
			phases = append(phases, phase)
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(phases, " ") != "check write verify" {
		t.Errorf("phases %v", phases)
	}
	want, _ := os.ReadFile(img)
	got, _ := os.ReadFile(card)
	mapped := make([]bool, len(want)/int(m.BlockSize)+1)
	for _, r := range m.Ranges {
		for b := r.First; b <= r.Last; b++ {
			mapped[b] = true
		}
	}
	zero := make([]byte, m.BlockSize)
	for b := 0; b*int(m.BlockSize) < len(want); b++ {
		lo, hi := b*int(m.BlockSize), min((b+1)*int(m.BlockSize), len(want))
		wiped := lo < wipe || hi > len(got)-wipe
		switch {
		case mapped[b] && !bytes.Equal(got[lo:hi], want[lo:hi]):
			t.Fatalf("mapped block %d differs from the image", b)
		case !mapped[b] && wiped && !bytes.Equal(got[lo:hi], zero[:hi-lo]):
			t.Fatalf("unmapped block %d, in the first or last MiB, was not zeroed", b)
		case !mapped[b] && !wiped && !bytes.Equal(got[lo:hi], pattern[lo:hi]):
			t.Fatalf("unmapped block %d was written", b)
		}
	}
}

// TestDamagedImage: an image that no longer matches its bmap is refused
// before anything is written.
func TestDamagedImage(t *testing.T) {
	img := image(t)
	m := mapOf(t, img)
	f, _ := os.OpenFile(img, os.O_RDWR, 0)
	last := m.Ranges[len(m.Ranges)-1]
	f.WriteAt([]byte{0xFF, 0xEE}, last.First*m.BlockSize+100)
	f.Close()
	card := filepath.Join(t.TempDir(), "card")
	os.WriteFile(card, make([]byte, m.ImageSize), 0o644)
	before := sha256.Sum256(mustRead(t, card))
	err := Flash(img, card, Options{})
	if err == nil || !strings.Contains(err.Error(), "does not match its bmap") {
		t.Fatalf("Flash of a damaged image: %v", err)
	}
	if sha256.Sum256(mustRead(t, card)) != before {
		t.Errorf("the card was written although the image was damaged")
	}
}

func mustRead(t *testing.T, p string) []byte {
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// loop attaches a file as a loop device (with partitions scanned).
func loop(t *testing.T, file string) string {
	t.Helper()
	out, err := exec.Command("losetup", "--find", "--show", "--partscan", file).CombinedOutput()
	if err != nil {
		t.Fatalf("loop devices are needed for this test (root, losetup): %v %s", err, out)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })
	return dev
}

// TestFlashLoopDevice flashes a real block device, and checks the
// refusals: a disk that is not removable (loop devices are not) without
// --force, a partition, and a disk with a mounted partition.
func TestFlashLoopDevice(t *testing.T) {
	img := image(t)
	m := mapOf(t, img)
	backing := filepath.Join(t.TempDir(), "card")
	f, _ := os.Create(backing)
	f.Truncate(m.ImageSize + 8<<20)
	f.Close()
	dev := loop(t, backing)
	if err := Flash(img, dev, Options{}); err == nil || !strings.Contains(err.Error(), "not a removable disk") {
		t.Errorf("flashing a non-removable disk without --force: %v", err)
	}
	if err := Flash(img, dev, Options{Force: true}); err != nil {
		t.Fatal(err)
	}
	got := mustRead(t, backing)[:m.ImageSize]
	if sha256.Sum256(got) != sha256.Sum256(mustRead(t, img)) {
		t.Errorf("the card does not hold the image (the card was zero, so every byte must match)")
	}

	// The card now has partitions; look at them as the kernel does.
	exec.Command("partx", "-u", dev).Run()
	part := dev + "p2"
	if _, err := os.Stat(part); err != nil {
		t.Fatalf("no partition %s after flashing: %v", part, err)
	}
	if err := Check(part); err == nil || !strings.Contains(err.Error(), "is a partition") {
		t.Errorf("Check(%s): %v", part, err)
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-o", "ro", part, mnt).CombinedOutput(); err != nil {
		t.Fatalf("mounting %s: %v %s", part, err, out)
	}
	defer exec.Command("umount", mnt).Run()
	if err := Check(dev); err == nil || !strings.Contains(err.Error(), "is mounted") {
		t.Errorf("Check(%s) with a mounted partition: %v", dev, err)
	}
}
