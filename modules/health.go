package modules

import (
	"encoding/json"
	"fmt"
	"net"
	"sort"
	"strconv"
	"time"

	"github.com/appliance/appliance/ingest"
	"github.com/appliance/appliance/ingest/health"
	"github.com/appliance/appliance/pki"
	"github.com/appliance/appliance/spec"
)

func init() { Register(Info{"health", func() Module { return new(Health) }}) }

var (
	_ Module    = (*Health)(nil)
	_ Completer = (*Health)(nil)
)

// Health is the gateway's watch on itself (package ingest/health): a
// program beside ingest that writes the site's health into the
// readings' database, for the "Site health" dashboard, the alert rules
// and appliance status.
type Health struct{ site *spec.Site }

// Where the health program lives on the gateway.
const (
	HealthUnit   = "appliance-health.service"
	HealthBinary = "/usr/bin/appliance-health"
	// healthCerts holds public copies of the site's certificates, the
	// same bytes the services serve, for their expiry.
	healthCerts = "/etc/appliance/health/certs"
	// HealthInterval is how often the program writes a snapshot.
	HealthInterval = 30 * time.Second
)

// HealthJournal is the command that follows Mosquitto's log and Nginx's
// OTA log in the journal.
var HealthJournal = []string{"journalctl", "--output=json", "--follow", "--no-pager", "--quiet",
	"_SYSTEMD_UNIT=mosquitto.service", "+", "SYSLOG_IDENTIFIER=nginx_ota"}

// ID implements Module.
func (*Health) ID() string { return "health" }

// Decode implements Module.
func (m *Health) Decode(s *spec.Site) bool { m.site = s; return true }

// Contribute implements Module; Complete adds the certificates.
func (m *Health) Contribute() Contribution {
	s := m.site
	r := s.Ingest.Where.Block
	return Contribution{
		Summary:  fmt.Sprintf("site health every %s into InfluxDB: nodes, refused clients, OTA, certificates, ingest, disk", spec.FormatDuration(HealthInterval)),
		Symlinks: []Symlink{enable(HealthUnit, "multi-user.target")},
		Units:    []string{HealthUnit},
		Programs: []Program{{Package: "github.com/appliance/appliance/cmd/appliance-health", Path: HealthBinary}},
		Files: []File{
			text("/etc/systemd/system/"+HealthUnit, 0o644, "root", "root", HealthUnitFile(s.Name, influxSecretFile(s)), r),
		},
		Checks: []Check{{Name: "health running", Kind: "unit", Unit: HealthUnit}},
		Actions: []Action{restart(StageClients, HealthUnit, "its configuration, certificates, program or unit changed",
			health.ConfigPath, healthCerts+"/", HealthBinary, "/etc/systemd/system/"+HealthUnit)},
	}
}

// Complete implements Completer: the program watches every certificate
// the other modules ask of the state, except the nodes', which it reads
// off their OTA requests.
func (m *Health) Complete(own *Contribution, all []Contribution) {
	s := m.site
	r := s.Ingest.Where.Block
	certs := []health.Certificate{{Name: "ca", Kind: "ca", File: healthCerts + "/ca.crt"}}
	own.Files = append(own.Files, fromState(healthCerts+"/ca.crt", 0o644, "root", "root", "pki/ca.crt", r))
	var reqs []pki.Request
	for _, c := range all {
		reqs = append(reqs, c.Certs...)
	}
	sort.SliceStable(reqs, func(i, j int) bool { return reqs[i].Name < reqs[j].Name })
	seen := map[string]bool{}
	for _, q := range reqs {
		if q.Kind == pki.Node || seen[q.Name] {
			continue
		}
		seen[q.Name] = true
		kind := "server"
		if q.Kind == pki.Client {
			kind = "client"
		}
		p := healthCerts + "/" + q.Name + ".crt"
		certs = append(certs, health.Certificate{Name: q.Name, Kind: kind, File: p})
		own.Files = append(own.Files, fromState(p, 0o644, "root", "root", "pki/issued/"+q.Name+".crt", r))
	}
	js, err := json.MarshalIndent(HealthConfig(s, certs), "", "  ")
	if err != nil {
		panic(err)
	}
	own.Files = append(own.Files, text(health.ConfigPath, 0o644, "root", "root", string(js)+"\n", r))
}

// influxSecretFile is the InfluxDB secret the health program writes
// with: ingest's, whose account may write the readings' database.
func influxSecretFile(s *spec.Site) string {
	if s.InfluxDB.Version == 2 {
		return InfluxTokenDir + "/ingest-token"
	}
	return InfluxSecretPath(InfluxIngestPassword)
}

// HealthConfig is the health program's configuration for a site.
func HealthConfig(s *spec.Site, certs []health.Certificate) health.Config {
	in := IngestConfig(s).InfluxDB
	c := health.Config{
		Site:          s.Name,
		Interval:      health.Duration(HealthInterval),
		IngestMetrics: "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Ingest.MetricsPort)) + "/metrics",
		// The database, the spool and the OTA tree share the root file
		// system.
		DataPath:     "/var/lib",
		Journal:      HealthJournal,
		Certificates: certs,
		Nodes:        map[string]health.Node{},
		OTAPath:      s.OTA.Path,
		OTADir:       OTADir,
		StateDir:     health.StateDir,
		InfluxDB: health.InfluxDB{URL: in.URL, Version: in.Version, Org: in.Org, Bucket: in.Bucket,
			Database: in.Database, User: in.User},
	}
	if in.CAFile != "" {
		c.InfluxDB.CAFile = cred(ingest.CredCA)
	}
	if s.InfluxDB.Version == 2 {
		c.InfluxDB.TokenFile = cred(ingest.CredToken)
	} else {
		c.InfluxDB.PasswordFile, c.InfluxDB.RetentionPolicy = cred(ingest.CredPassword), InfluxRetentionPolicy
	}
	for _, n := range s.Nodes {
		c.Nodes[n.Name] = health.Node{Group: n.Group, Interval: health.Duration(n.Interval), Firmware: n.Firmware}
	}
	return c
}

// HealthUnitFile is the program's systemd unit: a dynamic user in the
// journal's group (to follow Mosquitto's and Nginx's logs) and in
// www-data's (to read the OTA tree's manifests), loopback only, a
// read-only system but for its state folder. Its exposure in
// `systemd-analyze security` is 1.5 or lower (the test checks).
func HealthUnitFile(site, influxSecret string) string {
	sb := Sandbox{
		DynamicUser: true, StateDirectory: "appliance-health", DirMode: "0700", UMask: "0077",
		SupplementaryGroups: []string{"systemd-journal", "www-data"},
		Credentials: [][2]string{{ingest.CredToken, influxSecret}, {ingest.CredPassword, influxSecret},
			{ingest.CredCA, healthCerts + "/ca.crt"}},
		Localhost: true, PrivateIPC: true,
	}
	return header("#", site) + fmt.Sprintf(`[Unit]
Description=appliance health (the site's own health into InfluxDB)
Documentation=file:///usr/share/doc/appliance/health.md
After=network-online.target influxdb.service appliance-influxdb-setup.service %s
Wants=network-online.target

[Service]
ExecStart=%s -config %s
Restart=always
RestartSec=5s
TimeoutStopSec=20s
%s
[Install]
WantedBy=multi-user.target
`, IngestUnit, HealthBinary, health.ConfigPath, sb.lines())
}
