// Package modules holds one module per gateway service — mosquitto,
// nginx, influxdb, grafana, firewall, ssh, system, ingest — and their
// registry. A module reads its part of a site and returns a
// Contribution: packages, files rendered from the spec, users and
// groups, systemd units, drop-ins and symlinks, listeners, firewall
// openings, health checks, and the certificates and secrets it needs
// from the state.
//
// Modules produce data only: they never write images or open
// connections, and they never see a secret's value. A file that holds
// key material names the state file it comes from (a Source of kind
// FromState), and configs refer to such files by path; the desired state
// puts the bytes in for the image and for push alike.
package modules

import (
	"fmt"
	"io/fs"
	"net/netip"
	"path"
	"sort"
	"strings"

	"github.com/appliance/appliance/pki"
	"github.com/appliance/appliance/spec"
	"github.com/appliance/appliance/state"
	"github.com/hashicorp/hcl/v2"
)

// Module is one gateway service. Modules may also implement Provisioner
// and Validator; the lifecycle is Decode, Provision, Validate,
// Contribute, as in Caddy.
type Module interface {
	// ID names the module, e.g. "mosquitto".
	ID() string
	// Decode takes the module's part of the site and reports whether
	// the site uses the module at all.
	Decode(s *spec.Site) bool
	// Contribute returns what the module adds to the gateway.
	Contribute() Contribution
}

// Provisioner is a module that needs to know about the others before it
// can contribute (Nginx proxies Grafana only when Grafana is on).
type Provisioner interface {
	Provision(ctx *Context) error
}

// Validator is a module with checks of its own beyond the spec's.
type Validator interface {
	Validate() error
}

// Completer is a module whose contribution depends on the others': the
// firewall opens exactly the ports the other modules ask it to.
type Completer interface {
	Complete(own *Contribution, all []Contribution)
}

// Context is what Provision sees: the site and which modules are on.
type Context struct {
	Site    *spec.Site
	enabled map[string]bool
}

// Enabled reports whether the site uses the module with this ID.
func (c *Context) Enabled(id string) bool { return c.enabled[id] }

// Info registers a module: New makes a fresh instance for each site.
type Info struct {
	ID  string
	New func() Module
}

var registry = map[string]Info{}

// Register adds a module to the registry; modules call it from init.
func Register(info Info) {
	if _, dup := registry[info.ID]; dup {
		panic("modules: module registered twice: " + info.ID)
	}
	registry[info.ID] = info
}

// IDs lists the registered modules in order.
func IDs() []string {
	ids := make([]string, 0, len(registry))
	for id := range registry {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// Bind says who can reach a listener.
type Bind string

// Listener binds.
const (
	Localhost Bind = "localhost" // 127.0.0.1 and ::1 only
	Network   Bind = "network"   // every interface, filtered by the firewall
)

// Listener is a port a service listens on.
type Listener struct {
	Port    int    `json:"port"`
	Proto   string `json:"proto"` // "tcp" or "udp"
	Bind    Bind   `json:"bind"`
	Purpose string `json:"purpose"`
	// Setting is the spec setting that chose the port, for messages.
	Setting string    `json:"setting,omitempty"`
	Range   hcl.Range `json:"-"`
}

// Opening lets traffic from some networks through the firewall to a
// listener.
type Opening struct {
	Port  int            `json:"port"`
	Proto string         `json:"proto"`
	From  []netip.Prefix `json:"from"`
	// RateLimit limits new connections per source (SSH).
	RateLimit bool   `json:"rate_limit,omitempty"`
	Purpose   string `json:"purpose"`
}

// File is a file the module puts on the gateway.
type File struct {
	Path  string      `json:"path"`
	Mode  fs.FileMode `json:"mode"`
	Owner string      `json:"owner"`
	Group string      `json:"group"`
	// Content is the rendered file; empty when Source names another
	// origin.
	Content []byte `json:"-"`
	// Source says where the bytes come from: Content as it is (the zero
	// Source), Content with placeholders, or a file the module cannot
	// hold. It is shown as "state:pki/ca.crt" and the like.
	Source Source `json:"from,omitempty"`
	// Sensitive files hold a secret (a key, a password, a Wi-Fi
	// passphrase): they are never shown in plans or diffs.
	Sensitive bool `json:"sensitive,omitempty"`
	// Range is the spec block the file follows from, for messages.
	Range hcl.Range `json:"-"`
}

// Source is where a file's bytes come from.
type Source struct {
	Kind SourceKind
	// Name is the state file ("pki/issued/mosquitto.key"), the shipped
	// keyring ("debian-archive") or the path on the machine running
	// appliance, as Kind says.
	Name string
}

// SourceKind is the kind of a Source.
type SourceKind uint8

// Source kinds.
const (
	// Inline files are their Content.
	Inline SourceKind = iota
	// Expand files are their Content with each placeholder @@state:PATH@@
	// replaced by the (trimmed) content of that state file — a config
	// that must hold a secret inline — @@disk:boot@@ and @@disk:root@@
	// by the PARTUUIDs of the gateway's partitions, and @@disk:rootfs@@
	// by its root file system's UUID.
	Expand
	// FromState files are a file of the site's state.
	FromState
	// FromKeyring files are an archive key shipped with appliance.
	FromKeyring
	// FromHost files are a file the spec names on the machine running
	// appliance.
	FromHost
)

var sourcePrefix = map[SourceKind]string{Expand: "expand", FromState: "state:", FromKeyring: "keyring:", FromHost: "host:"}

func (s Source) String() string { return sourcePrefix[s.Kind] + s.Name }

// IsZero reports an inline file, for encoding/json's omitempty.
func (s Source) IsZero() bool { return s.Kind == Inline }

// MarshalText shows the source as String does.
func (s Source) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Dir is a folder the module needs with a given owner and mode.
type Dir struct {
	Path  string      `json:"path"`
	Mode  fs.FileMode `json:"mode"`
	Owner string      `json:"owner"`
	Group string      `json:"group"`
}

// Symlink is a symbolic link: /etc/localtime, or a unit enabled in a
// target's .wants folder.
type Symlink struct {
	Path   string `json:"path"`
	Target string `json:"target"`
}

// User is an account the module needs. System accounts get fixed IDs so
// that files in the image can be owned by them before the packages that
// would create them are configured on first boot.
type User struct {
	Name    string   `json:"name"`
	UID     int      `json:"uid"`
	Group   string   `json:"group"`
	Home    string   `json:"home"`
	Shell   string   `json:"shell"`
	Groups  []string `json:"groups,omitempty"`
	Comment string   `json:"comment,omitempty"`
}

// Group is a group the module needs, with a fixed ID.
type Group struct {
	Name string `json:"name"`
	GID  int    `json:"gid"`
}

// Check is a health check: push (on the gateway, after a switch), vm
// and the boot test run them to tell whether the gateway works.
type Check struct {
	Name string `json:"name"`
	// Kind is "unit" (the unit is active), "tcp" (the port accepts a
	// connection on loopback), "tls" (a TLS handshake on loopback
	// verifies against the site CA, as ServerName, presenting the
	// ClientCert certificate of the state when set) or "http" (URL
	// answers 2xx).
	Kind       string `json:"kind"`
	Unit       string `json:"unit,omitempty"`
	Port       int    `json:"port,omitempty"`
	ServerName string `json:"server_name,omitempty"`
	ClientCert string `json:"client_cert,omitempty"`
	URL        string `json:"url,omitempty"`
	// CAFile, CertFile and KeyFile are where the site CA and the client
	// certificate lie on the gateway, for checks run there.
	CAFile   string `json:"ca_file,omitempty"`
	CertFile string `json:"cert_file,omitempty"`
	KeyFile  string `json:"key_file,omitempty"`
}

// Action is what a change under Paths calls for on a running gateway
// (push): a unit reloaded or restarted, or a command run. Stage orders
// them: what others depend on first (the network and firewall, then the
// stores and the broker, their set-up, their clients, the web server).
type Action struct {
	Paths []string `json:"paths"`
	Unit  string   `json:"unit,omitempty"`
	Do    string   `json:"do,omitempty"` // "reload" or "restart"
	Run   []string `json:"run,omitempty"`
	Why   string   `json:"why"`
	Stage int      `json:"stage"`
}

// Action stages.
const (
	StageSystem   = 10
	StageServices = 20
	StageSetup    = 30
	StageClients  = 40
	StageWeb      = 50
)

func restart(stage int, unit, why string, paths ...string) Action {
	return Action{Paths: paths, Unit: unit, Do: "restart", Why: why, Stage: stage}
}

func reload(stage int, unit, why string, paths ...string) Action {
	return Action{Paths: paths, Unit: unit, Do: "reload", Why: why, Stage: stage}
}

// Contribution is what one module adds to the gateway.
type Contribution struct {
	Module    string             `json:"module"`
	Summary   string             `json:"summary"`
	Packages  []string           `json:"packages"`
	Users     []User             `json:"users,omitempty"`
	Groups    []Group            `json:"groups,omitempty"`
	Dirs      []Dir              `json:"dirs,omitempty"`
	Files     []File             `json:"files"`
	Symlinks  []Symlink          `json:"symlinks,omitempty"`
	Units     []string           `json:"units"`
	Listeners []Listener         `json:"listeners"`
	Openings  []Opening          `json:"openings"`
	Checks    []Check            `json:"checks"`
	Certs     []pki.Request      `json:"certificates"`
	Secrets   []state.SecretWant `json:"secrets"`
	// Programs are appliance's own Go programs the module runs, built
	// for the gateway from the same source as appliance.
	Programs []Program `json:"programs,omitempty"`
	// Actions are what a push that changes the module's files runs.
	Actions []Action `json:"actions,omitempty"`
}

// Program is one of appliance's Go programs, built for the gateway.
type Program struct {
	// Package is its import path.
	Package string `json:"package"`
	// Path is where it goes on the gateway.
	Path string `json:"path"`
}

// Set is the merged contributions of every module a site uses.
type Set struct {
	Contributions []Contribution
}

// Collect runs every registered module on the site through its
// lifecycle and merges their contributions, refusing two modules that
// claim one port, one path, one user or one group.
func Collect(s *spec.Site) (*Set, error) {
	var mods []Module
	ctx := &Context{Site: s, enabled: map[string]bool{}}
	for _, id := range IDs() {
		m := registry[id].New()
		if m.Decode(s) {
			mods = append(mods, m)
			ctx.enabled[id] = true
		}
	}
	set := &Set{}
	for _, m := range mods {
		if p, ok := m.(Provisioner); ok {
			if err := p.Provision(ctx); err != nil {
				return nil, fmt.Errorf("%s: %w", m.ID(), err)
			}
		}
		if v, ok := m.(Validator); ok {
			if err := v.Validate(); err != nil {
				return nil, fmt.Errorf("%s: %w", m.ID(), err)
			}
		}
		c := m.Contribute()
		c.Module = m.ID()
		set.Contributions = append(set.Contributions, c)
	}
	for i, m := range mods {
		if c, ok := m.(Completer); ok {
			c.Complete(&set.Contributions[i], set.Contributions)
		}
	}
	if err := set.conflicts(); err != nil {
		return nil, err
	}
	return set, nil
}

// conflicts reports the first thing two modules both claim.
func (s *Set) conflicts() error {
	type claim struct {
		module string
		what   string
		rng    hcl.Range
	}
	where := func(c claim) string {
		if c.rng.Filename == "" {
			return c.module
		}
		return fmt.Sprintf("%s (%s:%d:%d)", c.module, c.rng.Filename, c.rng.Start.Line, c.rng.Start.Column)
	}
	seen := map[string]claim{}
	check := func(key string, c claim) error {
		if prev, dup := seen[key]; dup {
			return fmt.Errorf("%s is claimed by %s for %s and by %s for %s; change one of them in the spec", key, where(prev), prev.what, where(c), c.what)
		}
		seen[key] = c
		return nil
	}
	for _, c := range s.Contributions {
		for _, l := range c.Listeners {
			if err := check(fmt.Sprintf("port %d/%s", l.Port, l.Proto), claim{c.Module, l.Purpose, l.Range}); err != nil {
				return err
			}
		}
		for _, f := range c.Files {
			if err := check("path "+f.Path, claim{c.Module, "a file", f.Range}); err != nil {
				return err
			}
		}
		for _, l := range c.Symlinks {
			if err := check("path "+l.Path, claim{c.Module, "a link", hcl.Range{}}); err != nil {
				return err
			}
		}
	}
	// Users and groups may be declared by several modules alike (the
	// admin is in several), but never two ways.
	users, groups := map[string]User{}, map[string]Group{}
	uids, gids := map[int]string{}, map[int]string{}
	for _, c := range s.Contributions {
		for _, u := range c.Users {
			if prev, ok := users[u.Name]; ok && fmt.Sprint(prev) != fmt.Sprint(u) {
				return fmt.Errorf("user %s is declared differently by two modules (%s)", u.Name, c.Module)
			}
			if prev, ok := uids[u.UID]; ok && prev != u.Name {
				return fmt.Errorf("UID %d is given to both %s and %s", u.UID, prev, u.Name)
			}
			users[u.Name], uids[u.UID] = u, u.Name
		}
		for _, g := range c.Groups {
			if prev, ok := groups[g.Name]; ok && prev != g {
				return fmt.Errorf("group %s is declared differently by two modules (%s)", g.Name, c.Module)
			}
			if prev, ok := gids[g.GID]; ok && prev != g.Name {
				return fmt.Errorf("GID %d is given to both %s and %s", g.GID, prev, g.Name)
			}
			groups[g.Name], gids[g.GID] = g, g.Name
		}
	}
	return nil
}

// Packages are every module's packages, sorted, each once.
func (s *Set) Packages() []string {
	var out []string
	for _, c := range s.Contributions {
		out = append(out, c.Packages...)
	}
	return sortedUnique(out)
}

func sortedUnique(in []string) []string {
	sort.Strings(in)
	out := in[:0]
	for i, x := range in {
		if i == 0 || x != in[i-1] {
			out = append(out, x)
		}
	}
	return out
}

// Openings are every module's firewall openings, by port.
func (s *Set) Openings() []Opening {
	var out []Opening
	for _, c := range s.Contributions {
		out = append(out, c.Openings...)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Port < out[j].Port })
	return out
}

// Files are every module's files, by path.
func (s *Set) Files() []File {
	var out []File
	for _, c := range s.Contributions {
		out = append(out, c.Files...)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

// Users are every account the modules need, by UID, each once.
func (s *Set) Users() []User {
	seen := map[string]bool{}
	var out []User
	for _, c := range s.Contributions {
		for _, u := range c.Users {
			if !seen[u.Name] {
				seen[u.Name] = true
				out = append(out, u)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].UID < out[j].UID })
	return out
}

// Groups are every group the modules need, by GID, each once.
func (s *Set) Groups() []Group {
	seen := map[string]bool{}
	var out []Group
	for _, c := range s.Contributions {
		for _, g := range c.Groups {
			if !seen[g.Name] {
				seen[g.Name] = true
				out = append(out, g)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].GID < out[j].GID })
	return out
}

// Programs are every module's own programs, each once.
func (s *Set) Programs() []Program {
	seen := map[string]bool{}
	var out []Program
	for _, c := range s.Contributions {
		for _, p := range c.Programs {
			if !seen[p.Path] {
				seen[p.Path] = true
				out = append(out, p)
			}
		}
	}
	return out
}

// Actions are every module's actions, by stage.
func (s *Set) Actions() []Action {
	var out []Action
	for _, c := range s.Contributions {
		out = append(out, c.Actions...)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Stage < out[j].Stage })
	return out
}

// Checks are every module's health checks.
func (s *Set) Checks() []Check {
	var out []Check
	for _, c := range s.Contributions {
		out = append(out, c.Checks...)
	}
	return out
}

// Certs are the certificates the modules need, in module order.
func (s *Set) Certs() []pki.Request {
	var out []pki.Request
	for _, c := range s.Contributions {
		out = append(out, c.Certs...)
	}
	return out
}

// Secrets are the generated secrets the modules need, each once.
func (s *Set) Secrets() []state.SecretWant {
	seen := map[string]bool{}
	var out []state.SecretWant
	for _, c := range s.Contributions {
		for _, sw := range c.Secrets {
			if !seen[sw.Name] {
				seen[sw.Name] = true
				out = append(out, sw)
			}
		}
	}
	return out
}

// Lookup returns the contribution of one module, or nil.
func (s *Set) Lookup(id string) *Contribution {
	for i := range s.Contributions {
		if s.Contributions[i].Module == id {
			return &s.Contributions[i]
		}
	}
	return nil
}

// File returns the file at path, or nil.
func (c *Contribution) File(p string) *File {
	for i := range c.Files {
		if c.Files[i].Path == p {
			return &c.Files[i]
		}
	}
	return nil
}

// serverRequest is the server certificate a module on the gateway needs:
// valid for the hostname, its mDNS name, the address push and nodes use,
// and loopback, where the gateway's own clients connect with hostname
// verification on.
func serverRequest(name string, s *spec.Site) pki.Request {
	g := s.Gateway
	r := pki.Request{Name: name, Kind: pki.Server, DNSNames: []string{g.Hostname, g.Hostname + ".local", "localhost"}}
	if a, err := netip.ParseAddr(g.Address); err == nil {
		r.IPs = append(r.IPs, a.AsSlice())
	} else if !strings.EqualFold(g.Address, g.Hostname+".local") && g.Address != "" {
		r.DNSNames = append(r.DNSNames, g.Address)
	}
	if g.Network.Address.IsValid() && g.Network.Address.Addr().String() != g.Address {
		r.IPs = append(r.IPs, g.Network.Address.Addr().AsSlice())
	}
	r.IPs = append(r.IPs, netip.MustParseAddr("127.0.0.1").AsSlice(), netip.IPv6Loopback().AsSlice())
	return r
}

// Helpers for building files.

func text(p string, mode fs.FileMode, owner, group string, content string, r hcl.Range) File {
	return File{Path: p, Mode: mode, Owner: owner, Group: group, Content: []byte(content), Range: r}
}

// fromState installs a file of the state (a certificate, key or secret);
// one that others may not read is sensitive.
func fromState(p string, mode fs.FileMode, owner, group, stateFile string, r hcl.Range) File {
	return File{Path: p, Mode: mode, Owner: owner, Group: group, Source: Source{FromState, stateFile}, Sensitive: mode&0o004 == 0, Range: r}
}

// secretRef is the placeholder for a state file's content in a config
// that must hold a secret inline.
func secretRef(stateFile string) string { return "@@state:" + stateFile + "@@" }

// withSecrets is a config that holds secrets through placeholders.
func withSecrets(p string, mode fs.FileMode, owner, group, content string, r hcl.Range) File {
	return File{Path: p, Mode: mode, Owner: owner, Group: group, Content: []byte(content), Source: Source{Kind: Expand}, Sensitive: true, Range: r}
}

// enable links a unit into a target's wants, as systemctl enable does.
func enable(unit, target string) Symlink {
	return Symlink{Path: path.Join("/etc/systemd/system", target+".wants", unit), Target: "/etc/systemd/system/" + unit}
}

// enableVendor enables a unit that a package ships in /usr/lib.
func enableVendor(unit, target string) Symlink {
	return Symlink{Path: path.Join("/etc/systemd/system", target+".wants", unit), Target: "/usr/lib/systemd/system/" + unit}
}

// header starts every rendered config file.
func header(comment, site string) string {
	return fmt.Sprintf("%s Written by appliance for site %s. Do not edit: the next build or push replaces it.\n", comment, site)
}

// headerLine is header without its newline, for templates.
func headerLine(comment, site string) string {
	return strings.TrimSuffix(header(comment, site), "\n")
}
