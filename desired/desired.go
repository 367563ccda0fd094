// Package desired computes the whole of what a site's gateway should be,
// once, for every way of putting it there: plan shows it, build applies
// it to the image's file tree, push to the live gateway over SFTP, tests
// to a folder. Nothing else reads the spec or the modules to decide what
// goes on the gateway.
//
// A Gateway holds the merged contributions of the modules: the package
// set (the modules', the board's kernel and firmware, os.packages), the
// accounts, folders, files, links and appliance's programs, and the
// units, listeners and checks. Resolve reads what the files need from the
// site's state (keys, certificates, secrets, the disk identity) and gives
// every file's final bytes; Apply writes them to a Target in one order.
package desired

import (
	"fmt"
	"sort"

	"github.com/appliance/appliance/evidence"
	"github.com/appliance/appliance/modules"
	"github.com/appliance/appliance/spec"
	"github.com/appliance/appliance/state"
)

// Board is a gateway board from the spec's catalogue: what the image
// build needs to know of the hardware.
type Board = spec.Board

// Gateway is the desired state of a site's gateway.
type Gateway struct {
	Site *spec.Site
	// Name is the site's name; Hostname and Admin the gateway's.
	Name, Hostname, Admin string
	// Board is the gateway's board from the catalogue; Arch its Debian
	// architecture.
	Board *Board
	Arch  string
	// Modules are the modules' contributions one by one, for plan.
	Modules *modules.Set
	// Wants is what the state must hold for this site.
	Wants state.Wants

	// What goes on the gateway, merged: folders, files and links by
	// path, accounts by ID, appliance's programs.
	Dirs     []modules.Dir
	Files    []modules.File
	Symlinks []modules.Symlink
	Users    []modules.User
	Groups   []modules.Group
	Programs []modules.Program
	// Packages are every package asked for on top of the suite's base
	// set, sorted, each once: exactly what the lock requests.
	Packages []string

	Units     []string
	Listeners []modules.Listener
	Checks    []modules.Check

	// Evidence is what the build's security evidence says of the site.
	Evidence evidence.Facts
}

// Compute runs the modules on the site.
func Compute(s *spec.Site) (*Gateway, error) {
	if s.Gateway.Hardware == nil {
		return nil, fmt.Errorf("board %q is not in the catalogue", s.Gateway.Board)
	}
	set, err := modules.Collect(s)
	if err != nil {
		return nil, fmt.Errorf("combining the services: %w", err)
	}
	g := &Gateway{
		Site: s, Name: s.Name, Hostname: s.Gateway.Hostname, Admin: s.Gateway.Admin.User,
		Board: s.Gateway.Hardware, Arch: s.Gateway.Hardware.Arch,
		Modules: set,
		Wants: state.Wants{
			Site:         s.Name,
			SupportYears: s.SupportYears,
			Certs:        set.Certs(),
			Secrets:      set.Secrets(),
			OTA:          len(s.Nodes) > 0,
		},
		Files:    set.Files(),
		Users:    set.Users(),
		Groups:   set.Groups(),
		Programs: set.Programs(),
		Checks:   set.Checks(),
		Evidence: evidence.Facts{Site: s.Name, Product: "appliance gateway " + s.Name, Vendor: s.Vendor, Contact: s.Contact,
			SupportYears: s.SupportYears, Suite: s.OS.Suite, Claims: set.Claims()},
	}
	for _, c := range set.Contributions {
		g.Dirs = append(g.Dirs, c.Dirs...)
		g.Symlinks = append(g.Symlinks, c.Symlinks...)
		g.Units = append(g.Units, c.Units...)
		g.Listeners = append(g.Listeners, c.Listeners...)
	}
	sort.SliceStable(g.Dirs, func(i, j int) bool { return g.Dirs[i].Path < g.Dirs[j].Path })
	sort.SliceStable(g.Symlinks, func(i, j int) bool { return g.Symlinks[i].Path < g.Symlinks[j].Path })
	g.Packages = sortedUnique(append(set.Packages(), s.OS.Packages...))
	return g, nil
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
