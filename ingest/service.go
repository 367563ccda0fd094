// Package ingest is appliance's service on the gateway that takes sensor
// readings from Mosquitto (MQTT v5, mutual TLS, persistent session, QoS 1)
// and writes them to InfluxDB without losing any.
//
// The path of a reading:
//
//	broker ──▶ receive callback ──▶ pipeline: check (package wire),
//	           (never blocks)        drop duplicates, append to the spool,
//	                                 fsync, then acknowledge to the broker
//	spool ──▶ writer: batches by size and time ──▶ InfluxDB (package influx),
//	                  retry, split, drop bad points; commit the spool cursor
//
// A reading is acknowledged only once it is fsync'ed in the spool, so a
// crash at any point loses nothing: what was not acknowledged the broker
// sends again, and what was acknowledged the spool replays. Replays are
// harmless because a point's timestamp is fixed when it is spooled
// (InfluxDB keeps one point per series and time), and redeliveries are
// recognised by (node, boot, seq). docs/wire.md describes the payload.
package ingest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	"github.com/influxdata/line-protocol/v2/lineprotocol"

	"github.com/appliance/appliance/ingest/influx"
	"github.com/appliance/appliance/ingest/spool"
	"github.com/appliance/appliance/ingest/wire"
)

// Measurement is the InfluxDB measurement of readings.
const Measurement = "reading"

// ackInterval is how often paho sends the acknowledgements we released:
// a short interval keeps the broker's window of unacknowledged messages
// moving.
const ackInterval = 10 * time.Millisecond

type message struct {
	pub    *paho.Publish
	client *paho.Client
	recv   time.Time
}

type nodeInfo struct {
	sensor wire.Sensor
	tags   [][2]string // sorted by key, as line protocol wants them
}

// Service is a running ingest service.
type Service struct {
	cfg   Config
	log   *slog.Logger
	m     *metrics
	sp    *spool.Spool
	db    *influx.Client
	tls   *tls.Config
	nodes map[string]nodeInfo

	inbound chan message
	// stopping makes the receive callback leave new messages
	// unacknowledged, for the broker to send again next time.
	stopping atomic.Bool
	// beats are the loops' last signs of life, for the watchdog.
	pipeBeat, writeBeat atomic.Int64
	// quiet rate-limits repetitive log lines, by topic.
	quiet sync.Map
}

// New prepares the service: certificates, secrets, InfluxDB client and
// spool. It does not connect yet.
func New(cfg Config, log *slog.Logger) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Service{cfg: cfg, log: log, m: newMetrics(), nodes: map[string]nodeInfo{}}
	s.m.influxUp.Store(true) // until a write fails
	for name, n := range cfg.Nodes {
		info := nodeInfo{sensor: wire.Sensors[n.Sensor]}
		info.tags = append(info.tags, [2]string{"node", name}, [2]string{"sensor", n.Sensor})
		if n.Group != "" {
			info.tags = append(info.tags, [2]string{"group", n.Group})
		}
		if n.Firmware != "" {
			info.tags = append(info.tags, [2]string{"firmware", n.Firmware})
		}
		for k, v := range n.Tags {
			if v != "" { // line protocol has no empty tag values
				info.tags = append(info.tags, [2]string{k, v})
			}
		}
		sort.Slice(info.tags, func(i, j int) bool { return info.tags[i][0] < info.tags[j][0] })
		s.nodes[name] = info
		s.m.nodes[name] = new(nodeStat)
	}

	var err error
	if s.tls, err = clientTLS(cfg.MQTT); err != nil {
		return nil, err
	}
	icfg := influx.Config{URL: cfg.InfluxDB.URL, Version: cfg.InfluxDB.Version,
		Org: cfg.InfluxDB.Org, Bucket: cfg.InfluxDB.Bucket,
		Database: cfg.InfluxDB.Database, RetentionPolicy: cfg.InfluxDB.RetentionPolicy, User: cfg.InfluxDB.User}
	if cfg.InfluxDB.TokenFile != "" {
		if icfg.Token, err = readSecret(cfg.InfluxDB.TokenFile); err != nil {
			return nil, fmt.Errorf("InfluxDB token: %w", err)
		}
	}
	if cfg.InfluxDB.PasswordFile != "" {
		if icfg.Password, err = readSecret(cfg.InfluxDB.PasswordFile); err != nil {
			return nil, fmt.Errorf("InfluxDB password: %w", err)
		}
	}
	if cfg.InfluxDB.CAFile != "" {
		pool, err := loadPool(cfg.InfluxDB.CAFile)
		if err != nil {
			return nil, err
		}
		icfg.TLS = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	if s.db, err = influx.New(icfg); err != nil {
		return nil, err
	}
	if s.sp, err = spool.Open(spool.Options{Dir: cfg.Spool.Dir, MaxBytes: cfg.Spool.MaxBytes}); err != nil {
		return nil, fmt.Errorf("%w; the spool folder must be writable by ingest (the unit's StateDirectory)", err)
	}
	s.m.spool = s.sp.Stats
	if st := s.sp.Stats(); st.Corrupt > 0 {
		log.Warn("spool: cut off a damaged tail (a write interrupted by a crash; it was never acknowledged, so the broker sends it again)", "bytes", st.Corrupt)
	}
	// The broker sends at most ReceiveMaximum unacknowledged QoS 1
	// messages, so this never fills and the receive callback never
	// blocks; the slack covers QoS 0 messages, which are not limited.
	s.inbound = make(chan message, cfg.MQTT.ReceiveMaximum+1024)
	return s, nil
}

func loadPool(path string) (*x509.CertPool, error) {
	p, err := expand(path)
	if err != nil {
		return nil, err
	}
	pem, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("site CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("site CA %s holds no PEM certificate", p)
	}
	return pool, nil
}

// clientTLS is mutual TLS with the site CA and ingest's certificate; the
// broker's certificate must name cfg.ServerName. There is no way to turn
// verification off.
func clientTLS(cfg MQTT) (*tls.Config, error) {
	pool, err := loadPool(cfg.CAFile)
	if err != nil {
		return nil, err
	}
	certPath, err := expand(cfg.CertFile)
	if err != nil {
		return nil, err
	}
	keyPath, err := expand(cfg.KeyFile)
	if err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		return nil, fmt.Errorf("ingest's client certificate: %w; run `appliance pki renew ingest` and push", err)
	}
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, ServerName: cfg.ServerName, MinVersion: tls.VersionTLS12}, nil
}

// Run serves until ctx ends, then flushes and stops.
func (s *Service) Run(ctx context.Context) error {
	notify := newNotifier()
	defer notify.close()

	var srv *http.Server
	if s.cfg.Listen != "" {
		ln, err := net.Listen("tcp", s.cfg.Listen)
		if err != nil {
			return fmt.Errorf("metrics listener: %w; is another ingest running, or does ingest.metrics_port clash?", err)
		}
		srv = &http.Server{Handler: s.m.handler(), ReadHeaderTimeout: 5 * time.Second}
		go srv.Serve(ln)
		defer srv.Close()
	}

	// The writer and the pipeline stop on their own signals, so that
	// shutdown can run them down in order.
	writeCtx, stopWriter := context.WithCancel(context.Background())
	defer stopWriter()
	flush := make(chan struct{})
	writeDone := make(chan error, 1)
	go func() { writeDone <- s.writeLoop(writeCtx, flush) }()

	pipeCtx, stopPipe := context.WithCancel(context.Background())
	defer stopPipe()
	drain := make(chan struct{})
	pipeDone := make(chan error, 1)
	go func() { pipeDone <- s.pipeline(pipeCtx, drain) }()

	cm, err := s.connect(ctx)
	if err != nil {
		return err
	}
	notify.send("READY=1\nSTATUS=taking readings")
	s.log.Info("ingest started", "broker", s.cfg.MQTT.Broker, "subscription", s.Subscription(), "influxdb", s.db.Endpoint(), "spool", s.cfg.Spool.Dir, "pending", s.sp.Stats().Pending)

	wd := watchdog()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var wdLast time.Time
	var runErr error
	pipeStopped, writeStopped := false, false
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case err := <-pipeDone:
			// Only a failing disk ends the pipeline early.
			pipeStopped, runErr = true, fmt.Errorf("pipeline: %v", err)
			break loop
		case err := <-writeDone:
			writeStopped, runErr = true, fmt.Errorf("writer: %v", err)
			break loop
		case <-tick.C:
			s.report()
			if wd > 0 && time.Since(wdLast) >= wd && s.alive() {
				notify.send("WATCHDOG=1")
				wdLast = time.Now()
			}
		}
	}

	notify.send("STOPPING=1")
	s.log.Info("ingest stopping: spooling what was received, then writing what is pending")
	// Spool and acknowledge what has arrived, then let paho send the
	// acknowledgements before saying goodbye.
	s.stopping.Store(true)
	if !pipeStopped {
		close(drain)
		select {
		case <-pipeDone:
		case <-time.After(10 * time.Second):
			stopPipe()
			<-pipeDone
		}
	}
	time.Sleep(3 * ackInterval)
	dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	cm.Disconnect(dctx)
	cancel()
	// Give InfluxDB a little time to take the rest; what it does not
	// take stays in the spool for the next start.
	if !writeStopped {
		close(flush)
		select {
		case <-writeDone:
		case <-time.After(10 * time.Second):
			stopWriter()
			<-writeDone
		}
	}
	if err := s.sp.Close(); err != nil && runErr == nil {
		runErr = err
	}
	st := s.sp.Stats()
	s.log.Info("ingest stopped", "pending", st.Pending)
	return runErr
}

// Subscription is the filter ingest subscribes to.
func (s *Service) Subscription() string { return s.cfg.Subscription() }

// Handler serves /metrics and /healthz (for tests and embedding).
func (s *Service) Handler() http.Handler { return s.m.handler() }

func (s *Service) alive() bool {
	limit := 30 * time.Second
	now := time.Now().UnixNano()
	ok := func(b *atomic.Int64) bool { return now-b.Load() < int64(limit) }
	// A full spool blocks the pipeline on purpose; a hung fsync or a
	// stuck loop does not, and systemd should restart ingest then.
	return (ok(&s.pipeBeat) || s.sp.Stats().Full) && ok(&s.writeBeat)
}

// report logs the states an operator must know about, at most once a
// minute each.
func (s *Service) report() {
	if st := s.sp.Stats(); st.Full {
		s.warn("spool-full", time.Minute, "spool is full: not acknowledging readings, the broker queues them until InfluxDB takes the spool",
			"for", st.FullFor.Round(time.Second), "bytes", st.Bytes, "pending", st.Pending)
	}
}

// warn logs at most once per every for a topic.
func (s *Service) warn(topic string, every time.Duration, msg string, args ...any) {
	now := time.Now()
	if v, ok := s.quiet.Load(topic); ok && now.Sub(v.(time.Time)) < every {
		return
	}
	s.quiet.Store(topic, now)
	s.log.Warn(msg, args...)
}

func (s *Service) connect(ctx context.Context) (*autopaho.ConnectionManager, error) {
	u := &url.URL{Scheme: "tls", Host: s.cfg.MQTT.Broker}
	recvMax := uint16(s.cfg.MQTT.ReceiveMaximum)
	sub := s.Subscription()
	dialer := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 10 * time.Second}, Config: s.tls}
	cfg := autopaho.ClientConfig{
		ServerUrls: []*url.URL{u},
		// Dial directly: autopaho would otherwise honour all_proxy from
		// the environment.
		AttemptConnection: func(ctx context.Context, _ autopaho.ClientConfig, u *url.URL) (net.Conn, error) {
			c, err := dialer.DialContext(ctx, "tcp", u.Host)
			if err != nil {
				return nil, err
			}
			return packets.NewThreadSafeConn(c), nil
		},
		KeepAlive: uint16(time.Duration(s.cfg.MQTT.KeepAlive) / time.Second),
		// Never a clean start: the broker's session holds the readings
		// that arrived while ingest was away.
		CleanStartOnInitialConnection: false,
		SessionExpiryInterval:         uint32(time.Duration(s.cfg.MQTT.SessionExpiry) / time.Second),
		ReconnectBackoff:              autopaho.NewExponentialBackoff(100*time.Millisecond, 5*time.Second, 500*time.Millisecond, 2),
		ConnectTimeout:                10 * time.Second,
		ConnectPacketBuilder: func(cp *paho.Connect, _ *url.URL) (*paho.Connect, error) {
			if cp.Properties == nil {
				cp.Properties = &paho.ConnectProperties{}
			}
			cp.Properties.ReceiveMaximum = &recvMax
			return cp, nil
		},
		OnConnectionUp: func(cm *autopaho.ConnectionManager, ca *paho.Connack) {
			s.m.connected.Store(true)
			s.m.connects.Add(1)
			s.log.Info("connected to the broker", "session_present", ca.SessionPresent)
			// Subscribing again is harmless when the session kept the
			// subscription, and needed when it did not. OnConnectionUp
			// must not block.
			go func() {
				sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				defer cancel()
				sa, err := cm.Subscribe(sctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: sub, QoS: 1}}})
				switch {
				case err != nil:
					s.log.Error("subscribing failed; will retry on reconnect", "topic", sub, "err", err)
				case len(sa.Reasons) == 1 && sa.Reasons[0] >= 0x80:
					s.log.Error("the broker refused the subscription: check its ACL lets user \"ingest\" read sensors/#", "topic", sub, "reason_code", sa.Reasons[0])
				}
			}()
		},
		OnConnectionDown: func() bool {
			s.m.connected.Store(false)
			s.log.Warn("lost the broker connection; reconnecting (unacknowledged readings will be sent again)")
			return true
		},
		OnConnectError: func(err error) {
			s.warn("connect", 30*time.Second, "cannot connect to the broker; retrying", "broker", s.cfg.MQTT.Broker, "err", err)
		},
		ClientConfig: paho.ClientConfig{
			ClientID:                   s.cfg.MQTT.ClientID,
			EnableManualAcknowledgment: true,
			SendAcksInterval:           ackInterval,
			OnPublishReceived:          []func(paho.PublishReceived) (bool, error){s.receive},
			OnClientError: func(err error) {
				s.warn("client", 30*time.Second, "MQTT client error", "err", err)
			},
			OnServerDisconnect: func(d *paho.Disconnect) {
				s.log.Warn("the broker disconnected ingest", "reason_code", d.ReasonCode)
			},
		},
	}
	cm, err := autopaho.NewConnection(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("MQTT: %w", err)
	}
	return cm, nil
}

// receive is paho's callback. It only queues: blocking here would stall
// paho's reader, keep-alives would go unanswered and the broker would
// drop the connection, which is how Telegraf loses its session.
func (s *Service) receive(pr paho.PublishReceived) (bool, error) {
	if s.stopping.Load() {
		return true, nil
	}
	m := message{pub: pr.Packet, client: pr.Client, recv: time.Now()}
	if pr.Packet.QoS == 0 {
		// QoS 0 needs no acknowledgement and is not counted against
		// the receive maximum; never let it block.
		select {
		case s.inbound <- m:
		default:
			s.m.received.Add(1)
			s.m.reject(wire.Overflow)
		}
		return true, nil
	}
	s.inbound <- m
	return true, nil
}

// pipeline checks, spools and acknowledges messages, in the order they
// arrived. It returns when ctx ends, or when drain is closed and the
// queue is empty; or with an error when the spool's disk fails.
func (s *Service) pipeline(ctx context.Context, drain <-chan struct{}) error {
	const most = 4096
	batch := make([]message, 0, most)
	recs := make([]spool.Record, 0, most)
	var enc lineprotocol.Encoder
	enc.SetPrecision(lineprotocol.Nanosecond)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	draining := false
	for {
		s.pipeBeat.Store(time.Now().UnixNano())
		batch = batch[:0]
		if !draining {
			select {
			case m := <-s.inbound:
				batch = append(batch, m)
			case <-drain:
				draining = true
			case <-ctx.Done():
				return nil
			case <-tick.C:
				continue
			}
		}
	more:
		for len(batch) < most {
			select {
			case m := <-s.inbound:
				batch = append(batch, m)
			default:
				break more
			}
		}
		if len(batch) == 0 {
			return nil // draining, and nothing is left
		}

		// Encode every good reading into one buffer, then slice it.
		enc.Reset()
		recs = recs[:0]
		type span struct{ start, end int }
		spans := make([]span, 0, len(batch))
		for _, m := range batch {
			s.m.received.Add(1)
			r, ok := s.check(m)
			if !ok {
				continue
			}
			start := len(enc.Bytes())
			s.encode(&enc, r)
			if err := enc.Err(); err != nil {
				// Every name and value was checked: this is a bug.
				enc.ClearErr()
				s.m.reject(wire.OutOfRange)
				s.warn("encode", time.Minute, "could not encode a reading", "node", r.Node, "err", err)
				continue
			}
			recs = append(recs, spool.Record{Key: spool.Key{Node: r.Node, Boot: r.Boot, Seq: r.Seq}})
			spans = append(spans, span{start, len(enc.Bytes())})
		}
		buf := enc.Bytes()
		for i := range recs {
			recs[i].Data = buf[spans[i].start:spans[i].end]
		}
		dup, err := s.sp.Append(ctx, recs)
		if errors.Is(err, spool.ErrFull) {
			return nil // stopping while full: these were not acknowledged
		}
		if err != nil {
			return err
		}
		for _, d := range dup {
			if d {
				s.m.duplicates.Add(1)
			} else {
				s.m.spooled.Add(1)
			}
		}
		for _, m := range batch {
			if m.pub.QoS > 0 {
				// An error means the connection that brought the
				// message is gone; the broker sends it again.
				m.client.Ack(m.pub)
			}
		}
	}
}

// check decodes a message, counting and logging a refusal.
func (s *Service) check(m message) (wire.Reading, bool) {
	node := wire.NodeFromTopic(m.pub.Topic)
	var werr *wire.Error
	var r wire.Reading
	if node == "" {
		werr = &wire.Error{Reason: wire.BadTopic, Detail: fmt.Sprintf("topic %q is not %sNODE%s", m.pub.Topic, wire.TopicPrefix, wire.TopicSuffix)}
	} else if info, ok := s.nodes[node]; !ok {
		werr = &wire.Error{Reason: wire.UnknownNode, Detail: fmt.Sprintf("%q is not a node of this site", node)}
	} else {
		r, werr = wire.Decode(node, info.sensor, m.pub.Payload, m.recv)
	}
	if werr != nil {
		s.m.reject(werr.Reason)
		s.warn("reject-"+string(werr.Reason), 10*time.Second, "refused a reading (this kind is logged at most every 10 s)", "topic", m.pub.Topic, "reason", werr.Reason, "detail", werr.Detail)
		return r, false
	}
	s.m.seen(node, m.recv, r.Firmware)
	if r.ClockFallback {
		s.m.clockFallback.Add(1)
		s.warn("clock-"+node, 10*time.Minute, "a node's clock is off; its readings get the receive time", "node", node)
	}
	return r, true
}

// encode appends a reading's line. Field names are fixed; tags come
// from the config (checked there), never from the payload.
func (s *Service) encode(enc *lineprotocol.Encoder, r wire.Reading) {
	enc.StartLine(Measurement)
	for _, t := range s.nodes[r.Node].tags {
		enc.AddTag(t[0], t[1])
	}
	enc.AddField("boot", lineprotocol.IntValue(int64(r.Boot)))
	if r.Firmware != "" {
		v, _ := lineprotocol.StringValue(r.Firmware)
		enc.AddField("firmware_version", v)
	}
	hum, _ := lineprotocol.FloatValue(r.Humidity)
	enc.AddField("humidity", hum)
	if r.HasRSSI {
		enc.AddField("rssi", lineprotocol.IntValue(int64(r.RSSI)))
	}
	enc.AddField("seq", lineprotocol.IntValue(int64(r.Seq)))
	temp, _ := lineprotocol.FloatValue(r.Temperature)
	enc.AddField("temperature", temp)
	enc.EndLine(r.Time)
}

// writeLoop moves readings from the spool to InfluxDB in order. After
// flush is closed it writes what is left without waiting, and returns
// once the spool is empty.
func (s *Service) writeLoop(ctx context.Context, flush <-chan struct{}) error {
	size := s.cfg.BatchSize
	wait := time.Duration(s.cfg.FlushInterval)
	var (
		lines   [][]byte
		buf     []byte
		offs    []int
		pos     uint64
		first   time.Time
		timer   = time.NewTimer(time.Hour)
		beat    = time.NewTicker(time.Second)
		closing bool
	)
	defer beat.Stop()
	for {
		s.writeBeat.Store(time.Now().UnixNano())
		recs, next, err := s.sp.Read(size-len(offs), 8<<20)
		if err != nil {
			return err
		}
		if len(recs) > 0 {
			if len(offs) == 0 {
				first = time.Now()
			}
			for _, r := range recs {
				offs = append(offs, len(buf))
				buf = append(buf, r.Data...)
			}
			pos = next
		}
		due := len(offs) >= size || (len(offs) > 0 && (closing || time.Since(first) >= wait))
		if due {
			lines = lines[:0]
			for i, o := range offs {
				end := len(buf)
				if i+1 < len(offs) {
					end = offs[i+1]
				}
				lines = append(lines, buf[o:end])
			}
			if err := s.deliver(ctx, lines); err != nil {
				return nil // ctx ended: the spool keeps the batch
			}
			if err := s.sp.Commit(pos, len(lines)); err != nil {
				return err
			}
			offs, buf = offs[:0], buf[:0]
			if cap(buf) > 16<<20 {
				buf = nil
			}
			continue
		}
		if len(recs) > 0 {
			continue // read on: more may be waiting
		}
		if closing && len(offs) == 0 {
			return nil
		}
		if len(offs) > 0 {
			timer.Reset(time.Until(first.Add(wait)))
		}
		select {
		case <-s.sp.Data():
		case <-timer.C:
		case <-beat.C:
		case <-flush:
			closing = true
			flush = nil
		case <-ctx.Done():
			return nil
		}
	}
}

// deliver writes lines, retrying until InfluxDB takes them or says they
// are bad. Only ctx ending makes it give up (and return its error).
func (s *Service) deliver(ctx context.Context, lines [][]byte) error {
	for attempt := 0; ; attempt++ {
		r := s.db.Write(ctx, lines)
		switch r.Kind {
		case influx.OK:
			s.m.writes.Add(1)
			s.m.written.Add(int64(len(lines)))
			if !s.m.influxUp.Swap(true) {
				s.log.Info("InfluxDB takes writes again; replaying the spool", "pending", s.sp.Stats().Pending)
			}
			s.observeAges(lines)
			return nil
		case influx.TooLarge, influx.Rejected:
			kind := "too_large"
			if r.Kind == influx.Rejected {
				kind = "rejected"
			}
			s.m.writeFailed(kind)
			if len(lines) > 1 {
				// Halve until the bad point is alone; InfluxDB takes
				// the good ones again without harm.
				s.m.splits.Add(1)
				h := len(lines) / 2
				if err := s.deliver(ctx, lines[:h]); err != nil {
					return err
				}
				return s.deliver(ctx, lines[h:])
			}
			s.m.dropped.Add(1)
			s.warn("dropped", 10*time.Second, "InfluxDB refused a point; dropped it (logged at most every 10 s)", "point", string(lines[0]), "err", r.Err)
			return nil
		}
		s.m.writeFailed("retry")
		if s.m.influxUp.Swap(false) {
			s.log.Warn("InfluxDB is not taking writes; readings wait in the spool", "err", r.Err)
		}
		s.m.influxErr.Store(r.Err.Error())
		s.warn("influx-retry", time.Minute, "still retrying InfluxDB", "err", r.Err, "pending", s.sp.Stats().Pending)
		d := backoff(attempt)
		if r.RetryAfter > d {
			d = min(r.RetryAfter, 5*time.Minute)
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		s.writeBeat.Store(time.Now().UnixNano())
	}
}

// backoff is capped exponential with jitter: InfluxDB on the same
// gateway comes back within seconds of a restart, so the cap is short.
func backoff(attempt int) time.Duration {
	d := 100 * time.Millisecond << min(attempt, 6)
	d = min(d, 5*time.Second)
	return d/2 + rand.N(d/2+1)
}

// observeAges records how old each reading is now that it is written.
func (s *Service) observeAges(lines [][]byte) {
	now := time.Now().UnixNano()
	ages := make([]float64, 0, len(lines))
	for _, l := range lines {
		l = l[:len(l)-1] // newline
		i := len(l) - 1
		for i >= 0 && l[i] != ' ' {
			i--
		}
		ts, err := strconv.ParseInt(string(l[i+1:]), 10, 64)
		if err == nil {
			ages = append(ages, float64(now-ts)/1e9)
		}
	}
	s.m.age.observe(ages)
}
