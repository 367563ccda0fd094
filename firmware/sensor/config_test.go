package sensor_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/appliance/appliance/firmware/identity"
)

func baseConfig() identity.Config {
	return identity.Config{
		Format: identity.ConfigFormat, Node: "bench-1", Firmware: "sensor",
		WiFi:       identity.WiFi{SSID: "greenhouse", PSK: "a passphrase of the site", Country: "DE"},
		MQTT:       identity.MQTT{Host: "greenhouse-gw", Port: 8883, Topic: "sensors/bench-1/reading"},
		IntervalMS: 30000, Sensor: identity.Sensor{Type: "dht11", Pin: 4},
		OTA: identity.OTA{URL: "https://greenhouse-gw/ota"}, TimeServer: "greenhouse-gw",
		Tags: map[string]string{"room": "north"},
	}
}

// TestConfigAgreesWithGo writes config.json files as firmware/identity
// does, valid and broken in each field, and checks that the core starts
// on exactly those that Config.Validate accepts, reads their values, and
// names the field at fault without ever quoting the passphrase.
func TestConfigAgreesWithGo(t *testing.T) {
	_, tool := programs(t)
	type change struct {
		name  string
		f     func(c *identity.Config)
		field string // what the core's error must name
	}
	long := func(n int) string { return strings.Repeat("a", n) }
	changes := []change{
		{"valid", func(*identity.Config) {}, ""},
		{"format 2", func(c *identity.Config) { c.Format = 2 }, "format"},
		{"format 0", func(c *identity.Config) { c.Format = 0 }, "format"},
		{"node 63", func(c *identity.Config) { c.Node = long(63); c.MQTT.Topic = "sensors/" + c.Node + "/reading" }, ""},
		{"node 64", func(c *identity.Config) { c.Node = long(64); c.MQTT.Topic = "sensors/" + c.Node + "/reading" }, "node"},
		{"node upper", func(c *identity.Config) { c.Node = "Bench-1"; c.MQTT.Topic = "sensors/Bench-1/reading" }, "node"},
		{"node hyphen end", func(c *identity.Config) { c.Node = "bench-"; c.MQTT.Topic = "sensors/bench-/reading" }, "node"},
		{"node empty", func(c *identity.Config) { c.Node = "" }, "node"},
		{"firmware dot", func(c *identity.Config) { c.Firmware = "sen.sor" }, "firmware"},
		{"firmware 33", func(c *identity.Config) { c.Firmware = long(33) }, "firmware"},
		{"ssid empty", func(c *identity.Config) { c.WiFi.SSID = "" }, "wifi.ssid"},
		{"ssid 32", func(c *identity.Config) { c.WiFi.SSID = long(32) }, ""},
		{"ssid 33", func(c *identity.Config) { c.WiFi.SSID = long(33) }, "wifi.ssid"},
		{"psk 7", func(c *identity.Config) { c.WiFi.PSK = "seven77" }, "wifi.psk"},
		{"psk 8", func(c *identity.Config) { c.WiFi.PSK = "eight888" }, ""},
		{"psk 63", func(c *identity.Config) { c.WiFi.PSK = long(63) }, ""},
		{"psk 64 text", func(c *identity.Config) { c.WiFi.PSK = long(63) + "z" }, "wifi.psk"},
		{"psk 64 hex", func(c *identity.Config) { c.WiFi.PSK = strings.Repeat("0aF9", 16) }, ""},
		{"psk control", func(c *identity.Config) { c.WiFi.PSK = "pass\nphrase" }, "wifi.psk"},
		{"no country", func(c *identity.Config) { c.WiFi.Country = "" }, ""},
		{"country lower", func(c *identity.Config) { c.WiFi.Country = "de" }, "wifi.country"},
		{"country 3", func(c *identity.Config) { c.WiFi.Country = "DEU" }, "wifi.country"},
		{"host address", func(c *identity.Config) { c.MQTT.Host = "192.168.1.50" }, ""},
		{"host ipv6", func(c *identity.Config) { c.MQTT.Host = "fd00::50" }, ""},
		{"host space", func(c *identity.Config) { c.MQTT.Host = "green house" }, "mqtt.host"},
		{"host empty", func(c *identity.Config) { c.MQTT.Host = "" }, "mqtt.host"},
		{"port 0", func(c *identity.Config) { c.MQTT.Port = 0 }, "mqtt.port"},
		{"port 65535", func(c *identity.Config) { c.MQTT.Port = 65535 }, ""},
		{"port 65536", func(c *identity.Config) { c.MQTT.Port = 65536 }, "mqtt.port"},
		{"topic other node", func(c *identity.Config) { c.MQTT.Topic = "sensors/bench-2/reading" }, "mqtt.topic"},
		{"topic wildcard", func(c *identity.Config) { c.MQTT.Topic = "sensors/#" }, "mqtt.topic"},
		{"interval 999", func(c *identity.Config) { c.IntervalMS = 999 }, "interval_ms"},
		{"interval 1000", func(c *identity.Config) { c.IntervalMS = 1000 }, ""},
		{"interval 24 h", func(c *identity.Config) { c.IntervalMS = 86400000 }, ""},
		{"interval over 24 h", func(c *identity.Config) { c.IntervalMS = 86400001 }, "interval_ms"},
		{"dht22", func(c *identity.Config) { c.Sensor.Type = "dht22" }, ""},
		{"sensor bme280", func(c *identity.Config) { c.Sensor.Type = "bme280" }, "sensor.type"},
		{"pin 48", func(c *identity.Config) { c.Sensor.Pin = 48 }, ""},
		{"pin 49", func(c *identity.Config) { c.Sensor.Pin = 49 }, "sensor.pin"},
		{"pin -1", func(c *identity.Config) { c.Sensor.Pin = -1 }, "sensor.pin"},
		{"ota port and path", func(c *identity.Config) { c.OTA.URL = "https://greenhouse-gw:8443/fw/ota" }, ""},
		{"ota http", func(c *identity.Config) { c.OTA.URL = "http://greenhouse-gw/ota" }, "ota.url"},
		{"ota trailing slash", func(c *identity.Config) { c.OTA.URL = "https://greenhouse-gw/ota/" }, "ota.url"},
		{"ota query", func(c *identity.Config) { c.OTA.URL = "https://greenhouse-gw/ota?x=1" }, "ota.url"},
		{"ota fragment", func(c *identity.Config) { c.OTA.URL = "https://greenhouse-gw/ota#x" }, "ota.url"},
		{"ota no host", func(c *identity.Config) { c.OTA.URL = "https:///ota" }, "ota.url"},
		{"ota 200", func(c *identity.Config) { c.OTA.URL = "https://gw/" + long(189) }, ""},
		{"ota 201", func(c *identity.Config) { c.OTA.URL = "https://gw/" + long(190) }, "ota.url"},
		{"time server empty", func(c *identity.Config) { c.TimeServer = "" }, "time_server"},
		{"no tags", func(c *identity.Config) { c.Tags = nil }, ""},
		{"tag name 64", func(c *identity.Config) { c.Tags = map[string]string{long(64): "v"} }, ""},
		{"tag name 65", func(c *identity.Config) { c.Tags = map[string]string{long(65): "v"} }, "tags"},
		{"tag value 257", func(c *identity.Config) { c.Tags = map[string]string{"room": long(257)} }, "tags"},
		{"tag name empty", func(c *identity.Config) { c.Tags = map[string]string{"": "v"} }, "tags"},
	}
	dir := t.TempDir()
	for _, ch := range changes {
		c := baseConfig()
		ch.f(&c)
		b, err := json.MarshalIndent(&c, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		goErr := c.Validate()
		path := filepath.Join(dir, strings.ReplaceAll(ch.name, " ", "_")+".json")
		os.WriteFile(path, b, 0o600)
		out := strings.TrimSpace(run(t, "", tool, "config", path))
		ok := strings.HasPrefix(out, "ok ")
		switch {
		case ok != (goErr == nil):
			t.Errorf("%s: the core says %q, Config.Validate %v", ch.name, out, goErr)
		case ok && out != "ok "+strings.Join([]string{c.Node, c.Firmware, c.MQTT.Host + ":" + itoa(c.MQTT.Port), c.MQTT.Topic, itoa(int(c.IntervalMS)), c.Sensor.Type, itoa(c.Sensor.Pin), c.OTA.URL, c.TimeServer}, " "):
			t.Errorf("%s: the core read %q", ch.name, out)
		case !ok && !strings.Contains(out, ch.field):
			t.Errorf("%s: the core's error %q does not name %s", ch.name, out, ch.field)
		case strings.Contains(out, c.WiFi.PSK):
			t.Errorf("%s: the core's answer quotes the passphrase: %q", ch.name, out)
		}
	}

	// What identity.Read would take but the core refuses to guess at:
	// broken JSON, fields missing or of another type, a key twice.
	good, _ := json.Marshal(baseConfig())
	g := string(good)
	for name, raw := range map[string]string{
		"not json":         g[:len(g)-1],
		"trailing data":    g + "{}",
		"array":            "[" + g + "]",
		"no node":          strings.Replace(g, `"node":"bench-1",`, "", 1),
		"no wifi":          strings.Replace(g, `"wifi":{"ssid":"greenhouse","psk":"a passphrase of the site","country":"DE"},`, "", 1),
		"port as string":   strings.Replace(g, `"port":8883`, `"port":"8883"`, 1),
		"pin fraction":     strings.Replace(g, `"pin":4`, `"pin":4.5`, 1),
		"node twice":       strings.Replace(g, `"node":"bench-1",`, `"node":"bench-1","node":"bench-2",`, 1),
		"tag not a string": strings.Replace(g, `"room":"north"`, `"room":7`, 1),
		"wifi not object":  strings.Replace(g, `"wifi":{`, `"wifi":1,"x":{`, 1),
	} {
		if raw == g {
			t.Fatalf("%s: the edit changed nothing", name)
		}
		path := filepath.Join(dir, "raw.json")
		os.WriteFile(path, []byte(raw), 0o600)
		if out := run(t, "", tool, "config", path); strings.HasPrefix(out, "ok") || !strings.HasPrefix(out, "config.json: ") {
			t.Errorf("%s: the core says %q", name, out)
		}
	}
	// Unknown fields, which later builds of format 1 may add, are fine.
	extra := strings.Replace(g, `{`, `{"new_field":{"a":[1]},`, 1)
	path := filepath.Join(dir, "extra.json")
	os.WriteFile(path, []byte(extra), 0o600)
	if out := run(t, "", tool, "config", path); !strings.HasPrefix(out, "ok ") {
		t.Errorf("an unknown field: %q", out)
	}
}

func itoa(v int) string { return strconv.Itoa(v) }
