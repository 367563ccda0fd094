// Package modules holds one module per gateway service — mosquitto,
// nginx, influxdb, grafana, firewall, ssh, system, ingest — and their
// registry. A module reads its part of a site and returns a
// Contribution: packages, listeners, firewall openings, and the
// certificates and secrets it needs from the state. Modules produce data
// only; they never write images or open connections.
package modules

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"

	"github.com/appliance/appliance/pki"
	"github.com/appliance/appliance/spec"
	"github.com/appliance/appliance/state"
)

// Module is one gateway service.
type Module interface {
	// ID names the module, e.g. "mosquitto".
	ID() string
	// Decode takes the module's part of the site and reports whether
	// the site uses the module at all.
	Decode(s *spec.Site) bool
	// Contribute returns what the module adds to the gateway.
	Contribute() Contribution
}

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
	Setting string `json:"setting,omitempty"`
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

// Contribution is what one module adds to the gateway.
type Contribution struct {
	Module    string             `json:"module"`
	Summary   string             `json:"summary"`
	Packages  []string           `json:"packages"`
	Units     []string           `json:"units"`
	Listeners []Listener         `json:"listeners"`
	Openings  []Opening          `json:"openings"`
	Certs     []pki.Request      `json:"certificates"`
	Secrets   []state.SecretWant `json:"secrets"`
}

// Set is the merged contributions of every module a site uses.
type Set struct {
	Contributions []Contribution
}

// Collect runs every registered module on the site and merges their
// contributions, refusing two modules that claim one port.
func Collect(s *spec.Site) (*Set, error) {
	set := &Set{}
	for _, id := range IDs() {
		m := registry[id].New()
		if !m.Decode(s) {
			continue
		}
		c := m.Contribute()
		c.Module = id
		set.Contributions = append(set.Contributions, c)
	}
	type claim struct{ module, purpose string }
	ports := map[string]claim{}
	for _, c := range set.Contributions {
		for _, l := range c.Listeners {
			key := fmt.Sprintf("%d/%s", l.Port, l.Proto)
			if prev, dup := ports[key]; dup {
				return nil, fmt.Errorf("port %s is claimed by %s (%s) and by %s (%s); give one of them another port in the spec", key, prev.module, prev.purpose, c.Module, l.Purpose)
			}
			ports[key] = claim{c.Module, l.Purpose}
		}
	}
	return set, nil
}

// Packages are every module's packages, sorted, each once.
func (s *Set) Packages() []string {
	seen := map[string]bool{}
	var out []string
	for _, c := range s.Contributions {
		for _, p := range c.Packages {
			if !seen[p] {
				seen[p] = true
				out = append(out, p)
			}
		}
	}
	sort.Strings(out)
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
