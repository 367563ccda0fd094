package boards

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path"
	"strings"

	"github.com/appliance/appliance/images/tree"
)

// Debian's raspi-firmware keeps a Raspberry Pi's boot partition itself:
// its kernel hook (/etc/kernel/postinst.d/z50-raspi-firmware) and its
// postinst copy the GPU firmware, the device trees, the newest kernel
// and initramfs to /boot/firmware and write config.txt and cmdline.txt
// from /etc/default/raspi-firmware and /etc/default/raspi-extra-cmdline,
// on the first boot and again on every kernel update. The image is laid
// out here exactly as that hook lays it out from the same settings, so
// the first boot rewrites the same bytes (only the initramfs becomes the
// one the gateway's initramfs tool makes).

// RaspiFirmwareDefaults and RaspiExtraCmdline are the hook's settings.
const (
	RaspiFirmwareDefaults = "etc/default/raspi-firmware"
	RaspiExtraCmdline     = "etc/default/raspi-extra-cmdline"
	RaspiFirmwareCustom   = "etc/default/raspi-firmware-custom"
)

// hookSettings are the hook's variables after /etc/default/raspi-firmware.
type hookSettings struct {
	cma, kernel, initramfs, consoles, rootPart, kernelArch, gpuFreq string
}

// readHookSettings reads the variables the hook takes from
// /etc/default/raspi-firmware, which it sources as shell: only plain
// assignments are understood here, and anything else is refused rather
// than guessed at.
func readHookSettings(t *tree.Tree, blobs tree.Blobs) (hookSettings, error) {
	h := hookSettings{cma: "64M", kernel: "auto", initramfs: "auto", consoles: "auto"}
	data, err := readTreeFile(t, blobs, RaspiFirmwareDefaults)
	if err != nil {
		return h, err
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || strings.ContainsAny(k, " \t$`") {
			return h, fmt.Errorf("/%s:%d: %q is not a plain VAR=value assignment", RaspiFirmwareDefaults, n, line)
		}
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			v = v[1 : len(v)-1]
		}
		if strings.ContainsAny(v, "$`\"'\\") {
			return h, fmt.Errorf("/%s:%d: the value of %s is not plain text", RaspiFirmwareDefaults, n, k)
		}
		switch k {
		case "CMA":
			h.cma = v
		case "KERNEL":
			h.kernel = v
		case "INITRAMFS":
			h.initramfs = v
		case "CONSOLES":
			h.consoles = v
		case "ROOTPART":
			h.rootPart = v
		case "KERNEL_ARCH":
			h.kernelArch = v
		case "GPU_FREQ":
			h.gpuFreq = v
		}
	}
	switch {
	case h.kernel != "auto" || h.initramfs != "auto":
		return h, fmt.Errorf("/%s: appliance lays out the boot partition with KERNEL and INITRAMFS \"auto\"", RaspiFirmwareDefaults)
	case h.consoles == "auto" || h.rootPart == "":
		// Both would be read from the running gateway's devices.
		return h, fmt.Errorf("/%s must set CONSOLES and ROOTPART, which the hook would otherwise guess on the gateway", RaspiFirmwareDefaults)
	case h.kernelArch != "" && h.kernelArch != "arm64":
		return h, fmt.Errorf("/%s: KERNEL_ARCH=%s: the gateway is arm64", RaspiFirmwareDefaults, h.kernelArch)
	}
	return h, nil
}

func readTreeFile(t *tree.Tree, blobs tree.Blobs, p string) ([]byte, error) {
	e, err := resolve(t, p)
	if err != nil {
		return nil, err
	}
	if e.Blob == "" {
		return e.Data, nil
	}
	return os.ReadFile(blobs.BlobPath(e.Blob))
}

// RaspiFirmwareCmdline is the cmdline.txt the hook writes: the consoles,
// the root, its fixed options, the CMA size unless it is 0 (or the
// default on a Pi 4, where setting it breaks the boot), and the extra
// options, in its order and spacing.
func RaspiFirmwareCmdline(consoles, rootPart, cma string, pi4 bool, extra string) string {
	var pre string
	for _, c := range strings.Fields(consoles) {
		pre += " console=" + c
	}
	setCMA := "cma=" + cma
	if cma == "0" || (cma == "64M" && pi4) {
		setCMA = ""
	}
	return fmt.Sprintf("%s root=%s rw fsck.repair=yes net.ifnames=0 %s rootwait %s\n", pre, rootPart, setCMA, extra)
}

// raspiFirmwareConfig is the config.txt the hook writes for an arm64
// kernel and initramfs (GPU_FREQ applies to a Pi 4 only), with
// /etc/default/raspi-firmware-custom appended when it exists.
func raspiFirmwareConfig(kernel, initrd, gpuFreq string, pi4 bool, custom []byte) string {
	var b strings.Builder
	b.WriteString(`# Do not modify this file!
#
# It is automatically generated upon install or update of either the
# firmware or the Linux kernel.
#
# If you need to set boot-time parameters, do so via the
# /etc/default/raspi-firmware, /etc/default/raspi-firmware-custom or
# /etc/default/raspi-extra-cmdline files.

# Switch the CPU from ARMv7 into ARMv8 (aarch64) mode
arm_64bit=1

`)
	if pi4 && gpuFreq != "" && gpuFreq != "auto" {
		b.WriteString("core_freq=" + gpuFreq + "\n")
	}
	fmt.Fprintf(&b, "enable_uart=1\nupstream_kernel=1\n\nkernel=%s\n", kernel)
	fmt.Fprintf(&b, "# For details on the initramfs directive, see\n# https://www.raspberrypi.org/forums/viewtopic.php?f=63&t=10532\ninitramfs %s\n", initrd)
	if custom != nil {
		// $(cat …) drops the file's final newlines; the heredoc ends
		// the line.
		fmt.Fprintf(&b, "\n# Inserted by /%s\n%s\n", RaspiFirmwareCustom, strings.TrimRight(string(custom), "\n"))
	}
	return b.String()
}

// raspiFirmwareBoot fills the boot partition as raspi-firmware's
// postinst and kernel hook do: everything under /usr/lib/raspi-firmware,
// the kernel's Broadcom device trees, the kernel and initramfs under
// their own names, config.txt and cmdline.txt.
func raspiFirmwareBoot(c *Context) ([]File, error) {
	if c.DTB == "" {
		return nil, fmt.Errorf("the board names no device tree")
	}
	h, err := readHookSettings(c.Tree, c.Blobs)
	if err != nil {
		return nil, err
	}
	custom, err := readTreeFile(c.Tree, c.Blobs, RaspiFirmwareCustom)
	if err != nil && c.Tree.Get(RaspiFirmwareCustom) != nil {
		return nil, err
	}
	k, err := resolve(c.Tree, "boot/vmlinuz-"+c.Kernel)
	if err != nil {
		return nil, err
	}
	if len(c.Initramfs) == 0 {
		return nil, fmt.Errorf("the board boots with an initramfs, and none was made")
	}
	kernel, initrd := "vmlinuz-"+c.Kernel, "initrd.img-"+c.Kernel
	pi4 := strings.HasPrefix(c.DTB, "bcm2711-")
	files := []File{
		{Path: kernel, Entry: k},
		{Path: initrd, Data: c.Initramfs},
		{Path: "config.txt", Data: []byte(raspiFirmwareConfig(kernel, initrd, h.gpuFreq, pi4, custom))},
		{Path: "cmdline.txt", Data: []byte(c.Cmdline)},
	}
	var dtb bool
	dtbDir := "usr/lib/linux-image-" + c.Kernel + "/broadcom/"
	for _, e := range c.Tree.Entries() {
		if rel, ok := strings.CutPrefix(e.Path, "usr/lib/raspi-firmware/"); ok && e.Type != tree.Dir {
			content, err := resolve(c.Tree, e.Path)
			if err != nil {
				return nil, err
			}
			files = append(files, File{Path: rel, Entry: content})
			continue
		}
		// bcm*.dtb, as the hook's glob: the folder's own files only.
		rel, ok := strings.CutPrefix(e.Path, dtbDir)
		if !ok || strings.Contains(rel, "/") || !strings.HasPrefix(rel, "bcm") || path.Ext(rel) != ".dtb" || e.Type == tree.Dir {
			continue
		}
		content, err := resolve(c.Tree, e.Path)
		if err != nil {
			return nil, err
		}
		files = append(files, File{Path: rel, Entry: content})
		dtb = dtb || rel == c.DTB
	}
	if !dtb {
		return nil, fmt.Errorf("the kernel %s ships no device tree %s in /%s", c.Kernel, c.DTB, dtbDir)
	}
	for _, fw := range []string{"bootcode.bin", "start.elf", "fixup.dat", "start4.elf", "fixup4.dat"} {
		if c.Tree.Get("usr/lib/raspi-firmware/"+fw) == nil {
			return nil, fmt.Errorf("the Pi's GPU firmware %s is missing (package raspi-firmware)", fw)
		}
	}
	return files, nil
}

// RaspiFirmwareCmdlineOf is the command line the hook writes for the
// tree's settings, for the build to record and QEMU to boot with.
func RaspiFirmwareCmdlineOf(t *tree.Tree, blobs tree.Blobs, dtb string) (string, error) {
	h, err := readHookSettings(t, blobs)
	if err != nil {
		return "", err
	}
	extra, err := readTreeFile(t, blobs, RaspiExtraCmdline)
	if err != nil {
		return "", err
	}
	// The hook reads the file with $(cat …), which drops the final
	// newlines.
	return RaspiFirmwareCmdline(h.consoles, h.rootPart, h.cma, strings.HasPrefix(dtb, "bcm2711-"), strings.TrimRight(string(extra), "\n")), nil
}
