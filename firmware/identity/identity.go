// Package identity makes a sensor node's identity image: the LittleFS
// file system in the node's "littlefs" partition that holds everything
// that differs between two nodes running the same firmware. Its layout
// and every config.json field are the contract with the C firmware,
// documented in docs/node.md:
//
//	/config.json        the node's settings (Config)
//	/ca.pem             the site CA certificate (PEM)
//	/node.crt           the node's client certificate (PEM)
//	/node.key           the node's private key (PEM, PKCS#8)
//	/ota/key-N.pem      the OTA manifest public keys, N = 0, 1, … (PEM)
//
// The same inputs give the same bytes. The Wi-Fi passphrase and the
// private key are in the image, which is the point of it; they never
// appear in an error.
package identity

import (
	"bytes"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/appliance/appliance/firmware/littlefs"
)

// ConfigFormat is the config.json format this package writes.
const ConfigFormat = 1

// MaxOTAURL bounds the OTA base URL.
const MaxOTAURL = 200

// Config is config.json.
type Config struct {
	Format int `json:"format"`
	// Node is the node's name: its certificate's CN, MQTT client id and
	// topic segment.
	Node string `json:"node"`
	// Firmware names the firmware whose OTA manifests the node follows.
	Firmware string `json:"firmware"`
	WiFi     WiFi   `json:"wifi"`
	MQTT     MQTT   `json:"mqtt"`
	// IntervalMS is the time between readings, in milliseconds.
	IntervalMS int64  `json:"interval_ms"`
	Sensor     Sensor `json:"sensor"`
	OTA        OTA    `json:"ota"`
	// TimeServer is the SNTP server (the gateway).
	TimeServer string            `json:"time_server"`
	Tags       map[string]string `json:"tags"`
}

// WiFi is the network the node joins.
type WiFi struct {
	SSID    string `json:"ssid"`
	PSK     string `json:"psk"`
	Country string `json:"country,omitempty"`
}

// MQTT is the broker the node publishes to.
type MQTT struct {
	Host  string `json:"host"`
	Port  int    `json:"port"`
	Topic string `json:"topic"`
}

// Sensor is the sensor wired to the node.
type Sensor struct {
	Type string `json:"type"`
	Pin  int    `json:"pin"`
}

// OTA is where the node looks for updates.
type OTA struct {
	// URL is the OTA base URL; the manifest is at
	// URL/<firmware>/manifest.json.
	URL string `json:"url"`
}

// Identity is everything an identity image holds.
type Identity struct {
	Config Config
	CA     []byte
	Cert   []byte
	Key    []byte
	// ManifestKeys are the OTA manifest public keys the node trusts
	// (more than one while a key is being rotated).
	ManifestKeys [][]byte
}

// Paths of the files.
const (
	ConfigPath = "/config.json"
	CAPath     = "/ca.pem"
	CertPath   = "/node.crt"
	KeyPath    = "/node.key"
	otaKeyDir  = "/ota"
)

// ManifestKeyPath is the path of the i-th manifest key.
func ManifestKeyPath(i int) string { return fmt.Sprintf("%s/key-%d.pem", otaKeyDir, i) }

var (
	nodeRE     = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	firmwareRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,32}$`)
	hostRE     = regexp.MustCompile(`^[A-Za-z0-9.-]{1,253}$|^[0-9a-fA-F:]{2,39}$`)
	countryRE  = regexp.MustCompile(`^[A-Z]{2}$`)
	hexPSKRE   = regexp.MustCompile(`^[0-9a-fA-F]{64}$`)
)

// Sensors are the sensor types the firmware reads (docs/wire.md).
var Sensors = []string{"dht11", "dht22"}

// Validate checks the config; its errors never quote the passphrase.
func (c *Config) Validate() error {
	where := fmt.Sprintf("node %q", c.Node)
	switch {
	case c.Format != ConfigFormat:
		return fmt.Errorf("%s: config format %d, want %d", where, c.Format, ConfigFormat)
	case !nodeRE.MatchString(c.Node):
		return fmt.Errorf("%s: a node name is 1 to 63 lower-case letters, digits and inner hyphens", where)
	case !firmwareRE.MatchString(c.Firmware):
		return fmt.Errorf("%s: firmware name %q: 1 to 32 letters, digits, '-' or '_'", where, c.Firmware)
	case c.WiFi.SSID == "" || len(c.WiFi.SSID) > 32:
		return fmt.Errorf("%s: the Wi-Fi SSID has %d bytes; it has 1 to 32", where, len(c.WiFi.SSID))
	case !(len(c.WiFi.PSK) >= 8 && len(c.WiFi.PSK) <= 63 && isPrintableASCII(c.WiFi.PSK)) && !hexPSKRE.MatchString(c.WiFi.PSK):
		return fmt.Errorf("%s: the Wi-Fi passphrase must be 8 to 63 printable ASCII characters or 64 hex digits (WPA2/WPA3-Personal)", where)
	case c.WiFi.Country != "" && !countryRE.MatchString(c.WiFi.Country):
		return fmt.Errorf("%s: Wi-Fi country %q: two capital letters (ISO 3166-1)", where, c.WiFi.Country)
	case !hostRE.MatchString(c.MQTT.Host):
		return fmt.Errorf("%s: MQTT host %q is not a host name or address", where, c.MQTT.Host)
	case c.MQTT.Port < 1 || c.MQTT.Port > 65535:
		return fmt.Errorf("%s: MQTT port %d", where, c.MQTT.Port)
	case c.MQTT.Topic != "sensors/"+c.Node+"/reading":
		return fmt.Errorf("%s: MQTT topic %q; the broker's ACL lets the node write only sensors/%s/reading", where, c.MQTT.Topic, c.Node)
	case c.IntervalMS < 1000 || c.IntervalMS > int64(24*time.Hour/time.Millisecond):
		return fmt.Errorf("%s: interval %d ms: 1 s to 24 h", where, c.IntervalMS)
	case !known(c.Sensor.Type):
		return fmt.Errorf("%s: sensor type %q; the firmware reads %s", where, c.Sensor.Type, strings.Join(Sensors, ", "))
	case c.Sensor.Pin < 0 || c.Sensor.Pin > 48:
		return fmt.Errorf("%s: sensor pin %d: GPIO 0 to 48", where, c.Sensor.Pin)
	case !hostRE.MatchString(c.TimeServer):
		return fmt.Errorf("%s: time server %q is not a host name or address", where, c.TimeServer)
	}
	if u, err := url.Parse(c.OTA.URL); err != nil || u.Scheme != "https" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || strings.HasSuffix(u.Path, "/") || !urlChars(c.OTA.URL) {
		return fmt.Errorf("%s: OTA URL %q: an https URL without a trailing slash, query or fragment", where, c.OTA.URL)
	}
	if len(c.OTA.URL) > MaxOTAURL {
		return fmt.Errorf("%s: OTA URL %q: at most %d bytes (the firmware builds its URLs from it in fixed buffers)", where, c.OTA.URL, MaxOTAURL)
	}
	for k, v := range c.Tags {
		if k == "" || len(k) > 64 || len(v) > 256 || !utf8.ValidString(k) || !utf8.ValidString(v) {
			return fmt.Errorf("%s: tag %q: names of 1 to 64 bytes, values of at most 256, UTF-8", where, k)
		}
	}
	return nil
}

// urlChars: visible ASCII without a backslash, which is what the
// firmware copies into its URLs.
func urlChars(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= 0x20 || s[i] >= 0x7F || s[i] == '\\' {
			return false
		}
	}
	return true
}

func isPrintableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7E {
			return false
		}
	}
	return true
}

func known(t string) bool {
	for _, s := range Sensors {
		if s == t {
			return true
		}
	}
	return false
}

// Marshal is config.json's bytes: indented JSON, tags sorted, so two
// builds give the same bytes.
func (c *Config) Marshal() ([]byte, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	cc := *c
	if cc.Tags == nil {
		cc.Tags = map[string]string{}
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(&cc); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// Files are the image's files, checked.
func (id *Identity) Files() ([]littlefs.Entry, error) {
	conf, err := id.Config.Marshal()
	if err != nil {
		return nil, err
	}
	node := id.Config.Node
	if len(id.ManifestKeys) == 0 {
		return nil, fmt.Errorf("node %q: no OTA manifest key; the node would trust no update", node)
	}
	files := []littlefs.Entry{{Path: ConfigPath, Data: conf}}
	for _, f := range []struct {
		path, what string
		types      []string
		data       []byte
	}{
		{CAPath, "the site CA certificate", []string{"CERTIFICATE"}, id.CA},
		{CertPath, "the node certificate", []string{"CERTIFICATE"}, id.Cert},
		{KeyPath, "the node key", []string{"PRIVATE KEY", "EC PRIVATE KEY", "RSA PRIVATE KEY"}, id.Key},
	} {
		if err := checkPEM(f.data, f.types); err != nil {
			return nil, fmt.Errorf("node %q: %s: %w", node, f.what, err)
		}
		files = append(files, littlefs.Entry{Path: f.path, Data: f.data})
	}
	for i, k := range id.ManifestKeys {
		if err := checkPEM(k, []string{"PUBLIC KEY"}); err != nil {
			return nil, fmt.Errorf("node %q: OTA manifest key %d: %w", node, i, err)
		}
		files = append(files, littlefs.Entry{Path: ManifestKeyPath(i), Data: k})
	}
	return files, nil
}

// checkPEM accepts one PEM block of an expected type and nothing else
// but white space: mbedTLS parses what it is given whole.
func checkPEM(b []byte, types []string) error {
	blk, rest := pem.Decode(b)
	if blk == nil {
		return fmt.Errorf("not PEM")
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return fmt.Errorf("more than one PEM block")
	}
	for _, t := range types {
		if blk.Type == t {
			return nil
		}
	}
	return fmt.Errorf("a PEM %q block, want %s", blk.Type, strings.Join(types, " or "))
}

// Image writes the identity image for a littlefs partition of
// partitionSize bytes.
func (id *Identity) Image(partitionSize int) ([]byte, error) {
	files, err := id.Files()
	if err != nil {
		return nil, err
	}
	g, err := littlefs.ESP32(partitionSize)
	if err != nil {
		return nil, err
	}
	img, err := littlefs.Build(g, files)
	if err != nil {
		return nil, fmt.Errorf("node %q: %w", id.Config.Node, err)
	}
	return img, nil
}

// Read reads an identity image back.
func Read(img []byte) (*Identity, error) {
	fs, err := littlefs.Read(img, littlefs.ESP32BlockSize)
	if err != nil {
		return nil, err
	}
	files := map[string][]byte{}
	for _, e := range fs.Entries {
		if !e.Dir {
			files[e.Path] = e.Data
		}
	}
	id := &Identity{CA: files[CAPath], Cert: files[CertPath], Key: files[KeyPath]}
	if err := json.Unmarshal(files[ConfigPath], &id.Config); err != nil {
		return nil, fmt.Errorf("the identity image's %s: %w", ConfigPath, err)
	}
	var keys []string
	for p := range files {
		if strings.HasPrefix(p, otaKeyDir+"/") {
			keys = append(keys, p)
		}
	}
	sort.Strings(keys)
	for i := range keys {
		k, ok := files[ManifestKeyPath(i)]
		if !ok {
			return nil, fmt.Errorf("the identity image lacks %s", ManifestKeyPath(i))
		}
		id.ManifestKeys = append(id.ManifestKeys, k)
	}
	return id, nil
}
