// Package wire decodes and checks the readings that sensor nodes publish:
// one small JSON object per MQTT message on sensors/NODE/reading. It
// owns the payload format (docs/wire.md is its description for firmware
// authors) and the list of reasons a message is refused. It knows nothing
// of MQTT sessions or InfluxDB: it turns bytes into a Reading or a Reason.
package wire

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// TopicPrefix and TopicSuffix frame a node's reading topic:
// sensors/NODE/reading. The broker's ACL lets node NODE publish only
// under sensors/NODE/, so the topic names the sender.
const (
	TopicPrefix = "sensors/"
	TopicSuffix = "/reading"
	// TopicFilter subscribes to every node's readings.
	TopicFilter = "sensors/+/reading"
)

// MaxPayload is the largest payload accepted. A reading is about 150
// bytes; anything near this size is not a reading, and refusing it early
// keeps a misbehaving node from making ingest parse megabytes.
const MaxPayload = 1024

// Clock limits: a device time is used only when it is plausible, else the
// receive time stands in for it (and the fallback is counted).
const (
	// MaxFuture is how far ahead of ingest's clock a device time may be:
	// node clocks synced by SNTP agree to well under a second.
	MaxFuture = 2 * time.Minute
	// MaxAge is how far behind a device time may be. Older readings are
	// legitimate when the broker held them while ingest was away, but a
	// week is longer than any spool or broker queue holds them.
	MaxAge = 7 * 24 * time.Hour
)

// minDeviceTime rejects device clocks that never synced: an ESP32 boots
// at the Unix epoch.
var minDeviceTime = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)

// Reason is why a message was refused. Reasons are metric label values:
// a short, fixed set.
type Reason string

// Reasons a message is refused.
const (
	BadTopic        Reason = "bad_topic"        // not sensors/NODE/reading
	UnknownNode     Reason = "unknown_node"     // NODE is not in the site's node table
	TooLarge        Reason = "too_large"        // payload over MaxPayload
	Malformed       Reason = "malformed_json"   // not one JSON object (includes nan, inf)
	MissingField    Reason = "missing_field"    // a required field is absent or null
	WrongType       Reason = "wrong_type"       // e.g. "21.5" (a string) for temperature
	NotFinite       Reason = "not_finite"       // a number too large for a float64 (1e999)
	OutOfRange      Reason = "out_of_range"     // outside the sensor's range, or a bad seq/boot/rssi
	BadFirmwareName Reason = "bad_fw_version"   // fw is not a plain version string
	DuplicateField  Reason = "duplicate_field"  // a key appears twice: which one would count?
	NotUTF8         Reason = "invalid_encoding" // payload is not UTF-8
	// Overflow is a QoS 0 message that found ingest's queue full: QoS 0
	// is outside the broker's flow control, so a flood of it is shed
	// rather than allowed to block the MQTT connection.
	Overflow Reason = "qos0_overflow"
)

// Reasons lists every Reason, so metrics can show zeros.
var Reasons = []Reason{BadTopic, UnknownNode, TooLarge, Malformed, MissingField, WrongType, NotFinite, OutOfRange, BadFirmwareName, DuplicateField, NotUTF8, Overflow}

// Error is a refused message: the reason and a detail for the log.
type Error struct {
	Reason Reason
	Detail string
}

func (e *Error) Error() string { return string(e.Reason) + ": " + e.Detail }

func refuse(r Reason, format string, args ...any) *Error {
	return &Error{Reason: r, Detail: fmt.Sprintf(format, args...)}
}

// Sensor is a sensor type with the values it can report. The ranges are
// the datasheets' widest, with humidity clipped to what is physical: a
// value outside them is a failed read (the DHT's famous -999 and
// 3276.7), not weather.
type Sensor struct {
	Name             string
	MinTemp, MaxTemp float64 // °C
	MinHum, MaxHum   float64 // %RH
}

// Sensors are the sensor types a node may carry (spec: sensor.type).
var Sensors = map[string]Sensor{
	// DHT11: 0…50 °C and 20…90 %RH in the original datasheet; newer
	// parts (ASAIR DHT11 v2) read -20…60 °C and 5…95 %RH.
	"dht11": {Name: "dht11", MinTemp: -20, MaxTemp: 60, MinHum: 0, MaxHum: 100},
	// DHT22 / AM2302: -40…80 °C, 0…100 %RH.
	"dht22": {Name: "dht22", MinTemp: -40, MaxTemp: 80, MinHum: 0, MaxHum: 100},
}

// Reading is one checked reading.
type Reading struct {
	Node        string
	Boot        uint32
	Seq         uint32
	Temperature float64 // °C
	Humidity    float64 // %RH
	RSSI        int     // dBm; valid when HasRSSI
	HasRSSI     bool
	Firmware    string // the node's firmware version, "" when not sent
	// Time is when the reading was taken: the device's clock when it
	// sent a plausible one, else the receive time.
	Time time.Time
	// DeviceTime reports whether Time came from the device.
	DeviceTime bool
	// ClockFallback is set when the device sent a time that was not
	// plausible and the receive time was used instead.
	ClockFallback bool
}

// NodeFromTopic returns the node that a reading topic names, or "" when
// the topic is not sensors/NODE/reading.
func NodeFromTopic(topic string) string {
	rest, ok := strings.CutPrefix(topic, TopicPrefix)
	if !ok {
		return ""
	}
	node, ok := strings.CutSuffix(rest, TopicSuffix)
	if !ok || node == "" || strings.ContainsAny(node, "/+#") {
		return ""
	}
	return node
}

var fwRe = regexp.MustCompile(`^[0-9A-Za-z][0-9A-Za-z.+_-]{0,31}$`)

// fields the payload may carry; others are ignored so that newer firmware
// can add some without older ingest refusing every message.
const (
	fBoot = "boot"
	fSeq  = "seq"
	fTime = "t"
	fTemp = "temperature"
	fHum  = "humidity"
	fRSSI = "rssi"
	fFW   = "fw"
)

// Decode checks a payload from node (already known to the site) with
// sensor s, received at recv. It returns the Reading or an *Error.
func Decode(node string, s Sensor, payload []byte, recv time.Time) (Reading, *Error) {
	r := Reading{Node: node, Time: recv}
	if len(payload) > MaxPayload {
		return r, refuse(TooLarge, "%d bytes, at most %d", len(payload), MaxPayload)
	}
	fields, err := object(payload)
	if err != nil {
		return r, err
	}

	boot, err := integer(fields, fBoot, true, 0, math.MaxUint32)
	if err != nil {
		return r, err
	}
	seq, err := integer(fields, fSeq, true, 0, math.MaxUint32)
	if err != nil {
		return r, err
	}
	r.Boot, r.Seq = uint32(boot), uint32(seq)

	if r.Temperature, err = float(fields, fTemp, s.MinTemp, s.MaxTemp, s.Name, "°C"); err != nil {
		return r, err
	}
	if r.Humidity, err = float(fields, fHum, s.MinHum, s.MaxHum, s.Name, "%RH"); err != nil {
		return r, err
	}
	if _, ok := fields.get(fRSSI); ok {
		v, err := integer(fields, fRSSI, false, -127, 0)
		if err != nil {
			return r, err
		}
		r.RSSI, r.HasRSSI = int(v), true
	}
	if raw, ok := fields.get(fFW); ok && string(raw) != "null" {
		var fw string
		if raw[0] != '"' || json.Unmarshal(raw, &fw) != nil {
			return r, refuse(WrongType, "fw is %s, want a string", kind(raw))
		}
		if !fwRe.MatchString(fw) {
			return r, refuse(BadFirmwareName, "fw %q is not a version (letters, digits, . + _ -, at most 32)", fw)
		}
		r.Firmware = fw
	}
	if _, ok := fields.get(fTime); ok {
		ms, err := integer(fields, fTime, false, 0, math.MaxInt64/int64(time.Millisecond))
		if err != nil {
			return r, err
		}
		t := time.UnixMilli(ms)
		if t.Before(minDeviceTime) || t.After(recv.Add(MaxFuture)) || t.Before(recv.Add(-MaxAge)) {
			r.ClockFallback = true
		} else {
			// The nanoseconds under the millisecond carry the sequence
			// number: InfluxDB keeps one point per series and time, so
			// two readings stamped in the same millisecond (a clock
			// stepped back by SNTP) would otherwise overwrite each
			// other, while a redelivery of the same reading still maps
			// to the same point.
			r.Time, r.DeviceTime = t.Add(time.Duration(r.Seq%1_000_000)), true
		}
	}
	return r, nil
}

// obj is a payload's top-level fields, in order. A reading has seven at
// most, so a slice searched in order beats a map, and allocates once.
type obj []kv

type kv struct {
	key string
	raw []byte
}

func (o obj) get(key string) ([]byte, bool) {
	for _, f := range o {
		if f.key == key {
			return f.raw, true
		}
	}
	return nil, false
}

// object splits a payload into its top-level fields, refusing anything
// but one JSON object with unique keys.
func object(payload []byte) (obj, *Error) {
	// encoding/json lets invalid UTF-8 through inside strings (and
	// replaces it when decoding): check it first.
	if !utf8.Valid(payload) {
		return nil, refuse(NotUTF8, "payload is not UTF-8")
	}
	if !json.Valid(payload) {
		return nil, refuse(Malformed, "not valid JSON: %s", snippet(payload))
	}
	// The payload is valid JSON from here on, which keeps the splitting
	// below simple: it only has to find where each value ends.
	i := skipSpace(payload, 0)
	if payload[i] != '{' {
		return nil, refuse(Malformed, "not a JSON object: %s", snippet(payload))
	}
	fields := make(obj, 0, 8)
	i = skipSpace(payload, i+1)
	for payload[i] != '}' {
		kend := stringEnd(payload, i)
		key := string(payload[i+1 : kend-1])
		if bytes.IndexByte(payload[i:kend], '\\') >= 0 {
			json.Unmarshal(payload[i:kend], &key) // valid: cannot fail
		}
		i = skipSpace(payload, kend)
		i = skipSpace(payload, i+1) // the colon
		vend := valueEnd(payload, i)
		if _, dup := fields.get(key); dup {
			return nil, refuse(DuplicateField, "%q appears twice", key)
		}
		fields = append(fields, kv{key, payload[i:vend]})
		i = skipSpace(payload, vend)
		if payload[i] == ',' {
			i = skipSpace(payload, i+1)
		}
	}
	return fields, nil
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// stringEnd returns the index after the string starting at b[i] == '"'.
func stringEnd(b []byte, i int) int {
	for i++; b[i] != '"'; i++ {
		if b[i] == '\\' {
			i++
		}
	}
	return i + 1
}

// valueEnd returns the index after the value starting at b[i].
func valueEnd(b []byte, i int) int {
	switch b[i] {
	case '"':
		return stringEnd(b, i)
	case '{', '[':
		depth := 0
		for ; ; i++ {
			switch b[i] {
			case '"':
				i = stringEnd(b, i) - 1
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return i + 1
				}
			}
		}
	}
	for i < len(b) && !strings.ContainsRune(" \t\n\r,}]", rune(b[i])) {
		i++
	}
	return i
}

// integer reads a whole number in [lo, hi]. "21.0" is accepted (JSON has
// one number type and some encoders always write a fraction); 21.5 is not.
func integer(fields obj, key string, required bool, lo, hi int64) (int64, *Error) {
	raw, ok := fields.get(key)
	if !ok || string(raw) == "null" {
		if required {
			return 0, refuse(MissingField, "%s is required", key)
		}
		return 0, nil
	}
	if !isNumber(raw) {
		return 0, refuse(WrongType, "%s is %s, want a number", key, kind(raw))
	}
	if v, err := strconv.ParseInt(string(raw), 10, 64); err == nil {
		if v < lo || v > hi {
			return 0, refuse(OutOfRange, "%s = %d, want %d…%d", key, v, lo, hi)
		}
		return v, nil
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil || math.IsInf(f, 0) {
		return 0, refuse(NotFinite, "%s = %s is not a finite number", key, snippet(raw))
	}
	if f != math.Trunc(f) {
		return 0, refuse(WrongType, "%s = %s, want a whole number", key, snippet(raw))
	}
	if f < float64(lo) || f > float64(hi) {
		return 0, refuse(OutOfRange, "%s = %s, want %d…%d", key, snippet(raw), lo, hi)
	}
	return int64(f), nil
}

// float reads a required finite number in [lo, hi].
func float(fields obj, key string, lo, hi float64, sensor, unit string) (float64, *Error) {
	raw, ok := fields.get(key)
	if !ok || string(raw) == "null" {
		return 0, refuse(MissingField, "%s is required", key)
	}
	if !isNumber(raw) {
		return 0, refuse(WrongType, "%s is %s, want a number", key, kind(raw))
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, refuse(NotFinite, "%s = %s is not a finite number", key, snippet(raw))
	}
	if f < lo || f > hi {
		return 0, refuse(OutOfRange, "%s = %g %s is outside the %s's range %g…%g", key, f, unit, sensor, lo, hi)
	}
	return f, nil
}

func isNumber(raw []byte) bool {
	return len(raw) > 0 && (raw[0] == '-' || raw[0] >= '0' && raw[0] <= '9')
}

func kind(raw []byte) string {
	switch raw[0] {
	case '"':
		return "a string"
	case '{':
		return "an object"
	case '[':
		return "an array"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}

// snippet quotes the start of a payload for a log line, safely.
func snippet(b []byte) string {
	const max = 40
	if len(b) > max {
		return strconv.Quote(string(b[:max])) + "…"
	}
	return strconv.Quote(string(b))
}
