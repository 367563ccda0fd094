// Package vm boots a gateway image under qemu-system-aarch64 — a
// qemu-arm64 image on QEMU's virt machine, a Raspberry Pi 3 image built
// from Debian on its raspi3b machine — for appliance vm, and for the
// boot tests. The image stays as it was
// built; the VM runs on a working copy beside it, enlarged so the first
// boot has a card's worth of room to grow into.
package vm

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/appliance/appliance/images/sparse"
	"github.com/appliance/appliance/outputs"
)

// Options say which build to boot and how.
type Options struct {
	// Out is the build's output folder (out/SITE).
	Out string
	// DiskSize is the working disk's size; 8 GiB when 0.
	DiskSize int64
	// Fresh starts from the built image again, dropping the working disk.
	Fresh bool
	// Host ports forwarded to the gateway's SSH, MQTT and HTTPS, whatever
	// ports the spec gave them; 0 picks a free port. The gateway's other
	// TCP listeners get free ports.
	SSHPort, MQTTPort, HTTPSPort int
	// Memory in MiB (2048 when 0) and CPUs (up to 4 of the host's).
	Memory, CPUs int
	// Console receives the serial console, besides console.log.
	Console io.Writer
	// BootDir holds the kernel, initramfs, command line (and device
	// tree) to boot, under outputs' names; the build's boot folder when
	// empty.
	BootDir string
}

// VM is a running gateway.
type VM struct {
	Info *outputs.Info
	// SSHPort, MQTTPort and HTTPSPort are the host ports of the gateway's
	// SSH, MQTT and HTTPS; Forwards every forwarded listener.
	SSHPort, MQTTPort, HTTPSPort int
	Forwards                     []Forward
	Accel                        string
	ConsoleLog                   string
	cmd                          *exec.Cmd
	qmp                          string
	// done is closed when QEMU has ended; err is then its exit.
	done chan struct{}
	err  error
}

// Forward is a gateway listener reachable on a loopback port of the host.
type Forward struct {
	outputs.Listener
	HostPort int
}

// Start boots the build in out.
func Start(ctx context.Context, opt Options) (*VM, error) {
	info, err := outputs.ReadInfo(opt.Out)
	if err != nil {
		return nil, fmt.Errorf("%s holds no build (%v); run appliance build first", opt.Out, err)
	}
	bootDir := opt.BootDir
	if bootDir == "" {
		bootDir = filepath.Join(opt.Out, outputs.BootDir)
	}
	machine := "virt"
	switch info.Board {
	case "qemu-arm64":
	case "rpi3":
		// QEMU's raspi3b has the Pi 3's SD host and USB but no Ethernet
		// of its own; it boots the kernel and device tree it is given,
		// as the Pi's firmware would from the boot partition.
		if _, err := os.Stat(filepath.Join(bootDir, outputs.BootDTB)); err != nil {
			return nil, fmt.Errorf("%s is a Raspberry Pi 3 image with Raspberry Pi's kernel, which QEMU's raspi3b cannot boot; build it from Debian's sources alone to try it here", opt.Out)
		}
		machine = "raspi3b"
	default:
		return nil, fmt.Errorf("%s is a %s image; appliance vm boots qemu-arm64 images and Raspberry Pi 3 images built from Debian", opt.Out, info.Board)
	}
	if _, err := exec.LookPath("qemu-system-aarch64"); err != nil {
		return nil, errors.New("qemu-system-aarch64 is not installed; install Debian's qemu-system-arm")
	}
	work := filepath.Join(opt.Out, "vm")
	if err := os.MkdirAll(work, 0o755); err != nil {
		return nil, err
	}
	disk := filepath.Join(work, "disk.img")
	img := filepath.Join(opt.Out, outputs.ImageName)
	size := opt.DiskSize
	if size == 0 {
		size = 8 << 30
	}
	if machine == "raspi3b" && size&(size-1) != 0 {
		// QEMU's SD card model takes only sizes that are powers of two.
		return nil, fmt.Errorf("a Raspberry Pi's SD card is a power of two in size; %d bytes is not", size)
	}
	// A new build means a new gateway: start from its image.
	if fresh, err := needsCopy(disk, img); err != nil {
		return nil, err
	} else if fresh || opt.Fresh {
		if err := sparse.Copy(disk+".tmp", img, size); err != nil {
			return nil, fmt.Errorf("copying the image: %w", err)
		}
		if err := os.Rename(disk+".tmp", disk); err != nil {
			return nil, err
		}
	}
	v := &VM{Info: info, done: make(chan struct{}), ConsoleLog: filepath.Join(work, "console.log"), qmp: filepath.Join(work, "qmp.sock")}
	hostfwd, err := v.forward(info, opt)
	if err != nil {
		return nil, err
	}
	cmdline, err := os.ReadFile(filepath.Join(bootDir, outputs.BootCmdline))
	if err != nil {
		return nil, err
	}
	mem := opt.Memory
	if mem == 0 {
		mem = 2048
	}
	cpus := opt.CPUs
	if cpus == 0 {
		cpus = min(4, runtime.NumCPU())
	}
	v.Accel = "tcg,thread=multi"
	cpu := "cortex-a72"
	if runtime.GOARCH == "arm64" && machine == "virt" {
		if f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0); err == nil {
			f.Close()
			v.Accel, cpu = "kvm", "host"
		}
	}
	os.Remove(v.qmp)
	args := []string{"-M", machine}
	if machine == "virt" {
		args = append(args, "-cpu", cpu, "-smp", strconv.Itoa(cpus), "-m", strconv.Itoa(mem))
	} else {
		// The Pi 3's four Cortex-A53 and 1 GiB are the machine's own.
		args = append(args, "-m", "1024")
	}
	args = append(args, "-accel", v.Accel,
		"-nographic", "-monitor", "none", "-qmp", "unix:"+v.qmp+",server=on,wait=off",
		"-kernel", filepath.Join(bootDir, outputs.BootKernel),
		"-initrd", filepath.Join(bootDir, outputs.BootInitrd),
		"-append", strings.TrimSpace(string(cmdline)),
		"-netdev", "user,id=net0"+hostfwd)
	if machine == "virt" {
		args = append(args,
			"-serial", "stdio",
			"-drive", "file="+disk+",format=raw,if=none,id=disk0,cache=unsafe",
			"-device", "virtio-blk-pci,drive=disk0",
			// A kernel booted directly needs no network boot ROM, and
			// without romfile= QEMU refuses to start where ipxe-qemu (a
			// Recommends of qemu-system-arm) is not installed.
			"-device", "virtio-net-pci,netdev=net0,romfile=",
			"-device", "virtio-rng-pci")
	} else {
		args = append(args,
			// The console is the mini UART on the pin header, QEMU's
			// second serial port; the first is the PL011 the Pi gives
			// to Bluetooth.
			"-serial", "null", "-serial", "stdio",
			"-dtb", filepath.Join(bootDir, outputs.BootDTB),
			"-drive", "file="+disk+",format=raw,if=sd,cache=unsafe",
			"-device", "usb-net,netdev=net0")
	}
	logf, err := os.Create(v.ConsoleLog)
	if err != nil {
		return nil, err
	}
	v.cmd = exec.Command("qemu-system-aarch64", args...)
	var out io.Writer = logf
	if opt.Console != nil {
		out = io.MultiWriter(logf, opt.Console)
	}
	v.cmd.Stdout, v.cmd.Stderr = out, out
	v.cmd.Stdin = nil
	// QEMU gets a process group of its own, so that the terminal's Ctrl-C
	// reaches appliance, which powers the gateway off cleanly, and not
	// QEMU, which would pull the plug; and it dies with appliance.
	v.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := v.cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	go func() {
		v.err = v.cmd.Wait()
		logf.Close()
		close(v.done)
	}()
	return v, nil
}

// forward chooses a host port for every TCP listener the gateway serves
// on its network, as build-info.json records them, and returns QEMU's
// hostfwd options.
func (v *VM) forward(info *outputs.Info, opt Options) (string, error) {
	chosen := map[string]int{"ssh.port": opt.SSHPort, "mqtt.port": opt.MQTTPort, "https.port": opt.HTTPSPort}
	var fwd strings.Builder
	for _, l := range info.Listeners {
		if l.Proto != "tcp" {
			continue
		}
		port := chosen[l.Setting]
		if port == 0 {
			var err error
			if port, err = freePort(); err != nil {
				return "", err
			}
		}
		switch l.Setting {
		case "ssh.port":
			v.SSHPort = port
		case "mqtt.port":
			v.MQTTPort = port
		case "https.port":
			v.HTTPSPort = port
		}
		v.Forwards = append(v.Forwards, Forward{Listener: l, HostPort: port})
		fmt.Fprintf(&fwd, ",hostfwd=tcp:127.0.0.1:%d-:%d", port, l.Port)
	}
	if v.SSHPort == 0 {
		return "", fmt.Errorf("%s records no SSH listener; rebuild it with this appliance", outputs.InfoName)
	}
	return fwd.String(), nil
}

// needsCopy reports whether the working disk is missing or older than
// the image.
func needsCopy(disk, img string) (bool, error) {
	ii, err := os.Stat(img)
	if err != nil {
		return false, err
	}
	di, err := os.Stat(disk)
	if errors.Is(err, os.ErrNotExist) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	return di.ModTime().Before(ii.ModTime()), nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Done is closed when QEMU has ended; Err then says how. Any number of
// callers may wait on it, before or after Stop.
func (v *VM) Done() <-chan struct{} { return v.done }

// Err is QEMU's exit: nil while it runs and after a clean power-off.
func (v *VM) Err() error {
	select {
	case <-v.done:
		return v.err
	default:
		return nil
	}
}

// Stop asks the gateway to power off, as the power button would, and
// kills QEMU if it has not ended within the grace period. It returns at
// once when QEMU has already ended.
func (v *VM) Stop(grace time.Duration) error {
	select {
	case <-v.done:
		return v.err
	default:
	}
	if err := v.qmpCommand("system_powerdown"); err == nil {
		select {
		case <-v.done:
			return v.err
		case <-time.After(grace):
		}
	}
	v.cmd.Process.Kill()
	<-v.done
	return v.err
}

// qmpCommand sends one command over QEMU's machine protocol.
func (v *VM) qmpCommand(cmd string) error {
	c, err := net.DialTimeout("unix", v.qmp, 2*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(c)
	if _, err := r.ReadBytes('\n'); err != nil { // greeting
		return err
	}
	for _, m := range []string{"qmp_capabilities", cmd} {
		b, _ := json.Marshal(map[string]string{"execute": m})
		if _, err := c.Write(append(b, '\n')); err != nil {
			return err
		}
		for {
			line, err := r.ReadBytes('\n')
			if err != nil {
				return err
			}
			if strings.Contains(string(line), `"return"`) {
				break
			}
			if strings.Contains(string(line), `"error"`) {
				return fmt.Errorf("qmp %s: %s", m, line)
			}
		}
	}
	return nil
}
