//lint:file-ignore SA1019 the classic dashboard model is what Grafana's file provisioning reads.

package modules_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/grafana/grafana-foundation-sdk/go/alerting"
	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/variants"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/expr"
	"github.com/grafana/grafana-foundation-sdk/go/table"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
	yaml "go.yaml.in/yaml/v3"

	"github.com/appliance/appliance/internal/testenv"
	"github.com/appliance/appliance/modules"
	"github.com/appliance/appliance/spec"
)

func init() {
	// The SDK checks panels' options and targets against the variants it
	// knows: the panels used, and the InfluxDB query, which the SDK has
	// no type for, read strictly (an unknown field is an error).
	rt := cog.NewRuntime()
	rt.RegisterPanelcfgVariant(timeseries.VariantConfig())
	rt.RegisterPanelcfgVariant(table.VariantConfig())
	strict := func(raw []byte) (variants.Dataquery, error) {
		var q modules.InfluxQuery
		d := json.NewDecoder(bytes.NewReader(raw))
		d.DisallowUnknownFields()
		if err := d.Decode(&q); err != nil {
			return nil, err
		}
		return q, q.Validate()
	}
	rt.RegisterDataqueryVariant(variants.DataqueryConfig{Identifier: "influxdb", DataqueryUnmarshaler: strict, StrictDataqueryUnmarshaler: strict})
}

const alertsHCL = `grafana {
  alert_webhook = "https://hooks.example.com/appliance/t0ken"
  alert_email   = ["ops@example.com", "night@example.com"]
  smtp          = { host = "mail.example.com:587", from = "gw@example.com", user = "gw", password = "s3cret" }
}
`

func grafanaSite(t *testing.T, version int, extra string) *spec.Site {
	t.Helper()
	src := siteHCL(fmt.Sprintf("influxdb {\n  version = %d\n}\n", version) + extra)
	dir := t.TempDir()
	p := filepath.Join(dir, "site.hcl")
	os.WriteFile(p, []byte(src), 0o644)
	s, rep := spec.Load(p, spec.Options{Environ: []string{"HOME=/nonexistent"}})
	if rep.HasErrors() {
		t.Fatalf("%v", rep.Diagnostics)
	}
	return s
}

// TestGrafanaGoldenAndSchema writes the dashboards and the alerting file
// for InfluxDB 1 (with a webhook and e-mail) and 2 (no contact point),
// compares them with testdata/grafana, and checks them as Grafana would
// read them: dashboards strictly against the SDK's types, every rule
// against the SDK's Rule and the rules of Grafana's provisioning file
// (pkg/services/provisioning/alerting: names, UIDs, states, durations,
// references between queries), the contact point and its policy.
func TestGrafanaGoldenAndSchema(t *testing.T) {
	for _, c := range []struct {
		name    string
		version int
		extra   string
		contact bool
	}{{"influxql", 1, alertsHCL, true}, {"flux", 2, "grafana {}\n", false}} {
		t.Run(c.name, func(t *testing.T) {
			s := grafanaSite(t, c.version, c.extra)
			set, err := modules.Collect(s)
			if err != nil {
				t.Fatal(err)
			}
			g := set.Lookup("grafana")
			files := map[string][]byte{}
			for _, p := range []string{"/etc/grafana/dashboards/appliance/sensors.json", "/etc/grafana/dashboards/appliance/health.json", "/etc/grafana/provisioning/alerting/appliance.yaml"} {
				f := g.File(p)
				if f == nil {
					t.Fatalf("no %s", p)
				}
				files[filepath.Base(p)] = f.Content
			}
			for name, got := range files {
				golden := filepath.Join("testdata", "grafana", c.name, name)
				if *update {
					os.MkdirAll(filepath.Dir(golden), 0o755)
					os.WriteFile(golden, got, 0o644)
				}
				want, err := os.ReadFile(golden)
				if err != nil || !bytes.Equal(got, want) {
					t.Errorf("%s differs from %s; run go test ./modules -update if intended", name, golden)
				}
			}
			for _, name := range []string{"sensors.json", "health.json"} {
				var d dashboard.Dashboard
				if err := strict(d.UnmarshalJSONStrict(files[name])); err != nil {
					t.Errorf("%s against the SDK's dashboard type: %v", name, err)
				}
				if err := d.Validate(); err != nil {
					t.Errorf("%s: %v", name, err)
				}
				// The SDK's strict reading of a dashboard drops its panels
				// (a nil error of its own type stops it early): each panel
				// is read on its own.
				var raw struct{ Panels []json.RawMessage }
				json.Unmarshal(files[name], &raw)
				if len(raw.Panels) < 4 {
					t.Errorf("%s has %d panels", name, len(raw.Panels))
				}
				for _, pj := range raw.Panels {
					var p dashboard.Panel
					if err := strict(p.UnmarshalJSONStrict(pj)); err != nil {
						t.Errorf("%s: a panel against the SDK's type: %v", name, err)
					}
					if err := p.Validate(); err != nil {
						t.Errorf("%s: %v", name, err)
					}
					if len(p.Targets) != 1 || p.Datasource == nil || *p.Datasource.Uid != modules.GrafanaDatasourceUID {
						t.Errorf("%s: panel %v has not one query of the provisioned data source", name, p.Title)
					} else if q, ok := p.Targets[0].(modules.InfluxQuery); !ok || q.Datasource == nil || *q.Datasource.Uid != modules.GrafanaDatasourceUID {
						t.Errorf("%s: panel %v: its query %#v", name, p.Title, p.Targets[0])
					}
				}
			}
			checkAlertingFile(t, files["appliance.yaml"], c.contact)
			ini := string(g.File("/etc/grafana/grafana.ini").Content)
			if strings.Contains(ini, "[smtp]") != c.contact || !strings.Contains(ini, "[unified_alerting]\nenabled = true\n") {
				t.Errorf("grafana.ini: smtp %v, unified alerting on?\n%s", c.contact, ini)
			}
			if f := g.File("/etc/grafana/provisioning/alerting/appliance.yaml"); f.Sensitive != c.contact || f.Mode != 0o640 || f.Group != "grafana" {
				t.Errorf("the alerting file: sensitive %v mode %v group %s", f.Sensitive, f.Mode, f.Group)
			}
		})
	}
}

// strict is the error of an SDK's strict reading: it returns an empty
// list of its own type for none.
func strict(err error) error {
	var be cog.BuildErrors
	if errors.As(err, &be) && len(be) == 0 {
		return nil
	}
	return err
}

var uidRe = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,40}$`)

func checkAlertingFile(t *testing.T, b []byte, contact bool) {
	t.Helper()
	var f struct {
		APIVersion int `yaml:"apiVersion"`
		Groups     []struct {
			OrgID    int              `yaml:"orgId"`
			Name     string           `yaml:"name"`
			Folder   string           `yaml:"folder"`
			Interval string           `yaml:"interval"`
			Rules    []map[string]any `yaml:"rules"`
		} `yaml:"groups"`
		ContactPoints []struct {
			OrgID     int    `yaml:"orgId"`
			Name      string `yaml:"name"`
			Receivers []struct {
				UID      string         `yaml:"uid"`
				Type     string         `yaml:"type"`
				Settings map[string]any `yaml:"settings"`
			} `yaml:"receivers"`
		} `yaml:"contactPoints"`
		Policies []struct {
			OrgID    int      `yaml:"orgId"`
			Receiver string   `yaml:"receiver"`
			GroupBy  []string `yaml:"group_by"`
		} `yaml:"policies"`
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatalf("the alerting file is not YAML: %v", err)
	}
	if f.APIVersion != 1 || len(f.Groups) != 1 || f.Groups[0].Name == "" || f.Groups[0].Folder == "" {
		t.Fatalf("alerting file: %+v", f)
	}
	if _, err := time.ParseDuration(f.Groups[0].Interval); err != nil {
		t.Errorf("group interval: %v", err)
	}
	allowed := []string{"uid", "title", "condition", "data", "dashboardUid", "panelId", "noDataState", "execErrState", "for", "keepFiringFor", "annotations", "labels", "isPaused", "notification_settings", "record", "missing_series_evals_to_resolve"}
	var titles []string
	for _, r := range f.Groups[0].Rules {
		for k := range r {
			if !slices.Contains(allowed, k) && k != "orgID" && k != "ruleGroup" && k != "folderUID" {
				t.Errorf("rule %v: %q is not a field of Grafana's provisioning file", r["uid"], k)
			}
		}
		// The group gives each rule what Grafana's API has per rule.
		r["orgID"], r["ruleGroup"], r["folderUID"] = f.Groups[0].OrgID, f.Groups[0].Name, f.Groups[0].Folder
		js, _ := json.Marshal(r)
		var rule alerting.Rule
		if err := strict(rule.UnmarshalJSONStrict(js)); err != nil {
			t.Errorf("rule %v against the SDK's Rule: %v", r["uid"], err)
			continue
		}
		if err := rule.Validate(); err != nil {
			t.Errorf("rule %s: %v", rule.Title, err)
		}
		titles = append(titles, rule.Title)
		if rule.Uid == nil || !uidRe.MatchString(*rule.Uid) {
			t.Errorf("rule %s: UID %v", rule.Title, rule.Uid)
		}
		if !slices.Contains([]string{"NoData", "Alerting", "OK", "KeepLast"}, string(rule.NoDataState)) || !slices.Contains([]string{"Alerting", "Error", "OK", "KeepLast"}, string(rule.ExecErrState)) {
			t.Errorf("rule %s: states %s %s", rule.Title, rule.NoDataState, rule.ExecErrState)
		}
		if _, err := time.ParseDuration(rule.For); err != nil {
			t.Errorf("rule %s: for %q: %v", rule.Title, rule.For, err)
		}
		refs := map[string]bool{}
		for _, q := range rule.Data {
			refs[*q.RefId] = true
		}
		if !refs[rule.Condition] {
			t.Errorf("rule %s: condition %s is no query", rule.Title, rule.Condition)
		}
		for _, q := range rule.Data {
			if q.DatasourceUid == nil || q.Model == nil {
				t.Errorf("rule %s: query %s has no data source or model", rule.Title, *q.RefId)
				continue
			}
			if *q.DatasourceUid == "__expr__" {
				m, _ := json.Marshal(q.Model)
				var e struct{ Expression, Type string }
				json.Unmarshal(m, &e)
				if !refs[e.Expression] || (e.Type != "reduce" && e.Type != "threshold") {
					t.Errorf("rule %s: expression %s reads %q (%s)", rule.Title, *q.RefId, e.Expression, e.Type)
				}
			} else if *q.DatasourceUid != modules.GrafanaDatasourceUID || q.RelativeTimeRange == nil || q.RelativeTimeRange.From == nil || *q.RelativeTimeRange.From <= 0 {
				t.Errorf("rule %s: query %s: %+v", rule.Title, *q.RefId, q)
			}
		}
	}
	want := []string{"Node silent", "Certificate expires within 30 days", "Update failed", "Ingest cannot write", "Data partition over 85 %"}
	if !slices.Equal(titles, want) {
		t.Errorf("rules %q, want %q", titles, want)
	}
	if !contact {
		if len(f.ContactPoints)+len(f.Policies) != 0 {
			t.Errorf("a contact point with none in the spec: %+v", f)
		}
		return
	}
	if len(f.ContactPoints) != 1 || len(f.Policies) != 1 || f.Policies[0].Receiver != f.ContactPoints[0].Name {
		t.Fatalf("contact point and policy: %+v %+v", f.ContactPoints, f.Policies)
	}
	types := map[string]map[string]any{}
	for _, r := range f.ContactPoints[0].Receivers {
		if !uidRe.MatchString(r.UID) {
			t.Errorf("receiver UID %q", r.UID)
		}
		types[r.Type] = r.Settings
	}
	if types["webhook"]["url"] != "https://hooks.example.com/appliance/t0ken" || types["email"]["addresses"] != "ops@example.com;night@example.com" {
		t.Errorf("receivers: %v", types)
	}
}

// healthDB is an influxd (1.x) for the queries behind the panels and rules.
type healthDB struct{ url string }

func startInfluxd(t *testing.T) *healthDB {
	t.Helper()
	testenv.Require(t, "influxd")
	dir := t.TempDir()
	port, rpc := testenv.FreePort(t), testenv.FreePort(t)
	conf := fmt.Sprintf(`reporting-disabled = true
bind-address = "127.0.0.1:%d"
[meta]
  dir = "%s/meta"
[data]
  dir = "%s/data"
  wal-dir = "%s/wal"
  query-log-enabled = false
[http]
  bind-address = "127.0.0.1:%d"
  log-enabled = false
[monitor]
  store-enabled = false
[continuous_queries]
  enabled = false
[logging]
  level = "warn"
`, rpc, dir, dir, dir, port)
	p := filepath.Join(dir, "influxdb.conf")
	os.WriteFile(p, []byte(conf), 0o600)
	proc := testenv.Start(t, "influxd", "-config", p)
	proc.WaitPort(t, fmt.Sprintf("127.0.0.1:%d", port), 60*time.Second)
	in := &healthDB{url: fmt.Sprintf("http://127.0.0.1:%d", port)}
	in.query(t, "CREATE DATABASE sensors")
	return in
}

func (in *healthDB) write(t *testing.T, lines []string) {
	t.Helper()
	resp, err := http.Post(in.url+"/write?db=sensors&precision=s", "text/plain", strings.NewReader(strings.Join(lines, "\n")))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("write: %s %s", resp.Status, b)
	}
}

type result struct {
	Series []struct {
		Name    string            `json:"name"`
		Tags    map[string]string `json:"tags"`
		Columns []string          `json:"columns"`
		Values  [][]any           `json:"values"`
	} `json:"series"`
	Error string `json:"error"`
}

func (in *healthDB) query(t *testing.T, q string) result {
	t.Helper()
	resp, err := http.PostForm(in.url+"/query", url.Values{"db": {"sensors"}, "q": {q}, "epoch": {"s"}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r struct {
		Results []result `json:"results"`
		Error   string   `json:"error"`
	}
	json.NewDecoder(resp.Body).Decode(&r)
	if resp.StatusCode != http.StatusOK || r.Error != "" || len(r.Results) != 1 || r.Results[0].Error != "" {
		t.Fatalf("InfluxDB refuses %s: %s %+v", q, resp.Status, r)
	}
	return r.Results[0]
}

// grafanaTime replaces Grafana's macros as its InfluxDB data source
// does: $timeFilter by the range in milliseconds, $__interval by the
// interval it picks for the panel.
func grafanaTime(q string, from, to time.Time, interval string) string {
	tf := fmt.Sprintf("time >= %dms and time <= %dms", from.UnixMilli(), to.UnixMilli())
	return strings.NewReplacer("$timeFilter", tf, "$__interval", interval).Replace(q)
}

// evaluate runs an alert rule as Grafana's alerting would: its query
// over the rule's range, each series reduced to its last value (empty
// ones dropped), compared with the threshold. It returns the firing
// series' labels, or "no data".
func evaluate(t *testing.T, in *healthDB, r alerting.Rule, now time.Time) []string {
	t.Helper()
	var q modules.InfluxQuery
	var reducer expr.TypeReduceReducer
	var ev expr.ExprTypeThresholdConditionsEvaluator
	var from time.Duration
	for _, d := range r.Data {
		m, _ := json.Marshal(d.Model)
		switch *d.RefId {
		case "A":
			json.Unmarshal(m, &q)
			from = time.Duration(*d.RelativeTimeRange.From) * time.Second
		case "B":
			var red expr.TypeReduce
			json.Unmarshal(m, &red)
			reducer = red.Reducer
		case "C":
			var th expr.TypeThreshold
			json.Unmarshal(m, &th)
			ev = th.Conditions[0].Evaluator
		}
	}
	if reducer != expr.TypeReduceReducerLast {
		t.Fatalf("rule %s reduces with %s; the test evaluates last", r.Title, reducer)
	}
	res := in.query(t, grafanaTime(q.Query, now.Add(-from), now, "1m"))
	var firing []string
	n := 0
	for _, s := range res.Series {
		var last *float64
		for _, v := range s.Values {
			if f, ok := v[1].(float64); ok {
				last = &f
			}
		}
		if last == nil {
			continue
		}
		n++
		p := ev.Params[0]
		fire := (ev.Type == expr.ExprTypeThresholdConditionsEvaluatorTypeGt && *last > p) || (ev.Type == expr.ExprTypeThresholdConditionsEvaluatorTypeLt && *last < p)
		if fire {
			var labels []string
			for k, v := range s.Tags {
				labels = append(labels, k+"="+v)
			}
			sort.Strings(labels)
			firing = append(firing, strings.Join(labels, ","))
		}
	}
	if n == 0 {
		if r.NoDataState == alerting.RuleNoDataStateAlerting {
			return []string{"no data"}
		}
		return nil
	}
	sort.Strings(firing)
	return firing
}

func rules(t *testing.T, s *spec.Site) map[string]alerting.Rule {
	out := map[string]alerting.Rule{}
	for _, a := range modules.Alerts(s) {
		r, err := a.Rule(s)
		if err != nil {
			t.Fatal(err)
		}
		out[a.UID] = r
	}
	return out
}

// TestHealthQueries runs the queries behind every panel and alert rule
// against a real InfluxDB 1.x with points the test writes as the health
// program does: a healthy site fires nothing; a silent node, a
// certificate near its end, a failed update, ingest unable to write and
// a full disk each fire their rule, and only theirs; with no health
// points at all, only the rule that watches for that fires.
func TestHealthQueries(t *testing.T) {
	s := grafanaSite(t, 1, "grafana {}\n")
	in := startInfluxd(t)
	now := time.Now().Truncate(time.Second)
	rs := rules(t, s)

	// Nothing written yet: no data.
	for uid, r := range rs {
		got := evaluate(t, in, r, now)
		if want := map[string]bool{"appliance-ingest-write": true}[uid]; (len(got) > 0) != want {
			t.Errorf("no health points: %s fires %v", uid, got)
		}
	}

	// A healthy site over the last ten minutes, one snapshot every 30 s.
	var healthy []string
	for i := 20; i >= 0; i-- {
		ts := now.Add(-time.Duration(i) * 30 * time.Second).Unix()
		healthy = append(healthy,
			fmt.Sprintf(`health_node,group=bench,node=bench-1 silent_intervals=0.4,silent_s=12,readings_per_min=2,firmware_version="1.0.0",last_seen=%di,refused=0i %d`, ts-12, ts),
			fmt.Sprintf(`health_node,group=bench,node=bench-2 silent_intervals=0.9,silent_s=27,readings_per_min=2,firmware_version="1.0.0",last_seen=%di,refused=0i %d`, ts-27, ts),
			fmt.Sprintf(`health_cert,kind=ca,name=ca days_left=3640,not_after=%di %d`, ts+3640*86400, ts),
			fmt.Sprintf(`health_cert,kind=node,name=bench-1 days_left=1800,not_after=%di %d`, ts+1800*86400, ts),
			fmt.Sprintf(`health_ingest up=1i,influxdb_up=1i,mqtt_connected=1i,spool_bytes=0i,spool_pending=0i,spool_full=0i,write_failures=0i,write_failures_total=0i %d`, ts),
			fmt.Sprintf(`health_disk,path=/var/lib size_bytes=30000000000i,used_bytes=6000000000i,used_percent=20 %d`, ts),
			fmt.Sprintf(`health_ota,firmware=sensor,node=bench-1,outcome=installed,version=1.0.0 count=1i %d`, ts-3600*5),
			fmt.Sprintf(`health_refused,reason=no_certificate,service=mqtt count=1i,last_client="10.0.0.9" %d`, ts),
		)
	}
	in.write(t, healthy)
	for uid, r := range rs {
		if got := evaluate(t, in, r, now); len(got) > 0 {
			t.Errorf("healthy site: %s fires for %v", uid, got)
		}
	}
	// Every panel's query runs and finds the healthy site's points.
	for _, p := range append(modules.HealthPanels(s), modules.SensorPanels(s)...) {
		res := in.query(t, grafanaTime(p.Query.InfluxQL, now.Add(-24*time.Hour), now, "1m"))
		if strings.Contains(p.Query.InfluxQL, "health_") && len(res.Series) == 0 {
			t.Errorf("panel %q: no series from %s", p.Title, p.Query.InfluxQL)
		}
	}

	// Then bench-2 falls silent, the CA nears its end, bench-1's update
	// fails, ingest stops writing, the disk fills.
	ts := now.Unix()
	in.write(t, []string{
		fmt.Sprintf(`health_node,group=bench,node=bench-2 silent_intervals=3.5,silent_s=105,refused=0i %d`, ts),
		fmt.Sprintf(`health_cert,kind=ca,name=ca days_left=29.5,not_after=%di %d`, ts+29*86400, ts),
		fmt.Sprintf(`health_ota,firmware=sensor,node=bench-1,outcome=not_installed,version=1.1.0 count=1i %d`, ts),
		fmt.Sprintf(`health_ingest up=1i,influxdb_up=0i,mqtt_connected=1i,spool_bytes=4096i,spool_pending=40i,spool_full=0i,write_failures=3i,write_failures_total=3i %d`, ts),
		fmt.Sprintf(`health_disk,path=/var/lib size_bytes=30000000000i,used_bytes=26000000000i,used_percent=86.7 %d`, ts),
	})
	want := map[string][]string{
		"appliance-node-silent":  {"node=bench-2"},
		"appliance-cert-expiry":  {"kind=ca,name=ca"},
		"appliance-ota-failed":   {"node=bench-1,version=1.1.0"},
		"appliance-ingest-write": {""},
		"appliance-disk-full":    {"path=/var/lib"},
	}
	for uid, r := range rs {
		if got := evaluate(t, in, r, now.Add(time.Second)); !slices.Equal(got, want[uid]) {
			t.Errorf("troubled site: %s fires for %q, want %q", uid, got, want[uid])
		}
	}
}
