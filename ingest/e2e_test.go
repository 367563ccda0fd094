package ingest_test

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/appliance/appliance/ingest"
	"github.com/appliance/appliance/ingest/internal/testenv"
	"github.com/appliance/appliance/ingest/wire"
	"github.com/appliance/appliance/modules"
	"github.com/appliance/appliance/pki"
	"github.com/appliance/appliance/spec"
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

// TestVictoriaMetricsV2 writes through the InfluxDB 2 API (token, org,
// bucket) to victoria-metrics, with the configuration the ingest module renders
// from a site and the credentials in $CREDENTIALS_DIRECTORY, as the unit
// provides them.
func TestVictoriaMetricsV2(t *testing.T) {
	s := newSite(t)
	vm := testenv.StartVictoriaMetrics(t)
	site := &spec.Site{
		MQTT:     spec.MQTT{Port: s.broker.Port},
		InfluxDB: spec.InfluxDB{Version: 2, Port: vm.Port, Org: "test", Bucket: "sensors"},
		Ingest:   spec.Ingest{BatchSize: 500, FlushInterval: 300 * time.Millisecond, SpoolSize: 16 << 20, MetricsPort: testenv.FreePort(t)},
	}
	for _, n := range names("shed", 3) {
		site.Nodes = append(site.Nodes, spec.Node{Name: n, Group: "shed", Firmware: "sensor", Sensor: spec.NodeSensor{Type: "dht11"}, Tags: map[string]string{"room": "a b,c=d\"e"}})
	}
	cfg := modules.IngestConfig(site)
	cfg.Spool.Dir = filepath.Join(t.TempDir(), "spool")

	creds := t.TempDir()
	cert, key := s.pki.Issue(t, pki.Request{Name: "ingest", Kind: pki.Client})
	for name, from := range map[string]string{ingest.CredCA: s.pki.CAFile, ingest.CredCert: cert, ingest.CredKey: key} {
		b, _ := os.ReadFile(from)
		os.WriteFile(filepath.Join(creds, name), b, 0o600)
	}
	os.WriteFile(filepath.Join(creds, ingest.CredToken), []byte("vm-ignores-this-token\n"), 0o600)
	in := testenv.StartIngest(t, cfg, "CREDENTIALS_DIRECTORY="+creds)

	nodes := s.nodes(t, names("shed", 3)...)
	for _, n := range nodes {
		// victoria-metrics keeps milliseconds: give the nodes a clock so
		// that no two readings of a node share one.
		n.DeviceTime = true
	}
	stream := testenv.StartStream(nodes, 50)
	testenv.WaitFor(t, "300 readings published", 30*time.Second, func() error {
		if n := stream.Count(); n < 300 {
			return fmt.Errorf("%d published", n)
		}
		return nil
	})
	published, err := stream.Stop()
	if err != nil {
		t.Fatal(err)
	}
	pts := waitStored(t, in, published, func() []testenv.Point { return vm.VMPoints(t) })
	for _, p := range pts {
		if p.Tags["room"] != "a b,c=d\"e" || p.Tags["sensor"] != "dht11" || p.Tags["group"] != "shed" {
			t.Fatalf("%+v: tags %v; want room=%q, sensor dht11, group shed", p.Key, p.Tags, "a b,c=d\"e")
		}
	}
}

// TestBadPayloads sends a corpus of bad messages between good ones: each
// bad one is refused and counted under its reason, every good one is
// written, and nothing else.
func TestBadPayloads(t *testing.T) {
	s := newSite(t)
	db, _ := testenv.StartInfluxd(t, "sensors", false)
	cfg := s.config(t, db.URL(), "good-1")
	cfg.Nodes["good-1"] = ingest.Node{Sensor: "dht22", Group: "g"}
	in := testenv.StartIngest(t, cfg)
	node := s.nodes(t, "good-1")[0]
	// Identities the broker admits but ingest does not know: one whose
	// name would break line protocol if it were ever used as a tag.
	ghost := s.nodes(t, "ghost")[0]
	evil := testenv.ConnectNode(t, s.broker, s.pki, "evil", "evil node,x=1\"")

	big := `{"boot":1,"seq":1,"temperature":20,"humidity":50,"pad":"` + strings.Repeat("x", 1100) + `"}`
	corpus := []struct {
		payload string
		reason  string
	}{
		{`{"boot":1,"seq":`, "malformed_json"},
		{`not json`, "malformed_json"},
		{`[1,2,3]`, "malformed_json"},
		{`"reading"`, "malformed_json"},
		{``, "malformed_json"},
		{`{"boot":1,"seq":1,"temperature":nan,"humidity":50}`, "malformed_json"},
		{`{"boot":1,"seq":1,"temperature":NaN,"humidity":50}`, "malformed_json"},
		{`{"boot":1,"seq":1,"temperature":inf,"humidity":50}`, "malformed_json"},
		{`{"boot":1,"seq":1,"temperature":-Infinity,"humidity":50}`, "malformed_json"},
		{`{"boot":1,"seq":1,"temperature":20,"humidity":50} {}`, "malformed_json"},
		{`{"boot":1,"seq":1,"temperature":1e999,"humidity":50}`, "not_finite"},
		{`{"boot":1,"seq":1,"temperature":"21.5","humidity":50}`, "wrong_type"},
		{`{"boot":1,"seq":1.5,"temperature":21.5,"humidity":50}`, "wrong_type"},
		{`{"boot":true,"seq":1,"temperature":21.5,"humidity":50}`, "wrong_type"},
		{`{"boot":1,"seq":1,"temperature":21.5,"humidity":[50]}`, "wrong_type"},
		{`{"boot":1,"seq":1,"temperature":21.5,"humidity":50,"fw":140}`, "wrong_type"},
		{`{"boot":1,"seq":1,"temperature":21.5,"humidity":50,"rssi":"-60"}`, "wrong_type"},
		{`{"boot":1,"seq":1,"temperature":21.5,"humidity":50,"t":"2026-01-01"}`, "wrong_type"},
		{`{"boot":1,"seq":1,"humidity":50}`, "missing_field"},
		{`{"boot":1,"seq":1,"temperature":null,"humidity":50}`, "missing_field"},
		{`{"seq":1,"temperature":21.5,"humidity":50}`, "missing_field"},
		{`{"boot":1,"temperature":21.5,"humidity":50}`, "missing_field"},
		{`{"boot":1,"seq":1,"temperature":85,"humidity":50}`, "out_of_range"},
		{`{"boot":1,"seq":1,"temperature":-41,"humidity":50}`, "out_of_range"},
		{`{"boot":1,"seq":1,"temperature":-999,"humidity":50}`, "out_of_range"},
		{`{"boot":1,"seq":1,"temperature":21.5,"humidity":100.1}`, "out_of_range"},
		{`{"boot":1,"seq":1,"temperature":21.5,"humidity":-1}`, "out_of_range"},
		{`{"boot":1,"seq":-1,"temperature":21.5,"humidity":50}`, "out_of_range"},
		{`{"boot":4294967296,"seq":1,"temperature":21.5,"humidity":50}`, "out_of_range"},
		{`{"boot":1,"seq":1,"temperature":21.5,"humidity":50,"rssi":12}`, "out_of_range"},
		{big, "too_large"},
		{`{"boot":1,"seq":1,"seq":2,"temperature":21.5,"humidity":50}`, "duplicate_field"},
		{"{\"boot\":1,\"seq\":1,\"temperature\":21.5,\"humidity\":50,\"fw\":\"\xff\xfe\"}", "invalid_encoding"},
		// Tag and line injection through the one free-text field.
		{`{"boot":1,"seq":1,"temperature":21.5,"humidity":50,"fw":"1.0 x=1"}`, "bad_fw_version"},
		{`{"boot":1,"seq":1,"temperature":21.5,"humidity":50,"fw":"1.0,node=good-2"}`, "bad_fw_version"},
		{`{"boot":1,"seq":1,"temperature":21.5,"humidity":50,"fw":"1\"0"}`, "bad_fw_version"},
		{`{"boot":1,"seq":1,"temperature":21.5,"humidity":50,"fw":"1.0\nreading,node=good-2 temperature=99 1"}`, "bad_fw_version"},
		{`{"boot":1,"seq":1,"temperature":21.5,"humidity":50,"fw":"1.0=x"}`, "bad_fw_version"},
	}
	ctx := t.Context()
	published := map[testenv.Key]testenv.Reading{}
	want := map[string]float64{}
	seq := uint32(0)
	good := func() {
		temp, hum := testenv.Values("good-1", seq)
		if rc, err := node.Publish(ctx, "sensors/good-1/reading", testenv.Payload("good-1", 1, seq, time.Time{})); err != nil || rc >= 0x80 {
			t.Fatalf("publishing a good reading: %v (reason %#x)", err, rc)
		}
		published[testenv.Key{Node: "good-1", Boot: 1, Seq: seq}] = testenv.Reading{Temperature: temp, Humidity: hum}
		seq++
	}
	for _, c := range corpus {
		good()
		if rc, err := node.Publish(ctx, "sensors/good-1/reading", []byte(c.payload)); err != nil || rc >= 0x80 {
			t.Fatalf("publishing %q: %v (reason %#x)", c.payload, err, rc)
		}
		want[c.reason]++
	}
	// An unknown field is ignored (newer firmware may add some).
	if _, err := node.Publish(ctx, "sensors/good-1/reading", fmt.Appendf(nil, `{"boot":1,"seq":%d,"temperature":20.5,"humidity":40.5,"battery":3.3}`, seq)); err != nil {
		t.Fatal(err)
	}
	published[testenv.Key{Node: "good-1", Boot: 1, Seq: seq}] = testenv.Reading{Temperature: 20.5, Humidity: 40.5}
	seq++
	for _, c := range []struct {
		n     *testenv.Node
		topic string
	}{{ghost, "sensors/ghost/reading"}, {evil, "sensors/evil node,x=1\"/reading"}} {
		if rc, err := c.n.Publish(ctx, c.topic, testenv.Payload("x", 1, 1, time.Time{})); err != nil || rc >= 0x80 {
			t.Fatalf("publishing to %q: %v (reason %#x); the broker should let a node write its own topics", c.topic, err, rc)
		}
		want["unknown_node"]++
	}
	good()

	waitStored(t, in, published, func() []testenv.Point { return db.InfluxPoints(t, "sensors") })
	testenv.WaitFor(t, "every bad message counted", 10*time.Second, func() error {
		m, err := in.Metrics()
		if err != nil {
			return err
		}
		var diffs []string
		for _, r := range wire.Reasons {
			got := m[fmt.Sprintf("ingest_messages_rejected_total{reason=%q}", r)]
			if got != want[string(r)] {
				diffs = append(diffs, fmt.Sprintf("%s: %v, want %v", r, got, want[string(r)]))
			}
		}
		if len(diffs) > 0 {
			return errors.New(strings.Join(diffs, "; "))
		}
		return nil
	})
}

// TestImpersonation: a node's certificate gets nothing into the database
// under another node's name, and a certificate from another CA does not
// connect at all.
func TestImpersonation(t *testing.T) {
	s := newSite(t)
	db, _ := testenv.StartInfluxd(t, "sensors", false)
	in := testenv.StartIngest(t, s.config(t, db.URL(), "a-1", "b-1"))
	a := s.nodes(t, "a-1")[0]
	ctx := t.Context()
	for seq := range uint32(3) {
		// The broker refuses (MQTT v5 reason 0x87, which mosquitto
		// 2.0 sends late) or drops it; either way nothing may arrive.
		rc, err := a.PublishOnce(ctx, "sensors/b-1/reading", testenv.Payload("b-1", 1, seq, time.Time{}), 2*time.Second)
		t.Logf("a-1 publishing as b-1: reason code %#x, %v", rc, err)
	}
	published := map[testenv.Key]testenv.Reading{}
	for seq := range uint32(5) {
		if rc, err := a.Publish(ctx, "sensors/a-1/reading", testenv.Payload("a-1", 1, seq, time.Time{})); err != nil || rc >= 0x80 {
			t.Fatalf("a-1 publishing its own reading: %v (reason %#x)", err, rc)
		}
		temp, hum := testenv.Values("a-1", seq)
		published[testenv.Key{Node: "a-1", Boot: 1, Seq: seq}] = testenv.Reading{Temperature: temp, Humidity: hum}
	}
	// a-1's own readings arrive after the forged ones were sent, so once
	// they are in, the forged ones had their chance.
	waitStored(t, in, published, func() []testenv.Point { return db.InfluxPoints(t, "sensors") })
	if m, _ := in.Metrics(); m["ingest_messages_received_total"] != 5 {
		t.Errorf("ingest received %v messages, want only a-1's 5", m["ingest_messages_received_total"])
	}

	other := testenv.NewPKI(t, "other")
	cert, key := other.Node(t, "b-1")
	if n, err := testenv.DialNode(s.broker.Addr(), s.pki.CAFile, [2]string{cert, key}, "b-1"); err == nil {
		n.Close()
		t.Fatal("a certificate from another CA connected to the broker")
	}
}

// TestWriterSplitsAndDrops runs InfluxDB with a small request limit and
// a one-hour retention: batches over the limit come back 413 and are
// split until they fit; readings older than the retention come back 400
// and are dropped and counted, one by one, while every reading around
// them is written.
func TestWriterSplitsAndDrops(t *testing.T) {
	s := newSite(t)
	db, _ := testenv.StartInfluxdWith(t, "sensors", false, 4000, "1h")
	cfg := s.config(t, db.URL(), "old-1")
	cfg.FlushInterval = ingest.Duration(2 * time.Second) // big batches
	in := testenv.StartIngest(t, cfg)
	node := s.nodes(t, "old-1")[0]
	ctx := t.Context()
	published := map[testenv.Key]testenv.Reading{}
	stale := 0
	now := time.Now()
	for seq := range uint32(600) {
		at := now.Add(time.Duration(seq) * time.Millisecond)
		if seq%100 == 50 {
			// Plausible to ingest (a week is), too old for the database.
			at = now.Add(-2 * time.Hour)
			stale++
		}
		if _, err := node.Publish(ctx, "sensors/old-1/reading", testenv.Payload("old-1", 1, seq, at)); err != nil {
			t.Fatal(err)
		}
		if seq%100 != 50 {
			temp, hum := testenv.Values("old-1", seq)
			published[testenv.Key{Node: "old-1", Boot: 1, Seq: seq}] = testenv.Reading{Temperature: temp, Humidity: hum, Time: at}
		}
	}
	waitStored(t, in, published, func() []testenv.Point { return db.InfluxPoints(t, "sensors") })
	m, _ := in.Metrics()
	if m["ingest_points_dropped_total"] != float64(stale) {
		t.Errorf("dropped %v points, want the %d stale ones", m["ingest_points_dropped_total"], stale)
	}
	if m[`ingest_write_failures_total{kind="too_large"}`] == 0 || m["ingest_batch_splits_total"] == 0 {
		t.Errorf("no 413 and split seen (too_large %v, splits %v): the request limit did not bite", m[`ingest_write_failures_total{kind="too_large"}`], m["ingest_batch_splits_total"])
	}
}

// TestSystemdNotify runs ingest as systemd would, with a notify socket
// and a watchdog: it says READY=1 once serving, WATCHDOG=1 regularly, and
// on SIGTERM STOPPING=1, then flushes its spool and exits cleanly.
func TestSystemdNotify(t *testing.T) {
	s := newSite(t)
	db, _ := testenv.StartInfluxd(t, "sensors", false)
	sock := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	states := make(chan string, 100)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				close(states)
				return
			}
			states <- string(buf[:n])
		}
	}()
	cfg := s.config(t, db.URL(), "w-1")
	cfg.FlushInterval = ingest.Duration(time.Minute) // only the shutdown flush writes
	in := testenv.StartIngest(t, cfg, "NOTIFY_SOCKET="+sock, "WATCHDOG_USEC=1000000")
	expect := func(want string) {
		t.Helper()
		timeout := time.After(20 * time.Second)
		for {
			select {
			case st := <-states:
				if strings.Contains(st, want) {
					return
				}
			case <-timeout:
				t.Fatalf("no %s from ingest", want)
			}
		}
	}
	expect("READY=1")
	expect("WATCHDOG=1")
	expect("WATCHDOG=1")

	node := s.nodes(t, "w-1")[0]
	for seq := range uint32(10) {
		if _, err := node.Publish(t.Context(), "sensors/w-1/reading", testenv.Payload("w-1", 1, seq, time.Time{})); err != nil {
			t.Fatal(err)
		}
	}
	testenv.WaitFor(t, "the readings spooled", 10*time.Second, func() error {
		m, err := in.Metrics()
		if err != nil || m["ingest_readings_spooled_total"] != 10 {
			return fmt.Errorf("spooled %v", m["ingest_readings_spooled_total"])
		}
		return nil
	})
	if pts := db.InfluxPoints(t, "sensors"); len(pts) != 0 {
		t.Fatalf("%d points written before the flush interval", len(pts))
	}
	in.Stop()
	expect("STOPPING=1")
	if state := in.Ended(); state != "exit status 0" {
		t.Errorf("ingest ended with %q on SIGTERM, want exit status 0", state)
	}
	if pts := db.InfluxPoints(t, "sensors"); len(pts) != 10 {
		t.Errorf("%d points written on shutdown, want the 10 spooled", len(pts))
	}
	if !strings.Contains(in.Log(), "ingest stopped") || !strings.Contains(in.Log(), "pending=0") {
		t.Errorf("ingest did not say it stopped with nothing pending:\n%s", in.Log())
	}
}
