// Package espimage reads ESP-IDF application and bootloader images, the
// format `esptool elf2image` writes and the ESP32 ROM and second-stage
// bootloaders load: a 24-byte header (magic 0xE9, SPI settings, chip id,
// chip revisions, whether a SHA-256 is appended), up to 16 segments of
// load address, length and data, a checksum byte at an offset ≡ 15
// (mod 16), and the optional SHA-256 of everything before it. An app's
// first flash-mapped data segment starts with esp_app_desc_t (version,
// project name, secure version, IDF version).
//
// Parse checks every field it reads and every length against the input;
// malformed input is an *Error naming the field and its file offset,
// never a panic. Check compares the descriptor with the spec's version
// and secure version. The package only reads: signing is secureboot's.
package espimage

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"unicode/utf8"
)

// Chip is the image header's chip id (esptool's IMAGE_CHIP_ID).
type Chip uint16

// The chips appliance knows.
const (
	ESP32   Chip = 0
	ESP32S2 Chip = 2
	ESP32C3 Chip = 5
	ESP32S3 Chip = 9
	ESP32C2 Chip = 12
	ESP32C6 Chip = 13
	ESP32H2 Chip = 16
)

var chipNames = map[Chip]string{
	ESP32: "esp32", ESP32S2: "esp32s2", ESP32C3: "esp32c3", ESP32S3: "esp32s3",
	ESP32C2: "esp32c2", ESP32C6: "esp32c6", ESP32H2: "esp32h2",
}

// String is the chip's name as esptool's --chip and the spec spell it.
func (c Chip) String() string {
	if n, ok := chipNames[c]; ok {
		return n
	}
	return fmt.Sprintf("chip id %d", uint16(c))
}

// ParseChip reads a chip name ("esp32s3").
func ParseChip(name string) (Chip, error) {
	for c, n := range chipNames {
		if n == name {
			return c, nil
		}
	}
	return 0, fmt.Errorf("unknown chip %q; appliance knows esp32, esp32s2, esp32s3, esp32c2, esp32c3, esp32c6 and esp32h2", name)
}

// Sizes and magic numbers of the format.
const (
	Magic         = 0xE9
	HeaderSize    = 24
	SegHeaderSize = 8
	MaxSegments   = 16
	AppDescMagic  = 0xABCD5432
	AppDescSize   = 256
	// checksumMagic seeds the XOR checksum of the segment data.
	checksumMagic = 0xEF
)

// Header is the image header (esp_image_header_t).
type Header struct {
	SegmentCount uint8
	SPIMode      uint8 // 0 QIO, 1 QOUT, 2 DIO, 3 DOUT
	SPISpeed     uint8 // low nibble of byte 3
	SPISize      uint8 // high nibble of byte 3: 0 = 1 MB … 7 = 128 MB
	Entry        uint32
	WPPin        uint8
	SPIPinDrv    [3]uint8
	Chip         Chip
	MinRev       uint8
	MinRevFull   uint16
	MaxRevFull   uint16
	HashAppended bool
}

// Segment is one loaded segment; Data aliases the parsed input.
type Segment struct {
	LoadAddr uint32
	// Offset is the file offset of the segment's data (after its
	// 8-byte header).
	Offset int
	Data   []byte
}

// AppDesc is esp_app_desc_t, the application's descriptor.
type AppDesc struct {
	SecureVersion uint32
	Version       string
	ProjectName   string
	Time, Date    string
	IDFVersion    string
	ELFSHA256     [32]byte
}

// Image is a parsed image.
type Image struct {
	Header
	Segments []Segment
	// ChecksumOffset is the file offset of the checksum byte.
	ChecksumOffset int
	Checksum       uint8
	// SHA256 is the appended digest (nil when the header says none).
	SHA256 []byte
	// Size is the length of the image: up to the checksum, or the
	// digest when there is one. Bytes past it (a signature sector, the
	// erased flash of a partition dump) are not part of the image.
	Size int
	// App is the application descriptor, nil for an image without one
	// (a bootloader).
	App *AppDesc
}

// Error is malformed input: which field, at which file offset, and why.
type Error struct {
	Field  string
	Offset int
	Reason string
}

func (e *Error) Error() string {
	return fmt.Sprintf("ESP image: %s at offset %#x: %s", e.Field, e.Offset, e.Reason)
}

func fail(field string, off int, format string, args ...any) error {
	return &Error{Field: field, Offset: off, Reason: fmt.Sprintf(format, args...)}
}

// Parse reads an image from b and checks its magic, chip id, segments,
// checksum and appended SHA-256. It keeps slices of b.
func Parse(b []byte) (*Image, error) {
	img := &Image{}
	if err := img.parseHeader(b); err != nil {
		return nil, err
	}
	off := HeaderSize
	sum := byte(checksumMagic)
	for i := range int(img.SegmentCount) {
		field := fmt.Sprintf("segment %d header", i)
		if len(b)-off < SegHeaderSize {
			return nil, fail(field, off, "the file ends after %d bytes; the header says %d segments", len(b), img.SegmentCount)
		}
		addr := binary.LittleEndian.Uint32(b[off:])
		n := binary.LittleEndian.Uint32(b[off+4:])
		if uint64(n) > uint64(len(b)-off-SegHeaderSize) {
			return nil, fail(fmt.Sprintf("segment %d length", i), off+4, "%d bytes, but only %d follow", n, len(b)-off-SegHeaderSize)
		}
		data := b[off+SegHeaderSize : off+SegHeaderSize+int(n)]
		for _, c := range data {
			sum ^= c
		}
		img.Segments = append(img.Segments, Segment{LoadAddr: addr, Offset: off + SegHeaderSize, Data: data})
		off += SegHeaderSize + int(n)
	}
	if err := img.parseFooter(b, off, sum); err != nil {
		return nil, err
	}
	app, err := img.appDesc()
	if err != nil {
		return nil, err
	}
	img.App = app
	return img, nil
}

// ParseHeader reads and checks only the 24-byte header: for callers
// that need an image's chip and settings and have checked it whole
// before (Parse reads every byte and hashes them).
func ParseHeader(b []byte) (*Header, error) {
	var img Image
	if err := img.parseHeader(b); err != nil {
		return nil, err
	}
	return &img.Header, nil
}

func (img *Image) parseHeader(b []byte) error {
	if len(b) < HeaderSize {
		return fail("header", 0, "the file has %d bytes, an image header %d", len(b), HeaderSize)
	}
	if b[0] != Magic {
		return fail("magic", 0, "%#02x, want %#02x: not an ESP-IDF image", b[0], Magic)
	}
	h := &img.Header
	h.SegmentCount, h.SPIMode = b[1], b[2]
	h.SPISpeed, h.SPISize = b[3]&0x0F, b[3]>>4
	h.Entry = binary.LittleEndian.Uint32(b[4:])
	h.WPPin = b[8]
	copy(h.SPIPinDrv[:], b[9:12])
	h.Chip = Chip(binary.LittleEndian.Uint16(b[12:]))
	h.MinRev = b[14]
	h.MinRevFull = binary.LittleEndian.Uint16(b[15:])
	h.MaxRevFull = binary.LittleEndian.Uint16(b[17:])
	switch {
	case h.SegmentCount > MaxSegments:
		return fail("segment count", 1, "%d, at most %d", h.SegmentCount, MaxSegments)
	case h.SPIMode > 5:
		return fail("SPI mode", 2, "%d is none of QIO, QOUT, DIO, DOUT, FAST_READ, SLOW_READ", h.SPIMode)
	case h.SPISize > 7:
		return fail("flash size", 3, "code %d is none of 1 MB … 128 MB", h.SPISize)
	case chipNames[h.Chip] == "":
		return fail("chip id", 12, "%d is no ESP32 family member appliance knows", uint16(h.Chip))
	case b[23] > 1:
		return fail("hash appended", 23, "%d, want 0 or 1", b[23])
	}
	h.HashAppended = b[23] == 1
	return nil
}

func (img *Image) parseFooter(b []byte, off int, sum byte) error {
	// Zero padding puts the checksum at an offset ≡ 15 (mod 16).
	off += 15 - off%16
	if off >= len(b) {
		return fail("checksum", off, "the file ends at %#x, before the checksum", len(b))
	}
	img.ChecksumOffset, img.Checksum = off, b[off]
	if b[off] != sum {
		return fail("checksum", off, "stored %#02x, computed %#02x: the image is damaged", b[off], sum)
	}
	img.Size = off + 1
	if !img.HashAppended {
		return nil
	}
	if len(b)-img.Size < sha256.Size {
		return fail("appended SHA-256", img.Size, "the file ends %d bytes after the checksum; the header says a SHA-256 follows", len(b)-img.Size)
	}
	got := sha256.Sum256(b[:img.Size])
	img.SHA256 = b[img.Size : img.Size+sha256.Size]
	if !bytes.Equal(got[:], img.SHA256) {
		return fail("appended SHA-256", img.Size, "stored %x, computed %x: the image is damaged", img.SHA256, got)
	}
	img.Size += sha256.Size
	return nil
}

// appDesc reads esp_app_desc_t at the start of the first segment, where
// ESP-IDF's linker script puts it (file offset 0x20).
func (img *Image) appDesc() (*AppDesc, error) {
	if len(img.Segments) == 0 {
		return nil, nil
	}
	s := img.Segments[0]
	if len(s.Data) < 4 || binary.LittleEndian.Uint32(s.Data) != AppDescMagic {
		return nil, nil
	}
	if len(s.Data) < AppDescSize {
		return nil, fail("app descriptor", s.Offset, "the first segment has %d bytes, the descriptor %d", len(s.Data), AppDescSize)
	}
	d := s.Data
	a := &AppDesc{SecureVersion: binary.LittleEndian.Uint32(d[4:])}
	fields := []struct {
		name     string
		off, len int
		dst      *string
	}{
		{"app version", 16, 32, &a.Version},
		{"project name", 48, 32, &a.ProjectName},
		{"compile time", 80, 16, &a.Time},
		{"compile date", 96, 16, &a.Date},
		{"IDF version", 112, 32, &a.IDFVersion},
	}
	for _, f := range fields {
		v, _, _ := bytes.Cut(d[f.off:f.off+f.len], []byte{0})
		if !utf8.Valid(v) {
			return nil, fail(f.name, s.Offset+f.off, "not UTF-8 text")
		}
		*f.dst = string(v)
	}
	copy(a.ELFSHA256[:], d[144:176])
	return a, nil
}
