package wire

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
)

var recv = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func TestDecode(t *testing.T) {
	dht22, dht11 := Sensors["dht22"], Sensors["dht11"]
	for _, c := range []struct {
		sensor  Sensor
		payload string
		reason  Reason
	}{
		{dht22, `{"boot":3,"seq":7,"temperature":21.5,"humidity":48.25,"rssi":-61,"fw":"1.4.0"}`, ""},
		{dht22, `{"boot":3,"seq":7.0,"temperature":-40,"humidity":0}`, ""},
		{dht11, `{"boot":3,"seq":7,"temperature":-21,"humidity":50}`, OutOfRange},
		{dht22, `{"boot":3,"seq":7,"temperature":-21,"humidity":50}`, ""},
		{dht22, `{"boot":3,"seq":4294967296,"temperature":1,"humidity":1}`, OutOfRange},
		{dht22, `{"boot":3,"seq":7,"temperature":1,"humidity":1,"rssi":-128}`, OutOfRange},
		{dht22, `{"boot":3,"seq":7,"temperature":1,"humidity":1,"fw":null}`, ""},
		{dht22, `{"boot":3,"seq":7,"temperature":1e400,"humidity":1}`, NotFinite},
		{dht22, `{"boot":3,"seq":1e400,"temperature":1,"humidity":1}`, NotFinite},
		{dht22, `{"boot":3,"seq":7,"temperature":1,"humidity":1,"fw":"v1.4.0-rc.1+build.5"}`, ""},
		{dht22, `{"boot":3,"seq":7,"temperature":1,"humidity":1,"fw":"1.4.0\\n"}`, BadFirmwareName},
		{dht22, `{"boot":3,"seq":7,"temperature":1,"humidity":1,"t":"x"}`, WrongType},
		{dht22, `{"boot":3,"seq":7,"temperature":1,"humidity":1,"t":-5}`, OutOfRange},
	} {
		_, err := Decode("bench-1", c.sensor, []byte(c.payload), recv)
		got := Reason("")
		if err != nil {
			got = err.Reason
		}
		if got != c.reason {
			t.Errorf("Decode(%s, %s) = %v; want reason %q", c.sensor.Name, c.payload, err, c.reason)
		}
	}
}

func TestTime(t *testing.T) {
	for _, c := range []struct {
		t        int64 // device time, ms; 0 for none
		want     time.Time
		device   bool
		fallback bool
	}{
		{0, recv, false, false},
		{recv.Add(-time.Hour).UnixMilli(), recv.Add(-time.Hour).Add(7), true, false},   // seq 7 in the nanoseconds
		{recv.Add(time.Minute).UnixMilli(), recv.Add(time.Minute).Add(7), true, false}, // within MaxFuture
		{recv.Add(time.Hour).UnixMilli(), recv, false, true},                           // clock ahead
		{1000, recv, false, true},                                      // never synced
		{recv.Add(-8 * 24 * time.Hour).UnixMilli(), recv, false, true}, // older than MaxAge
	} {
		p := `{"boot":1,"seq":7,"temperature":20,"humidity":50}`
		if c.t != 0 {
			p = `{"boot":1,"seq":7,"temperature":20,"humidity":50,"t":` + itoa(c.t) + `}`
		}
		r, err := Decode("n", Sensors["dht22"], []byte(p), recv)
		if err != nil {
			t.Fatal(err)
		}
		if !r.Time.Equal(c.want) || r.DeviceTime != c.device || r.ClockFallback != c.fallback {
			t.Errorf("t=%d: time %s device %v fallback %v; want %s %v %v", c.t, r.Time, r.DeviceTime, r.ClockFallback, c.want, c.device, c.fallback)
		}
	}
}

func itoa(v int64) string {
	b := []byte{}
	for v > 0 {
		b = append([]byte{byte('0' + v%10)}, b...)
		v /= 10
	}
	return string(b)
}

func TestNodeFromTopic(t *testing.T) {
	for topic, want := range map[string]string{
		"sensors/bench-1/reading":    "bench-1",
		"sensors/bench-1/status":     "",
		"sensors//reading":           "",
		"sensors/a/b/reading":        "",
		"$share/x/sensors/a/reading": "",
	} {
		if got := NodeFromTopic(topic); got != want {
			t.Errorf("NodeFromTopic(%q) = %q; want %q", topic, got, want)
		}
	}
}

// FuzzDecode: no payload makes Decode panic, and what it accepts is in
// range.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"boot":3,"seq":7,"temperature":21.5,"humidity":48.25,"rssi":-61,"fw":"1.4.0","t":1767225600123}`))
	f.Add([]byte(`{"boot":1,"seq":1,"seq":2}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		// The fast splitter agrees with encoding/json.
		if fields, err := object(b); err == nil {
			var m map[string]json.RawMessage
			if json.Unmarshal(b, &m) != nil || len(m) != len(fields) {
				t.Fatalf("object(%q) = %d fields; encoding/json: %v", b, len(fields), m)
			}
			for _, f := range fields {
				if !bytes.Equal(bytes.TrimSpace(m[f.key]), f.raw) {
					t.Fatalf("object(%q): %s = %q; encoding/json: %q", b, f.key, f.raw, m[f.key])
				}
			}
		}
		r, err := Decode("n", Sensors["dht11"], b, recv)
		if err == nil && (r.Temperature < -20 || r.Temperature > 60 || r.Humidity < 0 || r.Humidity > 100 || !fwOK(r.Firmware)) {
			t.Fatalf("accepted %+v", r)
		}
	})
}

func fwOK(s string) bool { return s == "" || fwRe.MatchString(s) }
