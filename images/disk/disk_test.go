package disk

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/appliance/appliance/images/ext4"
	"github.com/appliance/appliance/images/fat"
	"github.com/appliance/appliance/internal/testenv"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func need(t *testing.T, progs ...string) {
	for _, p := range progs {
		if _, err := exec.LookPath(p); err != nil {
			t.Fatalf("%s is needed (scripts/deps installs it): %v", p, err)
		}
	}
}

func text(s string) func() (io.ReadCloser, error) {
	return func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(s)), nil }
}

var layout = Layout{
	DiskID:   0xa1b2c3d4,
	BootSize: 64 << 20,
	RootSize: 100 << 20,
	Boot:     fat.Options{Label: "BOOTFS", VolumeID: 0xa1b2c3d4},
	Root:     ext4.Options{Label: "rootfs", UUID: [16]byte{1, 2, 3}, HashSeed: [16]byte{4, 5, 6}, Time: t0, ReservedBlocksPercent: 5},
}

const cmdline = "console=ttyAMA0 root=PARTUUID=a1b2c3d4-02 rootwait\n"

func entries() ([]fat.Entry, []ext4.Entry) {
	boot := []fat.Entry{
		{Path: "/cmdline.txt", MTime: t0, Size: int64(len(cmdline)), Open: text(cmdline)},
		{Path: "/config.txt", MTime: t0, Size: 12, Open: text("arm_64bit=1\n")},
		{Path: "/overlays", Dir: true, MTime: t0},
		{Path: "/overlays/vc4-kms-v3d-pi5.dtbo", MTime: t0, Size: 3, Open: text("dtb")},
	}
	root := []ext4.Entry{
		{Path: "/etc", Type: ext4.Dir, Mode: 0o755, MTime: t0},
		{Path: "/etc/hostname", Type: ext4.Regular, Mode: 0o644, MTime: t0, Size: 3, Open: text("gw\n")},
		{Path: "/boot", Type: ext4.Dir, Mode: 0o755, MTime: t0},
		{Path: "/sbin", Type: ext4.Symlink, Mode: 0o777, MTime: t0, LinkTarget: "usr/sbin"},
	}
	return boot, root
}

func write(t *testing.T) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), "gateway.img")
	boot, root := entries()
	if err := Write(img, layout, boot, root); err != nil {
		t.Fatal(err)
	}
	return img
}

type table struct {
	PartitionTable struct {
		ID         string
		Partitions []struct {
			Start, Size int64
			Type        string
		}
	}
}

func partitions(t *testing.T, img string) table {
	var tb table
	if err := json.Unmarshal([]byte(testenv.MustRun(t, "sfdisk", "--json", img)), &tb); err != nil {
		t.Fatal(err)
	}
	return tb
}

// TestImage: the partition table is as designed, both file systems check
// clean and read back, and bmaptool copies the image whole.
func TestImage(t *testing.T) {
	need(t, "sfdisk", "e2fsck", "debugfs", "fsck.vfat", "mtype", "bmaptool")
	img := write(t)

	tb := partitions(t, img)
	if tb.PartitionTable.ID != "0xa1b2c3d4" || len(tb.PartitionTable.Partitions) != 2 {
		t.Fatalf("sfdisk reads id %s, %d partitions; want 0xa1b2c3d4, 2", tb.PartitionTable.ID, len(tb.PartitionTable.Partitions))
	}
	for i, want := range []struct {
		start, size int64
		typ         string
	}{{8192, 131072, "c"}, {139264, 204800, "83"}} {
		p := tb.PartitionTable.Partitions[i]
		if p.Start != want.start || p.Size != want.size || p.Type != want.typ {
			t.Errorf("partition %d: start %d size %d type %s; want %d %d %s", i+1, p.Start, p.Size, p.Type, want.start, want.size, want.typ)
		}
	}
	if st, _ := os.Stat(img); st.Size() != layout.Size() || layout.Size() != (4+64+100)<<20 {
		t.Errorf("image is %d bytes; want %d", st.Size(), (4+64+100)<<20)
	}

	rootAt := fmt.Sprintf("%s?offset=%d", img, 139264*512)
	testenv.MustRun(t, "e2fsck", "-fn", rootAt)
	if got := testenv.MustRun(t, "debugfs", "-R", "cat /etc/hostname", rootAt); !strings.Contains(got, "gw\n") {
		t.Errorf("debugfs cat /etc/hostname: %q", got)
	}

	testenv.MustRun(t, "fsck.vfat", "-n", extract(t, img, 8192*512, 131072*512))
	if got := testenv.MustRun(t, "mtype", "-i", img+"@@4M", "::/cmdline.txt"); got != cmdline {
		t.Errorf("mtype cmdline.txt = %q; want %q", got, cmdline)
	}

	dst := filepath.Join(t.TempDir(), "card")
	testenv.MustRun(t, "bmaptool", "copy", "--bmap", img+".bmap", img, dst)
	if a, b := testenv.FileSHA256(t, img), testenv.FileSHA256(t, dst); a != b {
		t.Fatalf("bmaptool copy gives sha256 %s; the image is %s", b, a)
	}
}

func TestReproducible(t *testing.T) {
	a, b := write(t), write(t)
	if testenv.FileSHA256(t, a) != testenv.FileSHA256(t, b) || testenv.FileSHA256(t, a+".bmap") != testenv.FileSHA256(t, b+".bmap") {
		t.Fatal("two builds of the same image differ")
	}
}

// TestGrow does what GrowScript does on first boot, on the image file:
// the card is bigger than the image, sfdisk stretches partition 2 to its
// end keeping the disk identifier, and resize2fs grows the ext4 to fill
// it (offline here: see images/ext4's TestGrow on online resize).
func TestGrow(t *testing.T) {
	need(t, "sfdisk", "resize2fs", "e2fsck")
	img := write(t)
	const card = 8 << 30
	if err := os.Truncate(img, card); err != nil {
		t.Fatal(err)
	}
	const grow = `echo ', +' | sfdisk --no-reread --no-tell-kernel -N 2 "$DISK"`
	if !strings.Contains(GrowScript, grow) {
		t.Fatalf("GrowScript no longer runs %s; keep the test in step", grow)
	}
	cmd := exec.Command("sh", "-c", grow)
	cmd.Env = append(os.Environ(), "DISK="+img)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", grow, err, out)
	}
	tb := partitions(t, img)
	p := tb.PartitionTable.Partitions[1]
	if tb.PartitionTable.ID != "0xa1b2c3d4" || p.Start != 139264 || (p.Start+p.Size)*512 != card {
		t.Fatalf("after sfdisk: id %s, partition 2 at %d, %d sectors; want the same id and start, to the end", tb.PartitionTable.ID, p.Start, p.Size)
	}
	rootAt := fmt.Sprintf("%s?offset=%d", img, p.Start*512)
	if os.Geteuid() == 0 {
		// A loop device of the partition alone, as the card's would be:
		// resize2fs grows to the device's end.
		dev := strings.TrimSpace(testenv.MustRun(t, "losetup", "-f", "--show", "-o", fmt.Sprint(p.Start*512), "--sizelimit", fmt.Sprint(p.Size*512), img))
		t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })
		testenv.MustRun(t, "resize2fs", dev)
		testenv.MustRun(t, "losetup", "-d", dev)
	} else {
		// e2fsprogs's offset= does not limit the size: give it.
		testenv.MustRun(t, "resize2fs", rootAt, fmt.Sprint(p.Size*512/4096))
	}
	testenv.MustRun(t, "e2fsck", "-fn", rootAt)
	out := testenv.MustRun(t, "dumpe2fs", "-h", rootAt)
	if want := fmt.Sprintf("Block count:              %d\n", p.Size*512/4096); !strings.Contains(out, want) {
		t.Errorf("after resize2fs dumpe2fs shows no %q:\n%s", want, out)
	}
}

func TestLayoutErrors(t *testing.T) {
	l := layout
	l.BootSize = 8 << 20
	err := Write(filepath.Join(t.TempDir(), "x.img"), l, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "boot partition: fat: Size 8388608 is too small for FAT32") {
		t.Fatalf("Write = %v; want the boot partition's size named", err)
	}
}

// extract copies a partition to a file of its own, for fsck.vfat, which
// has no offset option.
func extract(t *testing.T, img string, off, size int64) string {
	src, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	p := filepath.Join(t.TempDir(), "part")
	dst, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	if _, err := io.Copy(dst, io.NewSectionReader(src, off, size)); err != nil {
		t.Fatal(err)
	}
	return p
}
