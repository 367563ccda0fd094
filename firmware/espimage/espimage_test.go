package espimage_test

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/appliance/appliance/firmware/espimage"
	"github.com/appliance/appliance/internal/fwtest"
	"github.com/appliance/appliance/internal/testenv"
)

var chips = []espimage.Chip{espimage.ESP32, espimage.ESP32S2, espimage.ESP32S3, espimage.ESP32C3, espimage.ESP32C2, espimage.ESP32C6}

func app(c espimage.Chip) fwtest.App {
	return fwtest.App{Chip: c, Version: "1.4.0", Project: "sensor", IDFVersion: "v5.2.1", SecureVersion: 3, DataSize: 3000, Seed: uint64(c)}
}

func TestParse(t *testing.T) {
	for _, c := range chips {
		t.Run(c.String(), func(t *testing.T) {
			b := app(c).Image()
			img, err := espimage.Parse(b)
			if err != nil {
				t.Fatal(err)
			}
			if img.Chip != c || img.Size != len(b) || len(img.Segments) != 3 || !img.HashAppended {
				t.Errorf("Parse = chip %v, size %d of %d, %d segments, hash %v", img.Chip, img.Size, len(b), len(img.Segments), img.HashAppended)
			}
			if img.Size%65536 != 0 {
				t.Errorf("secure-padded image is %#x bytes, not a multiple of 64 KiB", img.Size)
			}
			a := img.App
			if a == nil || a.Version != "1.4.0" || a.ProjectName != "sensor" || a.SecureVersion != 3 || a.IDFVersion != "v5.2.1" {
				t.Errorf("App = %+v", a)
			}
			if err := img.Check("1.4.0", 3); err != nil {
				t.Errorf("Check of the right values: %v", err)
			}
			// Bytes after the image (a signature sector) are not part of it.
			img2, err := espimage.Parse(append(b, make([]byte, 4096)...))
			if err != nil || img2.Size != len(b) {
				t.Errorf("with a trailing sector: size %v, %v", img2, err)
			}
		})
	}
}

// TestEsptoolReadsImages has esptool image_info read each synthesized
// image: it must call checksum and digest valid and print the
// descriptor's fields (it exits 0 even for invalid images, so its
// output is what is read).
func TestEsptoolReadsImages(t *testing.T) {
	e := testenv.RequireEsptool(t)
	dir := t.TempDir()
	for _, c := range chips {
		t.Run(c.String(), func(t *testing.T) {
			p := filepath.Join(dir, c.String()+".bin")
			if err := os.WriteFile(p, app(c).Image(), 0o644); err != nil {
				t.Fatal(err)
			}
			out := e.MustRun(t, "esptool", "--chip", c.String(), "image_info", "--version", "2", p)
			for _, want := range []string{
				"Checksum: ", "(valid)", "Validation hash: ", "App version: 1.4.0", "Project name: sensor",
				"Secure version: 3", "ESP-IDF: v5.2.1",
			} {
				if !strings.Contains(out, want) {
					t.Errorf("image_info lacks %q:\n%s", want, out)
				}
			}
			if strings.Contains(out, "invalid") || strings.Contains(out, "Unexpected chip id") {
				t.Errorf("image_info finds fault:\n%s", out)
			}
		})
	}
}

// TestParseElf2image reads images that esptool elf2image made from ELF
// files, with and without --secure-pad-v2: the parser must accept what
// the real tool writes and find the descriptor, including the ELF's
// SHA-256 that elf2image writes into it.
func TestParseElf2image(t *testing.T) {
	e := testenv.RequireEsptool(t)
	dir := t.TempDir()
	for _, c := range chips {
		for _, pad := range []bool{false, true} {
			name := c.String()
			if pad {
				name += "-secure-pad-v2"
			}
			t.Run(name, func(t *testing.T) {
				elf := filepath.Join(dir, name+".elf")
				bin := filepath.Join(dir, name+".bin")
				a := app(c)
				if err := os.WriteFile(elf, a.ELF(), 0o644); err != nil {
					t.Fatal(err)
				}
				args := []string{"--chip", c.String(), "elf2image", "--flash_mode", "dio", "--flash_size", "4MB", "--elf-sha256-offset", "0xb0", "-o", bin}
				if pad {
					args = append(args, "--secure-pad-v2")
				}
				e.MustRun(t, "esptool", append(args, elf)...)
				b, err := os.ReadFile(bin)
				if err != nil {
					t.Fatal(err)
				}
				img, err := espimage.Parse(b)
				if err != nil {
					t.Fatal(err)
				}
				if img.Chip != c || img.SPIMode != 2 || img.SPISize != 2 || img.Entry != binary.LittleEndian.Uint32(a.Image()[4:]) {
					t.Errorf("header: %+v", img.Header)
				}
				if img.App == nil || img.App.Version != "1.4.0" || img.App.SecureVersion != 3 {
					t.Fatalf("App = %+v", img.App)
				}
				if want := sha256.Sum256(a.ELF()); img.App.ELFSHA256 != want {
					t.Errorf("ELF SHA-256 in the descriptor %x, want %x", img.App.ELFSHA256, want)
				}
				if pad && img.Size%65536 != 0 {
					t.Errorf("--secure-pad-v2 image of %#x bytes, not 64 KiB-aligned", img.Size)
				}
			})
		}
	}
}

// corrupt returns a copy of a valid image changed by f.
func corrupt(f func(b []byte) []byte) []byte {
	b := app(espimage.ESP32S3).Image()
	return f(append([]byte(nil), b...))
}

func TestMalformed(t *testing.T) {
	good := app(espimage.ESP32S3).Image()
	img, _ := espimage.Parse(good)
	for _, tc := range []struct {
		name  string
		b     []byte
		field string
		off   int
	}{
		{"empty", nil, "header", 0},
		{"short header", good[:10], "header", 0},
		{"magic", corrupt(func(b []byte) []byte { b[0] = 0xE8; return b }), "magic", 0},
		{"17 segments", corrupt(func(b []byte) []byte { b[1] = 17; return b }), "segment count", 1},
		{"SPI mode", corrupt(func(b []byte) []byte { b[2] = 9; return b }), "SPI mode", 2},
		{"flash size", corrupt(func(b []byte) []byte { b[3] = 0x8F; return b }), "flash size", 3},
		{"chip", corrupt(func(b []byte) []byte { b[12] = 7; return b }), "chip id", 12},
		{"hash appended 2", corrupt(func(b []byte) []byte { b[23] = 2; return b }), "hash appended", 23},
		{"segment past the end", corrupt(func(b []byte) []byte { binary.LittleEndian.PutUint32(b[28:], 1<<30); return b }), "segment 0 length", 28},
		{"segment count past the data", corrupt(func(b []byte) []byte { b[1] = 16; return b[:img.ChecksumOffset-11] }), "segment 3 header", img.ChecksumOffset - 15},
		{"truncated before the checksum", good[:img.ChecksumOffset], "checksum", img.ChecksumOffset},
		{"checksum", corrupt(func(b []byte) []byte { b[0x40] ^= 1; return b }), "checksum", img.ChecksumOffset},
		{"digest", corrupt(func(b []byte) []byte { b[8] ^= 1; return b }), "appended SHA-256", img.ChecksumOffset + 1},
		{"digest cut", good[:len(good)-1], "appended SHA-256", img.ChecksumOffset + 1},
		{"descriptor text", corrupt(func(b []byte) []byte {
			b[0x20+16] = 0xFF
			fix(b)
			return b
		}), "app version", 0x30},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := espimage.Parse(tc.b)
			var pe *espimage.Error
			if !errors.As(err, &pe) {
				t.Fatalf("Parse = %v, want an *Error", err)
			}
			if pe.Field != tc.field || pe.Offset != tc.off {
				t.Errorf("Parse = %v; want field %q at %#x", err, tc.field, tc.off)
			}
		})
	}
}

func TestCheck(t *testing.T) {
	img, err := espimage.Parse(app(espimage.ESP32S3).Image())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		version string
		secure  int
		want    string // the field that differs
	}{
		{"1.4.0", 3, ""},
		{"1.4.1", 3, "version"},
		{"1.4.0", 2, "secure_version"},
		{"1.4.0", -1, "secure_version"},
	} {
		err := img.Check(tc.version, tc.secure)
		var me *espimage.MismatchError
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("Check(%q, %d) = %v", tc.version, tc.secure, err)
		case tc.want != "" && (!errors.As(err, &me) || me.Field != tc.want):
			t.Errorf("Check(%q, %d) = %v, want a mismatch of %s", tc.version, tc.secure, err, tc.want)
		}
	}
	got := img.Check("1.5.0", 3).Error()
	if want := `the spec's version is "1.5.0" but the image's app descriptor says "1.4.0"`; !strings.Contains(got, want) {
		t.Errorf("Check says %q, want it to contain %q", got, want)
	}
	// An image without a descriptor (a bootloader) is no app.
	b := app(espimage.ESP32S3).Image()
	b[0x20] ^= 1
	fix(b)
	noApp, err := espimage.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if err := noApp.Check("1.4.0", 3); err == nil || !regexp.MustCompile(`no app descriptor`).MatchString(err.Error()) {
		t.Errorf("Check of an image without descriptor = %v", err)
	}
}

// fix recomputes the checksum and digest of a changed image.
func fix(b []byte) {
	_, err := espimage.Parse(b)
	var pe *espimage.Error
	if err == nil || !errors.As(err, &pe) || pe.Field != "checksum" {
		return
	}
	sum := byte(0xEF)
	off := espimage.HeaderSize
	for i := 0; i < int(b[1]); i++ {
		n := int(binary.LittleEndian.Uint32(b[off+4:]))
		for _, c := range b[off+8 : off+8+n] {
			sum ^= c
		}
		off += 8 + n
	}
	b[pe.Offset] = sum
	h := sha256.Sum256(b[:pe.Offset+1])
	copy(b[pe.Offset+1:], h[:])
}

func FuzzParse(f *testing.F) {
	f.Add(app(espimage.ESP32S3).Image())
	f.Add(fwtest.App{Chip: espimage.ESP32C6, Version: "2", NoPad: true}.Image())
	f.Add([]byte{0xE9, 1, 2, 0x2F, 0, 0, 0, 0, 0xEE, 0, 0, 0, 9, 0, 0, 0, 0, 0xFF, 0xFF, 0, 0, 0, 0, 1, 0, 0, 0, 0, 4, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		img, err := espimage.Parse(b)
		if err != nil {
			var pe *espimage.Error
			if !errors.As(err, &pe) {
				t.Fatalf("Parse error %v is not an *Error", err)
			}
			return
		}
		if img.Size > len(b) || img.ChecksumOffset >= img.Size {
			t.Fatalf("size %d, checksum at %d, input %d", img.Size, img.ChecksumOffset, len(b))
		}
		for _, s := range img.Segments {
			if s.Offset+len(s.Data) > img.ChecksumOffset {
				t.Fatalf("segment at %d+%d past the checksum at %d", s.Offset, len(s.Data), img.ChecksumOffset)
			}
		}
	})
}
