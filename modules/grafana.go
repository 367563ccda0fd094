package modules

import (
	"encoding/json"
	"fmt"

	"github.com/grafana/grafana-foundation-sdk/go/dashboard"

	"github.com/appliance/appliance/pki"
	"github.com/appliance/appliance/spec"
	"github.com/appliance/appliance/state"
	yaml "go.yaml.in/yaml/v3"
)

func init() { Register(Info{"grafana", func() Module { return new(Grafana) }}) }

var _ Module = (*Grafana)(nil)

// Grafana shows the readings, behind Nginx.
type Grafana struct{ site *spec.Site }

// Secrets of the Grafana module.
const (
	GrafanaAdminPassword = "grafana-admin-password"
	GrafanaSecretKey     = "grafana-secret-key"
)

// The provisioned data source and dashboard.
const (
	GrafanaDatasourceUID = "appliance-influxdb"
	grafanaDashboards    = "/etc/grafana/dashboards/appliance"
	grafanaUID           = 903
	grafanaGID           = 903
)

// The readings as the ingest service writes them (docs/wire.md).
const (
	Measurement = "reading"
	TagNode     = "node"
)

// ID implements Module.
func (*Grafana) ID() string { return "grafana" }

// Decode implements Module.
func (m *Grafana) Decode(s *spec.Site) bool { m.site = s; return s.Grafana != nil }

// Contribute implements Module.
func (m *Grafana) Contribute() Contribution {
	s := m.site
	g := s.Grafana
	r := g.Where.Block
	host := s.Gateway.Hostname
	root := fmt.Sprintf("https://%s", host)
	if s.HTTPS.Port != 443 {
		root += fmt.Sprintf(":%d", s.HTTPS.Port)
	}
	data := map[string]any{
		"Header": headerLine(";", s.Name), "Site": s.Name, "Port": g.Port, "Domain": host,
		"RootURL": root + g.Path, "SubPath": g.Path != "/", "InfluxPort": s.InfluxDB.Port,
		"AdminPassword": secretRef("secrets/" + GrafanaAdminPassword),
		"SecretKey":     secretRef("secrets/" + GrafanaSecretKey),
		"SMTP":          smtpData(s),
	}
	sandbox := Sandbox{
		User: "grafana", Group: "grafana", ReadWrite: []string{"/var/lib/grafana", "/var/log/grafana"},
		RuntimeDirectory: "grafana", NoMemoryDenyWriteExecute: true,
	}
	dsYAML, envFile := grafanaDatasource(s)
	if envFile != "" {
		sandbox.Extra = append(sandbox.Extra, "EnvironmentFile="+envFile)
	}
	provider, _ := yaml.Marshal(map[string]any{
		"apiVersion": 1,
		"providers": []any{map[string]any{
			"name": "appliance", "orgId": 1, "folder": "appliance", "type": "file",
			"disableDeletion": true, "allowUiUpdates": false, "updateIntervalSeconds": 60,
			"options": map[string]any{"path": grafanaDashboards},
		}},
	})
	dashboards := map[string]string{}
	//lint:ignore SA1019 the classic dashboard model is what Grafana's file provisioning reads.
	for name, build := range map[string]func(*spec.Site) (dashboard.Dashboard, error){"sensors.json": Dashboard, "health.json": HealthDashboard} {
		d, err := build(s)
		if err != nil {
			panic(fmt.Sprintf("modules: dashboard %s: %v", name, err)) // fixed and tested
		}
		b, _ := json.MarshalIndent(d, "", "  ")
		dashboards[name] = string(b) + "\n"
	}
	alerts := text(grafanaAlerting, 0o640, "root", "grafana", header("#", s.Name)+alertingYAML(s), r)
	// A webhook's URL may carry a token.
	alerts.Sensitive = g.Alerts.Webhook.IsSet()
	return Contribution{
		Summary:  fmt.Sprintf("dashboards and health alerts behind Nginx at %s; no anonymous access, no sign-up", g.Path),
		Packages: grafanaPackages(g),
		Users:    []User{{Name: "grafana", UID: grafanaUID, Group: "grafana", Home: "/usr/share/grafana", Shell: "/usr/sbin/nologin", Comment: "Grafana"}},
		Groups:   []Group{{Name: "grafana", GID: grafanaGID}},
		Dirs: []Dir{
			{Path: "/var/lib/grafana", Mode: 0o750, Owner: "grafana", Group: "grafana"},
			{Path: "/var/log/grafana", Mode: 0o750, Owner: "grafana", Group: "grafana"},
		},
		Files: []File{
			withSecrets("/etc/grafana/grafana.ini", 0o640, "root", "grafana", render("grafana.ini", data), r),
			withSecrets("/etc/grafana/provisioning/datasources/appliance.yaml", 0o640, "root", "grafana", header("#", s.Name)+dsYAML, r),
			text("/etc/grafana/provisioning/dashboards/appliance.yaml", 0o644, "root", "root", header("#", s.Name)+string(provider), r),
			text(grafanaDashboards+"/sensors.json", 0o644, "root", "root", dashboards["sensors.json"], r),
			text(grafanaDashboards+"/health.json", 0o644, "root", "root", dashboards["health.json"], r),
			alerts,
			text(dropInPath("grafana-server.service"), 0o644, "root", "root", sandbox.dropIn(s.Name, "grafana-server.service"), r),
		},
		Symlinks:  []Symlink{enableVendor("grafana-server.service", "multi-user.target")},
		Units:     []string{"grafana-server.service"},
		Listeners: []Listener{{Port: g.Port, Proto: "tcp", Bind: Localhost, Purpose: "Grafana, loopback only (behind Nginx)", Setting: "grafana.port", Range: g.Where.Attr("port")}},
		Checks: []Check{
			{Name: "grafana running", Kind: "unit", Unit: "grafana-server.service"},
			{Name: "Grafana answers", Kind: "tcp", Port: g.Port},
		},
		Actions: []Action{restart(StageClients, "grafana-server.service", "its configuration, provisioning or dashboards changed", "/etc/grafana/", dropInPath("grafana-server.service"))},
		Certs:   []pki.Request{serverRequest("grafana", s)},
		Secrets: []state.SecretWant{{Name: GrafanaAdminPassword, Kind: state.Password}, {Name: GrafanaSecretKey, Kind: state.Token}},
	}
}

// grafanaDatasource provisions the InfluxDB data source with the
// read-only account: InfluxQL with a password from the state on 1.x,
// Flux with the token InfluxDB made on the gateway on 2.x (read from the
// environment file the setup wrote).
func grafanaDatasource(s *spec.Site) (yamlText, envFile string) {
	ds := map[string]any{
		"name": "InfluxDB", "uid": GrafanaDatasourceUID, "type": "influxdb", "access": "proxy",
		"url": influxURL(s), "isDefault": true, "editable": false,
	}
	if s.InfluxDB.Version == 2 {
		ds["jsonData"] = map[string]any{"version": "Flux", "organization": s.InfluxDB.Org, "defaultBucket": s.InfluxDB.Bucket, "tlsAuthWithCACert": s.InfluxDB.Expose}
		ds["secureJsonData"] = map[string]any{"token": "$INFLUX_TOKEN"}
		envFile = InfluxTokenDir + "/grafana.env"
	} else {
		ds["database"] = s.InfluxDB.Bucket
		ds["user"] = "grafana"
		ds["jsonData"] = map[string]any{"httpMode": "POST", "tlsAuthWithCACert": s.InfluxDB.Expose}
		ds["secureJsonData"] = map[string]any{"password": secretRef("secrets/" + InfluxGrafanaPassword)}
	}
	b, _ := yaml.Marshal(map[string]any{
		"apiVersion":        1,
		"deleteDatasources": []any{map[string]any{"name": "InfluxDB", "orgId": 1}},
		"datasources":       []any{ds},
	})
	return string(b), envFile
}

// grafanaPackages adds the public roots where Grafana sends alerts out:
// its webhook is https and its SMTP server is reached over TLS, both
// verified against the system's roots.
func grafanaPackages(g *spec.Grafana) []string {
	if g.Alerts.Any() {
		return []string{"grafana", "ca-certificates"}
	}
	return []string{"grafana"}
}
