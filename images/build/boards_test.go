package build_test

import (
	"archive/tar"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/appliance/appliance/images/boards"
	"github.com/appliance/appliance/images/build"
	"github.com/appliance/appliance/images/fixture"
	"github.com/appliance/appliance/internal/testenv"
	"github.com/appliance/appliance/spec"
)

// piKernel is the Raspberry Pi kernels' version in the fixture archive.
const piKernel = "6.12.47+rpt-rpi-"

func dirs(paths ...string) []fixture.File {
	var out []fixture.File
	for _, p := range paths {
		out = append(out, fixture.File{Path: p, Type: tar.TypeDir})
	}
	return out
}

// piKernelDeb is a kernel package laid out as Raspberry Pi OS's are:
// the kernel in /boot, the device trees of every SoC and the overlays
// under /usr/lib/linux-image-VERSION.
func piKernelDeb(flavour string) *fixture.Deb {
	v := piKernel + flavour
	lib := "./usr/lib/linux-image-" + v + "/"
	files := dirs("./boot/", "./usr/", "./usr/lib/", lib, lib+"broadcom/", lib+"overlays/")
	files = append(files,
		fixture.File{Path: "./boot/vmlinuz-" + v, Body: "kernel " + v},
		fixture.File{Path: lib + "broadcom/bcm2712-rpi-5-b.dtb", Body: "dtb 2712 " + flavour},
		fixture.File{Path: lib + "broadcom/bcm2712d0-rpi-5-b.dtb", Body: "dtb 2712d0 " + flavour},
		fixture.File{Path: lib + "broadcom/bcm2711-rpi-4-b.dtb", Body: "dtb 2711 " + flavour},
		fixture.File{Path: lib + "broadcom/bcm2711-rpi-400.dtb", Body: "dtb 2711-400 " + flavour},
		fixture.File{Path: lib + "broadcom/bcm2710-rpi-3-b.dtb", Body: "dtb 2710 " + flavour},
		fixture.File{Path: lib + "broadcom/bcm2710-rpi-zero-2-w.dtb", Body: "dtb 2710-zero-2 " + flavour},
		fixture.File{Path: lib + "overlays/README", Body: "overlays"},
		fixture.File{Path: lib + "overlays/disable-bt.dtbo", Body: "overlay disable-bt"},
		// Debian's kernels link the device trees from /usr/lib/linux.
		fixture.File{Path: lib + "overlays/uart0.dtbo", Type: tar.TypeSymlink, Link: "disable-bt.dtbo"},
	)
	return &fixture.Deb{Name: "linux-image-rpi-" + flavour, Version: "1:6.12.47-1+rpt1", Arch: "arm64", Files: files}
}

// piArchive is a stand-in for archive.raspberrypi.com, InfluxData's and
// Grafana's repositories (none of which is reachable here): the packages
// a Raspberry Pi site needs from them, with the files the build reads.
func piArchive(t *testing.T) (url, keyring string) {
	t.Helper()
	key, err := fixture.NewKey("raspberrypi")
	if err != nil {
		t.Fatal(err)
	}
	fw := "./usr/lib/raspi-firmware/"
	repo := &fixture.Repo{Key: key, Debs: []*fixture.Deb{
		piKernelDeb("2712"), piKernelDeb("v8"),
		{Name: "raspi-firmware", Version: "1:1.20250430-4", Arch: "all", Files: append(dirs("./usr/", "./usr/lib/", fw),
			fixture.File{Path: fw + "start4.elf", Body: "gpu firmware"}, fixture.File{Path: fw + "fixup4.dat", Body: "gpu fixup"},
			fixture.File{Path: fw + "bootcode.bin", Body: "pi 3 boot code"},
			fixture.File{Path: fw + "start.elf", Body: "pi 3 gpu firmware"}, fixture.File{Path: fw + "fixup.dat", Body: "pi 3 gpu fixup"})},
		{Name: "raspberrypi-sys-mods", Version: "20250605", Arch: "arm64"},
		{Name: "rpi-eeprom", Version: "28.2-1", Arch: "all"},
		{Name: "influxdb2", Version: "2.7.12-1", Arch: "arm64", Files: append(dirs("./usr/", "./usr/bin/"), fixture.File{Path: "./usr/bin/influxd", Body: "influxd", Mode: 0o755})},
		{Name: "grafana", Version: "12.1.1", Arch: "arm64", Files: append(dirs("./usr/", "./usr/sbin/"), fixture.File{Path: "./usr/sbin/grafana-server", Body: "grafana", Mode: 0o755})},
	}}
	dir := t.TempDir()
	if _, err := repo.Write(dir); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.FileServer(http.Dir(dir)))
	t.Cleanup(srv.Close)
	keyring = filepath.Join(t.TempDir(), "archive.asc")
	if err := os.WriteFile(keyring, key.Public(true), 0o644); err != nil {
		t.Fatal(err)
	}
	return srv.URL, keyring
}

// piCases are the Raspberry Pi boards TestPiImages builds.
var piCases = []struct {
	board, flavour, kernel, soc, other string
	firmware                           []string
}{
	{"rpi5", "2712", "kernel_2712.img", "bcm2712", "bcm2711", nil},
	{"rpi4", "v8", "kernel8.img", "bcm2711", "bcm2712", []string{"start4.elf", "fixup4.dat"}},
	{"rpi3", "v8", "kernel8.img", "bcm2710", "bcm2711", []string{"bootcode.bin", "start.elf", "fixup.dat"}},
}

// TestEveryBoardIsBuilt: every board the spec accepts has a boot layout
// and is built by an image test here (TestDemoImage builds qemu-arm64,
// TestPiImages the Raspberry Pis, TestPiFromDebian those that also boot
// from Debian alone).
func TestEveryBoardIsBuilt(t *testing.T) {
	built := map[string]bool{"qemu-arm64": true}
	for _, c := range piCases {
		built[c.board] = true
	}
	for id, b := range spec.Boards {
		if !built[id] {
			t.Errorf("board %s is accepted by the spec but no image test builds it", id)
		}
		if !slices.Contains(boards.Layouts, b.Boot) {
			t.Errorf("board %s: boot layout %q is not one images/boards fills", id, b.Boot)
		}
		if b.ID != id || b.Arch == "" || len(b.Packages) == 0 || b.Console == "" || b.BootSize == 0 || b.KernelFlavour == "" {
			t.Errorf("board %s is incomplete in the catalogue: %+v", id, b)
		}
	}
	// A board that also boots from Debian alone is built that way by
	// TestPiFromDebian.
	fromDebian := map[string]bool{}
	for _, c := range debianPiCases {
		fromDebian[c.board] = true
	}
	for id, b := range spec.Boards {
		if d := b.Debian; d != nil {
			if !fromDebian[id] {
				t.Errorf("board %s boots from Debian alone but no image test builds it so", id)
			}
			if !slices.Contains(boards.Layouts, d.Boot) || d.DTB == "" || len(d.InitramfsModules) == 0 || d.RaspberryPi {
				t.Errorf("board %s from Debian is incomplete in the catalogue: %+v", id, d)
			}
		} else if b.RaspberryPi && b.NoDebian == "" {
			t.Errorf("board %s needs the Raspberry Pi archive and does not say why", id)
		}
	}
	for id := range built {
		if spec.Boards[id] == nil {
			t.Errorf("the image tests build %s, which the spec does not accept", id)
		}
	}
}

// TestPiImages builds Raspberry Pi 5, 4 and 3 gateways from Debian's archive
// and the fixture archive and reads back the boot partition: the kernel
// under the name the firmware loads, the SoC's device trees and no other,
// the overlays, config.txt, cmdline.txt naming the root partition, and
// on the Pi 4 the GPU firmware; fstab mounts it at /boot/firmware.
func TestPiImages(t *testing.T) {
	url, keyring := piArchive(t)
	debianKeys, err := filepath.Abs("../../keys/debian-archive.pgp")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range piCases {
		t.Run(c.board, func(t *testing.T) {
			dir := t.TempDir()
			specPath := filepath.Join(dir, "pi.hcl")
			src := fmt.Sprintf(`site "pi" {}
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
    url     = "http://deb.debian.org/debian"
    keyring = %q
  }
  source "raspberrypi" {
    url     = %q
    keyring = %q
  }
}
influxdb { version = 2 }
grafana {}
`, c.board, debianKeys, url, keyring)
			if err := os.WriteFile(specPath, []byte(src), 0o644); err != nil {
				t.Fatal(err)
			}
			d := siteBuild(t, specPath)
			out := filepath.Join(dir, "out")
			r := d.build(t, out)
			checkSecurity(t, out, "grafana", "health", "mosquitto", "nginx")
			img := filepath.Join(out, build.ImageName)
			pt := readTable(t, img)
			boot, root := pt.loop(t, img, 0), pt.loop(t, img, 1)
			testenv.MustRun(t, "fsck.vfat", "-n", boot)
			testenv.MustRun(t, "e2fsck", "-fn", root)

			var names []string
			listing, err := exec.Command("mdir", "-b", "-/", "-i", boot, "::/").Output()
			if err != nil {
				t.Fatalf("mdir: %v", err)
			}
			for _, l := range strings.Split(string(listing), "\n") {
				if l = strings.TrimSpace(l); l != "" {
					names = append(names, strings.TrimPrefix(l, "::/"))
				}
			}
			want := []string{"cmdline.txt", "config.txt", c.kernel, c.soc + "-rpi-", "overlays/README", "overlays/disable-bt.dtbo", "overlays/uart0.dtbo"}
			want = append(want, c.firmware...)
			for _, w := range want {
				if !slices.ContainsFunc(names, func(n string) bool { return strings.HasPrefix(n, w) }) {
					t.Errorf("the boot partition has no %s: %v", w, names)
				}
			}
			for _, n := range names {
				if strings.HasPrefix(n, c.other) || (strings.HasPrefix(n, "bootcode.bin") && !slices.Contains(c.firmware, "bootcode.bin")) || strings.HasPrefix(n, "broadcom") {
					t.Errorf("the boot partition holds %s, which this board does not boot with", n)
				}
			}
			read := func(name string) string {
				p := filepath.Join(t.TempDir(), "f")
				testenv.MustRun(t, "mcopy", "-n", "-i", boot, "::/"+name, p)
				b, _ := os.ReadFile(p)
				return string(b)
			}
			if k := read(c.kernel); k != "kernel "+piKernel+c.flavour {
				t.Errorf("%s holds %q", c.kernel, k)
			}
			if dt := read(c.soc + "-rpi-" + map[string]string{"bcm2712": "5-b", "bcm2711": "4-b", "bcm2710": "3-b"}[c.soc] + ".dtb"); !strings.HasPrefix(dt, "dtb "+strings.TrimPrefix(c.soc, "bcm")) {
				t.Errorf("the device tree holds %q", dt)
			}
			if o := read("overlays/uart0.dtbo"); o != "overlay disable-bt" {
				t.Errorf("a linked overlay holds %q, not its target's content", o)
			}
			if cl := read("cmdline.txt"); !strings.Contains(cl, "root=PARTUUID="+r.Info.DiskID+"-02") || strings.Contains(cl, "initrd") {
				t.Errorf("cmdline.txt: %q", cl)
			}
			if cfg := read("config.txt"); !strings.Contains(cfg, "kernel="+c.kernel+"\n") || !strings.Contains(cfg, "arm_64bit=1") {
				t.Errorf("config.txt:\n%s", cfg)
			}
			for _, fw := range c.firmware {
				if read(fw) == "" {
					t.Errorf("%s is empty", fw)
				}
			}

			p := filepath.Join(t.TempDir(), "fstab")
			testenv.MustRun(t, "debugfs", "-R", "dump /etc/fstab "+p, root)
			fstab, _ := os.ReadFile(p)
			if !strings.Contains(string(fstab), "PARTUUID="+r.Info.DiskID+"-01\t/boot/firmware\tvfat") {
				t.Errorf("fstab does not mount the boot partition at /boot/firmware:\n%s", fstab)
			}
		})
	}
}
