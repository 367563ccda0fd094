package apply

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/appliance/appliance/generation"
)

// attemptTimeout bounds one try of one check.
const attemptTimeout = 5 * time.Second

// permanent marks a check failure that waiting does not mend.
type permanent struct{ error }

// checks runs the generation's health checks in order. Services take a
// while to come up, so a check is tried again until it passes or the
// time for all checks (CheckTimeout) is spent; each gets at least one
// try. It returns the names of those that failed, each reported.
func (a *applier) checks(ctx context.Context, cs []generation.Check) []string {
	deadline := time.Now().Add(a.opt.CheckTimeout)
	var failed []string
	for _, c := range cs {
		if len(a.opt.Checks) > 0 && !slices.Contains(a.opt.Checks, c.Kind) {
			a.event("check", fmt.Sprintf("%s: not run (--checks %s)", c.Name, strings.Join(a.opt.Checks, ",")))
			continue
		}
		tries := 0
		var err error
		for {
			tries++
			err = a.check(ctx, c)
			if err == nil || errors.As(err, new(permanent)) || !time.Now().Add(time.Second).Before(deadline) {
				break
			}
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			if ctx.Err() != nil {
				break
			}
		}
		if err != nil {
			failed = append(failed, c.Name)
			a.emit(generation.Event{Step: "check", Message: fmt.Sprintf("%s: failed: %v", c.Name, err), Failed: true})
			continue
		}
		a.event("check", fmt.Sprintf("%s: ok%s", c.Name, plural(tries, " after %d tries")))
	}
	return failed
}

func plural(n int, f string) string {
	if n < 2 {
		return ""
	}
	return fmt.Sprintf(f, n)
}

// check tries a check once, in at most attemptTimeout.
func (a *applier) check(ctx context.Context, c generation.Check) error {
	ctx, cancel := context.WithTimeout(ctx, attemptTimeout)
	defer cancel()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(c.Port))
	switch c.Kind {
	case "unit":
		out, err := a.systemctl(ctx, "is-active", c.Unit)
		if err != nil {
			return fmt.Errorf("%s is %s", c.Unit, orUnknown(out))
		}
		return nil
	case "tcp":
		conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		return conn.Close()
	case "tls":
		cfg, err := a.tlsConfig(c)
		if err != nil {
			return permanent{err}
		}
		return tlsCheck(ctx, addr, cfg)
	case "http":
		return a.httpCheck(ctx, c)
	case "system":
		out, _ := a.systemctl(ctx, "is-system-running")
		switch out {
		case "running":
			return nil
		case "degraded":
			failed, _ := a.systemctl(ctx, "list-units", "--state=failed", "--plain", "--no-legend", "--no-pager")
			return permanent{fmt.Errorf("the system is degraded; failed units: %s", orUnknown(unitNames(failed)))}
		}
		return fmt.Errorf("the system is %s", orUnknown(out))
	}
	return permanent{fmt.Errorf("unknown kind %q", c.Kind)}
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

func unitNames(list string) string {
	var names []string
	for _, line := range strings.Split(list, "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			names = append(names, f[0])
		}
	}
	return strings.Join(names, " ")
}

// tlsConfig verifies the server against the check's CA as ServerName
// and presents the client certificate when the check names one; the
// files are the gateway's, under the root.
func (a *applier) tlsConfig(c generation.Check) (*tls.Config, error) {
	cfg := &tls.Config{ServerName: c.ServerName, MinVersion: tls.VersionTLS12}
	if c.CAFile != "" {
		pem, err := os.ReadFile(a.fs.host(c.CAFile))
		if err != nil {
			return nil, fmt.Errorf("reading the CA: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s holds no PEM certificate", c.CAFile)
		}
	}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(a.fs.host(c.CertFile), a.fs.host(c.KeyFile))
		if err != nil {
			return nil, fmt.Errorf("reading the client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// tlsCheck shakes hands. With TLS 1.3 a server rejects a client
// certificate only after the handshake, so it then waits briefly: an
// alert or a closed connection fails, silence or data passes (a broker
// waits for the client to speak).
func tlsCheck(ctx context.Context, addr string, cfg *tls.Config) error {
	conn, err := (&tls.Dialer{Config: cfg}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	_, err = conn.Read(make([]byte, 1))
	var ne net.Error
	if err == nil || (errors.As(err, &ne) && ne.Timeout()) {
		return nil
	}
	if err == io.EOF {
		return fmt.Errorf("the server closed the connection after the handshake")
	}
	return fmt.Errorf("after the handshake: %w", err)
}

func (a *applier) httpCheck(ctx context.Context, c generation.Check) error {
	cfg, err := a.tlsConfig(c)
	if err != nil {
		return permanent{err}
	}
	client := &http.Client{
		Transport: &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true},
		// The check is of this URL's answer, not of another's.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.URL, nil)
	if err != nil {
		return permanent{err}
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	// InfluxDB's /ping answers 204.
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("%s answered %s", c.URL, resp.Status)
	}
	return nil
}

// systemctl runs systemctl and returns its trimmed output.
func (a *applier) systemctl(ctx context.Context, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, a.opt.Systemctl, args...).Output()
	return strings.TrimSpace(string(out)), err
}

// runTool runs a program to its end, within ActionTimeout; its output
// is shown only when it fails.
func (a *applier) runTool(ctx context.Context, prog string, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, a.opt.ActionTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, prog, args...)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	out, err := cmd.CombinedOutput()
	if err != nil {
		msg := strings.TrimSpace(string(out))
		if len(msg) > 600 {
			msg = "…" + msg[len(msg)-600:]
		}
		if msg != "" {
			msg = ": " + msg
		}
		return fmt.Errorf("%s %s: %v%s", prog, strings.Join(args, " "), err, msg)
	}
	return nil
}
