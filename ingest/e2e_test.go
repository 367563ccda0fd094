package ingest_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/appliance/appliance/ingest"
	"github.com/appliance/appliance/ingest/internal/testenv"
	"github.com/appliance/appliance/pki"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testenv.RemoveBinary()
	os.Exit(code)
}

// site is a broker with its PKI, ready for ingest and nodes.
type site struct {
	pki    *testenv.PKI
	broker *testenv.Broker
}

func newSite(t *testing.T) *site {
	p := testenv.NewPKI(t, "test")
	return &site{pki: p, broker: testenv.StartMosquitto(t, p)}
}

// config is ingest's configuration for this site, writing to InfluxDB
// 1.x database "sensors" at url, with the given nodes (all dht22 in
// group "bench" unless set).
func (s *site) config(t *testing.T, influxURL string, nodes ...string) ingest.Config {
	cert, key := s.pki.Issue(t, pki.Request{Name: "ingest", Kind: pki.Client})
	c := ingest.Config{
		MQTT: ingest.MQTT{
			Broker: s.broker.Addr(), ServerName: "localhost",
			CAFile: s.pki.CAFile, CertFile: cert, KeyFile: key,
			ClientID: "appliance-ingest",
		},
		InfluxDB:      ingest.InfluxDB{URL: influxURL, Version: 1, Database: "sensors"},
		BatchSize:     5000,
		FlushInterval: ingest.Duration(200 * time.Millisecond),
		Spool:         ingest.Spool{Dir: filepath.Join(t.TempDir(), "spool"), MaxBytes: 64 << 20},
		Listen:        "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t)),
		Nodes:         map[string]ingest.Node{},
	}
	for _, n := range nodes {
		c.Nodes[n] = ingest.Node{Sensor: "dht22", Group: "bench", Firmware: "sensor", Tags: map[string]string{"zone": "north"}}
	}
	return c
}

func (s *site) nodes(t *testing.T, names ...string) []*testenv.Node {
	var out []*testenv.Node
	for _, n := range names {
		out = append(out, testenv.ConnectNode(t, s.broker, s.pki, n, n))
	}
	return out
}

func names(prefix string, n int) []string {
	var out []string
	for i := 1; i <= n; i++ {
		out = append(out, fmt.Sprintf("%s-%d", prefix, i))
	}
	return out
}

// waitStored polls the database until it holds exactly the published
// readings, then checks that ingest has nothing left and nothing more
// arrives.
func waitStored(t *testing.T, in *testenv.Ingest, published map[testenv.Key]testenv.Reading, stored func() []testenv.Point) []testenv.Point {
	t.Helper()
	var last string
	deadline := time.Now().Add(90 * time.Second)
	for {
		pts := stored()
		last = testenv.Compare(published, pts)
		if last == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the database does not hold the published readings:\n%s\ningest log:\n%s", last, tailLog(in.Log()))
		}
		time.Sleep(250 * time.Millisecond)
	}
	testenv.WaitFor(t, "ingest's spool to be empty", 30*time.Second, func() error {
		m, err := in.Metrics()
		if err != nil {
			return err
		}
		if p := m["ingest_spool_pending"]; p != 0 {
			return fmt.Errorf("%v readings pending", p)
		}
		return nil
	})
	pts := stored()
	if d := testenv.Compare(published, pts); d != "" {
		t.Fatalf("after ingest settled:\n%s", d)
	}
	t.Logf("%d readings published, %d points stored, each once", len(published), len(pts))
	return pts
}

func tailLog(s string) string {
	if len(s) > 6000 {
		return "…" + s[len(s)-6000:]
	}
	return s
}

// TestInfluxV1 sends readings from nodes with and without a clock
// through mosquitto to InfluxDB 1.x with authentication, and finds each
// exactly once, with its values, tags and time.
func TestInfluxV1(t *testing.T) {
	s := newSite(t)
	db, password := testenv.StartInfluxd(t, "sensors", true)
	cfg := s.config(t, db.URL(), names("bench", 4)...)
	pw := filepath.Join(t.TempDir(), "influxdb-password")
	os.WriteFile(pw, []byte(password+"\n"), 0o600)
	cfg.InfluxDB.User, cfg.InfluxDB.PasswordFile = "ingest", pw
	in := testenv.StartIngest(t, cfg)

	nodes := s.nodes(t, names("bench", 4)...)
	nodes[0].DeviceTime, nodes[1].DeviceTime = true, true
	start := time.Now()
	stream := testenv.StartStream(nodes, 100)
	testenv.WaitFor(t, "400 readings published", 30*time.Second, func() error {
		if n := stream.Count(); n < 400 {
			return fmt.Errorf("%d published", n)
		}
		return nil
	})
	published, err := stream.Stop()
	if err != nil {
		t.Fatal(err)
	}
	pts := waitStored(t, in, published, func() []testenv.Point { return db.InfluxPoints(t, "sensors") })

	for _, p := range pts {
		want := map[string]string{"node": p.Node, "group": "bench", "sensor": "dht22", "firmware": "sensor", "zone": "north"}
		for k, v := range want {
			if p.Tags[k] != v {
				t.Fatalf("%+v: tag %s = %q, want %q (tags %v)", p.Key, k, p.Tags[k], v, p.Tags)
			}
		}
		// Nodes without a clock get the receive time.
		if p.Time.Before(start.Add(-time.Second)) || p.Time.After(time.Now()) {
			t.Fatalf("%+v stamped %s, outside the test's run", p.Key, p.Time)
		}
	}
	m, _ := in.Metrics()
	if m["ingest_points_written_total"] < float64(len(published)) || m["ingest_messages_duplicate_total"] != 0 {
		t.Errorf("metrics: written %v, duplicates %v; want ≥ %d and 0", m["ingest_points_written_total"], m["ingest_messages_duplicate_total"], len(published))
	}
	if code, body, _ := in.Health(); code != 200 {
		t.Errorf("/healthz = %d %q, want 200", code, body)
	}
}

