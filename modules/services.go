package modules

import (
	"fmt"

	"github.com/appliance/appliance/pki"
	"github.com/appliance/appliance/spec"
	"github.com/appliance/appliance/state"
)

func init() {
	for _, info := range []Info{
		{"system", func() Module { return new(System) }},
		{"ssh", func() Module { return new(SSH) }},
		{"firewall", func() Module { return new(Firewall) }},
		{"mosquitto", func() Module { return new(Mosquitto) }},
		{"nginx", func() Module { return new(Nginx) }},
		{"influxdb", func() Module { return new(InfluxDB) }},
		{"grafana", func() Module { return new(Grafana) }},
		{"ingest", func() Module { return new(Ingest) }},
	} {
		Register(info)
	}
}

// Interface guards.
var (
	_ Module = (*System)(nil)
	_ Module = (*SSH)(nil)
	_ Module = (*Firewall)(nil)
	_ Module = (*Mosquitto)(nil)
	_ Module = (*Nginx)(nil)
	_ Module = (*InfluxDB)(nil)
	_ Module = (*Grafana)(nil)
	_ Module = (*Ingest)(nil)
)

// System is the base system: time, updates, the admin account, Wi-Fi.
type System struct{ site *spec.Site }

// ID implements Module.
func (*System) ID() string { return "system" }

// Decode implements Module.
func (m *System) Decode(s *spec.Site) bool { m.site = s; return true }

// Contribute implements Module.
func (m *System) Contribute() Contribution {
	s := m.site
	c := Contribution{
		Summary:  fmt.Sprintf("%s, %s, %s; admin %s; security updates", s.Gateway.Hostname, s.Gateway.Timezone, s.Gateway.Locale, s.Gateway.Admin.User),
		Packages: []string{"ca-certificates", "sudo", "systemd-timesyncd", "unattended-upgrades"},
		Units:    []string{"systemd-timesyncd.service", "unattended-upgrades.service"},
	}
	if s.Gateway.Network.WiFi != nil {
		c.Packages = append(c.Packages, "wpasupplicant")
	}
	if s.Gateway.Address == s.Gateway.Hostname+".local" {
		// Nodes and push find a DHCP gateway by its mDNS name.
		c.Packages = append(c.Packages, "avahi-daemon")
		c.Units = append(c.Units, "avahi-daemon.service")
		c.Listeners = append(c.Listeners, Listener{Port: 5353, Proto: "udp", Bind: Network, Purpose: "mDNS (" + s.Gateway.Address + ")"})
		c.Openings = append(c.Openings, Opening{Port: 5353, Proto: "udp", From: s.Firewall.MQTTFrom, Purpose: "mDNS"})
	}
	return c
}

// SSH is the OpenSSH server: keys only, host keys from the state.
type SSH struct{ site *spec.Site }

// ID implements Module.
func (*SSH) ID() string { return "ssh" }

// Decode implements Module.
func (m *SSH) Decode(s *spec.Site) bool { m.site = s; return true }

// Contribute implements Module.
func (m *SSH) Contribute() Contribution {
	s := m.site
	return Contribution{
		Summary:   "OpenSSH, keys only, host keys pinned by push",
		Packages:  []string{"openssh-server"},
		Units:     []string{"ssh.service"},
		Listeners: []Listener{{Port: s.SSH.Port, Proto: "tcp", Bind: Network, Purpose: "SSH", Setting: "ssh.port"}},
		Openings:  []Opening{{Port: s.SSH.Port, Proto: "tcp", From: s.Firewall.SSHFrom, RateLimit: true, Purpose: "SSH"}},
	}
}

// Firewall is nftables: inbound default drop, the modules' openings.
type Firewall struct{}

// ID implements Module.
func (*Firewall) ID() string { return "firewall" }

// Decode implements Module.
func (*Firewall) Decode(*spec.Site) bool { return true }

// Contribute implements Module.
func (*Firewall) Contribute() Contribution {
	return Contribution{
		Summary:  "nftables, inbound default drop (IPv4 and IPv6)",
		Packages: []string{"nftables"},
		Units:    []string{"nftables.service"},
	}
}

// Mosquitto is the MQTT broker: mutual TLS only.
type Mosquitto struct{ site *spec.Site }

// ID implements Module.
func (*Mosquitto) ID() string { return "mosquitto" }

// Decode implements Module.
func (m *Mosquitto) Decode(s *spec.Site) bool { m.site = s; return true }

// Contribute implements Module.
func (m *Mosquitto) Contribute() Contribution {
	s := m.site
	c := Contribution{
		Summary:   "MQTT over mutual TLS; each node publishes only under sensors/NAME/",
		Packages:  []string{"mosquitto"},
		Units:     []string{"mosquitto.service"},
		Listeners: []Listener{{Port: s.MQTT.Port, Proto: "tcp", Bind: Network, Purpose: "MQTT over mutual TLS", Setting: "mqtt.port"}},
		Openings:  []Opening{{Port: s.MQTT.Port, Proto: "tcp", From: s.Firewall.MQTTFrom, Purpose: "MQTT (TLS)"}},
		Certs:     []pki.Request{serverRequest("mosquitto", s)},
	}
	if s.MQTT.LocalPlainPort != 0 {
		c.Listeners = append(c.Listeners, Listener{Port: s.MQTT.LocalPlainPort, Proto: "tcp", Bind: Localhost, Purpose: "MQTT without TLS, loopback only", Setting: "mqtt.local_plain_port"})
	}
	// Every node's identity: the broker admits a client only with one.
	for _, n := range s.Nodes {
		c.Certs = append(c.Certs, pki.Request{Name: n.Name, Kind: pki.Node})
	}
	return c
}

// Nginx serves HTTPS: the OTA tree to nodes, Grafana to browsers.
type Nginx struct{ site *spec.Site }

// ID implements Module.
func (*Nginx) ID() string { return "nginx" }

// Decode implements Module.
func (m *Nginx) Decode(s *spec.Site) bool { m.site = s; return true }

// Contribute implements Module.
func (m *Nginx) Contribute() Contribution {
	s := m.site
	c := Contribution{
		Summary:   fmt.Sprintf("HTTPS; OTA files at %s for nodes with a client certificate", s.OTA.Path),
		Packages:  []string{"nginx"},
		Units:     []string{"nginx.service"},
		Listeners: []Listener{{Port: s.HTTPS.Port, Proto: "tcp", Bind: Network, Purpose: "HTTPS", Setting: "https.port"}},
		Openings:  []Opening{{Port: s.HTTPS.Port, Proto: "tcp", From: s.Firewall.HTTPSFrom, Purpose: "HTTPS"}},
		Certs:     []pki.Request{serverRequest("nginx", s)},
	}
	if s.Grafana != nil {
		c.Summary += fmt.Sprintf(", Grafana at %s", s.Grafana.Path)
	}
	if s.HTTPS.RedirectPort != 0 {
		c.Listeners = append(c.Listeners, Listener{Port: s.HTTPS.RedirectPort, Proto: "tcp", Bind: Network, Purpose: "HTTP, redirects to HTTPS only", Setting: "https.redirect_port"})
		c.Openings = append(c.Openings, Opening{Port: s.HTTPS.RedirectPort, Proto: "tcp", From: s.Firewall.HTTPSFrom, Purpose: "HTTP redirect"})
	}
	return c
}

// InfluxDB stores the readings: Debian's 1.x or InfluxData's 2.x.
type InfluxDB struct{ site *spec.Site }

// ID implements Module.
func (*InfluxDB) ID() string { return "influxdb" }

// Decode implements Module.
func (m *InfluxDB) Decode(s *spec.Site) bool { m.site = s; return true }

// Secrets of the InfluxDB module.
const (
	InfluxAdminPassword   = "influxdb-admin-password"
	InfluxAdminToken      = "influxdb-admin-token"
	InfluxIngestToken     = "influxdb-ingest-token"
	InfluxGrafanaToken    = "influxdb-grafana-token"
	InfluxIngestPassword  = "influxdb-ingest-password"
	InfluxGrafanaPassword = "influxdb-grafana-password"
)

// Contribute implements Module.
func (m *InfluxDB) Contribute() Contribution {
	s := m.site
	in := s.InfluxDB
	retention := "kept forever"
	if in.Retention > 0 {
		retention = "kept " + spec.FormatDuration(in.Retention)
	}
	c := Contribution{
		Certs:   []pki.Request{serverRequest("influxdb", s)},
		Secrets: []state.SecretWant{{Name: InfluxAdminPassword, Kind: state.Password}},
	}
	bind, purpose := Localhost, "InfluxDB HTTP API, loopback only"
	if in.Expose {
		bind, purpose = Network, "InfluxDB HTTPS API"
		c.Openings = append(c.Openings, Opening{Port: in.Port, Proto: "tcp", From: s.Firewall.HTTPSFrom, Purpose: "InfluxDB (TLS)"})
	}
	c.Listeners = []Listener{{Port: in.Port, Proto: "tcp", Bind: bind, Purpose: purpose, Setting: "influxdb.port"}}
	if in.Version == 2 {
		c.Summary = fmt.Sprintf("InfluxDB 2, org %s, bucket %s, %s", in.Org, in.Bucket, retention)
		c.Packages = []string{"influxdb2"}
		c.Units = []string{"influxdb.service"}
		c.Secrets = append(c.Secrets, state.SecretWant{Name: InfluxAdminToken, Kind: state.Token}, state.SecretWant{Name: InfluxIngestToken, Kind: state.Token})
		if s.Grafana != nil {
			c.Secrets = append(c.Secrets, state.SecretWant{Name: InfluxGrafanaToken, Kind: state.Token})
		}
	} else {
		c.Summary = fmt.Sprintf("InfluxDB 1, auth on, database %s, %s", in.Bucket, retention)
		c.Packages = []string{"influxdb"}
		c.Units = []string{"influxdb.service"}
		c.Secrets = append(c.Secrets, state.SecretWant{Name: InfluxIngestPassword, Kind: state.Password})
		if s.Grafana != nil {
			c.Secrets = append(c.Secrets, state.SecretWant{Name: InfluxGrafanaPassword, Kind: state.Password})
		}
	}
	return c
}

// Grafana shows the readings, behind Nginx.
type Grafana struct{ site *spec.Site }

// ID implements Module.
func (*Grafana) ID() string { return "grafana" }

// Decode implements Module.
func (m *Grafana) Decode(s *spec.Site) bool { m.site = s; return s.Grafana != nil }

// Secrets of the Grafana module.
const (
	GrafanaAdminPassword = "grafana-admin-password"
	GrafanaSecretKey     = "grafana-secret-key"
)

// Contribute implements Module.
func (m *Grafana) Contribute() Contribution {
	s := m.site
	return Contribution{
		Summary:   fmt.Sprintf("dashboards behind Nginx at %s; no anonymous access, no sign-up", s.Grafana.Path),
		Packages:  []string{"grafana"},
		Units:     []string{"grafana-server.service"},
		Listeners: []Listener{{Port: s.Grafana.Port, Proto: "tcp", Bind: Localhost, Purpose: "Grafana, loopback only (behind Nginx)", Setting: "grafana.port"}},
		Certs:     []pki.Request{serverRequest("grafana", s)},
		Secrets:   []state.SecretWant{{Name: GrafanaAdminPassword, Kind: state.Password}, {Name: GrafanaSecretKey, Kind: state.Token}},
	}
}

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
		Listeners: []Listener{{Port: s.Ingest.MetricsPort, Proto: "tcp", Bind: Localhost, Purpose: "ingest metrics and health, loopback only", Setting: "ingest.metrics_port"}},
		Certs:     []pki.Request{{Name: "ingest", Kind: pki.Client}},
	}
}
