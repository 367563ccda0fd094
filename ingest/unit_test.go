package ingest_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/appliance/appliance/ingest"
	"github.com/appliance/appliance/ingest/internal/testenv"
	"github.com/appliance/appliance/modules"
	"github.com/appliance/appliance/spec"
)

var paths = modules.IngestPaths{CAFile: "/etc/appliance/pki/ca.crt", CertFile: "/etc/appliance/pki/ingest.crt", KeyFile: "/etc/appliance/pki/ingest.key", InfluxSecretFile: "/etc/appliance/secrets/influxdb-ingest-token"}

// TestUnitSecurity checks the unit with systemd's own tools: it must
// verify, and its exposure must be 1.5 or lower.
func TestUnitSecurity(t *testing.T) {
	testenv.Need(t, "systemd-analyze")
	dir := t.TempDir()
	unit := filepath.Join(dir, modules.IngestUnit)
	// verify wants ExecStart to exist: point it at the real binary.
	text := strings.Replace(modules.IngestUnitFile("demo", paths), modules.IngestBinary, testenv.Binary(t), 1)
	if err := os.WriteFile(unit, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("systemd-analyze", "verify", unit).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	out, err = exec.Command("systemd-analyze", "security", "--offline=true", "--no-pager", unit).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze security: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no exposure level in:\n%s", out)
	}
	score, _ := strconv.ParseFloat(string(m[1]), 64)
	if score > 1.5 {
		t.Errorf("exposure %.1f, want at most 1.5:\n%s", score, out)
	}
	t.Logf("exposure %.1f", score)
	for _, want := range []string{"Type=notify", "WatchdogSec=", "DynamicUser=yes", "StateDirectory=appliance-ingest", "ProtectSystem=strict", "CapabilityBoundingSet=\n", "LoadCredential=ingest.key:/etc/appliance/pki/ingest.key"} {
		if !strings.Contains(modules.IngestUnitFile("demo", paths), want) {
			t.Errorf("unit lacks %q", want)
		}
	}
}

// TestConfigFor: the ingest module renders the demo site's configuration, reads it back as
// the service would, and checks what the module relies on.
func TestConfigFor(t *testing.T) {
	site, rep := spec.Load("../examples/demo.hcl", spec.Options{Vars: []string{"wifi_psk=correct-horse-battery"}, Environ: []string{}})
	if site == nil {
		var b strings.Builder
		rep.WriteText(&b)
		t.Fatalf("examples/demo.hcl:\n%s", b.String())
	}
	cfg := modules.IngestConfig(site)
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "ingest.json")
	os.WriteFile(path, b, 0o600)
	got, err := ingest.LoadConfig(path)
	if err != nil {
		t.Fatalf("LoadConfig of ConfigFor's output: %v\n%s", err, b)
	}
	if len(got.Nodes) != len(site.Nodes) || len(site.Nodes) == 0 {
		t.Errorf("%d nodes in the config, %d in the site", len(got.Nodes), len(site.Nodes))
	}
	if got.MQTT.Broker != "localhost:"+strconv.Itoa(site.MQTT.Port) || got.MQTT.ServerName != "localhost" || got.Subscription() != "sensors/+/reading" {
		t.Errorf("broker %s, name %s, subscription %s", got.MQTT.Broker, got.MQTT.ServerName, got.Subscription())
	}
	if got.Spool.MaxBytes != site.Ingest.SpoolSize || got.BatchSize != site.Ingest.BatchSize || got.Listen != "127.0.0.1:"+strconv.Itoa(site.Ingest.MetricsPort) {
		t.Errorf("spool %d, batch %d, listen %s", got.Spool.MaxBytes, got.BatchSize, got.Listen)
	}
	if !strings.HasPrefix(got.MQTT.KeyFile, "$CREDENTIALS_DIRECTORY/") {
		t.Errorf("key file %s is not a credential", got.MQTT.KeyFile)
	}
	if strings.Contains(string(b), "secret") && !strings.Contains(string(b), "_file") {
		t.Errorf("the config holds a secret:\n%s", b)
	}
	site.Ingest.SharedSubscription = true
	if s := modules.IngestConfig(site); s.Subscription() != "$share/ingest/sensors/+/reading" {
		t.Errorf("shared subscription = %s", s.Subscription())
	}
}

func TestConfigErrors(t *testing.T) {
	for _, c := range []struct {
		edit func(*ingest.Config)
		want string
	}{
		{func(c *ingest.Config) { c.MQTT.Broker = "localhost" }, "mqtt.broker"},
		{func(c *ingest.Config) { c.InfluxDB.Version = 3 }, "influxdb.version 3"},
		{func(c *ingest.Config) { c.Nodes = nil }, "no node is configured"},
		{func(c *ingest.Config) { c.Nodes["x"] = ingest.Node{Sensor: "bme280"} }, `nodes.x.sensor "bme280"`},
		{func(c *ingest.Config) {
			c.Nodes["y"] = ingest.Node{Sensor: "dht11", Tags: map[string]string{"node": "z"}}
		}, "written by ingest itself"},
		{func(c *ingest.Config) { c.MQTT.Topic = "$share/g/sensors/+/reading" }, "set mqtt.shared_group"},
		{func(c *ingest.Config) { c.Spool.MaxBytes = 1000 }, "at least 4 MiB"},
	} {
		cfg := ingest.Config{
			MQTT:     ingest.MQTT{Broker: "localhost:8883", ServerName: "localhost", CAFile: "ca", CertFile: "c", KeyFile: "k", ClientID: "i"},
			InfluxDB: ingest.InfluxDB{URL: "http://localhost:8086", Version: 1, Database: "sensors"},
			Spool:    ingest.Spool{Dir: "/tmp/x"},
			Nodes:    map[string]ingest.Node{"a": {Sensor: "dht22"}},
		}
		c.edit(&cfg)
		err := cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Validate() = %v; want an error about %q", err, c.want)
		}
	}
}
