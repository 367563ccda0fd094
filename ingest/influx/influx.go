// Package influx writes batches of line protocol to InfluxDB over HTTP:
// the 1.x API (/write, database and retention policy, user and password)
// and the 2.x API (/api/v2/write, org and bucket, token), gzip'ed. It
// sends one request and classifies the answer; deciding to retry, split
// or drop is the caller's (package ingest), which owns the batches.
package influx

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Config says where and how to write.
type Config struct {
	URL     string // e.g. http://127.0.0.1:8086
	Version int    // 1 or 2
	// 2.x
	Org, Bucket, Token string
	// 1.x
	Database, RetentionPolicy, User, Password string
	// TLS is used for an https URL.
	TLS     *tls.Config
	Timeout time.Duration // per request; 0 means 30 s
}

// Client writes to one InfluxDB.
type Client struct {
	cfg   Config
	url   string
	http  *http.Client
	gzbuf bytes.Buffer
	gz    *gzip.Writer
}

// New checks cfg and returns a client.
func New(cfg Config) (*Client, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("InfluxDB URL %q is not an http:// or https:// URL", cfg.URL)
	}
	q := url.Values{}
	switch cfg.Version {
	case 1:
		if cfg.Database == "" {
			return nil, errors.New("InfluxDB 1.x needs a database")
		}
		u = u.JoinPath("write")
		q.Set("db", cfg.Database)
		if cfg.RetentionPolicy != "" {
			q.Set("rp", cfg.RetentionPolicy)
		}
	case 2:
		if cfg.Org == "" || cfg.Bucket == "" {
			return nil, errors.New("InfluxDB 2.x needs an org and a bucket")
		}
		u = u.JoinPath("api/v2/write")
		q.Set("org", cfg.Org)
		q.Set("bucket", cfg.Bucket)
	default:
		return nil, fmt.Errorf("InfluxDB version %d: use 1 or 2", cfg.Version)
	}
	q.Set("precision", "ns")
	u.RawQuery = q.Encode()
	if cfg.Timeout == 0 {
		cfg.Timeout = 30 * time.Second
	}
	tr := &http.Transport{
		Proxy:               nil, // InfluxDB is local; never send readings through a proxy from the environment
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:     cfg.TLS,
		MaxIdleConnsPerHost: 2,
		IdleConnTimeout:     90 * time.Second,
	}
	gz, _ := gzip.NewWriterLevel(nil, gzip.BestSpeed)
	return &Client{cfg: cfg, url: u.String(), http: &http.Client{Transport: tr, Timeout: cfg.Timeout}, gz: gz}, nil
}

// Endpoint is the write URL, without credentials (they go in headers).
func (c *Client) Endpoint() string { return c.url }

// Kind classifies the answer to a write.
type Kind int

// Kinds of answer.
const (
	OK       Kind = iota // written
	Retry                // try again later: 429, 5xx, network error, or a setup problem (401, 403, 404) an operator can fix without losing readings
	TooLarge             // 413: send it in parts
	Rejected             // 400 (or another 4xx): the points are bad; more tries will not help
)

// Result is the answer to one write.
type Result struct {
	Kind   Kind
	Status int // HTTP status; 0 for a network error
	// RetryAfter is the server's Retry-After, if it sent one.
	RetryAfter time.Duration
	Err        error // what went wrong, for the log; nil when OK
}

// Write sends lines (each ending in a newline) in one request.
func (c *Client) Write(ctx context.Context, lines [][]byte) Result {
	c.gzbuf.Reset()
	c.gz.Reset(&c.gzbuf)
	for _, l := range lines {
		c.gz.Write(l)
	}
	if err := c.gz.Close(); err != nil {
		return Result{Kind: Retry, Err: err}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(c.gzbuf.Bytes()))
	if err != nil {
		return Result{Kind: Retry, Err: err}
	}
	req.Header.Set("Content-Type", "text/plain; charset=utf-8")
	req.Header.Set("Content-Encoding", "gzip")
	switch {
	case c.cfg.Version == 2 && c.cfg.Token != "":
		req.Header.Set("Authorization", "Token "+c.cfg.Token)
	case c.cfg.Version == 1 && c.cfg.User != "":
		req.SetBasicAuth(c.cfg.User, c.cfg.Password)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return Result{Kind: Retry, Err: fmt.Errorf("InfluxDB at %s: %w", c.cfg.URL, stripURL(err))}
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20)) // reuse the connection
	r := Result{Status: resp.StatusCode}
	if resp.StatusCode/100 == 2 {
		return r
	}
	r.Err = fmt.Errorf("InfluxDB answered %s: %s", resp.Status, strings.TrimSpace(string(msg)))
	switch s := resp.StatusCode; {
	case s == http.StatusTooManyRequests || s >= 500:
		r.Kind = Retry
		r.RetryAfter = retryAfter(resp.Header.Get("Retry-After"))
	case s == http.StatusRequestEntityTooLarge:
		r.Kind = TooLarge
	case s == http.StatusUnauthorized || s == http.StatusForbidden:
		r.Kind = Retry
		r.Err = fmt.Errorf("InfluxDB refused ingest's credentials (%s); check the token or password file and the user's write permission: %s", resp.Status, strings.TrimSpace(string(msg)))
	case s == http.StatusNotFound:
		// The database or bucket does not exist (yet): the InfluxDB
		// module creates it, perhaps after ingest starts.
		r.Kind = Retry
		r.Err = fmt.Errorf("InfluxDB has no such database or bucket (%s): %s", resp.Status, strings.TrimSpace(string(msg)))
	default:
		r.Kind = Rejected
	}
	return r
}

// stripURL keeps the URL out of a network error; it holds no secret
// (credentials go in headers) but repeats what the message says.
func stripURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

func retryAfter(h string) time.Duration {
	if h == "" {
		return 0
	}
	if s, err := strconv.Atoi(h); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(h); err == nil {
		return max(time.Until(t), 0)
	}
	return 0
}
