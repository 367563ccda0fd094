package spec

import (
	"fmt"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Board describes a gateway board appliance builds images for: the one
// catalogue of boards, which the spec checks against, the desired state
// takes its packages from and the image build its boot partition. A
// site's board is the catalogue's entry resolved for its apt sources
// (Resolve): a Raspberry Pi takes Raspberry Pi's kernel where the
// sources hold the Raspberry Pi archive, and Debian's where they do not
// and Debian's kernel runs the board.
type Board struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	// Arch is the Debian architecture of the gateway's packages.
	Arch string `json:"arch"`
	// RaspberryPi reports whether the board takes Raspberry Pi OS
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
	// initramfs and command line, which QEMU is given), "raspberrypi"
	// (as Raspberry Pi OS's raspi-firmware hooks lay it out) or
	// "raspi-firmware" (as Debian's raspi-firmware hooks lay it out, which
	// the gateway's own kernel and firmware updates run again).
	Boot string `json:"boot"`
	// KernelImage is the name the Raspberry Pi firmware loads the kernel
	// by, SoC the prefix of the board's device trees, GPUFirmware the
	// files of raspi-firmware a board that boots its GPU from the card
	// needs.
	KernelImage string   `json:"kernel_image,omitempty"`
	SoC         string   `json:"soc,omitempty"`
	GPUFirmware []string `json:"gpu_firmware,omitempty"`
	// DTB is the board's device tree among the kernel's, which the Pi's
	// firmware (or QEMU's raspi3b machine) loads.
	DTB string `json:"dtb,omitempty"`
	// Kernel says which kernel the board takes and why, as plan shows it.
	Kernel string `json:"kernel"`

	// Debian is the board booted from Debian alone (linux-image-arm64
	// and Debian's raspi-firmware), which Resolve picks when the sources
	// hold no Raspberry Pi archive; NoDebian says why a board without it
	// needs that archive.
	Debian   *Board `json:"-"`
	NoDebian string `json:"-"`
}

// piConsole is the Raspberry Pi 3's and 4's serial console on the pin
// header (the mini UART, ttyS1 under the mainline device trees).
const piConsole = "ttyS1,115200"

// debianPi is a Raspberry Pi booted with Debian's arm64 kernel and
// raspi-firmware (from non-free-firmware), as raspi.debian.net's images
// are. The kernel has ext4, FAT and the SD controllers as modules, so
// appliance's initramfs loads them; tiny-initramfs is the initramfs tool
// the kernel package asks for, and it makes the gateway's initramfs for
// every later kernel update (initramfs-tools' hooks take minutes under
// emulation on the first boot).
func debianPi(id, name, dtb string, sdModules ...string) *Board {
	mods := []string{"crc32c_generic", "ext4", "fixed", "gpio_regulator"}
	mods = append(mods, sdModules...)
	// The boot partition is mounted for raspi-firmware's hooks on the
	// first boot, before depmod has run: FAT and its code pages too.
	mods = append(mods, "vfat", "nls_cp437", "nls_ascii")
	return &Board{
		ID: id, Name: name, Arch: "arm64",
		Packages:      []string{"linux-image-arm64", "raspi-firmware", "tiny-initramfs"},
		KernelFlavour: "-arm64", Console: piConsole, BootSize: 512 << 20,
		InitramfsModules: mods, Boot: "raspi-firmware", DTB: dtb,
		Kernel: "linux-image-arm64 from Debian, with Debian's raspi-firmware: the os sources hold no Raspberry Pi archive",
	}
}

// Boards lists the supported gateway boards, each as it is with the
// Raspberry Pi archive among the sources (the default sources of a Pi).
var Boards = map[string]*Board{
	"rpi5": {
		ID: "rpi5", Name: "Raspberry Pi 5", Arch: "arm64", RaspberryPi: true,
		Packages:      []string{"linux-image-rpi-2712", "raspi-firmware", "raspberrypi-sys-mods", "rpi-eeprom"},
		KernelFlavour: "-rpi-2712", Console: "serial0,115200", BootSize: 512 << 20,
		Boot: "raspberrypi", KernelImage: "kernel_2712.img", SoC: "bcm2712", DTB: "bcm2712-rpi-5-b.dtb",
		Kernel: "linux-image-rpi-2712 from the Raspberry Pi archive",
		NoDebian: "Debian's kernel has no driver for the Raspberry Pi 5's RP1 chip, which carries its Ethernet, USB and GPIO, " +
			"so a Pi 5 boots only with Raspberry Pi's kernel",
	},
	"rpi4": {
		ID: "rpi4", Name: "Raspberry Pi 4", Arch: "arm64", RaspberryPi: true,
		Packages:      []string{"linux-image-rpi-v8", "raspi-firmware", "raspberrypi-sys-mods", "rpi-eeprom"},
		KernelFlavour: "-rpi-v8", Console: "serial0,115200", BootSize: 512 << 20,
		// The Pi 4's GPU firmware boots from the FAT partition.
		Boot: "raspberrypi", KernelImage: "kernel8.img", SoC: "bcm2711", GPUFirmware: []string{"start4.elf", "fixup4.dat"},
		DTB:    "bcm2711-rpi-4-b.dtb",
		Kernel: "linux-image-rpi-v8 from the Raspberry Pi archive",
		// The Pi 4's SD card is on its EMMC2 controller (sdhci-iproc).
		Debian: debianPi("rpi4", "Raspberry Pi 4", "bcm2711-rpi-4-b.dtb", "sdhci_iproc"),
	},
	"rpi3": {
		ID: "rpi3", Name: "Raspberry Pi 3 (3B, 3B+, Zero 2 W)", Arch: "arm64", RaspberryPi: true,
		Packages:      []string{"linux-image-rpi-v8", "raspi-firmware", "raspberrypi-sys-mods"},
		KernelFlavour: "-rpi-v8", Console: "serial0,115200", BootSize: 512 << 20,
		// The Pi 3 loads bootcode.bin, then its GPU firmware, from the card.
		Boot: "raspberrypi", KernelImage: "kernel8.img", SoC: "bcm2710", GPUFirmware: []string{"bootcode.bin", "start.elf", "fixup.dat"},
		DTB:    "bcm2710-rpi-3-b.dtb",
		Kernel: "linux-image-rpi-v8 from the Raspberry Pi archive",
		// The card is on the SD host controller (bcm2835); Wi-Fi is on the
		// other one (sdhci-iproc), which a Zero 2 W's device tree may swap.
		Debian: debianPi("rpi3", "Raspberry Pi 3 (3B, 3B+, Zero 2 W)", "bcm2837-rpi-3-b.dtb", "bcm2835", "sdhci_iproc"),
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
		Kernel:           "linux-image-cloud-arm64 from Debian",
	},
}

// Resolve returns the board as a site with these sources gets it: as
// catalogued when a source is the Raspberry Pi archive (or the board is
// no Raspberry Pi), else booted from Debian alone. A board that cannot
// boot from Debian alone gets an error that says why and what to add.
func (b *Board) Resolve(sources []Source) (*Board, error) {
	if !b.RaspberryPi {
		return b, nil
	}
	for _, s := range sources {
		if s.IsRaspberryPi() {
			return b, nil
		}
	}
	if b.Debian == nil {
		return nil, fmt.Errorf("%s; add source \"raspberrypi\" { url = \"http://archive.raspberrypi.com/debian\" } to the os block, or a mirror of it named \"raspberrypi\"", b.NoDebian)
	}
	for _, s := range sources {
		if slices.Contains(s.Components, "non-free-firmware") && !s.IsRaspberryPi() {
			return b.Debian, nil
		}
	}
	return nil, fmt.Errorf("the %s's boot firmware (raspi-firmware) is in Debian's non-free-firmware component, which no source lists; add \"non-free-firmware\" to the Debian source's components", b.Name)
}

// IsRaspberryPi reports whether the source is the Raspberry Pi archive:
// by its address, by the shipped key that signs it, or, for a mirror of
// one's own, by its name "raspberrypi".
func (s Source) IsRaspberryPi() bool {
	if s.ShippedKeyring == "raspberrypi" || s.Name == "raspberrypi" {
		return true
	}
	u, err := url.Parse(s.URL)
	return err == nil && (u.Hostname() == "archive.raspberrypi.com" || u.Hostname() == "archive.raspberrypi.org")
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
