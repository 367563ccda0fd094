package evidence

import (
	"fmt"
	"sort"
	"strings"
)

// Requirement is an essential requirement of the EU Cyber Resilience
// Act (Regulation (EU) 2024/2847), Annex I.
type Requirement struct {
	// ID is the point of Annex I: "I.2(b)" is Part I, point 2(b).
	ID    string
	Title string
}

// Requirements are Annex I's requirements, in its order. Part I are the
// product's properties, Part II the manufacturer's vulnerability
// handling.
var Requirements = []Requirement{
	{"I.1", "Appropriate level of cybersecurity based on the risks"},
	{"I.2(a)", "No known exploitable vulnerabilities when made available"},
	{"I.2(b)", "Secure by default configuration, with a reset to the original state"},
	{"I.2(c)", "Vulnerabilities addressed through security updates, automatic by default"},
	{"I.2(d)", "Protection from unauthorised access, and reporting of possible unauthorised access"},
	{"I.2(e)", "Confidentiality of stored, transmitted and processed data"},
	{"I.2(f)", "Integrity of data, programs and configuration, and reporting of corruption"},
	{"I.2(g)", "Data minimisation"},
	{"I.2(h)", "Availability of essential functions, resilience against denial of service"},
	{"I.2(i)", "Minimal impact on the availability of other devices and networks"},
	{"I.2(j)", "Limited attack surfaces, including external interfaces"},
	{"I.2(k)", "Reduced impact of incidents through exploitation mitigation"},
	{"I.2(l)", "Recording and monitoring of security-relevant activity"},
	{"I.2(m)", "Secure and easy removal of all data and settings"},
	{"II.1", "Identify and document vulnerabilities and components, including an SBOM"},
	{"II.2", "Address and remediate vulnerabilities without delay, through security updates"},
	{"II.3", "Effective and regular tests and reviews of security"},
	{"II.4", "Share and disclose information about fixed vulnerabilities"},
	{"II.5", "A policy on coordinated vulnerability disclosure"},
	{"II.6", "A contact address for reporting vulnerabilities"},
	{"II.7", "Mechanisms to distribute updates securely"},
	{"II.8", "Security updates disseminated without delay and free of charge"},
}

// Claim is a feature of appliance that serves a requirement, and the
// tests that show it works.
type Claim struct {
	Requirement string `json:"requirement"`
	// Module is what declares the feature: a gateway module, or
	// "build" for what every build hands over.
	Module  string   `json:"module"`
	Feature string   `json:"feature"`
	Tests   []string `json:"tests"`
}

// CheckClaims refuses a claim of an unknown requirement, or one without
// a feature or a test: nothing is claimed that is not shown.
func CheckClaims(claims []Claim) error {
	known := map[string]bool{}
	for _, r := range Requirements {
		known[r.ID] = true
	}
	for _, c := range claims {
		switch {
		case !known[c.Requirement]:
			return fmt.Errorf("%s claims %q, which is no requirement of Annex I", c.Module, c.Requirement)
		case strings.TrimSpace(c.Feature) == "":
			return fmt.Errorf("%s claims %s without naming the feature", c.Module, c.Requirement)
		case len(c.Tests) == 0:
			return fmt.Errorf("%s claims %s (%s) without a test that shows it", c.Module, c.Requirement, c.Feature)
		}
	}
	return nil
}

// Coverage is one requirement with the claims that serve it.
type Coverage struct {
	Requirement
	Claims []Claim
}

// Cover sorts the claims under their requirements, every requirement
// listed, those without a claim too.
func Cover(claims []Claim) []Coverage {
	by := map[string][]Claim{}
	for _, c := range claims {
		by[c.Requirement] = append(by[c.Requirement], c)
	}
	var out []Coverage
	for _, r := range Requirements {
		cs := by[r.ID]
		sort.SliceStable(cs, func(i, j int) bool { return cs[i].Module < cs[j].Module })
		out = append(out, Coverage{Requirement: r, Claims: cs})
	}
	return out
}

// BuildClaims are what every build hands over in out/SITE/security/,
// whatever the site's modules.
var BuildClaims = []Claim{
	{Requirement: "II.1", Module: "build", Feature: "CycloneDX SBOM of the gateway image (every Debian package, appliance's programs and their Go modules, the nodes' firmware)", Tests: []string{"sbom.TestWrite", "evidence.TestWriteEvidence"}},
	{Requirement: "II.1", Module: "build", Feature: "CycloneDX VEX of the CVEs Debian names for the locked packages: fixed in the locked version, or fixed in the security suite's", Tests: []string{"evidence.TestWriteEvidence", "evidence.TestVEXAgainstFixtureArchive"}},
	{Requirement: "I.2(a)", Module: "build", Feature: "the VEX names every vulnerability the security suite fixes and the lock does not; appliance lock --check fails with exit status 3 while there is one", Tests: []string{"evidence.TestVEXAgainstFixtureArchive", "cli.TestLockCheckSecurity"}},
	{Requirement: "II.2", Module: "build", Feature: "appliance lock --check lists each locked package the security suite has a newer version of, for a CI job to rebuild and push", Tests: []string{"cli.TestLockCheckSecurity"}},
	{Requirement: "II.5", Module: "build", Feature: "a vulnerability-handling policy filled from the spec (contact, support period)", Tests: []string{"evidence.TestWriteEvidence"}},
	{Requirement: "II.6", Module: "build", Feature: "security.txt (RFC 9116) with the spec's contacts", Tests: []string{"evidence.TestWriteEvidence"}},
}
