package modules

import (
	"encoding/json"
	"fmt"

	"github.com/appliance/appliance/ingest"
	"github.com/appliance/appliance/pki"
	"github.com/appliance/appliance/spec"
)

func init() { Register(Info{"ingest", func() Module { return new(Ingest) }}) }

var _ Module = (*Ingest)(nil)

// Ingest is appliance's MQTT-to-InfluxDB service (package ingest).
type Ingest struct{ site *spec.Site }

// Where the ingest service's key material lies on the gateway: root's
// only; the unit hands it over as credentials.
const ingestDir = "/etc/appliance/ingest"

// ID implements Module.
func (*Ingest) ID() string { return "ingest" }

// Decode implements Module.
func (m *Ingest) Decode(s *spec.Site) bool { m.site = s; return true }

// Contribute implements Module.
func (m *Ingest) Contribute() Contribution {
	s := m.site
	r := s.Ingest.Where.Block
	paths := ingest.Paths{CAFile: ingestDir + "/ca.crt", CertFile: ingestDir + "/ingest.crt", KeyFile: ingestDir + "/ingest.key"}
	if s.InfluxDB.Version == 2 {
		// InfluxDB 2 made the token on the gateway (appliance-setup).
		paths.InfluxSecretFile = InfluxTokenDir + "/ingest-token"
	} else {
		paths.InfluxSecretFile = InfluxSecretPath(InfluxIngestPassword)
	}
	cfg := ingest.ConfigFor(s, paths)
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
			text(ingest.UnitPath, 0o644, "root", "root", ingest.Unit(paths), r),
			fromState(paths.CAFile, 0o600, "root", "root", "pki/ca.crt", r),
			fromState(paths.CertFile, 0o600, "root", "root", "pki/issued/ingest.crt", r),
			fromState(paths.KeyFile, 0o600, "root", "root", "pki/issued/ingest.key", r),
		},
		Symlinks:  []Symlink{enable(ingest.UnitName, "multi-user.target")},
		Units:     []string{ingest.UnitName},
		Programs:  []Program{{Package: "github.com/appliance/appliance/cmd/ingest", Path: ingest.BinaryPath}},
		Listeners: []Listener{{Port: s.Ingest.MetricsPort, Proto: "tcp", Bind: Localhost, Purpose: "ingest metrics and health, loopback only", Setting: "ingest.metrics_port", Range: s.Ingest.Where.Attr("metrics_port")}},
		Checks: []Check{
			{Name: "ingest running", Kind: "unit", Unit: ingest.UnitName},
			{Name: "ingest healthy", Kind: "tcp", Port: s.Ingest.MetricsPort},
		},
		Certs: []pki.Request{{Name: "ingest", Kind: pki.Client}},
	}
}
