package spec

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
	_ "time/tzdata" // timezones are checked the same on every host

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
	"golang.org/x/crypto/ssh"
)

var gatewaySchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "board", Required: true}, {Name: "hostname"}, {Name: "address"},
		{Name: "timezone"}, {Name: "locale"},
	},
	Blocks: []hcl.BlockHeaderSchema{{Type: "admin"}, {Type: "network"}},
}

var adminSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "user"}, {Name: "authorized_keys"}},
}

var networkSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "address"}, {Name: "router"}, {Name: "dns"}},
	Blocks:     []hcl.BlockHeaderSchema{{Type: "wifi"}},
}

var wifiSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "ssid", Required: true}, {Name: "psk", Required: true}, {Name: "country", Required: true}},
}

// Defaults a spec may leave out.
const (
	DefaultTimezone  = "UTC"
	DefaultLocale    = "C.UTF-8"
	DefaultAdminUser = "admin"
)

func (d *decoder) decodeGateway(blk *hcl.Block, ctx *hcl.EvalContext) Gateway {
	g := Gateway{Name: blk.Labels[0], Timezone: DefaultTimezone, Locale: DefaultLocale, Where: Where{Block: blk.DefRange}}
	b, blocks := d.open(blk.Body, gatewaySchema, ctx, &g.Where, "gateway")

	if b.str("board", &g.Board) {
		if _, ok := Boards[g.Board]; !ok {
			b.fail("board", "Unknown board", fmt.Sprintf("%q is not a board appliance builds for; use one of %s.", g.Board, strings.Join(keys(Boards), ", ")))
		}
	}
	if b.str("hostname", &g.Hostname) {
		if !validHostname(g.Hostname) {
			b.fail("hostname", "Invalid hostname", fmt.Sprintf("%q is not a valid hostname: use one DNS label of lowercase letters, digits and dashes (at most 63), not starting or ending with a dash.", g.Hostname))
		}
	} else if !b.has("hostname") {
		g.Hostname = g.Name
		if !validHostname(g.Hostname) {
			d.errorAt(blk.LabelRanges[0], "Invalid hostname", fmt.Sprintf("The gateway's hostname defaults to its label, and %q is not a valid hostname; set hostname, or use a label of lowercase letters, digits and dashes.", g.Name))
		}
	}
	if b.str("address", &g.Address) {
		if a, err := netip.ParseAddr(g.Address); err == nil {
			g.Address = a.String()
			if a.IsUnspecified() || a.IsMulticast() || a.IsLoopback() {
				b.fail("address", "Invalid address", fmt.Sprintf("%s cannot be the gateway's address: push and the nodes must reach it over the network.", g.Address))
			}
		} else if !validDNSName(g.Address) {
			b.fail("address", "Invalid address", fmt.Sprintf("%q is neither an IP address nor a DNS name.", g.Address))
		}
	}
	if b.str("timezone", &g.Timezone) {
		if _, err := time.LoadLocation(g.Timezone); err != nil || g.Timezone == "Local" || g.Timezone == "" {
			b.fail("timezone", "Unknown timezone", fmt.Sprintf("%q is not an IANA timezone; write it as Area/City, such as \"Europe/Berlin\", or \"UTC\".", g.Timezone))
		}
	}
	if b.str("locale", &g.Locale) {
		if !localeRe.MatchString(g.Locale) {
			b.fail("locale", "Invalid locale", fmt.Sprintf("%q is not a UTF-8 locale; write it as language_COUNTRY.UTF-8, such as \"en_GB.UTF-8\", or \"C.UTF-8\".", g.Locale))
		}
	}

	var adminBlocks, netBlocks hcl.Blocks
	for _, nb := range blocks {
		switch nb.Type {
		case "admin":
			adminBlocks = append(adminBlocks, nb)
		case "network":
			netBlocks = append(netBlocks, nb)
		}
	}
	g.Admin = Admin{User: DefaultAdminUser, AuthorizedKeys: []string{}, Where: Where{Block: blk.DefRange}}
	if ab := d.single(adminBlocks, "admin"); ab != nil {
		g.Admin = d.decodeAdmin(ab, ctx)
	}
	g.Network.Where.Block = blk.DefRange
	if nb := d.single(netBlocks, "network"); nb != nil {
		g.Network = d.decodeNetwork(nb, ctx)
	}
	if !g.Where.Has("address") && g.Hostname != "" {
		// Where push and the nodes find the gateway when the spec does
		// not say: its static address, else its mDNS name.
		if g.Network.Address.IsValid() {
			g.Address = g.Network.Address.Addr().String()
		} else {
			g.Address = g.Hostname + ".local"
		}
	}
	return g
}

func (d *decoder) decodeAdmin(blk *hcl.Block, ctx *hcl.EvalContext) Admin {
	a := Admin{User: DefaultAdminUser, AuthorizedKeys: []string{}, Where: Where{Block: blk.DefRange}}
	b, _ := d.open(blk.Body, adminSchema, ctx, &a.Where, "gateway.admin")
	if b.str("user", &a.User) && !validUser(a.User) {
		b.fail("user", "Invalid admin user", fmt.Sprintf("%q cannot be the admin account: use a lowercase Linux user name (at most 32 characters) that Debian and the gateway's services do not already use, and not root.", a.User))
	}
	var entries []string
	if b.strings("authorized_keys", &entries) {
		seen := map[string]bool{}
		for i, e := range entries {
			for _, line := range strings.Split(e, "\n") {
				line = strings.TrimSpace(line)
				if line == "" || strings.HasPrefix(line, "#") {
					continue
				}
				key, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
				if err != nil {
					b.failAt("authorized_keys", b.elemRange("authorized_keys", i), "Invalid SSH public key", "This entry of authorized_keys is not an OpenSSH public key; give the contents of a .pub file, such as file(\"~/.ssh/id_ed25519.pub\").")
					continue
				}
				if problem := weakKey(key); problem != "" {
					b.failAt("authorized_keys", b.elemRange("authorized_keys", i), "Weak SSH public key", problem)
					continue
				}
				if seen[line] {
					continue
				}
				seen[line] = true
				a.AuthorizedKeys = append(a.AuthorizedKeys, line)
			}
		}
	}
	return a
}

// weakKey says why the gateway's hardened sshd would refuse a key, or "".
func weakKey(k ssh.PublicKey) string {
	switch k.Type() {
	case "ssh-dss":
		return "DSA keys are refused by current OpenSSH; make an Ed25519 key with ssh-keygen -t ed25519."
	case ssh.KeyAlgoRSA:
		if ck, ok := k.(ssh.CryptoPublicKey); ok {
			if rk, ok := ck.CryptoPublicKey().(interface{ Size() int }); ok && rk.Size()*8 < 3072 {
				return fmt.Sprintf("This RSA key has %d bits; the gateway accepts RSA keys of 3072 bits or more. Make an Ed25519 key with ssh-keygen -t ed25519.", rk.Size()*8)
			}
		}
	}
	return ""
}

func (d *decoder) decodeNetwork(blk *hcl.Block, ctx *hcl.EvalContext) Network {
	n := Network{Where: Where{Block: blk.DefRange}}
	b, blocks := d.open(blk.Body, networkSchema, ctx, &n.Where, "gateway.network")
	var s string
	if b.str("address", &s) {
		p, err := netip.ParsePrefix(s)
		switch {
		case err != nil:
			b.fail("address", "Invalid static address", fmt.Sprintf("%q is not an address with prefix length; write it as \"192.168.1.50/24\", or leave address out for DHCP.", s))
		case p.Addr().IsLoopback() || p.Addr().IsUnspecified() || p.Addr().IsMulticast():
			b.fail("address", "Invalid static address", fmt.Sprintf("%s cannot be the gateway's address on its network.", s))
		case p.Bits() == p.Addr().BitLen() || p.Addr() == p.Masked().Addr():
			b.fail("address", "Invalid static address", fmt.Sprintf("%s names a network, not a host on it; write the gateway's address and the network's prefix length, such as \"192.168.1.50/24\".", s))
		default:
			n.Address = p
		}
	}
	if b.str("router", &s) {
		a, err := netip.ParseAddr(s)
		switch {
		case err != nil:
			b.fail("router", "Invalid router", fmt.Sprintf("%q is not an IP address.", s))
		case !n.Address.IsValid():
			b.fail("router", "Router without a static address", "router is used only with a static address; set address, or leave router out for DHCP.")
		case !n.Address.Masked().Contains(a):
			b.fail("router", "Router outside the network", fmt.Sprintf("The router %s is not on the gateway's network %s.", a, n.Address.Masked()))
		default:
			n.Router = a
		}
	}
	var dns []string
	if b.strings("dns", &dns) {
		for i, s := range dns {
			a, err := netip.ParseAddr(s)
			if err != nil {
				b.failAt("dns", b.elemRange("dns", i), "Invalid DNS server", fmt.Sprintf("%q is not an IP address.", s))
				continue
			}
			n.DNS = append(n.DNS, a)
		}
	}
	if wb := d.single(blocks, "wifi"); wb != nil {
		w := WiFi{Where: Where{Block: wb.DefRange}}
		wbody, _ := d.open(wb.Body, wifiSchema, ctx, &w.Where, "gateway.network.wifi")
		if wbody.str("ssid", &w.SSID) && (len(w.SSID) == 0 || len(w.SSID) > 32) {
			wbody.fail("ssid", "Invalid Wi-Fi SSID", "An SSID is 1 to 32 bytes long.")
		}
		if v, ok := wbody.eval("psk", cty.String, true); ok {
			w.PSK = NewSecret(v.AsString())
			if !validPSK(w.PSK.Reveal()) {
				wbody.failSecret("psk", "Invalid Wi-Fi passphrase", "A WPA passphrase is 8 to 63 printable ASCII characters, or 64 hex digits.")
			}
		}
		if wbody.str("country", &w.Country) && !countries[w.Country] {
			wbody.fail("country", "Unknown Wi-Fi country", fmt.Sprintf("%q is not an ISO 3166-1 country code; the radio's regulatory domain is written as two capital letters, such as \"DE\".", w.Country))
		}
		n.WiFi = &w
	}
	return n
}
