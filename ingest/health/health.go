// Package health is the gateway's watch on itself: a small program
// beside the ingest service (appliance-health) that writes the site's
// health as points into the readings' database, where Grafana's "Site
// health" dashboard and alert rules read them, and keeps the last
// snapshot in a file for `appliance status`.
//
// Every interval it takes a snapshot of: each node's last reading, its
// rate and firmware version (from ingest's metrics); refused clients
// per reason (from Mosquitto's log and Nginx's OTA log, followed in the
// journal); OTA downloads per node and version, and whether the node
// then runs that version; the days left on every certificate of the
// site; ingest's spool and write failures; the data partition's use.
// docs/health.md lists the measurements.
//
// The journal is read from a cursor kept in the program's state folder
// and saved only once the points it led to are written, so a restart
// neither loses nor doubles events. Like ingest, the program imports
// nothing of the build.
package health

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/influxdata/line-protocol/v2/lineprotocol"

	"github.com/appliance/appliance/ingest/influx"
)

// Measurements of the health points (docs/health.md).
const (
	MNode    = "health_node"
	MRefused = "health_refused"
	MOTA     = "health_ota"
	MCert    = "health_cert"
	MIngest  = "health_ingest"
	MDisk    = "health_disk"
)

// installGrace is how long a node has, after downloading an image, to
// report the image's version before the update counts as not installed.
const installGrace = 10 * time.Minute

// maxPending bounds the points kept while InfluxDB does not take them.
const maxPending = 20000

// Monitor is a running health program.
type Monitor struct {
	cfg     Config
	log     *slog.Logger
	db      *influx.Client
	http    *http.Client
	started time.Time
	now     func() time.Time

	mu       sync.Mutex
	classify Classifier
	events   []Event
	cursor   string // of the last entry in events
	// refused counts since start, by service/reason and by client.
	refused       map[[2]string]int
	refusedClient map[string]int
	// downloads awaits each node's report of the version it fetched.
	downloads map[string]Event
	lastOTA   map[string]Event
	// nodeCerts are the ends of the certificates nodes presented.
	nodeCerts map[string]time.Time
	prev      *IngestView
	prevAt    time.Time
	pending   [][]byte
	status    Status
}

// New prepares the monitor: the InfluxDB client and the saved cursor.
func New(cfg Config, log *slog.Logger) (*Monitor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	ic := influx.Config{URL: cfg.InfluxDB.URL, Version: cfg.InfluxDB.Version, Org: cfg.InfluxDB.Org, Bucket: cfg.InfluxDB.Bucket,
		Database: cfg.InfluxDB.Database, RetentionPolicy: cfg.InfluxDB.RetentionPolicy, User: cfg.InfluxDB.User, Timeout: 10 * time.Second}
	var err error
	if cfg.InfluxDB.TokenFile != "" {
		if ic.Token, err = readSecret(cfg.InfluxDB.TokenFile); err != nil {
			return nil, fmt.Errorf("InfluxDB token: %w", err)
		}
	}
	if cfg.InfluxDB.PasswordFile != "" {
		if ic.Password, err = readSecret(cfg.InfluxDB.PasswordFile); err != nil {
			return nil, fmt.Errorf("InfluxDB password: %w", err)
		}
	}
	if cfg.InfluxDB.CAFile != "" {
		p, err := expand(cfg.InfluxDB.CAFile)
		if err != nil {
			return nil, err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("site CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("site CA %s holds no PEM certificate", p)
		}
		ic.TLS = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	db, err := influx.New(ic)
	if err != nil {
		return nil, err
	}
	m := &Monitor{cfg: cfg, log: log, db: db, http: &http.Client{Timeout: 5 * time.Second}, now: time.Now,
		refused: map[[2]string]int{}, refusedClient: map[string]int{}, downloads: map[string]Event{}, lastOTA: map[string]Event{},
		nodeCerts: map[string]time.Time{}, classify: Classifier{OTAPath: cfg.OTAPath, Images: map[string]Image{}}}
	m.loadImages()
	m.started = m.now()
	if b, err := os.ReadFile(filepath.Join(cfg.StateDir, "cursor")); err == nil {
		m.cursor = strings.TrimSpace(string(b))
	}
	return m, nil
}

// Observe takes one journal entry.
func (m *Monitor) Observe(e Entry) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if ev, ok := m.classify.Classify(e); ok {
		if len(m.events) < maxPending {
			m.events = append(m.events, ev)
		}
	}
	if e.Cursor != "" {
		m.cursor = e.Cursor
	}
}

// Run follows the journal and writes a snapshot every interval until
// ctx ends.
func (m *Monitor) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		for ctx.Err() == nil {
			m.mu.Lock()
			cursor := m.cursor
			m.mu.Unlock()
			if err := Follow(ctx, m.cfg.Journal, cursor, m.Observe); err != nil {
				m.log.Warn("the journal could not be followed; trying again in 10 s", "err", err)
			}
			select {
			case <-ctx.Done():
			case <-time.After(10 * time.Second):
			}
		}
	}()
	tick := time.NewTicker(time.Duration(m.cfg.Interval))
	defer tick.Stop()
	for {
		if err := m.Tick(ctx); err != nil {
			m.log.Warn("health snapshot", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// Tick takes a snapshot, writes its points and the status, and saves
// the journal cursor once the points are written.
func (m *Monitor) Tick(ctx context.Context) error {
	now := m.now().UTC()
	m.loadImages()
	view, ierr := scrapeIngest(ctx, m.http, m.cfg.IngestMetrics)
	if ierr != nil {
		m.log.Warn("ingest's metrics", "err", ierr)
	}
	disk, derr := diskUse(m.cfg.DataPath)
	m.mu.Lock()
	events, cursor := m.events, m.cursor
	m.events = nil
	lines := m.snapshot(now, view, disk, derr, events)
	batch := append(m.pending, lines...)
	m.mu.Unlock()

	res := m.db.Write(ctx, batch)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.status.LastWriteError = ""
	if res.Kind == influx.OK {
		m.pending = nil
		m.status.LastWrite = now
		if cursor != "" {
			if err := writeAtomic(filepath.Join(m.cfg.StateDir, "cursor"), []byte(cursor+"\n")); err != nil {
				m.log.Warn("saving the journal cursor", "err", err)
			}
		}
	} else {
		m.status.LastWriteError = res.Err.Error()
		if res.Kind == influx.Retry {
			m.pending = batch
			if len(m.pending) > maxPending {
				m.pending = m.pending[len(m.pending)-maxPending:]
			}
		} else {
			m.pending = nil
		}
	}
	if err := m.saveStatus(); err != nil {
		return err
	}
	if res.Kind != influx.OK {
		return fmt.Errorf("writing %d health points: %w", len(batch), res.Err)
	}
	return nil
}

func (m *Monitor) saveStatus() error {
	b, err := json.MarshalIndent(m.status, "", "  ")
	if err != nil {
		return err
	}
	return writeAtomic(filepath.Join(m.cfg.StateDir, StatusFile), append(b, '\n'))
}

// snapshot turns the view and the events into line protocol and the
// status; m.mu is held.
func (m *Monitor) snapshot(now time.Time, view IngestView, disk DiskView, diskErr error, events []Event) [][]byte {
	var enc lineprotocol.Encoder
	enc.SetPrecision(lineprotocol.Nanosecond)
	var lines [][]byte
	emit := func() {
		if enc.Err() == nil {
			lines = append(lines, append([]byte(nil), enc.Bytes()...))
		} else {
			m.log.Warn("could not encode a health point", "err", enc.Err())
			enc.ClearErr()
		}
		enc.Reset()
	}
	st := Status{Site: m.cfg.Site, Time: now, Since: m.started.UTC(), LastWrite: m.status.LastWrite}

	// Refusals and downloads.
	type rkey struct{ service, reason string }
	counts := map[rkey]int{}
	lastClient := map[rkey]string{}
	perNode := map[string]int{}
	for _, ev := range events {
		if !ev.CertEnd.IsZero() && m.cfg.Nodes[ev.Client].Interval > 0 {
			m.nodeCerts[ev.Client] = ev.CertEnd
		}
		if ev.Reason != "" {
			k := rkey{ev.Service, ev.Reason}
			counts[k]++
			lastClient[k] = ev.Client
			m.refused[[2]string{ev.Service, ev.Reason}]++
			if ev.Client != "" {
				m.refusedClient[ev.Client]++
				perNode[ev.Client]++
			}
			continue
		}
		if ev.Outcome == "" {
			continue
		}
		m.lastOTA[ev.Node] = ev
		if ev.Outcome == Downloaded {
			m.downloads[ev.Node] = ev
		}
		m.otaPoint(&enc, ev, ev.Time)
		emit()
	}
	keys := make([]rkey, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].service+keys[i].reason < keys[j].service+keys[j].reason })
	for _, k := range keys {
		enc.StartLine(MRefused)
		enc.AddTag("reason", k.reason)
		enc.AddTag("service", k.service)
		enc.AddField("count", lineprotocol.IntValue(int64(counts[k])))
		if v, ok := lineprotocol.StringValue(lastClient[k]); ok && lastClient[k] != "" {
			enc.AddField("last_client", v)
		}
		enc.EndLine(now)
		emit()
	}
	for k, n := range m.refused {
		st.Refused = append(st.Refused, RefusedCount{Service: k[0], Reason: k[1], Count: n})
	}
	sort.Slice(st.Refused, func(i, j int) bool {
		return st.Refused[i].Service+st.Refused[i].Reason < st.Refused[j].Service+st.Refused[j].Reason
	})

	// Certificates: the gateway's files, and what the nodes presented.
	certs := append([]Certificate(nil), m.cfg.Certificates...)
	nodeNames := make([]string, 0, len(m.nodeCerts))
	for name := range m.nodeCerts {
		nodeNames = append(nodeNames, name)
	}
	sort.Strings(nodeNames)
	for _, name := range nodeNames {
		certs = append(certs, Certificate{Name: name, Kind: "node"})
	}
	for _, c := range certs {
		cs := CertStatus{Name: c.Name, Kind: c.Kind, NotAfter: m.nodeCerts[c.Name]}
		if c.File != "" {
			na, err := certNotAfter(c.File)
			if err != nil {
				cs.Error = err.Error()
				st.Certificates = append(st.Certificates, cs)
				continue
			}
			cs.NotAfter = na
		}
		cs.DaysLeft = cs.NotAfter.Sub(now).Hours() / 24
		st.Certificates = append(st.Certificates, cs)
		enc.StartLine(MCert)
		enc.AddTag("kind", c.Kind)
		enc.AddTag("name", c.Name)
		days, _ := lineprotocol.FloatValue(cs.DaysLeft)
		enc.AddField("days_left", days)
		enc.AddField("not_after", lineprotocol.IntValue(cs.NotAfter.Unix()))
		enc.EndLine(now)
		emit()
	}

	// Nodes.
	names := make([]string, 0, len(m.cfg.Nodes))
	for n := range m.cfg.Nodes {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		cfg := m.cfg.Nodes[name]
		nv := view.Nodes[name]
		ns := NodeStatus{Name: name, Group: cfg.Group, Interval: time.Duration(cfg.Interval).Seconds(), Firmware: nv.Firmware,
			CertNotAfter: m.nodeCerts[name], Refused: m.refusedClient[name]}
		if !ns.CertNotAfter.IsZero() {
			ns.CertDaysLeft = ns.CertNotAfter.Sub(now).Hours() / 24
		}
		// A node not heard of since ingest (or this program) started has
		// been silent at least that long.
		since := m.started
		if !nv.LastSeen.IsZero() {
			ns.LastSeen = nv.LastSeen
			since = nv.LastSeen
		}
		ns.SilentSeconds = max(0, now.Sub(since).Seconds())
		ns.SilentIntervals = ns.SilentSeconds / ns.Interval
		enc.StartLine(MNode)
		if cfg.Group != "" {
			enc.AddTag("group", cfg.Group)
		}
		enc.AddTag("node", name)
		if fw, ok := lineprotocol.StringValue(nv.Firmware); ok && nv.Firmware != "" {
			enc.AddField("firmware_version", fw)
		}
		if !nv.LastSeen.IsZero() {
			enc.AddField("last_seen", lineprotocol.IntValue(nv.LastSeen.Unix()))
		}
		if m.prev != nil && view.Up && m.prev.Up {
			if p, ok := m.prev.Nodes[name]; ok && nv.Readings >= p.Readings {
				rate := float64(nv.Readings-p.Readings) / now.Sub(m.prevAt).Minutes()
				ns.ReadingsPerMinute = &rate
				v, _ := lineprotocol.FloatValue(rate)
				enc.AddField("readings_per_min", v)
			}
		}
		enc.AddField("refused", lineprotocol.IntValue(int64(perNode[name])))
		silent, _ := lineprotocol.FloatValue(ns.SilentIntervals)
		enc.AddField("silent_intervals", silent)
		secs, _ := lineprotocol.FloatValue(ns.SilentSeconds)
		enc.AddField("silent_s", secs)
		enc.EndLine(now)
		emit()
		// An update is installed once the node reports its version.
		if d, ok := m.downloads[name]; ok {
			switch {
			case nv.Firmware == d.Version && nv.LastSeen.After(d.Time):
				d.Outcome = Installed
			case now.Sub(d.Time) > installGrace+3*time.Duration(cfg.Interval) && nv.LastSeen.After(d.Time):
				d.Outcome = NotInstalled
			default:
				d.Outcome = ""
			}
			if d.Outcome != "" {
				delete(m.downloads, name)
				m.lastOTA[name] = d
				m.otaPoint(&enc, d, now)
				emit()
			}
		}
		if o, ok := m.lastOTA[name]; ok {
			ns.OTA = &OTAStatus{Firmware: o.Firmware, Version: o.Version, Outcome: o.Outcome, Time: o.Time}
		}
		st.Nodes = append(st.Nodes, ns)
	}

	// Ingest.
	st.Ingest = IngestStatus{Up: view.Up, MQTTConnected: view.MQTTConnected, InfluxDBUp: view.InfluxDBUp,
		SpoolBytes: view.SpoolBytes, SpoolPending: view.SpoolPending, SpoolFull: view.SpoolFull, WriteFailures: view.WriteFailures}
	enc.StartLine(MIngest)
	// Flags are 0 or 1, so that alert rules can compare them; an ingest
	// that does not answer writes nothing.
	enc.AddField("influxdb_up", lineprotocol.IntValue(int64(b2i(view.Up && view.InfluxDBUp))))
	if view.Up {
		enc.AddField("mqtt_connected", lineprotocol.IntValue(int64(b2i(view.MQTTConnected))))
		enc.AddField("spool_bytes", lineprotocol.IntValue(view.SpoolBytes))
		enc.AddField("spool_full", lineprotocol.IntValue(int64(b2i(view.SpoolFull))))
		enc.AddField("spool_pending", lineprotocol.IntValue(view.SpoolPending))
		delta := int64(0)
		if m.prev != nil && m.prev.Up && view.WriteFailures >= m.prev.WriteFailures {
			delta = view.WriteFailures - m.prev.WriteFailures
		}
		enc.AddField("write_failures", lineprotocol.IntValue(delta))
		enc.AddField("write_failures_total", lineprotocol.IntValue(view.WriteFailures))
	}
	enc.AddField("up", lineprotocol.IntValue(int64(b2i(view.Up))))
	enc.EndLine(now)
	emit()
	m.prev, m.prevAt = &view, now

	// Disk.
	if diskErr == nil {
		st.Disk = &disk
		enc.StartLine(MDisk)
		enc.AddTag("path", disk.Path)
		enc.AddField("size_bytes", lineprotocol.IntValue(disk.SizeBytes))
		enc.AddField("used_bytes", lineprotocol.IntValue(disk.UsedBytes))
		pct, _ := lineprotocol.FloatValue(disk.UsedPercent)
		enc.AddField("used_percent", pct)
		enc.EndLine(now)
		emit()
	}
	st.LastWriteError = m.status.LastWriteError
	m.status = st
	return lines
}

func (m *Monitor) otaPoint(enc *lineprotocol.Encoder, ev Event, at time.Time) {
	enc.StartLine(MOTA)
	enc.AddTag("firmware", ev.Firmware)
	enc.AddTag("node", ev.Node)
	enc.AddTag("outcome", ev.Outcome)
	enc.AddTag("version", ev.Version)
	enc.AddField("count", lineprotocol.IntValue(1))
	if ev.Status != 0 {
		enc.AddField("status", lineprotocol.IntValue(int64(ev.Status)))
	}
	enc.EndLine(at)
}

// loadImages reads the version of each image the OTA tree's manifests
// name.
func (m *Monitor) loadImages() {
	if m.cfg.OTADir == "" {
		return
	}
	files, _ := filepath.Glob(filepath.Join(m.cfg.OTADir, "*", "manifest.json"))
	images := map[string]Image{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var mf struct {
			Firmware, Version, SHA256 string
		}
		if json.Unmarshal(b, &mf) == nil && mf.SHA256 != "" {
			images[mf.SHA256] = Image{Firmware: mf.Firmware, Version: mf.Version}
		}
	}
	m.mu.Lock()
	for k, v := range images {
		m.classify.Images[k] = v // old images keep the version they had
	}
	m.mu.Unlock()
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Status is the latest snapshot, shown by `appliance status`.
func (m *Monitor) Status() Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.status
}

// writeAtomic replaces a file whole.
func writeAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
