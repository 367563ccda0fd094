// Package bootinit is the first program the gateway runs. In the
// initramfs (QEMU's Debian kernel needs modules to reach its disk) it
// loads those modules, finds the root partition by PARTUUID (or its file
// system by UUID), mounts it
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
	// UUID is the root file system, as root=UUID=… names it (the way
	// Debian's raspi-firmware writes it for a Raspberry Pi).
	UUID     string
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
			c.PartUUID, c.UUID = "", ""
			if id, ok := strings.CutPrefix(v, "PARTUUID="); ok {
				c.PartUUID = strings.ToLower(id)
			} else if id, ok := strings.CutPrefix(v, "UUID="); ok {
				c.UUID = strings.ToLower(id)
			} else {
				return c, fmt.Errorf("root=%s: appliance's init finds the root by PARTUUID= or UUID=; write root=PARTUUID=… or root=UUID=…", v)
			}
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
	if c.PartUUID == "" && c.UUID == "" {
		return c, fmt.Errorf("the kernel command line names no root=PARTUUID=… or root=UUID=…")
	}
	return c, nil
}

// PartUUID is how Linux names an MBR partition: the disk identifier in
// hex and the partition number.
func PartUUID(diskID uint32, partition int) string {
	return fmt.Sprintf("%08x-%02d", diskID, partition)
}
