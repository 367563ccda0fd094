package modules

import (
	"fmt"
	"sort"
	"strings"
)

// Sandbox describes the systemd sandbox a service runs in: the one
// renderer of appliance's unit hardening, for drop-ins on Debian's units
// and for appliance's own units alike. Every option not named here is at
// its strictest: it takes systemd-analyze security's exposure of Debian's
// stock units (9.6 UNSAFE for mosquitto and nginx) to 2.5 or lower, and
// appliance's own services to 1.5 or lower.
type Sandbox struct {
	User, Group string
	// DynamicUser runs the service as a throw-away user instead.
	DynamicUser bool
	// Capabilities the service keeps (none by default).
	Capabilities []string
	// ReadWrite are the only paths the service may write.
	ReadWrite []string
	// StateDirectory, RuntimeDirectory: created by systemd, owned by the
	// service's user, with DirMode (0750 when empty).
	StateDirectory, RuntimeDirectory string
	DirMode                          string
	// SupplementaryGroups lets the service read files of these groups
	// (the journal's). A user namespace would map them to nobody, so such
	// a service gets none.
	SupplementaryGroups []string
	// Credentials are LoadCredential= pairs, name and path: files only
	// root may read, handed to the service under $CREDENTIALS_DIRECTORY.
	Credentials [][2]string
	// UMask is the service's umask (0027 when empty).
	UMask string
	// AddressFamilies the service may open sockets of.
	AddressFamilies []string
	// Localhost limits the service's IP traffic to loopback; NoIP denies
	// it all (netlink and unix sockets are not IP).
	Localhost, NoIP bool
	// PrivateIPC gives the service an IPC namespace of its own.
	PrivateIPC bool
	// PrivilegedCalls keeps the @privileged and @resources system calls,
	// which a service that changes the kernel's state needs (nft).
	PrivilegedCalls bool
	// ResetExecStartPre drops the vendor unit's ExecStartPre lines, which
	// need root (Debian's mosquitto unit chowns /run and /var/log).
	ResetExecStartPre bool
	// Exec overrides the vendor unit's commands when they assume root or
	// a PID file.
	Exec map[string]string
	// NoMemoryDenyWriteExecute is for runtimes that JIT (Grafana).
	NoMemoryDenyWriteExecute bool
	// Extra lines for the [Service] section.
	Extra []string
}

// dropIn renders the sandbox as a drop-in for a vendor unit.
func (s Sandbox) dropIn(site, unit string) string {
	return header("#", site) + fmt.Sprintf("# Sandbox for %s: run unprivileged, see only what it needs.\n[Service]\n", unit) + s.lines()
}

// lines renders the sandbox's lines of a [Service] section.
func (s Sandbox) lines() string {
	var b strings.Builder
	if s.ResetExecStartPre {
		b.WriteString("ExecStartPre=\n")
	}
	keys := make([]string, 0, len(s.Exec))
	for k := range s.Exec {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		// An empty assignment clears the vendor's list first.
		fmt.Fprintf(&b, "%s=\n%s=%s\n", k, k, s.Exec[k])
	}
	if s.DynamicUser {
		b.WriteString("DynamicUser=yes\n")
	}
	if s.User != "" {
		fmt.Fprintf(&b, "User=%s\nGroup=%s\n", s.User, s.Group)
	}
	mode := or(s.DirMode, "0750")
	if s.StateDirectory != "" {
		fmt.Fprintf(&b, "StateDirectory=%s\nStateDirectoryMode=%s\n", s.StateDirectory, mode)
	}
	if s.RuntimeDirectory != "" {
		fmt.Fprintf(&b, "RuntimeDirectory=%s\nRuntimeDirectoryMode=%s\n", s.RuntimeDirectory, mode)
	}
	for _, c := range s.Credentials {
		fmt.Fprintf(&b, "LoadCredential=%s:%s\n", c[0], c[1])
	}
	caps := strings.Join(s.Capabilities, " ")
	fmt.Fprintf(&b, "CapabilityBoundingSet=%s\nAmbientCapabilities=%s\n", caps, caps)
	if len(s.SupplementaryGroups) > 0 {
		fmt.Fprintf(&b, "SupplementaryGroups=%s\n", strings.Join(s.SupplementaryGroups, " "))
	} else if len(s.Capabilities) == 0 {
		// A user namespace would strip capabilities on the host, so only
		// services that keep none get one.
		b.WriteString("PrivateUsers=yes\n")
	}
	b.WriteString(`NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
DevicePolicy=closed
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
ProtectProc=invisible
ProcSubset=pid
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
SystemCallArchitectures=native
SystemCallFilter=@system-service
`)
	if !s.PrivilegedCalls {
		b.WriteString("SystemCallFilter=~@privileged @resources\nSystemCallErrorNumber=EPERM\n")
	}
	b.WriteString("RemoveIPC=yes\nKeyringMode=private\n")
	if s.PrivateIPC {
		b.WriteString("PrivateIPC=yes\n")
	}
	fmt.Fprintf(&b, "UMask=%s\n", or(s.UMask, "0027"))
	if !s.NoMemoryDenyWriteExecute {
		b.WriteString("MemoryDenyWriteExecute=yes\n")
	}
	fams := s.AddressFamilies
	if len(fams) == 0 {
		fams = []string{"AF_INET", "AF_INET6", "AF_UNIX"}
	}
	fmt.Fprintf(&b, "RestrictAddressFamilies=%s\n", strings.Join(fams, " "))
	switch {
	case s.NoIP:
		b.WriteString("IPAddressDeny=any\n")
	case s.Localhost:
		b.WriteString("IPAddressDeny=any\nIPAddressAllow=localhost\n")
	}
	for _, p := range s.ReadWrite {
		fmt.Fprintf(&b, "ReadWritePaths=%s\n", p)
	}
	for _, l := range s.Extra {
		b.WriteString(l + "\n")
	}
	return b.String()
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// dropInPath is where a unit's hardening drop-in goes.
func dropInPath(unit string) string {
	return "/etc/systemd/system/" + unit + ".d/appliance-sandbox.conf"
}
