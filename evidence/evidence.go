// Package evidence writes the security evidence every build hands over
// in out/SITE/security/, what the EU Cyber Resilience Act expects of a
// product with digital elements:
//
//   - sbom-gateway.cdx.json: the gateway image's CycloneDX SBOM;
//   - vex.cdx.json: a CycloneDX VEX document stating, for each CVE that
//     Debian's changelogs name for the locked packages, whether the
//     locked version fixes it, or which newer version of the security
//     suite does (read from the suite's verified index and the newer
//     packages' changelog.Debian);
//   - security.txt (RFC 9116) and vulnerability-policy.md, filled from
//     the spec's site block (contacts, vendor, support period);
//   - cra-annex-i.md and .json: each essential requirement of Annex I
//     with the features that serve it and the tests that show them,
//     from what the modules declare (package modules' claims), and the
//     requirements no feature of appliance serves, said as such.
//
// The package takes plain data: images/build calls Write with what the
// desired state and the lock give, and imports nothing of the spec.
package evidence

import (
	"bytes"
	"context"
	"encoding/json"

	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/template"
	"time"

	cdx "github.com/CycloneDX/cyclonedx-go"

	"github.com/appliance/appliance/images/apt"
	"github.com/appliance/appliance/images/cache"

	_ "embed"
)

// Facts are what the evidence says of the site: from the spec's site
// block and the modules' claims.
type Facts struct {
	Site string `json:"site"`
	// Product names the product ("appliance gateway greenhouse").
	Product string `json:"product"`
	Vendor  string `json:"vendor"`
	// Contact are the URIs vulnerabilities are reported to.
	Contact      []string `json:"contact"`
	SupportYears int      `json:"support_years"`
	// Suite is the Debian suite the gateway runs.
	Suite  string  `json:"suite"`
	Claims []Claim `json:"claims"`
}

// Input is what Write needs besides the facts.
type Input struct {
	Facts  Facts
	Locked []Locked
	// Sources are the lock's apt sources; their security suites are
	// checked (SecuritySources).
	Sources []*apt.Source
	Arch    string
	Client  *apt.Client
	Cache   *cache.Cache
	// ReadFile reads a file of the image's root file system
	// ("usr/share/doc/…").
	ReadFile func(path string) ([]byte, error)
	// SBOM is the gateway image's SBOM file.
	SBOM string
	// Now dates the documents; Tool names appliance and its version.
	Now  time.Time
	Tool string
}

// Summary says what Write found.
type Summary struct {
	Fixed, Affected int
	Updates         []Update
	// Unchecked says why the security suite was not read ("" when it
	// was): the VEX then holds only what the locked packages fix.
	Unchecked string
}

// Names of the files in the security folder.
const (
	SBOMGateway = "sbom-gateway.cdx.json"
	VEXName     = "vex.cdx.json"
	SecurityTxt = "security.txt"
	PolicyName  = "vulnerability-policy.md"
	ReportName  = "cra-annex-i.md"
	ReportJSON  = "cra-annex-i.json"
)

// Write writes the security folder dir from the input. The security
// suite not answering (offline, unreachable) is not an error: the VEX
// and the report say it was not checked.
func Write(ctx context.Context, dir string, in Input) (*Summary, error) {
	if err := CheckClaims(in.Facts.Claims); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	sbomBytes, err := os.ReadFile(in.SBOM)
	if err != nil {
		return nil, fmt.Errorf("the gateway's SBOM: %w", err)
	}
	var sbom cdx.BOM
	if err := cdx.NewBOMDecoder(bytes.NewReader(sbomBytes), cdx.BOMFileFormatJSON).Decode(&sbom); err != nil {
		return nil, fmt.Errorf("the gateway's SBOM: %w", err)
	}
	sum := &Summary{}
	findings, err := LockedFixes(in.Locked, in.Facts.Suite, in.ReadFile)
	if err != nil {
		return nil, err
	}
	sources := SecuritySources(in.Sources, in.Facts.Suite)
	if len(sources) == 0 {
		sum.Unchecked = "the lock has no source of Debian's archive, whose security suite could be read"
	} else if sum.Updates, err = SecurityUpdates(ctx, in.Client, sources, in.Arch, in.Locked); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		sum.Unchecked = err.Error()
	} else {
		more, err := UpdateFixes(ctx, in.Client, in.Cache, sum.Updates)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			sum.Unchecked = err.Error()
		}
		findings = append(findings, more...)
	}
	for _, f := range findings {
		if f.Fixed {
			sum.Fixed++
		} else {
			sum.Affected++
		}
	}
	vex := VEX(findings, &sbom, in.Now, in.Tool)
	if sum.Unchecked != "" {
		vex.Metadata.Properties = &[]cdx.Property{{Name: "appliance:security-suite", Value: "not checked: " + sum.Unchecked}}
	}
	vexBytes, err := encode(vex)
	if err != nil {
		return nil, err
	}
	files := map[string][]byte{SBOMGateway: sbomBytes, VEXName: vexBytes}
	files[SecurityTxt] = []byte(securityTxt(in.Facts, in.Now))
	if files[PolicyName], err = render(policyTemplate, in.Facts, in); err != nil {
		return nil, err
	}
	cov := Cover(append(append([]Claim(nil), BuildClaims...), in.Facts.Claims...))
	if files[ReportName], err = render(reportTemplate, cov, in); err != nil {
		return nil, err
	}
	if files[ReportJSON], err = json.MarshalIndent(cov, "", "  "); err != nil {
		return nil, err
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(dir, n), files[n], 0o644); err != nil {
			return nil, err
		}
	}
	return sum, nil
}

// securityTxt is RFC 9116's file. Expires is a year ahead, as the RFC
// recommends, and never past the support period's end.
func securityTxt(f Facts, now time.Time) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Security contact for %s. Written by appliance at each build: serve it at\n# https://<your site>/.well-known/security.txt.\n", f.Product)
	if len(f.Contact) == 0 {
		b.WriteString("# The spec names no contact: set site.contact, e.g. [\"mailto:security@example.com\"].\n")
	}
	for _, c := range f.Contact {
		fmt.Fprintf(&b, "Contact: %s\n", c)
	}
	fmt.Fprintf(&b, "Expires: %s\n", now.AddDate(1, 0, 0).UTC().Truncate(time.Second).Format(time.RFC3339))
	b.WriteString("Preferred-Languages: en\n")
	b.WriteString("Policy: vulnerability-policy.md\n")
	return b.String()
}

//go:embed policy.md.tmpl
var policyTemplate string

//go:embed report.md.tmpl
var reportTemplate string

func render(text string, data any, in Input) ([]byte, error) {
	t, err := template.New("").Funcs(template.FuncMap{
		"join":   strings.Join,
		"vendor": func() string { return vendor(in.Facts) },
		"facts":  func() Facts { return in.Facts },
		"date":   func() string { return in.Now.UTC().Format(time.DateOnly) },
		"until":  func() string { return in.Now.AddDate(in.Facts.SupportYears, 0, 0).UTC().Format(time.DateOnly) },
	}).Parse(text)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if err := t.Execute(&b, data); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func vendor(f Facts) string {
	if f.Vendor != "" {
		return f.Vendor
	}
	return "the operator of site " + f.Site
}
