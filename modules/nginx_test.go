package modules_test

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/appliance/appliance/internal/testenv"
)

// startNginx runs Debian's nginx with the generated config, moved under
// the test's root.
func startNginx(t *testing.T, w *gw) *testenv.Proc {
	t.Helper()
	return runNginx(t, w, moveNginx(t, w), "")
}

// moveNginx moves the generated config's paths under the test's root,
// once, and returns the config's path.
func moveNginx(t *testing.T, w *gw) string {
	t.Helper()
	conf := w.path("/etc/nginx/nginx.conf")
	testenv.Rewrite(t, conf,
		"/etc/nginx/appliance/", w.path("/etc/nginx/appliance")+"/",
		"/etc/nginx/mime.types", "/etc/nginx/mime.types",
		"/var/lib/appliance/ota/", w.path("/var/lib/appliance/ota")+"/",
		"/run/nginx/nginx.pid", w.path("/nginx.pid"),
		// The test's nginx starts as root, so name the worker user; on the
		// gateway the whole service runs as www-data from the start.
		"worker_processes auto;", "worker_processes 1;\nuser root;")
	return conf
}

// runNginx checks and starts nginx on a moved config; with a libfaketime
// offset its clock runs that far ahead.
func runNginx(t *testing.T, w *gw, conf, offset string) *testenv.Proc {
	t.Helper()
	check := faked(t, offset, "nginx", "-t", "-e", "stderr", "-c", conf)
	if out, err := testenv.Run(check[0], check[1:]...); err != nil {
		t.Fatalf("nginx -t refuses the generated config: %v\n%s", err, out)
	}
	c := faked(t, offset, "nginx", "-e", "stderr", "-c", conf, "-g", "daemon off;")
	p := testenv.Start(t, c[0], c[1:]...)
	p.WaitPort(t, fmt.Sprintf("127.0.0.1:%d", w.site.HTTPS.Port), 10*time.Second)
	return p
}

func get(t *testing.T, cfg *tls.Config, url string) (*http.Response, string, error) {
	t.Helper()
	c := &http.Client{
		Transport:     &http.Transport{TLSClientConfig: cfg, Proxy: nil},
		Timeout:       5 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := c.Get(url)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b), nil
}

// TestNginx runs nginx with the generated config: the OTA tree is served
// to node certificates only; no certificate, the ingest service's, and a
// revoked node's are refused; the security headers are there; port 80
// only redirects.
func TestNginx(t *testing.T) {
	testenv.Require(t, "nginx")
	https, redirect := testenv.FreePort(t), testenv.FreePort(t)
	w := newGW(t, siteHCL(fmt.Sprintf("https {\n  port = %d\n  redirect_port = %d\n}\n", https, redirect)))
	firmware := []byte("\xe9 firmware image")
	os.MkdirAll(w.path("/var/lib/appliance/ota/fw"), 0o755)
	os.WriteFile(w.path("/var/lib/appliance/ota/fw/1.0.0.bin"), firmware, 0o644)
	os.Chmod(w.path("/var/lib/appliance/ota"), 0o755)
	srv := startNginx(t, w)

	base := fmt.Sprintf("https://localhost:%d", https)
	bench1 := w.tlsConfig(t, "bench-1")
	resp, body, err := get(t, bench1, base+"/ota/fw/1.0.0.bin")
	if err != nil || resp.StatusCode != 200 || body != string(firmware) {
		t.Fatalf("bench-1 fetching firmware: %v %v %q", err, resp, body)
	}
	for h, want := range map[string]string{
		"Strict-Transport-Security": "max-age=63072000",
		"X-Content-Type-Options":    "nosniff",
		"X-Frame-Options":           "DENY",
		"Referrer-Policy":           "no-referrer",
		"Content-Security-Policy":   "default-src 'none'",
		"Server":                    "nginx",
	} {
		if got := resp.Header.Get(h); !strings.HasPrefix(got, want) {
			t.Errorf("header %s = %q; want %q", h, got, want)
		}
	}
	if resp.TLS.Version < tls.VersionTLS12 {
		t.Errorf("TLS version %x", resp.TLS.Version)
	}

	for who, cfg := range map[string]*tls.Config{"no certificate": w.tlsConfig(t, ""), "the ingest certificate": w.tlsConfig(t, "ingest")} {
		resp, _, err := get(t, cfg, base+"/ota/fw/1.0.0.bin")
		if err == nil && resp.StatusCode != 403 {
			t.Errorf("firmware with %s: %s; want 403", who, resp.Status)
		}
		if err == nil && resp.Header.Get("Strict-Transport-Security") == "" {
			t.Errorf("refusal without security headers")
		}
	}
	// Outside the OTA tree there is nothing (no Grafana on this site).
	if resp, _, err := get(t, w.tlsConfig(t, ""), base+"/"); err != nil || resp.StatusCode != 404 {
		t.Errorf("GET /: %v %v", err, resp)
	}
	// Port 80 says only where to go.
	resp, _, err = get(t, nil, fmt.Sprintf("http://localhost:%d/ota/fw/1.0.0.bin", redirect))
	if err != nil || resp.StatusCode != 301 || resp.Header.Get("Location") != fmt.Sprintf("https://localhost:%d/ota/fw/1.0.0.bin", https) {
		t.Errorf("plain HTTP: %v %v", err, resp)
	}

	// A revoked node is refused once the new CRL is in place.
	if _, err := w.st.Revoke("bench-1", "keyCompromise", w.g.Wants); err != nil {
		t.Fatal(err)
	}
	w.rewrite(t)
	os.Chmod(w.path("/var/lib/appliance/ota"), 0o755)
	srv.Stop()
	startNginx(t, w)
	if resp, _, err := get(t, bench1, base+"/ota/fw/1.0.0.bin"); err == nil && resp.StatusCode == 200 {
		t.Errorf("a revoked certificate fetched firmware")
	}
	if resp, _, err := get(t, w.tlsConfig(t, "bench-2"), base+"/ota/fw/1.0.0.bin"); err != nil || resp.StatusCode != 200 {
		t.Errorf("bench-2 after bench-1's revocation: %v %v", err, resp)
	}
}
