package modules

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/appliance/appliance/spec"
)

func load(t *testing.T, path string) *spec.Site {
	t.Helper()
	site, rep := spec.Load(path, spec.Options{Environ: []string{}, Partial: true})
	if rep.HasErrors() {
		var b strings.Builder
		rep.WriteText(&b)
		t.Fatal(b.String())
	}
	return site
}

func TestGreenhouse(t *testing.T) {
	site := load(t, "../examples/greenhouse.hcl")
	set, err := Collect(site)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, c := range set.Contributions {
		ids = append(ids, c.Module)
	}
	if got := fmt.Sprint(ids); got != "[firewall grafana health influxdb ingest mosquitto nginx ssh system]" {
		t.Errorf("modules = %s", got)
	}
	pk := fmt.Sprint(set.Packages())
	for _, want := range []string{"grafana", "influxdb2", "mosquitto", "nginx", "nftables", "openssh-server", "unattended-upgrades"} {
		if !strings.Contains(pk, want) {
			t.Errorf("packages %s lack %s", pk, want)
		}
	}
	if set.Lookup("system").Listeners != nil {
		t.Errorf("a gateway with a static address needs no mDNS responder: %+v", set.Lookup("system").Listeners)
	}
	// Exactly the network-facing listeners are opened, each from the
	// spec's networks; nothing on loopback is.
	var open []string
	for _, o := range set.Openings() {
		open = append(open, fmt.Sprintf("%d/%s<%v>%v", o.Port, o.Proto, o.From, o.RateLimit))
	}
	want := "[22/tcp<[192.168.1.0/24]>true 80/tcp<[192.168.1.0/24]>false 443/tcp<[192.168.1.0/24]>false 8883/tcp<[192.168.1.0/24]>false]"
	if fmt.Sprint(open) != want {
		t.Errorf("openings = %v\nwant        %s", open, want)
	}
	certs := map[string]string{}
	for _, r := range set.Certs() {
		certs[r.Name] = string(r.Kind)
	}
	if len(certs) != 4+1+15 || certs["grafana"] != "server" || certs["ingest"] != "client" || certs["bench-12"] != "node" || certs["coldframe"] != "node" {
		t.Errorf("certificates = %v", certs)
	}
	m := set.Lookup("mosquitto").Certs[0]
	if fmt.Sprint(m.DNSNames) != "[greenhouse-gw greenhouse-gw.local localhost]" || len(m.IPs) != 3 || m.IPs[0].String() != "192.168.1.50" {
		t.Errorf("mosquitto SANs %v %v", m.DNSNames, m.IPs)
	}
	var secrets []string
	for _, s := range set.Secrets() {
		secrets = append(secrets, s.Name)
	}
	// InfluxDB 2 makes the ingest and Grafana tokens itself, on the
	// gateway; the state holds the operator's.
	if got := fmt.Sprint(secrets); got != "[grafana-admin-password grafana-secret-key influxdb-admin-password influxdb-admin-token]" {
		t.Errorf("secrets = %s", got)
	}
}

func TestDemo(t *testing.T) {
	site := load(t, "../examples/demo.hcl")
	set, err := Collect(site)
	if err != nil {
		t.Fatal(err)
	}
	if set.Lookup("grafana") != nil {
		t.Errorf("the demo has no grafana block, but the module is on")
	}
	if c := set.Lookup("influxdb"); c.Packages[0] != "influxdb" || c.Listeners[0].Bind != Localhost {
		t.Errorf("influxdb: %+v", c)
	}
	// A DHCP gateway reached as demo-gw.local answers mDNS (through
	// systemd-resolved), and the firewall lets the queries in.
	if c := set.Lookup("system"); len(c.Listeners) != 1 || c.Listeners[0].Port != 5353 || !strings.Contains(string(c.File("/etc/systemd/resolved.conf.d/appliance.conf").Content), "MulticastDNS=yes") {
		t.Errorf("mDNS for demo-gw.local: %+v", c.Listeners)
	}
}

func TestPortClaimedTwice(t *testing.T) {
	site := load(t, "../examples/demo.hcl")
	// The spec refuses equal ports; the merge checks again, since
	// modules may also open fixed ports the spec does not name (mDNS).
	site.Ingest.MetricsPort = site.SSH.Port
	_, err := Collect(site)
	if err == nil || !strings.Contains(err.Error(), "port 22/tcp is claimed by ingest") || !strings.Contains(err.Error(), "and by ssh") {
		t.Errorf("Collect with two modules on one port: %v", err)
	}
}

// TestPublicRoots: ca-certificates (and with it openssl) is on a gateway
// only where something there verifies a server against the public roots:
// apt with an https source, Grafana sending alerts out.
func TestPublicRoots(t *testing.T) {
	const httpOnly = `os {
  source "debian" {
    url = "http://deb.debian.org/debian"
  }
  source "grafana" {
    url     = "http://mirror.example.org/grafana"
    suite   = "stable"
    keyring = "grafana.asc"
  }
}
`
	for _, c := range []struct {
		name, extra string
		want        bool
	}{
		{"Debian over http", "", false},
		{"an https source", `os {
  source "debian" {
    url = "https://deb.debian.org/debian"
  }
}`, true},
		// Grafana from a mirror over http, so that only its alerts count.
		{"Grafana's alerts by webhook", httpOnly + `grafana {
  alert_webhook = "https://hooks.example.org/T0"
}`, true},
		{"Grafana without alerts", httpOnly + "grafana {}", false},
	} {
		dir := t.TempDir()
		p := filepath.Join(dir, "site.hcl")
		os.WriteFile(filepath.Join(dir, "grafana.asc"), []byte("a mirror's key\n"), 0o644)
		os.WriteFile(p, []byte("site \"t\" {}\ngateway \"gw\" {\n  board    = \"qemu-arm64\"\n  hostname = \"t-gw\"\n}\n"+c.extra+"\n"), 0o644)
		set, err := Collect(load(t, p))
		if err != nil {
			t.Fatal(err)
		}
		if got := slices.Contains(set.Packages(), "ca-certificates"); got != c.want {
			t.Errorf("%s: ca-certificates in %v is %v, want %v", c.name, set.Packages(), got, c.want)
		}
	}
}
