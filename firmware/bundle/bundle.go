// Package bundle makes a sensor node's flash bundle: the files to flash
// a node from blank, laid out as an ESP-IDF build folder so the usual
// tools work on it —
//
//	bootloader/bootloader.bin             when the firmware's build output has one
//	partition_table/partition-table.bin   the node layout (package partition)
//	ota_data_initial.bin                  erased otadata: boot ota_0
//	app.bin                               the signed app, in ota_0, when there is one
//	littlefs.bin                          the node's identity image, at the littlefs partition
//	flasher_args.json, flash_args         as idf.py writes them: esptool write_flash @flash_args
//	merged.bin                            all of the above in one image from 0x0, as esptool merge_bin makes it
//
// The merged image reaches from 0x0 to the end of the app (the identity
// sits before the app slots, so without an app it ends there), about
// 1.3 MB for a 1 MB app, so it is not among Bundle.Files: WriteMerged
// streams it, and Write puts it beside the other files; a thousand
// nodes' bundles fit in memory without it.
//
// A firmware without an app image (a machine without ESP-IDF) still
// gives every node its identity and a bundle; Bundle.HasApp says so.
// The bootloader sits where the chip's ROM looks for it: 0x1000 on the
// ESP32 and ESP32-S2, 0x0 on the others.
package bundle

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/appliance/appliance/firmware/espimage"
	"github.com/appliance/appliance/firmware/partition"
)

// File names in the bundle.
const (
	BootloaderFile = "bootloader/bootloader.bin"
	TableFile      = "partition_table/partition-table.bin"
	OTADataFile    = "ota_data_initial.bin"
	AppFile        = "app.bin"
	IdentityFile   = "littlefs.bin"
	FlasherArgs    = "flasher_args.json"
	FlashArgs      = "flash_args"
	MergedFile     = "merged.bin"
)

// Input is what a node's bundle is made of.
type Input struct {
	Chip espimage.Chip
	// FlashSize is the node's flash in bytes (4 << 20).
	FlashSize int
	// FlashMode and FlashFreq are esptool's --flash_mode and
	// --flash_freq; "" means dio and the chip's fastest.
	FlashMode, FlashFreq string
	// Bootloader is the build output's bootloader.bin, or nil.
	Bootloader []byte
	// App is the signed app image, or nil.
	App []byte
	// Identity is the node's LittleFS image.
	Identity []byte
}

// File is one file of the bundle, at a slash-separated relative path.
type File struct {
	Path string
	Data []byte
}

// Bundle is a node's flash bundle.
type Bundle struct {
	// Files are every file but merged.bin.
	Files         []File
	Table         partition.Table
	HasApp        bool
	HasBootloader bool

	chip     espimage.Chip
	settings settings
	regions  []region
}

// BootloaderOffset is where a chip's ROM loads the bootloader from.
func BootloaderOffset(c espimage.Chip) uint32 {
	if c == espimage.ESP32 || c == espimage.ESP32S2 {
		return 0x1000
	}
	return 0x0
}

var flashModes = map[string]byte{"qio": 0, "qout": 1, "dio": 2, "dout": 3}

// flashFreqs are the header codes of each chip's flash frequencies
// (esptool's FLASH_FREQUENCY); the first is the default.
var flashFreqs = map[espimage.Chip][]struct {
	name string
	code byte
}{
	espimage.ESP32:   {{"80m", 0xF}, {"40m", 0}, {"26m", 1}, {"20m", 2}},
	espimage.ESP32S2: {{"80m", 0xF}, {"40m", 0}, {"26m", 1}, {"20m", 2}},
	espimage.ESP32S3: {{"80m", 0xF}, {"40m", 0}, {"26m", 1}, {"20m", 2}},
	espimage.ESP32C3: {{"80m", 0xF}, {"40m", 0}, {"26m", 1}, {"20m", 2}},
	espimage.ESP32C2: {{"60m", 0xF}, {"30m", 0}, {"20m", 1}, {"15m", 2}},
	espimage.ESP32C6: {{"80m", 0}, {"40m", 0}, {"20m", 2}},
	espimage.ESP32H2: {{"48m", 0xF}, {"24m", 0}, {"16m", 1}, {"12m", 2}},
}

// settings are the checked flash settings.
type settings struct {
	mode, freq, size string
	modeCode         byte
	sizeFreq         byte
}

func (in *Input) settings() (settings, error) {
	s := settings{mode: in.FlashMode, freq: in.FlashFreq, size: fmt.Sprintf("%dMB", in.FlashSize>>20)}
	if s.mode == "" {
		s.mode = "dio"
	}
	code, ok := flashModes[s.mode]
	if !ok {
		return s, fmt.Errorf("flash mode %q: qio, qout, dio or dout", s.mode)
	}
	s.modeCode = code
	freqs, ok := flashFreqs[in.Chip]
	if !ok {
		return s, fmt.Errorf("no flash settings known for %s", in.Chip)
	}
	if s.freq == "" {
		s.freq = freqs[0].name
	}
	found := false
	for _, f := range freqs {
		if f.name == s.freq {
			s.sizeFreq, found = f.code, true
		}
	}
	if !found {
		var names []string
		for _, f := range freqs {
			names = append(names, f.name)
		}
		return s, fmt.Errorf("flash frequency %q for %s: one of %s", s.freq, in.Chip, strings.Join(names, ", "))
	}
	sizeCode := map[int]byte{2 << 20: 1, 4 << 20: 2, 8 << 20: 3, 16 << 20: 4, 32 << 20: 5}[in.FlashSize]
	s.sizeFreq |= sizeCode << 4
	return s, nil
}

// region is a file at a flash offset.
type region struct {
	name   string // flasher_args.json's key
	offset uint32
	file   string
	data   []byte
}

// Build makes the bundle.
func Build(in Input) (*Bundle, error) {
	table, err := partition.Layout(in.FlashSize)
	if err != nil {
		return nil, err
	}
	s, err := in.settings()
	if err != nil {
		return nil, err
	}
	tableBin, err := table.Binary()
	if err != nil {
		return nil, err
	}
	otadata, _ := table.Find("otadata")
	ota0, _ := table.Find("ota_0")
	fs, _ := table.Find(partition.LittleFSName)
	var regions []region
	if in.Bootloader != nil {
		if err := in.checkBootloader(); err != nil {
			return nil, err
		}
		regions = append(regions, region{"bootloader", BootloaderOffset(in.Chip), BootloaderFile, in.Bootloader})
	}
	regions = append(regions, region{"partition-table", partition.TableOffset, TableFile, tableBin})
	regions = append(regions, region{"otadata", otadata.Offset, OTADataFile, partition.InitialOTAData()})
	if in.App != nil {
		if err := in.checkApp(ota0.Size); err != nil {
			return nil, err
		}
		regions = append(regions, region{"app", ota0.Offset, AppFile, in.App})
	}
	if len(in.Identity) == 0 || len(in.Identity) > int(fs.Size) {
		return nil, fmt.Errorf("the identity image has %d bytes; the littlefs partition %#x", len(in.Identity), fs.Size)
	}
	regions = append(regions, region{partition.LittleFSName, fs.Offset, IdentityFile, in.Identity})

	b := &Bundle{Table: table, HasApp: in.App != nil, HasBootloader: in.Bootloader != nil, chip: in.Chip, settings: s, regions: regions}
	for _, r := range regions {
		b.Files = append(b.Files, File{r.file, r.data})
	}
	fa, err := flasherArgs(in.Chip, s, regions)
	if err != nil {
		return nil, err
	}
	b.Files = append(b.Files,
		File{FlasherArgs, fa},
		File{FlashArgs, flashArgs(s, regions)},
	)
	return b, nil
}

// checkBootloader and checkApp read the images' headers only: the
// caller has checked the images whole, once for all its nodes
// (espimage.Parse, secureboot.SignApp).
func (in *Input) checkBootloader() error {
	img, err := espimage.ParseHeader(in.Bootloader)
	if err != nil {
		return fmt.Errorf("the bootloader: %w", err)
	}
	if img.Chip != in.Chip {
		return fmt.Errorf("the bootloader is built for %s, the firmware for %s", img.Chip, in.Chip)
	}
	if end := int(BootloaderOffset(in.Chip)) + len(in.Bootloader); end > partition.TableOffset {
		return fmt.Errorf("the bootloader ends at %#x, past the partition table at %#x", end, partition.TableOffset)
	}
	return nil
}

func (in *Input) checkApp(slot uint32) error {
	img, err := espimage.ParseHeader(in.App)
	if err != nil {
		return fmt.Errorf("the app: %w", err)
	}
	if img.Chip != in.Chip {
		return fmt.Errorf("the app is built for %s, the firmware for %s", img.Chip, in.Chip)
	}
	if len(in.App) > int(slot) {
		return fmt.Errorf("the app has %d bytes; an OTA slot of the %d MB layout %d", len(in.App), in.FlashSize>>20, slot)
	}
	return nil
}

// flasherArgs is flasher_args.json as ESP-IDF 5's template writes it.
func flasherArgs(chip espimage.Chip, s settings, regions []region) ([]byte, error) {
	type entry struct {
		Offset    string `json:"offset"`
		File      string `json:"file"`
		Encrypted string `json:"encrypted"`
	}
	doc := map[string]any{
		"write_flash_args": []string{"--flash_mode", s.mode, "--flash_size", s.size, "--flash_freq", s.freq},
		"flash_settings":   map[string]string{"flash_mode": s.mode, "flash_size": s.size, "flash_freq": s.freq},
		"extra_esptool_args": map[string]any{
			"after": "hard_reset", "before": "default_reset", "stub": true, "chip": chip.String(),
		},
	}
	files := map[string]string{}
	for _, r := range regions {
		off := fmt.Sprintf("%#x", r.offset)
		files[off] = r.file
		doc[r.name] = entry{off, r.file, "false"}
	}
	doc["flash_files"] = files
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "    ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(doc); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// flashArgs is the flash_args file: the settings, then one offset and
// file a line.
func flashArgs(s settings, regions []region) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "--flash_mode %s --flash_freq %s --flash_size %s\n", s.mode, s.freq, s.size)
	for _, r := range regions {
		fmt.Fprintf(&b, "%#x %s\n", r.offset, r.file)
	}
	return b.Bytes()
}

// WriteMerged writes the merged image: the regions from offset 0, gaps
// 0xFF, as esptool merge_bin lays them out. Like esptool when it writes
// or merges, it sets the bootloader's flash settings (mode, frequency,
// size), but only in a bootloader without an appended SHA-256, whose
// header may change.
func (b *Bundle) WriteMerged(w io.Writer) error {
	regions := append([]region(nil), b.regions...)
	sort.Slice(regions, func(i, j int) bool { return regions[i].offset < regions[j].offset })
	at := uint32(0)
	for _, r := range regions {
		if err := fill(w, int(r.offset-at)); err != nil {
			return err
		}
		data := r.data
		if r.name == "bootloader" && len(data) >= espimage.HeaderSize && data[0] == espimage.Magic && data[23] != 1 {
			data = append([]byte(nil), data...)
			data[2], data[3] = b.settings.modeCode, b.settings.sizeFreq
		}
		if _, err := w.Write(data); err != nil {
			return err
		}
		at = r.offset + uint32(len(data))
	}
	return nil
}

var erased = bytes.Repeat([]byte{0xFF}, 64<<10)

func fill(w io.Writer, n int) error {
	for n > 0 {
		k, err := w.Write(erased[:min(n, len(erased))])
		if err != nil {
			return err
		}
		n -= k
	}
	return nil
}

// Merged is the merged image in memory.
func (b *Bundle) Merged() []byte {
	var buf bytes.Buffer
	b.WriteMerged(&buf)
	return buf.Bytes()
}

// Write writes the bundle's files and merged.bin under dir, each
// replaced atomically, but not synced: a build writes thousands of them
// into its staging folder and syncs that file system once before it
// publishes the folder whole (one sync, not one per file). A caller
// writing elsewhere syncs when it is done.
func (b *Bundle) Write(dir string) error {
	for _, f := range b.Files {
		if err := writeFile(dir, f.Path, func(w io.Writer) error { _, err := w.Write(f.Data); return err }); err != nil {
			return err
		}
	}
	return writeFile(dir, MergedFile, b.WriteMerged)
}

// writeFile writes a file through a temporary one renamed into place.
func writeFile(dir, name string, fn func(w io.Writer) error) error {
	p := filepath.Join(dir, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(p), ".tmp-")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	bw := bufio.NewWriterSize(f, 256<<10)
	err = fn(bw)
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = f.Chmod(0o644)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", p, err)
	}
	return os.Rename(f.Name(), p)
}
