package health

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// ConfigPath is where the health program's configuration lies on the
// gateway; appliance's health module writes it from the site's spec.
const ConfigPath = "/etc/appliance/health.json"

// StateDir is the program's own folder (the unit's StateDirectory): the
// journal cursor and the last status.
const StateDir = "/var/lib/appliance-health"

// Config is everything the health program needs. Secrets are not in it,
// only the files that hold them; a path may start with
// $CREDENTIALS_DIRECTORY/, where systemd puts the unit's credentials.
type Config struct {
	// Site names the site, for the status.
	Site string `json:"site"`
	// Interval is how often the program takes a snapshot and writes it.
	Interval Duration `json:"interval"`
	InfluxDB InfluxDB `json:"influxdb"`
	// IngestMetrics is the URL of the ingest service's /metrics, on
	// loopback: spool, write errors and each node's last reading.
	IngestMetrics string `json:"ingest_metrics"`
	// DataPath is a folder on the partition that holds the database;
	// its file system's use is reported.
	DataPath string `json:"data_path"`
	// Journal is the command that follows the journal of Mosquitto and
	// of Nginx's OTA log as JSON lines (journalctl -o json -f …). The
	// program adds --after-cursor= to go on where it stopped.
	Journal []string `json:"journal"`
	// Certificates are the site's certificates whose expiry is watched.
	Certificates []Certificate `json:"certificates"`
	// Nodes are the site's nodes by name.
	Nodes map[string]Node `json:"nodes"`
	// OTAPath is the URL path of the OTA tree, with slashes around;
	// OTADir is the tree on the gateway, whose manifests name the
	// version of each image (an image's URL names only its digest).
	OTAPath string `json:"ota_path"`
	OTADir  string `json:"ota_dir,omitempty"`
	// StateDir holds the journal cursor and status.json.
	StateDir string `json:"state_dir"`
}

// InfluxDB is where the health points go: the readings' database.
type InfluxDB struct {
	URL     string `json:"url"`
	Version int    `json:"version"`
	CAFile  string `json:"ca_file,omitempty"`
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

// Certificate is one certificate of the gateway: a PEM file (the CA,
// a server's or a client's certificate). The nodes' certificates are
// read off their OTA requests, as Nginx logs them.
type Certificate struct {
	Name string `json:"name"`
	// Kind is "ca", "server" or "client".
	Kind string `json:"kind"`
	File string `json:"file"`
}

// Node is one sensor node.
type Node struct {
	Group string `json:"group,omitempty"`
	// Interval is how often the node sends a reading.
	Interval Duration `json:"interval"`
	// Firmware is the firmware block the node follows.
	Firmware string `json:"firmware,omitempty"`
}

// Image is a firmware image the OTA tree serves.
type Image struct {
	Firmware string `json:"firmware"`
	Version  string `json:"version"`
}

// Duration is a time.Duration written as "30s" in JSON.
type Duration time.Duration

// MarshalJSON writes the duration as Go writes it.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads "30s", "1m30s" and the like.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("a duration is a string such as \"30s\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// LoadConfig reads and checks a configuration file.
func LoadConfig(path string) (Config, error) {
	var c Config
	b, err := os.ReadFile(path)
	if err != nil {
		return c, fmt.Errorf("reading the configuration: %w", err)
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("%s: %w", path, err)
	}
	if err := c.Validate(); err != nil {
		return c, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// Validate checks the configuration and fills in defaults.
func (c *Config) Validate() error {
	var errs []error
	if c.Interval == 0 {
		c.Interval = Duration(30 * time.Second)
	}
	if time.Duration(c.Interval) < time.Second {
		errs = append(errs, fmt.Errorf("interval %s is under a second", time.Duration(c.Interval)))
	}
	if c.InfluxDB.URL == "" {
		errs = append(errs, errors.New("influxdb.url is missing"))
	}
	if v := c.InfluxDB.Version; v != 1 && v != 2 {
		errs = append(errs, fmt.Errorf("influxdb.version is %d, want 1 or 2", v))
	}
	if c.StateDir == "" {
		c.StateDir = StateDir
	}
	if c.OTAPath == "" {
		c.OTAPath = "/ota/"
	}
	for name, n := range c.Nodes {
		if n.Interval <= 0 {
			errs = append(errs, fmt.Errorf("node %s has no interval", name))
		}
	}
	for _, ce := range c.Certificates {
		if ce.File == "" {
			errs = append(errs, fmt.Errorf("certificate %s has no file", ce.Name))
		}
	}
	return errors.Join(errs...)
}

// expand resolves $CREDENTIALS_DIRECTORY in a path.
func expand(path string) (string, error) {
	if !strings.Contains(path, "$") {
		return path, nil
	}
	d := os.Getenv("CREDENTIALS_DIRECTORY")
	if d == "" || !strings.HasPrefix(path, "$CREDENTIALS_DIRECTORY/") {
		return "", fmt.Errorf("%s: only $CREDENTIALS_DIRECTORY may be used, and it is not set (start the program from its unit)", path)
	}
	return d + strings.TrimPrefix(path, "$CREDENTIALS_DIRECTORY"), nil
}

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
