package bootinit

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// mbr offsets.
const (
	mbrDiskID    = 0x1B8
	mbrTable     = 0x1BE
	mbrEntrySize = 16
	mbrSig       = 0x1FE
	sectorSize   = 512
)

// readMBR reads a disk's first sector and checks its signature.
func readMBR(dev string) ([]byte, error) {
	f, err := os.Open(dev)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, sectorSize)
	if _, err := f.ReadAt(b, 0); err != nil {
		return nil, err
	}
	if b[mbrSig] != 0x55 || b[mbrSig+1] != 0xAA {
		return nil, fmt.Errorf("%s has no MBR", dev)
	}
	return b, nil
}

// FindPartition looks through sysfs for the partition with the given
// PARTUUID and returns its device node, such as /dev/vda2.
func FindPartition(sysBlock, devDir, partuuid string) (string, error) {
	entries, err := os.ReadDir(sysBlock)
	if err != nil {
		return "", err
	}
	for _, e := range entries {
		name := e.Name()
		numb, err := os.ReadFile(filepath.Join(sysBlock, name, "partition"))
		if err != nil {
			continue // a whole disk
		}
		num, err := strconv.Atoi(strings.TrimSpace(string(numb)))
		if err != nil {
			continue
		}
		// The parent folder of a partition in sysfs is its disk.
		link, err := filepath.EvalSymlinks(filepath.Join(sysBlock, name))
		if err != nil {
			continue
		}
		disk := filepath.Base(filepath.Dir(link))
		mbr, err := readMBR(filepath.Join(devDir, disk))
		if err != nil {
			continue
		}
		if PartUUID(binary.LittleEndian.Uint32(mbr[mbrDiskID:]), num) == partuuid {
			return filepath.Join(devDir, name), nil
		}
	}
	return "", errNotFound
}

var errNotFound = errors.New("no such partition yet")

// ext4 superblock fields, from the start of the device.
const (
	ext4Super = 1024
	ext4Magic = ext4Super + 0x38
	ext4UUID  = ext4Super + 0x68
)

// FindFilesystem looks through sysfs for the block device that holds the
// ext4 file system with the given UUID (as blkid writes it) and returns
// its device node, such as /dev/mmcblk0p2.
func FindFilesystem(sysBlock, devDir, uuid string) (string, error) {
	entries, err := os.ReadDir(sysBlock)
	if err != nil {
		return "", err
	}
	for _, e := range entries {
		dev := filepath.Join(devDir, e.Name())
		if got, err := ext4FSUUID(dev); err == nil && got == uuid {
			return dev, nil
		}
	}
	return "", errNotFound
}

// ext4FSUUID reads the UUID of the ext4 file system on dev.
func ext4FSUUID(dev string) (string, error) {
	f, err := os.Open(dev)
	if err != nil {
		return "", err
	}
	defer f.Close()
	b := make([]byte, ext4UUID+16)
	if _, err := f.ReadAt(b, 0); err != nil {
		return "", err
	}
	if binary.LittleEndian.Uint16(b[ext4Magic:]) != 0xEF53 {
		return "", fmt.Errorf("%s holds no ext4 file system", dev)
	}
	u := b[ext4UUID:]
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16]), nil
}

// Growth is how a partition should grow to fill its disk.
type Growth struct {
	Disk      string // /dev/vda
	Partition int
	Start     uint64 // sectors
	Sectors   uint64 // now
	NewSize   uint64 // sectors, 0 when there is nothing to grow
}

// PlanGrowth works out how far the last partition can grow: to the end
// of the disk, keeping 1 MiB alignment.
func PlanGrowth(disk string, partition int, diskSectors uint64) (Growth, error) {
	mbr, err := readMBR(disk)
	if err != nil {
		return Growth{}, err
	}
	e := mbr[mbrTable+(partition-1)*mbrEntrySize:]
	g := Growth{Disk: disk, Partition: partition,
		Start: uint64(binary.LittleEndian.Uint32(e[8:])), Sectors: uint64(binary.LittleEndian.Uint32(e[12:]))}
	for i := 0; i < 4; i++ {
		o := mbr[mbrTable+i*mbrEntrySize:]
		if i != partition-1 && binary.LittleEndian.Uint32(o[8:]) > uint32(g.Start) {
			return g, fmt.Errorf("partition %d of %s is not the last one; it cannot grow", partition, disk)
		}
	}
	end := diskSectors
	if end > 1<<32-1 {
		end = 1<<32 - 1 // the most an MBR entry can describe (2 TiB)
	}
	const align = 2048 // 1 MiB of sectors
	end -= end % align
	if end > g.Start+g.Sectors {
		g.NewSize = end - g.Start
	}
	return g, nil
}

// WriteGrowth writes the larger partition entry into the MBR. The CHS
// fields keep the "beyond CHS" marks LBA-only tables use.
func WriteGrowth(g Growth) error {
	f, err := os.OpenFile(g.Disk, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	off := int64(mbrTable + (g.Partition-1)*mbrEntrySize + 12)
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], uint32(g.NewSize))
	if _, err := f.WriteAt(b[:], off); err != nil {
		return err
	}
	if _, err := f.WriteAt([]byte{0xFE, 0xFF, 0xFF}, off-7); err != nil {
		return err
	}
	return f.Sync()
}
