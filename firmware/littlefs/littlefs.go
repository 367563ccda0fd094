// Package littlefs writes and reads littlefs images, on-disk version 2.1
// (littlefs v2.6 and later, esp_littlefs 1.x), in pure Go.
//
// Build writes a fresh file system as littlefs itself leaves one after
// compacting every directory: the superblock pair in blocks 0 and 1
// doubling as the root directory, one metadata pair per directory (more
// when one does not fit half a block, chained by hard tails), every
// pair threaded into the metadata list by soft tails, files of at most
// InlineMax bytes inline in their directory and larger ones as CTZ
// skip-lists, each commit closed by an FCRC of the erased bytes after
// it and its CRC, so the device can append to it. Entries are sorted as
// littlefs sorts them, blocks are allocated in order, and nothing
// depends on the clock: the same entries give the same bytes.
//
// ESP32 gives the geometry esp_littlefs mounts on a 4 KiB-sector flash:
// block size 4096, block count = partition size / 4096, and superblock
// limits no larger than esp_littlefs is built with (name_max 64, names
// of at most 63 bytes so they fit its 64-byte VFS buffers, file_max
// 2^31−1, attr_max 1022); littlefs refuses to mount an image whose
// limits exceed its own.
//
// Read reads any version 2.0 or 2.1 image, including ones littlefs
// wrote with many commits per block: it replays each metadata log up to
// its last valid CRC. Every offset, length and block number it meets is
// checked against the image; damaged input is an error, never a panic
// or an endless loop.
package littlefs

import (
	"errors"
	"fmt"
	"hash/crc32"
	"strings"
)

// Geometry is a file system's shape and superblock limits.
type Geometry struct {
	BlockSize  int
	BlockCount int
	// ProgSize is the device's program unit: commits end on a multiple
	// of it (esp_littlefs: 128).
	ProgSize int
	// InlineMax is the largest file kept inline in its directory;
	// littlefs's own limit is min(cache size, block size / 8, 1022).
	InlineMax int
	NameMax   uint32
	FileMax   uint32
	AttrMax   uint32
}

// The limits esp_littlefs is built with (lfs.h's defaults, and its
// CONFIG_LITTLEFS_OBJ_NAME_LEN of 64).
const (
	ESP32BlockSize = 4096
	ESP32NameMax   = 64
	ESP32FileMax   = 0x7FFFFFFF
	ESP32AttrMax   = 1022
	// MaxName is the longest name ESP32 images accept: the VFS buffer
	// of CONFIG_LITTLEFS_OBJ_NAME_LEN bytes holds the name and a NUL.
	MaxName = ESP32NameMax - 1
)

// ESP32 is the geometry of a littlefs partition of partitionSize bytes
// for esp_littlefs, with its default cache of 512 bytes.
func ESP32(partitionSize int) (Geometry, error) {
	if partitionSize <= 0 || partitionSize%ESP32BlockSize != 0 {
		return Geometry{}, fmt.Errorf("a littlefs partition of %#x bytes: its size must be a positive multiple of 4 KiB", partitionSize)
	}
	return Geometry{
		BlockSize: ESP32BlockSize, BlockCount: partitionSize / ESP32BlockSize,
		ProgSize: 128, InlineMax: 512,
		NameMax: ESP32NameMax, FileMax: ESP32FileMax, AttrMax: ESP32AttrMax,
	}, nil
}

func (g Geometry) check() error {
	switch {
	case g.BlockSize < 128 || g.BlockSize&(g.BlockSize-1) != 0:
		return fmt.Errorf("block size %d: littlefs needs a power of two of at least 128", g.BlockSize)
	case g.BlockCount < 2:
		return fmt.Errorf("block count %d: the superblock pair alone takes 2", g.BlockCount)
	case g.ProgSize <= 0 || g.BlockSize%g.ProgSize != 0:
		return fmt.Errorf("prog size %d does not divide the block size %d", g.ProgSize, g.BlockSize)
	case g.NameMax == 0 || g.NameMax > 1022:
		return fmt.Errorf("name_max %d: littlefs takes 1 to 1022", g.NameMax)
	case g.AttrMax > 1022 || g.FileMax == 0 || g.FileMax > 0x7FFFFFFF:
		return fmt.Errorf("attr_max %d or file_max %d out of littlefs's range", g.AttrMax, g.FileMax)
	case g.InlineMax < 0 || g.InlineMax > 1022 || g.InlineMax > g.BlockSize/8:
		return fmt.Errorf("inline max %d: at most min(1022, block size / 8)", g.InlineMax)
	}
	return nil
}

// Entry is a file or a directory; directories that hold files need no
// entry of their own.
type Entry struct {
	// Path is absolute, slash-separated: "/config.json", "/ota/key0.pem".
	Path string
	Dir  bool
	Data []byte
}

// On-disk constants (lfs.h, SPEC.md).
const (
	diskVersion = 0x00020001
	magic       = "littlefs"

	typeReg        = 0x001
	typeDir        = 0x002
	typeSuperblock = 0x0FF
	typeDirStruct  = 0x200
	typeInline     = 0x201
	typeCTZ        = 0x202
	typeUserAttr   = 0x300
	typeCreate     = 0x401
	typeDelete     = 0x4FF
	typeSoftTail   = 0x600
	typeHardTail   = 0x601
	typeMoveState  = 0x7FF
	typeCCRC       = 0x500
	typeFCRC       = 0x5FF

	idNone     = 0x3FF
	sizeDelete = 0x3FF
	blockNull  = 0xFFFFFFFF
)

// tag is a metadata tag in its logical form:
// [invalid:1][type:11][id:10][size:10].
type tag uint32

func mktag(typ, id, size uint32) tag { return tag(typ<<20 | id<<10 | size) }

func (t tag) valid() bool   { return t&0x80000000 == 0 }
func (t tag) type1() uint32 { return uint32(t>>20) & 0x700 }
func (t tag) type3() uint32 { return uint32(t>>20) & 0x7FF }
func (t tag) chunk() uint32 { return uint32(t>>20) & 0xFF }
func (t tag) id() uint32    { return uint32(t>>10) & 0x3FF }
func (t tag) size() uint32  { return uint32(t) & 0x3FF }

// dsize is the tag's length on disk with its data (a deleted tag has
// none).
func (t tag) dsize() int {
	if t.size() == sizeDelete {
		return 4
	}
	return 4 + int(t.size())
}

// crc is littlefs's CRC-32: the IEEE polynomial, reflected, without the
// final inversion; init is the running value (0xFFFFFFFF to start).
func crc(init uint32, b []byte) uint32 {
	return ^crc32.Update(^init, crc32.IEEETable, b)
}

// less is littlefs's order of names in a directory: by their common
// prefix, and a name before its own prefix.
func less(a, b string) bool {
	n := min(len(a), len(b))
	if c := strings.Compare(a[:n], b[:n]); c != 0 {
		return c < 0
	}
	return len(a) > len(b)
}

// ctz is the number of trailing zero bits of n > 0.
func ctz(n uint32) int {
	c := 0
	for n&1 == 0 {
		n >>= 1
		c++
	}
	return c
}

var errCorrupt = errors.New("littlefs image is damaged")

func corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errCorrupt, fmt.Sprintf(format, args...))
}
