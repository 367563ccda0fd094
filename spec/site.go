package spec

import (
	"net/netip"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
)

// The site's support period, in years. Five is the EU Cyber Resilience
// Act's minimum support period and how long a node's certificate has
// always lasted; the upper bound keeps the site CA, which lasts twice
// the support period, within one working life.
const (
	DefaultSupportYears = 5
	MinSupportYears     = 5
	MaxSupportYears     = 20
)

// Site is a decoded, defaulted and checked site specification.
type Site struct {
	// Location is where the spec lies and what appliance keeps beside it.
	Location Location `json:"-"`

	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	// SupportYears is the site's support period: how long everything the
	// site's CA signs lasts from its issue, so that a gateway and nodes
	// left alone keep working that long.
	SupportYears int `json:"support_years"`
	// Contact are the URIs (mailto:, https:, tel:) where vulnerabilities
	// in the site's product are reported: security.txt's Contact lines
	// and the vulnerability-handling policy's. Empty until the spec
	// names one.
	Contact []string `json:"contact,omitempty"`
	// Vendor is who puts the product on the market (the policy's
	// manufacturer); the site's name when the spec gives none.
	Vendor string `json:"vendor,omitempty"`

	Gateway  Gateway    `json:"gateway"`
	OS       OS         `json:"os"`
	MQTT     MQTT       `json:"mqtt"`
	HTTPS    HTTPS      `json:"https"`
	OTA      OTA        `json:"ota"`
	InfluxDB InfluxDB   `json:"influxdb"`
	Grafana  *Grafana   `json:"grafana,omitempty"` // nil: no Grafana on the gateway
	Firewall Firewall   `json:"firewall"`
	SSH      SSH        `json:"ssh"`
	Ingest   Ingest     `json:"ingest"`
	Firmware []Firmware `json:"firmware"`
	Nodes    []Node     `json:"nodes"`

	// Variables are the declared input variables with the source of their
	// value; sensitive values are never kept here.
	Variables []Variable `json:"variables"`
	// Pending lists attributes whose value depends on a variable that was
	// not set. Validate and plan accept them; a build refuses them.
	Pending []Pending `json:"pending,omitempty"`

	// Dir is the folder relative paths in the spec are resolved against.
	Dir string `json:"-"`
	// Files are the HCL files the spec was read from.
	Files []string `json:"files"`

	Where Where `json:"-"`
}

// Pending is an attribute that could not be evaluated because a variable
// it depends on has no value.
type Pending struct {
	Attr      string    `json:"attribute"`
	Variables []string  `json:"variables"`
	Range     hcl.Range `json:"-"`
}

// Location is where a spec lies and what appliance keeps beside it,
// decided once when the spec is loaded.
type Location struct {
	// Path is the spec as given: a file, or a folder of .hcl files.
	Path string
	// Dir is the folder the spec's relative paths start from: the
	// file's folder, or the folder spec itself.
	Dir string
	// Lock is the spec's lock: NAME.lock beside a file spec NAME.hcl (so
	// two specs in one folder do not share one), LockName inside a folder
	// spec.
	Lock string
	// State is the site's default state folder: .appliance/SITE in Dir.
	State string
}

// LockName is the lock's file name in a folder spec.
const LockName = "appliance.lock"

// locate fills in where the spec of a site lies.
func locate(path, dir string, folder bool, site string) Location {
	l := Location{Path: path, Dir: dir, State: filepath.Join(dir, ".appliance", site)}
	if folder {
		l.Lock = filepath.Join(path, LockName)
	} else {
		l.Lock = strings.TrimSuffix(path, filepath.Ext(path)) + ".lock"
	}
	return l
}

// Gateway is the single gateway of a site.
type Gateway struct {
	Name  string `json:"name"`
	Board string `json:"board"`
	// Hardware is the board's catalogue entry, resolved when the spec is
	// loaded (nil when the board is unknown, which is an error).
	Hardware *Board `json:"-"`
	Hostname string `json:"hostname"`
	// Address is where push and the nodes reach the gateway: an IP
	// address or a DNS name.
	Address  string  `json:"address"`
	Timezone string  `json:"timezone"`
	Locale   string  `json:"locale"`
	Admin    Admin   `json:"admin"`
	Network  Network `json:"network"`
	Where    Where   `json:"-"`
}

// Admin is the gateway's administrator account: keys only, sudo.
type Admin struct {
	User           string   `json:"user"`
	AuthorizedKeys []string `json:"authorized_keys"`
	Where          Where    `json:"-"`
}

// Network configures the gateway's wired and wireless interfaces.
type Network struct {
	// Address is a static address with prefix length; zero means DHCP.
	Address netip.Prefix `json:"address,omitzero"`
	Router  netip.Addr   `json:"router,omitzero"`
	DNS     []netip.Addr `json:"dns,omitempty"`
	WiFi    *WiFi        `json:"wifi,omitempty"`
	Where   Where        `json:"-"`
}

// DHCP reports whether the wired interface is configured by DHCP.
func (n Network) DHCP() bool { return !n.Address.IsValid() }

// WiFi is a wireless network the gateway or a node joins (WPA2/WPA3-PSK).
type WiFi struct {
	SSID string `json:"ssid"`
	PSK  Secret `json:"psk"`
	// Country is the regulatory domain (ISO 3166-1 alpha-2); the gateway
	// must know it before the radio may transmit.
	Country string `json:"country,omitempty"`
	Where   Where  `json:"-"`
}

// OS selects the gateway's distribution and extra packages.
type OS struct {
	Suite    string   `json:"suite"`
	Sources  []Source `json:"sources"`
	Packages []string `json:"packages"`
	Where    Where    `json:"-"`
}

// Source is one apt repository.
type Source struct {
	Name       string   `json:"name"`
	URL        string   `json:"url"`
	Suite      string   `json:"suite"`
	Components []string `json:"components"`
	// Keyring is the path of the OpenPGP keyring that signs the
	// repository, or "" when the shipped key for a well-known archive is
	// used (ShippedKeyring names it).
	Keyring        string `json:"keyring,omitempty"`
	ShippedKeyring string `json:"shipped_keyring,omitempty"`
	// Default reports a source added because the spec declared none.
	Default bool  `json:"default,omitempty"`
	Where   Where `json:"-"`
}

// MQTT configures the Mosquitto broker.
type MQTT struct {
	Port int `json:"port"`
	// LocalPlainPort is an optional unencrypted listener bound to
	// localhost only; 0 means none.
	LocalPlainPort int   `json:"local_plain_port,omitempty"`
	MaxMessageSize int64 `json:"max_message_size"`
	// MaxQueuedMessages limits each client's queue by count (0: no
	// limit); MaxQueuedBytes by size.
	MaxQueuedMessages   int   `json:"max_queued_messages"`
	MaxQueuedBytes      int64 `json:"max_queued_bytes"`
	MaxInflightMessages int   `json:"max_inflight_messages"`
	Persistence         bool  `json:"persistence"`
	Where               Where `json:"-"`
}

// HTTPS configures Nginx, which serves the OTA files and Grafana.
type HTTPS struct {
	Port int `json:"port"`
	// RedirectPort is the plain HTTP port that only redirects to HTTPS;
	// 0 means none.
	RedirectPort int   `json:"redirect_port,omitempty"`
	Where        Where `json:"-"`
}

// OTA configures where firmware updates are served.
type OTA struct {
	// Path is the URL path prefix of the OTA tree, with slashes around.
	Path  string `json:"path"`
	Where Where  `json:"-"`
}

// InfluxDB configures the time-series database.
type InfluxDB struct {
	// Version is 1 (Debian's influxdb) or 2 (InfluxData's influxdb2).
	Version int    `json:"version"`
	Port    int    `json:"port"`
	Expose  bool   `json:"expose"`
	Org     string `json:"org,omitempty"`
	// Bucket is the v2 bucket, or the v1 database.
	Bucket string `json:"bucket"`
	// Retention is how long readings are kept; 0 keeps them forever.
	Retention time.Duration `json:"retention"`
	Where     Where         `json:"-"`
}

// Grafana configures the dashboard, served behind Nginx.
type Grafana struct {
	Port int `json:"port"`
	// Path is where Nginx serves Grafana, with slashes around.
	Path string `json:"path"`
	// Alerts is where Grafana sends the site's health alerts; none by
	// default, when they show in Grafana only.
	Alerts GrafanaAlerts `json:"alerts"`
	Where  Where         `json:"-"`
}

// GrafanaAlerts is the contact point of the health alerts: a webhook,
// e-mail through an SMTP server, or both.
type GrafanaAlerts struct {
	// Webhook is an https URL that gets each alert as JSON; a secret,
	// since such URLs often carry a token.
	Webhook Secret `json:"webhook"`
	// Email are the addresses alerts are mailed to, through SMTP.
	Email []string `json:"email,omitempty"`
	SMTP  *SMTP    `json:"smtp,omitempty"`
}

// Any reports whether the spec sets a contact point.
func (a GrafanaAlerts) Any() bool { return a.Webhook.IsSet() || len(a.Email) > 0 }

// SMTP is the mail server Grafana sends alerts through.
type SMTP struct {
	// Host is host:port.
	Host     string `json:"host"`
	From     string `json:"from"`
	User     string `json:"user,omitempty"`
	Password Secret `json:"password"`
}

// Firewall configures which networks may reach the gateway's services.
type Firewall struct {
	SSHFrom   []netip.Prefix `json:"ssh_from"`
	MQTTFrom  []netip.Prefix `json:"mqtt_from"`
	HTTPSFrom []netip.Prefix `json:"https_from"`
	Where     Where          `json:"-"`
}

// SSH configures the gateway's OpenSSH server.
type SSH struct {
	Port  int   `json:"port"`
	Where Where `json:"-"`
}

// Ingest configures the MQTT-to-InfluxDB service.
type Ingest struct {
	BatchSize     int           `json:"batch_size"`
	FlushInterval time.Duration `json:"flush_interval"`
	SpoolSize     int64         `json:"spool_size"`
	MetricsPort   int           `json:"metrics_port"`
	// SharedSubscription lets several ingest instances split the stream.
	SharedSubscription bool  `json:"shared_subscription"`
	Where              Where `json:"-"`
}

// Firmware is one ESP32 application the nodes run.
type Firmware struct {
	Name    string `json:"name"`
	Chip    string `json:"chip"`
	Version string `json:"version"`
	// Image is the path of the application binary built by ESP-IDF, or
	// "" when none has been named yet.
	Image string `json:"image,omitempty"`
	// SecureVersion is the anti-rollback counter burnt into eFuses.
	SecureVersion int `json:"secure_version"`
	// FlashSize is the nodes' flash in bytes, which the partition table
	// is laid out for.
	FlashSize int64 `json:"flash_size"`
	Where     Where `json:"-"`
}

// Node is one sensor node. A node block with count = N expands into N
// nodes named label-1 … label-N.
type Node struct {
	Name string `json:"name"`
	// Group is the node block's label; Index is the node's number in it
	// (0 when the block has no count).
	Group    string            `json:"group"`
	Index    int               `json:"index,omitempty"`
	Firmware string            `json:"firmware"`
	Sensor   NodeSensor        `json:"sensor"`
	Interval time.Duration     `json:"interval"`
	WiFi     WiFi              `json:"wifi"`
	Tags     map[string]string `json:"tags,omitempty"`
	Where    Where             `json:"-"`
}

// NodeSensor is the sensor wired to a node.
type NodeSensor struct {
	Type string `json:"type"`
	Pin  int    `json:"pin"`
}

// Variable is a declared input variable.
type Variable struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	Sensitive   bool   `json:"sensitive"`
	// Source says where the value came from: "default", "env", a var-file
	// path, "--var", or "" when unset.
	Source string `json:"source,omitempty"`
	Where  Where  `json:"-"`
}

// FirmwareByName returns the named firmware, or nil.
func (s *Site) FirmwareByName(name string) *Firmware {
	for i := range s.Firmware {
		if s.Firmware[i].Name == name {
			return &s.Firmware[i]
		}
	}
	return nil
}
