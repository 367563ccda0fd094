package generation

import (
	"strings"
	"testing"
)

func valid() *Manifest {
	return &Manifest{
		Format: Format, Generation: 2,
		Entries: []Entry{
			{Path: "/etc/mosquitto", Type: Dir, Mode: 0o755, Owner: "root", Group: "root"},
			{Path: "/etc/mosquitto/mosquitto.conf", Type: File, Mode: 0o644, Owner: "root", Group: "mosquitto", SHA256: strings.Repeat("a", 64)},
		},
		Users:    []User{{Name: "mosquitto", UID: 990, Group: "mosquitto", Home: "/var/lib/mosquitto", Shell: "/usr/sbin/nologin", Comment: "MQTT broker"}},
		Groups:   []Group{{Name: "mosquitto", GID: 990}},
		Packages: []Package{{Name: "libstdc++6", Version: "14.2.0-19", Arch: "arm64", SHA256: strings.Repeat("b", 64)}},
		Actions: []Action{
			{Paths: []string{"/etc/mosquitto/"}, Unit: "mosquitto.service", Do: "reload", Why: "config"},
			{Paths: []string{"/etc/appliance/influxdb-setup.json"}, Run: []string{"/usr/bin/appliance-setup", "influxdb"}, Why: "setup"},
		},
		Checks: []Check{
			{Name: "broker", Kind: "unit", Unit: "mosquitto.service"},
			{Name: "mqtt", Kind: "tls", Port: 8883, ServerName: "gw", CAFile: "/etc/mosquitto/certs/ca.crt", CertFile: "/etc/appliance/ingest.crt", KeyFile: "/etc/appliance/ingest.key"},
			{Name: "ingest", Kind: "http", URL: "http://127.0.0.1:9100/healthz"},
			{Name: "system", Kind: "system"},
		},
	}
}

// TestValidate: what apply hands to other programs or writes is
// refused when it could pass for an option, a field separator or a
// path elsewhere; the valid manifest passes.
func TestValidate(t *testing.T) {
	if err := valid().Validate(); err != nil {
		t.Fatalf("a valid manifest: %v", err)
	}
	cases := []struct {
		name   string
		change func(m *Manifest)
		want   string
	}{
		{"package name that climbs", func(m *Manifest) { m.Packages[0].Name = "../x" }, `package "../x": not a Debian package name`},
		{"entry in apply's folder", func(m *Manifest) { m.Entries[0].Path = "/var/lib/appliance/store" }, "which apply keeps for itself"},
		{"entry under apply's staging", func(m *Manifest) { m.Entries[0].Path = "/var/lib/appliance/staging/manifest.json" }, "which apply keeps for itself"},
		{"apply's own folder", func(m *Manifest) { m.Entries[0].Path = "/var/lib/appliance" }, "apply keeps for itself"},
		{"group name that is an option", func(m *Manifest) { m.Groups[0].Name = "-g" }, `group "-g"`},
		{"GID out of range", func(m *Manifest) { m.Groups[0].GID = 65534 }, "GID 65534"},
		{"user name that is an option", func(m *Manifest) { m.Users[0].Name = "--root" }, `user "--root"`},
		{"UID below zero", func(m *Manifest) { m.Users[0].UID = -1 }, "UID -1"},
		{"supplementary group", func(m *Manifest) { m.Users[0].Groups = []string{"a,b"} }, `group "a,b"`},
		{"relative home", func(m *Manifest) { m.Users[0].Home = "var/lib" }, "must be absolute, clean paths"},
		{"comment with a colon", func(m *Manifest) { m.Users[0].Comment = "x:0:0" }, "without colons"},
		{"comment with a newline", func(m *Manifest) { m.Users[0].Comment = "x\nroot::0:0::/:/bin/sh" }, "without colons or control characters"},
		{"action on an option", func(m *Manifest) { m.Actions[0].Unit = "--force" }, `unit "--force"`},
		{"action doing something else", func(m *Manifest) { m.Actions[0].Do = "stop" }, `do "stop"`},
		{"action with unit and command", func(m *Manifest) { m.Actions[0].Run = []string{"/bin/true"} }, "both a unit and a command"},
		{"action by a relative command", func(m *Manifest) { m.Actions[1].Run = []string{"sh", "-c", "x"} }, "the program's absolute path"},
		{"action without paths", func(m *Manifest) { m.Actions[0].Paths = nil }, "has no paths"},
		{"check of an unknown kind", func(m *Manifest) { m.Checks[0].Kind = "ping" }, `kind "ping"`},
		{"tls check without a CA", func(m *Manifest) { m.Checks[1].CAFile = "" }, "tls needs a port, server_name and ca_file"},
		{"client certificate without key", func(m *Manifest) { m.Checks[1].KeyFile = "" }, "both cert_file and key_file"},
		{"check file that climbs", func(m *Manifest) { m.Checks[1].CAFile = "/etc/../../x" }, "not an absolute, clean path"},
		{"http check of a file URL", func(m *Manifest) { m.Checks[2].URL = "file:///etc/shadow" }, "want http:// or https://"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := valid()
			c.change(m)
			err := m.Validate()
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("Validate() = %v; want an error that says %q", err, c.want)
			}
		})
	}
}
