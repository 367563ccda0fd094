package build_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	cdx "github.com/CycloneDX/cyclonedx-go"

	"github.com/appliance/appliance/evidence"
	"github.com/appliance/appliance/images/build"
)

// checkSecurity checks the security folder a build wrote: every file
// there and listed in SHA256SUMS, the SBOM the build's, a VEX that
// decodes as CycloneDX and points at the SBOM's components, the report
// listing every requirement of Annex I with the modules' claims (those
// of wantModules among them).
func checkSecurity(t *testing.T, out string, wantModules ...string) {
	t.Helper()
	dir := filepath.Join(out, build.SecurityDir)
	sums, _ := os.ReadFile(filepath.Join(out, build.SumsName))
	for _, n := range []string{evidence.SBOMGateway, evidence.VEXName, evidence.SecurityTxt, evidence.PolicyName, evidence.ReportName, evidence.ReportJSON} {
		if _, err := os.Stat(filepath.Join(dir, n)); err != nil {
			t.Errorf("the security folder lacks %s", n)
		}
		if !bytes.Contains(sums, []byte("  "+build.SecurityDir+"/"+n+"\n")) {
			t.Errorf("%s lacks %s/%s", build.SumsName, build.SecurityDir, n)
		}
	}
	sb, _ := os.ReadFile(filepath.Join(out, build.SBOMName))
	if got, _ := os.ReadFile(filepath.Join(dir, evidence.SBOMGateway)); !bytes.Equal(got, sb) {
		t.Errorf("the security folder's SBOM differs from the build's")
	}
	var sbom, vex cdx.BOM
	cdx.NewBOMDecoder(bytes.NewReader(sb), cdx.BOMFileFormatJSON).Decode(&sbom)
	vb, _ := os.ReadFile(filepath.Join(dir, evidence.VEXName))
	if err := cdx.NewBOMDecoder(bytes.NewReader(vb), cdx.BOMFileFormatJSON).Decode(&vex); err != nil || vex.Vulnerabilities == nil {
		t.Fatalf("the VEX: %v", err)
	}
	refs := map[string]bool{}
	for _, c := range *sbom.Components {
		refs["urn:cdx:"+strings.TrimPrefix(sbom.SerialNumber, "urn:uuid:")+"/1#"+c.BOMRef] = true
	}
	for _, v := range *vex.Vulnerabilities {
		for _, a := range *v.Affects {
			if !refs[a.Ref] {
				t.Errorf("%s points at %s, which the SBOM does not hold", v.ID, a.Ref)
			}
		}
	}
	t.Logf("VEX: %d vulnerabilities", len(*vex.Vulnerabilities))
	rep, _ := os.ReadFile(filepath.Join(dir, evidence.ReportName))
	for _, r := range evidence.Requirements {
		if !bytes.Contains(rep, []byte("| "+r.ID+" |")) {
			t.Errorf("the report lacks %s", r.ID)
		}
	}
	for _, m := range wantModules {
		if !bytes.Contains(rep, []byte("("+m+")")) {
			t.Errorf("the report has no claim of %s", m)
		}
	}
}
