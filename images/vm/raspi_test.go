//go:build boottest

package vm_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/appliance/appliance/images/build"
	"github.com/appliance/appliance/images/build/buildtest"
	"github.com/appliance/appliance/images/vm"
	"github.com/appliance/appliance/internal/testenv"
	"github.com/appliance/appliance/outputs"
	"golang.org/x/crypto/ssh"
)

// raspiDeadline bounds a boot of the Pi 3 under emulation to SSH: its
// first boot configures every package, as the demo's does, with Debian's
// generic arm64 kernel (four times the cloud kernel's modules for
// depmod). A time-box for a hung boot, not a budget.
const raspiDeadline = 20 * time.Minute

// raspiSite is a small site on a Raspberry Pi 3 from Debian alone.
const raspiSite = `site "pi3" {}
gateway "gw" {
  board    = "rpi3"
  hostname = "pi3-gw"
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
}
`

// TestBootRaspi3 builds an rpi3 image from Debian's archive and boots
// it on QEMU's Raspberry Pi 3 (raspi3b) with the board's own device tree
// and the image as its SD card: the kernel, appliance's initramfs, the
// root found on the card by its UUID, the first boot finished and every
// unit running. The first boot's dpkg runs raspi-firmware's hooks, which
// rewrite the boot partition: it must hold what the build laid out, but
// for the initramfs, which tiny-initramfs made anew. Then the Pi boots
// again from what the hooks left on the card — their kernel, initramfs
// and command line — as a Pi's firmware would, and runs.
func TestBootRaspi3(t *testing.T) {
	testenv.Require(t, "qemu-system-aarch64", "mcopy", "sfdisk")
	ctx, cancel := context.WithTimeout(context.Background(), 2*raspiDeadline+10*time.Minute)
	defer cancel()
	dir := t.TempDir()
	specPath := filepath.Join(dir, "pi3.hcl")
	if err := os.WriteFile(specPath, []byte(raspiSite), 0o644); err != nil {
		t.Fatal(err)
	}
	p := newPhases(t)
	opt, st := buildtest.Options(t, specPath)
	out := filepath.Join(dir, "out", "pi3")
	os.MkdirAll(filepath.Dir(out), 0o755)
	var log bytes.Buffer
	opt.OutDir, opt.Log, opt.Version = out, &log, "boot-test"
	r, err := build.Build(ctx, opt)
	if err != nil {
		t.Fatalf("build: %v\n%s", err, log.String())
	}
	t.Logf("build:\n%s", log.String())
	p.done("build")
	img := filepath.Join(out, outputs.ImageName)
	built := fatFiles(t, img)

	cfg := adminSSH(t, st, opt.Gateway.Admin)
	run := func(c *ssh.Client, cmd string) string {
		t.Helper()
		s, err := c.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		b, _ := s.CombinedOutput(cmd)
		return strings.TrimSpace(string(b))
	}

	// boot starts the Pi from bootDir (the build's when empty), logs in
	// and waits for every unit.
	boot := func(bootDir string) (*vm.VM, *ssh.Client) {
		t.Helper()
		m, err := vm.Start(ctx, vm.Options{Out: out, DiskSize: 4 << 30, BootDir: bootDir})
		if err != nil {
			t.Fatal(err)
		}
		console := func() string {
			b, _ := os.ReadFile(m.ConsoleLog)
			if len(b) > 8000 {
				b = b[len(b)-8000:]
			}
			return string(b)
		}
		started := time.Now()
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(m.SSHPort))
		var c *ssh.Client
		for c == nil {
			select {
			case <-m.Done():
				t.Fatalf("QEMU ended: %v\nconsole:\n%s", m.Err(), console())
			default:
			}
			if c, err = ssh.Dial("tcp", addr, cfg); err != nil {
				if time.Since(started) > raspiDeadline {
					m.Stop(time.Second)
					t.Fatalf("no SSH login within %v (%v)\nconsole:\n%s", raspiDeadline, err, console())
				}
				time.Sleep(5 * time.Second)
			}
		}
		t.Logf("SSH login %v after power-on", time.Since(started).Round(time.Second))
		if state := run(c, "systemctl is-system-running --wait"); state != "running" {
			failed := run(c, "systemctl --failed --no-legend --plain")
			journal := run(c, "sudo journalctl -b -p warning --no-pager | tail -40")
			m.Stop(time.Second)
			t.Fatalf("systemctl is-system-running: %q; failed units:\n%s\njournal:\n%s\nconsole:\n%s", state, failed, journal, console())
		}
		t.Logf("system running %v after power-on", time.Since(started).Round(time.Second))
		return m, c
	}

	m, c := boot("")
	p.done("first boot")
	if model := run(c, "tr -d '\\0' </proc/device-tree/model"); !strings.HasPrefix(model, "Raspberry Pi 3 Model B") {
		t.Errorf("the device tree's model is %q", model)
	}
	if k := run(c, "uname -r"); k != r.Info.Kernel {
		t.Errorf("running kernel %s, built with %s", k, r.Info.Kernel)
	}
	if root := run(c, "findmnt -no SOURCE /"); !strings.HasPrefix(root, "/dev/mmcblk0p2") {
		t.Errorf("the root is %s, not the SD card's second partition", root)
	}
	t.Logf("first boot:\n%s", run(c, "sudo grep -E 'first boot: .* (done|finished) in' /var/log/appliance-firstboot.log"))

	// Power off as a user would; QEMU's Pi has no power controller to end
	// on, so it is stopped once the card is written.
	run(c, "sync; sudo systemctl poweroff --no-block")
	c.Close()
	m.Stop(45 * time.Second)
	p.done("first boot checked")

	// The second boot, as the Pi's firmware would start it from the card.
	again := filepath.Join(dir, "card-boot")
	os.MkdirAll(again, 0o755)
	// What the hooks left on the card: what the build laid out, but for
	// the initramfs, which tiny-initramfs made on the first boot.
	card := fatFiles(t, filepath.Join(out, "vm", "disk.img"))
	initrd := "initrd.img-" + r.Info.Kernel
	for name, data := range built {
		got, ok := card[name]
		switch {
		case !ok:
			t.Errorf("after the first boot the boot partition has no %s", name)
		case name == initrd:
			if bytes.Equal(got, data) {
				t.Errorf("%s is still appliance's: tiny-initramfs made none on the first boot", name)
			}
			t.Logf("%s: appliance's %d bytes, tiny-initramfs's %d", name, len(data), len(got))
		case !bytes.Equal(got, data):
			t.Errorf("the first boot's hooks wrote a %s other than the build's:\n%.400s", name, got)
		}
	}
	for name := range card {
		if _, ok := built[name]; !ok {
			t.Errorf("the first boot's hooks added %s to the boot partition", name)
		}
	}
	for name, from := range map[string]string{outputs.BootKernel: "vmlinuz-" + r.Info.Kernel, outputs.BootInitrd: initrd, outputs.BootCmdline: "cmdline.txt", outputs.BootDTB: "bcm2837-rpi-3-b.dtb"} {
		if err := os.WriteFile(filepath.Join(again, name), card[from], 0o644); err != nil {
			t.Fatal(err)
		}
	}
	m, c = boot(again)
	defer m.Stop(30 * time.Second)
	defer c.Close()
	if cl := run(c, "cat /proc/cmdline"); cl != strings.TrimSpace(string(card["cmdline.txt"])) {
		t.Errorf("booted with %q, not the card's cmdline.txt %q", cl, card["cmdline.txt"])
	}
	if n := run(c, "sudo grep -c '^appliance first boot: [0-9]' /var/log/appliance-firstboot.log"); n != "1" {
		t.Errorf("the first boot ran %s times", n)
	}
	p.done("second boot from the card")
	p.print()
}

// fatFiles reads every file of a disk image's boot partition (its first)
// with mtools.
func fatFiles(t *testing.T, img string) map[string][]byte {
	t.Helper()
	var pt struct {
		PartitionTable struct {
			Partitions []struct{ Start int64 }
		}
	}
	if err := json.Unmarshal([]byte(testenv.MustRun(t, "sfdisk", "--json", img)), &pt); err != nil {
		t.Fatal(err)
	}
	dst := t.TempDir()
	src := img + "@@" + strconv.FormatInt(pt.PartitionTable.Partitions[0].Start*512, 10)
	if b, err := exec.Command("mcopy", "-s", "-n", "-i", src, "::/*", dst+"/").CombinedOutput(); err != nil {
		t.Fatalf("mcopy: %v\n%s", err, b)
	}
	files := map[string][]byte{}
	filepath.Walk(dst, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			rel, _ := filepath.Rel(dst, p)
			files[filepath.ToSlash(rel)], _ = os.ReadFile(p)
		}
		return nil
	})
	if len(files) == 0 {
		t.Fatalf("no files in %s's boot partition", img)
	}
	return files
}
