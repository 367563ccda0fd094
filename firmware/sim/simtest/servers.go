package simtest

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Need fails unless the programs are on PATH: a test whose program is
// missing fails, with the fix.
func Need(t TB, programs ...string) {
	t.Helper()
	for _, p := range programs {
		if _, err := exec.LookPath(p); err != nil {
			t.Fatalf("%s is needed and is not installed; run scripts/deps (as root) to install it", p)
		}
	}
}

// FreePort is a loopback TCP port that nothing listened on a moment ago.
func FreePort(t TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("%v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Proc is a program a test started; it is stopped at cleanup, and its
// output logged if the test failed.
type Proc struct {
	Cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
	err  error
}

func (p *Proc) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

// Output is what the program wrote so far.
func (p *Proc) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// Start runs a program until Stop or the end of the test.
func Start(t TB, name string, args ...string) *Proc {
	t.Helper()
	return StartCmd(t, exec.Command(name, args...))
}

// StartCmd is Start for a command with its environment or folder set.
func StartCmd(t TB, cmd *exec.Cmd) *Proc {
	t.Helper()
	name := cmd.Path
	p := &Proc{Cmd: cmd, done: make(chan struct{})}
	p.Cmd.Stdout, p.Cmd.Stderr = p, p
	p.Cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := p.Cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	go func() { p.err = p.Cmd.Wait(); close(p.done) }()
	t.Cleanup(p.Stop)
	return p
}

// Stop ends the program: SIGTERM, SIGKILL after ten seconds.
func (p *Proc) Stop() {
	select {
	case <-p.done:
		return
	default:
	}
	syscall.Kill(-p.Cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		syscall.Kill(-p.Cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// WaitPort waits until the program listens on addr.
func (p *Proc) WaitPort(t TB, addr string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			t.Fatalf("%s ended before listening on %s: %v\n%s", p.Cmd.Path, addr, p.err, p.Output())
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			c.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s did not listen on %s within %v:\n%s", p.Cmd.Path, addr, timeout, p.Output())
}

// moved writes the gateway's config at path with its gateway paths moved
// under the site's root, to a file beside the root (so that a later
// Rewrite's fresh config is moved again from scratch), and returns it.
func (s *Site) moved(t TB, path, name string, pairs ...string) string {
	t.Helper()
	b, err := os.ReadFile(s.Path(path))
	if err != nil {
		t.Fatalf("%v", err)
	}
	out := filepath.Join(s.Dir, name)
	if err := os.WriteFile(out, []byte(strings.NewReplacer(pairs...).Replace(string(b))), 0o600); err != nil {
		t.Fatalf("%v", err)
	}
	return out
}

// runAs is the user the test's servers stay: their files are the
// test's, which the gateway's service users could not read.
func runAs() string {
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return "root"
}

// StartMosquitto runs Debian's mosquitto with the site's generated
// config, certificates, CRL and ACL.
func (s *Site) StartMosquitto(t TB) *Proc {
	t.Helper()
	Need(t, "mosquitto")
	os.MkdirAll(s.Path("/var/lib/mosquitto"), 0o755)
	conf := s.moved(t, "/etc/mosquitto/mosquitto.conf", "mosquitto-test.conf",
		"/etc/mosquitto/", s.Path("/etc/mosquitto")+"/",
		"/var/lib/mosquitto/", s.Path("/var/lib/mosquitto")+"/",
		"user mosquitto", "user "+runAs())
	p := Start(t, "mosquitto", "-c", conf)
	p.WaitPort(t, fmt.Sprintf("127.0.0.1:%d", s.Spec.MQTT.Port), 10*time.Second)
	return p
}

// StartNginx checks (nginx -t) and runs Debian's nginx with the site's
// generated config, serving the OTA tree under Root.
func (s *Site) StartNginx(t TB) *Proc {
	t.Helper()
	Need(t, "nginx")
	conf := s.moved(t, "/etc/nginx/nginx.conf", "nginx-test.conf",
		"/etc/nginx/appliance/", s.Path("/etc/nginx/appliance")+"/",
		"/var/lib/appliance/ota/", s.Path("/var/lib/appliance/ota")+"/",
		"/run/nginx/nginx.pid", filepath.Join(s.Dir, "nginx.pid"),
		"worker_processes auto;", "worker_processes 1;\nuser "+runAs()+";")
	if out, err := exec.Command("nginx", "-t", "-e", "stderr", "-c", conf).CombinedOutput(); err != nil {
		t.Fatalf("nginx -t refuses the generated config: %v\n%s", err, out)
	}
	p := Start(t, "nginx", "-e", "stderr", "-c", conf, "-g", "daemon off;")
	p.WaitPort(t, fmt.Sprintf("127.0.0.1:%d", s.Spec.HTTPS.Port), 10*time.Second)
	return p
}
