package modules

import "github.com/appliance/appliance/evidence"

// craClaims are the requirements of the Cyber Resilience Act's Annex I
// that each module's features serve, with the tests that show them
// (package.TestName): the data behind the build's cra-annex-i report.
// Only what a test shows is claimed; TestClaims checks that every test
// named here exists.
var craClaims = map[string][]evidence.Claim{
	"mosquitto": {
		{Requirement: "I.2(b)", Feature: "MQTT only over mutual TLS; no anonymous client, no plain listener on the network", Tests: []string{"modules.TestMosquitto", "modules.TestGolden"}},
		{Requirement: "I.2(d)", Feature: "every client presents a certificate of the site CA, checked against its CRL; the ACL ties each node to its own topics", Tests: []string{"modules.TestMosquitto", "modules.TestGatewayLeftAlone", "ingest.TestImpersonation"}},
		{Requirement: "I.2(e)", Feature: "readings travel over TLS 1.2 or later with the site's ciphers", Tests: []string{"modules.TestMosquitto"}},
		{Requirement: "I.2(f)", Feature: "a node can publish only under its own name, so readings cannot be forged for another", Tests: []string{"modules.TestMosquitto", "ingest.TestImpersonation"}},
	},
	"nginx": {
		{Requirement: "I.2(d)", Feature: "the OTA tree is served only to node certificates of the site CA, checked against its CRL", Tests: []string{"modules.TestNginx"}},
		{Requirement: "I.2(e)", Feature: "HTTPS only (TLS 1.2 or later, HSTS); port 80 only redirects", Tests: []string{"modules.TestNginx"}},
		{Requirement: "I.2(h)", Feature: "request rates, connections and body sizes are limited per address", Tests: []string{"modules.TestGolden"}},
	},
	"firewall": {
		{Requirement: "I.2(j)", Feature: "nftables opens exactly the ports the services declare, each only to the networks the spec names; everything else is dropped", Tests: []string{"modules.TestFirewall"}},
		{Requirement: "I.2(h)", Feature: "new SSH connections are rate limited per source", Tests: []string{"modules.TestFirewall"}},
	},
	"ssh": {
		{Requirement: "I.2(b)", Feature: "SSH takes keys only: no passwords, no root login", Tests: []string{"modules.TestSSHD"}},
		{Requirement: "I.2(d)", Feature: "the admin logs in with an authorized key; push pins the gateway's host key from the site's state", Tests: []string{"modules.TestSSHD", "push.TestDialPinsTheHostKey"}},
	},
	"system": {
		{Requirement: "I.2(c)", Feature: "unattended-upgrades installs Debian's security updates by itself, from sources verified with their own keyrings", Tests: []string{"modules.TestGolden"}},
	},
	"ingest": {
		{Requirement: "I.2(k)", Feature: "the ingest service runs as a throw-away user with no capabilities, a read-only system and loopback networking (systemd-analyze security 1.5 or lower)", Tests: []string{"ingest.TestUnitSecurity", "modules.TestUnits"}},
		{Requirement: "I.2(h)", Feature: "readings are spooled on disk before they are acknowledged, so an InfluxDB outage or a crash loses none", Tests: []string{"ingest.TestInfluxDBOutage", "ingest.TestIngestKilled"}},
		{Requirement: "I.2(f)", Feature: "payloads are checked field by field; bad readings are refused and counted, never written", Tests: []string{"ingest.TestBadPayloads"}},
	},
	"influxdb": {
		{Requirement: "I.2(d)", Feature: "InfluxDB requires a password; ingest may only write, Grafana only read", Tests: []string{"modules.TestInfluxDB"}},
		{Requirement: "I.2(j)", Feature: "InfluxDB listens on loopback only unless the spec exposes it over TLS", Tests: []string{"modules.TestGolden", "modules.TestFirewall"}},
	},
	"grafana": {
		{Requirement: "I.2(b)", Feature: "Grafana on loopback behind Nginx: no anonymous access, no sign-up, nothing sent to grafana.com", Tests: []string{"modules.TestGrafanaProvisioning"}},
		{Requirement: "I.2(d)", Feature: "alert rules for a silent node, a certificate near its end, a failed update, ingest unable to write and a full disk, sent to the spec's contact point", Tests: []string{"modules.TestHealthQueries", "modules.TestGrafanaGoldenAndSchema"}},
	},
	"health": {
		{Requirement: "I.2(l)", Feature: "refused clients per reason (no certificate, revoked, wrong CA, ACL denial), OTA downloads and their outcome, certificate expiry, ingest's spool and write failures and disk use are recorded in the database", Tests: []string{"health.TestHealthFromRealLogs", "health.TestClassify"}},
		{Requirement: "I.2(d)", Feature: "refused connections are reported per reason and client, on the Site health dashboard and in appliance status", Tests: []string{"health.TestHealthFromRealLogs"}},
		{Requirement: "I.2(k)", Feature: "the health program runs as a throw-away user, read-only, loopback only (systemd-analyze security 1.5 or lower)", Tests: []string{"modules.TestUnits"}},
	},
}

// Claims are the Annex I claims of the modules the site uses, in module
// order.
func (s *Set) Claims() []evidence.Claim {
	var out []evidence.Claim
	for _, c := range s.Contributions {
		for _, cl := range craClaims[c.Module] {
			cl.Module = c.Module
			out = append(out, cl)
		}
	}
	return out
}
