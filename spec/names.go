package spec

import (
	"net/netip"
	"regexp"
	"strings"
)

var (
	labelRe   = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	userRe    = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)
	localeRe  = regexp.MustCompile(`^([a-z]{2,3}_[A-Z]{2}|C)\.UTF-8$`)
	packageRe = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]+$`)
	versionRe = regexp.MustCompile(`^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$`)
	tagKeyRe  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,31}$`)
	fwNameRe  = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,30}$`)
	srcNameRe = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)
)

// validSiteName accepts names that are safe as folder names everywhere.
func validSiteName(s string) bool { return labelRe.MatchString(s) }

// validHostname accepts a single DNS label (RFC 1123), lowercase: the
// gateway's hostname is also its mDNS name and a certificate SAN.
func validHostname(s string) bool {
	return labelRe.MatchString(s) && strings.Trim(s, "0123456789") != ""
}

// validDNSName accepts a fully qualified or single-label DNS name.
func validDNSName(s string) bool {
	if len(s) > 253 || s == "" {
		return false
	}
	for _, l := range strings.Split(strings.TrimSuffix(s, "."), ".") {
		if !labelRe.MatchString(strings.ToLower(l)) {
			return false
		}
	}
	return strings.Trim(s, "0123456789.") != ""
}

// validCertName accepts node names: a node's name is its certificate's
// CN, its MQTT client ID and a level of its MQTT topics, so it may not
// hold "/", "+", "#" or anything a topic filter or ACL would read
// specially.
func validCertName(s string) bool { return labelRe.MatchString(s) }

// reservedCertNames are the names of the gateway's own certificates; a
// node may not take one, or `appliance pki renew NAME` would be ambiguous.
var reservedCertNames = map[string]bool{
	"ca": true, "crl": true, "ingest": true, "mosquitto": true, "nginx": true,
	"influxdb": true, "grafana": true, "gateway": true, "localhost": true,
}

// reservedUsers are accounts that Debian or the gateway's services own.
var reservedUsers = map[string]bool{
	"root": true, "daemon": true, "bin": true, "sys": true, "sync": true, "games": true,
	"man": true, "lp": true, "mail": true, "news": true, "uucp": true, "proxy": true,
	"www-data": true, "backup": true, "list": true, "irc": true, "_apt": true,
	"nobody": true, "messagebus": true, "sshd": true, "mosquitto": true, "influxdb": true,
	"grafana": true, "nginx": true, "ingest": true, "pi": true,
}

func validUser(s string) bool {
	return userRe.MatchString(s) && !reservedUsers[s] && !strings.HasPrefix(s, "systemd-")
}

// validPSK accepts a WPA passphrase (8 to 63 printable ASCII characters)
// or a raw 256-bit key written as 64 hex digits.
func validPSK(s string) bool {
	if len(s) == 64 {
		for _, c := range s {
			if !strings.ContainsRune("0123456789abcdefABCDEF", c) {
				return false
			}
		}
		return true
	}
	if len(s) < 8 || len(s) > 63 {
		return false
	}
	for _, c := range s {
		if c < 0x20 || c > 0x7e {
			return false
		}
	}
	return true
}

// localNetworks are where a gateway's services may be reached from when
// the spec says nothing else: private and link-local ranges, never the
// internet.
var localNetworks = []netip.Prefix{
	netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("192.168.0.0/16"),
	netip.MustParsePrefix("fc00::/7"),
	netip.MustParsePrefix("fe80::/10"),
}

// LocalNetworks returns the default source networks of the firewall.
func LocalNetworks() []netip.Prefix { return append([]netip.Prefix(nil), localNetworks...) }
