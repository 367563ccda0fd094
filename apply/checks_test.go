package apply

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/appliance/appliance/generation"
	"github.com/appliance/appliance/internal/testenv"
)

// testCA is a CA with a server certificate for gw.test and a client
// certificate, written as PEM files into a gateway's root.
type testCA struct {
	cert   *x509.Certificate
	key    *ecdsa.PrivateKey
	server tls.Certificate
	pool   *x509.CertPool
}

func newTestCA(t *testing.T) *testCA {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	must(t, err)
	cert, err := x509.ParseCertificate(der)
	must(t, err)
	ca := &testCA{cert: cert, key: key, pool: x509.NewCertPool()}
	ca.pool.AddCert(cert)
	certPEM, keyPEM := ca.issue(t, "gw.test", x509.ExtKeyUsageServerAuth)
	ca.server, err = tls.X509KeyPair(certPEM, keyPEM)
	must(t, err)
	return ca
}

func (ca *testCA) issue(t *testing.T, name string, usage x509.ExtKeyUsage) (certPEM, keyPEM []byte) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	must(t, err)
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	must(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
}

func (ca *testCA) caPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw})
}

// mtlsServer is a broker-like server on loopback: it requires a client
// certificate of the CA, then waits for the client to speak.
func mtlsServer(t *testing.T, ca *testCA) int {
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{ca.server},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca.pool})
	must(t, err)
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if c.(*tls.Conn).Handshake() == nil {
					io.Copy(io.Discard, c)
				}
			}()
		}
	}()
	return l.Addr().(*net.TCPAddr).Port
}

// TestChecks runs each kind of check once against real servers on
// loopback and the recording systemctl, passing and failing.
func TestChecks(t *testing.T) {
	g := newGateway(t)
	ca := newTestCA(t)
	other := newTestCA(t)
	g.write("etc/ca.pem", string(ca.caPEM()), 0o644)
	g.write("etc/other-ca.pem", string(other.caPEM()), 0o644)
	cert, key := ca.issue(t, "ingest", x509.ExtKeyUsageClientAuth)
	g.write("etc/ingest.pem", string(cert), 0o644)
	g.write("etc/ingest.key", string(key), 0o600)
	cert, key = other.issue(t, "stranger", x509.ExtKeyUsageClientAuth)
	g.write("etc/stranger.pem", string(cert), 0o644)
	g.write("etc/stranger.key", string(key), 0o600)

	mqtt := mtlsServer(t, ca)
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("/broken", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusInternalServerError) })
	mux.HandleFunc("/moved", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/healthz", http.StatusFound) })
	plain := httptest.NewServer(mux)
	t.Cleanup(plain.Close)
	https := httptest.NewUnstartedServer(mux)
	https.TLS = &tls.Config{Certificates: []tls.Certificate{ca.server}, ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: ca.pool}
	https.StartTLS()
	t.Cleanup(https.Close)
	_, httpsPort, _ := net.SplitHostPort(strings.TrimPrefix(https.URL, "https://"))
	closed := testenv.FreePort(t)

	mtls := generation.Check{Kind: "tls", Port: mqtt, ServerName: "gw.test", CAFile: "/etc/ca.pem", CertFile: "/etc/ingest.pem", KeyFile: "/etc/ingest.key"}
	with := func(c generation.Check, f func(*generation.Check)) generation.Check { f(&c); return c }
	cases := []struct {
		name  string
		check generation.Check
		fails string // "" passes
	}{
		{"unit active", generation.Check{Kind: "unit", Unit: "broker.service"}, ""},
		{"unit inactive", generation.Check{Kind: "unit", Unit: "nope.service"}, "nope.service is failed"},
		{"tcp open", generation.Check{Kind: "tcp", Port: g.port}, ""},
		{"tcp closed", generation.Check{Kind: "tcp", Port: closed}, "connection refused"},
		{"mutual TLS", mtls, ""},
		{"TLS without a client certificate", with(mtls, func(c *generation.Check) { c.CertFile, c.KeyFile = "", "" }), "certificate required"},
		{"TLS with a stranger's certificate", with(mtls, func(c *generation.Check) { c.CertFile, c.KeyFile = "/etc/stranger.pem", "/etc/stranger.key" }), "after the handshake"},
		{"TLS with another CA", with(mtls, func(c *generation.Check) { c.CAFile = "/etc/other-ca.pem" }), "certificate signed by unknown authority"},
		{"TLS as another name", with(mtls, func(c *generation.Check) { c.ServerName = "other.test" }), "other.test"},
		{"TLS on a closed port", with(mtls, func(c *generation.Check) { c.Port = closed }), "connection refused"},
		{"TLS with a CA file missing", with(mtls, func(c *generation.Check) { c.CAFile = "/etc/none.pem" }), "reading the CA"},
		{"http 200", generation.Check{Kind: "http", URL: plain.URL + "/healthz"}, ""},
		{"http 500", generation.Check{Kind: "http", URL: plain.URL + "/broken"}, "500 Internal Server Error"},
		{"http redirect is not followed", generation.Check{Kind: "http", URL: plain.URL + "/moved"}, "302 Found"},
		{"https with the CA", generation.Check{Kind: "http", URL: "https://127.0.0.1:" + httpsPort + "/healthz", ServerName: "gw.test", CAFile: "/etc/ca.pem"}, ""},
		{"https with a client certificate", generation.Check{Kind: "http", URL: "https://127.0.0.1:" + httpsPort + "/healthz", ServerName: "gw.test", CAFile: "/etc/ca.pem", CertFile: "/etc/ingest.pem", KeyFile: "/etc/ingest.key"}, ""},
		{"https with another CA", generation.Check{Kind: "http", URL: "https://127.0.0.1:" + httpsPort + "/healthz", ServerName: "gw.test", CAFile: "/etc/other-ca.pem"}, "unknown authority"},
		{"system running", generation.Check{Kind: "system"}, ""},
	}
	a := g.applier(t)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := a.check(context.Background(), c.check)
			switch {
			case c.fails == "" && err != nil:
				t.Errorf("failed: %v", err)
			case c.fails != "" && (err == nil || !strings.Contains(err.Error(), c.fails)):
				t.Errorf("error %v, want one that says %q", err, c.fails)
			}
		})
	}

	g.answer("system degraded", "failed web.service loaded failed failed Web", "failed demo.service loaded failed failed Demo")
	err := a.check(context.Background(), generation.Check{Kind: "system"})
	if err == nil || !strings.Contains(err.Error(), "degraded; failed units: web.service demo.service") {
		t.Errorf("a degraded system: %v", err)
	}
	g.answer("system starting")
	if err := a.check(context.Background(), generation.Check{Kind: "system"}); err == nil || !strings.Contains(err.Error(), "the system is starting") {
		t.Errorf("a starting system: %v", err)
	}
}

// TestChecksRetry: a check that fails at first is tried again until it
// passes, and one that keeps failing is reported once the time is up;
// a degraded system fails at once.
func TestChecksRetry(t *testing.T) {
	g := newGateway(t)
	a := g.applier(t)
	a.opt.CheckTimeout = 10 * time.Second
	port := testenv.FreePort(t)
	go func() {
		time.Sleep(1500 * time.Millisecond)
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			return
		}
		t.Cleanup(func() { l.Close() })
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	var out strings.Builder
	a.out = &out
	if failed := a.checks(context.Background(), []generation.Check{{Name: "late", Kind: "tcp", Port: port}}); len(failed) > 0 {
		t.Errorf("a service that comes up late failed its check: %s", out.String())
	}
	if !strings.Contains(out.String(), "late: ok after") {
		t.Errorf("events: %s", out.String())
	}

	g.answer("system degraded")
	g.clearCalls()
	if failed := a.checks(context.Background(), []generation.Check{{Name: "system", Kind: "system"}}); len(failed) != 1 {
		t.Errorf("a degraded system passed")
	}
	// Failed units stay failed: asked once, not again until the time
	// is up.
	b, _ := os.ReadFile(g.log)
	if n := strings.Count(string(b), "is-system-running"); n != 1 {
		t.Errorf("is-system-running asked %d times, want once", n)
	}
}

// applier is an applier on the gateway's root, for tests of its parts.
func (g *gateway) applier(t *testing.T) *applier {
	fs, err := openRoot(g.root)
	must(t, err)
	t.Cleanup(fs.close)
	return &applier{fs: fs, out: io.Discard, opt: options{Root: g.root, Systemctl: g.systemctl, CheckTimeout: time.Second, ActionTimeout: time.Minute, Now: time.Now}}
}

// TestTLSCheckMosquitto runs the mutual-TLS check against the real
// broker, configured as the site's (tls_version tlsv1.2 is a minimum,
// so the handshake is TLS 1.3, where the broker refuses a missing
// client certificate only after the handshake), and TLS 1.3 only.
func TestTLSCheckMosquitto(t *testing.T) {
	testenv.Require(t, "mosquitto")
	g := newGateway(t)
	ca := newTestCA(t)
	g.write("etc/ca.pem", string(ca.caPEM()), 0o644)
	cert, key := ca.issue(t, "ingest", x509.ExtKeyUsageClientAuth)
	g.write("etc/ingest.pem", string(cert), 0o644)
	g.write("etc/ingest.key", string(key), 0o600)
	srvCert, srvKey := ca.issue(t, "gw.test", x509.ExtKeyUsageServerAuth)
	a := g.applier(t)
	for _, version := range []string{"tlsv1.2", "tlsv1.3"} {
		t.Run(version, func(t *testing.T) {
			dir := t.TempDir()
			must(t, os.WriteFile(dir+"/ca.pem", ca.caPEM(), 0o644))
			must(t, os.WriteFile(dir+"/server.pem", srvCert, 0o644))
			must(t, os.WriteFile(dir+"/server.key", srvKey, 0o600))
			port := testenv.FreePort(t)
			conf := "user root\nlog_dest stderr\npersistence false\n" +
				"listener " + strconv.Itoa(port) + " 127.0.0.1\nallow_anonymous false\nuse_identity_as_username true\nrequire_certificate true\n" +
				"cafile " + dir + "/ca.pem\ncertfile " + dir + "/server.pem\nkeyfile " + dir + "/server.key\ntls_version " + version + "\n"
			must(t, os.WriteFile(dir+"/mosquitto.conf", []byte(conf), 0o644))
			p := testenv.Start(t, "mosquitto", "-c", dir+"/mosquitto.conf")
			p.WaitPort(t, "127.0.0.1:"+strconv.Itoa(port), 10*time.Second)
			c := generation.Check{Kind: "tls", Port: port, ServerName: "gw.test", CAFile: "/etc/ca.pem", CertFile: "/etc/ingest.pem", KeyFile: "/etc/ingest.key"}
			if err := a.check(context.Background(), c); err != nil {
				t.Errorf("the ingest certificate: %v", err)
			}
			c.CertFile, c.KeyFile = "", ""
			if err := a.check(context.Background(), c); err == nil {
				t.Errorf("no client certificate passed")
			} else {
				t.Logf("without a client certificate: %v", err)
			}
		})
	}
}
