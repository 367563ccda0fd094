package modules

import (
	"fmt"
	"strings"

	"github.com/appliance/appliance/pki"
	"github.com/appliance/appliance/spec"
)

func init() { Register(Info{"nginx", func() Module { return new(Nginx) }}) }

var (
	_ Module      = (*Nginx)(nil)
	_ Provisioner = (*Nginx)(nil)
)

// Nginx serves HTTPS: the OTA tree to nodes, Grafana to browsers.
type Nginx struct {
	site    *spec.Site
	grafana bool
}

// OTADir is where the OTA tree lives on the gateway.
const OTADir = "/var/lib/appliance/ota"

// ID implements Module.
func (*Nginx) ID() string { return "nginx" }

// Decode implements Module.
func (m *Nginx) Decode(s *spec.Site) bool { m.site = s; return true }

// Provision implements Provisioner: Nginx proxies Grafana when it is on.
func (m *Nginx) Provision(ctx *Context) error {
	m.grafana = ctx.Enabled("grafana")
	return nil
}

// Contribute implements Module.
func (m *Nginx) Contribute() Contribution {
	s := m.site
	r := s.HTTPS.Where.Block
	names := []string{s.Gateway.Hostname, s.Gateway.Hostname + ".local"}
	if s.Gateway.Address != names[1] {
		names = append(names, s.Gateway.Address)
	}
	data := map[string]any{
		"Header": headerLine("#", s.Name), "Site": s.Name,
		"Port": s.HTTPS.Port, "RedirectPort": s.HTTPS.RedirectPort,
		"OTAPath": s.OTA.Path, "Ciphers": tlsCiphers, "ServerNames": strings.Join(names, " "),
		"Grafana": m.grafana,
	}
	if m.grafana {
		data["GrafanaPath"], data["GrafanaPort"] = s.Grafana.Path, s.Grafana.Port
	}
	var nodes strings.Builder
	nodes.WriteString(header("#", s.Name))
	for _, n := range s.Nodes {
		fmt.Fprintf(&nodes, "%s 1;\n", n.Name)
	}
	c := Contribution{
		Summary:  fmt.Sprintf("HTTPS; OTA files at %s for nodes with a client certificate", s.OTA.Path),
		Packages: []string{"nginx"},
		// OTADir's parent is the apply program's (package generation).
		Dirs: []Dir{{Path: OTADir, Mode: 0o750, Owner: "root", Group: "www-data"}},
		Files: []File{
			text("/etc/nginx/nginx.conf", 0o644, "root", "root", render("nginx.conf", data), r),
			text("/etc/nginx/appliance/headers.conf", 0o644, "root", "root", render("nginx-headers.conf", data), r),
			text("/etc/nginx/appliance/nodes.map", 0o644, "root", "root", nodes.String(), r),
			fromState("/etc/nginx/appliance/ca.crt", 0o644, "root", "root", "pki/ca.crt", r),
			fromState("/etc/nginx/appliance/crl.pem", 0o644, "root", "root", "pki/crl.pem", r),
			fromState("/etc/nginx/appliance/server.crt", 0o644, "root", "root", "pki/issued/nginx.crt", r),
			fromState("/etc/nginx/appliance/server.key", 0o640, "root", "www-data", "pki/issued/nginx.key", r),
			text(dropInPath("nginx.service"), 0o644, "root", "root", Sandbox{
				User: "www-data", Group: "www-data",
				Capabilities:     bindCaps(s.HTTPS.Port, s.HTTPS.RedirectPort),
				StateDirectory:   "nginx",
				RuntimeDirectory: "nginx",
				// Debian's unit forks, keeps a PID file in /run and stops
				// with start-stop-daemon, all of which assume root.
				Exec: map[string]string{
					"ExecStartPre": "/usr/sbin/nginx -t -q -e stderr",
					"ExecStart":    "/usr/sbin/nginx -e stderr -g 'daemon off;'",
					"ExecReload":   "/usr/sbin/nginx -e stderr -s reload",
					"ExecStop":     "/bin/kill -s QUIT $MAINPID",
				},
				Extra: []string{"Type=exec", "PIDFile=", "ReadWritePaths=/var/lib/nginx"},
			}.dropIn(s.Name, "nginx.service"), r),
		},
		Symlinks:  []Symlink{enableVendor("nginx.service", "multi-user.target")},
		Units:     []string{"nginx.service"},
		Listeners: []Listener{{Port: s.HTTPS.Port, Proto: "tcp", Bind: Network, Purpose: "HTTPS", Setting: "https.port", Range: s.HTTPS.Where.Attr("port")}},
		Openings:  []Opening{{Port: s.HTTPS.Port, Proto: "tcp", From: s.Firewall.HTTPSFrom, Purpose: "HTTPS"}},
		Checks: []Check{
			{Name: "nginx running", Kind: "unit", Unit: "nginx.service"},
			tlsPortCheck("HTTPS", s.HTTPS.Port, s),
		},
		// A reload reads the configuration, certificates and CRL again
		// without dropping a download; the sandbox needs a restart.
		Actions: []Action{
			reload(StageWeb, "nginx.service", "its configuration, certificates or CRL changed", "/etc/nginx/"),
			restart(StageWeb, "nginx.service", "its sandbox changed", dropInPath("nginx.service")),
		},
		Certs: []pki.Request{serverRequest("nginx", s)},
	}
	if m.grafana {
		c.Summary += fmt.Sprintf(", Grafana at %s", s.Grafana.Path)
	}
	if s.HTTPS.RedirectPort != 0 {
		c.Listeners = append(c.Listeners, Listener{Port: s.HTTPS.RedirectPort, Proto: "tcp", Bind: Network, Purpose: "HTTP, redirects to HTTPS only", Setting: "https.redirect_port", Range: s.HTTPS.Where.Attr("redirect_port")})
		c.Openings = append(c.Openings, Opening{Port: s.HTTPS.RedirectPort, Proto: "tcp", From: s.Firewall.HTTPSFrom, Purpose: "HTTP redirect"})
	}
	return c
}
