package modules

import (
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/grafana/grafana-foundation-sdk/go/alerting"
	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/expr"
	yaml "go.yaml.in/yaml/v3"

	"github.com/appliance/appliance/ingest/health"
	"github.com/appliance/appliance/spec"
)

// Alert is one provisioned alert rule: a query, reduced to its last
// value per series, against a threshold.
type Alert struct {
	UID, Title string
	Query      Query
	// Range is how far back the query looks.
	Range time.Duration
	// Above or Below (when set) is the threshold that fires.
	Threshold float64
	Below     bool
	// For is how long the condition holds before the alert fires.
	For time.Duration
	// NoData fires the alert when the query returns nothing (the health
	// points stopped).
	NoData   bool
	Severity string
	Summary  string
}

// The folder and group of the provisioned rules, and the contact point.
const (
	GrafanaFolder       = "appliance"
	GrafanaRuleGroup    = "site health"
	GrafanaContactPoint = "appliance"
	grafanaAlerting     = "/etc/grafana/provisioning/alerting/appliance.yaml"
)

// Alerts are the site's health alert rules (docs/health.md).
func Alerts(s *spec.Site) []Alert {
	return []Alert{
		{UID: "appliance-node-silent", Title: "Node silent", Range: 5 * time.Minute, Threshold: 3, Severity: "warning",
			Summary: "{{ $labels.node }} has sent nothing for more than three of its reading intervals",
			Query: Query{
				InfluxQL: fmt.Sprintf(`SELECT last("silent_intervals") FROM "%s" WHERE $timeFilter GROUP BY "node"`, health.MNode),
				Flux:     flux(health.MNode, "silent_intervals") + ` |> group(columns: ["node"]) |> last()`}},
		{UID: "appliance-cert-expiry", Title: "Certificate expires within 30 days", Range: time.Hour, Threshold: 30, Below: true, Severity: "warning",
			Summary: "the certificate of {{ $labels.name }} ({{ $labels.kind }}) ends in under 30 days: run appliance pki renew and push, or re-flash the node",
			Query: Query{
				InfluxQL: fmt.Sprintf(`SELECT last("days_left") FROM "%s" WHERE $timeFilter GROUP BY "kind", "name"`, health.MCert),
				Flux:     flux(health.MCert, "days_left") + ` |> group(columns: ["kind", "name"]) |> last()`}},
		{UID: "appliance-ota-failed", Title: "Update failed", Range: time.Hour, Threshold: 0, Severity: "warning",
			Summary: "{{ $labels.node }} did not take firmware {{ $labels.version }}: its download failed, or it still runs another version",
			Query: Query{
				InfluxQL: fmt.Sprintf(`SELECT sum("count") FROM "%s" WHERE ("outcome" = '%s' OR "outcome" = '%s') AND $timeFilter GROUP BY "node", "version"`, health.MOTA, health.Failed, health.NotInstalled),
				Flux:     flux(health.MOTA, "count") + fmt.Sprintf(` |> filter(fn: (r) => r.outcome == %q or r.outcome == %q) |> group(columns: ["node", "version"]) |> sum()`, health.Failed, health.NotInstalled)}},
		{UID: "appliance-ingest-write", Title: "Ingest cannot write", Range: 5 * time.Minute, Threshold: 1, Below: true, For: 2 * time.Minute, NoData: true, Severity: "critical",
			Summary: "readings are not reaching InfluxDB: ingest spools them (or, with no health points at all, the database takes nothing)",
			Query: Query{
				InfluxQL: fmt.Sprintf(`SELECT last("influxdb_up") FROM "%s" WHERE $timeFilter`, health.MIngest),
				Flux:     flux(health.MIngest, "influxdb_up") + ` |> last()`}},
		{UID: "appliance-disk-full", Title: "Data partition over 85 %", Range: 10 * time.Minute, Threshold: 85, For: 5 * time.Minute, Severity: "critical",
			Summary: "the data partition is {{ $values.B.Value | printf \"%.0f\" }} % full: shorten influxdb.retention, or give the gateway a larger card",
			Query: Query{
				InfluxQL: fmt.Sprintf(`SELECT last("used_percent") FROM "%s" WHERE $timeFilter GROUP BY "path"`, health.MDisk),
				Flux:     flux(health.MDisk, "used_percent") + ` |> group(columns: ["path"]) |> last()`}},
	}
}

// Rule is the alert as Grafana's unified alerting rule, built with the
// foundation SDK: the query (A), its last value per series (B), the
// threshold (C).
func (a Alert) Rule(s *spec.Site) (alerting.Rule, error) {
	evaluator := expr.ExprTypeThresholdConditionsEvaluatorTypeGt
	if a.Below {
		evaluator = expr.ExprTypeThresholdConditionsEvaluatorTypeLt
	}
	exprDS := "__expr__"
	noData, execErr := alerting.RuleNoDataStateOK, alerting.RuleExecErrStateError
	if a.NoData {
		noData, execErr = alerting.RuleNoDataStateAlerting, alerting.RuleExecErrStateAlerting
	}
	q := a.Query.target(s, "A")
	q.IntervalMs, q.MaxDataPoints = 1000, 43200
	return alerting.NewRuleBuilder(a.Title).Uid(a.UID).OrgID(1).RuleGroup(GrafanaRuleGroup).FolderUID(GrafanaFolder).
		Queries([]cog.Builder[alerting.Query]{
			alerting.NewQueryBuilder("A").DatasourceUid(GrafanaDatasourceUID).
				RelativeTimeRange(alerting.Duration(a.Range.Seconds()), 0).Model(q),
			alerting.NewQueryBuilder("B").DatasourceUid(exprDS).Model(expr.NewExprBuilder().TypeReduce(
				expr.NewTypeReduceBuilder().RefId("B").Expression("A").Reducer(expr.TypeReduceReducerLast).
					Settings(expr.NewExprTypeReduceSettingsBuilder().Mode(expr.ExprTypeReduceSettingsModeDropNN)))),
			alerting.NewQueryBuilder("C").DatasourceUid(exprDS).Model(expr.NewExprBuilder().TypeThreshold(
				expr.NewTypeThresholdBuilder().RefId("C").Expression("B").Conditions([]cog.Builder[expr.ExprTypeThresholdConditions]{
					expr.NewExprTypeThresholdConditionsBuilder().Evaluator(
						expr.NewExprTypeThresholdConditionsEvaluatorBuilder().Type(evaluator).Params([]float64{a.Threshold})),
				}))),
		}).
		Condition("C").NoDataState(noData).ExecErrState(execErr).For(durationString(a.For)).
		Labels(map[string]string{"severity": a.Severity, "site": s.Name}).
		Annotations(map[string]string{"summary": a.Summary}).
		Build()
}

func durationString(d time.Duration) string {
	if d == 0 {
		return "0s"
	}
	return strings.TrimSuffix(strings.TrimSuffix(d.String(), "0s"), "0m")
}

// AlertingFile is Grafana's file provisioning of alerting (apiVersion
// 1): the rule group, and the contact point with the policy that routes
// every alert to it when the spec names one.
type AlertingFile struct {
	APIVersion    int                `json:"apiVersion"`
	Groups        []RuleGroupFile    `json:"groups"`
	ContactPoints []ContactPointFile `json:"contactPoints,omitempty"`
	Policies      []PolicyFile       `json:"policies,omitempty"`
}

// RuleGroupFile is a rule group as the provisioning file holds it: by
// folder title and with the interval as a duration, where the SDK's
// (API) type has the folder's UID and seconds.
type RuleGroupFile struct {
	OrgID    int              `json:"orgId"`
	Name     string           `json:"name"`
	Folder   string           `json:"folder"`
	Interval string           `json:"interval"`
	Rules    []map[string]any `json:"rules"`
}

// ContactPointFile is a contact point of the provisioning file; its
// receivers are the SDK's contact points.
type ContactPointFile struct {
	OrgID     int                     `json:"orgId"`
	Name      string                  `json:"name"`
	Receivers []alerting.ContactPoint `json:"receivers"`
}

// PolicyFile is the notification policy tree of the provisioning file.
type PolicyFile struct {
	OrgID int `json:"orgId"`
	alerting.NotificationPolicy
}

// apiOnly are fields of the SDK's Rule that belong to Grafana's HTTP
// API, not to the provisioning file (which takes them from the group).
var apiOnly = []string{"folderUID", "ruleGroup", "orgID"}

// Alerting is the site's alerting provisioning.
func Alerting(s *spec.Site) (AlertingFile, error) {
	f := AlertingFile{APIVersion: 1}
	g := RuleGroupFile{OrgID: 1, Name: GrafanaRuleGroup, Folder: GrafanaFolder, Interval: "1m"}
	for _, a := range Alerts(s) {
		r, err := a.Rule(s)
		if err != nil {
			return f, fmt.Errorf("alert %s: %w", a.UID, err)
		}
		b, err := json.Marshal(r)
		if err != nil {
			return f, err
		}
		var m map[string]any
		json.Unmarshal(b, &m)
		for _, k := range apiOnly {
			delete(m, k)
		}
		g.Rules = append(g.Rules, m)
	}
	f.Groups = []RuleGroupFile{g}
	if cp, ok := contactPoint(s); ok {
		f.ContactPoints = []ContactPointFile{cp}
		receiver := GrafanaContactPoint
		f.Policies = []PolicyFile{{OrgID: 1, NotificationPolicy: alerting.NotificationPolicy{
			Receiver: &receiver, GroupBy: []string{"grafana_folder", "alertname"},
			GroupWait: ptr("30s"), GroupInterval: ptr("5m"), RepeatInterval: ptr("4h"),
		}}}
	}
	return f, nil
}

// contactPoint is the spec's contact point: a webhook, e-mail or both.
func contactPoint(s *spec.Site) (ContactPointFile, bool) {
	a := s.Grafana.Alerts
	cp := ContactPointFile{OrgID: 1, Name: GrafanaContactPoint}
	if a.Webhook.IsSet() {
		b, err := alerting.NewContactPointBuilder().Uid("appliance-webhook").Name(GrafanaContactPoint).
			Type(alerting.ContactPointTypeWebhook).Settings(map[string]any{"url": a.Webhook.Reveal(), "httpMethod": "POST"}).Build()
		if err == nil {
			cp.Receivers = append(cp.Receivers, b)
		}
	}
	if len(a.Email) > 0 {
		b, err := alerting.NewContactPointBuilder().Uid("appliance-email").Name(GrafanaContactPoint).
			Type(alerting.ContactPointTypeEmail).Settings(map[string]any{"addresses": strings.Join(a.Email, ";"), "singleEmail": false}).Build()
		if err == nil {
			cp.Receivers = append(cp.Receivers, b)
		}
	}
	return cp, len(cp.Receivers) > 0
}

// alertingYAML renders the provisioning file.
func alertingYAML(s *spec.Site) string {
	f, err := Alerting(s)
	if err != nil {
		panic(err) // the rules are fixed and tested
	}
	b, _ := json.Marshal(f)
	var generic any
	json.Unmarshal(b, &generic)
	y, _ := yaml.Marshal(generic)
	return string(y)
}

// smtpData is the [smtp] section's settings; MandatoryStartTLS unless
// the port is 465, where Grafana speaks TLS from the start.
func smtpData(s *spec.Site) map[string]any {
	sm := s.Grafana.Alerts.SMTP
	if sm == nil {
		return nil
	}
	policy := "MandatoryStartTLS"
	if _, port, _ := net.SplitHostPort(sm.Host); port == "465" {
		policy = ""
	}
	return map[string]any{"Host": sm.Host, "From": sm.From, "User": sm.User, "Password": sm.Password.Reveal(), "StartTLS": policy}
}
