package modules_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/appliance/appliance/ingest/health"
)

// TestHealthConfig: the health program takes the configuration the
// module writes, and watches every certificate of the gateway.
func TestHealthConfig(t *testing.T) {
	for _, ex := range []string{"demo", "greenhouse"} {
		b, err := os.ReadFile("testdata/golden/" + ex + "/etc/appliance/health.json")
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(t.TempDir(), "health.json")
		os.WriteFile(p, b, 0o644)
		cfg, err := health.LoadConfig(p)
		if err != nil {
			t.Fatalf("%s: %v", ex, err)
		}
		var names []string
		for _, c := range cfg.Certificates {
			names = append(names, c.Kind+"/"+c.Name)
		}
		want := "ca/ca server/influxdb client/ingest server/mosquitto server/nginx"
		if ex == "greenhouse" {
			want = "ca/ca server/grafana server/influxdb client/ingest server/mosquitto server/nginx"
		}
		if got := strings.Join(names, " "); got != want {
			t.Errorf("%s: certificates %s, want %s", ex, got, want)
		}
		if len(cfg.Nodes) == 0 || cfg.InfluxDB.URL == "" || cfg.IngestMetrics == "" {
			t.Errorf("%s: %+v", ex, cfg)
		}
	}
}
