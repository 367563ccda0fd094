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
// A firmware without an app image (a machine without ESP-IDF) still
// gives every node its identity and a bundle; Bundle.HasApp says so.
// The bootloader sits where the chip's ROM looks for it: 0x1000 on the
// ESP32 and ESP32-S2, 0x0 on the others.
package bundle

import (
	"bytes"
	"encoding/json"
	"fmt"
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
	Files         []File
	Table         partition.Table
	HasApp        bool
	HasBootloader bool
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

	b := &Bundle{Table: table, HasApp: in.App != nil, HasBootloader: in.Bootloader != nil}
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
		File{MergedFile, merge(in.Chip, s, regions)},
	)
	return b, nil
}

func (in *Input) checkBootloader() error {
	img, err := espimage.Parse(in.Bootloader)
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
	img, err := espimage.Parse(in.App)
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

// merge lays the regions into one image from offset 0, gaps 0xFF, and
// sets the bootloader's flash settings as esptool does when it writes
// or merges: only in a bootloader without an appended SHA-256, whose
// header it may change.
func merge(chip espimage.Chip, s settings, regions []region) []byte {
	sort.Slice(regions, func(i, j int) bool { return regions[i].offset < regions[j].offset })
	last := regions[len(regions)-1]
	out := bytes.Repeat([]byte{0xFF}, int(last.offset)+len(last.data))
	for _, r := range regions {
		copy(out[r.offset:], r.data)
		if r.name == "bootloader" && r.offset == BootloaderOffset(chip) && len(r.data) >= espimage.HeaderSize && r.data[0] == espimage.Magic && r.data[23] != 1 {
			out[r.offset+2] = s.modeCode
			out[r.offset+3] = s.sizeFreq
		}
	}
	return out
}
