package testenv

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
)

// Key identifies a reading.
type Key struct {
	Node string
	Boot uint32
	Seq  uint32
}

// Values are the temperature and humidity a simulated node reports for
// a sequence number: varied, in range for a DHT22 and a DHT11, and
// exactly representable with one decimal.
func Values(node string, seq uint32) (temp, hum float64) {
	h := uint32(len(node)) * 7
	for _, c := range node {
		h = h*31 + uint32(c)
	}
	temp = float64((seq*13+h)%400)/10 + 5  // 5.0 … 44.9
	hum = float64((seq*7+h*3)%700)/10 + 25 // 25.0 … 94.9
	return temp, hum
}

// Payload is a simulated node's JSON for a reading.
func Payload(node string, boot, seq uint32, deviceTime time.Time) []byte {
	temp, hum := Values(node, seq)
	m := map[string]any{"boot": boot, "seq": seq, "temperature": temp, "humidity": hum, "rssi": -40 - int(seq%50), "fw": "1.4.0"}
	if !deviceTime.IsZero() {
		m["t"] = deviceTime.UnixMilli()
	}
	b, _ := json.Marshal(m)
	return b
}

// Node is a simulated sensor node: an MQTT v5 client over mutual TLS.
type Node struct {
	Name string
	Boot uint32
	// DeviceTime makes the node send its clock ("t").
	DeviceTime bool
	cm         *autopaho.ConnectionManager
	cancel     context.CancelFunc
	up         atomic.Bool
}

// ConnectNode connects a node with the certificate issued to certName
// (normally its own name) and waits until it is connected.
func ConnectNode(t TB, b *Broker, p *PKI, name, certName string) *Node {
	t.Helper()
	n, err := DialNode(b.Addr(), p.CAFile, certFiles(t, p, certName), name)
	if err != nil {
		t.Fatalf("node %s: %v", name, err)
	}
	t.Cleanup(n.Close)
	return n
}

func certFiles(t TB, p *PKI, name string) [2]string {
	c, k := p.Node(t, name)
	return [2]string{c, k}
}

// DialNode connects a node; it keeps reconnecting in the background.
func DialNode(addr, caFile string, certKey [2]string, name string) (*Node, error) {
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	cert, err := tls.LoadX509KeyPair(certKey[0], certKey[1])
	if err != nil {
		return nil, err
	}
	tcfg := &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, ServerName: "localhost", MinVersion: tls.VersionTLS12}
	ctx, cancel := context.WithCancel(context.Background())
	n := &Node{Name: name, Boot: 1, cancel: cancel}
	u := &url.URL{Scheme: "tls", Host: addr}
	refused := make(chan error, 1)
	cfg := autopaho.ClientConfig{
		ServerUrls: []*url.URL{u},
		AttemptConnection: func(ctx context.Context, _ autopaho.ClientConfig, u *url.URL) (net.Conn, error) {
			c, err := (&tls.Dialer{Config: tcfg}).DialContext(ctx, "tcp", u.Host)
			if err != nil {
				return nil, err
			}
			return packets.NewThreadSafeConn(c), nil
		},
		KeepAlive:                     20,
		CleanStartOnInitialConnection: true,
		ReconnectBackoff:              autopaho.NewConstantBackoff(100 * time.Millisecond),
		ConnectTimeout:                5 * time.Second,
		OnConnectionUp:                func(*autopaho.ConnectionManager, *paho.Connack) { n.up.Store(true) },
		OnConnectionDown:              func() bool { n.up.Store(false); return true },
		OnConnectError: func(err error) {
			select {
			case refused <- err:
			default:
			}
		},
		ClientConfig: paho.ClientConfig{ClientID: name},
	}
	cm, err := autopaho.NewConnection(ctx, cfg)
	if err != nil {
		cancel()
		return nil, err
	}
	n.cm = cm
	// Connected, or refused: a refusal (a certificate from another CA)
	// shows as a connect error long before a time-out.
	actx, acancel := context.WithTimeout(ctx, 15*time.Second)
	defer acancel()
	up := make(chan error, 1)
	go func() { up <- cm.AwaitConnection(actx) }()
	select {
	case err := <-up:
		if err == nil {
			return n, nil
		}
		cancel()
		return nil, fmt.Errorf("not connected: %w", err)
	case err := <-refused:
		cancel()
		return nil, fmt.Errorf("not connected: %w", err)
	}
}

// Close disconnects.
func (n *Node) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	n.cm.Disconnect(ctx)
	n.cancel()
}

// PublishOnce sends one message at QoS 1 without retrying, waiting at
// most timeout for the PUBACK.
func (n *Node) PublishOnce(ctx context.Context, topic string, payload []byte, timeout time.Duration) (byte, error) {
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	resp, err := n.cm.Publish(pctx, &paho.Publish{Topic: topic, QoS: 1, Payload: payload})
	if resp != nil {
		return resp.ReasonCode, nil
	}
	return 0, err
}

// Publish sends one message at QoS 1 and returns the PUBACK's reason
// code. Like a node's firmware, it sends again after a lost connection
// until the broker answers: that is how duplicates arise.
func (n *Node) Publish(ctx context.Context, topic string, payload []byte) (byte, error) {
	for {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		resp, err := n.cm.Publish(pctx, &paho.Publish{Topic: topic, QoS: 1, Payload: payload})
		cancel()
		if err == nil {
			return resp.ReasonCode, nil
		}
		if resp != nil && resp.ReasonCode >= 0x80 {
			return resp.ReasonCode, nil
		}
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		actx, acancel := context.WithTimeout(ctx, 60*time.Second)
		werr := n.cm.AwaitConnection(actx)
		acancel()
		if werr != nil {
			return 0, fmt.Errorf("node %s: broker gone: %v (publish: %w)", n.Name, werr, err)
		}
	}
}

// Reading is what a node published.
type Reading struct {
	Temperature, Humidity float64
	Time                  time.Time // device time, zero if not sent
}

// Stream is readings being published by several nodes at a steady rate.
type Stream struct {
	mu        sync.Mutex
	published map[Key]Reading
	refused   int
	errs      []error
	stop      chan struct{}
	wg        sync.WaitGroup
	count     atomic.Int64
}

// StartStream makes each node publish perNode readings per second, until
// Stop.
func StartStream(nodes []*Node, perNode float64) *Stream {
	s := &Stream{published: map[Key]Reading{}, stop: make(chan struct{})}
	for _, n := range nodes {
		s.wg.Add(1)
		go s.run(n, perNode)
	}
	return s
}

func (s *Stream) run(n *Node, rate float64) {
	defer s.wg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { <-s.stop; cancel() }()
	interval := time.Duration(float64(time.Second) / rate)
	next := time.Now()
	topic := "sensors/" + n.Name + "/reading"
	var lastDT time.Time
	for seq := uint32(0); ; seq++ {
		if d := time.Until(next); d > 0 {
			select {
			case <-time.After(d):
			case <-s.stop:
				return
			}
		}
		select {
		case <-s.stop:
			return
		default:
		}
		// Fall behind rather than burst after a stall.
		next = next.Add(interval)
		if floor := time.Now().Add(-10 * interval); next.Before(floor) {
			next = floor
		}
		var dt time.Time
		if n.DeviceTime {
			// A real node reads at most once a second; this one is
			// faster, but never twice in one millisecond, the
			// resolution of its clock field (and victoria-metrics').
			dt = time.Now().Truncate(time.Millisecond)
			if !dt.After(lastDT) {
				dt = lastDT.Add(time.Millisecond)
			}
			lastDT = dt
		}
		temp, hum := Values(n.Name, seq)
		rc, err := n.Publish(ctx, topic, Payload(n.Name, n.Boot, seq, dt))
		if errors.Is(err, context.Canceled) {
			// Not known to be delivered: it may or may not arrive. Say
			// it was published only if the broker said so; a reading
			// in doubt is recorded as such.
			s.mu.Lock()
			s.published[Key{n.Name, n.Boot, seq}] = Reading{Temperature: math.NaN()}
			s.mu.Unlock()
			return
		}
		s.mu.Lock()
		switch {
		case err != nil:
			s.errs = append(s.errs, err)
		case rc >= 0x80:
			s.refused++
		default:
			s.published[Key{n.Name, n.Boot, seq}] = Reading{Temperature: temp, Humidity: hum, Time: dt}
			s.count.Add(1)
		}
		s.mu.Unlock()
	}
}

// Count is how many readings the broker has acknowledged so far.
func (s *Stream) Count() int64 { return s.count.Load() }

// Stop stops publishing and returns what the broker acknowledged, with
// readings in doubt (publish interrupted by Stop) marked by a NaN
// temperature.
func (s *Stream) Stop() (map[Key]Reading, error) {
	close(s.stop)
	s.wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	var err error
	if len(s.errs) > 0 {
		err = fmt.Errorf("%d publishes failed, first: %w", len(s.errs), s.errs[0])
	}
	if s.refused > 0 {
		err = errors.Join(err, fmt.Errorf("the broker refused %d publishes", s.refused))
	}
	return s.published, err
}
