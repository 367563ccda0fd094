package ingest

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/appliance/appliance/ingest/wire"
)

// Config is everything the service needs, read from a JSON file
// (/etc/appliance/ingest.json on the gateway, which appliance's ingest
// module writes from the site's spec). Secrets are not in it, only the files that hold
// them. A file path may start with $CREDENTIALS_DIRECTORY/, which is
// where systemd puts the files the unit loads with LoadCredential=.
type Config struct {
	MQTT     MQTT     `json:"mqtt"`
	InfluxDB InfluxDB `json:"influxdb"`
	// BatchSize is the most points written in one request.
	BatchSize int `json:"batch_size"`
	// FlushInterval is the longest a reading waits in ingest for its
	// batch to fill before it is written.
	FlushInterval Duration `json:"flush_interval"`
	Spool         Spool    `json:"spool"`
	// Listen is where /metrics and /healthz are served: keep it on
	// loopback, they are not authenticated.
	Listen string `json:"listen"`
	// Nodes are the site's nodes by name. Readings from other names are
	// refused.
	Nodes map[string]Node `json:"nodes"`
}

// MQTT is the broker connection.
type MQTT struct {
	// Broker is host:port of the broker's TLS listener.
	Broker string `json:"broker"`
	// ServerName is the name the broker's certificate must carry.
	ServerName string `json:"server_name"`
	CAFile     string `json:"ca_file"`
	CertFile   string `json:"cert_file"`
	KeyFile    string `json:"key_file"`
	ClientID   string `json:"client_id"`
	// Topic is the filter of reading topics: sensors/+/reading.
	Topic string `json:"topic"`
	// SharedGroup, when set, subscribes as $share/GROUP/TOPIC so that
	// several ingest instances split the stream.
	SharedGroup string `json:"shared_group,omitempty"`
	// SessionExpiry is how long the broker keeps ingest's session, and
	// queues readings for it, while ingest is away.
	SessionExpiry Duration `json:"session_expiry"`
	// ReceiveMaximum is how many unacknowledged readings the broker may
	// send at once: it bounds ingest's memory, and must cover the
	// readings that arrive during one spool fsync.
	ReceiveMaximum int      `json:"receive_maximum"`
	KeepAlive      Duration `json:"keep_alive"`
}

// InfluxDB is where readings go.
type InfluxDB struct {
	URL     string `json:"url"`
	Version int    `json:"version"`
	// CAFile verifies an https URL's certificate.
	CAFile string `json:"ca_file,omitempty"`
	// 2.x
	Org       string `json:"org,omitempty"`
	Bucket    string `json:"bucket,omitempty"`
	TokenFile string `json:"token_file,omitempty"`
	// 1.x
	Database        string `json:"database,omitempty"`
	RetentionPolicy string `json:"retention_policy,omitempty"`
	User            string `json:"user,omitempty"`
	PasswordFile    string `json:"password_file,omitempty"`
}

// Spool is the write-ahead spool.
type Spool struct {
	Dir      string `json:"dir"`
	MaxBytes int64  `json:"max_bytes"`
}

// Node is what ingest knows of a node: it becomes the reading's tags.
type Node struct {
	Sensor   string            `json:"sensor"`
	Group    string            `json:"group"`
	Firmware string            `json:"firmware,omitempty"`
	Tags     map[string]string `json:"tags,omitempty"`
}

// Duration is a time.Duration written as "1s" in JSON.
type Duration time.Duration

// MarshalJSON implements json.Marshaler.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON implements json.Unmarshaler.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("a duration is a string such as \"1s\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Defaults for what a config leaves out.
const (
	DefaultBatchSize      = 5000
	DefaultFlushInterval  = 500 * time.Millisecond
	DefaultSpoolSize      = 256 << 20
	DefaultClientID       = "appliance-ingest"
	DefaultSessionExpiry  = 7 * 24 * time.Hour
	DefaultReceiveMaximum = 1024
	DefaultKeepAlive      = 30 * time.Second
	// SharedGroup is the shared-subscription group of ingest instances.
	SharedGroup = "ingest"
	// User is ingest's user in InfluxDB 1.x.
	User = "ingest"
	// SpoolDir is the unit's state folder (StateDirectory=).
	SpoolDir = "/var/lib/appliance-ingest"
)

// Credential names: the files the unit loads with LoadCredential= and
// the config reads from $CREDENTIALS_DIRECTORY.
const (
	CredCA       = "ca.crt"
	CredCert     = "ingest.crt"
	CredKey      = "ingest.key"
	CredToken    = "influxdb-token"
	CredPassword = "influxdb-password"
)

// LoadConfig reads and checks a config file.
func LoadConfig(path string) (Config, error) {
	var c Config
	b, err := os.ReadFile(path)
	if err != nil {
		return c, fmt.Errorf("ingest config: %w", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return c, fmt.Errorf("ingest config %s: %w", path, err)
	}
	if err := c.Validate(); err != nil {
		return c, fmt.Errorf("ingest config %s: %w", path, err)
	}
	return c, nil
}

var (
	nodeRe   = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	tagKeyRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,31}$`)
	groupRe  = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
)

// reservedTags are the tags ingest writes itself.
var reservedTags = map[string]bool{"node": true, "group": true, "firmware": true, "sensor": true}

// Validate fills defaults and checks the config, naming every problem.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	m := &c.MQTT
	if _, _, err := net.SplitHostPort(m.Broker); err != nil {
		bad("mqtt.broker %q: want host:port of the broker's TLS listener", m.Broker)
	}
	for name, v := range map[string]string{"mqtt.server_name": m.ServerName, "mqtt.ca_file": m.CAFile, "mqtt.cert_file": m.CertFile, "mqtt.key_file": m.KeyFile, "mqtt.client_id": m.ClientID} {
		if v == "" {
			bad("%s is required", name)
		}
	}
	if m.Topic == "" {
		m.Topic = wire.TopicFilter
	}
	if strings.HasPrefix(m.Topic, "$share/") {
		bad("mqtt.topic %q: set mqtt.shared_group instead of writing $share/ in the topic", m.Topic)
	}
	if m.SharedGroup != "" && !groupRe.MatchString(m.SharedGroup) {
		bad("mqtt.shared_group %q: use letters, digits, '-' and '_'", m.SharedGroup)
	}
	if m.SessionExpiry == 0 {
		m.SessionExpiry = Duration(DefaultSessionExpiry)
	}
	if m.SessionExpiry < Duration(time.Minute) || time.Duration(m.SessionExpiry) > time.Duration(1<<32-1)*time.Second {
		bad("mqtt.session_expiry %s: between 1m and 136y", time.Duration(m.SessionExpiry))
	}
	if m.ReceiveMaximum == 0 {
		m.ReceiveMaximum = DefaultReceiveMaximum
	}
	if m.ReceiveMaximum < 1 || m.ReceiveMaximum > 65535 {
		bad("mqtt.receive_maximum %d: 1…65535", m.ReceiveMaximum)
	}
	if m.KeepAlive == 0 {
		m.KeepAlive = Duration(DefaultKeepAlive)
	}
	if m.KeepAlive < Duration(time.Second) || m.KeepAlive > Duration(65535*time.Second) {
		bad("mqtt.keep_alive %s: 1s…18h", time.Duration(m.KeepAlive))
	}

	in := &c.InfluxDB
	switch in.Version {
	case 1:
		if in.Database == "" {
			bad("influxdb.database is required for InfluxDB 1")
		}
		if in.User != "" && in.PasswordFile == "" {
			bad("influxdb.password_file is required with influxdb.user")
		}
	case 2:
		if in.Org == "" || in.Bucket == "" || in.TokenFile == "" {
			bad("influxdb.org, influxdb.bucket and influxdb.token_file are required for InfluxDB 2")
		}
	default:
		bad("influxdb.version %d: use 1 or 2", in.Version)
	}
	if !strings.HasPrefix(in.URL, "http://") && !strings.HasPrefix(in.URL, "https://") {
		bad("influxdb.url %q: want http://host:port or https://host:port", in.URL)
	}

	if c.BatchSize == 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.BatchSize < 1 || c.BatchSize > 100_000 {
		bad("batch_size %d: 1…100000", c.BatchSize)
	}
	if c.FlushInterval == 0 {
		c.FlushInterval = Duration(DefaultFlushInterval)
	}
	if c.FlushInterval < Duration(time.Millisecond) || c.FlushInterval > Duration(time.Minute) {
		bad("flush_interval %s: 1ms…1m", time.Duration(c.FlushInterval))
	}
	if c.Spool.Dir == "" {
		bad("spool.dir is required")
	}
	if c.Spool.MaxBytes == 0 {
		c.Spool.MaxBytes = DefaultSpoolSize
	}
	if c.Spool.MaxBytes < 4<<20 {
		bad("spool.max_bytes %d: at least 4 MiB", c.Spool.MaxBytes)
	}
	if c.Listen != "" {
		if _, _, err := net.SplitHostPort(c.Listen); err != nil {
			bad("listen %q: want host:port (loopback)", c.Listen)
		}
	}
	if len(c.Nodes) == 0 {
		bad("nodes: no node is configured, so every reading would be refused")
	}
	names := make([]string, 0, len(c.Nodes))
	for n := range c.Nodes {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		n := c.Nodes[name]
		if !nodeRe.MatchString(name) {
			bad("nodes: %q is not a node name", name)
		}
		if _, ok := wire.Sensors[n.Sensor]; !ok {
			bad("nodes.%s.sensor %q: use dht11 or dht22", name, n.Sensor)
		}
		for k, v := range n.Tags {
			switch {
			case !tagKeyRe.MatchString(k):
				bad("nodes.%s.tags: %q is not a tag key", name, k)
			case reservedTags[k]:
				bad("nodes.%s.tags: %q is written by ingest itself", name, k)
			case strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 || r == 0x7f }) || len(v) > 128:
				bad("nodes.%s.tags.%s: at most 128 characters without control characters", name, k)
			}
		}
	}
	return errors.Join(errs...)
}

// Subscription is the topic filter ingest subscribes to.
func (c *Config) Subscription() string {
	if c.MQTT.SharedGroup != "" {
		return "$share/" + c.MQTT.SharedGroup + "/" + c.MQTT.Topic
	}
	return c.MQTT.Topic
}

// expand resolves $CREDENTIALS_DIRECTORY in a configured path.
func expand(path string) (string, error) {
	var missing bool
	p := os.Expand(path, func(v string) string {
		if v != "CREDENTIALS_DIRECTORY" {
			missing = true
			return "$" + v
		}
		d := os.Getenv(v)
		if d == "" {
			missing = true
		}
		return d
	})
	if missing {
		return "", fmt.Errorf("%s: only $CREDENTIALS_DIRECTORY may appear in a path, and it is set only when systemd starts ingest with LoadCredential=", path)
	}
	return p, nil
}

// readSecret reads a one-line secret file.
func readSecret(path string) (string, error) {
	p, err := expand(path)
	if err != nil {
		return "", err
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
