package testenv

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/appliance/appliance/modules"
	"github.com/appliance/appliance/pki"
	"github.com/appliance/appliance/spec"
)

// StartMosquittoWithCRL starts the site's broker as StartMosquitto does,
// but checking client certificates against crl too, and, with debug,
// logging at Mosquitto's debug level, where it reports ACL denials.
func StartMosquittoWithCRL(t TB, p *PKI, crl []byte, debug bool) *Broker {
	t.Helper()
	Need(t, "mosquitto")
	dir := t.TempDir()
	port := FreePort(t)
	text, acl, err := MosquittoConfig(dir, port, p)
	if err != nil {
		t.Fatalf("%v", err)
	}
	crlFile := filepath.Join(dir, "crl.pem")
	os.WriteFile(crlFile, crl, 0o644)
	text = strings.Replace(text, "require_certificate true", "crlfile "+crlFile+"\nrequire_certificate true", 1)
	if debug {
		text = strings.Replace(text, "log_type error", "log_type all\nlog_type error", 1)
	}
	conf := filepath.Join(dir, "mosquitto.conf")
	os.WriteFile(conf, []byte(text), 0o600)
	os.WriteFile(filepath.Join(dir, "acl"), []byte(acl), 0o600)
	b := &Broker{Proc: newProc(t, "mosquitto", filepath.Join(dir, "mosquitto.log"), "-c", conf), Port: port, Dir: dir}
	b.Start()
	return b
}

// LogFile is where the process's output goes.
func (p *Proc) LogFile() string { return p.log }

// Nginx is Debian's nginx running the nginx module's configuration.
type Nginx struct {
	*Proc
	Port int
	Dir  string
	// OTADir is the OTA tree it serves at /ota/.
	OTADir string
}

// StartNginx runs nginx with the nginx module's configuration for a site
// with the given nodes (group "bench", interval 2 s), its paths moved
// under a temporary folder, the PKI's CA, crl and a server certificate
// for localhost, and its syslog access logs sent to the datagram socket
// syslogSock instead of the journal's /dev/log.
func StartNginx(t TB, p *PKI, crl []byte, nodes int, syslogSock string) *Nginx {
	t.Helper()
	Need(t, "nginx")
	dir := t.TempDir()
	port := FreePort(t)
	src := fmt.Sprintf(`site "health-test" {}
gateway "gw" {
  board    = "qemu-arm64"
  hostname = "localhost"
}
https {
  port          = %d
  redirect_port = 0
}
firmware "sensor" {
  chip    = "esp32s3"
  version = "1.0.0"
}
node "bench" {
  count    = %d
  firmware = firmware.sensor
  sensor   = { type = "dht22", pin = 4 }
  interval = "2s"
  wifi     = { ssid = "test", psk = "test-passphrase" }
}
`, port, nodes)
	site, rep := spec.LoadSources([]string{"site.hcl"}, [][]byte{[]byte(src)}, dir, spec.Options{Environ: []string{}})
	if rep.HasErrors() {
		t.Fatalf("test site: %v", rep.Diagnostics)
	}
	set, err := modules.Collect(site)
	if err != nil {
		t.Fatalf("%v", err)
	}
	m := set.Lookup("nginx")
	cert, key := p.Issue(t, pki.Request{Name: "nginx", Kind: pki.Server, DNSNames: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}})
	n := &Nginx{Port: port, Dir: dir, OTADir: filepath.Join(dir, "ota")}
	os.MkdirAll(n.OTADir, 0o755)
	etc := filepath.Join(dir, "etc")
	os.MkdirAll(etc, 0o755)
	for _, name := range []string{"headers.conf", "nodes.map"} {
		os.WriteFile(filepath.Join(etc, name), m.File("/etc/nginx/appliance/"+name).Content, 0o644)
	}
	os.WriteFile(filepath.Join(etc, "crl.pem"), crl, 0o644)
	conf := strings.NewReplacer(
		"/etc/nginx/appliance/ca.crt", p.CAFile,
		"/etc/nginx/appliance/server.crt", cert,
		"/etc/nginx/appliance/server.key", key,
		"/etc/nginx/appliance/", etc+"/",
		"/var/lib/appliance/ota/", n.OTADir+"/",
		"/run/nginx/nginx.pid", filepath.Join(dir, "nginx.pid"),
		"syslog:server=unix:/dev/log", "syslog:server=unix:"+syslogSock,
		"worker_processes auto;", "worker_processes 1;\nuser root;",
		"listen [::]:", "# listen [::]:",
	).Replace(string(m.File("/etc/nginx/nginx.conf").Content))
	confFile := filepath.Join(dir, "nginx.conf")
	os.WriteFile(confFile, []byte(conf), 0o644)
	if out, err := execOutput("nginx", "-t", "-e", "stderr", "-c", confFile); err != nil {
		t.Fatalf("nginx -t refuses the generated config: %v\n%s", err, out)
	}
	n.Proc = newProc(t, "nginx", filepath.Join(dir, "nginx.log"), "-e", "stderr", "-c", confFile, "-g", "daemon off;")
	n.Proc.Start()
	waitTCP(t, n.Proc, port)
	return n
}

// Journal is a file of journal entries as `journalctl -o json` prints
// them, fed with what the test's programs log: lines of a log file (as
// journald takes a unit's stderr) and syslog datagrams (as journald takes
// /dev/log).
type Journal struct {
	Path string
	mu   sync.Mutex
	f    *os.File
	n    int
}

// NewJournal makes an empty journal file.
func NewJournal(t TB) *Journal {
	t.Helper()
	j := &Journal{Path: filepath.Join(t.TempDir(), "journal.json")}
	f, err := os.Create(j.Path)
	if err != nil {
		t.Fatalf("%v", err)
	}
	j.f = f
	t.Cleanup(func() { f.Close() })
	return j
}

// Add appends an entry with the given fields, a cursor and the time.
func (j *Journal) Add(fields map[string]string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.n++
	e := map[string]string{"__CURSOR": "s=test;i=" + strconv.Itoa(j.n), "__REALTIME_TIMESTAMP": strconv.FormatInt(time.Now().UnixMicro(), 10)}
	for k, v := range fields {
		e[k] = v
	}
	b, _ := json.Marshal(e)
	j.f.Write(append(b, '\n'))
}

// FollowFile adds each line written to a log file as an entry of the
// unit, until the test ends.
func (j *Journal) FollowFile(t TB, path, unit, ident string) {
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	go func() {
		var off int64
		for {
			select {
			case <-done:
				return
			case <-time.After(50 * time.Millisecond):
			}
			f, err := os.Open(path)
			if err != nil {
				continue
			}
			f.Seek(off, 0)
			r := bufio.NewReader(f)
			for {
				line, err := r.ReadString('\n')
				if err != nil {
					break // a partial line is read again next time
				}
				off += int64(len(line))
				j.Add(map[string]string{"MESSAGE": strings.TrimRight(line, "\n"), "_SYSTEMD_UNIT": unit, "SYSLOG_IDENTIFIER": ident})
			}
			f.Close()
		}
	}()
}

// syslogRe is RFC 3164 as Nginx sends it: <PRI>Mmm dd hh:mm:ss HOST TAG: MSG.
var syslogRe = regexp.MustCompile(`^<\d+>[A-Z][a-z]{2} [ 0-9]\d \d\d:\d\d:\d\d \S+ ([A-Za-z0-9_]+): (.*)$`)

// ListenSyslog receives syslog datagrams at path and adds each as an
// entry with its tag as SYSLOG_IDENTIFIER, as journald does.
func (j *Journal) ListenSyslog(t TB, path string) {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatalf("listening for syslog: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			if m := syslogRe.FindSubmatch(buf[:n]); m != nil {
				j.Add(map[string]string{"SYSLOG_IDENTIFIER": string(m[1]), "MESSAGE": string(m[2]), "_SYSTEMD_UNIT": "nginx.service"})
			}
		}
	}()
}

func execOutput(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	return string(out), err
}

var (
	healthOnce sync.Once
	healthBin  string
	healthErr  error
)

// HealthBinary builds cmd/appliance-health once per process; RemoveBinary
// deletes it with ingest's.
func HealthBinary(t TB) string {
	t.Helper()
	healthOnce.Do(func() {
		Binary(t) // makes buildDir
		_, file, _, _ := runtime.Caller(0)
		cmd := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(buildDir, "appliance-health"), "./cmd/appliance-health")
		cmd.Dir = filepath.Join(filepath.Dir(file), "../../..")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			healthErr = fmt.Errorf("go build ./cmd/appliance-health: %v\n%s", err, out)
		}
		healthBin = filepath.Join(buildDir, "appliance-health")
	})
	if healthErr != nil {
		t.Fatalf("%v", healthErr)
	}
	return healthBin
}

// StartHealth writes the configuration and runs the health program as
// its unit does, with credentials (name to content) in a
// $CREDENTIALS_DIRECTORY of their own.
func StartHealth(t TB, cfg any, creds map[string]string) *Proc {
	t.Helper()
	bin := HealthBinary(t)
	dir := t.TempDir()
	credDir := filepath.Join(dir, "credentials")
	os.Mkdir(credDir, 0o700)
	for name, v := range creds {
		os.WriteFile(filepath.Join(credDir, name), []byte(v), 0o600)
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		t.Fatalf("%v", err)
	}
	conf := filepath.Join(dir, "health.json")
	os.WriteFile(conf, b, 0o644)
	p := newProc(t, bin, filepath.Join(dir, "health.log"), "-config", conf)
	p.env = []string{"CREDENTIALS_DIRECTORY=" + credDir}
	p.Start()
	return p
}
