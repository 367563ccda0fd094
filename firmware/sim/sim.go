// Package sim behaves like a site's sensor nodes, from a build's output
// folder and nothing else: each node is read from its own bundle in
// OUT/nodes/NODE — its identity and settings from littlefs.bin, the very
// image that is flashed (docs/node.md), and the app it runs from app.bin —
// so what the sim proves is what a flashed node would do.
//
// Run connects every node to the broker as the firmware does: MQTT v5
// over TLS with the node's own certificate, the site CA as the only
// root, and config.json's mqtt.host as the name the broker's certificate
// must carry, whatever address is dialled (verification is never
// skipped). Each node takes readings at its interval (or a given rate)
// and publishes them in the docs/wire.md format at QoS 1: boot is a
// counter kept per node (Boots), seq counts 0, 1, 2, … within the boot.
// A reading stays in the node's bounded queue, in order, until the broker
// acknowledges it; after a lost connection the node reconnects with
// jittered exponential backoff and sends the unacknowledged readings
// again, with their boot and seq, which ingest writes once. Refusals by
// the gateway — a TLS handshake it refused (a revoked certificate), a
// CONNACK or PUBACK with an error code — are counted with their reason.
//
// CheckOTA does a node's OTA check (docs/ota.md) against the gateway's
// Nginx with the node's client certificate and verifies what it fetched
// as the node must.
package sim

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
)

// MaxQueue bounds Options.Queue: ingest takes a seq more than 1024
// behind the newest of its boot for a duplicate (docs/wire.md), so a
// node must never hold more unacknowledged readings than that.
const MaxQueue = 1024

// Options control Run.
type Options struct {
	// Broker overrides config.json's mqtt host and port with host:port
	// (the port appliance vm forwards, say). The broker's certificate
	// must still name config.json's host.
	Broker string
	// Rate is readings per second per node; 0 takes each node's
	// interval from its config.json.
	Rate float64
	// Duration is how long the nodes take readings; 0 is until ctx ends.
	Duration time.Duration
	// Drain is how long after Duration the nodes keep sending what the
	// broker has not acknowledged yet.
	Drain time.Duration
	// Queue bounds each node's unacknowledged readings (1 … MaxQueue);
	// when it is full the oldest is dropped. 0 means 256.
	Queue int
	// Event, when set, is told when a node's connection is refused,
	// fails or is lost, once per change of reason. It is called from
	// the nodes' goroutines.
	Event func(node, what string)
	// Now is the clock for readings' t; nil means time.Now.
	Now func() time.Time
}

// Stats are what one node did, or (Result.Total) all of them.
type Stats struct {
	Node string `json:"node,omitempty"`
	Boot uint32 `json:"boot,omitempty"`
	// Readings were taken; Sent were published at least once; Resent
	// counts publishes of a reading sent before (after a lost
	// connection); Acked were acknowledged by the broker.
	Readings int `json:"readings"`
	Sent     int `json:"sent"`
	Resent   int `json:"resent"`
	Acked    int `json:"acknowledged"`
	// Refused counts the gateway's refusals: readings it refused (a
	// PUBACK error code) and connections it refused (a TLS handshake,
	// or a CONNACK error code); RefusedConnections is the latter part.
	Refused            int `json:"refused"`
	RefusedConnections int `json:"refused_connections"`
	// Errors are failed connection attempts that were no refusal (no
	// route, the broker's certificate not trusted) and lost connections.
	Errors int `json:"errors"`
	// Dropped readings fell out of a full queue; Pending were still
	// unacknowledged at the end.
	Dropped int `json:"dropped"`
	Pending int `json:"pending"`
	// Connections is how often the node connected.
	Connections int `json:"connections"`
	// Reason is the last refusal or error, "" when there was none.
	Reason string `json:"reason,omitempty"`
}

func (s *Stats) add(o Stats) {
	s.Readings += o.Readings
	s.Sent += o.Sent
	s.Resent += o.Resent
	s.Acked += o.Acked
	s.Refused += o.Refused
	s.RefusedConnections += o.RefusedConnections
	s.Errors += o.Errors
	s.Dropped += o.Dropped
	s.Pending += o.Pending
	s.Connections += o.Connections
}

// Result is what a Run did.
type Result struct {
	Nodes   []Stats `json:"nodes"`
	Total   Stats   `json:"total"`
	Seconds float64 `json:"seconds"`
}

// Run runs the nodes, each with its boot number from boots, until
// Duration (then Drain) or ctx ends, and returns what each did. Readings
// whose publish ctx interrupted count as pending: the broker may or may
// not have them.
func Run(ctx context.Context, nodes []*Node, boots map[string]uint32, o Options) (*Result, error) {
	if o.Queue == 0 {
		o.Queue = 256
	}
	if o.Queue < 1 || o.Queue > MaxQueue {
		return nil, fmt.Errorf("a queue of %d readings: give 1 … %d (ingest takes a reading more than %d behind for a duplicate)", o.Queue, MaxQueue, MaxQueue)
	}
	if o.Rate < 0 || o.Rate > 1000 {
		return nil, fmt.Errorf("a rate of %g readings per second: give 0 (each node's interval) up to 1000", o.Rate)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	runners := make([]*runner, len(nodes))
	for i, n := range nodes {
		r, err := newRunner(n, boots[n.Name], &o)
		if err != nil {
			return nil, err
		}
		runners[i] = r
	}
	start := time.Now()
	takeCtx, stopTaking := context.WithCancel(ctx)
	defer stopTaking()
	if o.Duration > 0 {
		takeCtx, stopTaking = context.WithTimeout(ctx, o.Duration)
		defer stopTaking()
	}
	// Sending goes on for Drain after taking stops, unless ctx ends.
	sendCtx, stopSending := context.WithCancel(ctx)
	defer stopSending()
	go func() {
		<-takeCtx.Done()
		t := time.NewTimer(o.Drain)
		defer t.Stop()
		select {
		case <-t.C:
		case <-sendCtx.Done():
		}
		stopSending()
	}()
	var wg sync.WaitGroup
	for _, r := range runners {
		wg.Add(2)
		go func() { defer wg.Done(); r.take(takeCtx) }()
		go func() { defer wg.Done(); r.send(sendCtx) }()
	}
	wg.Wait()
	res := &Result{Seconds: time.Since(start).Seconds()}
	for _, r := range runners {
		st := r.stats()
		res.Nodes = append(res.Nodes, st)
		res.Total.add(st)
	}
	return res, nil
}

// runner is one simulated node.
type runner struct {
	n      *Node
	o      *Options
	boot   uint32
	addr   string
	topic  string
	tls    *tls.Config
	clim   *climate
	period time.Duration

	mu         sync.Mutex
	queue      []*queued
	inflight   bool // queue[0] is being published
	taking     bool
	st         Stats
	lastReason string
	wake       chan struct{}
}

type queued struct {
	seq     uint32
	payload []byte
	sent    bool
}

func newRunner(n *Node, boot uint32, o *Options) (*runner, error) {
	cfg := n.Identity.Config
	addr := net.JoinHostPort(cfg.MQTT.Host, strconv.Itoa(cfg.MQTT.Port))
	if o.Broker != "" {
		addr = o.Broker
	}
	tcfg, err := n.TLS(cfg.MQTT.Host)
	if err != nil {
		return nil, err
	}
	period := time.Duration(cfg.IntervalMS) * time.Millisecond
	if o.Rate > 0 {
		period = time.Duration(float64(time.Second) / o.Rate)
	}
	return &runner{
		n: n, o: o, boot: boot, addr: addr, topic: cfg.MQTT.Topic, tls: tcfg,
		clim: newClimate(n.Name, cfg.Sensor.Type, boot), period: period, taking: true,
		st: Stats{Node: n.Name, Boot: boot}, wake: make(chan struct{}, 1),
	}, nil
}

// take takes a reading every period until ctx ends. Nodes start within
// their first period (a second at most), as nodes powered on together
// would, rather than all at once.
func (r *runner) take(ctx context.Context) {
	defer func() {
		r.mu.Lock()
		r.taking = false
		r.mu.Unlock()
		r.poke()
	}()
	if !sleep(ctx, rand.N(min(r.period, time.Second))+1) {
		return
	}
	tick := time.NewTicker(r.period)
	defer tick.Stop()
	fw := r.n.Version()
	for seq := uint32(0); ; seq++ {
		rd := r.clim.reading(r.boot, seq, fw, r.o.Now())
		r.push(&queued{seq: seq, payload: rd.Payload()})
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (r *runner) push(q *queued) {
	r.mu.Lock()
	r.st.Readings++
	r.queue = append(r.queue, q)
	if len(r.queue) > r.o.Queue {
		// Drop the oldest that is not on the wire.
		i := 0
		if r.inflight {
			i = 1
		}
		r.queue = append(r.queue[:i], r.queue[i+1:]...)
		r.st.Dropped++
	}
	r.mu.Unlock()
	r.poke()
}

func (r *runner) poke() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// next is the oldest unacknowledged reading, marked in flight; nil when
// there is none.
func (r *runner) next() *queued {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.queue) == 0 {
		return nil
	}
	q := r.queue[0]
	r.inflight = true
	if q.sent {
		r.st.Resent++
	} else {
		q.sent = true
		r.st.Sent++
	}
	return q
}

// finish takes q off the wire; done removes it from the queue, which
// an acknowledgement or a refusal does.
func (r *runner) finish(q *queued, done bool, f func(*Stats)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.inflight = false
	if done && len(r.queue) > 0 && r.queue[0] == q {
		r.queue = r.queue[1:]
	}
	if f != nil {
		f(&r.st)
	}
}

// over reports that taking has stopped and nothing is left to send.
func (r *runner) over() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return !r.taking && len(r.queue) == 0
}

func (r *runner) stats() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.st
	st.Pending = len(r.queue)
	return st
}

// note records a refusal or an error and tells Event when its reason
// differs from the last one.
func (r *runner) note(err error) {
	refused, conn, reason := classify(err, "broker")
	r.mu.Lock()
	switch {
	case refused:
		r.st.Refused++
		if conn {
			r.st.RefusedConnections++
		}
	default:
		r.st.Errors++
	}
	r.st.Reason = reason
	changed := reason != r.lastReason
	r.lastReason = reason
	r.mu.Unlock()
	if changed && r.o.Event != nil {
		what := "error: " + reason
		if refused {
			what = "refused: " + reason
		}
		r.o.Event(r.n.Name, what)
	}
}

// send keeps the node connected and its queue flowing until ctx ends or
// taking has stopped and every reading is acknowledged.
func (r *runner) send(ctx context.Context) {
	b := backoff{min: 500 * time.Millisecond, max: 30 * time.Second}
	for !r.over() && ctx.Err() == nil {
		c, err := r.connect(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			r.note(err)
			sleep(ctx, b.next())
			continue
		}
		r.mu.Lock()
		r.st.Connections++
		r.lastReason = ""
		r.mu.Unlock()
		b.reset()
		err = r.serve(ctx, c)
		c.close(err == nil)
		if err != nil && ctx.Err() == nil {
			r.note(fmt.Errorf("%w: %w", errLost, err))
			sleep(ctx, b.next())
		}
	}
}

var errLost = errors.New("connection lost")

// serve publishes the queue, in order and one at a time, until the
// connection fails (its error), or ctx ends or the queue is done (nil).
func (r *runner) serve(ctx context.Context, c *conn) error {
	for {
		q := r.next()
		if q == nil {
			if r.over() {
				return nil
			}
			select {
			case <-r.wake:
			case <-c.cli.Done():
				return c.error()
			case <-ctx.Done():
				return nil
			}
			continue
		}
		resp, err := c.publish(ctx, &paho.Publish{Topic: r.topic, QoS: 1, Payload: q.payload})
		switch {
		case err == nil:
			r.finish(q, true, func(s *Stats) { s.Acked++ })
		case resp != nil && resp.ReasonCode >= 0x80:
			// The broker will refuse it again: drop it, count it.
			r.finish(q, true, nil)
			r.note(&pubackError{resp.ReasonCode, resp.Properties})
		default:
			r.finish(q, false, nil)
			if ctx.Err() != nil {
				return nil
			}
			if e := c.error(); e != nil {
				return e
			}
			return err
		}
	}
}

// conn is one connection to the broker.
type conn struct {
	raw  net.Conn
	cli  *paho.Client
	mu   sync.Mutex
	fail error
}

func (c *conn) setError(err error) {
	c.mu.Lock()
	if c.fail == nil {
		c.fail = err
	}
	c.mu.Unlock()
}

func (c *conn) error() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fail == nil {
		return errors.New("the connection closed")
	}
	return c.fail
}

// publish publishes p and waits for its PUBACK, or for the connection
// to end: paho forgets the QoS 1 publishes in flight when a connection
// without a session ends, and would leave this one waiting out its
// packet timeout.
func (c *conn) publish(ctx context.Context, p *paho.Publish) (*paho.PublishResponse, error) {
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-c.cli.Done():
			cancel()
		case <-pctx.Done():
		}
	}()
	return c.cli.Publish(pctx, p)
}

// close ends the connection, with a DISCONNECT when it is still up.
func (c *conn) close(clean bool) {
	if clean {
		c.cli.Disconnect(&paho.Disconnect{ReasonCode: 0})
	}
	c.raw.Close()
}

// connect dials the broker, shakes hands over TLS and sends CONNECT:
// clean start, no session kept, since the node resends what is
// unacknowledged itself.
func (r *runner) connect(ctx context.Context) (*conn, error) {
	dctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	raw, err := (&tls.Dialer{Config: r.tls}).DialContext(dctx, "tcp", r.addr)
	if err != nil {
		return nil, err
	}
	c := &conn{raw: raw}
	c.cli = paho.NewClient(paho.ClientConfig{
		ClientID:      r.n.Identity.Config.Node,
		Conn:          packets.NewThreadSafeConn(raw),
		PacketTimeout: 30 * time.Second,
		OnClientError: c.setError,
		OnServerDisconnect: func(d *paho.Disconnect) {
			c.setError(&disconnectError{d.ReasonCode, d.Properties})
		},
	})
	// A node subscribes to nothing: a small receive maximum, which paho
	// sizes a buffer by (64 Ki entries by default, 0.5 MB a node).
	recvMax := uint16(8)
	ca, err := c.cli.Connect(dctx, &paho.Connect{ClientID: r.n.Identity.Config.Node, KeepAlive: 30, CleanStart: true,
		Properties: &paho.ConnectProperties{ReceiveMaximum: &recvMax}})
	if err != nil {
		raw.Close()
		if ca != nil && ca.ReasonCode >= 0x80 {
			return nil, &connackError{ca.ReasonCode, ca.Properties}
		}
		return nil, err
	}
	return c, nil
}

// backoff is exponential backoff with jitter: each wait is drawn from
// the upper half of a window that doubles up to max, so that nodes
// refused together do not come back together.
type backoff struct {
	min, max, cur time.Duration
}

func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.min
	} else {
		b.cur = min(2*b.cur, b.max)
	}
	return b.cur/2 + rand.N(b.cur/2+1)
}

func (b *backoff) reset() { b.cur = 0 }

// sleep waits d or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
