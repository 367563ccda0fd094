package ingest

import (
	"debug/buildinfo"
	"fmt"
	"strings"
)

// Where the service lives on the gateway.
const (
	UnitName   = "appliance-ingest.service"
	BinaryPath = "/usr/bin/appliance-ingest"
	UnitPath   = "/etc/systemd/system/" + UnitName
)

// Unit is the service's systemd unit. It runs as a dynamic user with no
// capabilities, a read-only system, loopback networking only, and its
// spool in /var/lib/appliance-ingest. The files in paths (readable by
// root only on the gateway) reach it as credentials, which is why
// ConfigFor names them under $CREDENTIALS_DIRECTORY. Its exposure in
// `systemd-analyze security` is 1.5 or lower (the test checks).
func Unit(paths Paths) string {
	var creds strings.Builder
	for _, c := range [][2]string{{CredCA, paths.CAFile}, {CredCert, paths.CertFile}, {CredKey, paths.KeyFile}} {
		fmt.Fprintf(&creds, "LoadCredential=%s:%s\n", c[0], c[1])
	}
	if paths.InfluxSecretFile != "" {
		// One file, named for either version: ConfigFor reads the one
		// its InfluxDB version needs.
		fmt.Fprintf(&creds, "LoadCredential=%s:%s\n", CredToken, paths.InfluxSecretFile)
		fmt.Fprintf(&creds, "LoadCredential=%s:%s\n", CredPassword, paths.InfluxSecretFile)
	}
	return fmt.Sprintf(`# appliance: MQTT readings to InfluxDB. Generated; changes are overwritten.
[Unit]
Description=appliance ingest (MQTT readings to InfluxDB)
Documentation=file:///usr/share/doc/appliance/wire.md
After=network-online.target mosquitto.service influxdb.service
Wants=network-online.target

[Service]
Type=notify
NotifyAccess=main
ExecStart=%s -config %s
Restart=always
RestartSec=2s
WatchdogSec=60s
TimeoutStopSec=30s

%sDynamicUser=yes
StateDirectory=appliance-ingest
StateDirectoryMode=0700
UMask=0077

CapabilityBoundingSet=
AmbientCapabilities=
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
PrivateUsers=yes
PrivateIPC=yes
ProtectHostname=yes
ProtectClock=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectProc=invisible
ProcSubset=pid
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
RemoveIPC=yes
KeyringMode=private
DevicePolicy=closed
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallFilter=~@privileged @resources
SystemCallErrorNumber=EPERM
# The broker and InfluxDB are on this gateway.
IPAddressDeny=any
IPAddressAllow=localhost

[Install]
WantedBy=multi-user.target
`, BinaryPath, ConfigPath, creds.String())
}

// Build is how the gateway's binary is built from this source: static
// (CGO_ENABLED=0, so the Go toolchain is all it needs), without paths of
// the build machine (-trimpath) or VCS stamps (-buildvcs=false), so two
// builds of one commit are byte-identical (scripts/reproducible-ingest
// checks). Run `go` with Args and Env added to the environment, in the
// module's root; out is the binary's path.
func Build(goarch, out string) (args, env []string) {
	return []string{"build", "-trimpath", "-buildvcs=false", "-o", out, "github.com/appliance/appliance/cmd/ingest"},
		[]string{"CGO_ENABLED=0", "GOOS=linux", "GOARCH=" + goarch}
}

// Module is a Go module compiled into the binary, for the image's SBOM.
type Module struct {
	Path, Version, Sum string
}

// Modules lists the Go modules in a built ingest binary, read from the
// build information the Go toolchain embeds: the SBOM then describes the
// binary that ships, not a guess from go.mod.
func Modules(binary string) ([]Module, error) {
	info, err := buildinfo.ReadFile(binary)
	if err != nil {
		return nil, fmt.Errorf("reading the build information of %s: %w", binary, err)
	}
	mods := []Module{{Path: "golang.org/toolchain", Version: info.GoVersion}, {Path: info.Main.Path, Version: info.Main.Version}}
	for _, d := range info.Deps {
		if d.Replace != nil {
			d = d.Replace
		}
		mods = append(mods, Module{Path: d.Path, Version: d.Version, Sum: d.Sum})
	}
	return mods, nil
}
