package influx

import (
	"compress/gzip"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// The status codes that a local influxd will not produce on demand (429,
// 503 with Retry-After, 401) are served here; the others are exercised
// against the real influxd in package ingest's tests.
func TestWriteClassifies(t *testing.T) {
	var status int
	var header http.Header
	var body, query string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		header, query = r.Header, r.URL.RawQuery
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			t.Errorf("body is not gzip: %v", err)
			return
		}
		b, _ := io.ReadAll(zr)
		body = string(b)
		if status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", "3")
		}
		w.WriteHeader(status)
		io.WriteString(w, `{"error":"nope"}`)
	}))
	defer srv.Close()

	v2, err := New(Config{URL: srv.URL, Version: 2, Org: "o", Bucket: "b", Token: "tok"})
	if err != nil {
		t.Fatal(err)
	}
	v1, err := New(Config{URL: srv.URL, Version: 1, Database: "sensors", RetentionPolicy: "rp", User: "ingest", Password: "pw"})
	if err != nil {
		t.Fatal(err)
	}
	lines := [][]byte{[]byte("reading,node=a seq=1i 1\n"), []byte("reading,node=a seq=2i 2\n")}
	for _, c := range []struct {
		status int
		kind   Kind
		after  time.Duration
	}{
		{204, OK, 0}, {429, Retry, 3 * time.Second}, {503, Retry, 3 * time.Second}, {500, Retry, 0},
		{413, TooLarge, 0}, {400, Rejected, 0}, {401, Retry, 0}, {403, Retry, 0}, {404, Retry, 0},
	} {
		status = c.status
		r := v2.Write(context.Background(), lines)
		if r.Kind != c.kind || r.RetryAfter != c.after || (c.kind != OK) != (r.Err != nil) {
			t.Errorf("HTTP %d: kind %d, retry after %s, err %v; want kind %d, %s", c.status, r.Kind, r.RetryAfter, r.Err, c.kind, c.after)
		}
	}
	if header.Get("Authorization") != "Token tok" || query != "bucket=b&org=o&precision=ns" || body != string(lines[0])+string(lines[1]) {
		t.Errorf("v2 request: auth %q, query %q, body %q", header.Get("Authorization"), query, body)
	}
	status = 204
	v1.Write(context.Background(), lines)
	if u, p, ok := (&http.Request{Header: header}).BasicAuth(); !ok || u != "ingest" || p != "pw" || query != "db=sensors&precision=ns&rp=rp" {
		t.Errorf("v1 request: basic auth %q %q %v, query %q", u, p, ok, query)
	}
	if strings.Contains(v1.Endpoint(), "pw") {
		t.Errorf("the password is in the URL: %s", v1.Endpoint())
	}

	srv.Close()
	if r := v2.Write(context.Background(), lines); r.Kind != Retry || r.Err == nil {
		t.Errorf("server gone: kind %d, err %v; want Retry", r.Kind, r.Err)
	}
}
