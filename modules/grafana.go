package modules

import (
	"encoding/json"
	"fmt"
	"strings"

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
	GrafanaDashboardUID  = "appliance-sensors"
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
	dash, err := json.MarshalIndent(Dashboard(s), "", "  ")
	if err != nil {
		panic(err)
	}
	return Contribution{
		Summary:  fmt.Sprintf("dashboards behind Nginx at %s; no anonymous access, no sign-up", g.Path),
		Packages: []string{"grafana"},
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
			text(grafanaDashboards+"/sensors.json", 0o644, "root", "root", string(dash)+"\n", r),
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

// Dashboard is the provisioned dashboard: temperature and humidity per
// node, when each node was last heard from, and readings per minute as a
// measure of the ingest service's health.
func Dashboard(s *spec.Site) map[string]any {
	flux := s.InfluxDB.Version == 2
	q := func(influxQL, fluxQ string) map[string]any {
		if flux {
			return map[string]any{"refId": "A", "query": fluxQ, "datasource": dsRef()}
		}
		return map[string]any{"refId": "A", "query": influxQL, "rawQuery": true, "resultFormat": "time_series", "datasource": dsRef()}
	}
	bucket := s.InfluxDB.Bucket
	series := func(field string) map[string]any {
		return q(
			fmt.Sprintf(`SELECT mean("%s") FROM "%s" WHERE $timeFilter GROUP BY time($__interval), "%s" fill(null)`, field, Measurement, TagNode),
			fmt.Sprintf(`from(bucket: %q) |> range(start: v.timeRangeStart, stop: v.timeRangeStop) |> filter(fn: (r) => r._measurement == %q and r._field == %q) |> group(columns: [%q]) |> aggregateWindow(every: v.windowPeriod, fn: mean, createEmpty: false)`, bucket, Measurement, field, TagNode))
	}
	lastSeen := q(
		fmt.Sprintf(`SELECT last("seq") AS "sequence", last("rssi") AS "rssi" FROM "%s" WHERE $timeFilter GROUP BY "%s"`, Measurement, TagNode),
		fmt.Sprintf(`from(bucket: %q) |> range(start: v.timeRangeStart, stop: v.timeRangeStop) |> filter(fn: (r) => r._measurement == %q and r._field == "seq") |> group(columns: [%q]) |> last() |> keep(columns: ["_time", %q, "_value"])`, bucket, Measurement, TagNode, TagNode))
	lastSeen["resultFormat"] = "table"
	rate := q(
		fmt.Sprintf(`SELECT count("seq") FROM "%s" WHERE $timeFilter GROUP BY time(1m) fill(0)`, Measurement),
		fmt.Sprintf(`from(bucket: %q) |> range(start: v.timeRangeStart, stop: v.timeRangeStop) |> filter(fn: (r) => r._measurement == %q and r._field == "seq") |> group() |> aggregateWindow(every: 1m, fn: count, createEmpty: true)`, bucket, Measurement))
	panel := func(id int, typ, title, unit string, x, y int, target map[string]any) map[string]any {
		return map[string]any{
			"id": id, "type": typ, "title": title, "datasource": dsRef(),
			"gridPos":     map[string]int{"x": x, "y": y, "w": 12, "h": 8},
			"targets":     []any{target},
			"fieldConfig": map[string]any{"defaults": map[string]any{"unit": unit}, "overrides": []any{}},
		}
	}
	return map[string]any{
		"uid": GrafanaDashboardUID, "title": "Sensors — " + s.Name, "tags": []string{"appliance"},
		"timezone": "browser", "schemaVersion": 39, "version": 1, "editable": false, "refresh": "1m",
		"time": map[string]string{"from": "now-24h", "to": "now"},
		"panels": []any{
			panel(1, "timeseries", "Temperature", "celsius", 0, 0, series("temperature")),
			panel(2, "timeseries", "Humidity", "humidity", 12, 0, series("humidity")),
			panel(3, "table", "Last seen", "none", 0, 8, lastSeen),
			panel(4, "timeseries", "Readings per minute (ingest health)", "short", 12, 8, rate),
		},
		"description": "Provisioned by appliance; " + strings.TrimSpace(s.Description),
	}
}

func dsRef() map[string]string {
	return map[string]string{"type": "influxdb", "uid": GrafanaDatasourceUID}
}
