// Package mbr writes a master boot record partition table: the table the
// Raspberry Pi firmware reads to find its FAT boot partition.
package mbr

import (
	"encoding/binary"
	"fmt"
	"io"
)

// Partition types the gateway image uses.
const (
	TypeFAT32LBA = 0x0C
	TypeLinux    = 0x83
)

// SectorSize is the sector the table counts in.
const SectorSize = 512

// Partition is one primary partition, in bytes from the disk's start.
type Partition struct {
	Type     byte
	Start    int64 // a multiple of SectorSize, past the table
	Size     int64 // a multiple of SectorSize
	Bootable bool  // the 0x80 flag; the Pi firmware does not need it
}

// Encode returns the table's sector: no boot code, the disk identifier
// (the "1234abcd" of root=PARTUUID=1234abcd-02) and up to four
// partitions, in order and not overlapping.
func Encode(diskID uint32, parts []Partition) ([SectorSize]byte, error) {
	var b [SectorSize]byte
	if len(parts) > 4 {
		return b, fmt.Errorf("mbr: %d partitions; an MBR holds 4", len(parts))
	}
	end := int64(SectorSize)
	for i, p := range parts {
		switch {
		case p.Type == 0:
			return b, fmt.Errorf("mbr: partition %d has type 0, which marks an unused slot", i+1)
		case p.Start%SectorSize != 0 || p.Size%SectorSize != 0 || p.Size <= 0:
			return b, fmt.Errorf("mbr: partition %d: start %d and size %d must be whole, non-empty sectors", i+1, p.Start, p.Size)
		case p.Start < end:
			return b, fmt.Errorf("mbr: partition %d starts at %d, before the end of what comes before it (%d)", i+1, p.Start, end)
		case (p.Start+p.Size)/SectorSize > 1<<32-1:
			return b, fmt.Errorf("mbr: partition %d ends past 2 TiB, the MBR limit", i+1)
		}
		end = p.Start + p.Size
		e := b[446+16*i:]
		if p.Bootable {
			e[0] = 0x80
		}
		first, last := uint32(p.Start/SectorSize), uint32((p.Start+p.Size)/SectorSize-1)
		putCHS(e[1:4], first)
		e[4] = p.Type
		putCHS(e[5:8], last)
		binary.LittleEndian.PutUint32(e[8:], first)
		binary.LittleEndian.PutUint32(e[12:], last-first+1)
	}
	binary.LittleEndian.PutUint32(b[440:], diskID)
	b[510], b[511] = 0x55, 0xAA
	return b, nil
}

// putCHS stores a sector address in the legacy cylinder/head/sector form
// of a 255-head, 63-sector geometry, clamped at its limit as fdisk does.
// Nothing on the gateway reads it; some old tools check it.
func putCHS(b []byte, lba uint32) {
	const heads, sectors = 255, 63
	c, h, s := lba/(heads*sectors), (lba/sectors)%heads, lba%sectors+1
	if c > 1023 {
		c, h, s = 1023, 254, 63
	}
	b[0] = byte(h)
	b[1] = byte(s) | byte(c>>8)<<6
	b[2] = byte(c)
}

// Write writes the table to the disk's first sector.
func Write(w io.WriterAt, diskID uint32, parts []Partition) error {
	b, err := Encode(diskID, parts)
	if err != nil {
		return err
	}
	_, err = w.WriteAt(b[:], 0)
	return err
}

// PartUUID is the PARTUUID Linux gives partition n (from 1) of an MBR
// disk, as in root=PARTUUID=1234abcd-02.
func PartUUID(diskID uint32, n int) string { return fmt.Sprintf("%08x-%02x", diskID, n) }
