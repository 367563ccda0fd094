package spec

import (
	"fmt"
	"net"
	"net/mail"
	"net/netip"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
)

// Defaults of the gateway's services.
const (
	DefaultMQTTPort       = 8883
	DefaultMaxMessageSize = 16 << 10
	// DefaultMaxQueued is no count limit: a broker that counted would
	// drop readings within a second of ingest being away at 1,000/s;
	// DefaultMaxQueuedBytes bounds the queue instead.
	DefaultMaxQueued      = 0
	DefaultMaxQueuedBytes = 64 << 20
	DefaultMaxInflight    = 20
	DefaultHTTPSPort      = 443
	DefaultRedirectPort   = 80
	DefaultOTAPath        = "/ota/"
	DefaultInfluxPort     = 8086
	DefaultBucket         = "sensors"
	DefaultRetention      = 365 * 24 * time.Hour
	DefaultGrafanaPort    = 3000
	DefaultGrafanaPath    = "/"
	DefaultSSHPort        = 22
	DefaultBatchSize      = 5000
	// DefaultFlushInterval keeps a reading's way to InfluxDB under a
	// second (make bench-ingest: p99 855 ms at 2,000 readings/s).
	DefaultFlushInterval     = 500 * time.Millisecond
	DefaultSpoolSize         = 256 << 20
	DefaultIngestMetricsPort = 9180
	DefaultSuite             = "trixie"
)

var (
	mqttSchema     = attrs("port", "local_plain_port", "max_message_size", "max_queued_messages", "max_queued_bytes", "max_inflight_messages", "persistence")
	httpsSchema    = attrs("port", "redirect_port")
	otaSchema      = attrs("path")
	influxSchema   = attrs("version", "port", "expose", "org", "bucket", "retention")
	grafanaSchema  = attrs("port", "path", "alert_webhook", "alert_email", "smtp")
	sshSchema      = attrs("port")
	ingestSchema   = attrs("batch_size", "flush_interval", "spool_size", "metrics_port", "shared_subscription")
	firewallSchema = attrs("ssh_from", "mqtt_from", "https_from")
	sourceSchema   = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "url", Required: true}, {Name: "suite"}, {Name: "components"}, {Name: "keyring"}}}
	siteSchema     = attrs("description", "support_years", "contact", "vendor")
)

func attrs(names ...string) *hcl.BodySchema {
	s := &hcl.BodySchema{}
	for _, n := range names {
		s.Attributes = append(s.Attributes, hcl.AttributeSchema{Name: n})
	}
	return s
}

// open is a helper for the optional singleton blocks: a nil block means
// the defaults apply, and the body then has no attributes.
func (d *decoder) openOptional(blk *hcl.Block, schema *hcl.BodySchema, ctx *hcl.EvalContext, where *Where, fallback hcl.Range, path string) (*body, hcl.Blocks) {
	if blk == nil {
		where.Block = fallback
		return &body{d: d, ctx: ctx, where: where, path: path}, nil
	}
	where.Block = blk.DefRange
	return d.open(blk.Body, schema, ctx, where, path)
}

func (d *decoder) decodeMQTT(s *Site, blk *hcl.Block, ctx *hcl.EvalContext, fallback hcl.Range) {
	m := &s.MQTT
	*m = MQTT{Port: DefaultMQTTPort, MaxMessageSize: DefaultMaxMessageSize, MaxQueuedMessages: DefaultMaxQueued, MaxQueuedBytes: DefaultMaxQueuedBytes, MaxInflightMessages: DefaultMaxInflight, Persistence: true}
	b, _ := d.openOptional(blk, mqttSchema, ctx, &m.Where, fallback, "mqtt")
	b.port("port", &m.Port, false)
	b.port("local_plain_port", &m.LocalPlainPort, true)
	b.size("max_message_size", &m.MaxMessageSize, 256, 256<<20)
	b.integer("max_queued_messages", &m.MaxQueuedMessages, 0, 10_000_000)
	b.size("max_queued_bytes", &m.MaxQueuedBytes, 1<<20, 4<<30)
	b.integer("max_inflight_messages", &m.MaxInflightMessages, 1, 65535)
	b.boolean("persistence", &m.Persistence)
}

func (d *decoder) decodeHTTPS(s *Site, blk *hcl.Block, ctx *hcl.EvalContext, fallback hcl.Range) {
	h := &s.HTTPS
	*h = HTTPS{Port: DefaultHTTPSPort, RedirectPort: DefaultRedirectPort}
	b, _ := d.openOptional(blk, httpsSchema, ctx, &h.Where, fallback, "https")
	b.port("port", &h.Port, false)
	b.port("redirect_port", &h.RedirectPort, true)
}

var urlPathRe = regexp.MustCompile(`^/([A-Za-z0-9._~-]+/)*$`)

// urlPath reads a URL path prefix and writes it with slashes around.
func (b *body) urlPath(name string, dst *string) bool {
	var p string
	if !b.str(name, &p) {
		return false
	}
	if !strings.HasSuffix(p, "/") {
		p += "/"
	}
	if !urlPathRe.MatchString(p) || strings.Contains(p, "/../") || strings.Contains(p, "/./") {
		b.fail(name, fmt.Sprintf("Invalid %s", name), fmt.Sprintf("%s.%s must be a URL path such as \"/ota/\": segments of letters, digits, '.', '_', '~' and '-'.", b.path, name))
		return false
	}
	*dst = p
	return true
}

func (d *decoder) decodeOTA(s *Site, blk *hcl.Block, ctx *hcl.EvalContext, fallback hcl.Range) {
	o := &s.OTA
	*o = OTA{Path: DefaultOTAPath}
	b, _ := d.openOptional(blk, otaSchema, ctx, &o.Where, fallback, "ota")
	if b.urlPath("path", &o.Path) && o.Path == "/" {
		b.fail("path", "Invalid path", "ota.path cannot be \"/\": the OTA tree needs a folder of its own, such as \"/ota/\".")
	}
}

func (d *decoder) decodeInfluxDB(s *Site, blk *hcl.Block, ctx *hcl.EvalContext, fallback hcl.Range, board Board) {
	in := &s.InfluxDB
	*in = InfluxDB{Version: 1, Port: DefaultInfluxPort, Bucket: DefaultBucket, Retention: DefaultRetention}
	if board.RaspberryPi {
		// Raspberry Pi sites take InfluxDB 2 from InfluxData; the Debian-only
		// QEMU board takes Debian's influxdb, which is 1.x.
		in.Version = 2
	}
	b, _ := d.openOptional(blk, influxSchema, ctx, &in.Where, fallback, "influxdb")
	if b.has("version") {
		var v int
		if b.integer("version", &v, 1, 2) {
			in.Version = v
		}
	}
	b.port("port", &in.Port, false)
	b.boolean("expose", &in.Expose)
	if b.str("org", &in.Org) {
		if in.Version == 1 {
			d.warnAt(b.rng("org"), "org is ignored by InfluxDB 1", "An organisation exists in InfluxDB 2 only; remove org, or set version = 2.")
		} else if !validDBName(in.Org) {
			b.fail("org", "Invalid org", fmt.Sprintf("%q is not a usable organisation name: use letters, digits, '_' and '-' (at most 64).", in.Org))
		}
	}
	if in.Version == 2 && in.Org == "" {
		in.Org = s.Name
	}
	if b.str("bucket", &in.Bucket) && !validDBName(in.Bucket) {
		b.fail("bucket", "Invalid bucket", fmt.Sprintf("%q is not a usable bucket or database name: use letters, digits, '_' and '-' (at most 64).", in.Bucket))
	}
	b.duration("retention", &in.Retention, time.Hour, 100*365*24*time.Hour, true)
}

var dbNameRe = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_-]{0,63}$`)

func validDBName(s string) bool { return dbNameRe.MatchString(s) }

func (d *decoder) decodeGrafana(s *Site, blk *hcl.Block, ctx *hcl.EvalContext) {
	if blk == nil {
		return
	}
	g := &Grafana{Port: DefaultGrafanaPort, Path: DefaultGrafanaPath}
	b, _ := d.openOptional(blk, grafanaSchema, ctx, &g.Where, blk.DefRange, "grafana")
	b.port("port", &g.Port, false)
	b.urlPath("path", &g.Path)
	d.decodeAlerts(b, &g.Alerts)
	s.Grafana = g
}

// decodeAlerts reads Grafana's contact point.
func (d *decoder) decodeAlerts(b *body, a *GrafanaAlerts) {
	if v, ok := b.eval("alert_webhook", cty.String, true); ok {
		u, err := url.Parse(v.AsString())
		if err != nil || u.Scheme != "https" || u.Host == "" {
			b.failSecret("alert_webhook", "Invalid alert_webhook", "grafana.alert_webhook must be an https URL, such as \"https://hooks.example.com/appliance\".")
		} else {
			a.Webhook = NewSecret(v.AsString())
		}
	}
	if b.strings("alert_email", &a.Email) {
		for i, e := range a.Email {
			if m, err := mail.ParseAddress(e); err != nil || m.Address != e {
				d.errorAt(b.elemRange("alert_email", i), "Invalid e-mail address", fmt.Sprintf("grafana.alert_email[%d] = %q is not an address such as \"ops@example.com\".", i, e))
			}
		}
	}
	if f, ok := b.object("smtp", []string{"host", "from"}, []string{"host", "from", "user", "password"}, "password"); f != nil {
		sm := &SMTP{}
		b.fieldString("smtp", "host", f, &sm.Host)
		b.fieldString("smtp", "from", f, &sm.From)
		b.fieldString("smtp", "user", f, &sm.User)
		var pw string
		if b.fieldString("smtp", "password", f, &pw) {
			sm.Password = NewSecret(pw)
		}
		if _, port, err := net.SplitHostPort(sm.Host); sm.Host != "" && (err != nil || port == "") {
			d.errorAt(b.fieldRange("smtp", "host"), "Invalid smtp.host", "grafana.smtp.host is host:port, such as \"mail.example.com:587\".")
		}
		if m, err := mail.ParseAddress(sm.From); sm.From != "" && (err != nil || m.Address != sm.From) {
			d.errorAt(b.fieldRange("smtp", "from"), "Invalid smtp.from", fmt.Sprintf("grafana.smtp.from = %q is not an address such as \"gateway@example.com\".", sm.From))
		}
		if ok {
			a.SMTP = sm
		}
	}
	if len(a.Email) > 0 && a.SMTP == nil && !b.d.bad["grafana.smtp"] {
		b.fail("alert_email", "Missing smtp", "grafana.alert_email needs a mail server to send through: add smtp = { host = \"mail.example.com:587\", from = \"gateway@example.com\" }.")
	}
}

var contactSchemes = []string{"mailto", "https", "tel"}

// decodeContact reads the site's security contacts.
func (d *decoder) decodeContact(b *body, s *Site) {
	if !b.strings("contact", &s.Contact) {
		return
	}
	for i, c := range s.Contact {
		u, err := url.Parse(c)
		if err != nil || !slices.Contains(contactSchemes, u.Scheme) || (u.Scheme == "https" && u.Host == "") || (u.Scheme != "https" && u.Opaque == "") {
			d.errorAt(b.elemRange("contact", i), "Invalid contact", fmt.Sprintf("site.contact[%d] = %q: a contact is a URI where vulnerabilities are reported: \"mailto:security@example.com\", \"https://example.com/security\" or \"tel:+49…\".", i, c))
		}
	}
}

func (d *decoder) decodeSSH(s *Site, blk *hcl.Block, ctx *hcl.EvalContext, fallback hcl.Range) {
	s.SSH = SSH{Port: DefaultSSHPort}
	b, _ := d.openOptional(blk, sshSchema, ctx, &s.SSH.Where, fallback, "ssh")
	b.port("port", &s.SSH.Port, false)
}

func (d *decoder) decodeIngest(s *Site, blk *hcl.Block, ctx *hcl.EvalContext, fallback hcl.Range) {
	in := &s.Ingest
	*in = Ingest{BatchSize: DefaultBatchSize, FlushInterval: DefaultFlushInterval, SpoolSize: DefaultSpoolSize, MetricsPort: DefaultIngestMetricsPort}
	b, _ := d.openOptional(blk, ingestSchema, ctx, &in.Where, fallback, "ingest")
	b.integer("batch_size", &in.BatchSize, 1, 100_000)
	b.duration("flush_interval", &in.FlushInterval, 10*time.Millisecond, time.Minute, false)
	b.size("spool_size", &in.SpoolSize, 1<<20, 64<<30)
	b.port("metrics_port", &in.MetricsPort, false)
	b.boolean("shared_subscription", &in.SharedSubscription)
}

// prefixes reads a list of CIDR networks.
func (b *body) prefixes(name string, dst *[]netip.Prefix) bool {
	var list []string
	if !b.strings(name, &list) {
		return false
	}
	out := []netip.Prefix{}
	good := true
	for i, s := range list {
		r := b.elemRange(name, i)
		p, err := netip.ParsePrefix(s)
		if err != nil {
			if a, aerr := netip.ParseAddr(s); aerr == nil {
				b.failAt(name, r, "Invalid network", fmt.Sprintf("%q is an address, not a network; write %s/%d for this host alone, or the network it is on.", s, a, a.BitLen()))
			} else {
				b.failAt(name, r, "Invalid network", fmt.Sprintf("%q is not a network in CIDR notation, such as \"192.168.1.0/24\".", s))
			}
			good = false
			continue
		}
		if p != p.Masked() {
			b.failAt(name, r, "Invalid network", fmt.Sprintf("%q has host bits set; did you mean %q?", s, p.Masked().String()))
			good = false
			continue
		}
		out = append(out, p)
	}
	if good {
		*dst = out
	}
	return good
}

func (d *decoder) decodeFirewall(s *Site, blk *hcl.Block, ctx *hcl.EvalContext, fallback hcl.Range) {
	f := &s.Firewall
	// Without a word from the spec, services are reachable from the
	// gateway's own network when it has a static address, otherwise from
	// private networks: never from the internet.
	def := LocalNetworks()
	if s.Gateway.Network.Address.IsValid() {
		def = []netip.Prefix{s.Gateway.Network.Address.Masked()}
	}
	*f = Firewall{SSHFrom: def, MQTTFrom: def, HTTPSFrom: def}
	b, _ := d.openOptional(blk, firewallSchema, ctx, &f.Where, fallback, "firewall")
	if b.prefixes("ssh_from", &f.SSHFrom) {
		if len(f.SSHFrom) == 0 {
			b.fail("ssh_from", "SSH would be unreachable", "With ssh_from empty nobody could log in, and appliance push could not update the gateway; name the networks you administer it from.")
		}
		for i, p := range f.SSHFrom {
			if p.Bits() == 0 {
				d.warnAt(b.elemRange("ssh_from", i), "SSH open to every network", fmt.Sprintf("%s lets the whole internet try to log in; name the networks you administer the gateway from.", p))
			}
		}
	}
	b.prefixes("mqtt_from", &f.MQTTFrom)
	b.prefixes("https_from", &f.HTTPSFrom)
}

// Well-known archives whose signing keys ship with appliance.
var shippedKeyrings = []struct {
	host, pathPrefix, keyring string
}{
	{"deb.debian.org", "/debian", "debian-archive"},
	{"security.debian.org", "/", "debian-archive"},
	{"ftp.debian.org", "/debian", "debian-archive"},
	{"archive.raspberrypi.com", "/debian", "raspberrypi"},
	{"archive.raspberrypi.org", "/debian", "raspberrypi"},
	{"repos.influxdata.com", "/", "influxdata"},
	{"apt.grafana.com", "/", "grafana"},
}

// ShippedKeyringNames are the keyrings a Source's ShippedKeyring may name.
var ShippedKeyringNames = []string{"debian-archive", "raspberrypi", "influxdata", "grafana"}

func shippedKeyringFor(u *url.URL) string {
	host := strings.ToLower(u.Hostname())
	for _, k := range shippedKeyrings {
		if (host == k.host || strings.HasPrefix(host, "ftp.") && strings.HasSuffix(host, ".debian.org") && k.keyring == "debian-archive") && strings.HasPrefix(u.Path, k.pathPrefix) {
			return k.keyring
		}
	}
	return ""
}

// toolchains are packages that put compilers on the gateway: an appliance
// needs none, and an intruder is glad of them.
var toolchains = map[string]bool{
	"build-essential": true, "gcc": true, "g++": true, "clang": true, "cpp": true,
	"gcc-14": true, "g++-14": true, "gcc-12": true, "golang": true, "golang-go": true,
	"rustc": true, "cargo": true, "make": true, "cmake": true,
}

var osSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "suite"}, {Name: "packages"}},
	Blocks:     []hcl.BlockHeaderSchema{{Type: "source", LabelNames: []string{"name"}}},
}

var componentRe = regexp.MustCompile(`^[a-z0-9][a-z0-9/_.-]*$`)

func (d *decoder) decodeOS(s *Site, blk *hcl.Block, ctx *hcl.EvalContext, fallback hcl.Range, board Board, boardOK bool) {
	o := &s.OS
	*o = OS{Suite: DefaultSuite, Packages: []string{}}
	b, blocks := d.openOptional(blk, osSchema, ctx, &o.Where, fallback, "os")
	if b.str("suite", &o.Suite) && !containsString(Suites, o.Suite) {
		b.fail("suite", "Unsupported suite", fmt.Sprintf("%q is not supported: gateways are built from Debian %s (and Raspberry Pi OS of the same suite).", o.Suite, strings.Join(Suites, ", ")))
	}
	var pkgs []string
	if b.strings("packages", &pkgs) {
		seen := map[string]bool{}
		for i, p := range pkgs {
			if !packageRe.MatchString(p) {
				b.failAt("packages", b.elemRange("packages", i), "Invalid package name", fmt.Sprintf("%q is not a Debian package name: those are lowercase letters, digits, '+', '-' and '.'.", p))
				continue
			}
			if toolchains[p] {
				d.warnAt(b.elemRange("packages", i), "A compiler on the gateway",
					fmt.Sprintf("%q puts a compiler or build tools on the gateway, which then helps whoever breaks in; build elsewhere and ship the result, or remove it.", p))
			}
			if !seen[p] {
				seen[p] = true
				o.Packages = append(o.Packages, p)
			}
		}
	}
	names := map[string]hcl.Range{}
	for _, sb := range blocks {
		src := Source{Name: sb.Labels[0], Suite: o.Suite, Components: []string{"main"}, Where: Where{Block: sb.DefRange}}
		if !srcNameRe.MatchString(src.Name) {
			d.errorAt(sb.LabelRanges[0], "Invalid source name", fmt.Sprintf("%q cannot name a source: use lowercase letters, digits, '.', '_' and '-'.", src.Name))
		}
		if prev, dup := names[src.Name]; dup {
			d.errorAt(sb.LabelRanges[0], "Duplicate source", fmt.Sprintf("A source named %q is already declared at %s.", src.Name, shortRange(prev)))
			continue
		}
		names[src.Name] = sb.DefRange
		sbody, _ := d.open(sb.Body, sourceSchema, ctx, &src.Where, "os.source."+src.Name)
		var u *url.URL
		if sbody.str("url", &src.URL) {
			var err error
			u, err = url.Parse(src.URL)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "file") || (u.Scheme != "file" && u.Host == "") || u.RawQuery != "" || u.Fragment != "" {
				sbody.fail("url", "Invalid source URL", fmt.Sprintf("%q is not an http://, https:// or file:// repository URL.", src.URL))
				u = nil
			} else {
				src.URL = strings.TrimSuffix(src.URL, "/")
			}
		}
		if sbody.str("suite", &src.Suite) && !componentRe.MatchString(src.Suite) {
			sbody.fail("suite", "Invalid suite", fmt.Sprintf("%q is not a suite name.", src.Suite))
		}
		if sbody.strings("components", &src.Components) {
			if len(src.Components) == 0 {
				sbody.fail("components", "No components", "A source needs at least one component, such as [\"main\"].")
			}
			for i, c := range src.Components {
				if !componentRe.MatchString(c) {
					sbody.failAt("components", sbody.elemRange("components", i), "Invalid component", fmt.Sprintf("%q is not a component name.", c))
				}
			}
		}
		if sbody.str("keyring", &src.Keyring) {
			p, err := resolvePath(s.Dir, src.Keyring, d.getenv)
			if err == nil {
				var fi os.FileInfo
				fi, err = os.Stat(p)
				if err == nil && !fi.Mode().IsRegular() {
					err = fmt.Errorf("not a file")
				}
			}
			if err != nil {
				sbody.fail("keyring", "Keyring not found", fmt.Sprintf("No keyring file at %s; name the archive's OpenPGP key file (.gpg, .pgp or .asc), relative to the spec's folder.", p))
			} else {
				src.Keyring = p
			}
		} else if u != nil {
			src.ShippedKeyring = shippedKeyringFor(u)
			if src.ShippedKeyring == "" {
				sbody.fail("url", "Keyring required", fmt.Sprintf("appliance has no key for %s; set keyring to the file of the key that signs it, so that its packages can be verified.", src.URL))
			}
		}
		o.Sources = append(o.Sources, src)
	}
	if len(o.Sources) == 0 && boardOK {
		o.Sources = defaultSources(s, board, o.Where.Block)
	}
}

// defaultSources are the apt sources of a spec that declares none: Debian
// with its updates and security suites, Raspberry Pi OS for Pi boards,
// and the vendors' repositories of the services that need them.
func defaultSources(s *Site, board Board, where hcl.Range) []Source {
	suite := s.OS.Suite
	comps := []string{"main"}
	if board.RaspberryPi {
		comps = []string{"main", "non-free-firmware"}
	}
	w := Where{Block: where}
	out := []Source{
		{Name: "debian", URL: "http://deb.debian.org/debian", Suite: suite, Components: comps, ShippedKeyring: "debian-archive", Default: true, Where: w},
		{Name: "debian-updates", URL: "http://deb.debian.org/debian", Suite: suite + "-updates", Components: comps, ShippedKeyring: "debian-archive", Default: true, Where: w},
		{Name: "debian-security", URL: "http://deb.debian.org/debian-security", Suite: suite + "-security", Components: comps, ShippedKeyring: "debian-archive", Default: true, Where: w},
	}
	if board.RaspberryPi {
		out = append(out, Source{Name: "raspberrypi", URL: "http://archive.raspberrypi.com/debian", Suite: suite, Components: []string{"main"}, ShippedKeyring: "raspberrypi", Default: true, Where: w})
	}
	if s.InfluxDB.Version == 2 {
		out = append(out, Source{Name: "influxdata", URL: "https://repos.influxdata.com/debian", Suite: "stable", Components: []string{"main"}, ShippedKeyring: "influxdata", Default: true, Where: w})
	}
	if s.Grafana != nil {
		out = append(out, Source{Name: "grafana", URL: "https://apt.grafana.com", Suite: "stable", Components: []string{"main"}, ShippedKeyring: "grafana", Default: true, Where: w})
	}
	return out
}

// resolveBoard gives the gateway the board as its os sources boot it
// (Board.Resolve): a Raspberry Pi's kernel from the Raspberry Pi archive
// when a source is that archive, else Debian's where it runs the board.
func (d *decoder) resolveBoard(s *Site) {
	b, err := s.Gateway.Hardware.Resolve(s.OS.Sources)
	if err != nil {
		d.errorAt(s.OS.Where.Block, "No kernel for the board", fmt.Sprintf("Board %s: %v.", s.Gateway.Board, err))
		return
	}
	s.Gateway.Hardware = b
	// A Pi built from Debian alone takes Debian's influxdb (1.x), as the
	// QEMU board does, unless the spec asks for InfluxDB 2 (which then
	// needs InfluxData's repository among the sources).
	in := &s.InfluxDB
	if !b.RaspberryPi && b.Boot == "raspi-firmware" && !in.Where.Has("version") && !in.Where.Has("org") {
		in.Version, in.Org = 1, ""
	}
}
