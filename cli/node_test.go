package cli

import (
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/appliance/appliance/firmware/bundle"
	"github.com/appliance/appliance/firmware/espimage"
	"github.com/appliance/appliance/firmware/identity"
	"github.com/appliance/appliance/firmware/sim/simtest"
	"github.com/appliance/appliance/internal/testenv"
	"github.com/appliance/appliance/outputs"
	"github.com/appliance/appliance/pki"
	"github.com/appliance/appliance/state"
)

const nodePSK = "correct horse battery staple"

// nodeSite is a demo-like site with ports of the test's own, its state,
// and the nodes' part of a build output; its firmware has an app image
// unless noApp.
func nodeSite(t *testing.T, noApp bool) *simtest.Site {
	t.Helper()
	image := `image = "build/sensor.bin"`
	if noApp {
		image = ""
	}
	s := simtest.New(t, fmt.Sprintf(`
site "t" {}
gateway "gw" {
  board    = "qemu-arm64"
  hostname = "testgw"
}
mqtt {
  port = %d
}
https {
  port          = %d
  redirect_port = %d
}
firmware "sensor" {
  chip    = "esp32s3"
  version = "1.0.0"
  %s
}
node "bench" {
  count    = 2
  firmware = firmware.sensor
  sensor   = { type = "dht11", pin = 4 }
  interval = "30s"
  wifi     = { ssid = "demo-sensors", psk = %q }
  tags     = { room = "lab" }
}
`, testenv.FreePort(t), testenv.FreePort(t), testenv.FreePort(t), image, nodePSK),
		simtest.AppFile{Path: "build/sensor.bin", Chip: espimage.ESP32S3, Version: "1.0.0", Bootloader: true})
	s.Build(t)
	return s
}

// secrets are what must never appear in any output: the Wi-Fi
// passphrase and every private key of the state, as PEM and by each
// line of its base64 body.
func secrets(t *testing.T, s *simtest.Site) []string {
	t.Helper()
	out := []string{nodePSK}
	for _, rel := range []string{"pki/issued/bench-1.key", "pki/issued/bench-2.key", "ota/" + state.SecureBootKey, "ota/" + state.ManifestKey, "pki/ca.key"} {
		b := s.StateFile(t, rel)
		blk, _ := pem.Decode(b)
		if blk == nil {
			t.Fatalf("%s is not PEM", rel)
		}
		for _, l := range strings.Split(string(b), "\n") {
			if len(l) > 20 && !strings.HasPrefix(l, "-----") {
				out = append(out, l)
			}
		}
	}
	return out
}

func noSecrets(t *testing.T, secret []string, what string, outputs ...string) {
	t.Helper()
	for _, o := range outputs {
		for _, s := range secret {
			if strings.Contains(o, s) {
				t.Errorf("%s prints a secret (%.12s…)", what, s)
			}
		}
	}
}

// TestNodeList lists the build's nodes from build-info.json, as text and
// as JSON.
func TestNodeList(t *testing.T) {
	s := nodeSite(t, false)
	code, out, errs := run(t, nil, "node", "list", s.Out)
	if code != 0 || errs != "" {
		t.Fatalf("exit %d: %s", code, errs)
	}
	cert, _ := pki.ParseCert(s.StateFile(t, "pki/issued/bench-2.crt"))
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "NODE") {
		t.Fatalf("node list:\n%s", out)
	}
	if f := strings.Fields(lines[2]); strings.Join(f, " ") != "bench-2 sensor 1.0.0 esp32s3 "+cert.NotAfter.UTC().Format("2006-01-02")+" yes" {
		t.Errorf("bench-2's line %q", lines[2])
	}
	code, out, _ = run(t, nil, "node", "list", "--json", s.Out)
	var nodes []outputs.Node
	if code != 0 || json.Unmarshal([]byte(out), &nodes) != nil || len(nodes) != 2 || nodes[0].Name != "bench-1" || !nodes[0].App || nodes[0].Chip != "esp32s3" {
		t.Errorf("node list --json: exit %d\n%s", code, out)
	}
	noSecrets(t, secrets(t, s), "node list", out)

	// Without an app, the bundle says so.
	s = nodeSite(t, true)
	_, out, _ = run(t, nil, "node", "list", s.Out)
	if !strings.Contains(out, "no (identity only)") {
		t.Errorf("node list of a build without an app:\n%s", out)
	}
	// Not a build's output.
	code, _, errs = run(t, nil, "node", "list", t.TempDir())
	if code != 1 || !strings.Contains(errs, "has no build-info.json") || !strings.Contains(errs, "appliance build") {
		t.Errorf("node list of an empty folder: exit %d: %s", code, errs)
	}
}

// TestNodeShow shows a node from its identity image: its settings (the
// passphrase only said to be set), its certificate's subject, serial and
// end as the state issued it, the bundle's files with the digests of the
// files on disk, and the flash command; no secret in either form.
func TestNodeShow(t *testing.T) {
	s := nodeSite(t, false)
	secret := secrets(t, s)
	cert, _ := pki.ParseCert(s.StateFile(t, "pki/issued/bench-1.crt"))
	dir := outputs.NodeDir(s.Out, "bench-1")
	code, out, errs := run(t, nil, "node", "show", s.Out, "bench-1")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{
		`"demo-sensors", passphrase set (not shown)`,
		"testgw.local:" + fmt.Sprint(s.Spec.MQTT.Port) + ", topic sensors/bench-1/reading",
		"dht11 on GPIO 4", "room=lab", "30s",
		"CN=bench-1", pki.SerialHex(cert.SerialNumber), cert.NotAfter.UTC().Format("2006-01-02"),
		"/ota/key-0.pem",
		"cd " + dir + " && esptool.py --chip esp32s3 write_flash @flash_args",
		"esptool.py --chip esp32s3 write_flash 0x0 " + filepath.Join(dir, "merged.bin"),
		testenv.FileSHA256(t, filepath.Join(dir, bundle.AppFile)),
		testenv.FileSHA256(t, filepath.Join(dir, bundle.MergedFile)),
		testenv.FileSHA256(t, filepath.Join(dir, bundle.IdentityFile)),
	} {
		if !strings.Contains(out, want) {
			t.Errorf("node show lacks %q:\n%s", want, out)
		}
	}
	code, js, _ := run(t, nil, "node", "show", "--json", s.Out, "bench-1")
	var v struct {
		Config struct {
			WiFi map[string]any `json:"wifi"`
		} `json:"config"`
		Certificate struct{ Serial, Subject string } `json:"certificate"`
		Artifacts   []struct {
			Path   string
			Size   int64
			SHA256 string
		} `json:"artifacts"`
		Flash struct{ Bundle string } `json:"flash"`
	}
	if code != 0 || json.Unmarshal([]byte(js), &v) != nil {
		t.Fatalf("node show --json: exit %d\n%s", code, js)
	}
	if v.Config.WiFi["psk_set"] != true || v.Config.WiFi["ssid"] != "demo-sensors" || len(v.Config.WiFi) != 2 {
		t.Errorf("wifi %v", v.Config.WiFi)
	}
	if v.Certificate.Serial != pki.SerialHex(cert.SerialNumber) || v.Certificate.Subject != cert.Subject.String() {
		t.Errorf("certificate %+v", v.Certificate)
	}
	files := map[string]bool{}
	for _, a := range v.Artifacts {
		files[a.Path] = true
		fi, err := os.Stat(filepath.Join(dir, a.Path))
		if err != nil || fi.Size() != a.Size || testenv.FileSHA256(t, filepath.Join(dir, a.Path)) != a.SHA256 {
			t.Errorf("artifact %+v does not match the file", a)
		}
	}
	for _, f := range []string{bundle.AppFile, bundle.IdentityFile, bundle.MergedFile, bundle.FlashArgs, bundle.FlasherArgs, bundle.TableFile, bundle.OTADataFile, bundle.BootloaderFile} {
		if !files[f] {
			t.Errorf("artifacts lack %s: %v", f, files)
		}
	}
	noSecrets(t, secret, "node show", out, js, errs)

	code, _, errs = run(t, nil, "node", "show", s.Out, "bench-9")
	if code != 1 || !strings.Contains(errs, `no node "bench-9"; its nodes are bench-1, bench-2`) {
		t.Errorf("unknown node: exit %d: %s", code, errs)
	}
}

// TestNodeExport writes the identity image's files into a folder, at
// their LittleFS paths, byte for byte what the state issued, the private
// key 0600; a folder that holds something is refused unless --force.
func TestNodeExport(t *testing.T) {
	s := nodeSite(t, false)
	dir := filepath.Join(t.TempDir(), "bench-2")
	code, out, errs := run(t, nil, "node", "export", s.Out, "bench-2", dir)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	noSecrets(t, secrets(t, s), "node export", out, errs)
	for path, want := range map[string][]byte{
		identity.CAPath:                 s.StateFile(t, "pki/ca.crt"),
		identity.CertPath:               s.StateFile(t, "pki/issued/bench-2.crt"),
		identity.KeyPath:                s.StateFile(t, "pki/issued/bench-2.key"),
		identity.ManifestKeyPath(0):     s.StateFile(t, "ota/manifest-ecdsa-p256.pub.pem"),
		identity.ConfigPath + ".absent": nil,
	} {
		got, err := os.ReadFile(filepath.Join(dir, path))
		if want == nil {
			if err == nil {
				t.Errorf("%s exported", path)
			}
			continue
		}
		if err != nil || string(got) != string(want) {
			t.Errorf("%s: %v; not the state's file", path, err)
		}
	}
	var cfg identity.Config
	b, _ := os.ReadFile(filepath.Join(dir, identity.ConfigPath))
	if err := json.Unmarshal(b, &cfg); err != nil || cfg.Node != "bench-2" || cfg.WiFi.PSK != nodePSK || cfg.MQTT.Topic != "sensors/bench-2/reading" {
		t.Errorf("config.json: %v %+v", err, cfg.MQTT)
	}
	for path, mode := range map[string]os.FileMode{identity.KeyPath: 0o600, identity.CertPath: 0o644, "": 0o700} {
		fi, err := os.Stat(filepath.Join(dir, path))
		if err != nil || fi.Mode().Perm() != mode {
			t.Errorf("%q: mode %v, want %v", path, fi.Mode().Perm(), mode)
		}
	}

	code, _, errs = run(t, nil, "node", "export", s.Out, "bench-1", dir)
	if code != 1 || !strings.Contains(errs, "is not empty") || !strings.Contains(errs, "--force") {
		t.Errorf("export into a full folder: exit %d: %s", code, errs)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, identity.KeyPath)); string(b) != string(s.StateFile(t, "pki/issued/bench-2.key")) {
		t.Errorf("the refused export changed the folder")
	}
	os.WriteFile(filepath.Join(dir, "mine.txt"), []byte("kept"), 0o644)
	if code, _, errs = run(t, nil, "node", "export", "--force", s.Out, "bench-1", dir); code != 0 {
		t.Fatalf("export --force: exit %d: %s", code, errs)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, identity.CertPath)); string(b) != string(s.StateFile(t, "pki/issued/bench-1.crt")) {
		t.Errorf("--force did not write bench-1's certificate")
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "mine.txt")); string(b) != "kept" {
		t.Errorf("--force removed a file of the folder's own")
	}
	if fi, _ := os.Stat(filepath.Join(dir, identity.KeyPath)); fi.Mode().Perm() != 0o600 {
		t.Errorf("key mode after --force %v", fi.Mode().Perm())
	}
}

func TestNodeUsage(t *testing.T) {
	for _, args := range [][]string{
		{"node"}, {"node", "sideways"}, {"node", "show", "out"}, {"node", "export", "--json", "a", "b", "c"}, {"node", "list", "--force", "out"},
	} {
		code, _, errs := run(t, nil, args...)
		if code != 1 || !strings.Contains(errs, "Run appliance node --help") {
			t.Errorf("%q: exit %d: %s", args, code, errs)
		}
	}
}
