package modules_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/appliance/appliance/evidence"
	"github.com/appliance/appliance/ingest/health"
	"github.com/appliance/appliance/modules"
	"github.com/appliance/appliance/spec"
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

// TestClaims: every claim of the CRA report names a requirement of
// Annex I, a feature and tests, and every test it names exists
// (package.TestName, the package by its folder's name).
func TestClaims(t *testing.T) {
	site, rep := spec.Load("../examples/greenhouse.hcl", spec.Options{Environ: []string{}, Partial: true})
	if rep.HasErrors() {
		t.Fatalf("%v", rep.Diagnostics)
	}
	set, err := modules.Collect(site)
	if err != nil {
		t.Fatal(err)
	}
	claims := append(set.Claims(), evidence.BuildClaims...)
	if err := evidence.CheckClaims(claims); err != nil {
		t.Fatal(err)
	}
	tests := map[string]bool{}
	filepath.WalkDir("..", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, "_test.go") {
			return nil
		}
		b, _ := os.ReadFile(p)
		for _, m := range testFuncRe.FindAllSubmatch(b, -1) {
			tests[filepath.Base(filepath.Dir(p))+"."+string(m[1])] = true
		}
		return nil
	})
	covered := map[string]bool{}
	for _, c := range claims {
		covered[c.Requirement] = true
		for _, name := range c.Tests {
			if !tests[name] {
				t.Errorf("%s claims %s with test %s, which does not exist", c.Module, c.Requirement, name)
			}
		}
	}
	for _, want := range []string{"I.2(b)", "I.2(c)", "I.2(d)", "I.2(e)", "I.2(f)", "I.2(j)", "I.2(l)", "II.1"} {
		if !covered[want] {
			t.Errorf("no feature claims %s", want)
		}
	}
}

var testFuncRe = regexp.MustCompile(`(?m)^func (Test\w+)\(t \*testing\.T\)`)
