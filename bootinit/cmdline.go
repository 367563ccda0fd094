// Package bootinit is the first program the gateway runs. In the
// initramfs (QEMU's Debian kernel needs modules to reach its disk) it
// loads those modules, finds the root partition by PARTUUID, mounts it
// and hands over. As init= in the root file system it runs the first
// boot once — the maintainer scripts dpkg did not run when appliance
// unpacked the packages, then growing the root file system to the card —
// and hands over to systemd.
package bootinit

import (
	"fmt"
	"strings"
)

// Cmdline is what the kernel command line says about the root.
type Cmdline struct {
	// PartUUID is the root partition, as root=PARTUUID=1234abcd-02 names
	// it (the MBR disk identifier and the partition number).
	PartUUID string
	FSType   string
	ReadOnly bool
	Flags    string
	// Init is the program to run in the root file system.
	Init string
}

// ParseCmdline reads the settings bootinit needs from /proc/cmdline.
func ParseCmdline(s string) (Cmdline, error) {
	c := Cmdline{FSType: "ext4", ReadOnly: true, Init: "/sbin/init"}
	for _, f := range strings.Fields(s) {
		k, v, _ := strings.Cut(f, "=")
		switch k {
		case "root":
			id, ok := strings.CutPrefix(v, "PARTUUID=")
			if !ok {
				return c, fmt.Errorf("root=%s: appliance's init finds the root by PARTUUID=; write root=PARTUUID=…", v)
			}
			c.PartUUID = strings.ToLower(id)
		case "rootfstype":
			c.FSType = v
		case "rootflags":
			c.Flags = v
		case "ro":
			c.ReadOnly = true
		case "rw":
			c.ReadOnly = false
		case "init":
			c.Init = v
		}
	}
	if c.PartUUID == "" {
		return c, fmt.Errorf("the kernel command line names no root=PARTUUID=…")
	}
	return c, nil
}

// PartUUID is how Linux names an MBR partition: the disk identifier in
// hex and the partition number.
func PartUUID(diskID uint32, partition int) string {
	return fmt.Sprintf("%08x-%02d", diskID, partition)
}
