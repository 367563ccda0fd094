package health

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Entry is one journal entry as `journalctl -o json` prints it.
type Entry struct {
	Cursor     string
	Time       time.Time
	Identifier string // SYSLOG_IDENTIFIER
	Unit       string // _SYSTEMD_UNIT
	Message    string
}

// ParseEntry reads one line of `journalctl -o json`. MESSAGE is a
// string, or an array of bytes when it is not valid UTF-8; the
// timestamp is __REALTIME_TIMESTAMP, microseconds as a decimal string.
func ParseEntry(line []byte) (Entry, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(line, &raw); err != nil {
		return Entry{}, fmt.Errorf("a journal line is not JSON: %w", err)
	}
	str := func(k string) string {
		var s string
		if json.Unmarshal(raw[k], &s) != nil {
			var bs []byte
			var ints []int
			if json.Unmarshal(raw[k], &ints) == nil {
				for _, i := range ints {
					bs = append(bs, byte(i))
				}
				return string(bs)
			}
		}
		return s
	}
	e := Entry{Cursor: str("__CURSOR"), Identifier: str("SYSLOG_IDENTIFIER"), Unit: str("_SYSTEMD_UNIT"), Message: str("MESSAGE")}
	if us, err := strconv.ParseInt(str("__REALTIME_TIMESTAMP"), 10, 64); err == nil {
		e.Time = time.UnixMicro(us).UTC()
	}
	return e, nil
}

// Refusal reasons: why the broker or the OTA server turned a client
// away. Mosquitto's log says only that a certificate did not verify;
// Nginx, which asks for the certificate on the same site CA and CRL,
// says why.
const (
	NoCertificate  = "no_certificate"  // the client presented none
	Revoked        = "revoked"         // the site's CRL lists it
	WrongCA        = "wrong_ca"        // not issued by the site's CA
	Expired        = "expired"         // past its end of validity
	BadCertificate = "bad_certificate" // refused by Mosquitto, which does not say why
	ACLDenied      = "acl_denied"      // a topic or file the client may not use
	NotAuthorised  = "not_authorised"  // the broker refused the CONNECT
)

// Reasons lists the refusal reasons in the order they are shown.
var Reasons = []string{NoCertificate, Revoked, WrongCA, Expired, BadCertificate, ACLDenied, NotAuthorised}

// OTA download outcomes. Downloaded and failed come from Nginx's log;
// installed and not_installed from the version the node reports after
// a download.
const (
	Downloaded   = "downloaded"
	Failed       = "failed"
	Installed    = "installed"
	NotInstalled = "not_installed"
)

// Event is something the journal told: a refused client or an OTA
// download.
type Event struct {
	Time time.Time
	// Service is "mqtt" or "ota".
	Service string
	// Reason is a refusal's reason; "" for a download.
	Reason string
	// Client is the node or certificate name when known, else the
	// client's address.
	Client string
	// Node, Firmware, Version, Outcome and Status describe a download.
	Node, Firmware, Version, Outcome string
	Status                           int
	// CertEnd is the end of validity of the certificate a node
	// presented to Nginx (zero when unknown).
	CertEnd time.Time
}

var (
	mqttNewConn = regexp.MustCompile(`^New connection from (\S+) on port \d+\.$`)
	mqttDenied  = regexp.MustCompile(`^Denied PUBLISH from (\S+) \(`)
	mqttNotAuth = regexp.MustCompile(`^Client (\S+) disconnected, not authorised\.$`)
	// A handshake that fails while the connection is accepted is told
	// in one line instead of two.
	mqttFailed = regexp.MustCompile(`^Client connection from (\S+) failed: (.*)$`)
)

// Classifier turns journal entries into events. It keeps the address
// of the last connection Mosquitto announced, which its TLS errors do
// not repeat.
type Classifier struct {
	OTAPath      string
	Images       map[string]Image
	lastMQTTAddr string
}

// Classify returns the event an entry tells, if any.
func (c *Classifier) Classify(e Entry) (Event, bool) {
	switch {
	case e.Identifier == "nginx_ota":
		return c.ota(e)
	case e.Identifier == "mosquitto" || e.Unit == "mosquitto.service":
		return c.mqtt(e)
	}
	return Event{}, false
}

func (c *Classifier) mqtt(e Entry) (Event, bool) {
	msg := strings.TrimSpace(e.Message)
	ev := Event{Time: e.Time, Service: "mqtt", Client: c.lastMQTTAddr}
	if m := mqttNewConn.FindStringSubmatch(msg); m != nil {
		c.lastMQTTAddr = m[1]
		return Event{}, false
	}
	tlsErr := ""
	if strings.HasPrefix(msg, "OpenSSL Error[0]:") {
		tlsErr = msg
	} else if m := mqttFailed.FindStringSubmatch(msg); m != nil {
		tlsErr, ev.Client = m[2], m[1]
	}
	switch {
	case strings.Contains(tlsErr, "peer did not return a certificate"):
		ev.Reason = NoCertificate
	case strings.Contains(tlsErr, "certificate verify failed"):
		ev.Reason = BadCertificate
	case tlsErr != "":
		// A client that gave up, or a port probe.
		return Event{}, false
	default:
		if m := mqttDenied.FindStringSubmatch(msg); m != nil {
			ev.Reason, ev.Client = ACLDenied, m[1]
		} else if m := mqttNotAuth.FindStringSubmatch(msg); m != nil {
			ev.Reason, ev.Client = NotAuthorised, m[1]
		} else {
			return Event{}, false
		}
	}
	return ev, true
}

// otaLine is a line of Nginx's "ota" log format (modules/nginx.go).
type otaLine struct {
	Node       string `json:"node"`
	Verify     string `json:"verify"`
	Status     int    `json:"status"`
	URI        string `json:"uri"`
	Sent       int64  `json:"sent"`
	Completion string `json:"completion"`
	Addr       string `json:"addr"`
	// CertEnd is $ssl_client_v_end: "Sep 27 12:00:00 2031 GMT".
	CertEnd string `json:"cert_end"`
}

var imageRe = regexp.MustCompile(`^([A-Za-z0-9_-]{1,32})/([0-9a-f]{64})\.bin$`)

func (c *Classifier) ota(e Entry) (Event, bool) {
	var l otaLine
	if err := json.Unmarshal([]byte(e.Message), &l); err != nil {
		return Event{}, false
	}
	ev := Event{Time: e.Time, Service: "ota", Client: l.Node, Status: l.Status}
	if ev.Client == "" {
		ev.Client = l.Addr
	}
	if reason := verifyReason(l.Verify); reason != "" {
		ev.Reason = reason
		return ev, true
	}
	if l.Status == 403 {
		// A certificate of the site that is not a node's.
		ev.Reason = ACLDenied
		return ev, true
	}
	if l.Node == "" {
		return Event{}, false
	}
	if t, err := time.Parse("Jan _2 15:04:05 2006 MST", l.CertEnd); err == nil {
		ev.CertEnd = t.UTC()
	}
	rel := strings.TrimPrefix(path.Clean(l.URI), strings.TrimSuffix(c.OTAPath, "/")+"/")
	m := imageRe.FindStringSubmatch(rel)
	if m == nil {
		// A manifest or its signature: the node's certificate is all
		// it tells.
		return ev, !ev.CertEnd.IsZero()
	}
	img, ok := c.Images[m[2]]
	ev.Node, ev.Firmware, ev.Version = l.Node, m[1], "unknown"
	if ok {
		ev.Version = img.Version
	}
	ev.Outcome = Failed
	if (l.Status == 200 || l.Status == 206) && l.Completion == "OK" {
		ev.Outcome = Downloaded
	}
	return ev, true
}

// verifyReason maps Nginx's $ssl_client_verify to a reason; "" for a
// certificate that verified.
func verifyReason(v string) string {
	switch {
	case v == "SUCCESS":
		return ""
	case v == "NONE" || v == "":
		return NoCertificate
	case strings.Contains(v, "revoked"):
		return Revoked
	case strings.Contains(v, "expired"):
		return Expired
	case strings.Contains(v, "issuer") || strings.Contains(v, "self-signed") || strings.Contains(v, "self signed") || strings.Contains(v, "first certificate"):
		return WrongCA
	}
	return BadCertificate
}

// Follow runs the journal command and sends each entry to fn until ctx
// ends or the command stops. cursor, when set, starts after that entry;
// otherwise only new entries are read.
func Follow(ctx context.Context, argv []string, cursor string, fn func(Entry)) error {
	if len(argv) == 0 {
		<-ctx.Done()
		return nil
	}
	args := append([]string(nil), argv[1:]...)
	if cursor != "" {
		args = append(args, "--after-cursor="+cursor)
	} else {
		args = append(args, "--lines=0")
	}
	cmd := exec.CommandContext(ctx, argv[0], args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("following the journal: %w", err)
	}
	readErr := Read(out, fn)
	err = cmd.Wait()
	if ctx.Err() != nil {
		return nil
	}
	if readErr != nil {
		return readErr
	}
	if err != nil {
		return fmt.Errorf("%s: %w: %s", argv[0], err, strings.TrimSpace(stderr.String()))
	}
	return errors.New(argv[0] + " stopped")
}

// Read sends each entry of a stream of `journalctl -o json` lines to
// fn; lines that are not entries are skipped.
func Read(r io.Reader, fn func(Entry)) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if e, err := ParseEntry(sc.Bytes()); err == nil {
			fn(e)
		}
	}
	return sc.Err()
}
