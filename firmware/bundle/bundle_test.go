package bundle_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/appliance/appliance/firmware/bundle"
	"github.com/appliance/appliance/firmware/espimage"
	"github.com/appliance/appliance/firmware/internal/lfsref"
	"github.com/appliance/appliance/firmware/littlefs"
	"github.com/appliance/appliance/firmware/partition"
	"github.com/appliance/appliance/internal/fwtest"
	"github.com/appliance/appliance/internal/testenv"
)

func identity(t testing.TB) []byte {
	g, err := littlefs.ESP32(partition.LittleFSSize)
	if err != nil {
		t.Fatal(err)
	}
	img, err := littlefs.Build(g, []littlefs.Entry{{Path: "/config.json", Data: []byte(`{"node":"bench-1"}`)}})
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func input(t testing.TB, c espimage.Chip, flash int, withApp bool) bundle.Input {
	in := bundle.Input{
		Chip: c, FlashSize: flash,
		Bootloader: fwtest.App{Chip: c, Bootloader: true, DataSize: 9000, Seed: 3}.Image(),
		Identity:   identity(t),
	}
	if withApp {
		// Stands for a signed app: what matters here is its place.
		in.App = fwtest.App{Chip: c, Version: "1.4.0", DataSize: 70000, Seed: 4}.Image()
	}
	return in
}

func write(t *testing.T, b *bundle.Bundle) string {
	t.Helper()
	dir := t.TempDir()
	if err := b.Write(dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

func file(b *bundle.Bundle, name string) []byte {
	for _, f := range b.Files {
		if f.Path == name {
			return f.Data
		}
	}
	return nil
}

// TestEsptoolMerges has esptool merge_bin merge the bundle twice — from
// flash_args (@flash_args, as esptool write_flash reads it) and from
// flasher_args.json (as idf.py flash reads it) — and compares both with
// merged.bin, byte for byte; the merged image must hold the partition
// table, otadata, the app and a mountable identity at their offsets.
func TestEsptoolMerges(t *testing.T) {
	e := testenv.RequireEsptool(t)
	for _, tc := range []struct {
		chip  espimage.Chip
		flash int
		app   bool
	}{
		{espimage.ESP32S3, 4 << 20, true},
		{espimage.ESP32, 4 << 20, true},
		{espimage.ESP32S2, 8 << 20, false},
		{espimage.ESP32C3, 4 << 20, true},
		{espimage.ESP32C6, 8 << 20, true},
		{espimage.ESP32C2, 2 << 20, false},
	} {
		name := tc.chip.String()
		if !tc.app {
			name += "-no-app"
		}
		t.Run(name, func(t *testing.T) {
			in := input(t, tc.chip, tc.flash, tc.app)
			b, err := bundle.Build(in)
			if err != nil {
				t.Fatal(err)
			}
			if b.HasApp != tc.app || !b.HasBootloader || (file(b, bundle.AppFile) != nil) != tc.app {
				t.Errorf("HasApp %v, HasBootloader %v", b.HasApp, b.HasBootloader)
			}
			dir := write(t, b)
			merged, err := os.ReadFile(filepath.Join(dir, bundle.MergedFile))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(merged, b.Merged()) {
				t.Error("merged.bin differs from Merged()")
			}

			cmd := e.Command("esptool", "--chip", tc.chip.String(), "merge_bin", "-o", "theirs.bin", "@flash_args")
			cmd.Dir = dir
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("esptool merge_bin @flash_args: %v\n%s", err, out)
			}
			theirs, err := os.ReadFile(filepath.Join(dir, "theirs.bin"))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(theirs, merged) {
				t.Errorf("merge_bin @flash_args gives %d bytes differing from merged.bin (%d)", len(theirs), len(merged))
			}

			var fa struct {
				WriteFlashArgs []string          `json:"write_flash_args"`
				FlashFiles     map[string]string `json:"flash_files"`
				Extra          struct {
					Chip string `json:"chip"`
				} `json:"extra_esptool_args"`
				App *struct {
					Offset, File, Encrypted string
				} `json:"app"`
			}
			if err := json.Unmarshal(file(b, bundle.FlasherArgs), &fa); err != nil {
				t.Fatal(err)
			}
			if fa.Extra.Chip != tc.chip.String() || (fa.App != nil) != tc.app || (tc.app && (fa.App.Offset != "0x40000" || fa.App.Encrypted != "false")) {
				t.Errorf("flasher_args.json: chip %q, app %+v", fa.Extra.Chip, fa.App)
			}
			args := append([]string{"--chip", fa.Extra.Chip, "merge_bin", "-o", "json.bin"}, fa.WriteFlashArgs...)
			for off, f := range fa.FlashFiles {
				args = append(args, off, f)
			}
			cmd = e.Command("esptool", args...)
			cmd.Dir = dir
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("esptool merge_bin from flasher_args.json: %v\n%s", err, out)
			}
			viaJSON, _ := os.ReadFile(filepath.Join(dir, "json.bin"))
			if !bytes.Equal(viaJSON, merged) {
				t.Error("merge_bin from flasher_args.json differs from merged.bin")
			}

			// It ends where the last region does, as merge_bin's does: with
			// the app in ota_0, or the identity before it.
			layout, _ := partition.Layout(tc.flash)
			ota0, _ := layout.Find("ota_0")
			end := int(ota0.Offset)
			if tc.app {
				end += len(in.App)
			}
			if len(merged) != end {
				t.Errorf("merged image of %#x bytes, want %#x (the flash has %#x)", len(merged), end, tc.flash)
			}
			boot := bundle.BootloaderOffset(tc.chip)
			if merged[boot] != espimage.Magic || merged[boot+2] != 2 {
				t.Errorf("no DIO bootloader at %#x", boot)
			}
			tab, err := partition.ParseBinary(merged[partition.TableOffset:])
			if err != nil {
				t.Fatalf("the partition table at 0x8000: %v", err)
			}
			fs, _ := tab.Find(partition.LittleFSName)
			ref, err := lfsref.Mount(merged[fs.Offset:fs.Offset+fs.Size], 4096)
			if err != nil {
				t.Fatal(err)
			}
			if got, err := ref.ReadFile("/config.json"); err != nil || string(got) != `{"node":"bench-1"}` {
				t.Errorf("the identity in the merged image: %q, %v", got, err)
			}
			if ota, _ := tab.Find("otadata"); !bytes.Equal(merged[ota.Offset:ota.Offset+ota.Size], bytes.Repeat([]byte{0xFF}, int(ota.Size))) {
				t.Error("otadata is not erased")
			}
			if tc.app != (len(merged) > 0x40000 && merged[0x40000] == espimage.Magic) {
				t.Errorf("app at 0x40000 in %#x bytes, want it %v", len(merged), tc.app)
			}
		})
	}
}

// TestWriteFlashParses: esptool write_flash reads flash_args and opens
// every file it names before it looks for the serial port, which is
// all it can do without a device.
func TestWriteFlashParses(t *testing.T) {
	e := testenv.RequireEsptool(t)
	b, err := bundle.Build(input(t, espimage.ESP32S3, 4<<20, true))
	if err != nil {
		t.Fatal(err)
	}
	dir := write(t, b)
	cmd := e.Command("esptool", "--chip", "esp32s3", "--port", filepath.Join(dir, "no-such-port"), "--connect-attempts", "1", "write_flash", "@flash_args")
	cmd.Dir = dir
	out, _ := cmd.CombinedOutput()
	if !strings.Contains(string(out), "no-such-port") || strings.Contains(string(out), "error: argument") || strings.Contains(string(out), "usage:") {
		t.Errorf("esptool write_flash @flash_args:\n%s", out)
	}
}

func TestBuildRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		f    func(in *bundle.Input)
		want string
	}{
		{"flash size", func(in *bundle.Input) { in.FlashSize = 3 << 20 }, "2, 4, 8, 16 or 32 MB"},
		{"app for another chip", func(in *bundle.Input) { in.App = fwtest.App{Chip: espimage.ESP32C3, Version: "1"}.Image() }, "app is built for esp32c3"},
		{"bootloader for another chip", func(in *bundle.Input) { in.Bootloader = fwtest.App{Chip: espimage.ESP32, Bootloader: true}.Image() }, "bootloader is built for esp32"},
		{"frequency", func(in *bundle.Input) { in.FlashFreq = "60m" }, "80m, 40m, 26m, 20m"},
		{"mode", func(in *bundle.Input) { in.FlashMode = "fast" }, "qio, qout, dio or dout"},
		{"no identity", func(in *bundle.Input) { in.Identity = nil }, "identity image has 0 bytes"},
		{"app too big", func(in *bundle.Input) {
			in.App = fwtest.App{Chip: espimage.ESP32S3, Version: "1", DataSize: 0x1F0000}.Image()
		}, "OTA slot"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := input(t, espimage.ESP32S3, 4<<20, true)
			tc.f(&in)
			_, err := bundle.Build(in)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Build = %v, want an error saying %q", err, tc.want)
			}
		})
	}
}
