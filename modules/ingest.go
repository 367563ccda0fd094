package modules

import (
	"encoding/json"
	"fmt"
	"net"
	"strconv"

	"github.com/appliance/appliance/ingest"
	"github.com/appliance/appliance/ingest/wire"
	"github.com/appliance/appliance/pki"
	"github.com/appliance/appliance/spec"
)

func init() { Register(Info{"ingest", func() Module { return new(Ingest) }}) }

var _ Module = (*Ingest)(nil)

// Ingest is appliance's MQTT-to-InfluxDB service (package ingest). The
// module turns the site into the service's configuration file and unit;
// the service itself knows nothing of specs.
type Ingest struct{ site *spec.Site }

// Where the service lives on the gateway.
const (
	IngestUnit   = "appliance-ingest.service"
	IngestBinary = "/usr/bin/appliance-ingest"
	// ingestDir holds its key material: root's only; the unit hands it
	// over as credentials.
	ingestDir = "/etc/appliance/ingest"
)

// IngestPaths are the files on the gateway that the service reads: the
// site CA, ingest's client certificate and key, and the InfluxDB secret
// (the token of InfluxDB 2, or the password of user "ingest" of
// InfluxDB 1). The unit hands them to the service as credentials, so
// they may stay readable by root only.
type IngestPaths struct {
	CAFile, CertFile, KeyFile, InfluxSecretFile string
}

// ID implements Module.
func (*Ingest) ID() string { return "ingest" }

// Decode implements Module.
func (m *Ingest) Decode(s *spec.Site) bool { m.site = s; return true }

// Contribute implements Module.
func (m *Ingest) Contribute() Contribution {
	s := m.site
	r := s.Ingest.Where.Block
	paths := IngestPaths{CAFile: ingestDir + "/ca.crt", CertFile: ingestDir + "/ingest.crt", KeyFile: ingestDir + "/ingest.key"}
	if s.InfluxDB.Version == 2 {
		// InfluxDB 2 made the token on the gateway (appliance-setup).
		paths.InfluxSecretFile = InfluxTokenDir + "/ingest-token"
	} else {
		paths.InfluxSecretFile = InfluxSecretPath(InfluxIngestPassword)
	}
	cfg := IngestConfig(s)
	if s.InfluxDB.Version == 1 {
		cfg.InfluxDB.RetentionPolicy = InfluxRetentionPolicy
	}
	js, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		panic(err)
	}
	return Contribution{
		Summary: fmt.Sprintf("MQTT → InfluxDB, batches of %d every %s at most, spool %s", s.Ingest.BatchSize, spec.FormatDuration(s.Ingest.FlushInterval), spec.FormatSize(s.Ingest.SpoolSize)),
		Dirs:    []Dir{{Path: ingestDir, Mode: 0o700, Owner: "root", Group: "root"}},
		Files: []File{
			text(ingest.ConfigPath, 0o644, "root", "root", string(js)+"\n", r),
			text("/etc/systemd/system/"+IngestUnit, 0o644, "root", "root", IngestUnitFile(s.Name, paths), r),
			fromState(paths.CAFile, 0o600, "root", "root", "pki/ca.crt", r),
			fromState(paths.CertFile, 0o600, "root", "root", "pki/issued/ingest.crt", r),
			fromState(paths.KeyFile, 0o600, "root", "root", "pki/issued/ingest.key", r),
		},
		Symlinks:  []Symlink{enable(IngestUnit, "multi-user.target")},
		Units:     []string{IngestUnit},
		Programs:  []Program{{Package: "github.com/appliance/appliance/cmd/ingest", Path: IngestBinary}},
		Listeners: []Listener{{Port: s.Ingest.MetricsPort, Proto: "tcp", Bind: Localhost, Purpose: "ingest metrics and health, loopback only", Setting: "ingest.metrics_port", Range: s.Ingest.Where.Attr("metrics_port")}},
		Checks: []Check{
			{Name: "ingest running", Kind: "unit", Unit: IngestUnit},
			{Name: "ingest healthy", Kind: "http", Port: s.Ingest.MetricsPort, URL: fmt.Sprintf("http://127.0.0.1:%d/healthz", s.Ingest.MetricsPort)},
		},
		Actions: []Action{restart(StageClients, IngestUnit, "its configuration, certificate, program or unit changed",
			ingest.ConfigPath, ingestDir+"/", IngestBinary, "/etc/systemd/system/"+IngestUnit)},
		Certs: []pki.Request{{Name: "ingest", Kind: pki.Client}},
	}
}

func cred(name string) string { return "$CREDENTIALS_DIRECTORY/" + name }

// IngestConfig is the configuration of the site's ingest service. The
// file paths in it point into $CREDENTIALS_DIRECTORY, where the unit
// (IngestUnitFile) loads them.
func IngestConfig(site *spec.Site) ingest.Config {
	in := site.InfluxDB
	scheme := "http"
	if in.Expose {
		// An exposed InfluxDB serves HTTPS only (with the site's
		// certificate, which names localhost too).
		scheme = "https"
	}
	c := ingest.Config{
		MQTT: ingest.MQTT{
			Broker:         net.JoinHostPort("localhost", strconv.Itoa(site.MQTT.Port)),
			ServerName:     "localhost",
			CAFile:         cred(ingest.CredCA),
			CertFile:       cred(ingest.CredCert),
			KeyFile:        cred(ingest.CredKey),
			ClientID:       ingest.DefaultClientID,
			Topic:          wire.TopicFilter,
			SessionExpiry:  ingest.Duration(ingest.DefaultSessionExpiry),
			ReceiveMaximum: ingest.DefaultReceiveMaximum,
			KeepAlive:      ingest.Duration(ingest.DefaultKeepAlive),
		},
		InfluxDB: ingest.InfluxDB{
			URL:     scheme + "://" + net.JoinHostPort("localhost", strconv.Itoa(in.Port)),
			Version: in.Version,
		},
		BatchSize:     site.Ingest.BatchSize,
		FlushInterval: ingest.Duration(site.Ingest.FlushInterval),
		Spool:         ingest.Spool{Dir: ingest.SpoolDir, MaxBytes: site.Ingest.SpoolSize},
		Listen:        net.JoinHostPort("127.0.0.1", strconv.Itoa(site.Ingest.MetricsPort)),
		Nodes:         map[string]ingest.Node{},
	}
	if in.Expose {
		c.InfluxDB.CAFile = cred(ingest.CredCA)
	}
	if site.Ingest.SharedSubscription {
		c.MQTT.SharedGroup = ingest.SharedGroup
	}
	if in.Version == 2 {
		c.InfluxDB.Org, c.InfluxDB.Bucket, c.InfluxDB.TokenFile = in.Org, in.Bucket, cred(ingest.CredToken)
	} else {
		c.InfluxDB.Database, c.InfluxDB.User, c.InfluxDB.PasswordFile = in.Bucket, ingest.User, cred(ingest.CredPassword)
	}
	for _, n := range site.Nodes {
		c.Nodes[n.Name] = ingest.Node{Sensor: n.Sensor.Type, Group: n.Group, Firmware: n.Firmware, Tags: n.Tags}
	}
	return c
}

// IngestUnitFile is the service's systemd unit. It runs as a dynamic user
// with no capabilities, a read-only system, loopback networking only, and
// its spool in /var/lib/appliance-ingest. The files in paths (readable by
// root only on the gateway) reach it as credentials. Its exposure in
// `systemd-analyze security` is 1.5 or lower (the test checks).
func IngestUnitFile(site string, paths IngestPaths) string {
	sb := Sandbox{
		DynamicUser: true, StateDirectory: "appliance-ingest", DirMode: "0700", UMask: "0077",
		Credentials: [][2]string{{ingest.CredCA, paths.CAFile}, {ingest.CredCert, paths.CertFile}, {ingest.CredKey, paths.KeyFile}},
		// The broker and InfluxDB are on this gateway.
		Localhost: true, PrivateIPC: true,
	}
	if paths.InfluxSecretFile != "" {
		// One file, named for either version: the config reads the one
		// its InfluxDB version needs.
		sb.Credentials = append(sb.Credentials, [2]string{ingest.CredToken, paths.InfluxSecretFile}, [2]string{ingest.CredPassword, paths.InfluxSecretFile})
	}
	return header("#", site) + fmt.Sprintf(`[Unit]
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
%s
[Install]
WantedBy=multi-user.target
`, IngestBinary, ingest.ConfigPath, sb.lines())
}
