// Package desired computes what a site's gateway should be — the
// modules' merged contributions and what they need from the state — in
// one place, so that plan, build and push never compute it twice.
package desired

import (
	"fmt"
	"slices"
	"sort"

	"github.com/appliance/appliance/images/boards"
	"github.com/appliance/appliance/modules"
	"github.com/appliance/appliance/spec"
	"github.com/appliance/appliance/state"
)

// Gateway is the desired state of a site's gateway.
type Gateway struct {
	Site    *spec.Site
	Modules *modules.Set
	// Wants is what the state must hold for this site.
	Wants state.Wants
}

// Compute runs the modules on the site.
func Compute(s *spec.Site) (*Gateway, error) {
	set, err := modules.Collect(s)
	if err != nil {
		return nil, fmt.Errorf("combining the services: %w", err)
	}
	return &Gateway{
		Site:    s,
		Modules: set,
		Wants: state.Wants{
			Site:    s.Name,
			Certs:   set.Certs(),
			Secrets: set.Secrets(),
			OTA:     len(s.Nodes) > 0,
			// How long what the CA signs lasts.
			SupportYears: s.SupportYears,
		},
	}, nil
}

// Packages are what the gateway installs besides Debian's base set and
// the spec's own os.packages: the modules' packages and the board's
// kernel and firmware.
func (g *Gateway) Packages() []string {
	pkgs := g.Modules.Packages()
	if b := boards.All[g.Site.Gateway.Board]; b != nil {
		pkgs = append(pkgs, b.Packages...)
	}
	sort.Strings(pkgs)
	return slices.Compact(pkgs)
}
