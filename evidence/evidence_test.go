package evidence_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	cdx "github.com/CycloneDX/cyclonedx-go"
	"github.com/xeipuuv/gojsonschema"

	"github.com/appliance/appliance/evidence"
	"github.com/appliance/appliance/images/apt"
	"github.com/appliance/appliance/images/cache"
	"github.com/appliance/appliance/images/fixture"
	"github.com/appliance/appliance/images/sbom"
)

func gz(s string) string {
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	w.Write([]byte(s))
	w.Close()
	return b.String()
}

func entry(src, ver, dist, body string) string {
	return fmt.Sprintf("%s (%s) %s; urgency=medium\n\n%s\n -- Debian Security Team <team@security.debian.org>  Mon, 02 Mar 2026 10:00:00 +0100\n\n", src, ver, dist, body)
}

// The changelog of libfoo: two security uploads after the release, one
// point release, and an upload to unstable before the release.
var (
	clOld = entry("libfoo", "1.0-1+deb13u1", "trixie-security", "  * Fix CVE-2025-0001: heap overflow in the parser.") +
		entry("libfoo", "1.0-0.1", "trixie", "  * Point release: CVE-2025-0002.") +
		entry("libfoo", "1.0-0", "unstable", "  * New upstream; closes CVE-2024-9999.") +
		"Local variables:\nmode: debian-changelog\nEnd:\n"
	clNew = entry("libfoo", "1.0-1+deb13u2", "trixie-security", "  * CVE-2026-1111: use after free.\n  * CVE-2026-2222 and again CVE-2026-1111.") + clOld
)

// securityArchive serves a fixture security suite with a newer libfoo1
// than the lock's, and an unchanged bar; it returns the source.
func securityArchive(t *testing.T) *apt.Source {
	t.Helper()
	key, err := fixture.NewKey("security")
	if err != nil {
		t.Fatal(err)
	}
	repo := &fixture.Repo{Suite: "trixie-security", Key: key, Debs: []*fixture.Deb{
		{Name: "libfoo1", Version: "1.0-1+deb13u2", Arch: "arm64", Fields: map[string]string{"Source": "libfoo"},
			Files: []fixture.File{{Path: "./usr/share/doc/libfoo1/changelog.Debian.gz", Body: gz(clNew)}}},
		{Name: "bar", Version: "2.0-1+deb13u1", Arch: "arm64", Files: []fixture.File{{Path: "./usr/share/doc/bar/changelog.Debian.gz",
			Body: gz(entry("bar", "2.0-1+deb13u1", "trixie-security", "  * Fix a security issue in the parser.") + entry("bar", "2.0-1", "unstable", "  * New upstream."))}}},
		{Name: "qux", Version: "1.0-1", Arch: "arm64"},
	}}
	dir := t.TempDir()
	if _, err := repo.Write(dir); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.FileServer(http.Dir(dir)))
	t.Cleanup(srv.Close)
	kr, err := apt.ReadKeyring(key.Public(false))
	if err != nil {
		t.Fatal(err)
	}
	return &apt.Source{Name: "debian-security", URL: srv.URL, Suite: "trixie-security", Components: []string{"main"}, Keyring: kr, Priority: 500}
}

var locked = []evidence.Locked{
	{Name: "libfoo1", Version: "1.0-1+deb13u1", Arch: "arm64", Source: "libfoo"},
	{Name: "bar", Version: "2.0-1", Arch: "arm64"},
	{Name: "baz", Version: "1", Arch: "arm64"},
}

// rootFiles is the image's root file system as far as the changelogs go.
func rootFiles(p string) ([]byte, error) {
	if p == "usr/share/doc/libfoo1/changelog.Debian.gz" {
		return []byte(gz(clOld)), nil
	}
	return nil, fs.ErrNotExist
}

func writeSBOM(t *testing.T, dir string) string {
	p := filepath.Join(dir, "sbom.cdx.json")
	f, _ := os.Create(p)
	defer f.Close()
	var comps []sbom.Component
	for _, l := range locked {
		comps = append(comps, sbom.Deb("debian", l.Name, l.Version, l.Arch, l.Source, "", strings.Repeat("0", 64)))
	}
	if err := sbom.Write(f, sbom.Document{Subject: sbom.Component{Type: "operating-system", Name: "appliance gateway t", Version: "1"}, Components: comps}); err != nil {
		t.Fatal(err)
	}
	return p
}

func input(t *testing.T, src *apt.Source, offline bool) evidence.Input {
	dir := t.TempDir()
	ca := &cache.Cache{Dir: filepath.Join(dir, "cache")}
	return evidence.Input{
		Facts: evidence.Facts{Site: "t", Product: "appliance gateway t", Vendor: "Example Plants Ltd", Contact: []string{"mailto:security@example.com"},
			SupportYears: 7, Suite: "trixie", Claims: []evidence.Claim{{Requirement: "I.2(d)", Module: "mosquitto", Feature: "mutual TLS", Tests: []string{"modules.TestMosquitto"}}}},
		Locked: locked, Sources: []*apt.Source{src}, Arch: "arm64",
		Client: &apt.Client{Store: ca, Offline: offline}, Cache: ca, ReadFile: rootFiles,
		SBOM: writeSBOM(t, dir), Now: time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC), Tool: "appliance test",
	}
}

// TestSecurityUpdates: the security suite has newer libfoo1 and bar
// than the lock, and no baz.
func TestSecurityUpdates(t *testing.T) {
	src := securityArchive(t)
	in := input(t, src, false)
	ups, err := evidence.SecurityUpdates(context.Background(), in.Client, []*apt.Source{src}, "arm64", locked)
	if err != nil {
		t.Fatal(err)
	}
	if len(ups) != 2 || ups[0].String() != "bar 2.0-1 → 2.0-1+deb13u1 (trixie-security)" || ups[1].String() != "libfoo1 1.0-1+deb13u1 → 1.0-1+deb13u2 (trixie-security)" {
		t.Errorf("updates = %v", ups)
	}
}

func vulns(t *testing.T, b []byte) map[string]cdx.Vulnerability {
	t.Helper()
	var bom cdx.BOM
	if err := cdx.NewBOMDecoder(bytes.NewReader(b), cdx.BOMFileFormatJSON).Decode(&bom); err != nil {
		t.Fatal(err)
	}
	out := map[string]cdx.Vulnerability{}
	if bom.Vulnerabilities != nil {
		for _, v := range *bom.Vulnerabilities {
			out[v.ID+" "+string(v.Analysis.State)] = v
		}
	}
	return out
}

// TestVEXAgainstFixtureArchive: the VEX says the locked libfoo1 fixes
// the CVEs its own changelog names for this release (its security
// upload and point release, not the upload to unstable before the
// release), and is affected by the two that the security suite's newer
// version fixes, with the update to take; bar's update, which names no
// CVE, is a vulnerability of its own; the document is valid
// CycloneDX 1.6 and points at the SBOM's components. Offline, with the
// suite never read, it says so and holds the locked fixes only.
func TestVEXAgainstFixtureArchive(t *testing.T) {
	src := securityArchive(t)
	in := input(t, src, false)
	out := filepath.Join(t.TempDir(), "security")
	sum, err := evidence.Write(context.Background(), out, in)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Fixed != 2 || sum.Affected != 3 || len(sum.Updates) != 2 || sum.Unchecked != "" {
		t.Errorf("summary %+v, want 2 fixed, 3 affected, 2 updates", sum)
	}
	b, _ := os.ReadFile(filepath.Join(out, evidence.VEXName))
	validCycloneDX(t, b)
	v := vulns(t, b)
	var got []string
	for k := range v {
		got = append(got, k)
	}
	slices.Sort(got)
	// bar's update names no CVE: the update names the vulnerability.
	want := []string{"CVE-2025-0001 resolved", "CVE-2025-0002 resolved", "CVE-2026-1111 exploitable", "CVE-2026-2222 exploitable", "DEBIAN-bar-2.0-1+deb13u1 exploitable"}
	if !slices.Equal(got, want) {
		t.Fatalf("VEX states %q, want %q", got, want)
	}
	a := v["CVE-2026-1111 exploitable"]
	var sbomBOM cdx.BOM
	sb, _ := os.ReadFile(in.SBOM)
	cdx.NewBOMDecoder(bytes.NewReader(sb), cdx.BOMFileFormatJSON).Decode(&sbomBOM)
	var ref string
	for _, c := range *sbomBOM.Components {
		if c.Name == "libfoo1" {
			ref = "urn:cdx:" + strings.TrimPrefix(sbomBOM.SerialNumber, "urn:uuid:") + "/1#" + c.BOMRef
		}
	}
	if len(*a.Affects) != 1 || (*a.Affects)[0].Ref != ref {
		t.Errorf("affects %+v, want %s", *a.Affects, ref)
	}
	if r := *(*a.Affects)[0].Range; len(r) != 2 || r[0].Status != cdx.VulnerabilityStatusAffected || r[1].Version != "1.0-1+deb13u2" || r[1].Status != cdx.VulnerabilityStatusNotAffected {
		t.Errorf("versions %+v", r)
	}
	if a.Analysis.Response == nil || (*a.Analysis.Response)[0] != cdx.IARUpdate || !strings.Contains(a.Analysis.Detail, "libfoo1 1.0-1+deb13u2 (trixie-security)") {
		t.Errorf("analysis %+v", a.Analysis)
	}
	if d := v["CVE-2025-0001 resolved"].Analysis.Detail; !strings.Contains(d, "libfoo1 1.0-1+deb13u1 (trixie-security)") {
		t.Errorf("resolved detail %q", d)
	}

	// Offline with an empty cache: the suite was never read.
	in = input(t, src, true)
	sum, err = evidence.Write(context.Background(), out, in)
	if err != nil {
		t.Fatal(err)
	}
	b, _ = os.ReadFile(filepath.Join(out, evidence.VEXName))
	validCycloneDX(t, b)
	if sum.Unchecked == "" || sum.Affected != 0 || sum.Fixed != 2 || !bytes.Contains(b, []byte(`"appliance:security-suite"`)) {
		t.Errorf("offline: %+v\n%s", sum, b)
	}
}

// validCycloneDX checks a document against CycloneDX's JSON schema, as
// cyclonedx-go ships it.
func validCycloneDX(t *testing.T, doc []byte) {
	t.Helper()
	dir, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/CycloneDX/cyclonedx-go").Output()
	if err != nil {
		t.Fatalf("finding cyclonedx-go's schemas: %v", err)
	}
	// The schema names its parts by cyclonedx.org URLs: they are given
	// from the same folder, so that nothing is fetched.
	schemas := filepath.Join(strings.TrimSpace(string(dir)), "schema")
	sl := gojsonschema.NewSchemaLoader()
	for name, file := range map[string]string{"spdx.schema.json": "spdx.schema.json", "jsf-0.82.schema.json": "jsf-0.82.schemax.json"} {
		b, err := os.ReadFile(filepath.Join(schemas, file))
		if err != nil {
			t.Fatal(err)
		}
		if err := sl.AddSchema("http://cyclonedx.org/schema/"+name, gojsonschema.NewBytesLoader(b)); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	main, _ := os.ReadFile(filepath.Join(schemas, "bom-1.6.schema.json"))
	schema, err := sl.Compile(gojsonschema.NewBytesLoader(main))
	if err != nil {
		t.Fatalf("CycloneDX's schema: %v", err)
	}
	res, err := schema.Validate(gojsonschema.NewBytesLoader(doc))
	if err != nil {
		t.Fatalf("validating: %v", err)
	}
	for _, e := range res.Errors() {
		t.Errorf("not valid CycloneDX 1.6: %s", e)
	}
}

// TestWriteEvidence: the folder holds the SBOM as built, a valid VEX,
// security.txt with the spec's contacts and an Expires within a year,
// the policy filled from the site block, and the Annex I report listing
// every requirement, the module's claim and the build's, and the
// requirements nothing claims as not claimed.
func TestWriteEvidence(t *testing.T) {
	src := securityArchive(t)
	in := input(t, src, false)
	out := filepath.Join(t.TempDir(), "security")
	if _, err := evidence.Write(context.Background(), out, in); err != nil {
		t.Fatal(err)
	}
	read := func(n string) string {
		b, err := os.ReadFile(filepath.Join(out, n))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	sb, _ := os.ReadFile(in.SBOM)
	if read(evidence.SBOMGateway) != string(sb) {
		t.Errorf("the SBOM in the folder differs from the build's")
	}
	validCycloneDX(t, sb)
	txt := read(evidence.SecurityTxt)
	for _, w := range []string{"Contact: mailto:security@example.com\n", "Expires: 2027-03-10T12:00:00Z\n", "Policy: "} {
		if !strings.Contains(txt, w) {
			t.Errorf("security.txt lacks %q:\n%s", w, txt)
		}
	}
	pol := read(evidence.PolicyName)
	for _, w := range []string{"Example Plants Ltd", "mailto:security@example.com", "7 years, until\n2033-03-10", "exit\n  status 3"} {
		if !strings.Contains(pol, w) {
			t.Errorf("the policy lacks %q:\n%s", w, pol)
		}
	}
	rep := read(evidence.ReportName)
	for _, r := range evidence.Requirements {
		if !strings.Contains(rep, "| "+r.ID+" | "+r.Title+" |") {
			t.Errorf("the report lacks %s", r.ID)
		}
	}
	for _, w := range []string{"| I.2(d) | Protection from unauthorised access, and reporting of possible unauthorised access | mutual TLS (mosquitto) | modules.TestMosquitto |",
		"| I.2(m) | Secure and easy removal of all data and settings | not claimed: no feature of appliance serves it | — |",
		"(build) | sbom.TestWrite, evidence.TestWriteEvidence |"} {
		if !strings.Contains(rep, w) {
			t.Errorf("the report lacks %q:\n%s", w, rep)
		}
	}
	var cov []evidence.Coverage
	if err := json.Unmarshal([]byte(read(evidence.ReportJSON)), &cov); err != nil || len(cov) != len(evidence.Requirements) {
		t.Errorf("cra-annex-i.json: %v, %d requirements", err, len(cov))
	}

	// A claim without a test is refused, and nothing is written.
	in.Facts.Claims = append(in.Facts.Claims, evidence.Claim{Requirement: "I.2(e)", Module: "x", Feature: "encryption"})
	out2 := filepath.Join(t.TempDir(), "security")
	if _, err := evidence.Write(context.Background(), out2, in); err == nil || !strings.Contains(err.Error(), "without a test") {
		t.Errorf("a claim without a test: %v", err)
	}
	if _, err := os.Stat(out2); err == nil {
		t.Errorf("a refused claim left %s", out2)
	}
}
