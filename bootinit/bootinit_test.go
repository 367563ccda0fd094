package bootinit

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/appliance/appliance/internal/testenv"
)

func TestParseCmdline(t *testing.T) {
	c, err := ParseCmdline("console=ttyAMA0 root=PARTUUID=1A2B3C4D-02 rootfstype=ext4 rw init=/usr/lib/appliance/init quiet\n")
	if err != nil || c.PartUUID != "1a2b3c4d-02" || c.ReadOnly || c.Init != "/usr/lib/appliance/init" || c.FSType != "ext4" {
		t.Errorf("ParseCmdline = %+v, %v", c, err)
	}
	for _, bad := range []string{"root=/dev/vda2", "quiet"} {
		if _, err := ParseCmdline(bad); err == nil {
			t.Errorf("ParseCmdline(%q) accepted it", bad)
		}
	}
}

// disk writes a disk image file with an MBR of two partitions.
func disk(t *testing.T, dir string, id uint32, parts [][2]uint32) string {
	t.Helper()
	p := filepath.Join(dir, "vda")
	mbr := make([]byte, 512)
	binary.LittleEndian.PutUint32(mbr[mbrDiskID:], id)
	for i, pt := range parts {
		e := mbr[mbrTable+i*mbrEntrySize:]
		e[4] = 0x83
		binary.LittleEndian.PutUint32(e[8:], pt[0])
		binary.LittleEndian.PutUint32(e[12:], pt[1])
	}
	mbr[mbrSig], mbr[mbrSig+1] = 0x55, 0xAA
	if err := os.WriteFile(p, mbr, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestFindPartition(t *testing.T) {
	dir := t.TempDir()
	dev := filepath.Join(dir, "dev")
	os.MkdirAll(dev, 0o755)
	disk(t, dev, 0xdeadbeef, [][2]uint32{{8192, 1000}, {9192, 5000}})
	// sysfs: /sys/class/block/NAME links into the device tree, where a
	// partition's folder lies inside its disk's.
	devices := filepath.Join(dir, "devices/virtio0/block/vda")
	sysBlock := filepath.Join(dir, "class/block")
	os.MkdirAll(sysBlock, 0o755)
	os.MkdirAll(devices, 0o755)
	os.Symlink(devices, filepath.Join(sysBlock, "vda"))
	for i, n := range []string{"vda1", "vda2"} {
		os.MkdirAll(filepath.Join(devices, n), 0o755)
		os.WriteFile(filepath.Join(devices, n, "partition"), []byte{byte('1' + i), '\n'}, 0o644)
		os.Symlink(filepath.Join(devices, n), filepath.Join(sysBlock, n))
	}
	got, err := FindPartition(sysBlock, dev, "deadbeef-02")
	if err != nil || got != filepath.Join(dev, "vda2") {
		t.Errorf("FindPartition = %q, %v", got, err)
	}
	if _, err := FindPartition(sysBlock, dev, "deadbeef-03"); err == nil {
		t.Errorf("found a partition that does not exist")
	}
	if _, err := FindPartition(sysBlock, dev, "00000001-02"); err == nil {
		t.Errorf("found a partition of another disk")
	}
}

func TestGrowth(t *testing.T) {
	dir := t.TempDir()
	d := disk(t, dir, 1, [][2]uint32{{8192, 524288}, {532480, 1048576}})
	const diskSectors = 62333952 // a 32 GB card
	g, err := PlanGrowth(d, 2, diskSectors)
	if err != nil {
		t.Fatal(err)
	}
	if want := uint64(diskSectors - diskSectors%2048 - 532480); g.NewSize != want {
		t.Errorf("new size %d; want %d", g.NewSize, want)
	}
	if err := WriteGrowth(g); err != nil {
		t.Fatal(err)
	}
	again, err := PlanGrowth(d, 2, diskSectors)
	if err != nil || again.NewSize != 0 || again.Sectors != g.NewSize {
		t.Errorf("after growing: %+v, %v", again, err)
	}
	if _, err := PlanGrowth(d, 1, diskSectors); err == nil || !strings.Contains(err.Error(), "not the last") {
		t.Errorf("growing a partition that is not the last: %v", err)
	}
}

func TestUnpacked(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "var/lib/dpkg"), 0o755)
	os.WriteFile(filepath.Join(root, "var/lib/dpkg/status"), []byte(
		"Package: base-files\nStatus: install ok unpacked\nArchitecture: arm64\n\n"+
			"Package: libc6\nStatus: install ok unpacked\nArchitecture: arm64\nMulti-Arch: same\n\n"+
			"Package: done\nStatus: install ok installed\nArchitecture: all\n"), 0o644)
	got, err := unpacked(root)
	if err != nil || len(got) != 2 || got[0] != [2]string{"base-files", "base-files"} || got[1] != [2]string{"libc6", "libc6:arm64"} {
		t.Errorf("unpacked = %v, %v", got, err)
	}
}

// The command line Debian's raspi-firmware writes: the root by its file
// system's UUID, rw before the ro appliance adds (the last one counts, as
// in the kernel), and the init appliance adds.
func TestParseRaspiFirmwareCmdline(t *testing.T) {
	c, err := ParseCmdline(" console=ttyS1,115200 root=UUID=0E4F5A3B-1C2D-4E5F-8A9B-0C1D2E3F4A5B rw fsck.repair=yes net.ifnames=0  rootwait rootfstype=ext4 ro init=/usr/lib/appliance/init panic=10\n")
	if err != nil || c.UUID != "0e4f5a3b-1c2d-4e5f-8a9b-0c1d2e3f4a5b" || c.PartUUID != "" || !c.ReadOnly || c.Init != "/usr/lib/appliance/init" {
		t.Errorf("ParseCmdline = %+v, %v", c, err)
	}
	if _, err := ParseCmdline("root=LABEL=rootfs"); err == nil || !strings.Contains(err.Error(), "UUID=") {
		t.Errorf("root=LABEL= accepted, or the error names no way out: %v", err)
	}
}

// FindFilesystem against file systems mke2fs made with a UUID of its
// own choosing, read back by blkid: the device whose UUID matches, and
// none for another UUID or a device that is no ext4.
func TestFindFilesystem(t *testing.T) {
	testenv.Require(t, "mke2fs", "blkid")
	dir := t.TempDir()
	dev := filepath.Join(dir, "dev")
	sysBlock := filepath.Join(dir, "class/block")
	os.MkdirAll(dev, 0o755)
	os.MkdirAll(sysBlock, 0o755)
	uuids := map[string]string{}
	for _, n := range []string{"mmcblk0p1", "mmcblk0p2", "mmcblk0p3"} {
		p := filepath.Join(dev, n)
		if err := os.WriteFile(p, make([]byte, 8<<20), 0o644); err != nil {
			t.Fatal(err)
		}
		os.MkdirAll(filepath.Join(sysBlock, n), 0o755)
		if n == "mmcblk0p1" {
			continue // no file system
		}
		testenv.MustRun(t, "mke2fs", "-q", "-t", "ext4", "-F", p)
		out := testenv.MustRun(t, "blkid", "-o", "value", "-s", "UUID", p)
		uuids[n] = strings.TrimSpace(out)
	}
	for n, u := range uuids {
		got, err := FindFilesystem(sysBlock, dev, u)
		if err != nil || got != filepath.Join(dev, n) {
			t.Errorf("FindFilesystem(%s) = %q, %v; want %s", u, got, err, n)
		}
	}
	if got, err := FindFilesystem(sysBlock, dev, "00000000-0000-4000-8000-000000000000"); err == nil {
		t.Errorf("an unknown UUID found %s", got)
	}
}

func TestFstabMounts(t *testing.T) {
	p := filepath.Join(t.TempDir(), "fstab")
	os.WriteFile(p, []byte("# /boot/firmware\nPARTUUID=1-02\t/\text4\tdefaults 0 1\nPARTUUID=1-01\t/boot/firmware\tvfat\tdefaults,nofail 0 2\n"), 0o644)
	if !fstabMounts(p, BootMount) || fstabMounts(p, "/srv") || fstabMounts(filepath.Join(t.TempDir(), "none"), BootMount) {
		t.Error("fstabMounts read the table wrongly")
	}
}
