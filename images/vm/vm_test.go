package vm_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/appliance/appliance/images/vm"
	"github.com/appliance/appliance/internal/testenv"
)

// fakeBuild writes a build output without its kernel: QEMU sets the
// machine and its devices up, then fails to load the kernel and ends.
func fakeBuild(t *testing.T) string { return fakeBoardBuild(t, "qemu-arm64") }

func fakeBoardBuild(t *testing.T, board string) string {
	t.Helper()
	out := t.TempDir()
	info, _ := json.Marshal(map[string]any{"site": "t", "board": board, "hostname": "t-gw", "admin": "ops",
		"listeners": []map[string]any{{"port": 22, "proto": "tcp", "setting": "ssh.port", "purpose": "SSH"}}})
	files := map[string]string{
		"build-info.json":  string(info),
		"boot/initrd.img":  "not an initramfs",
		"boot/cmdline.txt": "console=ttyAMA0\n",
	}
	for name, body := range files {
		p := filepath.Join(out, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(out, "gateway.img"), make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestQEMUEndsEarly: a QEMU that ends before the gateway is up is seen at
// once by every waiter, Stop returns instead of waiting for an exit that
// was already taken, and the network device needs no boot ROM (Debian's
// ipxe-qemu is only a Recommends of qemu-system-arm).
func TestQEMUEndsEarly(t *testing.T) {
	testenv.Require(t, "qemu-system-aarch64")
	m, err := vm.Start(context.Background(), vm.Options{Out: fakeBuild(t), DiskSize: 64 << 20, Memory: 256, CPUs: 1})
	if err != nil {
		t.Fatal(err)
	}
	waitEnd(t, m)
	// A second waiter, as the boot test's connect and its deferred Stop.
	<-m.Done()
	stopped := make(chan error, 1)
	go func() { stopped <- m.Stop(time.Minute) }()
	select {
	case err := <-stopped:
		if err == nil {
			t.Error("Stop of a QEMU that failed returned no error")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Stop hangs after QEMU has ended")
	}
	if m.Err() == nil {
		t.Error("Err is nil after QEMU failed")
	}
	console, _ := os.ReadFile(m.ConsoleLog)
	if strings.Contains(string(console), "romfile") {
		t.Errorf("QEMU wants a network boot ROM:\n%s", console)
	}
	if !strings.Contains(string(console), "could not load kernel") {
		t.Errorf("QEMU did not get as far as the kernel:\n%s", console)
	}
}

// TestRaspi3Machine: a Raspberry Pi 3 image built from Debian starts
// QEMU's raspi3b with its device tree, SD card and USB network (QEMU
// takes them all and gets as far as the kernel); one with Raspberry Pi's
// kernel (no device tree beside it), another board, or an SD card whose
// size QEMU's card model refuses, is refused with the reason.
func TestRaspi3Machine(t *testing.T) {
	testenv.Require(t, "qemu-system-aarch64")
	out := fakeBoardBuild(t, "rpi3")
	if _, err := vm.Start(context.Background(), vm.Options{Out: out, DiskSize: 64 << 20}); err == nil || !strings.Contains(err.Error(), "Debian") {
		t.Errorf("an rpi3 image without its device tree: %v", err)
	}
	os.WriteFile(filepath.Join(out, "boot", "board.dtb"), []byte("not a device tree"), 0o644)
	if _, err := vm.Start(context.Background(), vm.Options{Out: out, DiskSize: 96 << 20}); err == nil || !strings.Contains(err.Error(), "power of two") {
		t.Errorf("an SD card of 96 MiB: %v", err)
	}
	if _, err := vm.Start(context.Background(), vm.Options{Out: fakeBoardBuild(t, "rpi5"), DiskSize: 64 << 20}); err == nil || !strings.Contains(err.Error(), "rpi5") {
		t.Errorf("an rpi5 image: %v", err)
	}
	m, err := vm.Start(context.Background(), vm.Options{Out: out, DiskSize: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	waitEnd(t, m)
	console, _ := os.ReadFile(m.ConsoleLog)
	if !strings.Contains(string(console), "could not load kernel") {
		t.Errorf("QEMU's raspi3b did not get as far as the kernel:\n%s", console)
	}
}

// waitEnd waits for a QEMU that cannot load its kernel to end.
func waitEnd(t *testing.T, m *vm.VM) {
	t.Helper()
	select {
	case <-m.Done():
	case <-time.After(2 * time.Minute):
		m.Stop(time.Second)
		t.Fatal("QEMU did not end with a kernel it cannot load")
	}
}
