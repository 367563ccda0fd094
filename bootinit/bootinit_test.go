package bootinit

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
