// Package boards knows the gateway boards appliance builds images for:
// which kernel and firmware packages each needs, what goes on its FAT
// boot partition (filled the way the packages' kernel hooks would fill
// it, since no hook runs at build time), its kernel command line, and
// whether its kernel needs an initramfs to reach the root file system.
package boards

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/appliance/appliance/bootinit"
	"github.com/appliance/appliance/images/fat"
	"github.com/appliance/appliance/images/tree"
)

// Board is one kind of gateway hardware.
type Board struct {
	ID string
	// Packages are the kernel and firmware packages the board boots with.
	Packages []string
	// BootSize is the FAT boot partition's size.
	BootSize int64
	// Console is the serial console for the kernel command line.
	Console string
	// InitramfsModules are the kernel modules needed to mount the root;
	// nil when the kernel has what it needs built in (no initramfs).
	InitramfsModules []string
	// KernelFlavour ends the kernel's version string, e.g. "-arm64".
	KernelFlavour string
	boot          func(c *Context) ([]File, error)
}

// All are the boards by ID (spec.Boards names them too).
var All = map[string]*Board{
	"qemu-arm64": {
		ID: "qemu-arm64",
		// The kernel wants an initramfs tool; appliance makes its own
		// initramfs, so it takes the smallest, not initramfs-tools, whose
		// hooks take minutes under emulation on the first boot.
		Packages: []string{"linux-image-arm64", "tiny-initramfs"},
		BootSize: 128 << 20,
		Console:  "ttyAMA0",
		// virtio and virtio_pci are built into Debian's arm64 kernel;
		// the disk driver and ext4 are modules, and ext4's metadata
		// checksums ask the crypto API for crc32c by name, which only
		// modprobe could answer: load it first.
		InitramfsModules: []string{"crc32c_generic", "virtio_blk", "ext4"},
		KernelFlavour:    "-arm64",
		boot:             qemuBoot,
	},
	"rpi5": {
		ID:            "rpi5",
		Packages:      []string{"linux-image-rpi-2712", "raspi-firmware", "raspberrypi-sys-mods", "rpi-eeprom"},
		BootSize:      512 << 20,
		Console:       "serial0,115200",
		KernelFlavour: "-rpi-2712",
		boot:          func(c *Context) ([]File, error) { return piBoot(c, "kernel_2712.img", "bcm2712", nil) },
	},
	"rpi4": {
		ID:            "rpi4",
		Packages:      []string{"linux-image-rpi-v8", "raspi-firmware", "raspberrypi-sys-mods", "rpi-eeprom"},
		BootSize:      512 << 20,
		Console:       "serial0,115200",
		KernelFlavour: "-rpi-v8",
		// The Pi 4's GPU firmware boots from the FAT partition.
		boot: func(c *Context) ([]File, error) {
			return piBoot(c, "kernel8.img", "bcm2711", []string{"start4.elf", "fixup4.dat"})
		},
	},
}

// Context is what a board needs to fill its boot partition.
type Context struct {
	Tree  *tree.Tree
	Blobs tree.Blobs
	// Kernel is the kernel's version (the part after vmlinuz-).
	Kernel string
	// Cmdline is the kernel command line.
	Cmdline string
	// Initramfs is the initramfs, when the board needs one.
	Initramfs []byte
	// Time dates every file of the boot partition.
	Time time.Time
}

// File is a file of the boot partition, from the tree or made here.
type File struct {
	Path string
	Data []byte
	// Entry, when set, gives the content (a tree entry's blob).
	Entry *tree.Entry
}

// Kernel finds the board's kernel in the tree: the version of the
// newest /boot/vmlinuz-* of the board's flavour.
func (b *Board) Kernel(t *tree.Tree) (string, error) {
	var found []string
	for _, e := range t.Entries() {
		if v, ok := strings.CutPrefix(e.Path, "boot/vmlinuz-"); ok && strings.HasSuffix(v, b.KernelFlavour) && e.Type == tree.Regular {
			found = append(found, v)
		}
	}
	if len(found) == 0 {
		return "", fmt.Errorf("board %s: no kernel /boot/vmlinuz-*%s in the root file system; the board's kernel package (%s) must come from the os sources", b.ID, b.KernelFlavour, b.Packages[0])
	}
	sort.Strings(found)
	return found[len(found)-1], nil
}

// Cmdline is the kernel command line: the root by PARTUUID, appliance's
// init (which runs the first boot, then systemd), the serial console.
func (b *Board) Cmdline(rootPartUUID string) string {
	return fmt.Sprintf("console=%s root=PARTUUID=%s rootfstype=ext4 rootwait ro fsck.repair=yes init=%s panic=10", b.Console, rootPartUUID, bootinit.InitPath)
}

// BootFiles lists what goes on the FAT boot partition.
func (b *Board) BootFiles(c *Context) ([]File, error) { return b.boot(c) }

// FATEntries turns the boot files into FAT entries, folders first.
func FATEntries(files []File, blobs tree.Blobs, mtime time.Time) []fat.Entry {
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	dirs := map[string]bool{"/": true}
	var out []fat.Entry
	for _, f := range files {
		p := "/" + strings.TrimPrefix(f.Path, "/")
		for d := path.Dir(p); !dirs[d]; d = path.Dir(d) {
			dirs[d] = true
			out = append(out, fat.Entry{Path: d, Dir: true, MTime: mtime})
		}
		f := f
		e := fat.Entry{Path: p, MTime: mtime}
		if f.Entry != nil {
			e.Size = f.Entry.Size
			e.Open = func() (io.ReadCloser, error) {
				if f.Entry.Blob == "" {
					return io.NopCloser(bytes.NewReader(f.Entry.Data)), nil
				}
				return os.Open(blobs.BlobPath(f.Entry.Blob))
			}
		} else {
			e.Size = int64(len(f.Data))
			e.Open = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(f.Data)), nil }
		}
		out = append(out, e)
	}
	// Folders were appended when first met: put each before its files.
	sort.SliceStable(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

// resolve follows symlinks in the tree to a regular file.
func resolve(t *tree.Tree, p string) (*tree.Entry, error) {
	for i := 0; i < 16; i++ {
		e := t.Get(p)
		switch {
		case e == nil:
			return nil, fmt.Errorf("/%s is not in the root file system", p)
		case e.Type == tree.Regular:
			return e, nil
		case e.Type == tree.Hardlink:
			p = e.Link
		case e.Type == tree.Symlink:
			if strings.HasPrefix(e.Link, "/") {
				p = strings.TrimPrefix(path.Clean(e.Link), "/")
			} else {
				p = path.Join(path.Dir(p), e.Link)
			}
		default:
			return nil, fmt.Errorf("/%s is not a file", p)
		}
	}
	return nil, fmt.Errorf("/%s: too many links", p)
}

// qemuBoot: QEMU's virt machine loads the kernel and initramfs itself
// (appliance vm passes them); the boot partition keeps them with the
// command line so that the image carries everything it boots with.
func qemuBoot(c *Context) ([]File, error) {
	k, err := resolve(c.Tree, "boot/vmlinuz-"+c.Kernel)
	if err != nil {
		return nil, err
	}
	return []File{
		{Path: "vmlinuz", Entry: k},
		{Path: "initrd.img", Data: c.Initramfs},
		{Path: "cmdline.txt", Data: []byte(c.Cmdline + "\n")},
	}, nil
}

// piBoot fills the boot partition as Raspberry Pi OS's raspi-firmware
// kernel hooks do: the kernel under the name the firmware loads, the
// SoC's device trees, the overlays, config.txt and cmdline.txt, and for
// boards that boot their GPU from the card, its firmware.
func piBoot(c *Context, kernelName, soc string, firmware []string) ([]File, error) {
	k, err := resolve(c.Tree, "boot/vmlinuz-"+c.Kernel)
	if err != nil {
		return nil, err
	}
	files := []File{
		{Path: kernelName, Entry: k},
		{Path: "cmdline.txt", Data: []byte(c.Cmdline + "\n")},
		{Path: "config.txt", Data: []byte(piConfig(kernelName))},
	}
	dtbDir := "usr/lib/linux-image-" + c.Kernel
	var dtbs, overlays int
	for _, e := range c.Tree.Entries() {
		rel, ok := strings.CutPrefix(e.Path, dtbDir+"/")
		if !ok || (e.Type != tree.Regular && e.Type != tree.Hardlink && e.Type != tree.Symlink) {
			continue
		}
		// FAT has no links: a linked device tree or overlay is copied
		// as its target's content, as the hooks' cp does.
		content, err := resolve(c.Tree, e.Path)
		if err != nil {
			if e.Type == tree.Symlink {
				continue // a link to a folder or to nothing
			}
			return nil, err
		}
		switch {
		case strings.HasPrefix(rel, "broadcom/"+soc) && strings.HasSuffix(rel, ".dtb"):
			files = append(files, File{Path: path.Base(rel), Entry: content})
			dtbs++
		case strings.HasPrefix(rel, "overlays/"):
			files = append(files, File{Path: rel, Entry: content})
			overlays++
		}
	}
	if dtbs == 0 {
		return nil, fmt.Errorf("the kernel %s ships no %s device trees in /%s/broadcom", c.Kernel, soc, dtbDir)
	}
	for _, fw := range firmware {
		e, err := resolve(c.Tree, "usr/lib/raspi-firmware/"+fw)
		if err != nil {
			return nil, fmt.Errorf("the Pi's GPU firmware %s is missing (package raspi-firmware): %w", fw, err)
		}
		files = append(files, File{Path: fw, Entry: e})
	}
	return files, nil
}

// piConfig is config.txt: 64-bit, the kernel by name, no initramfs (the
// Pi kernels have their storage and ext4 built in), the serial console.
func piConfig(kernel string) string {
	return fmt.Sprintf(`# Written by appliance. Do not edit: the next build or push replaces it.
arm_64bit=1
kernel=%s
auto_initramfs=0
disable_splash=1
enable_uart=1
dtparam=audio=off
`, kernel)
}
