// Package boards fills a gateway board's FAT boot partition from the
// root file system, the way the packages' kernel hooks would fill it
// (no hook runs at build time), and makes its kernel command line. What
// each board is — its packages, console, kernel flavour, boot layout —
// is the spec's board catalogue (spec.Boards); this package gets those
// facts as arguments.
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

// Context is what a board needs to fill its boot partition.
type Context struct {
	// Boot is the board's layout: "qemu", "raspberrypi" or
	// "raspi-firmware".
	Boot string
	// KernelImage, SoC and GPUFirmware describe a Raspberry Pi: the
	// kernel's name on the partition, its device trees' prefix, and the
	// GPU firmware files it boots from the card.
	KernelImage, SoC string
	GPUFirmware      []string
	// DTB is the board's own device tree.
	DTB string

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

// Kernel finds a board's kernel in the tree: the version of the newest
// /boot/vmlinuz-* of its flavour, from its kernel package pkg.
func Kernel(t *tree.Tree, board, flavour, pkg string) (string, error) {
	var found []string
	for _, e := range t.Entries() {
		if v, ok := strings.CutPrefix(e.Path, "boot/vmlinuz-"); ok && strings.HasSuffix(v, flavour) && e.Type == tree.Regular {
			found = append(found, v)
		}
	}
	if len(found) == 0 {
		return "", fmt.Errorf("board %s: no kernel /boot/vmlinuz-*%s in the root file system; the board's kernel package (%s) must come from the os sources", board, flavour, pkg)
	}
	sort.Strings(found)
	return found[len(found)-1], nil
}

// Cmdline is the kernel command line: the root by PARTUUID, appliance's
// init (which runs the first boot, then systemd), the serial console.
func Cmdline(console, rootPartUUID string) string {
	return fmt.Sprintf("console=%s root=PARTUUID=%s rootfstype=ext4 rootwait ro fsck.repair=yes init=%s panic=10", console, rootPartUUID, bootinit.InitPath)
}

// Layouts are the boot partition layouts this package fills.
var Layouts = []string{"qemu", "raspberrypi", "raspi-firmware"}

// BootFiles lists what goes on the FAT boot partition.
func BootFiles(c *Context) ([]File, error) {
	switch c.Boot {
	case "qemu":
		return qemuBoot(c)
	case "raspberrypi":
		return piBoot(c, c.KernelImage, c.SoC, c.GPUFirmware)
	case "raspi-firmware":
		return raspiFirmwareBoot(c)
	}
	return nil, fmt.Errorf("no boot partition layout %q", c.Boot)
}

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
