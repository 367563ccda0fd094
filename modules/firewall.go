package modules

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"

	"github.com/appliance/appliance/spec"
)

func init() { Register(Info{"firewall", func() Module { return new(Firewall) }}) }

var (
	_ Module    = (*Firewall)(nil)
	_ Completer = (*Firewall)(nil)
)

// Firewall is nftables: inbound traffic is dropped, IPv4 and IPv6, except
// loopback, replies, limited ICMP, and exactly the openings the other
// modules ask for, each from the spec's networks.
type Firewall struct{ site *spec.Site }

// SSH rate limit: new connections per source address.
const sshRate = "10/minute"

// ID implements Module.
func (*Firewall) ID() string { return "firewall" }

// Decode implements Module.
func (m *Firewall) Decode(s *spec.Site) bool { m.site = s; return true }

// Contribute implements Module; Complete adds the ruleset.
func (m *Firewall) Contribute() Contribution {
	s := m.site
	return Contribution{
		Summary:  "nftables, inbound default drop (IPv4 and IPv6)",
		Packages: []string{"nftables"},
		Symlinks: []Symlink{enableVendor("nftables.service", "sysinit.target")},
		Units:    []string{"nftables.service"},
		// Loading the ruleset is all the unit does: netlink, as root with
		// CAP_NET_ADMIN alone, and no IP traffic.
		Files: []File{text(dropInPath("nftables.service"), 0o644, "root", "root", Sandbox{
			Capabilities: []string{"CAP_NET_ADMIN"}, AddressFamilies: []string{"AF_NETLINK", "AF_UNIX"},
			NoIP: true, UMask: "0077", PrivilegedCalls: true,
		}.dropIn(s.Name, "nftables.service"), s.Firewall.Where.Block)},
		Checks:  []Check{{Name: "firewall loaded", Kind: "unit", Unit: "nftables.service"}},
		Actions: []Action{restart(StageSystem, "nftables.service", "the ruleset changed", "/etc/nftables.conf", dropInPath("nftables.service"))},
	}
}

// Complete implements Completer: the ruleset opens what the others ask.
func (m *Firewall) Complete(own *Contribution, all []Contribution) {
	var openings []Opening
	for _, c := range all {
		openings = append(openings, c.Openings...)
	}
	sort.SliceStable(openings, func(i, j int) bool {
		if openings[i].Port != openings[j].Port {
			return openings[i].Port < openings[j].Port
		}
		return openings[i].Proto < openings[j].Proto
	})
	own.Files = append(own.Files, text("/etc/nftables.conf", 0o755, "root", "root", Ruleset(m.site.Name, openings), m.site.Firewall.Where.Block))
}

// Ruleset renders the nftables ruleset for the openings. Openings that
// admit the same networks share one named set per address family.
func Ruleset(site string, openings []Opening) string {
	var b strings.Builder
	b.WriteString("#!/usr/sbin/nft -f\n")
	b.WriteString(header("#", site))
	b.WriteString("# Inbound: drop, but for loopback, replies, limited ICMP and the openings\n# below. The gateway routes nothing. Outbound is free.\n\nflush ruleset\n\ntable inet appliance {\n")
	setOf := map[string]int{}
	var order []string
	for _, o := range openings {
		key := fmt.Sprint(o.From)
		if _, ok := setOf[key]; !ok {
			setOf[key] = len(order)
			order = append(order, key)
			v4, v6 := split(o.From)
			n := setOf[key]
			if len(v4) > 0 {
				fmt.Fprintf(&b, "\tset from%d_v4 {\n\t\ttype ipv4_addr\n\t\tflags interval\n\t\telements = { %s }\n\t}\n\n", n, strings.Join(v4, ", "))
			}
			if len(v6) > 0 {
				fmt.Fprintf(&b, "\tset from%d_v6 {\n\t\ttype ipv6_addr\n\t\tflags interval\n\t\telements = { %s }\n\t}\n\n", n, strings.Join(v6, ", "))
			}
		}
	}
	for i, o := range openings {
		if o.RateLimit {
			fmt.Fprintf(&b, "\tset rate%d_v4 {\n\t\ttype ipv4_addr\n\t\tsize 65535\n\t\tflags dynamic,timeout\n\t\ttimeout 1m\n\t}\n\n", i)
			fmt.Fprintf(&b, "\tset rate%d_v6 {\n\t\ttype ipv6_addr\n\t\tsize 65535\n\t\tflags dynamic,timeout\n\t\ttimeout 1m\n\t}\n\n", i)
		}
	}
	b.WriteString(`	chain input {
		type filter hook input priority filter; policy drop;

		iif "lo" accept
		ct state established,related accept
		ct state invalid drop

		# ICMP: errors and neighbour discovery always, echo limited.
		icmp type { destination-unreachable, time-exceeded, parameter-problem } accept
		icmp type echo-request limit rate 10/second burst 20 packets accept
		icmpv6 type { destination-unreachable, packet-too-big, time-exceeded, parameter-problem, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert } accept
		icmpv6 type echo-request limit rate 10/second burst 20 packets accept
		# DHCPv6 replies to the gateway's own requests.
		ip6 saddr fe80::/10 udp sport 547 udp dport 546 accept
`)
	for i, o := range openings {
		v4, v6 := split(o.From)
		n := setOf[fmt.Sprint(o.From)]
		fmt.Fprintf(&b, "\n\t\t# %s\n", o.Purpose)
		for _, fam := range []struct {
			name, saddr string
			n           int
		}{{"v4", "ip saddr", len(v4)}, {"v6", "ip6 saddr", len(v6)}} {
			if fam.n == 0 {
				continue
			}
			if o.RateLimit {
				fmt.Fprintf(&b, "\t\t%s @from%d_%s %s dport %d ct state new update @rate%d_%s { %s limit rate over %s burst 5 packets } drop\n",
					fam.saddr, n, fam.name, o.Proto, o.Port, i, fam.name, fam.saddr, sshRate)
			}
			fmt.Fprintf(&b, "\t\t%s @from%d_%s %s dport %d accept\n", fam.saddr, n, fam.name, o.Proto, o.Port)
		}
	}
	b.WriteString(`
		limit rate 5/minute burst 10 packets log prefix "appliance drop: " level info
	}

	chain forward {
		type filter hook forward priority filter; policy drop;
	}

	chain output {
		type filter hook output priority filter; policy accept;
	}
}
`)
	return b.String()
}

// split sorts networks into IPv4 and IPv6 ones, as nftables sets hold
// one family each.
func split(ps []netip.Prefix) (v4, v6 []string) {
	for _, p := range ps {
		if p.Addr().Is4() {
			v4 = append(v4, p.String())
		} else {
			v6 = append(v6, p.String())
		}
	}
	return v4, v6
}
