package bootinit

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Paths on the gateway.
const (
	// InitPath is where the program lives in the root file system; the
	// kernel command line names it with init=.
	InitPath = "/usr/lib/appliance/init"
	// InitramfsMarker marks the initramfs, where init runs first.
	InitramfsMarker = "/appliance-initramfs"
	// ModulesDir holds the modules in the initramfs, named so that
	// sorting them gives the order to load them in.
	ModulesDir = "/modules"
	// DoneMarker is written when the first boot has finished.
	DoneMarker = "/var/lib/appliance/firstboot.done"
	// FailedMarker holds why the last first boot failed.
	FailedMarker = "/var/lib/appliance/firstboot.failed"
	// Log is the first boot's log.
	Log     = "/var/log/appliance-firstboot.log"
	systemd = "/lib/systemd/systemd"
)

// Main runs as PID 1: in the initramfs, or in the root file system.
func Main() {
	if _, err := os.Stat(InitramfsMarker); err == nil {
		initramfs()
	}
	if len(os.Args) > 1 && os.Args[1] == "--check" {
		os.Exit(check())
	}
	root()
}

// fatal shows why boot cannot go on, on the console, and waits: there is
// nothing to hand over to.
func fatal(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	for {
		fmt.Fprintf(os.Stderr, "\nappliance init: %s\nThe gateway cannot boot. Check the SD card or disk image.\n", msg)
		time.Sleep(time.Minute)
	}
}

func mountAPI(root string) {
	for _, m := range []struct{ src, dir, typ string }{
		{"proc", "/proc", "proc"}, {"sysfs", "/sys", "sysfs"}, {"devtmpfs", "/dev", "devtmpfs"},
	} {
		dir := filepath.Join(root, m.dir)
		os.MkdirAll(dir, 0o755)
		if err := unix.Mount(m.src, dir, m.typ, unix.MS_NOSUID|unix.MS_NOEXEC, ""); err != nil && !errors.Is(err, unix.EBUSY) {
			fmt.Fprintf(os.Stderr, "appliance init: mounting %s: %v\n", dir, err)
		}
	}
}

// initramfs loads the modules, mounts the root and hands over to it.
func initramfs() {
	mountAPI("/")
	entries, _ := os.ReadDir(ModulesDir)
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	for _, n := range names {
		f, err := os.Open(filepath.Join(ModulesDir, n))
		if err != nil {
			fatal("module %s: %v", n, err)
		}
		if err := unix.FinitModule(int(f.Fd()), "", 0); err != nil && !errors.Is(err, unix.EEXIST) {
			fatal("loading module %s: %v", n, err)
		}
		f.Close()
	}
	b, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		fatal("reading the kernel command line: %v", err)
	}
	cl, err := ParseCmdline(string(b))
	if err != nil {
		fatal("%v", err)
	}
	var dev string
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if cl.UUID != "" {
			dev, err = FindFilesystem("/sys/class/block", "/dev", cl.UUID)
		} else {
			dev, err = FindPartition("/sys/class/block", "/dev", cl.PartUUID)
		}
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			if cl.UUID != "" {
				fatal("no file system with UUID %s appeared within two minutes", cl.UUID)
			}
			fatal("no partition with PARTUUID %s appeared within two minutes", cl.PartUUID)
		}
		time.Sleep(100 * time.Millisecond)
	}
	flags := uintptr(0)
	if cl.ReadOnly {
		flags |= unix.MS_RDONLY
	}
	os.MkdirAll("/root", 0o755)
	if err := unix.Mount(dev, "/root", cl.FSType, flags, cl.Flags); err != nil {
		fatal("mounting %s (%s) on /root: %v", dev, cl.FSType, err)
	}
	for _, d := range []string{"/dev", "/proc", "/sys"} {
		if err := unix.Mount(d, "/root"+d, "", unix.MS_MOVE, ""); err != nil {
			fatal("moving %s into the root: %v", d, err)
		}
	}
	if err := unix.Chdir("/root"); err != nil {
		fatal("%v", err)
	}
	if err := unix.Mount(".", "/", "", unix.MS_MOVE, ""); err != nil {
		fatal("switching to the root: %v", err)
	}
	if err := unix.Chroot("."); err != nil {
		fatal("switching to the root: %v", err)
	}
	unix.Chdir("/")
	if err := syscall.Exec(cl.Init, []string{cl.Init}, os.Environ()); err != nil {
		fatal("starting %s: %v", cl.Init, err)
	}
}

// root runs the first boot when it has not finished yet, then becomes
// systemd.
func root() {
	if _, err := os.Stat(DoneMarker); err != nil {
		if err := firstBoot(); err != nil {
			os.MkdirAll(filepath.Dir(FailedMarker), 0o755)
			os.WriteFile(FailedMarker, []byte(err.Error()+"\n"), 0o644)
			fmt.Fprintf(os.Stderr, "\n*** appliance first boot FAILED: %v\n*** See %s. The next boot tries again.\n\n", err, Log)
		}
	}
	if err := syscall.Exec(systemd, []string{systemd}, os.Environ()); err != nil {
		fatal("starting systemd: %v", err)
	}
}

// check is the unit that puts a failed first boot into the journal and
// marks the system degraded.
func check() int {
	b, err := os.ReadFile(FailedMarker)
	if err != nil {
		return 0
	}
	fmt.Printf("appliance first boot failed: %s", b)
	if log, err := os.ReadFile(Log); err == nil {
		lines := strings.Split(strings.TrimSpace(string(log)), "\n")
		fmt.Println(strings.Join(lines[max(0, len(lines)-40):], "\n"))
	}
	return 1
}

// firstBoot finishes what appliance could not do when it built the
// image: growing the root file system to the card, then the maintainer
// scripts.
func firstBoot() error {
	// The kernel starts init with no PATH, and exec looks programs up in
	// this process's own.
	os.Setenv("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
	mountAPI("/")
	os.MkdirAll("/run", 0o755)
	unix.Mount("tmpfs", "/run", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755")
	if err := unix.Mount("", "/", "", unix.MS_REMOUNT, ""); err != nil {
		return fmt.Errorf("remounting / read-write: %w", err)
	}
	os.MkdirAll(filepath.Dir(Log), 0o755)
	logf, err := os.OpenFile(Log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o640)
	if err != nil {
		return err
	}
	defer logf.Close()
	out := io.MultiWriter(os.Stderr, logf)
	start := time.Now()
	fmt.Fprintf(out, "appliance first boot: %s\n", start.UTC().Format(time.RFC3339))

	// Nothing may start services while packages are configured: systemd
	// does not run yet, and invoke-rc.d asks policy-rc.d.
	const policy = "/usr/sbin/policy-rc.d"
	if _, err := os.Stat(policy); errors.Is(err, os.ErrNotExist) {
		os.WriteFile(policy, []byte("#!/bin/sh\nexit 101\n"), 0o755)
		defer os.Remove(policy)
	}
	env := []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND=noninteractive", "DEBCONF_NONINTERACTIVE_SEEN=true", "LANG=C.UTF-8", "HOME=/root"}
	run := func(what string, name string, args ...string) error {
		t := time.Now()
		fmt.Fprintf(out, "appliance first boot: %s\n", what)
		c := exec.Command(name, args...)
		c.Env, c.Stdout, c.Stderr = env, out, out
		if err := c.Run(); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		fmt.Fprintf(out, "appliance first boot: %s done in %s\n", what, time.Since(t).Round(time.Second))
		return nil
	}
	// Grow first: the image carries little free space, and configuring
	// the packages needs room.
	if err := growRoot(out, run); err != nil {
		// A gateway that did not grow still works; say so and go on.
		fmt.Fprintf(out, "appliance first boot: the root file system was not grown: %v\n", err)
	}
	// Packages' hooks write to the boot partition (Debian's
	// raspi-firmware lays out a Pi's), and refuse to where it is not
	// mounted: mount it as fstab does once systemd runs.
	if fstabMounts("/etc/fstab", BootMount) {
		if err := run("mounting "+BootMount, "mount", BootMount); err != nil {
			fmt.Fprintf(out, "appliance first boot: %v\n", err)
		}
	}
	t := time.Now()
	if err := PreinstAll("/", out, env); err != nil {
		return err
	}
	fmt.Fprintf(out, "appliance first boot: preinst scripts done in %s\n", time.Since(t).Round(time.Second))
	// dpkg's own configuration is still dpkg.cfg.dpkg-new here, so its
	// log is named: the per-package record of the first boot.
	if err := run("configuring packages", "dpkg", "--log=/var/log/dpkg.log", "--configure", "-a", "--force-confold", "--force-confdef"); err != nil {
		return err
	}
	os.Remove(FailedMarker)
	if err := os.WriteFile(DoneMarker, []byte(time.Now().UTC().Format(time.RFC3339)+"\n"), 0o644); err != nil {
		return err
	}
	unix.Sync()
	fmt.Fprintf(out, "appliance first boot: finished in %s\n", time.Since(start).Round(time.Second))
	return nil
}

// growRoot grows the root partition to the end of its disk and the file
// system with it.
func growRoot(out io.Writer, run func(string, string, ...string) error) error {
	var st unix.Stat_t
	if err := unix.Stat("/", &st); err != nil {
		return err
	}
	sys := fmt.Sprintf("/sys/dev/block/%d:%d", unix.Major(uint64(st.Dev)), unix.Minor(uint64(st.Dev)))
	link, err := filepath.EvalSymlinks(sys)
	if err != nil {
		return err
	}
	part := filepath.Base(link)
	disk := filepath.Base(filepath.Dir(link))
	numb, err := os.ReadFile(filepath.Join(link, "partition"))
	if err != nil {
		return fmt.Errorf("/ is not on a partition")
	}
	num, _ := strconv.Atoi(strings.TrimSpace(string(numb)))
	sizeb, err := os.ReadFile(filepath.Join(filepath.Dir(link), "size"))
	if err != nil {
		return err
	}
	sectors, _ := strconv.ParseUint(strings.TrimSpace(string(sizeb)), 10, 64)
	g, err := PlanGrowth("/dev/"+disk, num, sectors)
	if err != nil {
		return err
	}
	if g.NewSize == 0 {
		fmt.Fprintf(out, "appliance first boot: /dev/%s already fills /dev/%s\n", part, disk)
		return nil
	}
	fmt.Fprintf(out, "appliance first boot: growing /dev/%s from %d to %d MiB\n", part, g.Sectors/2048, g.NewSize/2048)
	if err := WriteGrowth(g); err != nil {
		return err
	}
	if err := resizePartition(g); err != nil {
		return err
	}
	return run("growing the root file system", "resize2fs", "/dev/"+part)
}

// blkpg asks the kernel to take the partition's new size without a
// reboot (BLKPG_RESIZE_PARTITION).
func resizePartition(g Growth) error {
	f, err := os.OpenFile(g.Disk, os.O_RDONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	type blkpgPartition struct {
		Start, Length int64
		Pno           int32
		Devname       [64]byte
		Volname       [64]byte
	}
	type blkpgIoctlArg struct {
		Op      int32
		Flags   int32
		Datalen int32
		Data    uintptr
	}
	p := blkpgPartition{Start: int64(g.Start) * sectorSize, Length: int64(g.NewSize) * sectorSize, Pno: int32(g.Partition)}
	arg := blkpgIoctlArg{Op: 3 /* BLKPG_RESIZE_PARTITION */, Datalen: int32(unsafe.Sizeof(p)), Data: uintptr(unsafe.Pointer(&p))}
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.BLKPG, uintptr(unsafe.Pointer(&arg))); errno != 0 {
		return fmt.Errorf("resizing partition %d of %s: %w", g.Partition, g.Disk, errno)
	}
	return nil
}
