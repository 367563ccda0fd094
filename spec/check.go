package spec

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/hashicorp/hcl/v2"
)

// check makes the checks that span blocks, once every block is decoded.
func (d *decoder) check(s *Site) {
	d.checkPorts(s)
	d.checkNodeNames(s)
	d.checkPaths(s)
	d.checkAddress(s)
	d.checkFirmwareUse(s)
}

// Port is one TCP port the gateway listens on, as the spec sets it.
type Port struct {
	Setting string // e.g. "mqtt.port"
	Number  int
	Range   hcl.Range
	// Written is false when the port is a default.
	Written bool
}

// Ports lists the TCP ports the spec assigns, in a fixed order.
func (s *Site) Ports() []Port {
	port := func(setting string, n int, w Where) Port {
		attr := setting[strings.IndexByte(setting, '.')+1:]
		return Port{setting, n, w.Attr(attr), w.Has(attr)}
	}
	ps := []Port{
		port("ssh.port", s.SSH.Port, s.SSH.Where),
		port("mqtt.port", s.MQTT.Port, s.MQTT.Where),
		port("mqtt.local_plain_port", s.MQTT.LocalPlainPort, s.MQTT.Where),
		port("https.port", s.HTTPS.Port, s.HTTPS.Where),
		port("https.redirect_port", s.HTTPS.RedirectPort, s.HTTPS.Where),
		port("influxdb.port", s.InfluxDB.Port, s.InfluxDB.Where),
		port("ingest.metrics_port", s.Ingest.MetricsPort, s.Ingest.Where),
	}
	if s.Grafana != nil {
		ps = append(ps, port("grafana.port", s.Grafana.Port, s.Grafana.Where))
	}
	out := ps[:0]
	for _, p := range ps {
		if p.Number != 0 {
			out = append(out, p)
		}
	}
	return out
}

func (d *decoder) checkPorts(s *Site) {
	first := map[int]Port{}
	for _, p := range s.Ports() {
		if d.bad[p.Setting] {
			continue
		}
		prev, dup := first[p.Number]
		if !dup {
			first[p.Number] = p
			continue
		}
		// Point at the setting the user wrote; a default cannot be
		// what they need to change.
		here, other := p, prev
		if !p.Written && prev.Written {
			here, other = prev, p
		}
		how := "is set at " + shortRange(other.Range)
		if !other.Written {
			how = "by default"
		}
		d.errorAt(here.Range, "Port used twice",
			fmt.Sprintf("%s is %d, which %s uses too (%s); give each service a port of its own.", here.Setting, here.Number, other.Setting, how))
	}
}

func (d *decoder) checkNodeNames(s *Site) {
	owner := map[string]Node{}
	reported := map[string]bool{}
	for _, n := range s.Nodes {
		if prev, dup := owner[n.Name]; dup {
			if !reported[n.Name] {
				reported[n.Name] = true
				d.errorAt(n.Where.Block, "Duplicate node name",
					fmt.Sprintf("Node %q is also declared by node %q at %s; node names must be unique, because each is a certificate and an MQTT identity.", n.Name, prev.Group, shortRange(prev.Where.Block)))
			}
			continue
		}
		owner[n.Name] = n
		if n.Index > 0 && reservedCertNames[n.Name] {
			d.errorAt(n.Where.Block, "Reserved node name", fmt.Sprintf("%q names one of the gateway's own certificates; choose another label.", n.Name))
		}
		if n.Name == s.Gateway.Hostname && !reported[n.Name] {
			reported[n.Name] = true
			d.errorAt(n.Where.Block, "Node named like the gateway", fmt.Sprintf("%q is the gateway's hostname; a node of the same name would share its certificate name. Choose another.", n.Name))
		}
	}
}

func (d *decoder) checkPaths(s *Site) {
	if s.Grafana == nil || d.bad["ota.path"] || d.bad["grafana.path"] {
		return
	}
	g, o := s.Grafana.Path, s.OTA.Path
	if g == o || strings.HasPrefix(g, o) {
		d.errorAt(s.Grafana.Where.Attr("path"), "Grafana path inside the OTA tree",
			fmt.Sprintf("grafana.path %q lies in ota.path %q, which only nodes with a client certificate may read; give Grafana a path of its own.", g, o))
	}
}

func (d *decoder) checkAddress(s *Site) {
	g := s.Gateway
	if !g.Network.Address.IsValid() || !g.Where.Has("address") {
		return
	}
	if a, err := netip.ParseAddr(g.Address); err == nil && a != g.Network.Address.Addr() {
		d.warnAt(g.Where.Attr("address"), "Address differs from the static address",
			fmt.Sprintf("push and the nodes will connect to %s, but the gateway's static address is %s; that works only through NAT or a second address.", a, g.Network.Address.Addr()))
	}
}

func (d *decoder) checkFirmwareUse(s *Site) {
	used := map[string]bool{}
	for _, n := range s.Nodes {
		used[n.Firmware] = true
	}
	for _, fw := range s.Firmware {
		if !used[fw.Name] && len(s.Nodes) > 0 {
			d.warnAt(fw.Where.Block, "Firmware not used", fmt.Sprintf("No node runs firmware %q; remove it, or point nodes at it with firmware = firmware.%s.", fw.Name, fw.Name))
		}
	}
}
