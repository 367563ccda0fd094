package spec

import (
	"sort"
	"strconv"
	"strings"
	"time"
)

// Board describes a gateway board appliance builds images for: the one
// catalogue of boards, which the spec checks against, the desired state
// takes its packages from and the image build its boot partition.
type Board struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	// Arch is the Debian architecture of the gateway's packages.
	Arch string `json:"arch"`
	// RaspberryPi reports whether the board needs Raspberry Pi OS
	// packages (firmware, kernel) from archive.raspberrypi.com.
	RaspberryPi bool `json:"raspberry_pi"`
	// Packages are the kernel and firmware packages the board boots with.
	Packages []string `json:"packages"`
	// KernelFlavour ends the kernel's version string, e.g. "-arm64".
	KernelFlavour string `json:"kernel_flavour"`
	// Console is the serial console for the kernel command line.
	Console string `json:"console"`
	// BootSize is the FAT boot partition's size in bytes.
	BootSize int64 `json:"boot_size"`
	// InitramfsModules are the kernel modules needed to mount the root;
	// nil when the kernel has what it needs built in (no initramfs).
	InitramfsModules []string `json:"initramfs_modules,omitempty"`
	// Boot is how the boot partition is laid out: "qemu" (kernel,
	// initramfs and command line, which QEMU is given) or "raspberrypi"
	// (as Raspberry Pi OS's raspi-firmware hooks lay it out).
	Boot string `json:"boot"`
	// KernelImage is the name the Raspberry Pi firmware loads the kernel
	// by, SoC the prefix of the board's device trees, GPUFirmware the
	// files of raspi-firmware a board that boots its GPU from the card
	// needs.
	KernelImage string   `json:"kernel_image,omitempty"`
	SoC         string   `json:"soc,omitempty"`
	GPUFirmware []string `json:"gpu_firmware,omitempty"`
}

// Boards lists the supported gateway boards.
var Boards = map[string]*Board{
	"rpi5": {
		ID: "rpi5", Name: "Raspberry Pi 5", Arch: "arm64", RaspberryPi: true,
		Packages:      []string{"linux-image-rpi-2712", "raspi-firmware", "raspberrypi-sys-mods", "rpi-eeprom"},
		KernelFlavour: "-rpi-2712", Console: "serial0,115200", BootSize: 512 << 20,
		Boot: "raspberrypi", KernelImage: "kernel_2712.img", SoC: "bcm2712",
	},
	"rpi4": {
		ID: "rpi4", Name: "Raspberry Pi 4", Arch: "arm64", RaspberryPi: true,
		Packages:      []string{"linux-image-rpi-v8", "raspi-firmware", "raspberrypi-sys-mods", "rpi-eeprom"},
		KernelFlavour: "-rpi-v8", Console: "serial0,115200", BootSize: 512 << 20,
		// The Pi 4's GPU firmware boots from the FAT partition.
		Boot: "raspberrypi", KernelImage: "kernel8.img", SoC: "bcm2711", GPUFirmware: []string{"start4.elf", "fixup4.dat"},
	},
	"qemu-arm64": {
		ID: "qemu-arm64", Name: "QEMU virt (arm64)", Arch: "arm64",
		// Debian's kernel for virtual machines: a quarter of the generic
		// arm64 kernel's modules (about 1,100 of 4,350), so its postinst's
		// depmod, the slowest part of the kernel's first boot under
		// emulation, takes a quarter of the time, and the image is 100 MB
		// smaller. The kernel wants an initramfs tool; appliance makes its
		// own initramfs, so it takes the smallest, not initramfs-tools,
		// whose hooks take minutes under emulation on the first boot.
		Packages:      []string{"linux-image-cloud-arm64", "tiny-initramfs"},
		KernelFlavour: "-cloud-arm64", Console: "ttyAMA0", BootSize: 128 << 20,
		// virtio, virtio_pci, ext4 and crc32c are built into the cloud
		// kernel, the disk driver is a module. (The generic kernel has
		// ext4 as a module too, and ext4's metadata checksums ask the
		// crypto API for crc32c by name, which only modprobe could answer:
		// crc32c_generic comes first; a built-in module is skipped.)
		InitramfsModules: []string{"crc32c_generic", "virtio_blk", "ext4"},
		Boot:             "qemu",
	},
}

// DefaultFlashSize is the flash of the common ESP32 and ESP32-S3
// modules; FlashSizes are the sizes the nodes' partition table is laid
// out for.
const DefaultFlashSize = 4 << 20

var FlashSizes = []int64{2 << 20, 4 << 20, 8 << 20, 16 << 20, 32 << 20}

// Chip describes an ESP32 family member a sensor node can run on.
type Chip struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	// MaxGPIO is the highest GPIO number the chip has.
	MaxGPIO int `json:"max_gpio"`
	// Reserved are GPIOs wired to the SPI flash or PSRAM on the usual
	// modules; driving a sensor on them crashes the chip.
	Reserved []int `json:"reserved,omitempty"`
	// InputOnly are GPIOs that cannot drive a line; single-wire sensors
	// such as the DHT family must pull the line low, so these are refused.
	InputOnly []int `json:"input_only,omitempty"`
	// SecureVersionBits is the size of the eFuse field that holds the
	// anti-rollback counter: secure_version may not exceed it.
	SecureVersionBits int `json:"secure_version_bits"`
}

func span(from, to int) []int {
	var s []int
	for i := from; i <= to; i++ {
		s = append(s, i)
	}
	return s
}

// Chips lists the supported node chips. Reserved pins follow Espressif's
// datasheets for modules with quad SPI flash; octal-PSRAM S3 modules also
// use GPIO33–37, which are refused too so that a spec works on either.
var Chips = map[string]Chip{
	"esp32":   {ID: "esp32", Name: "ESP32", MaxGPIO: 39, Reserved: span(6, 11), InputOnly: span(34, 39), SecureVersionBits: 32},
	"esp32s2": {ID: "esp32s2", Name: "ESP32-S2", MaxGPIO: 46, Reserved: span(26, 32), InputOnly: []int{46}, SecureVersionBits: 16},
	"esp32s3": {ID: "esp32s3", Name: "ESP32-S3", MaxGPIO: 48, Reserved: span(26, 37), SecureVersionBits: 16},
	"esp32c3": {ID: "esp32c3", Name: "ESP32-C3", MaxGPIO: 21, Reserved: span(12, 17), SecureVersionBits: 16},
	"esp32c6": {ID: "esp32c6", Name: "ESP32-C6", MaxGPIO: 30, Reserved: span(24, 30), SecureVersionBits: 16},
}

// PinProblem says why a GPIO cannot carry a sensor on this chip, or "".
func (c Chip) PinProblem(pin int) string {
	switch {
	case pin < 0 || pin > c.MaxGPIO:
		return "the " + c.Name + " has GPIO0 to GPIO" + strconv.Itoa(c.MaxGPIO)
	case contains(c.Reserved, pin):
		return "GPIO" + strconv.Itoa(pin) + " is wired to the flash or PSRAM on " + c.Name + " modules"
	case contains(c.InputOnly, pin):
		return "GPIO" + strconv.Itoa(pin) + " is input-only on the " + c.Name + ", and the sensor needs a line it can drive"
	}
	return ""
}

// Sensor describes a supported sensor type.
type Sensor struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	// MinInterval is the shortest sampling period the part supports.
	MinInterval time.Duration `json:"min_interval"`
}

// Sensors lists the supported sensor types.
var Sensors = map[string]Sensor{
	"dht11": {ID: "dht11", Name: "DHT11", MinInterval: time.Second},
	"dht22": {ID: "dht22", Name: "DHT22", MinInterval: 2 * time.Second},
}

// Suites lists the Debian suites a gateway can be built from. Raspberry Pi
// OS follows Debian's suites, and the image builder relies on trixie's
// merged-/usr layout.
var Suites = []string{"trixie"}

func contains(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// keys returns the sorted keys of a catalog, for messages.
func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// countries are the ISO 3166-1 alpha-2 codes, which the Wi-Fi regulatory
// domain (and wpa_supplicant's country=) takes.
var countries = func() map[string]bool {
	m := map[string]bool{}
	for _, c := range strings.Fields(`AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY BZ
CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR
GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP
KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT
MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW
SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG
UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW`) {
		m[c] = true
	}
	return m
}()
