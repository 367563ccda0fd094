package build_test

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/appliance/appliance/images/build"
	"github.com/appliance/appliance/internal/testenv"
)

// debianPiSpec is a small site whose Raspberry Pi takes everything from
// Debian: no Raspberry Pi archive among its sources.
func debianPiSpec(board string) string {
	return fmt.Sprintf(`site "pi" {}
gateway "gw" {
  board    = %q
  hostname = "pi-gw"
  admin {
    user            = "ops"
    authorized_keys = []
  }
}
os {
  suite = "trixie"
  source "debian" {
    url        = "http://deb.debian.org/debian"
    components = ["main", "non-free-firmware"]
  }
  source "debian-security" {
    url        = "http://deb.debian.org/debian-security"
    suite      = "trixie-security"
    components = ["main", "non-free-firmware"]
  }
}
`, board)
}

// debianPiCases: each board, the compatible string its device tree must
// carry and whether raspi-firmware's hook treats it as a Pi 4.
var debianPiCases = []struct {
	board, dtb, compatible string
}{
	{"rpi4", "bcm2711-rpi-4-b.dtb", "raspberrypi,4-model-b"},
	{"rpi3", "bcm2837-rpi-3-b.dtb", "raspberrypi,3-model-b"},
}

// TestPiFromDebian builds Raspberry Pi 4 and 3 gateways from Debian's
// real archive alone (linux-image-arm64, raspi-firmware from
// non-free-firmware) and holds the boot partition against raspi-firmware's
// own kernel hook: the hook, run from the package over the image's root
// file system, writes exactly the files the image's boot partition holds,
// byte for byte. Besides: fsck.vfat and e2fsck find both file systems
// clean, config.txt names files that are there, the device tree is the
// board's, and the command line names the root file system blkid reads.
func TestPiFromDebian(t *testing.T) {
	testenv.Require(t, "debugfs", "mcopy", "fsck.vfat", "e2fsck", "blkid", "unshare", "mount")
	for _, c := range debianPiCases {
		t.Run(c.board, func(t *testing.T) {
			dir := t.TempDir()
			specPath := filepath.Join(dir, "pi.hcl")
			if err := os.WriteFile(specPath, []byte(debianPiSpec(c.board)), 0o644); err != nil {
				t.Fatal(err)
			}
			d := siteBuild(t, specPath)
			out := filepath.Join(dir, "out")
			r := d.build(t, out)
			img := filepath.Join(out, build.ImageName)
			pt := readTable(t, img)
			if len(pt.Partitions) != 2 || pt.Partitions[0].Type != "c" || pt.Partitions[1].Type != "83" {
				t.Fatalf("partitions: %+v", pt.Partitions)
			}
			boot, root := pt.loop(t, img, 0), pt.loop(t, img, 1)
			testenv.MustRun(t, "fsck.vfat", "-n", boot)
			testenv.MustRun(t, "e2fsck", "-fn", root)

			fat := t.TempDir()
			testenv.MustRun(t, "mcopy", "-s", "-n", "-i", boot, "::/*", fat+"/")
			files := readDir(t, fat)

			kver := r.Info.Kernel
			if !strings.HasSuffix(kver, "-arm64") {
				t.Fatalf("kernel %s is not Debian's arm64 kernel", kver)
			}
			cfg := string(files["config.txt"])
			for _, l := range strings.Split(cfg, "\n") {
				name, ok := strings.CutPrefix(l, "kernel=")
				if !ok {
					name, ok = strings.CutPrefix(l, "initramfs ")
				}
				if ok && files[name] == nil {
					t.Errorf("config.txt names %s, which the boot partition does not hold", name)
				}
			}
			if !strings.Contains(cfg, "arm_64bit=1\n") || !strings.Contains(cfg, "kernel=vmlinuz-"+kver+"\n") || !strings.Contains(cfg, "initramfs initrd.img-"+kver+"\n") {
				t.Errorf("config.txt:\n%s", cfg)
			}
			if !bytes.Contains(files[c.dtb], []byte(c.compatible)) {
				t.Errorf("%s is not the %s's device tree", c.dtb, c.compatible)
			}
			for _, fw := range []string{"bootcode.bin", "start.elf", "fixup.dat", "start4.elf", "fixup4.dat"} {
				if len(files[fw]) < 1000 {
					t.Errorf("the GPU firmware %s is missing or not the real file (%d bytes)", fw, len(files[fw]))
				}
			}
			uuid := strings.TrimSpace(testenv.MustRun(t, "blkid", "-o", "value", "-s", "UUID", root))
			cl := string(files["cmdline.txt"])
			if !strings.Contains(cl, " root=UUID="+uuid+" ") || !strings.Contains(cl, " init=/usr/lib/appliance/init ") || !strings.Contains(cl, "console=ttyS1,115200") {
				t.Errorf("cmdline.txt %q does not boot the root %s with appliance's init", cl, uuid)
			}
			if cl != r.Info.Cmdline {
				t.Errorf("build-info's command line %q is not cmdline.txt's %q", r.Info.Cmdline, cl)
			}
			// What QEMU boots is the boot partition's.
			for name, want := range map[string]string{"vmlinuz": "vmlinuz-" + kver, "initrd.img": "initrd.img-" + kver, "cmdline.txt": "cmdline.txt", "board.dtb": c.dtb} {
				got, err := os.ReadFile(filepath.Join(out, "boot", name))
				if err != nil || !bytes.Equal(got, files[want]) {
					t.Errorf("out/boot/%s is not the boot partition's %s (%v)", name, want, err)
				}
			}

			hook := runRaspiFirmwareHook(t, root, kver)
			var extra, missing []string
			for name, data := range hook {
				if got, ok := files[name]; !ok {
					missing = append(missing, name)
				} else if !bytes.Equal(got, data) {
					t.Errorf("%s differs from what raspi-firmware's hook writes:\n--- image\n%.600s\n--- hook\n%.600s", name, got, data)
				}
			}
			for name := range files {
				if _, ok := hook[name]; !ok {
					extra = append(extra, name)
				}
			}
			sort.Strings(extra)
			sort.Strings(missing)
			t.Logf("raspi-firmware's hook wrote %d files, the same as the image's boot partition holds; cmdline.txt: %q", len(hook), files["cmdline.txt"])
			if len(extra)+len(missing) > 0 || len(hook) < 20 {
				t.Errorf("the boot partition and the hook's differ: only in the image %v, only the hook's %v (the hook wrote %d files)", extra, missing, len(hook))
			}
		})
	}
}

// runRaspiFirmwareHook lays out a boot partition as raspi-firmware's
// postinst does on the gateway — cp -r /usr/lib/raspi-firmware/*, then
// its kernel hook, which is run here from the image itself — with the
// image's /boot, /etc/default and kernel in place of this machine's, in a
// mount namespace of its own. The hook asks dpkg for the architecture:
// this machine's dpkg would say amd64, so a dpkg that says arm64 comes
// first in PATH.
func runRaspiFirmwareHook(t *testing.T, root, kver string) map[string][]byte {
	t.Helper()
	w := t.TempDir()
	img := filepath.Join(w, "img")
	os.MkdirAll(img, 0o755)
	for _, p := range []string{"/boot", "/etc/default", "/etc/kernel", "/usr/lib/raspi-firmware", "/usr/lib/linux-image-" + kver} {
		dst := filepath.Join(img, p)
		os.MkdirAll(filepath.Dir(dst), 0o755)
		testenv.MustRun(t, "debugfs", "-R", "rdump "+p+" "+filepath.Dir(dst), root)
	}
	fw := filepath.Join(w, "firmware")
	shim := filepath.Join(w, "bin")
	upper, work := filepath.Join(w, "upper"), filepath.Join(w, "work")
	for _, d := range []string{fw, shim, filepath.Join(upper, "linux-image-"+kver), work} {
		os.MkdirAll(d, 0o755)
	}
	os.WriteFile(filepath.Join(shim, "dpkg"), []byte("#!/bin/sh\n[ \"$1\" = --print-architecture ] && echo arm64\n"), 0o755)
	script := `set -e
mount --bind "$IMG/boot" /boot
mount --bind "$FW" /boot/firmware 2>/dev/null || { mkdir -p /boot/firmware && mount --bind "$FW" /boot/firmware; }
mount --bind "$IMG/etc/default" /etc/default
mount -t overlay overlay -o "lowerdir=/usr/lib,upperdir=$UPPER,workdir=$WORK" /usr/lib
cp -r "$IMG/usr/lib/linux-image-$KVER/." "/usr/lib/linux-image-$KVER/"
rm -rf /usr/lib/raspi-firmware && mkdir /usr/lib/raspi-firmware && cp -r "$IMG/usr/lib/raspi-firmware/." /usr/lib/raspi-firmware/
cp -r /usr/lib/raspi-firmware/* /boot/firmware/
hook="$IMG/etc/kernel/postinst.d/z50-raspi-firmware"
# Unpacked, not yet configured: dpkg puts the conffile in place on the
# gateway's first boot.
[ -e "$hook" ] || hook="$hook.dpkg-new"
DEB_MAINT_PARAMS=configure PATH="$SHIM:$PATH" sh "$hook" "$KVER" "/boot/vmlinuz-$KVER"
`
	// /boot/firmware is a folder of the image's /boot, bound over this
	// machine's.
	os.MkdirAll(filepath.Join(img, "boot", "firmware"), 0o755)
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c", script)
	cmd.Env = append(os.Environ(), "IMG="+img, "FW="+fw, "UPPER="+upper, "WORK="+work, "KVER="+kver, "SHIM="+shim)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("raspi-firmware's hook: %v\n%s", err, out)
	}
	return readDir(t, fw)
}

// readDir reads every file under dir, by its path below it.
func readDir(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		files[filepath.ToSlash(rel)] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}
