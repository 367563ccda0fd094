package desired

import (
	"fmt"
	"os"

	"github.com/appliance/appliance/images/apt"
	"github.com/appliance/appliance/images/rootfs"
	"github.com/appliance/appliance/keys"
)

// Request is the gateway's package set as the lock and the build take
// it: the suite, the architecture, the os block's sources with their
// keyrings read (a file the spec names, or one shipped with appliance)
// and their priorities, and Packages.
func (g *Gateway) Request() (*rootfs.Request, error) {
	req := &rootfs.Request{Suite: g.Site.OS.Suite, Arch: g.Arch, Packages: g.Packages}
	for _, s := range g.Site.OS.Sources {
		var b []byte
		var err error
		if s.Keyring != "" {
			b, err = os.ReadFile(s.Keyring)
		} else {
			b, err = keys.Read(s.ShippedKeyring)
		}
		if err != nil {
			return nil, fmt.Errorf("source %s: %w", s.Name, err)
		}
		kr, err := apt.ReadKeyring(b)
		if err != nil {
			return nil, fmt.Errorf("source %s: keyring %s: %w", s.Name, s.Keyring+s.ShippedKeyring, err)
		}
		prio := rootfs.DefaultPriority
		if s.IsRaspberryPi() {
			prio = rootfs.RaspberryPiPriority
		}
		req.Sources = append(req.Sources, &apt.Source{Name: s.Name, URL: s.URL, Suite: s.Suite, Components: s.Components, Keyring: kr, Priority: prio})
	}
	return req, nil
}
