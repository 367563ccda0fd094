// Package fwtest makes ESP-IDF app images for the firmware packages'
// tests, laid out as `esptool elf2image --secure-pad-v2` lays them out:
// a flash-mapped data segment starting with esp_app_desc_t, a RAM
// segment, a padding segment so that the image with its checksum and
// SHA-256 ends on a 64 KiB boundary, and the appended SHA-256. Only
// tests import it.
package fwtest

import (
	"crypto/sha256"
	"encoding/binary"
	"math/rand/v2"

	"github.com/appliance/appliance/firmware/espimage"
)

// App describes an image to make.
type App struct {
	Chip          espimage.Chip
	Version       string
	Project       string
	IDFVersion    string
	SecureVersion uint32
	// DataSize is the length of the data segment, descriptor included
	// (at least 256; rounded up to 4).
	DataSize int
	// Seed picks the segments' bytes.
	Seed uint64
	// NoPad leaves the image unpadded (not 64 KiB-aligned).
	NoPad bool
	// Bootloader makes a bootloader-like image instead: no app
	// descriptor, no padding, no appended SHA-256 (so esptool may set
	// its flash settings), and QIO, 40 MHz, 1 MB in its header.
	Bootloader bool
}

// memory is where each chip maps flash data (DROM) and has IRAM.
var memory = map[espimage.Chip][2]uint32{
	espimage.ESP32:   {0x3F400000, 0x40080000},
	espimage.ESP32S2: {0x3F000000, 0x40020000},
	espimage.ESP32S3: {0x3C000000, 0x40370000},
	espimage.ESP32C3: {0x3C000000, 0x4037C000},
	espimage.ESP32C2: {0x3C000000, 0x4037C000},
	espimage.ESP32C6: {0x42800000, 0x40800000},
	espimage.ESP32H2: {0x42800000, 0x40800000},
}

// parts are the data segment (descriptor first) and the IRAM segment.
func (a App) parts() (data, iram []byte) {
	rng := rand.New(rand.NewPCG(a.Seed, 1))
	n := max(a.DataSize, espimage.AppDescSize)
	n = (n + 3) &^ 3
	data = make([]byte, n)
	for i := espimage.AppDescSize; i < n; i++ {
		data[i] = byte(rng.Uint32())
	}
	desc := data[:espimage.AppDescSize]
	binary.LittleEndian.PutUint32(desc[0:], espimage.AppDescMagic)
	binary.LittleEndian.PutUint32(desc[4:], a.SecureVersion)
	copy(desc[16:48], a.Version)
	copy(desc[48:80], or(a.Project, "sensor"))
	copy(desc[80:96], "12:00:00")
	copy(desc[96:112], "Jan  1 2026")
	copy(desc[112:144], or(a.IDFVersion, "v5.2.1"))
	for i := 144; i < 176; i++ {
		desc[i] = byte(rng.Uint32())
	}
	iram = make([]byte, 64)
	for i := range iram {
		iram[i] = byte(rng.Uint32())
	}
	return data, iram
}

// Image makes the image.
func (a App) Image() []byte {
	mem := memory[a.Chip]
	data, iram := a.parts()
	b := make([]byte, espimage.HeaderSize)
	b[0] = espimage.Magic
	b[2] = 2             // DIO
	b[3] = 0x2<<4 | 0x0F // 4 MB, 80 MHz
	binary.LittleEndian.PutUint32(b[4:], mem[1]+4)
	b[8] = 0xEE
	binary.LittleEndian.PutUint16(b[12:], uint16(a.Chip))
	binary.LittleEndian.PutUint16(b[17:], 0xFFFF)
	b[23] = 1
	segs := []seg{{mem[0] + 0x20, data}, {mem[1], iram}}
	if a.Bootloader {
		binary.LittleEndian.PutUint32(data, 0)
		b[2], b[3], b[23] = 0, 0, 0
	}
	if !a.NoPad && !a.Bootloader {
		alignPast := (len(b) + segLen(segs) + espimage.SegHeaderSize) % 65536
		pad := (65536 - alignPast - 16 - 32) % 65536
		segs = append(segs, seg{0, make([]byte, pad)})
	}
	b[1] = byte(len(segs))
	sum := byte(0xEF)
	for _, s := range segs {
		d := s.data
		b = binary.LittleEndian.AppendUint32(b, s.addr)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(d)))
		b = append(b, d...)
		for _, c := range d {
			sum ^= c
		}
	}
	for len(b)%16 != 15 {
		b = append(b, 0)
	}
	b = append(b, sum)
	if a.Bootloader {
		return b
	}
	h := sha256.Sum256(b)
	return append(b, h[:]...)
}

type seg struct {
	addr uint32
	data []byte
}

func segLen(segs []seg) int {
	n := 0
	for _, s := range segs {
		n += espimage.SegHeaderSize + len(s.data)
	}
	return n
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// ELF makes an ELF executable of the same segments, for `esptool
// elf2image`: a loadable section (and program header) each for the
// data and the IRAM code, and the section name table.
func (a App) ELF() []byte {
	mem := memory[a.Chip]
	data, iram := a.parts()
	// elf2image writes the ELF's SHA-256 into the descriptor and
	// refuses to overwrite anything but zeros.
	clear(data[144:176])
	machine := uint16(0xF3) // RISC-V
	switch a.Chip {
	case espimage.ESP32, espimage.ESP32S2, espimage.ESP32S3:
		machine = 0x5E // Xtensa
	}
	names := []byte("\x00.flash.rodata\x00.iram0.text\x00.shstrtab\x00")
	type section struct {
		name, typ, flags, addr uint32
		body                   []byte
	}
	secs := []section{
		{},
		{1, 1, 2, mem[0] + 0x20, data}, // PROGBITS, ALLOC
		{16, 1, 6, mem[1], iram},       // PROGBITS, ALLOC|EXEC
		{28, 3, 0, 0, names},           // STRTAB
	}
	const ehsize, phsize, shsize = 52, 32, 40
	off := ehsize + 2*phsize
	offs := make([]uint32, len(secs))
	for i, s := range secs {
		offs[i] = uint32(off)
		off += (len(s.body) + 3) &^ 3
	}
	le := binary.LittleEndian
	b := []byte{0x7F, 'E', 'L', 'F', 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	b = le.AppendUint16(b, 2) // ET_EXEC
	b = le.AppendUint16(b, machine)
	b = le.AppendUint32(b, 1)
	b = le.AppendUint32(b, mem[1]+4) // entry
	b = le.AppendUint32(b, ehsize)   // phoff
	b = le.AppendUint32(b, uint32(off))
	b = le.AppendUint32(b, 0)
	for _, v := range []uint16{ehsize, phsize, 2, shsize, uint16(len(secs)), 3} {
		b = le.AppendUint16(b, v)
	}
	for i := 1; i <= 2; i++ {
		s := secs[i]
		for _, v := range []uint32{1, offs[i], s.addr, s.addr, uint32(len(s.body)), uint32(len(s.body)), 5, 4} {
			b = le.AppendUint32(b, v)
		}
	}
	for _, s := range secs {
		b = append(b, s.body...)
		for len(b)%4 != 0 {
			b = append(b, 0)
		}
	}
	for i, s := range secs {
		size := uint32(len(s.body))
		o := offs[i]
		if i == 0 {
			o = 0
		}
		for _, v := range []uint32{s.name, s.typ, s.flags, s.addr, o, size, 0, 0, 1, 0} {
			b = le.AppendUint32(b, v)
		}
	}
	return b
}
