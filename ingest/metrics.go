package ingest

import (
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/appliance/appliance/ingest/spool"
	"github.com/appliance/appliance/ingest/wire"
)

// metrics are the service's counters, served in the Prometheus text
// format. They are written by hand rather than with client_golang: a
// dozen counters do not justify its dependencies in the gateway's SBOM,
// nor its memory in a service that aims at 40 MB.
type metrics struct {
	received      atomic.Int64
	rejected      map[wire.Reason]*atomic.Int64
	duplicates    atomic.Int64
	clockFallback atomic.Int64
	spooled       atomic.Int64
	written       atomic.Int64
	dropped       atomic.Int64 // refused by InfluxDB (400)
	writes        atomic.Int64 // successful requests
	writeFailures sync.Map     // kind string → *atomic.Int64
	splits        atomic.Int64
	connects      atomic.Int64
	connected     atomic.Bool
	influxUp      atomic.Bool
	influxErr     atomic.Value // string: the last write error
	age           histogram    // reading age when written
	// nodes are the site's nodes' signs of life, for the health program;
	// only configured names get one, so the series stay bounded.
	nodes map[string]*nodeStat

	spool func() spool.Stats
}

// nodeStat is what ingest last heard of one node.
type nodeStat struct {
	readings atomic.Int64
	lastSeen atomic.Int64 // Unix nanoseconds of the last reading's receipt
	firmware atomic.Value // string: the firmware version it last sent
}

// seen records a good reading of a configured node.
func (m *metrics) seen(node string, at time.Time, fw string) {
	n := m.nodes[node]
	if n == nil {
		return
	}
	n.readings.Add(1)
	n.lastSeen.Store(at.UnixNano())
	if fw != "" {
		n.firmware.Store(fw)
	}
}

func newMetrics() *metrics {
	m := &metrics{rejected: map[wire.Reason]*atomic.Int64{}, nodes: map[string]*nodeStat{}}
	for _, r := range wire.Reasons {
		m.rejected[r] = new(atomic.Int64)
	}
	m.influxErr.Store("")
	m.age.init([]float64{.005, .01, .025, .05, .075, .1, .15, .2, .3, .4, .5, .6, .75, .9, 1, 1.25, 1.5, 2, 3, 5, 10, 30, 60, 300, 3600})
	return m
}

func (m *metrics) reject(r wire.Reason) { m.rejected[r].Add(1) }

func (m *metrics) writeFailed(kind string) {
	v, _ := m.writeFailures.LoadOrStore(kind, new(atomic.Int64))
	v.(*atomic.Int64).Add(1)
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// write renders the exposition format.
func (m *metrics) write(w io.Writer) {
	p := func(name, typ, help string) { fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ) }
	p("ingest_messages_received_total", "counter", "MQTT messages received.")
	fmt.Fprintf(w, "ingest_messages_received_total %d\n", m.received.Load())
	p("ingest_messages_rejected_total", "counter", "Messages refused, by reason; they are acknowledged and not written.")
	for _, r := range wire.Reasons {
		fmt.Fprintf(w, "ingest_messages_rejected_total{reason=%q} %d\n", r, m.rejected[r].Load())
	}
	p("ingest_messages_duplicate_total", "counter", "Messages with a (node, boot, seq) already taken: broker redeliveries.")
	fmt.Fprintf(w, "ingest_messages_duplicate_total %d\n", m.duplicates.Load())
	p("ingest_clock_fallback_total", "counter", "Readings whose device time was implausible, stamped with the receive time instead.")
	fmt.Fprintf(w, "ingest_clock_fallback_total %d\n", m.clockFallback.Load())
	p("ingest_readings_spooled_total", "counter", "Readings fsync'ed into the spool (then acknowledged).")
	fmt.Fprintf(w, "ingest_readings_spooled_total %d\n", m.spooled.Load())
	p("ingest_points_written_total", "counter", "Points InfluxDB accepted (replays after a restart count again).")
	fmt.Fprintf(w, "ingest_points_written_total %d\n", m.written.Load())
	p("ingest_points_dropped_total", "counter", "Points InfluxDB refused as bad (HTTP 400); logged.")
	fmt.Fprintf(w, "ingest_points_dropped_total %d\n", m.dropped.Load())
	p("ingest_write_requests_total", "counter", "Successful write requests.")
	fmt.Fprintf(w, "ingest_write_requests_total %d\n", m.writes.Load())
	p("ingest_write_failures_total", "counter", "Failed write requests, by kind: retry (network, 429, 5xx, auth), too_large (413, split), rejected (400).")
	var kinds []string
	m.writeFailures.Range(func(k, _ any) bool { kinds = append(kinds, k.(string)); return true })
	sort.Strings(kinds)
	for _, k := range kinds {
		v, _ := m.writeFailures.Load(k)
		fmt.Fprintf(w, "ingest_write_failures_total{kind=%q} %d\n", k, v.(*atomic.Int64).Load())
	}
	p("ingest_batch_splits_total", "counter", "Batches split in two after HTTP 413 or 400.")
	fmt.Fprintf(w, "ingest_batch_splits_total %d\n", m.splits.Load())
	p("ingest_mqtt_connects_total", "counter", "Connections made to the broker.")
	fmt.Fprintf(w, "ingest_mqtt_connects_total %d\n", m.connects.Load())
	p("ingest_mqtt_connected", "gauge", "1 while connected to the broker.")
	fmt.Fprintf(w, "ingest_mqtt_connected %d\n", b2i(m.connected.Load()))
	p("ingest_influxdb_up", "gauge", "1 when the last write to InfluxDB succeeded.")
	fmt.Fprintf(w, "ingest_influxdb_up %d\n", b2i(m.influxUp.Load()))
	if m.spool != nil {
		st := m.spool()
		p("ingest_spool_bytes", "gauge", "Bytes in the spool on disk.")
		fmt.Fprintf(w, "ingest_spool_bytes %d\n", st.Bytes)
		p("ingest_spool_max_bytes", "gauge", "The spool's size limit.")
		fmt.Fprintf(w, "ingest_spool_max_bytes %d\n", st.MaxBytes)
		p("ingest_spool_pending", "gauge", "Readings in the spool that InfluxDB does not have yet.")
		fmt.Fprintf(w, "ingest_spool_pending %d\n", st.Pending)
		p("ingest_spool_full", "gauge", "1 while the spool is full: ingest stops acknowledging and the broker queues.")
		fmt.Fprintf(w, "ingest_spool_full %d\n", b2i(st.Full))
		p("ingest_spool_corrupt_bytes", "gauge", "Bytes of damaged records cut off the spool at start (a torn write from a crash).")
		fmt.Fprintf(w, "ingest_spool_corrupt_bytes %d\n", st.Corrupt)
	}
	m.writeNodes(w, p)
	p("ingest_reading_age_seconds", "histogram", "Age of a reading (write time minus its timestamp) when InfluxDB took it: publish-to-write latency for nodes that send their time.")
	m.age.write(w, "ingest_reading_age_seconds")
}

func (m *metrics) writeNodes(w io.Writer, p func(name, typ, help string)) {
	names := make([]string, 0, len(m.nodes))
	for n := range m.nodes {
		names = append(names, n)
	}
	sort.Strings(names)
	p("ingest_node_readings_total", "counter", "Good readings received from each node of the site (redeliveries included).")
	for _, n := range names {
		fmt.Fprintf(w, "ingest_node_readings_total{node=%q} %d\n", n, m.nodes[n].readings.Load())
	}
	p("ingest_node_last_seen_seconds", "gauge", "Unix time of each node's last good reading; 0 when none came since ingest started.")
	for _, n := range names {
		fmt.Fprintf(w, "ingest_node_last_seen_seconds{node=%q} %.3f\n", n, float64(m.nodes[n].lastSeen.Load())/1e9)
	}
	p("ingest_node_firmware_info", "gauge", "The firmware version each node last sent, as a label.")
	for _, n := range names {
		if fw, _ := m.nodes[n].firmware.Load().(string); fw != "" {
			fmt.Fprintf(w, "ingest_node_firmware_info{node=%q,version=%q} 1\n", n, fw)
		}
	}
}

type histogram struct {
	mu     sync.Mutex
	bounds []float64
	counts []int64
	sum    float64
	n      int64
}

func (h *histogram) init(b []float64) { h.bounds, h.counts = b, make([]int64, len(b)) }

func (h *histogram) observe(vs []float64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, v := range vs {
		i := sort.SearchFloat64s(h.bounds, v) // first bound >= v
		if i < len(h.counts) {
			h.counts[i]++
		}
		h.sum += v
		h.n++
	}
}

func (h *histogram) write(w io.Writer, name string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var cum int64
	for i, b := range h.bounds {
		cum += h.counts[i]
		fmt.Fprintf(w, "%s_bucket{le=\"%g\"} %d\n", name, b, cum)
	}
	fmt.Fprintf(w, "%s_bucket{le=\"+Inf\"} %d\n%s_sum %g\n%s_count %d\n", name, h.n, name, h.sum, name, h.n)
}

// health says whether ingest is doing its job, and if not, why.
func (m *metrics) health() (bool, string) {
	var why []string
	if !m.connected.Load() {
		why = append(why, "not connected to the MQTT broker")
	}
	if !m.influxUp.Load() {
		why = append(why, "InfluxDB is not taking writes: "+m.influxErr.Load().(string))
	}
	if m.spool != nil {
		if st := m.spool(); st.Full {
			why = append(why, fmt.Sprintf("spool full for %s: not acknowledging, the broker queues", st.FullFor.Round(time.Second)))
		}
	}
	if len(why) > 0 {
		return false, strings.Join(why, "; ")
	}
	return true, "ok"
}

func (m *metrics) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		m.write(w)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		ok, why := m.health()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		fmt.Fprintln(w, why)
	})
	return mux
}
