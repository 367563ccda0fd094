package modules

import (
	"fmt"

	"github.com/appliance/appliance/pki"
	"github.com/appliance/appliance/spec"
)

func init() { Register(Info{"mosquitto", func() Module { return new(Mosquitto) }}) }

var _ Module = (*Mosquitto)(nil)

// Mosquitto is the MQTT broker: mutual TLS only.
type Mosquitto struct{ site *spec.Site }

// Fixed IDs of the broker's account (see User).
const (
	mosquittoUID = 901
	mosquittoGID = 901
)

// tlsCiphers are the TLS 1.2 suites offered with the site's ECDSA server
// keys: forward secret, AEAD only. TLS 1.3 suites are all of that kind.
const tlsCiphers = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305"

// ID implements Module.
func (*Mosquitto) ID() string { return "mosquitto" }

// Decode implements Module.
func (m *Mosquitto) Decode(s *spec.Site) bool { m.site = s; return true }

// Contribute implements Module.
func (m *Mosquitto) Contribute() Contribution {
	s := m.site
	r := s.MQTT.Where.Block
	data := map[string]any{
		"Header": headerLine("#", s.Name), "Site": s.Name,
		"Port": s.MQTT.Port, "LocalPort": s.MQTT.LocalPlainPort,
		// The packet carries the topic and properties beside the payload.
		"MaxPacketSize": s.MQTT.MaxMessageSize + 1024,
		"MaxQueued":     s.MQTT.MaxQueuedMessages, "MaxQueuedBytes": s.MQTT.MaxQueuedBytes, "MaxInflight": s.MQTT.MaxInflightMessages,
		"Ciphers": tlsCiphers,
	}
	c := Contribution{
		Summary:  "MQTT over mutual TLS; each node publishes only under sensors/NAME/",
		Packages: []string{"mosquitto"},
		Users:    []User{{Name: "mosquitto", UID: mosquittoUID, Group: "mosquitto", Home: "/var/lib/mosquitto", Shell: "/usr/sbin/nologin", Comment: "Mosquitto MQTT broker"}},
		Groups:   []Group{{Name: "mosquitto", GID: mosquittoGID}},
		Dirs:     []Dir{{Path: "/var/lib/mosquitto", Mode: 0o750, Owner: "mosquitto", Group: "mosquitto"}},
		Files: []File{
			text("/etc/mosquitto/mosquitto.conf", 0o644, "root", "root", render("mosquitto.conf", data), r),
			text("/etc/mosquitto/appliance.acl", 0o640, "root", "mosquitto", render("mosquitto.acl", data), r),
			fromState("/etc/mosquitto/certs/ca.crt", 0o644, "root", "root", "pki/ca.crt", r),
			fromState("/etc/mosquitto/certs/crl.pem", 0o644, "root", "root", "pki/crl.pem", r),
			fromState("/etc/mosquitto/certs/server.crt", 0o644, "root", "root", "pki/issued/mosquitto.crt", r),
			fromState("/etc/mosquitto/certs/server.key", 0o640, "root", "mosquitto", "pki/issued/mosquitto.key", r),
			text(dropInPath("mosquitto.service"), 0o644, "root", "root", Sandbox{
				User: "mosquitto", Group: "mosquitto", ResetExecStartPre: true,
				ReadWrite: []string{"/var/lib/mosquitto"}, Capabilities: bindCaps(s.MQTT.Port),
			}.dropIn(s.Name, "mosquitto.service"), r),
		},
		Symlinks:  []Symlink{enableVendor("mosquitto.service", "multi-user.target")},
		Units:     []string{"mosquitto.service"},
		Listeners: []Listener{{Port: s.MQTT.Port, Proto: "tcp", Bind: Network, Purpose: "MQTT over mutual TLS", Setting: "mqtt.port", Range: s.MQTT.Where.Attr("port")}},
		Openings:  []Opening{{Port: s.MQTT.Port, Proto: "tcp", From: s.Firewall.MQTTFrom, Purpose: "MQTT (TLS)"}},
		Checks: []Check{
			{Name: "mosquitto running", Kind: "unit", Unit: "mosquitto.service"},
			{Name: "MQTT over mutual TLS", Kind: "tls", Port: s.MQTT.Port, ServerName: s.Gateway.Hostname, ClientCert: "ingest",
				CAFile: ingestDir + "/ca.crt", CertFile: ingestDir + "/ingest.crt", KeyFile: ingestDir + "/ingest.key"},
		},
		// Mosquitto reads its certificates, CRL and ACL when it starts.
		Actions: []Action{restart(StageServices, "mosquitto.service", "its configuration, certificates, CRL or ACL changed", "/etc/mosquitto/", dropInPath("mosquitto.service"))},
		Certs:   []pki.Request{serverRequest("mosquitto", s)},
	}
	if s.MQTT.LocalPlainPort != 0 {
		c.Files = append(c.Files, text("/etc/mosquitto/local.acl", 0o640, "root", "mosquitto",
			header("#", s.Name)+"# Anonymous clients on loopback may read readings, and do nothing else.\ntopic read sensors/#\n", r))
		c.Listeners = append(c.Listeners, Listener{Port: s.MQTT.LocalPlainPort, Proto: "tcp", Bind: Localhost, Purpose: "MQTT without TLS, loopback only, read-only", Setting: "mqtt.local_plain_port", Range: s.MQTT.Where.Attr("local_plain_port")})
	}
	// Every node's identity: the broker admits a client only with one.
	for _, n := range s.Nodes {
		c.Certs = append(c.Certs, pki.Request{Name: n.Name, Kind: pki.Node})
	}
	return c
}

// bindCaps is what a service keeps to listen on a port: nothing above
// 1023, CAP_NET_BIND_SERVICE below.
func bindCaps(ports ...int) []string {
	for _, p := range ports {
		if p > 0 && p < 1024 {
			return []string{"CAP_NET_BIND_SERVICE"}
		}
	}
	return nil
}

// tlsPortCheck is a check that the port answers TLS with the site's
// server certificate.
func tlsPortCheck(name string, port int, s *spec.Site) Check {
	return Check{Name: fmt.Sprintf("%s on %d", name, port), Kind: "tls", Port: port, ServerName: s.Gateway.Hostname, CAFile: ingestDir + "/ca.crt"}
}
