// Package testenv starts the real programs ingest works with — Debian's
// mosquitto, influxd (InfluxDB 1.x) and victoria-metrics — on free
// loopback ports with temporary folders and certificates from package
// pki, and runs simulated sensor nodes against them. The tests and the
// benchmark share it. Servers are stopped at cleanup.
package testenv

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/appliance/appliance/modules"
	"github.com/appliance/appliance/pki"
	"github.com/appliance/appliance/spec"
)

// TB is what the helpers need of a test or benchmark; the benchmark
// program has its own.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
	Logf(format string, args ...any)
	Cleanup(func())
	TempDir() string
}

var _ TB = (testing.TB)(nil)

// Need fails unless the programs are installed. They come from Debian
// packages that scripts/deps installs; a missing one is a broken set-up,
// not a reason to skip.
func Need(t TB, progs ...string) {
	t.Helper()
	for _, p := range progs {
		if _, err := exec.LookPath(p); err != nil {
			t.Fatalf("%s is not installed; run scripts/deps (it installs the Debian packages the tests run against)", p)
		}
	}
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("finding a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// PKI is a site CA with the certificates the tests need, on disk.
type PKI struct {
	Dir    string
	CA     *pki.CA
	CAFile string
	mu     sync.Mutex
	certs  map[string][2]string
}

// NewPKI makes a CA in a new folder, with a server certificate for the
// broker (localhost, 127.0.0.1) and ingest's client certificate.
func NewPKI(t TB, site string) *PKI {
	t.Helper()
	dir := t.TempDir()
	ca, _, err := pki.NewCA(site, time.Now(), time.Now().AddDate(10, 0, 0))
	if err != nil {
		t.Fatalf("CA: %v", err)
	}
	p := &PKI{Dir: dir, CA: ca, CAFile: filepath.Join(dir, "ca.crt"), certs: map[string][2]string{}}
	if err := os.WriteFile(p.CAFile, ca.CertPEM, 0o644); err != nil {
		t.Fatalf("%v", err)
	}
	p.Issue(t, pki.Request{Name: "mosquitto", Kind: pki.Server, DNSNames: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}})
	p.Issue(t, pki.Request{Name: "ingest", Kind: pki.Client})
	return p
}

// Issue makes a certificate and returns its cert and key files.
func (p *PKI) Issue(t TB, req pki.Request) (certFile, keyFile string) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.certs[req.Name]; ok {
		return c[0], c[1]
	}
	cert, key, _, err := p.CA.Issue(req, time.Now())
	if err != nil {
		t.Fatalf("issuing %s: %v", req.Name, err)
	}
	certFile, keyFile = filepath.Join(p.Dir, req.Name+".crt"), filepath.Join(p.Dir, req.Name+".key")
	if err := os.WriteFile(certFile, cert, 0o644); err != nil {
		t.Fatalf("%v", err)
	}
	if err := os.WriteFile(keyFile, key, 0o600); err != nil {
		t.Fatalf("%v", err)
	}
	p.certs[req.Name] = [2]string{certFile, keyFile}
	return certFile, keyFile
}

// Node returns a node's certificate and key files.
func (p *PKI) Node(t TB, name string) (certFile, keyFile string) {
	return p.Issue(t, pki.Request{Name: name, Kind: pki.Node})
}

// Proc is a server process the test started.
type Proc struct {
	t    TB
	name string
	args []string
	log  string
	cmd  *exec.Cmd
	done chan struct{}
	mu   sync.Mutex
	env  []string
	last string // how the last stopped run ended
}

func newProc(t TB, name, logFile string, args ...string) *Proc {
	p := &Proc{t: t, name: name, args: args, log: logFile}
	t.Cleanup(func() { p.Stop() })
	return p
}

// Start starts the process (again).
func (p *Proc) Start() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	logf, err := os.OpenFile(p.log, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		p.t.Fatalf("%v", err)
	}
	cmd := exec.Command(p.name, p.args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), p.env...)
	// Its own process group, so that a signal to the test does not
	// reach it before the test can stop it in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		p.t.Fatalf("starting %s: %v", p.name, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(done) }()
	p.cmd, p.done = cmd, done
}

// Running reports whether the process is running.
func (p *Proc) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Pid is the process id, or 0.
func (p *Proc) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Stop sends SIGTERM and waits (SIGKILL after 20 s).
func (p *Proc) Stop() { p.signal(syscall.SIGTERM, 20*time.Second) }

// Kill sends SIGKILL and waits.
func (p *Proc) Kill() { p.signal(syscall.SIGKILL, 10*time.Second) }

func (p *Proc) signal(sig syscall.Signal, wait time.Duration) {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.cmd = nil
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(wait):
		cmd.Process.Kill()
		<-done
	}
	p.mu.Lock()
	p.last = cmd.ProcessState.String()
	p.mu.Unlock()
}

// Ended is how the last run stopped by Stop or Kill ended, e.g.
// "exit status 0".
func (p *Proc) Ended() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.last
}

// Log returns what the process wrote.
func (p *Proc) Log() string {
	b, _ := os.ReadFile(p.log)
	return string(b)
}

// Exited reports whether the process ended on its own, and its log.
func (p *Proc) Exited() (bool, string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return false, ""
	}
	select {
	case <-p.done:
		return true, p.cmd.ProcessState.String()
	default:
		return false, ""
	}
}

// WaitFor polls cond every 50 ms until it holds or the deadline passes.
func WaitFor(t TB, what string, within time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting %s for %s: %v", within, what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitTCP waits until a port accepts connections or the process exits.
func waitTCP(t TB, p *Proc, port int) {
	t.Helper()
	WaitFor(t, p.name+" to listen on "+strconv.Itoa(port), 30*time.Second, func() error {
		if !p.Running() {
			t.Fatalf("%s exited:\n%s", p.name, tail(p.Log()))
		}
		c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), time.Second)
		if err != nil {
			return err
		}
		c.Close()
		return nil
	})
}

func tail(s string) string {
	if len(s) > 4000 {
		return "…" + s[len(s)-4000:]
	}
	return s
}

// Broker is a mosquitto with mutual TLS and the site's ACL.
type Broker struct {
	*Proc
	Port int
	Dir  string
}

// MosquittoConfig is the mosquitto module's configuration and ACL for a
// site whose broker listens on port, with its paths moved into dir and
// the test's certificates: the tests run the broker the gateway runs.
func MosquittoConfig(dir string, port int, p *PKI) (conf, acl string, err error) {
	src := fmt.Sprintf("site \"ingest-test\" {}\ngateway \"gw\" {\n  board = \"qemu-arm64\"\n  hostname = \"localhost\"\n}\nmqtt {\n  port = %d\n}\n", port)
	site, rep := spec.LoadSources([]string{"site.hcl"}, [][]byte{[]byte(src)}, dir, spec.Options{Environ: []string{}})
	if rep.HasErrors() {
		return "", "", fmt.Errorf("test site: %v", rep.Diagnostics)
	}
	set, err := modules.Collect(site)
	if err != nil {
		return "", "", err
	}
	m := set.Lookup("mosquitto")
	runAs := "user mosquitto"
	if os.Geteuid() == 0 {
		// mosquitto drops root for user mosquitto, who cannot read the
		// test's temporary folders; stay who we are.
		if u, err := user.Current(); err == nil {
			runAs = "user " + u.Username
		}
	}
	certFile, keyFile := p.certs["mosquitto"][0], p.certs["mosquitto"][1]
	conf = strings.NewReplacer(
		"user mosquitto", runAs,
		"/var/lib/mosquitto/", dir+"/",
		"/etc/mosquitto/appliance.acl", dir+"/acl",
		"/etc/mosquitto/certs/ca.crt", p.CAFile,
		"/etc/mosquitto/certs/server.crt", certFile,
		"/etc/mosquitto/certs/server.key", keyFile,
		// The test's CA has no CRL; the module's tests check revocation.
		"crlfile /etc/mosquitto/certs/crl.pem\n", "",
	).Replace(string(m.File("/etc/mosquitto/mosquitto.conf").Content))
	return conf, string(m.File("/etc/mosquitto/appliance.acl").Content), nil
}

// StartMosquitto starts a broker with persistence in its own folder.
func StartMosquitto(t TB, p *PKI) *Broker {
	t.Helper()
	Need(t, "mosquitto")
	dir := t.TempDir()
	port := FreePort(t)
	conf := filepath.Join(dir, "mosquitto.conf")
	text, acl, err := MosquittoConfig(dir, port, p)
	if err != nil {
		t.Fatalf("%v", err)
	}
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		t.Fatalf("%v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "acl"), []byte(acl), 0o600); err != nil {
		t.Fatalf("%v", err)
	}
	b := &Broker{Proc: newProc(t, "mosquitto", filepath.Join(dir, "mosquitto.log"), "-c", conf), Port: port, Dir: dir}
	b.Start()
	return b
}

// Start starts the broker and waits until it listens.
func (b *Broker) Start() {
	b.t.Helper()
	b.Proc.Start()
	waitTCP(b.t, b.Proc, b.Port)
}

// Addr is host:port of the broker.
func (b *Broker) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(b.Port)) }

// Influx is an influxd (1.x API).
type Influx struct {
	*Proc
	Port int
	Dir  string
	// Admin is the admin's user and password when auth is on.
	Admin, AdminPassword string
}

// StartInfluxd starts InfluxDB 1.x with the database db. With auth, it
// creates an admin and user "ingest" (password returned) that may write
// to db.
func StartInfluxd(t TB, db string, auth bool) (*Influx, string) {
	t.Helper()
	return StartInfluxdWith(t, db, auth, 25_000_000, "")
}

// StartInfluxdWith is StartInfluxd with a request size limit (InfluxDB
// answers 413 above it) and a retention for db ("" for none; points
// older than it are refused with 400).
func StartInfluxdWith(t TB, db string, auth bool, maxBody int, retention string) (*Influx, string) {
	t.Helper()
	Need(t, "influxd")
	dir := t.TempDir()
	port, rpc := FreePort(t), FreePort(t)
	conf := fmt.Sprintf(`reporting-disabled = true
bind-address = "127.0.0.1:%d"
[meta]
  dir = "%s/meta"
[data]
  dir = "%s/data"
  wal-dir = "%s/wal"
  query-log-enabled = false
  wal-fsync-delay = "0s"
[http]
  enabled = true
  bind-address = "127.0.0.1:%d"
  auth-enabled = %v
  log-enabled = false
  max-row-limit = 0
  max-body-size = %d
[monitor]
  store-enabled = false
[subscriber]
  enabled = false
[continuous_queries]
  enabled = false
[logging]
  level = "warn"
`, rpc, dir, dir, dir, port, auth, maxBody)
	path := filepath.Join(dir, "influxdb.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatalf("%v", err)
	}
	in := &Influx{Proc: newProc(t, "influxd", filepath.Join(dir, "influxd.log"), "-config", path), Port: port, Dir: dir}
	in.Start()
	password := ""
	if auth {
		in.Admin, in.AdminPassword = "admin", "admin-secret-"+strconv.Itoa(port)
		password = "ingest-secret-" + strconv.Itoa(port)
		in.Query(t, fmt.Sprintf("CREATE USER %s WITH PASSWORD '%s' WITH ALL PRIVILEGES", in.Admin, in.AdminPassword))
		in.Query(t, fmt.Sprintf("CREATE USER ingest WITH PASSWORD '%s'", password))
	}
	if retention != "" {
		in.Query(t, "CREATE DATABASE "+db+" WITH DURATION "+retention)
	} else {
		in.Query(t, "CREATE DATABASE "+db)
	}
	if auth {
		in.Query(t, "GRANT WRITE ON "+db+" TO ingest")
	}
	return in, password
}

// Start starts influxd and waits for /ping.
func (in *Influx) Start() {
	in.t.Helper()
	in.Proc.Start()
	WaitFor(in.t, "influxd to answer /ping", 60*time.Second, func() error {
		if !in.Running() {
			in.t.Fatalf("influxd exited:\n%s", tail(in.Log()))
		}
		resp, err := http.Get(in.URL() + "/ping")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			return fmt.Errorf("/ping: %s", resp.Status)
		}
		return nil
	})
}

// URL is the HTTP API's base URL.
func (in *Influx) URL() string { return "http://127.0.0.1:" + strconv.Itoa(in.Port) }

// Query runs an InfluxQL statement as the admin and returns the body.
func (in *Influx) Query(t TB, q string) []byte {
	t.Helper()
	b, err := in.TryQuery(q, "")
	if err != nil {
		t.Fatalf("InfluxQL %q: %v", q, err)
	}
	return b
}

// TryQuery runs an InfluxQL statement in db ("" for none).
func (in *Influx) TryQuery(q, db string) ([]byte, error) {
	form := fmt.Sprintf("q=%s&epoch=ns", urlEscape(q))
	if db != "" {
		form += "&db=" + urlEscape(db)
	}
	req, _ := http.NewRequest(http.MethodPost, in.URL()+"/query", bytes.NewBufferString(form))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if in.Admin != "" {
		req.SetBasicAuth(in.Admin, in.AdminPassword)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	buf.ReadFrom(resp.Body)
	if resp.StatusCode != http.StatusOK || bytes.Contains(buf.Bytes(), []byte(`"error"`)) {
		return nil, fmt.Errorf("%s: %s", resp.Status, buf.String())
	}
	return buf.Bytes(), nil
}

func urlEscape(s string) string {
	var b bytes.Buffer
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// VM is a victoria-metrics, which takes InfluxDB's v2 write API.
type VM struct {
	*Proc
	Port int
}

// StartVictoriaMetrics starts victoria-metrics. Deduplication is on at
// the smallest interval, so that a point written twice with the same
// timestamp counts once, as in InfluxDB.
func StartVictoriaMetrics(t TB) *VM {
	t.Helper()
	Need(t, "victoria-metrics")
	dir := t.TempDir()
	port := FreePort(t)
	vm := &VM{Proc: newProc(t, "victoria-metrics", filepath.Join(dir, "vm.log"),
		"-storageDataPath="+filepath.Join(dir, "data"),
		"-httpListenAddr=127.0.0.1:"+strconv.Itoa(port),
		"-dedup.minScrapeInterval=1ms",
		"-search.latencyOffset=0s",
		"-loggerLevel=ERROR",
		"-retentionPeriod=100y",
	), Port: port}
	vm.Proc.Start()
	WaitFor(t, "victoria-metrics to answer /health", 60*time.Second, func() error {
		if !vm.Running() {
			t.Fatalf("victoria-metrics exited:\n%s", tail(vm.Log()))
		}
		resp, err := http.Get(vm.URL() + "/health")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return errors.New(resp.Status)
		}
		return nil
	})
	return vm
}

// URL is the base URL.
func (vm *VM) URL() string { return "http://127.0.0.1:" + strconv.Itoa(vm.Port) }
