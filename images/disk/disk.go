// Package disk lays out the gateway's whole disk image: an MBR, a FAT32
// boot partition at 4 MiB and an ext4 root partition after it, written
// into one sparse file, with its bmap beside it.
//
// The root partition is last so that the gateway can grow it, and the
// file system in it, to the whole card on first boot (see Grow).
package disk

import (
	"fmt"
	"io"
	"os"

	"github.com/appliance/appliance/images/bmap"
	"github.com/appliance/appliance/images/ext4"
	"github.com/appliance/appliance/images/fat"
	"github.com/appliance/appliance/images/mbr"
)

// Align is where partitions start and how their sizes are rounded: SD
// cards erase in blocks of up to 4 MiB, and a partition that starts on
// one keeps the file systems' writes from straddling two.
const Align = 4 << 20

// BootStart is where the boot partition starts.
const BootStart = Align

// Layout describes the image.
type Layout struct {
	// DiskID is the MBR disk identifier: PARTUUIDs are DiskID-01 (boot)
	// and DiskID-02 (root). Derive it from the site, so it is stable.
	DiskID uint32
	// BootSize and RootSize are the partitions' sizes in bytes; each is
	// rounded up to Align.
	BootSize, RootSize int64
	// Boot and Root are the file systems' options; their Size (and the
	// boot sector's HiddenSectors) come from the layout.
	Boot fat.Options
	Root ext4.Options
}

func alignUp(n int64) int64 { return (n + Align - 1) / Align * Align }

// Partitions is the partition table for l.
func (l Layout) Partitions() []mbr.Partition {
	boot := alignUp(l.BootSize)
	return []mbr.Partition{
		{Type: mbr.TypeFAT32LBA, Start: BootStart, Size: boot},
		{Type: mbr.TypeLinux, Start: BootStart + boot, Size: alignUp(l.RootSize)},
	}
}

// Size is the image's size in bytes.
func (l Layout) Size() int64 {
	p := l.Partitions()[1]
	return p.Start + p.Size
}

// BootPartUUID and RootPartUUID are the partitions' PARTUUIDs, for the
// kernel command line (root=PARTUUID=…) and fstab.
func (l Layout) BootPartUUID() string { return mbr.PartUUID(l.DiskID, 1) }

// RootPartUUID: see BootPartUUID.
func (l Layout) RootPartUUID() string { return mbr.PartUUID(l.DiskID, 2) }

// Write writes the image to path, replacing it, and its bmap to
// path+".bmap". The image is sparse: only the blocks the writers wrote
// take space, and only they are in the bmap.
func Write(path string, l Layout, boot []fat.Entry, root []ext4.Entry) error {
	if err := WriteImage(path, l, boot, root); err != nil {
		return err
	}
	return WriteBmap(path)
}

// WriteImage writes the image alone, for callers that make its bmap
// later, alongside other reads of the image.
func WriteImage(path string, l Layout, boot []fat.Entry, root []ext4.Entry) (err error) {
	parts := l.Partitions()
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("disk: %w", err)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("disk: %w", cerr)
		}
	}()
	if err := f.Truncate(l.Size()); err != nil {
		return fmt.Errorf("disk: %s: %w", path, err)
	}
	if err := mbr.Write(f, l.DiskID, parts); err != nil {
		return fmt.Errorf("disk: %s: %w", path, err)
	}
	bo := l.Boot
	bo.Size = parts[0].Size
	bo.HiddenSectors = uint32(parts[0].Start / mbr.SectorSize)
	if err := fat.Write(io.NewOffsetWriter(f, parts[0].Start), boot, bo); err != nil {
		return fmt.Errorf("disk: boot partition: %w", err)
	}
	ro := l.Root
	ro.Size = parts[1].Size
	if err := ext4.Write(io.NewOffsetWriter(f, parts[1].Start), root, ro); err != nil {
		return fmt.Errorf("disk: root partition: %w", err)
	}
	return nil
}

// WriteBmap writes the bmap of the image at path to path+".bmap".
func WriteBmap(path string) error {
	img, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("disk: %w", err)
	}
	defer img.Close()
	out, err := os.Create(path + ".bmap")
	if err != nil {
		return fmt.Errorf("disk: %w", err)
	}
	if err := bmap.Write(out, img); err != nil {
		out.Close()
		return fmt.Errorf("disk: %s.bmap: %w", path, err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("disk: %w", err)
	}
	return nil
}

// GrowScript is what the gateway runs once on first boot, as root, to
// grow the root partition to the end of the card and the ext4 in it
// while it is mounted. DISK is the card (/dev/mmcblk0 on a Pi, /dev/vda
// under QEMU), PART the root partition's device. sfdisk keeps the disk
// identifier, so PARTUUIDs stay valid; the kernel learns the new
// partition size from partx; resize2fs then grows the mounted file
// system online, using the GDT blocks images/ext4 reserved.
const GrowScript = `set -eu
echo ', +' | sfdisk --no-reread --no-tell-kernel -N 2 "$DISK"
partx -u -n 2 "$DISK"
resize2fs "$PART"
`
