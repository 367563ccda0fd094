package health

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestClassify takes lines as Mosquitto 2.0 and the nginx module's OTA
// log format write them.
func TestClassify(t *testing.T) {
	sha := strings.Repeat("ab", 32)
	c := &Classifier{OTAPath: "/ota/", Images: map[string]Image{sha: {Firmware: "sensor", Version: "1.4.0"}}}
	mq := func(msg string) Entry { return Entry{Unit: "mosquitto.service", Message: msg} }
	ota := func(msg string) Entry { return Entry{Identifier: "nginx_ota", Message: msg} }
	for _, tt := range []struct {
		in   Entry
		want string // "reason client" or "outcome node version"; "" for none
	}{
		{mq("New connection from 10.0.0.7:52408 on port 8883."), ""},
		{mq("OpenSSL Error[0]: error:0A0000C7:SSL routines::peer did not return a certificate"), "no_certificate 10.0.0.7:52408"},
		{mq("Client <unknown> disconnected: Protocol error."), ""},
		{mq("OpenSSL Error[0]: error:0A000086:SSL routines::certificate verify failed"), "bad_certificate 10.0.0.7:52408"},
		{mq("OpenSSL Error[1]: error:0A000086:SSL routines::certificate verify failed"), ""},
		{mq("Client connection from 10.0.0.9 failed: error:0A000086:SSL routines::certificate verify failed."), "bad_certificate 10.0.0.9"},
		{mq("Client connection from 127.0.0.1 failed: error:0A000126:SSL routines::unexpected eof while reading."), ""},
		{mq("Denied PUBLISH from bench-1 (d0, q1, r0, m2, 'sensors/bench-2/reading', ... (64 bytes))"), "acl_denied bench-1"},
		{mq("Client bench-4 disconnected, not authorised."), "not_authorised bench-4"},
		{mq("New client connected from 10.0.0.7:52438 as bench-1 (p5, c1, k20, u'bench-1')."), ""},
		{ota(`{"node":"","verify":"NONE","cert_end":"","status":403,"uri":"/ota/sensor/manifest.json","sent":146,"completion":"OK","addr":"10.0.0.8"}`), "no_certificate 10.0.0.8"},
		{ota(`{"node":"bench-2","verify":"FAILED:certificate revoked","cert_end":"Jan  1 00:00:00 2031 GMT","status":400,"uri":"/ota/sensor/manifest.json","sent":0,"completion":"OK","addr":"10.0.0.8"}`), "revoked bench-2"},
		{ota(`{"node":"bench-1","verify":"FAILED:unable to get local issuer certificate","cert_end":"","status":400,"uri":"/","sent":0,"completion":"OK","addr":"10.0.0.8"}`), "wrong_ca bench-1"},
		{ota(`{"node":"bench-1","verify":"FAILED:certificate has expired","cert_end":"","status":400,"uri":"/ota/","sent":0,"completion":"OK","addr":"10.0.0.8"}`), "expired bench-1"},
		{ota(`{"node":"","verify":"SUCCESS","cert_end":"","status":403,"uri":"/ota/sensor/manifest.json","sent":146,"completion":"OK","addr":"10.0.0.8"}`), "acl_denied 10.0.0.8"},
		{ota(`{"node":"bench-1","verify":"SUCCESS","cert_end":"Jan  1 00:00:00 2031 GMT","status":200,"uri":"/ota/sensor/` + sha + `.bin","sent":1114112,"completion":"OK","addr":"10.0.0.8"}`), "downloaded bench-1 1.4.0"},
		{ota(`{"node":"bench-1","verify":"SUCCESS","cert_end":"","status":200,"uri":"/ota/sensor/` + sha + `.bin","sent":20000,"completion":"","addr":"10.0.0.8"}`), "failed bench-1 1.4.0"},
		{ota(`{"node":"bench-1","verify":"SUCCESS","cert_end":"","status":404,"uri":"/ota/sensor/` + strings.Repeat("0", 64) + `.bin","sent":0,"completion":"OK","addr":"10.0.0.8"}`), "failed bench-1 unknown"},
		{ota(`{"node":"bench-1","verify":"SUCCESS","cert_end":"","status":200,"uri":"/ota/sensor/manifest.json","sent":300,"completion":"OK","addr":"10.0.0.8"}`), ""},
		{ota(`not json`), ""},
		{Entry{Identifier: "sshd", Message: "Denied PUBLISH from x ("}, ""},
	} {
		ev, ok := c.Classify(tt.in)
		got := ""
		switch {
		case ok && ev.Reason != "":
			got = ev.Reason + " " + ev.Client
		case ok && ev.Outcome != "":
			got = ev.Outcome + " " + ev.Node + " " + ev.Version
		}
		if got != tt.want {
			t.Errorf("Classify(%q) = %q; want %q", tt.in.Message, got, tt.want)
		}
	}
	// A manifest request tells the node's certificate's end.
	ev, ok := c.Classify(ota(`{"node":"bench-1","verify":"SUCCESS","cert_end":"Mar  9 08:01:02 2031 GMT","status":200,"uri":"/ota/sensor/manifest.json","sent":300,"completion":"OK","addr":"10.0.0.8"}`))
	if !ok || !ev.CertEnd.Equal(time.Date(2031, 3, 9, 8, 1, 2, 0, time.UTC)) {
		t.Errorf("a manifest request: %+v, %v; want the certificate's end", ev, ok)
	}
}

// TestParseEntry reads journalctl's JSON, including a MESSAGE that is
// not UTF-8, which journalctl writes as an array of bytes.
func TestParseEntry(t *testing.T) {
	e, err := ParseEntry([]byte(`{"__CURSOR":"s=1;i=2","__REALTIME_TIMESTAMP":"1767225600123456","_SYSTEMD_UNIT":"mosquitto.service","MESSAGE":[79,75,255]}`))
	if err != nil {
		t.Fatal(err)
	}
	if e.Cursor != "s=1;i=2" || e.Unit != "mosquitto.service" || e.Message != "OK\xff" || !e.Time.Equal(time.UnixMicro(1767225600123456)) {
		t.Errorf("ParseEntry = %+v", e)
	}
	if _, err := ParseEntry([]byte("-- No entries --")); err == nil {
		t.Errorf("a line that is not JSON was taken")
	}
}

// TestFollowFromCursor: the journal command is told to start after the
// saved cursor, or to print no old entries when there is none.
func TestFollowFromCursor(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "journalctl")
	os.WriteFile(script, []byte(`#!/bin/sh
for a in "$@"; do printf '{"__CURSOR":"c","MESSAGE":"%s"}\n' "$a"; done
`), 0o755)
	for cursor, want := range map[string]string{"s=abc;i=9": "--after-cursor=s=abc;i=9", "": "--lines=0"} {
		var got []string
		err := Follow(context.Background(), []string{script, "--output=json"}, cursor, func(e Entry) { got = append(got, e.Message) })
		if err == nil || !strings.Contains(err.Error(), "stopped") {
			t.Errorf("a journal command that ends: %v, want an error saying it stopped", err)
		}
		if strings.Join(got, " ") != "--output=json "+want {
			t.Errorf("cursor %q: arguments %q, want %q", cursor, got, "--output=json "+want)
		}
	}
}
