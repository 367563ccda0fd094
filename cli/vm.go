package cli

import (
	"context"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/appliance/appliance/images/vm"
)

func init() {
	register(&verb{
		name:    "vm",
		summary: "Boot a built qemu-arm64 gateway (or a Raspberry Pi 3 one built from Debian) under QEMU",
		usage:   "vm [--fresh] [--console] [--ssh-port N] [--mqtt-port N] [--https-port N] [--memory MiB] OUT",
		examples: `
appliance vm out/demo                # boots out/demo/gateway.img; Ctrl-C powers it off
appliance vm --console out/demo      # and show the serial console
appliance vm --fresh out/demo        # forget the VM's disk and start from the image again`,
		run: runVM,
	})
}

func runVM(ctx context.Context, e *Env, args []string) error {
	v := verbs["vm"]
	fs := newFlags(v)
	fresh := fs.Bool("fresh", false, "start from the built image again, dropping the VM's disk")
	console := fs.Bool("console", false, "show the serial console (always written to OUT/vm/console.log)")
	ssh := fs.Int("ssh-port", 2222, "host port forwarded to the gateway's SSH")
	mqtt := fs.Int("mqtt-port", 8883, "host port forwarded to the gateway's MQTT")
	https := fs.Int("https-port", 8443, "host port forwarded to the gateway's HTTPS")
	mem := fs.Int("memory", 2048, "memory in MiB (a Raspberry Pi 3 has its 1024)")
	if err := parse(e, v, fs, args); err != nil {
		return err
	}
	out, err := onePath(v.name, fs.Args())
	if err != nil {
		return err
	}
	for _, p := range []int{*ssh, *mqtt, *https} {
		if l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p)); err != nil {
			return fmt.Errorf("host port %d is taken; choose another with --ssh-port, --mqtt-port or --https-port", p)
		} else {
			l.Close()
		}
	}
	opt := vm.Options{Out: out, Fresh: *fresh, SSHPort: *ssh, MQTTPort: *mqtt, HTTPSPort: *https, Memory: *mem}
	if *console {
		opt.Console = e.Stdout
	}
	m, err := vm.Start(ctx, opt)
	if err != nil {
		return err
	}
	slow := ""
	if strings.HasPrefix(m.Accel, "tcg") {
		slow = " (emulated: a first boot configures the packages and takes several minutes)"
	}
	fmt.Fprintf(e.Stderr, "appliance vm: booting %s, gateway %s%s\n", out, m.Info.Hostname, slow)
	fmt.Fprintf(e.Stderr, "  ssh      ssh -p %d %s@127.0.0.1   (appliance's deploy key is in the site's state, ssh/deploy_ed25519)\n", m.SSHPort, m.Info.Admin)
	for _, f := range m.Forwards {
		fmt.Fprintf(e.Stderr, "  port %-5d 127.0.0.1:%d (%s)\n", f.Port, f.HostPort, f.Purpose)
	}
	fmt.Fprintf(e.Stderr, "  console  %s\n", m.ConsoleLog)
	fmt.Fprintf(e.Stderr, "Ctrl-C powers the gateway off.\n")

	ready := time.NewTicker(2 * time.Second)
	defer ready.Stop()
	announced := false
	for {
		select {
		case <-m.Done():
			if err := m.Err(); err != nil {
				return fmt.Errorf("QEMU ended: %v; see %s", err, m.ConsoleLog)
			}
			fmt.Fprintln(e.Stderr, "appliance vm: the gateway powered off")
			return nil
		case <-ctx.Done():
			fmt.Fprintln(e.Stderr, "appliance vm: powering the gateway off…")
			if err := m.Stop(90 * time.Second); err != nil && !strings.Contains(err.Error(), "signal: killed") {
				return err
			}
			fmt.Fprintln(e.Stderr, "appliance vm: stopped")
			return nil
		case <-ready.C:
			if !announced && sshAnswers(m.SSHPort) {
				announced = true
				fmt.Fprintf(e.Stderr, "appliance vm: %s is up and answers on SSH\n", m.Info.Hostname)
			}
		}
	}
}

// sshAnswers reports whether an SSH server greets on the port: QEMU's
// forwarding accepts connections before the gateway's sshd runs.
func sshAnswers(port int) bool {
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	b := make([]byte, 4)
	n, _ := c.Read(b)
	return n == 4 && string(b) == "SSH-"
}
