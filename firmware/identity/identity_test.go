package identity_test

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/appliance/appliance/firmware/identity"
	"github.com/appliance/appliance/firmware/internal/lfsref"
	"github.com/appliance/appliance/pki"
)

const psk = "correct horse battery staple"

// Sample is a node's identity with real PKI material from pki.
func sample(t testing.TB) identity.Identity {
	now := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	ca, _, err := pki.NewCA("greenhouse", now, now.AddDate(10, 0, 0))
	if err != nil {
		t.Fatal(err)
	}
	cert, key, _, err := ca.Issue(pki.Request{Name: "bench-1", Kind: pki.Node}, now)
	if err != nil {
		t.Fatal(err)
	}
	_, pub, err := pki.NewECDSAKey()
	if err != nil {
		t.Fatal(err)
	}
	return identity.Identity{
		Config: identity.Config{
			Format: identity.ConfigFormat, Node: "bench-1", Firmware: "sensor",
			WiFi:       identity.WiFi{SSID: "greenhouse", PSK: psk, Country: "DE"},
			MQTT:       identity.MQTT{Host: "greenhouse-gw", Port: 8883, Topic: "sensors/bench-1/reading"},
			IntervalMS: 30000, Sensor: identity.Sensor{Type: "dht11", Pin: 4},
			OTA: identity.OTA{URL: "https://greenhouse-gw/ota"}, TimeServer: "greenhouse-gw",
			Tags: map[string]string{"room": "north", "bench": "1"},
		},
		CA: ca.CertPEM, Cert: cert, Key: key, ManifestKeys: [][]byte{pub},
	}
}

// TestImageMounts: the reference littlefs mounts the identity image and
// reads every file back as given; Read gives the identity back.
func TestImageMounts(t *testing.T) {
	id := sample(t)
	img, err := id.Image(0x30000)
	if err != nil {
		t.Fatal(err)
	}
	fs, err := lfsref.Mount(img, 4096)
	if err != nil {
		t.Fatal(err)
	}
	files, err := id.Files()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		got, err := fs.ReadFile(f.Path)
		if err != nil || !bytes.Equal(got, f.Data) {
			t.Errorf("the reference reads %s as %d bytes (%v), want %d", f.Path, len(got), err, len(f.Data))
		}
	}
	entries, err := fs.Walk()
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, e := range entries {
		paths = append(paths, e.Path)
	}
	if want := "/ca.pem /config.json /node.crt /node.key /ota /ota/key-0.pem"; strings.Join(paths, " ") != want {
		t.Errorf("the image holds %s, want %s", strings.Join(paths, " "), want)
	}
	back, err := identity.Read(img)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(*back, id) {
		t.Errorf("Read gives\n%+v\nwant\n%+v", back.Config, id.Config)
	}
	again, _ := id.Image(0x30000)
	if !bytes.Equal(again, img) {
		t.Error("two images of one identity differ")
	}
}

func TestConfigJSON(t *testing.T) {
	id := sample(t)
	b, err := id.Config.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	want := `{
  "format": 1,
  "node": "bench-1",
  "firmware": "sensor",
  "wifi": {
    "ssid": "greenhouse",
    "psk": "correct horse battery staple",
    "country": "DE"
  },
  "mqtt": {
    "host": "greenhouse-gw",
    "port": 8883,
    "topic": "sensors/bench-1/reading"
  },
  "interval_ms": 30000,
  "sensor": {
    "type": "dht11",
    "pin": 4
  },
  "ota": {
    "url": "https://greenhouse-gw/ota"
  },
  "time_server": "greenhouse-gw",
  "tags": {
    "bench": "1",
    "room": "north"
  }
}
`
	if string(b) != want {
		t.Errorf("config.json:\n%s\nwant\n%s", b, want)
	}
}

func TestRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		f    func(id *identity.Identity)
		want string
	}{
		{"node name", func(id *identity.Identity) { id.Config.Node = "Bench_1" }, "node name"},
		{"short passphrase", func(id *identity.Identity) { id.Config.WiFi.PSK = "short" }, "passphrase must be"},
		{"topic", func(id *identity.Identity) { id.Config.MQTT.Topic = "sensors/other/reading" }, "ACL"},
		{"sensor", func(id *identity.Identity) { id.Config.Sensor.Type = "bmp280" }, "dht11, dht22"},
		{"interval", func(id *identity.Identity) { id.Config.IntervalMS = 10 }, "interval"},
		{"plain http", func(id *identity.Identity) { id.Config.OTA.URL = "http://gw/ota" }, "https URL"},
		{"no manifest key", func(id *identity.Identity) { id.ManifestKeys = nil }, "no OTA manifest key"},
		{"key not PEM", func(id *identity.Identity) { id.Key = []byte("secret") }, "node key: not PEM"},
		{"cert as key", func(id *identity.Identity) { id.Key = id.Cert }, `"CERTIFICATE" block`},
		{"two certs", func(id *identity.Identity) { id.CA = append(append([]byte(nil), id.CA...), id.Cert...) }, "more than one PEM block"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := sample(t)
			tc.f(&id)
			_, err := id.Image(0x30000)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Image = %v, want an error saying %q", err, tc.want)
			}
			if strings.Contains(err.Error(), psk) || (tc.name == "short passphrase" && strings.Contains(err.Error(), "short\"")) {
				t.Errorf("the error shows the passphrase: %v", err)
			}
		})
	}
}
