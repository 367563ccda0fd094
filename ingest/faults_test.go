package ingest_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/appliance/appliance/ingest"
	"github.com/appliance/appliance/ingest/internal/testenv"
)

// The fault tests run a stream of 1,000 readings a second (10 nodes at
// 100/s, half of them with a clock), break something in the middle, and
// then require every reading in InfluxDB exactly once.

const (
	streamNodes   = 10
	streamPerNode = 100
)

type faultRig struct {
	site   *site
	db     *testenv.Influx
	ingest *testenv.Ingest
	stream *testenv.Stream
}

func startFaultRig(t *testing.T, spoolBytes int64) *faultRig {
	s := newSite(t)
	db, _ := testenv.StartInfluxd(t, "sensors", false)
	cfg := s.config(t, db.URL(), names("n", streamNodes)...)
	cfg.FlushInterval = ingest.Duration(time.Second) // the spec's default
	if spoolBytes > 0 {
		cfg.Spool.MaxBytes = spoolBytes
	}
	in := testenv.StartIngest(t, cfg)
	nodes := s.nodes(t, names("n", streamNodes)...)
	for i := range nodes {
		nodes[i].DeviceTime = i%2 == 0
	}
	r := &faultRig{site: s, db: db, ingest: in, stream: testenv.StartStream(nodes, streamPerNode)}
	r.waitPublished(t, 2000)
	return r
}

func (r *faultRig) waitPublished(t *testing.T, n int64) {
	t.Helper()
	testenv.WaitFor(t, fmt.Sprintf("%d readings published", n), 60*time.Second, func() error {
		if c := r.stream.Count(); c < n {
			return fmt.Errorf("%d published", c)
		}
		return nil
	})
}

// finish streams for a few more seconds, stops, and checks the database.
func (r *faultRig) finish(t *testing.T) {
	t.Helper()
	r.waitPublished(t, r.stream.Count()+3000)
	published, err := r.stream.Stop()
	if err != nil {
		t.Fatal(err)
	}
	waitStored(t, r.ingest, published, func() []testenv.Point { return r.db.InfluxPoints(t, "sensors") })
}

func (r *faultRig) metric(t *testing.T, name string) float64 {
	t.Helper()
	m, err := r.ingest.Metrics()
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	return m[name]
}

// TestInfluxDBOutage stops InfluxDB for 30 s. The spool (4 MiB here)
// fills, ingest stops acknowledging, the broker queues the rest; when
// InfluxDB is back, everything arrives.
func TestInfluxDBOutage(t *testing.T) {
	r := startFaultRig(t, 4<<20)
	r.db.Stop()
	stopped := time.Now()
	sawDown, sawFull, sawUnhealthy := false, false, false
	for time.Since(stopped) < 30*time.Second {
		sawDown = sawDown || r.metric(t, "ingest_influxdb_up") == 0
		sawFull = sawFull || r.metric(t, "ingest_spool_full") == 1
		if code, _, err := r.ingest.Health(); err == nil && code == 503 {
			sawUnhealthy = true
		}
		time.Sleep(250 * time.Millisecond)
	}
	if !sawDown || !sawFull || !sawUnhealthy {
		t.Errorf("during the outage: influxdb_up=0 seen %v, spool_full=1 seen %v, /healthz 503 seen %v; want all", sawDown, sawFull, sawUnhealthy)
	}
	if b := r.metric(t, "ingest_spool_bytes"); b > 4<<20 {
		t.Errorf("spool holds %v bytes, over its 4 MiB", b)
	}
	r.db.Start()
	r.finish(t)
	if code, body, _ := r.ingest.Health(); code != 200 {
		t.Errorf("/healthz after the outage = %d %q, want 200", code, body)
	}
}

// TestIngestKilled kills ingest with SIGKILL twice while readings flow.
func TestIngestKilled(t *testing.T) {
	r := startFaultRig(t, 0)
	for range 2 {
		r.ingest.Kill()
		r.waitPublished(t, r.stream.Count()+500) // the broker queues meanwhile
		r.ingest.Start()
		r.waitPublished(t, r.stream.Count()+2000)
	}
	r.finish(t)
	if d := r.metric(t, "ingest_messages_duplicate_total"); d == 0 {
		t.Logf("no redelivery was caught this time (the kills fell between fsync and acknowledgement of nothing)")
	}
}

// TestBrokerRestarted restarts mosquitto (same persistence folder) while
// readings flow: ingest's session and the nodes' unacknowledged
// publishes survive, and redeliveries are written once.
func TestBrokerRestarted(t *testing.T) {
	r := startFaultRig(t, 0)
	r.site.broker.Stop()
	testenv.WaitFor(t, "ingest to notice", 30*time.Second, func() error {
		if r.metric(t, "ingest_mqtt_connected") != 0 {
			return fmt.Errorf("still connected")
		}
		return nil
	})
	r.site.broker.Start()
	testenv.WaitFor(t, "ingest to reconnect", 30*time.Second, func() error {
		if r.metric(t, "ingest_mqtt_connects_total") < 2 || r.metric(t, "ingest_mqtt_connected") != 1 {
			return fmt.Errorf("not reconnected")
		}
		return nil
	})
	r.finish(t)
}
