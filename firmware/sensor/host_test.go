package sensor_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/appliance/appliance/desired"
	"github.com/appliance/appliance/firmware/bundle"
	"github.com/appliance/appliance/firmware/espimage"
	"github.com/appliance/appliance/firmware/littlefs"
	"github.com/appliance/appliance/firmware/ota"
	"github.com/appliance/appliance/firmware/partition"
	"github.com/appliance/appliance/ingest"
	"github.com/appliance/appliance/internal/fwtest"
	"github.com/appliance/appliance/internal/testenv"
	"github.com/appliance/appliance/modules"
	"github.com/appliance/appliance/spec"
	"github.com/appliance/appliance/state"
)

// gateway is a site built as `appliance build` builds it (desired's
// Resolve: the gateway's files, the signed firmware in the OTA tree,
// every node's bundle) with its services running on loopback from the
// generated files: mosquitto and nginx with the modules' config, the
// ingest service with the ingest module's, and influxd.
type gateway struct {
	t                 *testing.T
	dir, root         string
	ports             [4]int
	site              *spec.Site
	g                 *desired.Gateway
	st                *state.Store
	built             *desired.Resolved
	mosquitto, nginx  *testenv.Proc
	influx            *testenv.Proc
	influxURL, adminP string
	ingest            *testenv.Proc
}

func newGateway(t *testing.T) *gateway {
	testenv.Require(t, "mosquitto", "nginx", "influxd")
	dir := t.TempDir()
	gw := &gateway{t: t, dir: dir, root: filepath.Join(dir, "root")}
	for i := range gw.ports {
		gw.ports[i] = testenv.FreePort(t)
	}
	st, err := state.Open(filepath.Join(dir, "state"), state.Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	gw.st = st
	return gw
}

// build builds the site with an app image of the given version, as
// `appliance build` does after `idf.py build`: it loads the spec, signs
// and publishes the firmware (recording the release in the state, so
// that the next manifest's version goes on from it) and writes the
// gateway's files.
func (gw *gateway) build(version string) *desired.Resolved {
	t := gw.t
	image := filepath.Join(gw.dir, "build-"+version, "sensor.bin")
	os.MkdirAll(filepath.Dir(image), 0o755)
	app := fwtest.App{Chip: espimage.ESP32S3, Version: version, DataSize: 150000, Seed: uint64(len(version)) + uint64(version[len(version)-3])}.Image()
	if err := os.WriteFile(image, app, 0o644); err != nil {
		t.Fatal(err)
	}
	src := fmt.Sprintf(`
site "fw" {}
gateway "gw" {
  board    = "qemu-arm64"
  hostname = "testgw"
  # where the nodes reach it: the test's loopback
  address  = "localhost"
}
mqtt     { port = %d }
https    { port = %d }
influxdb {
  version = 1
  port    = %d
}
ingest   {
  metrics_port   = %d
  flush_interval = "200ms"
}
firmware "sensor" {
  chip    = "esp32s3"
  version = "%s"
  image   = "%s"
}
node "bench" {
  count    = 2
  firmware = firmware.sensor
  sensor   = { type = "dht11", pin = 4 }
  interval = "1s"
  wifi     = { ssid = "lab", psk = "long enough passphrase" }
  tags     = { room = "lab" }
}
`, gw.ports[0], gw.ports[1], gw.ports[2], gw.ports[3], version, image)
	path := filepath.Join(gw.dir, "site.hcl")
	os.WriteFile(path, []byte(src), 0o644)
	site, rep := spec.Load(path, spec.Options{Environ: []string{"HOME=/nonexistent"}})
	if rep.HasErrors() {
		var b bytes.Buffer
		rep.WriteText(&b)
		t.Fatalf("spec: %s", b.String())
	}
	g, err := desired.Compute(site)
	if err != nil {
		t.Fatal(err)
	}
	if res, err := gw.st.Ensure(g.Wants, false); err != nil || res.Errors() {
		t.Fatalf("state: %v %+v", err, res)
	}
	gw.site, gw.g = site, g
	gw.apply()
	for _, fw := range gw.built.Firmware {
		if fw.Release != nil {
			if err := gw.st.SaveRelease(fw.Name, *fw.Release); err != nil {
				t.Fatal(err)
			}
		}
	}
	return gw.built
}

func (gw *gateway) path(p string) string { return filepath.Join(gw.root, p) }

// apply resolves the gateway's files and writes them, moving their
// paths under the test's root (the test runs the services as root,
// from there).
func (gw *gateway) apply() {
	t := gw.t
	r, err := gw.g.Resolve(gw.st, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Apply(desired.Folder{Root: gw.root}); err != nil {
		t.Fatal(err)
	}
	gw.built = r
	os.MkdirAll(gw.path("/var/lib/mosquitto"), 0o755)
	testenv.Rewrite(t, gw.path("/etc/mosquitto/mosquitto.conf"),
		"/etc/mosquitto/", gw.path("/etc/mosquitto")+"/",
		"/var/lib/mosquitto/", gw.path("/var/lib/mosquitto")+"/",
		"user mosquitto", "user root")
	testenv.Rewrite(t, gw.path("/etc/nginx/nginx.conf"),
		"/etc/nginx/appliance/", gw.path("/etc/nginx/appliance")+"/",
		"/var/lib/appliance/ota/", gw.path(modules.OTADir)+"/",
		"/run/nginx/nginx.pid", gw.path("/nginx.pid"),
		"worker_processes auto;", "worker_processes 1;\nuser root;")
}

func (gw *gateway) startMosquitto() {
	gw.mosquitto = testenv.Start(gw.t, "mosquitto", "-c", gw.path("/etc/mosquitto/mosquitto.conf"))
	gw.mosquitto.WaitPort(gw.t, fmt.Sprintf("127.0.0.1:%d", gw.site.MQTT.Port), 10*time.Second)
}

func (gw *gateway) startNginx() {
	conf := gw.path("/etc/nginx/nginx.conf")
	if out, err := testenv.Run("nginx", "-t", "-e", "stderr", "-c", conf); err != nil {
		gw.t.Fatalf("nginx -t refuses the generated config: %v\n%s", err, out)
	}
	gw.nginx = testenv.Start(gw.t, "nginx", "-e", "stderr", "-c", conf, "-g", "daemon off;")
	gw.nginx.WaitPort(gw.t, fmt.Sprintf("127.0.0.1:%d", gw.site.HTTPS.Port), 10*time.Second)
}

// startInflux runs influxd with authentication, an admin, and the
// ingest user and database that influxsetup makes on the gateway.
func (gw *gateway) startInflux() (password string) {
	t := gw.t
	dir := t.TempDir()
	conf := fmt.Sprintf(`reporting-disabled = true
bind-address = "127.0.0.1:%d"
[meta]
  dir = "%[2]s/meta"
[data]
  dir = "%[2]s/data"
  wal-dir = "%[2]s/wal"
  query-log-enabled = false
  wal-fsync-delay = "0s"
[http]
  bind-address = "127.0.0.1:%d"
  auth-enabled = true
  log-enabled = false
[monitor]
  store-enabled = false
[logging]
  level = "warn"
`, testenv.FreePort(t), dir, gw.site.InfluxDB.Port)
	os.WriteFile(filepath.Join(dir, "influxdb.conf"), []byte(conf), 0o600)
	gw.influx = testenv.Start(t, "influxd", "-config", filepath.Join(dir, "influxdb.conf"))
	gw.influxURL = fmt.Sprintf("http://127.0.0.1:%d", gw.site.InfluxDB.Port)
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(gw.influxURL + "/ping")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) || gw.influx.Exited() {
			t.Fatalf("influxd does not answer: %v\n%s", err, gw.influx.Output())
		}
		time.Sleep(100 * time.Millisecond)
	}
	gw.adminP, password = "admin-"+strconv.Itoa(os.Getpid()), "ingest-"+strconv.Itoa(os.Getpid())
	db := modules.IngestConfig(gw.site).InfluxDB.Database
	for _, q := range []string{
		fmt.Sprintf("CREATE USER admin WITH PASSWORD '%s' WITH ALL PRIVILEGES", gw.adminP),
		fmt.Sprintf("CREATE USER %s WITH PASSWORD '%s'", ingest.User, password),
		"CREATE DATABASE " + db,
		fmt.Sprintf("GRANT WRITE ON %s TO %s", db, ingest.User),
	} {
		gw.query(q)
	}
	return password
}

// query runs InfluxQL as the admin.
func (gw *gateway) query(q string) []byte {
	gw.t.Helper()
	form := url.Values{"q": {q}, "db": {modules.IngestConfig(gw.site).InfluxDB.Database}, "epoch": {"ms"}}
	req, _ := http.NewRequest(http.MethodPost, gw.influxURL+"/query", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("admin", gw.adminP)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		gw.t.Fatalf("InfluxQL %q: %v", q, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || bytes.Contains(b, []byte(`"error"`)) {
		gw.t.Fatalf("InfluxQL %q: %s %s", q, resp.Status, b)
	}
	return b
}

// startIngest builds and runs the ingest service with the ingest
// module's configuration and its credentials where the unit puts them.
func (gw *gateway) startIngest(password string) {
	t := gw.t
	dir := t.TempDir()
	bin := filepath.Join(dir, "appliance-ingest")
	build := exec.Command("go", "build", "-o", bin, "github.com/appliance/appliance/cmd/ingest")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the ingest service: %v\n%s", err, out)
	}
	cfg := modules.IngestConfig(gw.site)
	cfg.Spool.Dir = filepath.Join(dir, "spool")
	creds := filepath.Join(dir, "credentials")
	os.MkdirAll(creds, 0o700)
	for name, data := range map[string][]byte{
		ingest.CredCA: gw.stateFile("pki/ca.crt"), ingest.CredCert: gw.stateFile("pki/issued/ingest.crt"),
		ingest.CredKey: gw.stateFile("pki/issued/ingest.key"), ingest.CredPassword: []byte(password + "\n"),
	} {
		os.WriteFile(filepath.Join(creds, name), data, 0o600)
	}
	b, _ := json.MarshalIndent(cfg, "", "  ")
	os.WriteFile(filepath.Join(dir, "ingest.json"), b, 0o600)
	gw.ingest = testenv.Start(t, "env", "CREDENTIALS_DIRECTORY="+creds, bin, "-config", filepath.Join(dir, "ingest.json"))
	gw.ingest.WaitPort(t, cfg.Listen, 30*time.Second)
}

func (gw *gateway) stateFile(rel string) []byte {
	gw.t.Helper()
	b, err := gw.st.ReadFile(rel)
	if err != nil {
		gw.t.Fatal(err)
	}
	return b
}

// export writes a node's identity image's files into a folder, as
// `appliance node export NODE DIR` does: a plain copy of the LittleFS
// image's tree.
func export(t *testing.T, r *desired.Resolved, name string) string {
	img := bundleFile(t, r, name, bundle.IdentityFile)
	if len(img) != partition.LittleFSSize {
		t.Fatalf("%s: an identity image of %d bytes", name, len(img))
	}
	fs, err := littlefs.Read(img, littlefs.ESP32BlockSize)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, e := range fs.Entries {
		p := filepath.Join(dir, filepath.FromSlash(e.Path))
		if e.Dir {
			os.MkdirAll(p, 0o700)
			continue
		}
		os.MkdirAll(filepath.Dir(p), 0o700)
		if err := os.WriteFile(p, e.Data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// bundleFile is one file of a node's bundle.
func bundleFile(t *testing.T, r *desired.Resolved, node, file string) []byte {
	t.Helper()
	for _, n := range r.Nodes {
		if n.Name == node {
			for _, f := range n.Bundle.Files {
				if f.Path == file {
					return f.Data
				}
			}
		}
	}
	t.Fatalf("no %s in %s's bundle", file, node)
	return nil
}

// manifest is the firmware's published manifest.
func (gw *gateway) manifest() *ota.Manifest {
	gw.t.Helper()
	b, err := os.ReadFile(gw.path(modules.OTADir + "/sensor/manifest.json"))
	if err != nil {
		gw.t.Fatal(err)
	}
	m, err := ota.Parse(b)
	if err != nil {
		gw.t.Fatal(err)
	}
	return m
}

// node is the host firmware running one node.
type node struct {
	*testenv.Proc
	state, slot string
}

// startNode runs the host firmware on an identity folder, with a state
// folder ("" for a new one), as app 1.0.0 from the factory.
func startNode(t *testing.T, host, identityDir, state string, extra ...string) *node {
	if state == "" {
		state = t.TempDir()
	}
	n := &node{state: state, slot: filepath.Join(state, "slot.bin")}
	args := append([]string{"--identity", identityDir, "--state", state, "--version", "1.0.0",
		"--ota-first-delay", "0", "--ota-interval", "1500", "--backoff-cap", "2000", "-v"}, extra...)
	n.Proc = testenv.Start(t, host, args...)
	return n
}

func (n *node) waitLog(t *testing.T, what string, within time.Duration, count int) {
	t.Helper()
	deadline := time.Now().Add(within)
	for strings.Count(n.Output(), what) < count {
		if n.Exited() || time.Now().After(deadline) {
			t.Fatalf("the node did not log %q %d times within %v:\n%s", what, count, within, tail(n.Output()))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func tail(s string) string {
	if len(s) > 8000 {
		return "…" + s[len(s)-8000:]
	}
	return s
}

type point struct {
	time      int64
	boot, seq int64
	fw        string
}

// points are a node's readings in InfluxDB.
func (gw *gateway) points(name string) []point {
	b := gw.query(fmt.Sprintf(`SELECT boot, seq, firmware_version FROM reading WHERE node = '%s'`, name))
	var resp struct {
		Results []struct {
			Series []struct {
				Columns []string            `json:"columns"`
				Values  [][]json.RawMessage `json:"values"`
			} `json:"series"`
		} `json:"results"`
	}
	if err := json.Unmarshal(b, &resp); err != nil {
		gw.t.Fatal(err)
	}
	var out []point
	for _, r := range resp.Results {
		for _, s := range r.Series {
			for _, v := range s.Values {
				var p point
				for i, c := range s.Columns {
					switch c {
					case "time":
						json.Unmarshal(v[i], &p.time)
					case "boot":
						json.Unmarshal(v[i], &p.boot)
					case "seq":
						json.Unmarshal(v[i], &p.seq)
					case "firmware_version":
						json.Unmarshal(v[i], &p.fw)
					}
				}
				out = append(out, p)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].boot != out[j].boot {
			return out[i].boot < out[j].boot
		}
		return out[i].seq < out[j].seq
	})
	return out
}

// waitPoints polls until cond holds for the node's points.
func (gw *gateway) waitPoints(name, what string, within time.Duration, n *node, cond func([]point) bool) []point {
	gw.t.Helper()
	deadline := time.Now().Add(within)
	for {
		pts := gw.points(name)
		if cond(pts) {
			return pts
		}
		if time.Now().After(deadline) {
			gw.t.Fatalf("waiting %v for %s: %d points; node log:\n%s\ningest:\n%s", within, what, len(pts), tail(n.Output()), tail(gw.ingest.Output()))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// onceEach checks that boot's readings are 0…max, each exactly once.
func onceEach(t *testing.T, pts []point, boot int64) (max int64) {
	t.Helper()
	seen := map[int64]int{}
	max = -1
	for _, p := range pts {
		if p.boot == boot {
			seen[p.seq]++
			if p.seq > max {
				max = p.seq
			}
		}
	}
	for s := int64(0); s <= max; s++ {
		if seen[s] != 1 {
			t.Errorf("boot %d: reading %d stored %d times", boot, s, seen[s])
		}
	}
	return max
}

// TestHostFirmware runs the firmware's Linux build with the identity
// the build writes into a node's LittleFS image, against the gateway's
// real services with their generated configuration: every reading
// reaches InfluxDB exactly once, including those taken while the broker
// restarted; a newer signed image is installed into the slot through
// nginx's OTA tree, boots and is marked valid once the broker is
// reached; a tampered image and a tampered manifest are refused; a
// revoked node's certificate gets it nowhere, and a new app that cannot
// reach the broker rolls back to the one before.
func TestHostFirmware(t *testing.T) {
	host, _ := programs(t)
	gw := newGateway(t)
	first := gw.build("1.0.0")
	gw.startMosquitto()
	gw.startNginx()
	gw.startIngest(gw.startInflux())

	bench1 := startNode(t, host, export(t, first, "bench-1"), "")
	boot1 := int64(1)
	pts := gw.waitPoints("bench-1", "three readings", 30*time.Second, bench1, func(p []point) bool { return len(p) >= 3 })
	if pts[0].boot != boot1 || pts[0].fw != "1.0.0" {
		t.Fatalf("first reading: %+v", pts[0])
	}
	bench1.waitLog(t, "OTA: no update: version 1.0.0 is already running", 10*time.Second, 1)

	t.Run("broker restart", func(t *testing.T) {
		before := onceEach(t, gw.points("bench-1"), boot1)
		gw.mosquitto.Stop()
		down := time.Now()
		bench1.waitLog(t, "lost the broker", 10*time.Second, 1)
		time.Sleep(4 * time.Second)
		up := time.Now()
		gw.startMosquitto()
		pts := gw.waitPoints("bench-1", "the readings of the outage and after", 60*time.Second, bench1, func(p []point) bool {
			return len(p) > 0 && p[len(p)-1].seq >= before+10
		})
		max := onceEach(t, pts, boot1)
		during := 0
		for _, p := range pts {
			if p.time > down.UnixMilli() && p.time < up.UnixMilli() {
				during++
			}
		}
		if during < 3 {
			t.Errorf("%d readings stamped during the %v outage arrived; want the 4 or so taken then", during, up.Sub(down).Round(time.Second))
		}
		t.Logf("%d readings of boot %d, each once, %d of them taken while the broker was down", max+1, boot1, during)
	})

	t.Run("OTA", func(t *testing.T) {
		next := gw.build("1.1.0")
		if m := gw.manifest(); m.ManifestVersion != 2 || m.Version != "1.1.0" {
			t.Fatalf("the build published %+v", m)
		}
		signed := bundleFile(t, next, "bench-1", bundle.AppFile)
		bench1.waitLog(t, "OTA: installed version 1.1.0 (manifest version 2); restarting into it", 30*time.Second, 1)
		bench1.waitLog(t, "app 1.1.0 marked valid (manifest version 2)", 30*time.Second, 1)
		slot, err := os.ReadFile(bench1.slot)
		if err != nil || !bytes.Equal(slot, signed) {
			t.Fatalf("the slot holds %d bytes (%v), not the signed image of 1.1.0 (%d bytes)", len(slot), err, len(signed))
		}
		if b, _ := os.ReadFile(filepath.Join(bench1.state, "ota_mv")); strings.TrimSpace(string(b)) != "2" {
			t.Errorf("the stored manifest version is %q, want 2", b)
		}
		// The restarted program is the new app: a new boot whose
		// readings say 1.1.0.
		pts := gw.waitPoints("bench-1", "readings from 1.1.0", 30*time.Second, bench1, func(p []point) bool {
			return len(p) > 0 && p[len(p)-1].fw == "1.1.0"
		})
		if last := pts[len(pts)-1]; last.boot != boot1+1 {
			t.Errorf("1.1.0's readings are of boot %d, want %d", last.boot, boot1+1)
		}

		// A build whose image was changed on the way is refused after
		// the download, and the slot keeps what it had.
		gw.build("1.2.0")
		img := gw.path(modules.OTADir + "/" + gw.manifest().Path)
		b, _ := os.ReadFile(img)
		b[len(b)/2] ^= 0xFF
		os.WriteFile(img, b, 0o644)
		bench1.waitLog(t, "OTA: refused the image", 30*time.Second, 1)
		if slot, _ := os.ReadFile(bench1.slot); !bytes.Equal(slot, signed) {
			t.Error("a refused image changed the slot")
		}
		// A manifest changed after signing is refused before it is read.
		m := gw.path(modules.OTADir + "/sensor/manifest.json")
		mb, _ := os.ReadFile(m)
		os.WriteFile(m, bytes.Replace(mb, []byte(`"1.2.0"`), []byte(`"1.2.1"`), 1), 0o644)
		bench1.waitLog(t, "OTA: refused the manifest (signature)", 30*time.Second, 1)
		if strings.Contains(bench1.Output(), "installed version 1.2") {
			t.Error("a tampered update was installed")
		}
		if bench1.Exited() {
			t.Fatalf("the node ended:\n%s", tail(bench1.Output()))
		}
	})

	t.Run("revoked node", func(t *testing.T) {
		if _, err := gw.st.Revoke("bench-2", "keyCompromise", gw.g.Wants); err != nil {
			t.Fatal(err)
		}
		gw.apply()
		// Both read the CRL when they start.
		gw.mosquitto.Stop()
		gw.nginx.Stop()
		gw.startMosquitto()
		gw.startNginx()
		// bench-2 has just been updated (as the bootloader sees it) to
		// an app that will never reach the broker: it must roll back.
		state := t.TempDir()
		os.WriteFile(filepath.Join(state, "otadata"), []byte("state=new\nversion=1.3.0\nsecure_version=0\nprevious_version=1.0.0\nprevious_secure_version=0\n"), 0o600)
		os.WriteFile(filepath.Join(state, "ota_pending"), []byte("9\n"), 0o600)
		bench2 := startNode(t, host, export(t, first, "bench-2"), state, "--rollback-after", "4000")
		bench2.waitLog(t, "app 1.3.0 has not reached the broker in 4000 ms: rolling back", 30*time.Second, 1)
		bench2.waitLog(t, "running 1.0.0; the update of manifest version 9 did not stay and will not be tried again", 30*time.Second, 1)
		if b, _ := os.ReadFile(filepath.Join(state, "ota_mv")); strings.TrimSpace(string(b)) != "9" {
			t.Errorf("after the rollback the stored manifest version is %q, want 9", b)
		}
		if b, _ := os.ReadFile(filepath.Join(state, "otadata")); !strings.HasPrefix(string(b), "state=valid\nversion=1.0.0\n") {
			t.Errorf("after the rollback otadata says:\n%s", b)
		}
		bench2.waitLog(t, "could not reach the broker", 30*time.Second, 3)
		log := bench2.Output()
		if !strings.Contains(log, "revoked") {
			t.Errorf("the refusal does not say the certificate is revoked:\n%s", tail(log))
		}
		if strings.Contains(log, "connected to the broker") {
			t.Errorf("a revoked node connected:\n%s", tail(log))
		}
		// bench-1, reconnected after the restart, still gets through.
		last := gw.points("bench-1")
		gw.waitPoints("bench-1", "bench-1's readings after the restart", 30*time.Second, bench1, func(p []point) bool { return len(p) > len(last)+2 })
		if pts := gw.points("bench-2"); len(pts) != 0 {
			t.Errorf("InfluxDB holds %d readings of the revoked node", len(pts))
		}
		stop(t, bench2)
	})

	stop(t, bench1)
	if strings.Contains(gw.ingest.Output(), "level=ERROR") {
		t.Logf("ingest logged errors:\n%s", tail(gw.ingest.Output()))
	}
}

// stop ends a node with SIGTERM: it must exit cleanly, with no report
// from the sanitizers.
func stop(t *testing.T, n *node) {
	t.Helper()
	n.Stop()
	out := n.Output()
	for _, bad := range []string{"AddressSanitizer", "LeakSanitizer", "runtime error:", "UndefinedBehaviorSanitizer"} {
		if strings.Contains(out, bad) {
			t.Errorf("the node's sanitizers reported:\n%s", tail(out))
		}
	}
	if !strings.Contains(out, "readings taken") {
		t.Errorf("the node did not end cleanly:\n%s", tail(out))
	}
	if err := n.Cmd.ProcessState; err != nil && !err.Success() {
		t.Errorf("the node exited with %v", err)
	}
}
