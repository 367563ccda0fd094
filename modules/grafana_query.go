package modules

import (
	"errors"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/variants"
	"github.com/grafana/grafana-foundation-sdk/go/common"
)

// InfluxQuery is a query of Grafana's InfluxDB data source, InfluxQL or
// Flux. The foundation SDK has no type for this data source, so it is
// defined here as the SDK defines the others: a Dataquery variant with
// its builder.
type InfluxQuery struct {
	RefID      string                `json:"refId"`
	Datasource *common.DataSourceRef `json:"datasource,omitempty"`
	Query      string                `json:"query"`
	// RawQuery is set for InfluxQL written as text (Flux is always text).
	RawQuery bool `json:"rawQuery,omitempty"`
	// ResultFormat is "time_series" or "table" (InfluxQL).
	ResultFormat  string `json:"resultFormat,omitempty"`
	IntervalMs    int64  `json:"intervalMs,omitempty"`
	MaxDataPoints int64  `json:"maxDataPoints,omitempty"`
}

var (
	_ variants.Dataquery              = InfluxQuery{}
	_ cog.Builder[variants.Dataquery] = InfluxQuery{}
)

// ImplementsDataqueryVariant implements variants.Dataquery.
func (InfluxQuery) ImplementsDataqueryVariant() {}

// DataqueryType implements variants.Dataquery.
func (InfluxQuery) DataqueryType() string { return "influxdb" }

// Equals implements variants.Dataquery.
func (q InfluxQuery) Equals(other variants.Dataquery) bool {
	o, ok := other.(InfluxQuery)
	if !ok {
		return false
	}
	da, db := q.Datasource, o.Datasource
	q.Datasource, o.Datasource = nil, nil
	if q != o {
		return false
	}
	if da == nil || db == nil {
		return da == db
	}
	return ptrEq(da.Uid, db.Uid) && ptrEq(da.Type, db.Type)
}

func ptrEq(a, b *string) bool { return (a == nil && b == nil) || (a != nil && b != nil && *a == *b) }

// Validate implements variants.Dataquery.
func (q InfluxQuery) Validate() error {
	if q.RefID == "" || q.Query == "" {
		return errors.New("an InfluxDB query needs a refId and a query")
	}
	return nil
}

// Build implements cog.Builder, so a query can be given where the SDK
// takes a query builder.
func (q InfluxQuery) Build() (variants.Dataquery, error) {
	if err := q.Validate(); err != nil {
		return nil, cog.MakeBuildErrors("influxdb.query", err)
	}
	return q, nil
}
