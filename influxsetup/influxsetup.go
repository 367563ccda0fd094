// Package influxsetup prepares InfluxDB on the gateway, once on first
// boot and again after every push: the database or bucket with the
// site's retention, and the accounts the ingest service and Grafana use,
// each with only the rights it needs. It runs on the gateway as
// appliance-setup influxdb, talks to InfluxDB's HTTP API on loopback, and
// is idempotent: a second run changes nothing, a changed password in the
// site's state is applied.
//
// Secrets are read from files (systemd credentials on the gateway) and
// sent only in request bodies and headers, never in URLs or on a command
// line.
package influxsetup

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Config is what appliance-setup influxdb reads; the influxdb module
// renders it. Fields that hold secrets name where to read them: "file:PATH"
// or "credential:NAME" (a systemd credential of the unit).
type Config struct {
	// Version is 1 or 2.
	Version int    `json:"version"`
	URL     string `json:"url"`
	// CAFile verifies InfluxDB's certificate when URL is https.
	CAFile string `json:"ca_file,omitempty"`

	// Database is the v1 database or the v2 bucket.
	Database string `json:"database"`
	// RetentionPolicy is the v1 retention policy made the default.
	RetentionPolicy string `json:"retention_policy,omitempty"`
	// Retention is how long data is kept; 0 keeps it forever.
	Retention Duration `json:"retention"`
	// Org is the v2 organisation.
	Org string `json:"org,omitempty"`

	AdminUser     string `json:"admin_user"`
	AdminPassword string `json:"admin_password"`
	// AdminToken is the v2 operator token set at setup.
	AdminToken string `json:"admin_token,omitempty"`

	// Users are v1 accounts with one right on the database.
	Users []User `json:"users,omitempty"`
	// Tokens are v2 authorizations on the bucket, written to files.
	Tokens []Token `json:"tokens,omitempty"`
}

// User is a v1 account.
type User struct {
	Name     string `json:"name"`
	Password string `json:"password"`
	// Privilege is READ or WRITE, on Database only.
	Privilege string `json:"privilege"`
}

// Token is a v2 authorization on the bucket. InfluxDB makes the token
// itself, so it lives on the gateway only, in File.
type Token struct {
	Description string `json:"description"`
	// Action is "read" or "write".
	Action string `json:"action"`
	File   string `json:"file"`
	// EnvFile, when set, also gets the token as EnvVar=TOKEN, for
	// services that take it from their environment (Grafana).
	EnvFile string `json:"env_file,omitempty"`
	EnvVar  string `json:"env_var,omitempty"`
}

// Duration is a time.Duration that reads and writes as "720h0m0s".
type Duration time.Duration

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	*d = Duration(v)
	return err
}

// Load reads a config file.
func Load(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var c Config
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if c.Version != 1 && c.Version != 2 {
		return nil, fmt.Errorf("%s: version is %d; want 1 or 2", path, c.Version)
	}
	return &c, nil
}

// ReadSecret resolves "file:PATH" or "credential:NAME".
func ReadSecret(ref string) (string, error) {
	var p string
	switch {
	case strings.HasPrefix(ref, "file:"):
		p = strings.TrimPrefix(ref, "file:")
	case strings.HasPrefix(ref, "credential:"):
		dir := os.Getenv("CREDENTIALS_DIRECTORY")
		if dir == "" {
			return "", fmt.Errorf("%s: CREDENTIALS_DIRECTORY is not set; run under systemd with LoadCredential=", ref)
		}
		p = filepath.Join(dir, strings.TrimPrefix(ref, "credential:"))
	default:
		return "", fmt.Errorf("secret reference %q is neither file:PATH nor credential:NAME", ref)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return "", err
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("%s is empty", p)
	}
	return s, nil
}

// Run sets InfluxDB up, waiting up to a minute for it to answer.
func Run(ctx context.Context, c *Config) error {
	hc, err := client(c)
	if err != nil {
		return err
	}
	if c.Version == 2 {
		return runV2(ctx, c, hc)
	}
	return runV1(ctx, c, hc)
}

func client(c *Config) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s holds no certificate", c.CAFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}, nil
}

// wait polls url until it answers with want, or ctx or a minute ends.
func wait(ctx context.Context, hc *http.Client, url string, want int) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var last error
	for {
		req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
		resp, err := hc.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == want {
				return nil
			}
			err = fmt.Errorf("status %s", resp.Status)
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("InfluxDB at %s did not answer: %v", url, last)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

var errAuth = errors.New("authorization failed")
