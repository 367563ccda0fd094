// Package generation is the record of what appliance manages on a
// gateway, and the contract between appliance push (on the admin's
// machine) and appliance-apply (on the gateway). It imports nothing of
// the build: the apply program links it.
//
// A generation is a Manifest: every managed folder, file and link with
// its mode, owner and (for files) SHA-256, the accounts the files need,
// the actions that follow a change, the health checks that decide
// whether the gateway works. appliance build writes generation 1 into
// the image; every push that changes something makes the next one.
//
// On the gateway, under Root (/var/lib/appliance):
//
//	generations/N/manifest.json   generation N
//	current -> generations/N      the generation the gateway runs
//	store/SHA256                  the bytes of kept generations' files,
//	                              saved by apply before it replaces them
//	staging/manifest.json         the next generation, uploaded by push
//	staging/blobs/SHA256          the files it needs that the gateway
//	                              lacks, content-addressed, so an
//	                              interrupted upload resumes
//	staging/debs/NAME.deb         packages to install first
//	apply.json                    the journal of an apply under way
//
// push uploads the staging folder and runs
//
//	sudo appliance-apply switch
//
// from the staged blob of the new apply program itself. apply verifies
// every staged blob against the manifest, saves what it replaces into
// the store, writes the journal, installs the files by rename, switches
// current, runs the actions and the checks, and commits; if a check
// fails it installs the previous generation again. An apply that is
// interrupted anywhere before its commit (connection lost, killed, power
// lost) is rolled back to the previous generation by the next run of
// appliance-apply (appliance-apply recover, which a unit runs at boot):
// the gateway is always entirely on one generation. apply reports its
// progress as JSON lines on stdout (Event).
package generation

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// Root is where generations live on the gateway.
const Root = "/var/lib/appliance"

// Reserved are what apply keeps under Root; the rest of Root (the OTA
// tree that Nginx serves) is managed like any other folder.
var Reserved = []string{"generations", "store", "staging", "current", "apply.json", "apply.lock", "debs"}

// ApplyPath is where the apply program lives on the gateway.
const ApplyPath = "/usr/lib/appliance/apply"

// Format is the manifest format this package reads and writes.
const Format = 1

// Manifest is one generation of a gateway.
type Manifest struct {
	Format     int       `json:"format"`
	Generation int       `json:"generation"`
	Site       string    `json:"site"`
	Created    time.Time `json:"created"`
	// Appliance is the version of appliance that made it.
	Appliance string `json:"appliance"`
	// Changes says, in a line each, what this generation changed from the
	// one before (for appliance generations).
	Changes []string `json:"changes,omitempty"`

	Entries  []Entry   `json:"entries"`
	Users    []User    `json:"users,omitempty"`
	Groups   []Group   `json:"groups,omitempty"`
	Packages []Package `json:"packages,omitempty"`
	Actions  []Action  `json:"actions,omitempty"`
	Checks   []Check   `json:"checks,omitempty"`
}

// Type is an entry's kind.
type Type string

// Entry types.
const (
	File    Type = "file"
	Dir     Type = "dir"
	Symlink Type = "symlink"
)

// Entry is one managed path.
type Entry struct {
	Path  string `json:"path"`
	Type  Type   `json:"type"`
	Mode  Mode   `json:"mode,omitempty"`
	Owner string `json:"owner,omitempty"`
	Group string `json:"group,omitempty"`
	// SHA256 and Size are a file's content.
	SHA256 string `json:"sha256,omitempty"`
	Size   int64  `json:"size,omitempty"`
	// Target is a link's target.
	Target string `json:"target,omitempty"`
	// Sensitive files hold a secret: shown as changed, never shown.
	Sensitive bool `json:"sensitive,omitempty"`
}

// Mode is a permission mode, written in octal ("0640").
type Mode fs.FileMode

// MarshalText implements encoding.TextMarshaler.
func (m Mode) MarshalText() ([]byte, error) { return fmt.Appendf(nil, "%04o", uint32(m)), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (m *Mode) UnmarshalText(b []byte) error {
	v, err := strconv.ParseUint(string(b), 8, 32)
	if err != nil || v > 0o7777 {
		return fmt.Errorf("mode %q: want octal permission bits such as 0644", b)
	}
	*m = Mode(v)
	return nil
}

// User is an account a generation's files belong to, with a fixed ID.
type User struct {
	Name    string   `json:"name"`
	UID     int      `json:"uid"`
	Group   string   `json:"group"`
	Home    string   `json:"home"`
	Shell   string   `json:"shell"`
	Groups  []string `json:"groups,omitempty"`
	Comment string   `json:"comment,omitempty"`
}

// Group is a group with a fixed ID.
type Group struct {
	Name string `json:"name"`
	GID  int    `json:"gid"`
}

// Package is a Debian package of the generation, as the lock gives it.
type Package struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Arch    string `json:"arch"`
	SHA256  string `json:"sha256"`
}

// Action is what follows a change under one of Paths: the unit is
// reloaded or restarted, or a command runs. Actions run in the order
// the manifest lists them, after systemd has reloaded changed units.
type Action struct {
	// Paths are path prefixes; a folder prefix ends with "/".
	Paths []string `json:"paths"`
	// Unit and Do ("reload", "restart") name a unit to act on; Run is a
	// command (argv) instead.
	Unit string   `json:"unit,omitempty"`
	Do   string   `json:"do,omitempty"`
	Run  []string `json:"run,omitempty"`
	Why  string   `json:"why"`
}

// Matches reports whether a change of p calls for the action.
func (a Action) Matches(p string) bool {
	for _, pre := range a.Paths {
		if p == pre || (strings.HasSuffix(pre, "/") && strings.HasPrefix(p, pre)) {
			return true
		}
	}
	return false
}

// Check is a health check, run on the gateway after a switch.
type Check struct {
	Name string `json:"name"`
	// Kind is "unit" (Unit is active), "tcp" (Port accepts a connection
	// on loopback), "tls" (a handshake on loopback Port verifies against
	// CAFile as ServerName, presenting CertFile and KeyFile when set),
	// "http" (URL answers with status 200; CAFile verifies https), or
	// "system" (systemctl is-system-running says running).
	Kind       string `json:"kind"`
	Unit       string `json:"unit,omitempty"`
	Port       int    `json:"port,omitempty"`
	ServerName string `json:"server_name,omitempty"`
	URL        string `json:"url,omitempty"`
	CAFile     string `json:"ca_file,omitempty"`
	CertFile   string `json:"cert_file,omitempty"`
	KeyFile    string `json:"key_file,omitempty"`
}

// Event is one line of apply's progress on stdout.
type Event struct {
	// Step is "verify", "save", "install", "switch", "action", "check",
	// "commit", "rollback" or "done".
	Step string `json:"step"`
	// Message says what happened, for the user.
	Message string `json:"message"`
	// Failed is set on the event that made apply roll back or stop.
	Failed bool `json:"failed,omitempty"`
	// Generation is the one the gateway is on after "done".
	Generation int `json:"generation,omitempty"`
}

var (
	sha256Re = regexp.MustCompile(`^[0-9a-f]{64}$`)
	nameRe   = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)
	// packageRe is Debian policy's package name (section 5.6.1).
	packageRe = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]+$`)
	unitRe    = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_:.@\\-]*\.[a-z]+$`)
)

// Validate checks a manifest before anything acts on it: the manifest
// comes over the network from push, and a path from it becomes a file
// on the gateway, so every path is absolute and clean, nothing is
// claimed twice, and no entry climbs out through a link.
func (m *Manifest) Validate() error {
	if m.Format != Format {
		return fmt.Errorf("manifest format %d; this apply reads format %d", m.Format, Format)
	}
	if m.Generation < 1 {
		return fmt.Errorf("generation %d: generations start at 1", m.Generation)
	}
	seen := map[string]Type{}
	for _, e := range m.Entries {
		if !path.IsAbs(e.Path) || path.Clean(e.Path) != e.Path || e.Path == "/" {
			return fmt.Errorf("entry %q: not an absolute, clean path", e.Path)
		}
		if _, dup := seen[e.Path]; dup {
			return fmt.Errorf("entry %s is listed twice", e.Path)
		}
		seen[e.Path] = e.Type
		switch e.Type {
		case File:
			if !sha256Re.MatchString(e.SHA256) || e.Size < 0 {
				return fmt.Errorf("file %s: SHA-256 %q, size %d", e.Path, e.SHA256, e.Size)
			}
		case Dir:
		case Symlink:
			if e.Target == "" {
				return fmt.Errorf("link %s has no target", e.Path)
			}
		default:
			return fmt.Errorf("entry %s: type %q", e.Path, e.Type)
		}
		if e.Type != Symlink && (!nameRe.MatchString(e.Owner) || !nameRe.MatchString(e.Group)) {
			return fmt.Errorf("entry %s: owner %q, group %q", e.Path, e.Owner, e.Group)
		}
	}
	// A managed link must not be a folder other entries go through.
	for p := range seen {
		for d := path.Dir(p); d != "/"; d = path.Dir(d) {
			if seen[d] == Symlink || seen[d] == File {
				return fmt.Errorf("entry %s lies under %s, which is not a folder", p, d)
			}
		}
	}
	for _, p := range m.Packages {
		// The name becomes staging/debs/NAME.deb on the gateway.
		if !packageRe.MatchString(p.Name) {
			return fmt.Errorf("package %q: not a Debian package name", p.Name)
		}
		if !sha256Re.MatchString(p.SHA256) {
			return fmt.Errorf("package %s: SHA-256 %q", p.Name, p.SHA256)
		}
	}
	return m.validateRest()
}

// validateRest checks what apply hands to other programs as arguments
// (useradd, groupadd, systemctl, an action's command) and what the
// checks read, so that no value can pass for an option or a field
// separator.
func (m *Manifest) validateRest() error {
	for _, e := range m.Entries {
		if e.Path == Root {
			return fmt.Errorf("entry %s is the folder apply keeps for itself", e.Path)
		}
		for _, own := range Reserved {
			if p := Root + "/" + own; e.Path == p || strings.HasPrefix(e.Path, p+"/") {
				return fmt.Errorf("entry %s lies in %s, which apply keeps for itself", e.Path, p)
			}
		}
	}
	for _, g := range m.Groups {
		if !nameRe.MatchString(g.Name) || g.GID < 0 || g.GID >= 65534 {
			return fmt.Errorf("group %q, GID %d: want a name such as mosquitto and a GID below 65534", g.Name, g.GID)
		}
	}
	for _, u := range m.Users {
		if !nameRe.MatchString(u.Name) || u.UID < 0 || u.UID >= 65534 || !nameRe.MatchString(u.Group) {
			return fmt.Errorf("user %q, UID %d, group %q: want names such as mosquitto and a UID below 65534", u.Name, u.UID, u.Group)
		}
		for _, g := range u.Groups {
			if !nameRe.MatchString(g) {
				return fmt.Errorf("user %s: group %q", u.Name, g)
			}
		}
		if !cleanAbs(u.Home) || !cleanAbs(u.Shell) || strings.ContainsAny(u.Comment, ":\n") || strings.ContainsFunc(u.Comment, unicode.IsControl) {
			return fmt.Errorf("user %s: home %q and shell %q must be absolute, clean paths, comment %q without colons or control characters", u.Name, u.Home, u.Shell, u.Comment)
		}
	}
	for _, a := range m.Actions {
		if err := a.validate(); err != nil {
			return err
		}
	}
	for _, c := range m.Checks {
		if err := c.validate(); err != nil {
			return fmt.Errorf("check %q: %w", c.Name, err)
		}
	}
	return nil
}

func (a Action) validate() error {
	switch {
	case len(a.Paths) == 0:
		return fmt.Errorf("action %q has no paths", a.Why)
	case a.Unit != "" && len(a.Run) > 0:
		return fmt.Errorf("action %q names both a unit and a command", a.Why)
	case a.Unit != "":
		if !unitRe.MatchString(a.Unit) || (a.Do != "reload" && a.Do != "restart") {
			return fmt.Errorf("action %q: unit %q, do %q: want a unit name and reload or restart", a.Why, a.Unit, a.Do)
		}
	case len(a.Run) > 0:
		if !cleanAbs(a.Run[0]) {
			return fmt.Errorf("action %q: command %q: want the program's absolute path", a.Why, a.Run[0])
		}
	default:
		return fmt.Errorf("action %q names neither a unit nor a command", a.Why)
	}
	for _, p := range a.Paths {
		if !path.IsAbs(p) {
			return fmt.Errorf("action %q: path %q is not absolute", a.Why, p)
		}
	}
	return nil
}

func (c Check) validate() error {
	for _, f := range []string{c.CAFile, c.CertFile, c.KeyFile} {
		if f != "" && !cleanAbs(f) {
			return fmt.Errorf("file %q is not an absolute, clean path", f)
		}
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return fmt.Errorf("a client certificate needs both cert_file and key_file")
	}
	portOK := c.Port > 0 && c.Port < 65536
	switch c.Kind {
	case "unit":
		if !unitRe.MatchString(c.Unit) {
			return fmt.Errorf("unit %q", c.Unit)
		}
	case "tcp":
		if !portOK {
			return fmt.Errorf("port %d", c.Port)
		}
	case "tls":
		if !portOK || c.ServerName == "" || c.CAFile == "" {
			return fmt.Errorf("tls needs a port, server_name and ca_file")
		}
	case "http":
		if !strings.HasPrefix(c.URL, "http://") && !strings.HasPrefix(c.URL, "https://") {
			return fmt.Errorf("url %q: want http:// or https://", c.URL)
		}
	case "system":
	default:
		return fmt.Errorf("kind %q: want unit, tcp, tls, http or system", c.Kind)
	}
	return nil
}

func cleanAbs(p string) bool { return path.IsAbs(p) && path.Clean(p) == p }

// Sort puts the entries in the order apply installs them: by path, so a
// folder comes before what it holds.
func (m *Manifest) Sort() {
	sort.Slice(m.Entries, func(i, j int) bool { return m.Entries[i].Path < m.Entries[j].Path })
}

// Read reads and validates a manifest file.
func Read(p string) (*Manifest, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	return Parse(b)
}

// Parse reads and validates a manifest.
func Parse(b []byte) (*Manifest, error) {
	var m Manifest
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	return &m, nil
}

// Marshal writes a manifest as apply and push read it.
func (m *Manifest) Marshal() ([]byte, error) {
	b, err := json.MarshalIndent(m, "", " ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// Diff is what changes from one generation to the next.
type Diff struct {
	Added, Changed, Removed []Entry
	// Actions are the new generation's actions that the changes call
	// for, each once, in order.
	Actions []Action
	// Packages are the packages the new generation adds.
	Packages []Package
}

// Empty reports that nothing changes.
func (d *Diff) Empty() bool {
	return len(d.Added)+len(d.Changed)+len(d.Removed)+len(d.Packages) == 0
}

// Compare is the change from old (nil: nothing managed yet) to new.
func Compare(old, new *Manifest) *Diff {
	d := &Diff{}
	was := map[string]Entry{}
	if old != nil {
		for _, e := range old.Entries {
			was[e.Path] = e
		}
	}
	changed := map[string]bool{}
	for _, e := range new.Entries {
		o, ok := was[e.Path]
		switch {
		case !ok:
			d.Added = append(d.Added, e)
		case !sameEntry(o, e):
			d.Changed = append(d.Changed, e)
		default:
			delete(was, e.Path)
			continue
		}
		changed[e.Path] = true
		delete(was, e.Path)
	}
	for _, e := range was {
		d.Removed = append(d.Removed, e)
		changed[e.Path] = true
	}
	sort.Slice(d.Removed, func(i, j int) bool { return d.Removed[i].Path < d.Removed[j].Path })
	for _, a := range new.Actions {
		for p := range changed {
			if a.Matches(p) {
				d.Actions = append(d.Actions, a)
				break
			}
		}
	}
	had := map[string]string{}
	if old != nil {
		for _, p := range old.Packages {
			had[p.Name] = p.Version
		}
	}
	for _, p := range new.Packages {
		if had[p.Name] != p.Version {
			d.Packages = append(d.Packages, p)
		}
	}
	return d
}

func sameEntry(a, b Entry) bool {
	return a.Type == b.Type && a.Mode == b.Mode && a.Owner == b.Owner && a.Group == b.Group && a.SHA256 == b.SHA256 && a.Target == b.Target
}
