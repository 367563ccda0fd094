// Command bench-firstboot boots a qemu-arm64 build (the demo's, by
// default) from its pristine image under QEMU's emulation and prints
// where its first boot's time went: power-on to the first-boot program,
// growing the root, the preinst scripts, dpkg configuring the packages,
// and systemd bringing the services up, then the slowest packages from
// the gateway's own dpkg log. make bench-firstboot builds the demo and
// runs it, so a regression shows as a number, not as a slower CI.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/appliance/appliance/images/vm"
	"github.com/appliance/appliance/internal/dpkglog"
	"golang.org/x/crypto/ssh"
)

func main() {
	out := flag.String("out", "out/demo", "the build's output folder")
	stateDir := flag.String("state", "examples/.appliance/demo", "the site's state (for the deploy key and the host key)")
	runs := flag.Int("runs", 1, "first boots to time, each from the pristine image")
	top := flag.Int("top", 20, "packages to list")
	cpus := flag.Int("cpus", 2, "the VM's CPUs")
	flag.Parse()
	key, err := os.ReadFile(filepath.Join(*stateDir, "ssh", "deploy_ed25519"))
	check(err)
	signer, err := ssh.ParsePrivateKey(key)
	check(err)
	hostPub, err := os.ReadFile(filepath.Join(*stateDir, "ssh", "ssh_host_ed25519_key.pub"))
	check(err)
	host, _, _, _, err := ssh.ParseAuthorizedKey(hostPub)
	check(err)
	for i := 1; i <= *runs; i++ {
		fmt.Printf("first boot %d of %d (%s, %d CPUs, TCG)\n", i, *runs, *out, *cpus)
		check(once(*out, signer, host, *top, *cpus))
	}
}

// The first-boot program's own lines: "appliance first boot: WHAT done in D".
// "finished in D" ends it.
var doneLine = regexp.MustCompile(`^appliance first boot: (?:(.*) done|finished) in (\S+)$`)

func once(out string, signer ssh.Signer, host ssh.PublicKey, top, cpus int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	powerOn := time.Now()
	m, err := vm.Start(ctx, vm.Options{Out: out, Fresh: true, DiskSize: 4 << 30, CPUs: cpus})
	if err != nil {
		return err
	}
	defer m.Stop(time.Minute)
	cfg := &ssh.ClientConfig{User: m.Info.Admin, Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: ssh.FixedHostKey(host), HostKeyAlgorithms: []string{ssh.KeyAlgoED25519}, Timeout: 20 * time.Second}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(m.SSHPort))
	var c *ssh.Client
	for c == nil {
		select {
		case <-m.Done():
			return fmt.Errorf("QEMU ended: %v (console in %s)", m.Err(), m.ConsoleLog)
		case <-ctx.Done():
			return fmt.Errorf("no SSH login in 30 minutes (console in %s)", m.ConsoleLog)
		case <-time.After(2 * time.Second):
		}
		c, _ = ssh.Dial("tcp", addr, cfg)
	}
	defer c.Close()
	run := func(cmd string) (string, error) {
		s, err := c.NewSession()
		if err != nil {
			return "", err
		}
		defer s.Close()
		b, err := s.CombinedOutput(cmd)
		return strings.TrimSpace(string(b)), err
	}
	if st, _ := run("systemctl is-system-running --wait"); st != "running" {
		return fmt.Errorf("the gateway is %q after its first boot", st)
	}
	total := time.Since(powerOn)
	log, err := run("sudo cat /var/log/appliance-firstboot.log")
	if err != nil {
		return fmt.Errorf("reading the first boot's log: %v", err)
	}
	// The first boot's start and end on the gateway's clock, which QEMU
	// set from the host's at power-on.
	started, _, _ := strings.Cut(log, "\n")
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	var inScripts time.Duration
	if _, at, ok := strings.Cut(started, "appliance first boot: "); ok {
		if t, err := time.Parse(time.RFC3339, at); err == nil {
			fmt.Fprintf(tw, "  %s\tpower-on to the first-boot program (kernel, initramfs)\n", t.Sub(powerOn).Round(time.Second))
		}
	}
	for _, line := range strings.Split(log, "\n") {
		if f := doneLine.FindStringSubmatch(line); f != nil {
			d, _ := time.ParseDuration(f[2])
			if f[1] == "" {
				inScripts = d
				continue
			}
			fmt.Fprintf(tw, "  %s\t%s\n", d, f[1])
		}
	}
	if inScripts > 0 {
		fmt.Fprintf(tw, "  %s\tthe first-boot program in all\n", inScripts)
	}
	fmt.Fprintf(tw, "  %s\tpower-on to systemctl is-system-running = running\n", total.Round(time.Second))
	tw.Flush()
	dlog, err := run("sudo cat /var/log/dpkg.log")
	if err != nil {
		return fmt.Errorf("reading dpkg's log: %v", err)
	}
	prof, err := dpkglog.Read(strings.NewReader(dlog))
	if err != nil {
		return err
	}
	fmt.Printf("dpkg --configure -a, slowest first:\n")
	prof.Table(os.Stdout, top)
	return nil
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench-firstboot:", err)
		os.Exit(1)
	}
}
