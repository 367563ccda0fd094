// Package partition makes and reads ESP-IDF partition tables, in the
// binary form the bootloader reads at 0x8000 (gen_esp32part's: 32-byte
// entries of magic AA 50, type, subtype, offset, size, a 16-byte label
// and flags, then the MD5 row — EB EB, 14 × FF, the MD5 of the entries —
// then FF up to 0xC00 bytes) and as the partitions.csv text an ESP-IDF
// project names in CONFIG_PARTITION_TABLE_CUSTOM_FILENAME.
//
// Layout is the node layout, one table for both the flash bundle and
// the C firmware's project (firmware/sensor/partitions-*.csv are its
// CSV, checked against it by the tests): nvs, otadata, phy_init, two
// OTA app slots and a littlefs data partition for the node's identity,
// and no factory slot, which anti-rollback forbids.
package partition

import (
	"bytes"
	"crypto/md5"
	"encoding/binary"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Where the table lives and how long it is.
const (
	TableOffset = 0x8000
	TableSize   = 0xC00
	entrySize   = 32
	entryMagic  = 0x50AA
	md5Magic    = 0xEBEB
)

// Types and subtypes (esp_partition.h).
const (
	TypeApp  = 0x00
	TypeData = 0x01

	SubFactory = 0x00
	SubOTA0    = 0x10 // ota_0; ota_n is SubOTA0+n
	SubTest    = 0x20

	SubOTAData  = 0x00
	SubPHY      = 0x01
	SubNVS      = 0x02
	SubCoredump = 0x03
	SubNVSKeys  = 0x04
	SubEfuse    = 0x05
	SubUndef    = 0x06
	SubHTTPD    = 0x80
	SubFAT      = 0x81
	SubSPIFFS   = 0x82
	SubLittleFS = 0x83

	FlagEncrypted = 1 << 0
	FlagReadOnly  = 1 << 1
)

// Partition is one entry.
type Partition struct {
	Name    string
	Type    uint8
	SubType uint8
	Offset  uint32
	Size    uint32
	Flags   uint32
}

// Table is a partition table, by offset.
type Table []Partition

// The node layout's partitions.
const (
	LittleFSName   = "littlefs"
	LittleFSSize   = 0x30000
	littleFSOffset = 0x10000
	appStart       = littleFSOffset + LittleFSSize
)

// Layout is the node layout for a flash of flashSize bytes (2, 4, 8, 16
// or 32 MB): the littlefs partition of 192 KiB right after the small
// ones, then the app slots sharing the rest, each a multiple of 64 KiB.
// The identity before the apps, not at the end of the flash, so that
// a merged image ends with the app (about 1.3 MB for a 1 MB app, not
// the whole 4 MiB): a quarter of the bytes to write for a fleet's
// bundles and to flash over a serial line.
func Layout(flashSize int) (Table, error) {
	switch flashSize {
	case 2 << 20, 4 << 20, 8 << 20, 16 << 20, 32 << 20:
	default:
		return nil, fmt.Errorf("flash size %d bytes: the node layout is for 2, 4, 8, 16 or 32 MB", flashSize)
	}
	slot := uint32(flashSize-appStart) / 2 &^ 0xFFFF
	t := Table{
		{Name: "nvs", Type: TypeData, SubType: SubNVS, Offset: 0x9000, Size: 0x4000},
		{Name: "otadata", Type: TypeData, SubType: SubOTAData, Offset: 0xD000, Size: 0x2000},
		{Name: "phy_init", Type: TypeData, SubType: SubPHY, Offset: 0xF000, Size: 0x1000},
		{Name: LittleFSName, Type: TypeData, SubType: SubLittleFS, Offset: littleFSOffset, Size: LittleFSSize},
		{Name: "ota_0", Type: TypeApp, SubType: SubOTA0, Offset: appStart, Size: slot},
		{Name: "ota_1", Type: TypeApp, SubType: SubOTA0 + 1, Offset: appStart + slot, Size: slot},
	}
	return t, t.Validate(flashSize)
}

// Find returns the partition of that name.
func (t Table) Find(name string) (Partition, bool) {
	for _, p := range t {
		if p.Name == name {
			return p, true
		}
	}
	return Partition{}, false
}

// Validate checks what ESP-IDF's gen_esp32part and bootloader require:
// labels of at most 16 bytes, app offsets on 64 KiB and data offsets on
// 4 KiB, app sizes in 4 KiB, no overlap, nothing over the table or past
// the flash (flashSize 0 skips that check), one otadata of 0x2000
// bytes when there are OTA slots, nvs of at least 0x3000 bytes.
func (t Table) Validate(flashSize int) error {
	if len(t) == 0 || (len(t)+1)*entrySize > TableSize {
		return fmt.Errorf("partition table: %d partitions; it holds 1 to %d", len(t), TableSize/entrySize-1)
	}
	names := map[string]bool{}
	otadata, ota := 0, 0
	end := uint32(TableOffset + 0x1000)
	for _, p := range t {
		where := fmt.Sprintf("partition table: %q", p.Name)
		switch {
		case p.Name == "" || len(p.Name) > 16:
			return fmt.Errorf("%s: a label has 1 to 16 bytes", where)
		case names[p.Name]:
			return fmt.Errorf("%s: the label is used twice", where)
		case p.Type == TypeApp && (p.Offset%0x10000 != 0 || p.Size%0x1000 != 0):
			return fmt.Errorf("%s: an app partition starts on 64 KiB and has a size in 4 KiB (offset %#x, size %#x)", where, p.Offset, p.Size)
		case p.Type != TypeApp && p.Offset%0x1000 != 0:
			return fmt.Errorf("%s: a data partition starts on 4 KiB (offset %#x)", where, p.Offset)
		case p.Size == 0:
			return fmt.Errorf("%s: empty", where)
		case p.Offset < end:
			return fmt.Errorf("%s at %#x overlaps the partition table or the partition before it (ends %#x); list partitions by offset", where, p.Offset, end)
		case flashSize > 0 && uint64(p.Offset)+uint64(p.Size) > uint64(flashSize):
			return fmt.Errorf("%s ends at %#x, past the %d MB flash", where, uint64(p.Offset)+uint64(p.Size), flashSize>>20)
		case p.Type == TypeData && p.SubType == SubNVS && p.Flags&FlagReadOnly == 0 && p.Size < 0x3000:
			return fmt.Errorf("%s: a writable nvs partition has at least 0x3000 bytes", where)
		}
		if p.Type == TypeData && p.SubType == SubOTAData {
			otadata++
			if p.Size != 0x2000 {
				return fmt.Errorf("%s: otadata has 0x2000 bytes, not %#x", where, p.Size)
			}
		}
		if p.Type == TypeApp && p.SubType >= SubOTA0 && p.SubType < SubTest {
			ota++
		}
		names[p.Name] = true
		end = p.Offset + p.Size
	}
	if ota > 0 && otadata != 1 {
		return fmt.Errorf("partition table: %d OTA slots need one otadata partition, it has %d", ota, otadata)
	}
	return nil
}

// Binary is the table as gen_esp32part writes it, MD5 row included.
func (t Table) Binary() ([]byte, error) {
	if err := t.Validate(0); err != nil {
		return nil, err
	}
	b := make([]byte, 0, TableSize)
	for _, p := range t {
		b = binary.LittleEndian.AppendUint16(b, entryMagic)
		b = append(b, p.Type, p.SubType)
		b = binary.LittleEndian.AppendUint32(b, p.Offset)
		b = binary.LittleEndian.AppendUint32(b, p.Size)
		var label [16]byte
		copy(label[:], p.Name)
		b = append(b, label[:]...)
		b = binary.LittleEndian.AppendUint32(b, p.Flags)
	}
	sum := md5.Sum(b)
	b = append(b, 0xEB, 0xEB)
	b = append(b, bytes.Repeat([]byte{0xFF}, 14)...)
	b = append(b, sum[:]...)
	return append(b, bytes.Repeat([]byte{0xFF}, TableSize-len(b))...), nil
}

// ParseBinary reads a binary table: entries up to the MD5 row, whose
// sum must match, or up to the FF end marker.
func ParseBinary(b []byte) (Table, error) {
	var t Table
	for off := 0; ; off += entrySize {
		if off+entrySize > len(b) || off+entrySize > TableSize {
			return nil, fmt.Errorf("partition table: no end marker or MD5 row within %#x bytes", min(len(b), TableSize))
		}
		e := b[off : off+entrySize]
		switch binary.LittleEndian.Uint16(e) {
		case entryMagic:
			name, _, _ := bytes.Cut(e[12:28], []byte{0})
			t = append(t, Partition{
				Name: string(name), Type: e[2], SubType: e[3],
				Offset: binary.LittleEndian.Uint32(e[4:]), Size: binary.LittleEndian.Uint32(e[8:]),
				Flags: binary.LittleEndian.Uint32(e[28:]),
			})
		case md5Magic:
			if sum := md5.Sum(b[:off]); !bytes.Equal(sum[:], e[16:]) || !bytes.Equal(e[2:16], bytes.Repeat([]byte{0xFF}, 14)) {
				return nil, fmt.Errorf("partition table: the MD5 row at %#x does not match the entries: the table is damaged", off)
			}
			return t, t.Validate(0)
		case 0xFFFF:
			return t, t.Validate(0)
		default:
			return nil, fmt.Errorf("partition table: entry at %#x has magic %#04x, not AA 50", off, binary.LittleEndian.Uint16(e))
		}
	}
}

// CSV is the table as a partitions.csv.
func (t Table) CSV() string {
	var b strings.Builder
	b.WriteString("# ESP-IDF partition table of the appliance sensor node (generated by firmware/partition; do not edit)\n")
	b.WriteString("# Name,   Type, SubType, Offset,   Size,     Flags\n")
	for _, p := range t {
		var flags []string
		if p.Flags&FlagEncrypted != 0 {
			flags = append(flags, "encrypted")
		}
		if p.Flags&FlagReadOnly != 0 {
			flags = append(flags, "readonly")
		}
		row := fmt.Sprintf("%-9s %-5s %-8s %-9s %-9s %s", p.Name+",", typeName(p.Type)+",", subTypeName(p.Type, p.SubType)+",",
			fmt.Sprintf("%#x,", p.Offset), fmt.Sprintf("%#x,", p.Size), strings.Join(flags, ":"))
		b.WriteString(strings.TrimRight(row, " ") + "\n")
	}
	return b.String()
}

var dataSubtypes = map[string]uint8{
	"ota": SubOTAData, "phy": SubPHY, "nvs": SubNVS, "coredump": SubCoredump, "nvs_keys": SubNVSKeys,
	"efuse": SubEfuse, "undefined": SubUndef, "esphttpd": SubHTTPD, "fat": SubFAT, "spiffs": SubSPIFFS,
}

func typeName(t uint8) string {
	switch t {
	case TypeApp:
		return "app"
	case TypeData:
		return "data"
	}
	return fmt.Sprintf("%#x", t)
}

// subTypeName spells a subtype as every gen_esp32part reads it: the
// littlefs subtype by number, since only newer ones know its name.
func subTypeName(t, s uint8) string {
	if t == TypeApp {
		switch {
		case s == SubFactory:
			return "factory"
		case s == SubTest:
			return "test"
		case s >= SubOTA0 && s < SubTest:
			return fmt.Sprintf("ota_%d", s-SubOTA0)
		}
	}
	if t == TypeData {
		for n, v := range dataSubtypes {
			if v == s {
				return n
			}
		}
	}
	return fmt.Sprintf("%#x", s)
}

// ParseCSV reads a partitions.csv with explicit offsets.
func ParseCSV(text string) (Table, error) {
	var t Table
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		p, err := parseRow(line)
		if err != nil {
			return nil, fmt.Errorf("partitions.csv line %d: %w", i+1, err)
		}
		t = append(t, p)
	}
	sort.SliceStable(t, func(i, j int) bool { return t[i].Offset < t[j].Offset })
	return t, t.Validate(0)
}

func parseRow(line string) (Partition, error) {
	f := strings.Split(line+",,,,,", ",")
	for i := range f {
		f[i] = strings.TrimSpace(f[i])
	}
	p := Partition{Name: f[0]}
	switch f[1] {
	case "app":
		p.Type = TypeApp
	case "data":
		p.Type = TypeData
	default:
		v, err := num(f[1], 0xFE)
		if err != nil {
			return p, fmt.Errorf("type %q: %w", f[1], err)
		}
		p.Type = uint8(v)
	}
	st, err := parseSubType(p.Type, f[2])
	if err != nil {
		return p, err
	}
	p.SubType = st
	if f[3] == "" {
		return p, fmt.Errorf("%q has no offset; give every partition its offset", p.Name)
	}
	off, err := num(f[3], 0xFFFFFFFF)
	if err != nil {
		return p, fmt.Errorf("offset %q: %w", f[3], err)
	}
	size, err := num(f[4], 0xFFFFFFFF)
	if err != nil {
		return p, fmt.Errorf("size %q: %w", f[4], err)
	}
	p.Offset, p.Size = uint32(off), uint32(size)
	for _, fl := range strings.Split(f[5], ":") {
		switch strings.TrimSpace(fl) {
		case "":
		case "encrypted":
			p.Flags |= FlagEncrypted
		case "readonly":
			p.Flags |= FlagReadOnly
		default:
			return p, fmt.Errorf("unknown flag %q", fl)
		}
	}
	return p, nil
}

func parseSubType(typ uint8, s string) (uint8, error) {
	if typ == TypeApp {
		switch {
		case s == "factory":
			return SubFactory, nil
		case s == "test":
			return SubTest, nil
		case strings.HasPrefix(s, "ota_"):
			n, err := strconv.Atoi(s[4:])
			if err != nil || n < 0 || n > 15 {
				return 0, fmt.Errorf("subtype %q: OTA slots are ota_0 … ota_15", s)
			}
			return SubOTA0 + uint8(n), nil
		}
	}
	if typ == TypeData {
		if v, ok := dataSubtypes[s]; ok {
			return v, nil
		}
		if s == "littlefs" {
			return SubLittleFS, nil
		}
	}
	v, err := num(s, 0xFE)
	if err != nil {
		return 0, fmt.Errorf("subtype %q: %w", s, err)
	}
	return uint8(v), nil
}

// num reads a number as gen_esp32part does: decimal or 0x hex, with an
// optional K or M suffix.
func num(s string, limit uint64) (uint64, error) {
	mult := uint64(1)
	switch {
	case strings.HasSuffix(s, "K"), strings.HasSuffix(s, "k"):
		mult, s = 1<<10, s[:len(s)-1]
	case strings.HasSuffix(s, "M"), strings.HasSuffix(s, "m"):
		mult, s = 1<<20, s[:len(s)-1]
	}
	v, err := strconv.ParseUint(s, 0, 64)
	if err != nil {
		return 0, fmt.Errorf("not a number")
	}
	if v*mult > limit || v > limit {
		return 0, fmt.Errorf("more than %#x", limit)
	}
	return v * mult, nil
}

// OTADataSize is the otadata partition's size: two 4 KiB sectors.
const OTADataSize = 0x2000

// InitialOTAData is otadata as ESP-IDF's ota_data_initial.bin has it:
// erased, so the bootloader boots the first OTA slot.
func InitialOTAData() []byte { return bytes.Repeat([]byte{0xFF}, OTADataSize) }
