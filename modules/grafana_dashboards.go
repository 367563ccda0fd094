// Grafana provisions dashboards from files in the classic JSON model
// (schema v1); the SDK's dashboardv2 is Grafana 12's experimental
// resource format, which file provisioning does not take by default.
//lint:file-ignore SA1019 the classic dashboard model is what Grafana's file provisioning reads.

package modules

import (
	"fmt"
	"strings"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/table"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"

	"github.com/appliance/appliance/ingest/health"
	"github.com/appliance/appliance/spec"
)

// The provisioned dashboards.
const (
	GrafanaDashboardUID = "appliance-sensors"
	GrafanaHealthUID    = "appliance-health"
)

// Query is one panel's or alert rule's query, in both of InfluxDB's
// languages: InfluxQL for 1.x, Flux for 2.x.
type Query struct {
	InfluxQL, Flux string
	// Table asks InfluxQL for a table instead of time series.
	Table bool
}

// target is the query for the site's InfluxDB.
func (q Query) target(s *spec.Site, refID string) InfluxQuery {
	t := InfluxQuery{RefID: refID, Datasource: dsRef()}
	if s.InfluxDB.Version == 2 {
		t.Query = strings.ReplaceAll(q.Flux, "BUCKET", fmt.Sprintf("%q", s.InfluxDB.Bucket))
		return t
	}
	t.Query, t.RawQuery, t.ResultFormat = q.InfluxQL, true, "time_series"
	if q.Table {
		t.ResultFormat = "table"
	}
	return t
}

func dsRef() *common.DataSourceRef {
	typ, uid := "influxdb", GrafanaDatasourceUID
	return &common.DataSourceRef{Type: &typ, Uid: &uid}
}

// flux starts a Flux query of the dashboard's range, filtered to one
// measurement and some fields.
func flux(measurement string, fields ...string) string {
	var or []string
	for _, f := range fields {
		or = append(or, fmt.Sprintf("r._field == %q", f))
	}
	return fmt.Sprintf(`from(bucket: BUCKET) |> range(start: v.timeRangeStart, stop: v.timeRangeStop) |> filter(fn: (r) => r._measurement == %q and (%s))`, measurement, strings.Join(or, " or "))
}

// Panel is one panel of a dashboard with the query behind it.
type Panel struct {
	Title string
	Query Query
	// Kind is "timeseries" or "table".
	Kind string
	Unit string
	// Threshold, when set, is drawn (time series) or colours cells red
	// (tables) at and past Above or below Below.
	Threshold *float64
	Below     bool
	Max       *float64
}

func ptr[T any](v T) *T { return &v }

// SensorPanels are the readings' dashboard: temperature and humidity
// per node, when each node was last heard from, and readings per minute.
func SensorPanels(s *spec.Site) []Panel {
	series := func(field string) Query {
		return Query{
			InfluxQL: fmt.Sprintf(`SELECT mean("%s") FROM "%s" WHERE $timeFilter GROUP BY time($__interval), "%s" fill(null)`, field, Measurement, TagNode),
			Flux:     flux(Measurement, field) + fmt.Sprintf(` |> group(columns: [%q]) |> aggregateWindow(every: v.windowPeriod, fn: mean, createEmpty: false)`, TagNode),
		}
	}
	return []Panel{
		{Title: "Temperature", Kind: "timeseries", Unit: "celsius", Query: series("temperature")},
		{Title: "Humidity", Kind: "timeseries", Unit: "humidity", Query: series("humidity")},
		{Title: "Last seen", Kind: "table", Unit: "none", Query: Query{Table: true,
			InfluxQL: fmt.Sprintf(`SELECT last("seq") AS "sequence", last("rssi") AS "rssi" FROM "%s" WHERE $timeFilter GROUP BY "%s"`, Measurement, TagNode),
			Flux:     flux(Measurement, "seq") + fmt.Sprintf(` |> group(columns: [%q]) |> last() |> keep(columns: ["_time", %q, "_value"])`, TagNode, TagNode)}},
		{Title: "Readings per minute (ingest health)", Kind: "timeseries", Unit: "short", Query: Query{
			InfluxQL: fmt.Sprintf(`SELECT count("seq") FROM "%s" WHERE $timeFilter GROUP BY time(1m) fill(0)`, Measurement),
			Flux:     flux(Measurement, "seq") + ` |> group() |> aggregateWindow(every: 1m, fn: count, createEmpty: true)`}},
	}
}

// HealthPanels are the "Site health" dashboard: what the health program
// writes (docs/health.md).
func HealthPanels(s *spec.Site) []Panel {
	return []Panel{
		{Title: "Nodes", Kind: "table", Unit: "none", Query: Query{Table: true,
			InfluxQL: fmt.Sprintf(`SELECT last("silent_intervals") AS "silent (intervals)", last("readings_per_min") AS "readings/min", last("firmware_version") AS "firmware", last("refused") AS "refused" FROM "%s" WHERE $timeFilter GROUP BY "node"`, health.MNode),
			Flux:     flux(health.MNode, "silent_intervals", "readings_per_min", "refused") + ` |> toFloat() |> last() |> group(columns: ["node"]) |> pivot(rowKey: ["node"], columnKey: ["_field"], valueColumn: "_value") |> group()`}},
		{Title: "Silence, in reading intervals (alert above 3)", Kind: "timeseries", Unit: "short", Threshold: ptr(3.0), Query: Query{
			InfluxQL: fmt.Sprintf(`SELECT max("silent_intervals") FROM "%s" WHERE $timeFilter GROUP BY time($__interval), "node" fill(none)`, health.MNode),
			Flux:     flux(health.MNode, "silent_intervals") + ` |> group(columns: ["node"]) |> aggregateWindow(every: v.windowPeriod, fn: max, createEmpty: false)`}},
		{Title: "Readings per minute", Kind: "timeseries", Unit: "short", Query: Query{
			InfluxQL: fmt.Sprintf(`SELECT mean("readings_per_min") FROM "%s" WHERE $timeFilter GROUP BY time($__interval), "node" fill(none)`, health.MNode),
			Flux:     flux(health.MNode, "readings_per_min") + ` |> group(columns: ["node"]) |> aggregateWindow(every: v.windowPeriod, fn: mean, createEmpty: false)`}},
		{Title: "Refused connections, by reason", Kind: "timeseries", Unit: "short", Query: Query{
			InfluxQL: fmt.Sprintf(`SELECT sum("count") FROM "%s" WHERE $timeFilter GROUP BY time($__interval), "service", "reason" fill(none)`, health.MRefused),
			Flux:     flux(health.MRefused, "count") + ` |> group(columns: ["service", "reason"]) |> aggregateWindow(every: v.windowPeriod, fn: sum, createEmpty: false)`}},
		{Title: "Updates, by node and version", Kind: "table", Unit: "none", Query: Query{Table: true,
			InfluxQL: fmt.Sprintf(`SELECT sum("count") AS "count" FROM "%s" WHERE $timeFilter GROUP BY "node", "firmware", "version", "outcome"`, health.MOTA),
			Flux:     flux(health.MOTA, "count") + ` |> group(columns: ["node", "firmware", "version", "outcome"]) |> sum() |> group()`}},
		{Title: "Certificates, days left (alert under 30)", Kind: "table", Unit: "d", Threshold: ptr(30.0), Below: true, Query: Query{Table: true,
			InfluxQL: fmt.Sprintf(`SELECT last("days_left") AS "days left" FROM "%s" WHERE $timeFilter GROUP BY "kind", "name"`, health.MCert),
			Flux:     flux(health.MCert, "days_left") + ` |> group(columns: ["kind", "name"]) |> last() |> group() |> keep(columns: ["kind", "name", "_value"])`}},
		{Title: "Ingest: spool and write failures", Kind: "timeseries", Unit: "short", Query: Query{
			InfluxQL: fmt.Sprintf(`SELECT max("spool_pending") AS "spool pending", sum("write_failures") AS "write failures", min("influxdb_up") AS "writing" FROM "%s" WHERE $timeFilter GROUP BY time($__interval) fill(none)`, health.MIngest),
			Flux:     flux(health.MIngest, "spool_pending", "write_failures", "influxdb_up") + ` |> aggregateWindow(every: v.windowPeriod, fn: max, createEmpty: false)`}},
		{Title: "Data partition used (alert above 85 %)", Kind: "timeseries", Unit: "percent", Threshold: ptr(85.0), Max: ptr(100.0), Query: Query{
			InfluxQL: fmt.Sprintf(`SELECT max("used_percent") FROM "%s" WHERE $timeFilter GROUP BY time($__interval), "path" fill(none)`, health.MDisk),
			Flux:     flux(health.MDisk, "used_percent") + ` |> group(columns: ["path"]) |> aggregateWindow(every: v.windowPeriod, fn: max, createEmpty: false)`}},
	}
}

// Dashboard is the provisioned readings' dashboard.
func Dashboard(s *spec.Site) (dashboard.Dashboard, error) {
	return buildDashboard(s, GrafanaDashboardUID, "Sensors — "+s.Name, "the readings of every node", SensorPanels(s))
}

// HealthDashboard is the provisioned "Site health" dashboard.
func HealthDashboard(s *spec.Site) (dashboard.Dashboard, error) {
	return buildDashboard(s, GrafanaHealthUID, "Site health — "+s.Name, "the site's own health, as appliance-health writes it (docs/health.md)", HealthPanels(s))
}

func buildDashboard(s *spec.Site, uid, title, what string, panels []Panel) (dashboard.Dashboard, error) {
	desc := "Provisioned by appliance: " + what + "."
	if d := strings.TrimSpace(s.Description); d != "" {
		desc += " " + d
	}
	b := dashboard.NewDashboardBuilder(title).Uid(uid).Tags([]string{"appliance"}).Description(desc).
		Timezone("browser").Readonly().Refresh("1m").Time("now-24h", "now").Version(1)
	for i, p := range panels {
		x, y := uint32(i%2*12), uint32(i/2*8)
		b = b.WithPanel(panelBuilder(s, p, uint32(i+1), dashboard.GridPos{X: x, Y: y, W: 12, H: 8}))
	}
	return b.Build()
}

func panelBuilder(s *spec.Site, p Panel, id uint32, pos dashboard.GridPos) cog.Builder[dashboard.Panel] {
	thresholds := func() *dashboard.ThresholdsConfigBuilder {
		base, alarm := "green", "red"
		if p.Below {
			base, alarm = "red", "green"
		}
		return dashboard.NewThresholdsConfigBuilder().Mode(dashboard.ThresholdsModeAbsolute).
			Steps([]dashboard.Threshold{{Value: nil, Color: base}, {Value: p.Threshold, Color: alarm}})
	}
	target := p.Query.target(s, "A")
	if p.Kind == "table" {
		// The SDK leaves the footer's reducer null, which its own
		// schema requires: a footer that is off, with none.
		t := table.NewPanelBuilder().Id(id).Title(p.Title).Datasource(*dsRef()).GridPos(pos).Unit(p.Unit).WithTarget(target).
			Footer(common.NewTableFooterOptionsBuilder().Show(false).Reducer([]string{}))
		if p.Threshold != nil {
			t = t.Thresholds(thresholds()).CellOptions(common.TableCellOptions{TableColorTextCellOptions: &common.TableColorTextCellOptions{Type: "color-text"}})
		}
		return t
	}
	t := timeseries.NewPanelBuilder().Id(id).Title(p.Title).Datasource(*dsRef()).GridPos(pos).Unit(p.Unit).WithTarget(target)
	if p.Threshold != nil {
		t = t.Thresholds(thresholds()).ThresholdsStyle(common.NewGraphThresholdsStyleConfigBuilder().Mode(common.GraphThresholdsStyleModeLine))
	}
	if p.Max != nil {
		t = t.Min(0).Max(*p.Max)
	}
	return t
}
