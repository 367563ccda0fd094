package desired

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path"
	"time"

	"github.com/appliance/appliance/generation"
	"github.com/appliance/appliance/modules"
)

// Program is one of appliance's programs as it goes on the gateway.
type Program struct {
	Path string
	Data []byte
}

// Generation is the desired gateway as a generation's manifest, with the
// bytes of every file it names by their SHA-256: what build writes as
// generation 1 and what push makes the next generation of.
type Generation struct {
	Manifest *generation.Manifest
	Blobs    map[string][]byte
}

// Generation records the resolved gateway, with appliance's programs
// (which the caller builds) and the packages of its lock, as generation
// n.
func (r *Resolved) Generation(n int, created time.Time, version string, progs []Program, pkgs []generation.Package) *Generation {
	g := &Generation{Blobs: map[string][]byte{}}
	m := &generation.Manifest{Format: generation.Format, Generation: n, Site: r.Name, Created: created.UTC(), Appliance: version, Packages: pkgs}
	blob := func(data []byte) (string, int64) {
		sum := sha256.Sum256(data)
		h := hex.EncodeToString(sum[:])
		g.Blobs[h] = data
		return h, int64(len(data))
	}
	for _, d := range r.Dirs {
		m.Entries = append(m.Entries, generation.Entry{Path: d.Path, Type: generation.Dir, Mode: generation.Mode(d.Mode.Perm()), Owner: d.Owner, Group: d.Group})
	}
	for _, f := range r.Files {
		h, size := blob(f.Data)
		m.Entries = append(m.Entries, generation.Entry{Path: f.Path, Type: generation.File, Mode: generation.Mode(f.Mode.Perm()), Owner: f.Owner, Group: f.Group, SHA256: h, Size: size, Sensitive: f.Sensitive})
	}
	for _, p := range progs {
		h, size := blob(p.Data)
		m.Entries = append(m.Entries, generation.Entry{Path: p.Path, Type: generation.File, Mode: 0o755, Owner: "root", Group: "root", SHA256: h, Size: size})
	}
	for _, l := range r.Symlinks {
		m.Entries = append(m.Entries, generation.Entry{Path: l.Path, Type: generation.Symlink, Target: l.Target})
	}
	m.Sort()
	for _, u := range r.Users {
		m.Users = append(m.Users, generation.User{Name: u.Name, UID: u.UID, Group: u.Group, Home: u.Home, Shell: u.Shell, Groups: u.Groups, Comment: u.Comment})
	}
	for _, gr := range r.Groups {
		m.Groups = append(m.Groups, generation.Group{Name: gr.Name, GID: gr.GID})
	}
	for _, a := range r.Modules.Actions() {
		m.Actions = append(m.Actions, generation.Action{Paths: a.Paths, Unit: a.Unit, Do: a.Do, Run: a.Run, Why: a.Why})
	}
	m.Checks = checks(r.Checks)
	g.Manifest = m
	return g
}

// checks are the modules' checks as the gateway runs them, and last the
// whole system's: nothing may have failed.
func checks(cs []modules.Check) []generation.Check {
	var out []generation.Check
	for _, c := range cs {
		gc := generation.Check{Name: c.Name, Kind: c.Kind, Unit: c.Unit, Port: c.Port, ServerName: c.ServerName, URL: c.URL, CAFile: c.CAFile, CertFile: c.CertFile, KeyFile: c.KeyFile}
		out = append(out, gc)
	}
	return append(out, generation.Check{Name: "no unit failed", Kind: "system"})
}

// GenerationFiles are where generation n lies in a root file system, and
// the link that makes it current, relative to generation.Root.
func GenerationFiles(n int) (manifest, current, target string) {
	dir := fmt.Sprintf("generations/%d", n)
	return path.Join(generation.Root, dir, "manifest.json"), path.Join(generation.Root, "current"), dir
}
