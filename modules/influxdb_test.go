package modules_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/appliance/appliance/influxsetup"
	"github.com/appliance/appliance/internal/testenv"
)

// influx is a client of the test's InfluxDB.
type influx struct {
	base string
}

func (c influx) do(t *testing.T, method, path, user, pass, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, c.base+path, strings.NewReader(body))
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	if method == "POST" && strings.HasPrefix(path, "/query") {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (c influx) query(t *testing.T, user, pass, q string) (int, string) {
	return c.do(t, "POST", "/query?db=sensors", user, pass, url.Values{"q": {q}}.Encode())
}

// TestInfluxDB runs Debian's influxd with the generated config and the
// setup the gateway runs: the ingest account may write and not read,
// Grafana's may read and not write, nobody gets in without a password,
// and running the setup again changes nothing.
func TestInfluxDB(t *testing.T) {
	testenv.Require(t, "influxd")
	port, rpc := testenv.FreePort(t), testenv.FreePort(t)
	w := newGW(t, siteHCL(fmt.Sprintf("influxdb {\n  port = %d\n  retention = \"30d\"\n}\ngrafana {\n  port = %d\n}\n", port, testenv.FreePort(t))))
	conf := w.path("/etc/influxdb/influxdb.conf")
	testenv.Rewrite(t, conf, "/var/lib/influxdb/", w.path("/var/lib/influxdb")+"/", "127.0.0.1:8088", fmt.Sprintf("127.0.0.1:%d", rpc))
	srv := testenv.Start(t, "influxd", "-config", conf)
	srv.WaitPort(t, fmt.Sprintf("127.0.0.1:%d", port), 20*time.Second)

	// Run the setup as the gateway's unit does: its credentials are the
	// secret files, under the names the unit loads them by.
	cfg, err := influxsetup.Load(w.path("/etc/appliance/influxdb-setup.json"))
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("CREDENTIALS_DIRECTORY", w.path("/etc/appliance/secrets"))
	for i := 0; i < 2; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		if err := influxsetup.Run(ctx, cfg); err != nil {
			t.Fatalf("setup run %d: %v", i+1, err)
		}
		cancel()
	}

	secret := func(name string) string {
		b, _ := os.ReadFile(w.path("/etc/appliance/secrets/" + name))
		return strings.TrimSpace(string(b))
	}
	adminPass, ingestPass, grafanaPass := secret("influxdb-admin-password"), secret("influxdb-ingest-password"), secret("influxdb-grafana-password")
	db := influx{fmt.Sprintf("http://127.0.0.1:%d", port)}

	if code, body := db.do(t, "POST", "/write?db=sensors&rp=appliance", "ingest", ingestPass, fmt.Sprintf("reading,node=bench-1 temperature=21.5 %d", time.Now().UnixNano())); code != 204 {
		t.Fatalf("ingest write: %d %s", code, body)
	}
	if code, body := db.query(t, "ingest", ingestPass, `SELECT * FROM "reading"`); code == 200 && !strings.Contains(body, "error") {
		t.Errorf("ingest may read: %d %s", code, body)
	}
	if code, body := db.query(t, "grafana", grafanaPass, `SELECT "temperature" FROM "reading"`); code != 200 || !strings.Contains(body, "21.5") {
		t.Errorf("grafana read: %d %s", code, body)
	}
	if code, _ := db.do(t, "POST", "/write?db=sensors", "grafana", grafanaPass, "reading,node=x temperature=1"); code != 403 {
		t.Errorf("grafana write: %d; want 403", code)
	}
	if code, _ := db.do(t, "POST", "/write?db=sensors", "", "", "reading,node=x temperature=1"); code != 401 {
		t.Errorf("anonymous write: %d; want 401", code)
	}
	if code, _ := db.do(t, "POST", "/write?db=sensors", "ingest", "wrong", "reading,node=x temperature=1"); code != 401 {
		t.Errorf("write with a wrong password: %d; want 401", code)
	}
	code, body := db.query(t, "admin", adminPass, "SHOW RETENTION POLICIES ON sensors")
	if code != 200 || !strings.Contains(body, `["appliance","720h0m0s"`) || !strings.Contains(body, `true]`) {
		t.Errorf("retention policies: %d %s", code, body)
	}
	if _, body := db.query(t, "admin", adminPass, "SHOW GRANTS FOR ingest"); !strings.Contains(body, `["sensors","WRITE"]`) {
		t.Errorf("ingest grants: %s", body)
	}
	// A right granted by hand is taken back by the next setup.
	db.query(t, "admin", adminPass, "GRANT ALL ON sensors TO ingest")
	if err := influxsetup.Run(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	if code, body := db.query(t, "ingest", ingestPass, `SELECT * FROM "reading"`); code == 200 && !strings.Contains(body, "error") {
		t.Errorf("ingest may read after a hand-made grant and a new setup: %s", body)
	}
}
