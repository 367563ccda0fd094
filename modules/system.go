package modules

import (
	"crypto/pbkdf2"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"

	"github.com/appliance/appliance/bootinit"
	"github.com/appliance/appliance/generation"
	"github.com/appliance/appliance/spec"
)

func init() { Register(Info{"system", func() Module { return new(System) }}) }

var _ Module = (*System)(nil)

// System is the base system: the board's kernel and firmware, names,
// time, locale, network, journal, kernel hardening, automatic security
// updates, the admin account, the apt sources, the mounts, and
// appliance's init with the check of its first boot.
type System struct{ site *spec.Site }

// Fixed IDs of the accounts the system module makes. Debian's base-passwd
// fixes sudo (27) and adm (4).
const (
	adminUID = 1000
	adminGID = 1000
)

// JournalMaxUse caps the persistent journal, so logs cannot fill an SD
// card.
const JournalMaxUse = "64M"

// ID implements Module.
func (*System) ID() string { return "system" }

// Decode implements Module.
func (m *System) Decode(s *spec.Site) bool { m.site = s; return true }

// Contribute implements Module.
func (m *System) Contribute() Contribution {
	s := m.site
	g := s.Gateway
	r := g.Where.Block
	c := Contribution{
		Summary: fmt.Sprintf("%s, %s, %s; admin %s (keys only); security updates", g.Hostname, g.Timezone, g.Locale, g.Admin.User),
		// e2fsprogs checks and grows the root; systemd-sysv gives the
		// admin reboot and poweroff; udev loads the drivers of the
		// hardware it finds (the network card among them). Not
		// apt-listchanges: it mails changelogs, and a gateway has no one
		// reading mail on it (a push says what changed).
		Packages: []string{"e2fsprogs", "sudo", "systemd-sysv", "systemd-resolved", "udev", "unattended-upgrades"},
		Units:    []string{"systemd-networkd.service", "systemd-resolved.service", "unattended-upgrades.service"},
		Files: []File{
			text("/etc/hostname", 0o644, "root", "root", g.Hostname+"\n", g.Where.Attr("hostname")),
			text("/etc/hosts", 0o644, "root", "root", fmt.Sprintf("127.0.0.1\tlocalhost\n127.0.1.1\t%s %s.local\n::1\tlocalhost ip6-localhost ip6-loopback\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n", g.Hostname, g.Hostname), r),
			text("/etc/timezone", 0o644, "root", "root", g.Timezone+"\n", g.Where.Attr("timezone")),
			text("/etc/default/locale", 0o644, "root", "root", "LANG="+g.Locale+"\n", g.Where.Attr("locale")),
			text("/etc/systemd/journald.conf.d/appliance.conf", 0o644, "root", "root", header("#", s.Name)+
				"# Keep logs across reboots, within a size an SD card can spare.\n[Journal]\nStorage=persistent\nSystemMaxUse="+JournalMaxUse+"\nSystemKeepFree=256M\nMaxFileSec=1week\nForwardToSyslog=no\n", r),
			text("/etc/sysctl.d/90-appliance.conf", 0o644, "root", "root", header("#", s.Name)+sysctlHardening, r),
			text("/etc/systemd/resolved.conf.d/appliance.conf", 0o644, "root", "root", m.resolvedConf(), r),
			text("/etc/apt/apt.conf.d/20auto-upgrades", 0o644, "root", "root", header("//", s.Name)+
				"APT::Periodic::Update-Package-Lists \"1\";\nAPT::Periodic::Unattended-Upgrade \"1\";\nAPT::Periodic::AutocleanInterval \"7\";\n", r),
			text("/etc/apt/apt.conf.d/52appliance-unattended-upgrades", 0o644, "root", "root", m.unattended(), s.OS.Where.Block),
			text("/etc/sudoers.d/appliance", 0o440, "root", "root", header("#", s.Name)+
				"# The admin logs in with a key only and has no password to type.\n"+g.Admin.User+" ALL=(ALL:ALL) NOPASSWD: ALL\n", g.Admin.Where.Block),
		},
		Symlinks: []Symlink{
			{Path: "/etc/localtime", Target: "/usr/share/zoneinfo/" + g.Timezone},
			enableVendor("systemd-networkd.service", "multi-user.target"),
			enableVendor("systemd-resolved.service", "multi-user.target"),
		},
		Users:  []User{{Name: g.Admin.User, UID: adminUID, Group: g.Admin.User, Home: "/home/" + g.Admin.User, Shell: "/bin/bash", Groups: []string{"adm", "sudo"}, Comment: "site administrator"}},
		Groups: []Group{{Name: g.Admin.User, GID: adminGID}},
		Dirs:   []Dir{{Path: "/home/" + g.Admin.User, Mode: 0o750, Owner: g.Admin.User, Group: g.Admin.User}},
		Checks: []Check{{Name: "network up", Kind: "unit", Unit: "systemd-networkd.service"}},
		Actions: []Action{
			// networkctl reload applies changed .network files without
			// taking the links down, so push keeps its connection unless
			// the address itself changed.
			{Paths: []string{"/etc/systemd/network/"}, Run: []string{"/usr/bin/networkctl", "reload"}, Why: "the network configuration changed", Stage: StageSystem},
			restart(StageSystem, "systemd-resolved.service", "name resolution changed", "/etc/systemd/resolved.conf.d/"),
			restart(StageSystem, "systemd-journald.service", "the journal's limits changed", "/etc/systemd/journald.conf.d/"),
			{Paths: []string{"/etc/sysctl.d/90-appliance.conf"}, Run: []string{"/usr/lib/systemd/systemd-sysctl"}, Why: "the kernel's settings changed", Stage: StageSystem},
			{Paths: []string{"/etc/hostname"}, Run: []string{"/usr/bin/hostname", "--file", "/etc/hostname"}, Why: "the hostname changed", Stage: StageSystem},
		},
	}
	c.Packages = append(c.Packages, g.Hardware.Packages...)
	// apt verifies an https source's server against the public roots;
	// Debian's archive is http, its Release files signed. Without such a
	// source nothing of the system's needs the roots, and their
	// configuration is the slowest step of a first boot (about a minute
	// and a half under emulation).
	for _, src := range s.OS.Sources {
		if strings.HasPrefix(strings.ToLower(src.URL), "https://") {
			c.Packages = append(c.Packages, "ca-certificates")
			break
		}
	}
	c.Programs = []Program{
		{Package: "github.com/appliance/appliance/cmd/appliance-init", Path: bootinit.InitPath},
		// appliance push switches the gateway's generations with it.
		{Package: "github.com/appliance/appliance/cmd/appliance-apply", Path: generation.ApplyPath},
	}
	c.Files = append(c.Files, m.network()...)
	c.Files = append(c.Files, m.aptSources()...)
	c.Files = append(c.Files, m.boot()...)
	// The boot partition is mounted where Raspberry Pi OS mounts it;
	// appliance's programs have a folder of their own.
	c.Dirs = append(c.Dirs, Dir{Path: "/boot/firmware", Mode: 0o755, Owner: "root", Group: "root"},
		Dir{Path: "/usr/lib/appliance", Mode: 0o755, Owner: "root", Group: "root"})
	c.Symlinks = append(c.Symlinks, enable(firstBootCheck, "multi-user.target"), enable(applyRecover, "sysinit.target"))
	if g.Locale != spec.DefaultLocale {
		// locales' postinst generates what /etc/locale.gen lists.
		c.Packages = append(c.Packages, "locales")
		c.Files = append(c.Files, text("/etc/locale.gen", 0o644, "root", "root", g.Locale+" UTF-8\n", g.Where.Attr("locale")))
	}
	// chrony, when the spec asks for it, replaces timesyncd (the two
	// packages conflict).
	if !slices.Contains(s.OS.Packages, "chrony") {
		c.Packages = append(c.Packages, "systemd-timesyncd")
		c.Units = append(c.Units, "systemd-timesyncd.service")
		c.Checks = append(c.Checks, Check{Name: "time sync", Kind: "unit", Unit: "systemd-timesyncd.service"})
	}
	if w := g.Network.WiFi; w != nil {
		c.Packages = append(c.Packages, "wpasupplicant")
		if g.Hardware.Boot == "raspi-firmware" {
			// Debian's raspi-firmware carries only part of the Pis'
			// Wi-Fi firmware; the rest (the Pi 3's 43430 among it) is in
			// non-free-firmware's firmware-brcm80211.
			c.Packages = append(c.Packages, "firmware-brcm80211")
		}
		c.Units = append(c.Units, "wpa_supplicant@wlan0.service")
		c.Symlinks = append(c.Symlinks, Symlink{Path: "/etc/systemd/system/multi-user.target.wants/wpa_supplicant@wlan0.service", Target: "/usr/lib/systemd/system/wpa_supplicant@.service"})
		c.Actions = append(c.Actions, restart(StageSystem, "wpa_supplicant@wlan0.service", "the Wi-Fi configuration changed", "/etc/wpa_supplicant/"))
	}
	if g.Address == g.Hostname+".local" {
		// Nodes and push find a DHCP gateway by its mDNS name, which
		// systemd-resolved answers for (see resolvedConf).
		c.Listeners = append(c.Listeners, Listener{Port: 5353, Proto: "udp", Bind: Network, Purpose: "mDNS (" + g.Address + ")"})
		c.Openings = append(c.Openings, Opening{Port: 5353, Proto: "udp", From: s.Firewall.MQTTFrom, Purpose: "mDNS"})
	}
	return c
}

// firstBootCheck is the unit that reports a failed first boot;
// applyRecover the one that undoes a push a power cut interrupted,
// before any service starts.
const (
	firstBootCheck = "appliance-firstboot-check.service"
	applyRecover   = "appliance-apply-recover.service"
)

// boot: the mounts, and the unit that makes a failed first boot show in
// the journal and leave the system degraded (appliance's init writes the
// marker it checks). The partitions are found by PARTUUID, which the
// desired state fills in from the gateway's disk identity.
func (m *System) boot() []File {
	r := m.site.Gateway.Where.Block
	fstab := "# Written by appliance. The root grows to the card on the first boot.\n" +
		"PARTUUID=@@disk:root@@\t/\text4\tdefaults,noatime,errors=remount-ro\t0\t1\n" +
		"PARTUUID=@@disk:boot@@\t/boot/firmware\tvfat\tdefaults,noatime,umask=0077,nofail\t0\t2\n"
	check := fmt.Sprintf("# Written by appliance.\n[Unit]\nDescription=Report a failed appliance first boot\nConditionPathExists=%s\n\n[Service]\nType=oneshot\nExecStart=%s --check\n\n[Install]\nWantedBy=multi-user.target\n", bootinit.FailedMarker, bootinit.InitPath)
	recover := header("#", m.site.Name) + `[Unit]
Description=Finish or undo an interrupted appliance push
DefaultDependencies=no
After=local-fs.target
Before=sysinit.target shutdown.target
Conflicts=shutdown.target
RequiresMountsFor=` + generation.Root + `
ConditionPathExists=` + generation.Root + `/apply.json

[Service]
Type=oneshot
ExecStart=` + generation.ApplyPath + ` recover --boot

[Install]
WantedBy=sysinit.target
`
	files := []File{
		{Path: "/etc/fstab", Mode: 0o644, Owner: "root", Group: "root", Content: []byte(fstab), Source: Source{Kind: Expand}, Range: r},
		text("/etc/systemd/system/"+firstBootCheck, 0o644, "root", "root", check, r),
		text("/etc/systemd/system/"+applyRecover, 0o644, "root", "root", recover, r),
	}
	if m.site.Gateway.Hardware.Boot == "raspi-firmware" {
		files = append(files, m.raspiFirmware()...)
	}
	return files
}

// raspiFirmware: the settings of Debian's raspi-firmware, whose hooks
// keep the boot partition on the first boot and every kernel update,
// and of tiny-initramfs, which makes each new kernel's initramfs. The
// command line they write is the one appliance boots with: the root by
// its file system's UUID (which tiny-initramfs and appliance's init both
// find), the console on the pin header, no memory held back for a GPU
// the gateway does not use, and appliance's init.
func (m *System) raspiFirmware() []File {
	r := m.site.Gateway.Where.Attr("board")
	hw := m.site.Gateway.Hardware
	defaults := header("#", m.site.Name) + `# raspi-firmware's kernel hook writes /boot/firmware/config.txt and
# cmdline.txt from these settings; see /usr/share/doc/raspi-firmware.
ROOTPART="UUID=@@disk:rootfs@@"
CONSOLES="` + hw.Console + `"
CMA=0
KERNEL="auto"
INITRAMFS="auto"
`
	extra := "rootfstype=ext4 ro init=" + bootinit.InitPath + " panic=10\n"
	// tiny-initramfs finds the root's own driver and file system; what
	// else the board needs to reach them (regulators, the checksum of
	// ext4's metadata) it is told.
	tiny := header("#", m.site.Name) + "AUTO_MODULES=yes\nINCLUDE_MODULES=\"" + strings.Join(hw.InitramfsModules, ",") + "\"\n"
	return []File{
		{Path: "/etc/default/raspi-firmware", Mode: 0o644, Owner: "root", Group: "root", Content: []byte(defaults), Source: Source{Kind: Expand}, Range: r},
		text("/etc/default/raspi-extra-cmdline", 0o644, "root", "root", extra, r),
		text("/etc/tiny-initramfs/tiny-initramfs.conf", 0o644, "root", "root", tiny, r),
	}
}

// mdns reports whether the gateway answers mDNS for its .local name:
// only when that is how push and the nodes find it.
func (m *System) mdns() bool { return m.site.Gateway.Address == m.site.Gateway.Hostname+".local" }

// resolvedConf: name resolution for the gateway itself, no LLMNR; mDNS
// only to answer for the gateway's own .local name.
func (m *System) resolvedConf() string {
	mdns := "no"
	if m.mdns() {
		mdns = "yes"
	}
	return header("#", m.site.Name) + "[Resolve]\nLLMNR=no\nMulticastDNS=" + mdns + "\nDNSSEC=allow-downgrade\n"
}

// sysctlHardening turns off what a gateway never needs from the network
// stack and hides kernel addresses and logs from unprivileged processes.
const sysctlHardening = `# No ICMP redirects: the gateway's routes are its own.
net.ipv4.conf.all.accept_redirects = 0
net.ipv4.conf.default.accept_redirects = 0
net.ipv4.conf.all.secure_redirects = 0
net.ipv4.conf.default.secure_redirects = 0
net.ipv6.conf.all.accept_redirects = 0
net.ipv6.conf.default.accept_redirects = 0
net.ipv4.conf.all.send_redirects = 0
net.ipv4.conf.default.send_redirects = 0
# No source routing.
net.ipv4.conf.all.accept_source_route = 0
net.ipv4.conf.default.accept_source_route = 0
net.ipv6.conf.all.accept_source_route = 0
net.ipv6.conf.default.accept_source_route = 0
# Drop packets whose source could not be reached back (spoofing).
net.ipv4.conf.all.rp_filter = 1
net.ipv4.conf.default.rp_filter = 1
net.ipv4.conf.all.log_martians = 1
net.ipv4.icmp_echo_ignore_broadcasts = 1
net.ipv4.icmp_ignore_bogus_error_responses = 1
net.ipv4.tcp_syncookies = 1
# The gateway routes nothing.
net.ipv4.ip_forward = 0
net.ipv6.conf.all.forwarding = 0
# Kernel pointers and the kernel log are for root only.
kernel.kptr_restrict = 2
kernel.dmesg_restrict = 1
kernel.unprivileged_bpf_disabled = 1
net.core.bpf_jit_harden = 2
kernel.yama.ptrace_scope = 1
kernel.sysrq = 0
fs.suid_dumpable = 0
fs.protected_hardlinks = 1
fs.protected_symlinks = 1
fs.protected_fifos = 2
fs.protected_regular = 2
`

// network renders systemd-networkd's configuration (and wpa_supplicant's
// for Wi-Fi).
func (m *System) network() []File {
	s := m.site
	n := s.Gateway.Network
	r := n.Where.Block
	var b strings.Builder
	b.WriteString(header("#", s.Name))
	b.WriteString("[Match]\nType=ether\n\n[Network]\nLinkLocalAddressing=ipv6\nIPv6AcceptRA=yes\nLLMNR=no\n")
	if m.mdns() {
		b.WriteString("MulticastDNS=yes\n")
	}
	if n.DHCP() {
		b.WriteString("DHCP=yes\n")
	} else {
		fmt.Fprintf(&b, "Address=%s\n", n.Address)
		if n.Router.IsValid() {
			fmt.Fprintf(&b, "Gateway=%s\n", n.Router)
		}
	}
	for _, d := range n.DNS {
		fmt.Fprintf(&b, "DNS=%s\n", d)
	}
	files := []File{text("/etc/systemd/network/10-wired.network", 0o644, "root", "root", b.String(), r)}
	if w := n.WiFi; w != nil {
		files = append(files,
			text("/etc/systemd/network/20-wireless.network", 0o644, "root", "root", header("#", s.Name)+"[Match]\nName=wlan0\n\n[Network]\nDHCP=yes\nLinkLocalAddressing=ipv6\nLLMNR=no\n", w.Where.Block),
			File{Path: "/etc/wpa_supplicant/wpa_supplicant-wlan0.conf", Mode: 0o600, Owner: "root", Group: "root", Sensitive: true, Range: w.Where.Block,
				Content: []byte(wpaSupplicant(s.Name, w))})
	}
	return files
}

// wpaSupplicant writes the network with its 256-bit PSK rather than the
// passphrase, which may be in use elsewhere; the radio may not transmit
// before country sets the regulatory domain.
func wpaSupplicant(site string, w *spec.WiFi) string {
	psk := w.PSK.Reveal()
	if len(psk) != 64 {
		key, err := pbkdf2.Key(sha1.New, psk, []byte(w.SSID), 4096, 32)
		if err != nil {
			panic(err) // only for keys longer than FIPS allows; 32 bytes is not
		}
		psk = hex.EncodeToString(key)
	}
	return fmt.Sprintf("%sctrl_interface=DIR=/run/wpa_supplicant GROUP=netdev\nupdate_config=0\ncountry=%s\n\nnetwork={\n\tssid=%q\n\tpsk=%s\n\tkey_mgmt=WPA-PSK WPA-PSK-SHA256 SAE\n\tieee80211w=1\n}\n",
		header("#", site), w.Country, w.SSID, strings.ToLower(psk))
}

// aptSources writes the spec's sources for apt on the gateway, each with
// its own keyring (Signed-By), so unattended-upgrades verifies updates
// against exactly the keys the image was built with.
func (m *System) aptSources() []File {
	s := m.site
	var b strings.Builder
	b.WriteString(header("#", s.Name))
	var files []File
	for _, src := range s.OS.Sources {
		// apt tells armored keys from binary ones by the extension.
		from, ext := Source{FromKeyring, src.ShippedKeyring}, ".asc"
		if src.ShippedKeyring == "debian-archive" {
			ext = ".pgp"
		}
		if src.Keyring != "" {
			from, ext = Source{FromHost, src.Keyring}, ".asc"
			if !strings.HasSuffix(src.Keyring, ".asc") {
				ext = ".pgp"
			}
		}
		keyring := "/etc/apt/keyrings/appliance-" + src.Name + ext
		files = append(files, File{Path: keyring, Mode: 0o644, Owner: "root", Group: "root", Source: from, Range: src.Where.Block})
		fmt.Fprintf(&b, "\nTypes: deb\nURIs: %s\nSuites: %s\nComponents: %s\nArchitectures: %s\nSigned-By: %s\n",
			src.URL, src.Suite, strings.Join(src.Components, " "), s.Gateway.Hardware.Arch, keyring)
	}
	return append(files, text("/etc/apt/sources.list.d/appliance.sources", 0o644, "root", "root", b.String(), s.OS.Where.Block))
}

// unattended lists what unattended-upgrades installs by itself: security
// updates and point-release fixes of every source, never new major
// versions (those come with a push).
func (m *System) unattended() string {
	s := m.site
	var b strings.Builder
	b.WriteString(header("//", s.Name))
	b.WriteString("Unattended-Upgrade::Origins-Pattern {\n")
	b.WriteString("\t\"origin=Debian,codename=${distro_codename},label=Debian\";\n")
	b.WriteString("\t\"origin=Debian,codename=${distro_codename}-updates,label=Debian\";\n")
	b.WriteString("\t\"origin=Debian,codename=${distro_codename}-security,label=Debian-Security\";\n")
	if s.Gateway.Hardware.RaspberryPi {
		b.WriteString("\t\"origin=Raspberry Pi Foundation,codename=${distro_codename}\";\n")
	}
	b.WriteString("};\n")
	b.WriteString("Unattended-Upgrade::Remove-Unused-Kernel-Packages \"true\";\n")
	b.WriteString("Unattended-Upgrade::Remove-Unused-Dependencies \"true\";\n")
	b.WriteString("// A reboot takes the site's data offline: schedule them yourself.\n")
	b.WriteString("Unattended-Upgrade::Automatic-Reboot \"false\";\n")
	b.WriteString("Unattended-Upgrade::SyslogEnable \"true\";\n")
	return b.String()
}
