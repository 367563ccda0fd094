package sensor_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/appliance/appliance/ingest/wire"
)

type reading struct {
	boot, seq uint32
	t         int64 // ms, -1 for none
	temp, hum int   // tenths
	rssi      *int
	fw        string
}

func (r reading) line() string {
	rssi := "-"
	if r.rssi != nil {
		rssi = strconv.Itoa(*r.rssi)
	}
	fw := r.fw
	if fw == "" {
		fw = "-"
	}
	return fmt.Sprintf("%d %d %d %d %d %s %s", r.boot, r.seq, r.t, r.temp, r.hum, rssi, fw)
}

func intp(v int) *int { return &v }

// TestPayloadDecodes has the core write payloads for edge and random
// readings and decodes each with ingest/wire: every field arrives with
// its value, a firmware version ingest would refuse is left out rather
// than sent, and the documented example is written byte for byte.
func TestPayloadDecodes(t *testing.T) {
	_, tool := programs(t)
	recv := time.Now()
	ms := recv.UnixMilli()
	readings := []reading{
		{17, 4211, 1767225600123, 214, 482, intp(-61), "1.4.0"},
		{0, 0, -1, 0, 0, nil, ""},
		{math.MaxUint32, math.MaxUint32, ms, -400, 1000, intp(-127), "v2+build_7-rc.1"},
		{1, 2, ms - 3600_000, -5, 1, intp(0), "x"},
		{1, 3, ms, -1, 999, nil, ".leading-dot"},
		{1, 4, ms, 800, 0, nil, "has,comma"},
		{1, 5, ms, 799, 500, nil, strings.Repeat("9", 32)},
		{1, 6, ms, 100, 500, nil, strings.Repeat("9", 33)},
	}
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 7))
	for range 500 {
		r := reading{boot: rng.Uint32(), seq: rng.Uint32(), t: -1, temp: rng.IntN(1201) - 400, hum: rng.IntN(1001), fw: "1." + strconv.Itoa(rng.IntN(100))}
		if rng.IntN(2) == 0 {
			r.t = ms - rng.Int64N(int64(6*24*time.Hour/time.Millisecond))
		}
		if rng.IntN(2) == 0 {
			r.rssi = intp(-rng.IntN(128))
		}
		readings = append(readings, r)
	}
	var in strings.Builder
	for _, r := range readings {
		in.WriteString(r.line() + "\n")
	}
	out := strings.Split(strings.TrimSuffix(run(t, in.String(), tool, "payload"), "\n"), "\n")
	if len(out) != len(readings) {
		t.Fatalf("%d payloads for %d readings", len(out), len(readings))
	}
	if want := `{"boot":17,"seq":4211,"t":1767225600123,"temperature":21.4,"humidity":48.2,"rssi":-61,"fw":"1.4.0"}`; out[0] != want {
		t.Errorf("the documented example:\n got %s\nwant %s", out[0], want)
	}
	for i, r := range readings {
		got, err := wire.Decode("bench-1", wire.Sensors["dht22"], []byte(out[i]), recv)
		if err != nil {
			t.Errorf("seed %d: %s: ingest refuses %s: %v", seed, r.line(), out[i], err)
			continue
		}
		wantFW := r.fw
		if _, ok := (map[string]bool{".leading-dot": true, "has,comma": true, strings.Repeat("9", 33): true})[r.fw]; ok {
			wantFW = ""
		}
		switch {
		case got.Boot != r.boot || got.Seq != r.seq:
			t.Errorf("%s: boot %d seq %d", out[i], got.Boot, got.Seq)
		case got.Temperature != float64(r.temp)/10 || got.Humidity != float64(r.hum)/10:
			t.Errorf("%s: %v °C %v %%RH, want %d and %d tenths", out[i], got.Temperature, got.Humidity, r.temp, r.hum)
		case got.HasRSSI != (r.rssi != nil) || (r.rssi != nil && got.RSSI != *r.rssi):
			t.Errorf("%s: rssi %v %d", out[i], got.HasRSSI, got.RSSI)
		case got.Firmware != wantFW:
			t.Errorf("%s: fw %q, want %q", out[i], got.Firmware, wantFW)
		case r.t >= 0 && r.t > ms-int64(7*24*time.Hour/time.Millisecond) && (!got.DeviceTime || got.Time.UnixMilli() != r.t):
			t.Errorf("%s: time %v (device %v), want %d ms", out[i], got.Time, got.DeviceTime, r.t)
		case r.t < 0 && got.DeviceTime:
			t.Errorf("%s: a device time without t", out[i])
		}
	}
}

// TestDHTRangesAgree encodes DHT frames in Go, for every value around
// the ranges' edges and for bad checksums and signs, has the core decode
// them through its pulse decoder, and checks that what the core accepts
// ingest accepts with the same value, and that what it refuses as out of
// range ingest would refuse too: the device never sends a reading the
// gateway drops, nor drops one it would keep.
func TestDHTRangesAgree(t *testing.T) {
	_, tool := programs(t)
	for _, sensor := range []string{"dht11", "dht22"} {
		s := wire.Sensors[sensor]
		type frame struct {
			b        [5]byte
			temp, hm int // the tenths it encodes
			valid    bool
		}
		var frames []frame
		add := func(temp, hum int, badSum bool) {
			var b [5]byte
			at, ah := temp, hum
			if at < 0 {
				at = -at
			}
			if sensor == "dht11" {
				b = [5]byte{byte(ah / 10), byte(ah % 10), byte(at / 10), byte(at % 10)}
				if temp < 0 {
					b[3] |= 0x80
				}
			} else {
				b = [5]byte{byte(ah >> 8), byte(ah), byte(at >> 8 & 0x7f), byte(at)}
				if temp < 0 {
					b[2] |= 0x80
				}
			}
			b[4] = b[0] + b[1] + b[2] + b[3]
			if badSum {
				b[4]++
			}
			frames = append(frames, frame{b, temp, hum, !badSum})
		}
		for temp := int(s.MinTemp*10) - 15; temp <= int(s.MaxTemp*10)+15; temp++ {
			add(temp, 500, false)
		}
		for hum := 0; hum <= 1015; hum++ {
			add(215, hum, false)
		}
		add(215, 500, true)
		add(-215, 500, true)
		var in strings.Builder
		for _, f := range frames {
			fmt.Fprintf(&in, "%x\n", f.b[:])
		}
		out := strings.Split(strings.TrimSuffix(run(t, in.String(), tool, "dht", sensor), "\n"), "\n")
		if len(out) != len(frames) {
			t.Fatalf("%s: %d answers for %d frames", sensor, len(out), len(frames))
		}
		accepted := 0
		for i, f := range frames {
			payload := fmt.Sprintf(`{"boot":1,"seq":1,"temperature":%s,"humidity":%s}`, tenths(f.temp), tenths(f.hm))
			_, werr := wire.Decode("n", s, []byte(payload), time.Now())
			if !f.valid {
				if strings.HasPrefix(out[i], "ok") {
					t.Errorf("%s %x: a bad checksum decodes: %s", sensor, f.b, out[i])
				}
				continue
			}
			if out[i] == fmt.Sprintf("ok %d %d", f.temp, f.hm) {
				accepted++
				if werr != nil {
					t.Errorf("%s %x: the core accepts %s, ingest refuses it: %v", sensor, f.b, payload, werr)
				}
				continue
			}
			if werr == nil {
				t.Errorf("%s %x: the core says %s, ingest accepts %s", sensor, f.b, out[i], payload)
			} else if werr.Reason != wire.OutOfRange {
				t.Errorf("%s %x: ingest refuses %s for %s", sensor, f.b, payload, werr.Reason)
			}
		}
		if accepted < 1000 {
			t.Errorf("%s: only %d frames accepted", sensor, accepted)
		}
	}
}

func tenths(v int) string {
	sign := ""
	if v < 0 {
		sign, v = "-", -v
	}
	return fmt.Sprintf("%s%d.%d", sign, v/10, v%10)
}
