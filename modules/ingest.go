package modules

import (
	"fmt"

	"github.com/appliance/appliance/pki"
	"github.com/appliance/appliance/spec"
)

func init() { Register(Info{"ingest", func() Module { return new(Ingest) }}) }

var _ Module = (*Ingest)(nil)

// Ingest is appliance's MQTT-to-InfluxDB service.
type Ingest struct{ site *spec.Site }

// ID implements Module.
func (*Ingest) ID() string { return "ingest" }

// Decode implements Module.
func (m *Ingest) Decode(s *spec.Site) bool { m.site = s; return true }

// Contribute implements Module.
func (m *Ingest) Contribute() Contribution {
	s := m.site
	return Contribution{
		Summary:   fmt.Sprintf("MQTT → InfluxDB, batches of %d, spool %s", s.Ingest.BatchSize, spec.FormatSize(s.Ingest.SpoolSize)),
		Units:     []string{"appliance-ingest.service"},
		Listeners: []Listener{{Port: s.Ingest.MetricsPort, Proto: "tcp", Bind: Localhost, Purpose: "ingest metrics and health, loopback only", Setting: "ingest.metrics_port", Range: s.Ingest.Where.Attr("metrics_port")}},
		Certs:     []pki.Request{{Name: "ingest", Kind: pki.Client}},
	}
}
