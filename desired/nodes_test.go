package desired_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/appliance/appliance/desired"
	"github.com/appliance/appliance/firmware/bundle"
	"github.com/appliance/appliance/firmware/espimage"
	"github.com/appliance/appliance/firmware/identity"
	"github.com/appliance/appliance/firmware/ota"
	"github.com/appliance/appliance/firmware/secureboot"
	"github.com/appliance/appliance/internal/fwtest"
	"github.com/appliance/appliance/spec"
	"github.com/appliance/appliance/state"
)

const nodesSpec = `site "fleet" {}
gateway "gw" {
  board    = "qemu-arm64"
  hostname = "fleet-gw"
  address  = "192.168.7.2"
  admin {
    user            = "ops"
    authorized_keys = []
  }
}
os { suite = "trixie" }
https { port = 8443 }
firmware "sensor" {
  chip    = "esp32s3"
  version = "%s"
  image   = "build/sensor.bin"
}
node "shed" {
  count    = 2
  firmware = firmware.sensor
  sensor   = { type = "dht22", pin = 5 }
  interval = "10s"
  wifi     = { ssid = "fleet", psk = "fleet-wifi-passphrase" }
}
`

// fleet writes a site whose firmware has an app image of the version
// given, and opens its state (the same folder each call).
func fleet(t *testing.T, dir, specVersion, appVersion string) (*desired.Gateway, *state.Store) {
	t.Helper()
	os.MkdirAll(filepath.Join(dir, "build"), 0o755)
	app := fwtest.App{Chip: espimage.ESP32S3, Version: appVersion, Project: "sensor", IDFVersion: "v5.3", DataSize: 4096}.Image()
	if err := os.WriteFile(filepath.Join(dir, "build", "sensor.bin"), app, 0o644); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "fleet.hcl")
	os.WriteFile(p, []byte(strings.Replace(nodesSpec, "%s", specVersion, 1)), 0o644)
	site, rep := spec.Load(p, spec.Options{Environ: []string{"HOME=/nonexistent"}})
	if rep.HasErrors() {
		var b bytes.Buffer
		rep.WriteText(&b)
		t.Fatal(b.String())
	}
	g, err := desired.Compute(site)
	if err != nil {
		t.Fatal(err)
	}
	st, err := state.Open(filepath.Join(dir, "state"), state.Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if _, err := st.Ensure(g.Wants, false); err != nil {
		t.Fatal(err)
	}
	return g, st
}

func file(t *testing.T, r *desired.Resolved, p string) desired.File {
	t.Helper()
	for _, f := range r.Files {
		if f.Path == p {
			return f
		}
	}
	t.Fatalf("the gateway gets no %s", p)
	return desired.File{}
}

func publicKey[K any](t *testing.T, st *state.Store, rel string) K {
	t.Helper()
	b, _ := st.ReadFile(rel)
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s is not PEM", rel)
	}
	k, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return k.(K)
}

// TestNodesFromTheSpec: the firmware is signed with the state's Secure
// Boot key, published into the gateway's OTA tree with a manifest that a
// node accepts, and every node's bundle holds the signed app and an
// identity made from the spec and the state.
func TestNodesFromTheSpec(t *testing.T) {
	dir := t.TempDir()
	g, st := fleet(t, dir, "1.1.0", "1.1.0")
	now := time.Now()
	r, err := g.Resolve(st, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Firmware) != 1 || r.Firmware[0].NoApp || r.Firmware[0].Release == nil {
		t.Fatalf("firmware: %+v", r.Firmware)
	}
	man := file(t, r, "/var/lib/appliance/ota/sensor/manifest.json")
	sig := file(t, r, "/var/lib/appliance/ota/sensor/manifest.json.sig")
	if man.Owner != "root" || man.Group != "www-data" || man.Mode.Perm() != 0o640 {
		t.Errorf("manifest %s:%s %v; want root:www-data 0640 (nginx only)", man.Owner, man.Group, man.Mode)
	}
	key := publicKey[*ecdsa.PublicKey](t, st, "ota/"+state.ManifestKeyPublic)
	dev := ota.Device{Firmware: "sensor", Chip: "esp32s3", Version: "1.0.0"}
	m, err := ota.Verify(man.Data, sig.Data, []*ecdsa.PublicKey{key}, dev, now)
	if err != nil {
		t.Fatalf("a node refuses the manifest: %v", err)
	}
	if exp := time.Unix(m.Expires, 0); exp.Before(now.AddDate(5, 0, -1)) {
		t.Errorf("the manifest ends on %v, within the support period", exp)
	}
	img := file(t, r, "/var/lib/appliance/ota/"+m.Path)
	if err := m.CheckImage(img.Data); err != nil {
		t.Errorf("the published image: %v", err)
	}
	if _, err := secureboot.Verify(img.Data, publicKey[any](t, st, "ota/secure-boot-rsa3072.pub.pem")); err != nil {
		t.Errorf("the image is not signed with the state's Secure Boot key: %v", err)
	}

	if len(r.Nodes) != 2 {
		t.Fatalf("%d nodes", len(r.Nodes))
	}
	for _, n := range r.Nodes {
		if !n.Bundle.HasApp {
			t.Errorf("%s: the bundle holds no app", n.Name)
		}
		var lfs []byte
		for _, f := range n.Bundle.Files {
			if f.Path == bundle.IdentityFile {
				lfs = f.Data
			}
		}
		id, err := identity.Read(lfs)
		if err != nil {
			t.Fatalf("%s: %v", n.Name, err)
		}
		c := id.Config
		if c.Node != n.Name || c.MQTT.Host != "192.168.7.2" || c.MQTT.Port != 8883 || c.MQTT.Topic != "sensors/"+n.Name+"/reading" ||
			c.OTA.URL != "https://192.168.7.2:8443/ota" || c.IntervalMS != 10000 || c.Sensor.Type != "dht22" || c.Sensor.Pin != 5 || c.WiFi.PSK != "fleet-wifi-passphrase" {
			t.Errorf("%s: config %+v", n.Name, c)
		}
		crt, _ := st.ReadFile("pki/issued/" + n.Name + ".crt")
		if !bytes.Equal(id.Cert, crt) || n.CertExpires.IsZero() {
			t.Errorf("%s: the identity does not carry the state's certificate", n.Name)
		}
	}

	// Recorded, an unchanged firmware publishes the very same manifest;
	// a new version publishes the next one.
	if err := st.SaveRelease("sensor", *r.Firmware[0].Release); err != nil {
		t.Fatal(err)
	}
	again, err := g.Resolve(st, now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if m2 := file(t, again, "/var/lib/appliance/ota/sensor/manifest.json"); !bytes.Equal(m2.Data, man.Data) {
		t.Errorf("an unchanged firmware published another manifest")
	}
	st.Close()
	g2, st2 := fleet(t, dir, "1.2.0", "1.2.0")
	newer, err := g2.Resolve(st2, now)
	if err != nil {
		t.Fatal(err)
	}
	m3, err := ota.Parse(file(t, newer, "/var/lib/appliance/ota/sensor/manifest.json").Data)
	if err != nil {
		t.Fatal(err)
	}
	if m3.ManifestVersion != m.ManifestVersion+1 || m3.Version != "1.2.0" {
		t.Errorf("new firmware: manifest version %d (was %d), version %s", m3.ManifestVersion, m.ManifestVersion, m3.Version)
	}
}

// TestFirmwareVersionMismatch: a spec whose firmware version is not the
// app image's is refused, naming both.
func TestFirmwareVersionMismatch(t *testing.T) {
	g, st := fleet(t, t.TempDir(), "1.4.0", "1.3.9")
	_, err := g.Resolve(st, time.Now())
	var mm *espimage.MismatchError
	if !errors.As(err, &mm) || !strings.Contains(err.Error(), "1.4.0") || !strings.Contains(err.Error(), "1.3.9") {
		t.Errorf("a version mismatch: %v", err)
	}
}

// TestGenerationValid: the desired gateway, its OTA tree and programs
// among it, is a generation the apply program takes.
func TestGenerationValid(t *testing.T) {
	g, st := fleet(t, t.TempDir(), "1.1.0", "1.1.0")
	r, err := g.Resolve(st, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	gen := r.Generation(1, time.Now(), "test", []desired.Program{{Path: "/usr/lib/appliance/apply", Data: []byte("apply")}}, nil)
	if err := gen.Manifest.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, e := range gen.Manifest.Entries {
		if e.Type == "file" {
			if b, ok := gen.Blobs[e.SHA256]; !ok || int64(len(b)) != e.Size {
				t.Errorf("%s: no blob of its content", e.Path)
			}
		}
	}
	if !strings.Contains(string(mustMarshal(t, gen)), "/var/lib/appliance/ota/sensor/manifest.json") {
		t.Errorf("the generation does not carry the OTA tree")
	}
}

func mustMarshal(t *testing.T, g *desired.Generation) []byte {
	b, err := g.Manifest.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}
