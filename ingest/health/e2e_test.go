package health_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/appliance/appliance/ingest"
	"github.com/appliance/appliance/ingest/health"
	"github.com/appliance/appliance/ingest/internal/testenv"
	"github.com/appliance/appliance/pki"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testenv.RemoveBinary()
	os.Exit(code)
}

// gatewayLogs is a site's broker and web server with a revoked node and
// an impostor, their logs fed into a journal file as journald would
// keep them, InfluxDB and the ingest service.
type gatewayLogs struct {
	pki     *testenv.PKI
	broker  *testenv.Broker
	nginx   *testenv.Nginx
	db      *testenv.Influx
	ingest  ingest.Config
	journal *testenv.Journal
	pwFile  string
	rogue   [2]string // bench-1's name on a certificate of another CA
}

func startGateway(t *testing.T) *gatewayLogs {
	g := &gatewayLogs{pki: testenv.NewPKI(t, "health-test")}
	p := g.pki
	p.Node(t, "bench-1")
	crt2, _ := p.Node(t, "bench-2")
	b, _ := os.ReadFile(crt2)
	c2, err := pki.ParseCert(b)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	crl, err := p.CA.CRL([]pki.Revoked{{Serial: c2.SerialNumber, At: now, Reason: 1}}, 1, now, now.AddDate(0, 1, 0))
	if err != nil {
		t.Fatal(err)
	}
	other, _, err := pki.NewCA("elsewhere", now, now.AddDate(1, 0, 0))
	if err != nil {
		t.Fatal(err)
	}
	rc, rk, _, err := other.Issue(pki.Request{Name: "bench-1", Kind: pki.Node}, now)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	g.rogue = [2]string{filepath.Join(dir, "rogue.crt"), filepath.Join(dir, "rogue.key")}
	os.WriteFile(g.rogue[0], rc, 0o644)
	os.WriteFile(g.rogue[1], rk, 0o600)

	g.journal = testenv.NewJournal(t)
	// Mosquitto at its debug level, the only one at which it logs ACL
	// denials.
	g.broker = testenv.StartMosquittoWithCRL(t, p, crl, true)
	g.journal.FollowFile(t, g.broker.LogFile(), "mosquitto.service", "mosquitto")
	sock := filepath.Join(dir, "log.sock")
	g.journal.ListenSyslog(t, sock)
	g.nginx = testenv.StartNginx(t, p, crl, 3, sock)

	var password string
	g.db, password = testenv.StartInfluxd(t, "sensors", true)
	g.pwFile = filepath.Join(dir, "influxdb-password")
	os.WriteFile(g.pwFile, []byte(password+"\n"), 0o600)
	cert, key := p.Issue(t, pki.Request{Name: "ingest", Kind: pki.Client})
	g.ingest = ingest.Config{
		MQTT:      ingest.MQTT{Broker: g.broker.Addr(), ServerName: "localhost", CAFile: p.CAFile, CertFile: cert, KeyFile: key, ClientID: "appliance-ingest"},
		InfluxDB:  ingest.InfluxDB{URL: g.db.URL(), Version: 1, Database: "sensors", User: "ingest", PasswordFile: g.pwFile},
		BatchSize: 5000, FlushInterval: ingest.Duration(200 * time.Millisecond),
		Spool:  ingest.Spool{Dir: filepath.Join(dir, "spool"), MaxBytes: 64 << 20},
		Listen: "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t)),
		Nodes:  map[string]ingest.Node{},
	}
	for _, n := range []string{"bench-1", "bench-2", "bench-3"} {
		g.ingest.Nodes[n] = ingest.Node{Sensor: "dht22", Group: "bench", Firmware: "sensor"}
	}
	testenv.StartIngest(t, g.ingest)
	return g
}

// healthConfig is the health program's configuration for the site, as
// the health module writes it, with the test's paths; it follows the
// journal file with tail, as it follows the journal with journalctl.
func (g *gatewayLogs) healthConfig(t *testing.T) health.Config {
	follow := filepath.Join(t.TempDir(), "follow")
	os.WriteFile(follow, []byte("#!/bin/sh\nexec tail -n +1 -f \"$1\"\n"), 0o755)
	mq, _ := g.pki.Issue(t, pki.Request{Name: "mosquitto"})
	c := health.Config{
		Site: "health-test", Interval: health.Duration(time.Second),
		InfluxDB:      health.InfluxDB{URL: g.db.URL(), Version: 1, Database: "sensors", User: "ingest", PasswordFile: g.pwFile},
		IngestMetrics: "http://" + g.ingest.Listen + "/metrics",
		DataPath:      t.TempDir(),
		Journal:       []string{follow, g.journal.Path},
		Certificates:  []health.Certificate{{Name: "ca", Kind: "ca", File: g.pki.CAFile}, {Name: "mosquitto", Kind: "server", File: mq}},
		Nodes:         map[string]health.Node{},
		OTAPath:       "/ota/", OTADir: g.nginx.OTADir,
		StateDir: t.TempDir(),
	}
	for _, n := range []string{"bench-1", "bench-2", "bench-3"} {
		c.Nodes[n] = health.Node{Group: "bench", Interval: health.Duration(2 * time.Second), Firmware: "sensor"}
	}
	return c
}

func (g *gatewayLogs) tlsConfig(t *testing.T, certKey [2]string) *tls.Config {
	pem, _ := os.ReadFile(g.pki.CAFile)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	cfg := &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS12}
	if certKey[0] != "" {
		c, err := tls.LoadX509KeyPair(certKey[0], certKey[1])
		if err != nil {
			t.Fatal(err)
		}
		// Send it whoever the server says it trusts, as a node's TLS
		// stack does (Go's would send none from another CA).
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &c, nil }
	}
	return cfg
}

func (g *gatewayLogs) node(t *testing.T, name string) [2]string {
	c, k := g.pki.Node(t, name)
	return [2]string{c, k}
}

// get fetches an OTA URL as a client with the certificate given, and
// returns the status.
func (g *gatewayLogs) get(t *testing.T, certKey [2]string, path string) int {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: g.tlsConfig(t, certKey)}, Timeout: 5 * time.Second}
	resp, err := c.Get(fmt.Sprintf("https://localhost:%d%s", g.nginx.Port, path))
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// mqttRefused opens a TLS connection to the broker as a client that it
// refuses, and waits until the broker has closed it.
func (g *gatewayLogs) mqttRefused(t *testing.T, certKey [2]string) {
	t.Helper()
	cfg := g.tlsConfig(t, certKey)
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", g.broker.Addr(), cfg)
	if err == nil {
		// TLS 1.3 reports the refusal of a client certificate on the
		// first read.
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		_, err = conn.Read(make([]byte, 1))
		conn.Close()
	}
	if err == nil {
		t.Fatalf("the broker took a client it should refuse")
	}
}

func reading(seq int, fw string) []byte {
	return fmt.Appendf(nil, `{"boot":1,"seq":%d,"temperature":21.5,"humidity":40,"fw":%q}`, seq, fw)
}

// series runs an InfluxQL query and returns each series' tags and its
// rows as maps of column to value.
func series(t *testing.T, db *testenv.Influx, q string) []serie {
	t.Helper()
	b, err := db.TryQuery(q, "sensors")
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	var r struct {
		Results []struct {
			Series []struct {
				Name    string            `json:"name"`
				Tags    map[string]string `json:"tags"`
				Columns []string          `json:"columns"`
				Values  [][]any           `json:"values"`
			} `json:"series"`
		} `json:"results"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	var out []serie
	for _, res := range r.Results {
		for _, s := range res.Series {
			se := serie{Tags: s.Tags}
			for _, v := range s.Values {
				row := map[string]any{}
				for i, c := range s.Columns {
					row[c] = v[i]
				}
				se.Rows = append(se.Rows, row)
			}
			out = append(out, se)
		}
	}
	return out
}

type serie struct {
	Tags map[string]string
	Rows []map[string]any
}

// TestHealthFromRealLogs runs the health program (the built
// appliance-health, configured as its unit runs it) against a real
// Mosquitto, Nginx, ingest and InfluxDB: clients the broker and the OTA
// server refuse (no certificate, a revoked one, one from another CA, an
// ACL denial), a node that downloads an update and then runs it, a
// download that fails, a node that never speaks. The points in InfluxDB
// and the status file must tell each of them.
func TestHealthFromRealLogs(t *testing.T) {
	g := startGateway(t)
	cfg := g.healthConfig(t)

	// The OTA tree: firmware "sensor" 1.1.0.
	image := make([]byte, 200<<10)
	rand.Read(image)
	sum := sha256.Sum256(image)
	sha := hex.EncodeToString(sum[:])
	os.MkdirAll(filepath.Join(g.nginx.OTADir, "sensor"), 0o755)
	os.WriteFile(filepath.Join(g.nginx.OTADir, "sensor", sha+".bin"), image, 0o644)
	manifest := fmt.Sprintf(`{"format":1,"firmware":"sensor","chip":"esp32s3","version":"1.1.0","secure_version":1,"manifest_version":2,"size":%d,"sha256":%q,"path":"sensor/%s.bin","expires":4102444800}`+"\n", len(image), sha, sha)
	os.WriteFile(filepath.Join(g.nginx.OTADir, "sensor", "manifest.json"), []byte(manifest), 0o644)

	// The program as the unit runs it: its password a credential.
	pw, _ := os.ReadFile(g.pwFile)
	cfg.InfluxDB.PasswordFile = "$CREDENTIALS_DIRECTORY/influxdb-password"
	prog := testenv.StartHealth(t, cfg, map[string]string{"influxdb-password": string(pw)})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := time.Now()

	// bench-1 runs 1.0.0 and sends a reading every half second; bench-3
	// never speaks.
	n1 := testenv.ConnectNode(t, g.broker, g.pki, "bench-1", "bench-1")
	var fw atomic.Value
	fw.Store("1.0.0")
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		for i := 0; ctx.Err() == nil; i++ {
			n1.Publish(ctx, "sensors/bench-1/reading", reading(i, fw.Load().(string)))
			select {
			case <-ctx.Done():
			case <-time.After(500 * time.Millisecond):
			}
		}
	}()
	defer func() { cancel(); <-sent }()
	// Refused by the broker: no certificate, a revoked one, another
	// CA's; an ACL denial of bench-1 writing as bench-2.
	g.mqttRefused(t, [2]string{})
	g.mqttRefused(t, g.node(t, "bench-2"))
	g.mqttRefused(t, g.rogue)
	if rc, _ := n1.PublishOnce(ctx, "sensors/bench-2/reading", reading(9, "1.0.0"), 5*time.Second); rc != 0x87 {
		t.Fatalf("publishing as another node: reason %#x, want 0x87 (not authorised)", rc)
	}
	// Refused by the OTA server.
	for _, c := range []struct {
		who  string
		cert [2]string
		want int
	}{{"no certificate", [2]string{}, 403}, {"revoked", g.node(t, "bench-2"), 400}, {"another CA", g.rogue, 400}, {"ingest, not a node", [2]string{g.ingest.MQTT.CertFile, g.ingest.MQTT.KeyFile}, 403}} {
		if got := g.get(t, c.cert, "/ota/sensor/manifest.json"); got != c.want {
			t.Errorf("%s: GET manifest = %d, want %d", c.who, got, c.want)
		}
	}
	// bench-1 fetches the manifest and the image, asks for an image that
	// is not there, and reports 1.1.0 once it runs it.
	b1 := g.node(t, "bench-1")
	for path, want := range map[string]int{"/ota/sensor/manifest.json": 200, "/ota/sensor/" + sha + ".bin": 200, "/ota/sensor/" + strings.Repeat("0", 64) + ".bin": 404} {
		if got := g.get(t, b1, path); got != want {
			t.Fatalf("bench-1: GET %s = %d, want %d", path, got, want)
		}
	}
	testenv.WaitFor(t, "the download to be written", 30*time.Second, func() error {
		if s := series(t, g.db, `SELECT "count" FROM "health_ota" WHERE "outcome" = 'downloaded'`); len(s) == 0 {
			return fmt.Errorf("no download yet")
		}
		return nil
	})
	fw.Store("1.1.0")

	// bench-3 is silent for more than three of its 2 s intervals.
	testenv.WaitFor(t, "the health points", 60*time.Second, func() error {
		if time.Since(start) < 8*time.Second {
			return fmt.Errorf("waiting for bench-3 to be silent long enough")
		}
		if s := series(t, g.db, `SELECT last("count") FROM "health_ota" WHERE "outcome" = 'installed'`); len(s) == 0 {
			return fmt.Errorf("no installed update yet")
		}
		return nil
	})
	time.Sleep(2 * time.Second) // one more snapshot

	refused := map[string]float64{}
	for _, s := range series(t, g.db, `SELECT sum("count") FROM "health_refused" GROUP BY "service", "reason"`) {
		refused[s.Tags["service"]+"/"+s.Tags["reason"]] = s.Rows[0]["sum"].(float64)
	}
	want := map[string]float64{"mqtt/no_certificate": 1, "mqtt/bad_certificate": 2, "mqtt/acl_denied": 1,
		"ota/no_certificate": 1, "ota/revoked": 1, "ota/wrong_ca": 1, "ota/acl_denied": 1}
	for k, v := range want {
		if refused[k] != v {
			t.Errorf("refused %s = %v, want %v (all: %v)", k, refused[k], v, refused)
		}
	}

	ota := map[string]bool{}
	for _, s := range series(t, g.db, `SELECT sum("count") FROM "health_ota" GROUP BY "node", "version", "outcome"`) {
		ota[s.Tags["node"]+" "+s.Tags["version"]+" "+s.Tags["outcome"]] = true
	}
	for _, k := range []string{"bench-1 1.1.0 downloaded", "bench-1 1.1.0 installed", "bench-1 unknown failed"} {
		if !ota[k] {
			t.Errorf("no OTA point %q (have %v)", k, ota)
		}
	}

	nodes := map[string]map[string]any{}
	for _, s := range series(t, g.db, `SELECT last("silent_intervals") AS "silent", last("firmware_version") AS "fw" FROM "health_node" GROUP BY "node"`) {
		nodes[s.Tags["node"]] = s.Rows[0]
	}
	if s, _ := nodes["bench-3"]["silent"].(float64); s <= 3 {
		t.Errorf("bench-3 silent for %v intervals, want more than 3", nodes["bench-3"]["silent"])
	}
	if s, _ := nodes["bench-1"]["silent"].(float64); s >= 3 || nodes["bench-1"]["fw"] != "1.1.0" {
		t.Errorf("bench-1: %v, want silent under 3 intervals and firmware 1.1.0", nodes["bench-1"])
	}
	if s := series(t, g.db, `SELECT last("readings_per_min") FROM "health_node" WHERE "node" = 'bench-1'`); len(s) == 0 {
		t.Errorf("no reading rate for bench-1")
	}

	caPEM, _ := os.ReadFile(g.pki.CAFile)
	ca, _ := pki.ParseCert(caPEM)
	b1PEM, _ := os.ReadFile(b1[0])
	b1Cert, _ := pki.ParseCert(b1PEM)
	certs := map[string]float64{}
	for _, s := range series(t, g.db, `SELECT last("days_left") FROM "health_cert" GROUP BY "name", "kind"`) {
		certs[s.Tags["kind"]+"/"+s.Tags["name"]] = s.Rows[0]["last"].(float64)
	}
	for k, end := range map[string]time.Time{"ca/ca": ca.NotAfter, "node/bench-1": b1Cert.NotAfter} {
		if d := time.Until(end).Hours() / 24; certs[k] < d-1 || certs[k] > d+1 {
			t.Errorf("days left on %s = %.1f, want %.1f (all: %v)", k, certs[k], d, certs)
		}
	}
	if _, ok := certs["server/mosquitto"]; !ok {
		t.Errorf("no expiry of mosquitto's certificate: %v", certs)
	}
	in := series(t, g.db, `SELECT last("up") AS "up", last("influxdb_up") AS "influx", last("spool_pending") AS "pending" FROM "health_ingest"`)
	if len(in) == 0 || in[0].Rows[0]["up"] != 1.0 || in[0].Rows[0]["influx"] != 1.0 {
		t.Errorf("ingest's health: %v, want up and writing", in)
	}
	disk := series(t, g.db, `SELECT last("used_percent") FROM "health_disk"`)
	if len(disk) == 0 || disk[0].Rows[0]["last"].(float64) <= 0 || disk[0].Rows[0]["last"].(float64) >= 100 {
		t.Errorf("disk use: %v", disk)
	}

	st, err := health.ReadStatus(cfg.StateDir)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]health.NodeStatus{}
	for _, n := range st.Nodes {
		byName[n.Name] = n
	}
	if n := byName["bench-1"]; n.Firmware != "1.1.0" || n.OTA == nil || n.OTA.Outcome != health.Installed || n.CertNotAfter.IsZero() {
		t.Errorf("status of bench-1: %+v", n)
	}
	if n := byName["bench-2"]; n.Refused < 1 {
		t.Errorf("status of bench-2 counts %d refusals, want its revoked certificate's", n.Refused)
	}
	if n := byName["bench-3"]; !n.LastSeen.IsZero() || n.SilentIntervals <= 3 {
		t.Errorf("status of bench-3: %+v", n)
	}
	if t.Failed() {
		t.Logf("mosquitto:\n%s\nappliance-health:\n%s", g.broker.Log(), prog.Log())
	}
	cursor, _ := os.ReadFile(filepath.Join(cfg.StateDir, "cursor"))
	if !strings.HasPrefix(string(cursor), "s=test;i=") {
		t.Errorf("the journal cursor was not saved: %q", cursor)
	}
}
