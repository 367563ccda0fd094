package modules_test

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/appliance/appliance/modules"
	yaml "go.yaml.in/yaml/v3"
)

// TestGrafanaProvisioning checks what Grafana (not installable here)
// would read: the data source and dashboard provisioning parse, every
// panel uses the provisioned data source, the dashboard lies where the
// provider looks, and the secrets are filled in from the state.
func TestGrafanaProvisioning(t *testing.T) {
	for _, version := range []string{"1", "2"} {
		t.Run("influxdb"+version, func(t *testing.T) {
			w := newGW(t, siteHCL("influxdb {\n  version = "+version+"\n}\ngrafana {\n  path = \"/grafana/\"\n}\n"))
			read := func(p string) []byte {
				b, err := os.ReadFile(w.path(p))
				if err != nil {
					t.Fatal(err)
				}
				return b
			}
			var ds struct {
				APIVersion  int `yaml:"apiVersion"`
				Datasources []struct {
					Name, UID, Type, URL, Access, Database, User string
					JSONData                                     map[string]any    `yaml:"jsonData"`
					SecureJSONData                               map[string]string `yaml:"secureJsonData"`
				} `yaml:"datasources"`
			}
			if err := yaml.Unmarshal(read("/etc/grafana/provisioning/datasources/appliance.yaml"), &ds); err != nil {
				t.Fatal(err)
			}
			if ds.APIVersion != 1 || len(ds.Datasources) != 1 {
				t.Fatalf("datasources: %+v", ds)
			}
			d := ds.Datasources[0]
			if d.UID != modules.GrafanaDatasourceUID || d.Type != "influxdb" || !strings.HasPrefix(d.URL, "http://localhost:8086") || d.Access != "proxy" {
				t.Errorf("data source: %+v", d)
			}
			if version == "1" {
				want, _ := w.st.Secret(modules.InfluxGrafanaPassword)
				if d.User != "grafana" || d.Database != "sensors" || d.SecureJSONData["password"] != want {
					t.Errorf("v1 data source: user %q db %q, password from the state: %v", d.User, d.Database, d.SecureJSONData["password"] == want)
				}
			} else if d.JSONData["version"] != "Flux" || d.SecureJSONData["token"] != "$INFLUX_TOKEN" {
				t.Errorf("v2 data source: %+v", d)
			}

			var prov struct {
				Providers []struct {
					Type    string
					Options struct{ Path string }
				}
			}
			if err := yaml.Unmarshal(read("/etc/grafana/provisioning/dashboards/appliance.yaml"), &prov); err != nil || len(prov.Providers) != 1 {
				t.Fatalf("dashboard provider: %v %+v", err, prov)
			}
			var dash struct {
				UID    string
				Panels []struct {
					Title      string
					Datasource struct{ Type, UID string }
					Targets    []struct {
						Query      string
						Datasource struct{ UID string }
					}
				}
			}
			if err := json.Unmarshal(read(prov.Providers[0].Options.Path+"/sensors.json"), &dash); err != nil {
				t.Fatalf("dashboard in the provider's folder: %v", err)
			}
			if dash.UID != modules.GrafanaDashboardUID || len(dash.Panels) != 4 {
				t.Errorf("dashboard %q with %d panels", dash.UID, len(dash.Panels))
			}
			for _, p := range dash.Panels {
				if p.Datasource.UID != d.UID || len(p.Targets) != 1 || p.Targets[0].Datasource.UID != d.UID || !strings.Contains(p.Targets[0].Query, modules.Measurement) {
					t.Errorf("panel %q does not query the provisioned data source: %+v", p.Title, p)
				}
			}

			ini := string(read("/etc/grafana/grafana.ini"))
			pw, _ := w.st.Secret(modules.GrafanaAdminPassword)
			contains(t, "grafana.ini", ini, "admin_password = "+pw+"\n", "http_addr = 127.0.0.1\n", "cookie_secure = true\n",
				"[auth.anonymous]\nenabled = false\n", "allow_sign_up = false\n", "root_url = https://testgw/grafana/\n", "serve_from_sub_path = true\n")
			if strings.Contains(ini, "@@") {
				t.Errorf("grafana.ini has an unfilled placeholder")
			}
			if fi, _ := os.Stat(w.path("/etc/grafana/grafana.ini")); fi.Mode().Perm() != 0o640 {
				t.Errorf("grafana.ini holds the admin password and has mode %v", fi.Mode())
			}
		})
	}
}
