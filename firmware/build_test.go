package firmware_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/appliance/appliance/firmware"
	"github.com/appliance/appliance/firmware/bundle"
	"github.com/appliance/appliance/firmware/espimage"
	"github.com/appliance/appliance/firmware/identity"
	"github.com/appliance/appliance/firmware/ota"
	"github.com/appliance/appliance/firmware/secureboot"
	"github.com/appliance/appliance/internal/fwtest"
	"github.com/appliance/appliance/pki"
)

var now = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)

var material struct {
	sync.Once
	signing, manifest crypto.Signer
	manifestPub       []byte
	ca, cert, key     []byte
}

func keys(t testing.TB) {
	material.Do(func() {
		priv, _, err := pki.NewSecureBootKey()
		if err != nil {
			t.Fatal(err)
		}
		material.signing, _ = pki.ParseKey(priv)
		priv, material.manifestPub, _ = pki.NewECDSAKey()
		material.manifest, _ = pki.ParseKey(priv)
		ca, _, _ := pki.NewCA("greenhouse", now, now.AddDate(10, 0, 0))
		material.ca = ca.CertPEM
		material.cert, material.key, _, _ = ca.Issue(pki.Request{Name: "bench", Kind: pki.Node}, now)
	})
}

func site(t testing.TB, n int, withApp bool) (firmware.Firmware, []identity.Identity) {
	keys(t)
	fw := firmware.Firmware{
		Name: "sensor", Chip: "esp32s3", Version: "1.4.0", SecureVersion: 1, FlashSize: 4 << 20,
		Bootloader:  fwtest.App{Chip: espimage.ESP32S3, Bootloader: true, DataSize: 20000}.Image(),
		SigningKeys: []crypto.Signer{material.signing}, ManifestKey: material.manifest,
		ManifestExpires: now.AddDate(5, 0, 0),
	}
	if withApp {
		fw.App = fwtest.App{Chip: espimage.ESP32S3, Version: "1.4.0", SecureVersion: 1, DataSize: 900000}.Image()
	}
	var nodes []identity.Identity
	for i := range n {
		name := fmt.Sprintf("bench-%d", i+1)
		nodes = append(nodes, identity.Identity{
			Config: identity.Config{
				Format: identity.ConfigFormat, Node: name, Firmware: "sensor",
				WiFi:       identity.WiFi{SSID: "greenhouse", PSK: "a passphrase of the site"},
				MQTT:       identity.MQTT{Host: "greenhouse-gw", Port: 8883, Topic: "sensors/" + name + "/reading"},
				IntervalMS: 30000, Sensor: identity.Sensor{Type: "dht22", Pin: 4},
				OTA: identity.OTA{URL: "https://greenhouse-gw/ota"}, TimeServer: "greenhouse-gw",
				Tags: map[string]string{"bench": fmt.Sprint(i / 10)},
			},
			CA: material.ca, Cert: material.cert, Key: material.key, ManifestKeys: [][]byte{material.manifestPub},
		})
	}
	return fw, nodes
}

func TestBuild(t *testing.T) {
	fw, nodes := site(t, 3, true)
	out, err := firmware.Build(fw, nodes, now)
	if err != nil {
		t.Fatal(err)
	}
	if out.NoApp || out.OTA == nil || len(out.Bundles) != 3 {
		t.Fatalf("NoApp %v, OTA %v, %d bundles", out.NoApp, out.OTA != nil, len(out.Bundles))
	}
	if _, err := secureboot.Verify(out.SignedApp, material.signing.Public()); err != nil {
		t.Errorf("the signed app: %v", err)
	}
	m, err := ota.Verify(out.OTA.Release.Manifest, out.OTA.Release.Signature, []*ecdsa.PublicKey{material.manifest.Public().(*ecdsa.PublicKey)},
		ota.Device{Firmware: "sensor", Chip: "esp32s3", Version: "1.3.0", SecureVersion: 1}, now)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.CheckImage(out.SignedApp); err != nil {
		t.Error(err)
	}
	for i, b := range out.Bundles {
		var app, fs []byte
		for _, f := range b.Files {
			switch f.Path {
			case bundle.AppFile:
				app = f.Data
			case bundle.IdentityFile:
				fs = f.Data
			}
		}
		if !bytes.Equal(app, out.SignedApp) {
			t.Errorf("bundle %d does not hold the signed app", i)
		}
		id, err := identity.Read(fs)
		if err != nil || id.Config.Node != nodes[i].Config.Node {
			t.Errorf("bundle %d's identity: %v, %v", i, id, err)
		}
	}
}

func TestBuildWithoutApp(t *testing.T) {
	fw, nodes := site(t, 2, false)
	out, err := firmware.Build(fw, nodes, now)
	if err != nil {
		t.Fatal(err)
	}
	if !out.NoApp || out.OTA != nil || len(out.Bundles) != 2 || out.Bundles[0].HasApp {
		t.Errorf("NoApp %v, OTA %v, %d bundles", out.NoApp, out.OTA, len(out.Bundles))
	}
}

func TestBuildRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		f    func(fw *firmware.Firmware, nodes []identity.Identity)
		want string
	}{
		{"version", func(fw *firmware.Firmware, _ []identity.Identity) { fw.Version = "1.5.0" }, `firmware "sensor": the spec's version is "1.5.0" but the image's app descriptor says "1.4.0"`},
		{"secure version", func(fw *firmware.Firmware, _ []identity.Identity) { fw.SecureVersion = 2 }, "secure_version is 2 but the image's app descriptor says 1"},
		{"chip", func(fw *firmware.Firmware, _ []identity.Identity) { fw.Chip = "esp32c3" }, "built for esp32s3, not esp32c3"},
		{"node of another firmware", func(_ *firmware.Firmware, nodes []identity.Identity) { nodes[1].Config.Firmware = "relay" }, `node "bench-2" follows firmware "relay"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fw, nodes := site(t, 2, true)
			tc.f(&fw, nodes)
			_, err := firmware.Build(fw, nodes, now)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Build = %v, want an error saying %q", err, tc.want)
			}
		})
	}
}

// BenchmarkNodes1000 signs a 1 MB app, makes its OTA tree and 1,000
// nodes' identity images and flash bundles, and streams each node's
// 4 MB merged image (to io.Discard: the disk is not what is measured).
func BenchmarkNodes1000(b *testing.B) {
	fw, nodes := site(b, 1000, true)
	for b.Loop() {
		out, err := firmware.Build(fw, nodes, now)
		if err != nil {
			b.Fatal(err)
		}
		for _, bu := range out.Bundles {
			if err := bu.WriteMerged(io.Discard); err != nil {
				b.Fatal(err)
			}
		}
	}
}
