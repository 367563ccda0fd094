package modules

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/appliance/appliance/influxsetup"
	"github.com/appliance/appliance/pki"
	"github.com/appliance/appliance/spec"
	"github.com/appliance/appliance/state"
)

func init() { Register(Info{"influxdb", func() Module { return new(InfluxDB) }}) }

var (
	_ Module      = (*InfluxDB)(nil)
	_ Provisioner = (*InfluxDB)(nil)
)

// InfluxDB stores the readings: Debian's 1.x or InfluxData's 2.x.
type InfluxDB struct {
	site    *spec.Site
	grafana bool
}

// Secrets of the InfluxDB module, in the state's secrets/ folder.
const (
	InfluxAdminPassword   = "influxdb-admin-password"
	InfluxAdminToken      = "influxdb-admin-token"
	InfluxIngestPassword  = "influxdb-ingest-password"
	InfluxGrafanaPassword = "influxdb-grafana-password"
)

// Where the gateway keeps InfluxDB's setup and its secrets.
const (
	influxSecrets     = "/etc/appliance/secrets"
	influxSetupConfig = "/etc/appliance/influxdb-setup.json"
	// InfluxTokenDir holds the v2 tokens InfluxDB makes on the gateway.
	InfluxTokenDir = "/var/lib/appliance-influxdb"
	// InfluxRetentionPolicy is the v1 retention policy ingest writes to.
	InfluxRetentionPolicy = "appliance"
	influxUID             = 902
	influxGID             = 902
)

// InfluxSecretPath is where a state secret of this module lands on the
// gateway, for the units that load it as a credential.
func InfluxSecretPath(name string) string { return influxSecrets + "/" + name }

// ID implements Module.
func (*InfluxDB) ID() string { return "influxdb" }

// Decode implements Module.
func (m *InfluxDB) Decode(s *spec.Site) bool { m.site = s; return true }

// Provision implements Provisioner: Grafana gets a read-only account
// when it is on.
func (m *InfluxDB) Provision(ctx *Context) error {
	m.grafana = ctx.Enabled("grafana")
	return nil
}

// URL is where the gateway's own clients reach InfluxDB.
// influxCA verifies an exposed InfluxDB's HTTPS on the gateway.
func influxCA(s *spec.Site) string {
	if s.InfluxDB.Expose {
		return "/etc/appliance/ca.crt"
	}
	return ""
}

func influxURL(s *spec.Site) string {
	scheme := "http"
	if s.InfluxDB.Expose {
		scheme = "https"
	}
	return fmt.Sprintf("%s://localhost:%d", scheme, s.InfluxDB.Port)
}

// Contribute implements Module.
func (m *InfluxDB) Contribute() Contribution {
	s := m.site
	in := s.InfluxDB
	r := in.Where.Block
	retention := "kept forever"
	if in.Retention > 0 {
		retention = "kept " + spec.FormatDuration(in.Retention)
	}
	bind := "127.0.0.1"
	listener := Listener{Port: in.Port, Proto: "tcp", Bind: Localhost, Purpose: "InfluxDB HTTP API, loopback only", Setting: "influxdb.port", Range: in.Where.Attr("port")}
	c := Contribution{
		Users:  []User{{Name: "influxdb", UID: influxUID, Group: "influxdb", Home: "/var/lib/influxdb", Shell: "/usr/sbin/nologin", Comment: "InfluxDB"}},
		Groups: []Group{{Name: "influxdb", GID: influxGID}},
		Dirs: []Dir{
			{Path: "/var/lib/influxdb", Mode: 0o750, Owner: "influxdb", Group: "influxdb"},
			{Path: influxSecrets, Mode: 0o700, Owner: "root", Group: "root"},
		},
		Units:    []string{"influxdb.service", "appliance-influxdb-setup.service"},
		Certs:    []pki.Request{serverRequest("influxdb", s)},
		Secrets:  []state.SecretWant{{Name: InfluxAdminPassword, Kind: state.Password}},
		Programs: []Program{{Package: "github.com/appliance/appliance/cmd/appliance-setup", Path: "/usr/bin/appliance-setup"}},
		Checks: []Check{
			{Name: "influxdb running", Kind: "unit", Unit: "influxdb.service"},
			{Name: "influxdb set up", Kind: "unit", Unit: "appliance-influxdb-setup.service"},
			{Name: "InfluxDB answers", Kind: "http", Port: in.Port, URL: influxURL(s) + "/ping", CAFile: influxCA(s)},
		},
		// The set-up is a oneshot: restarting it runs it again, after
		// InfluxDB is back.
		Actions: []Action{
			restart(StageServices, "influxdb.service", "its configuration or certificate changed", "/etc/influxdb/", dropInPath("influxdb.service")),
			restart(StageSetup, "appliance-influxdb-setup.service", "the database's set-up, accounts or secrets changed",
				influxSetupConfig, influxSecrets+"/", "/usr/bin/appliance-setup", "/etc/systemd/system/appliance-influxdb-setup.service"),
		},
		Symlinks: []Symlink{
			enableVendor("influxdb.service", "multi-user.target"),
			enable("appliance-influxdb-setup.service", "multi-user.target"),
		},
	}
	if in.Expose {
		bind = ""
		listener.Bind, listener.Purpose = Network, "InfluxDB HTTPS API"
		c.Openings = append(c.Openings, Opening{Port: in.Port, Proto: "tcp", From: s.Firewall.HTTPSFrom, Purpose: "InfluxDB (TLS)"})
		c.Files = append(c.Files,
			fromState("/etc/influxdb/tls/server.crt", 0o644, "root", "root", "pki/issued/influxdb.crt", r),
			fromState("/etc/influxdb/tls/server.key", 0o640, "root", "influxdb", "pki/issued/influxdb.key", r),
			fromState("/etc/appliance/ca.crt", 0o644, "root", "root", "pki/ca.crt", r))
	}
	c.Listeners = []Listener{listener}
	data := map[string]any{"Header": headerLine("#", s.Name), "Site": s.Name, "Bind": bind, "Port": in.Port, "Expose": in.Expose}

	setup := influxsetup.Config{
		Version: in.Version, URL: influxURL(s), Database: in.Bucket, Retention: influxsetup.Duration(in.Retention),
		AdminUser: "admin", AdminPassword: "credential:" + InfluxAdminPassword,
	}
	if in.Expose {
		setup.CAFile = "/etc/appliance/ca.crt"
	}
	creds := []string{InfluxAdminPassword}
	sandbox := Sandbox{User: "influxdb", Group: "influxdb", ReadWrite: []string{"/var/lib/influxdb"}, Capabilities: bindCaps(in.Port)}
	if in.Version == 2 {
		c.Summary = fmt.Sprintf("InfluxDB 2, org %s, bucket %s, %s", in.Org, in.Bucket, retention)
		c.Packages = []string{"influxdb2"}
		c.Secrets = append(c.Secrets, state.SecretWant{Name: InfluxAdminToken, Kind: state.Token})
		creds = append(creds, InfluxAdminToken)
		setup.Org, setup.AdminToken = in.Org, "credential:"+InfluxAdminToken
		setup.Tokens = []influxsetup.Token{{Description: "appliance ingest", Action: "write", File: InfluxTokenDir + "/ingest-token"}}
		if m.grafana {
			setup.Tokens = append(setup.Tokens, influxsetup.Token{Description: "appliance grafana", Action: "read", File: InfluxTokenDir + "/grafana-token", EnvFile: InfluxTokenDir + "/grafana.env", EnvVar: "INFLUX_TOKEN"})
		}
		c.Files = append(c.Files, text("/etc/influxdb/config.toml", 0o644, "root", "root", render("influxdb2.toml", data), r))
		// InfluxData's unit starts a script that polls with curl and
		// forks; influxd itself needs neither.
		sandbox.Exec = map[string]string{"ExecStart": "/usr/bin/influxd"}
		sandbox.Extra = []string{"Type=simple", "PIDFile=", "Environment=INFLUXD_CONFIG_PATH=/etc/influxdb/config.toml"}
	} else {
		c.Summary = fmt.Sprintf("InfluxDB 1, auth on, database %s, %s", in.Bucket, retention)
		c.Packages = []string{"influxdb"}
		c.Secrets = append(c.Secrets, state.SecretWant{Name: InfluxIngestPassword, Kind: state.Password})
		setup.RetentionPolicy = InfluxRetentionPolicy
		setup.Users = []influxsetup.User{{Name: "ingest", Password: "credential:" + InfluxIngestPassword, Privilege: "WRITE"}}
		creds = append(creds, InfluxIngestPassword)
		if m.grafana {
			c.Secrets = append(c.Secrets, state.SecretWant{Name: InfluxGrafanaPassword, Kind: state.Password})
			setup.Users = append(setup.Users, influxsetup.User{Name: "grafana", Password: "credential:" + InfluxGrafanaPassword, Privilege: "READ"})
			creds = append(creds, InfluxGrafanaPassword)
		}
		c.Files = append(c.Files, text("/etc/influxdb/influxdb.conf", 0o644, "root", "root", render("influxdb.conf", data), r))
	}
	for _, sw := range c.Secrets {
		c.Files = append(c.Files, fromState(InfluxSecretPath(sw.Name), 0o600, "root", "root", "secrets/"+sw.Name, r))
	}
	js, err := json.MarshalIndent(setup, "", "  ")
	if err != nil {
		panic(err)
	}
	c.Files = append(c.Files,
		text(influxSetupConfig, 0o644, "root", "root", string(js)+"\n", r),
		text("/etc/systemd/system/appliance-influxdb-setup.service", 0o644, "root", "root", setupUnit(s.Name, creds, in.Version == 2), r),
		text(dropInPath("influxdb.service"), 0o644, "root", "root", sandbox.dropIn(s.Name, "influxdb.service"), r),
	)
	return c
}

// setupUnit runs appliance-setup influxdb after InfluxDB starts, as a
// throw-away user that sees the secrets only as credentials.
func setupUnit(site string, creds []string, v2 bool) string {
	var b strings.Builder
	b.WriteString(header("#", site))
	b.WriteString(`[Unit]
Description=Set up InfluxDB for appliance: database, retention, accounts
After=influxdb.service
Requires=influxdb.service
Before=appliance-ingest.service grafana-server.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/bin/appliance-setup influxdb --config ` + influxSetupConfig + "\n")
	sb := Sandbox{DynamicUser: true, Localhost: true}
	for _, c := range creds {
		sb.Credentials = append(sb.Credentials, [2]string{c, InfluxSecretPath(c)})
	}
	if v2 {
		sb.StateDirectory = strings.TrimPrefix(InfluxTokenDir, "/var/lib/")
	}
	b.WriteString(sb.lines())
	b.WriteString("TimeoutStartSec=120\n\n[Install]\nWantedBy=multi-user.target\n")
	return b.String()
}
