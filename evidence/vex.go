package evidence

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"
	"time"

	cdx "github.com/CycloneDX/cyclonedx-go"

	"github.com/appliance/appliance/images/apt"
	"github.com/appliance/appliance/images/cache"
	"github.com/appliance/appliance/images/deb"
	"github.com/appliance/appliance/images/rootfs"
)

// Finding is one known vulnerability of one locked package: fixed in
// the locked version, or fixed in a newer one of the security suite.
type Finding struct {
	CVE     string
	Package Locked
	// Fixed reports a CVE the locked version fixes; FixedIn is the
	// version that fixed it (the locked one or older when Fixed, the
	// security suite's when not), Suite where that version was uploaded.
	Fixed   bool
	FixedIn string
	Suite   string
}

// LockedFixes are the CVEs that the locked packages' own changelogs
// name in the entries uploaded to the suite or its security suite after
// the release: what Debian fixed in this release, up to the locked
// version. read reads a file of the image's root file system.
func LockedFixes(locked []Locked, suite string, read func(string) ([]byte, error)) ([]Finding, error) {
	var out []Finding
	if read == nil {
		return nil, nil
	}
	for _, l := range locked {
		gz, err := readFirst(read, ChangelogPaths(l.Name, l.Arch))
		if errors.Is(err, fs.ErrNotExist) {
			continue // no changelog of its own (a doc folder shared with another package)
		}
		if err != nil {
			return nil, fmt.Errorf("%s's changelog: %w", l.Name, err)
		}
		fixes, err := ChangelogFixes(gz, func(v, target string) bool {
			return (target == suite || target == suite+"-security") && compare(v, l.Version) <= 0
		})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", l.Name, err)
		}
		for _, f := range fixes {
			out = append(out, Finding{CVE: f.CVE, Package: l, Fixed: true, FixedIn: f.Version, Suite: f.Target})
		}
	}
	return out, nil
}

func readFirst(read func(string) ([]byte, error), paths []string) ([]byte, error) {
	for _, p := range paths {
		b, err := read(p)
		if err == nil {
			return b, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
	}
	return nil, fs.ErrNotExist
}

// UpdateFixes are the CVEs the newer versions in the security suite fix
// that the locked versions do not: the changelog entries after the
// locked version, read from the newer .deb (downloaded into the cache).
// Packages of one source share a changelog, which some keep in one of
// them only.
func UpdateFixes(ctx context.Context, c *apt.Client, ca *cache.Cache, updates []Update) ([]Finding, error) {
	if len(updates) == 0 {
		return nil, nil
	}
	lock := &rootfs.Lock{}
	for _, u := range updates {
		p := u.Package
		lock.Packages = append(lock.Packages, rootfs.LockPackage{Name: p.Name, Version: p.Version, Architecture: p.Architecture,
			URL: p.URL(), SHA256: p.SHA256, Size: p.Size})
	}
	if err := rootfs.Fetch(ctx, c, lock, ca, nil); err != nil {
		return nil, fmt.Errorf("downloading the security updates: %w", err)
	}
	bySource := map[string][]byte{}
	for _, u := range updates {
		gz, err := debChangelog(ca.Path("debs", u.Package.SHA256), u.Name, u.Arch)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", u.Name, u.Newer, err)
		}
		if gz != nil {
			bySource[sourceOf(u.Locked)] = gz
		}
	}
	var out []Finding
	for _, u := range updates {
		var fixes []Fix
		if gz := bySource[sourceOf(u.Locked)]; gz != nil {
			var err error
			fixes, err = ChangelogFixes(gz, func(v, _ string) bool {
				return compare(v, u.Version) > 0 && compare(v, u.Newer) <= 0
			})
			if err != nil {
				return nil, fmt.Errorf("%s %s: %w", u.Name, u.Newer, err)
			}
		}
		for _, f := range fixes {
			out = append(out, Finding{CVE: f.CVE, Package: u.Locked, FixedIn: u.Newer, Suite: u.Suite})
		}
		if len(fixes) == 0 {
			// A security update whose changelog names no CVE is a
			// vulnerability all the same, named by the update.
			out = append(out, Finding{Package: u.Locked, FixedIn: u.Newer, Suite: u.Suite})
		}
	}
	return out, nil
}

func sourceOf(l Locked) string {
	if l.Source != "" {
		return l.Source
	}
	return l.Name
}

// debChangelog reads a package's changelog.Debian out of its .deb; nil
// when the package keeps none of its own.
func debChangelog(debPath, name, arch string) ([]byte, error) {
	f, err := os.Open(debPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	p, err := deb.Read(f)
	if err != nil {
		return nil, err
	}
	want := map[string]bool{}
	for _, c := range ChangelogPaths(name, arch) {
		want[c] = true
	}
	var out []byte
	err = p.Data(func(h *tar.Header, body io.Reader) error {
		if out != nil || !want[strings.TrimPrefix(path.Clean(h.Name), "./")] || h.Typeflag != tar.TypeReg {
			return nil
		}
		out, err = io.ReadAll(io.LimitReader(body, maxChangelog))
		return err
	})
	return out, err
}

// VEX is a CycloneDX document of the findings, each against the
// component of the gateway's SBOM it concerns (a BOM-Link to the SBOM's
// serial number): resolved when the locked version fixes it; affected,
// with the update to take, when only the security suite's version does.
func VEX(findings []Finding, sbom *cdx.BOM, when time.Time, tool string) *cdx.BOM {
	refs := map[string]string{}
	if sbom.Components != nil {
		for _, c := range *sbom.Components {
			refs[c.Name+"@"+c.Version] = c.BOMRef
		}
	}
	serial := strings.TrimPrefix(sbom.SerialNumber, "urn:uuid:")
	type key struct {
		cve   string
		fixed bool
	}
	groups := map[key][]Finding{}
	for _, f := range findings {
		k := key{findingID(f), f.Fixed}
		groups[k] = append(groups[k], f)
	}
	keys := make([]key, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].cve != keys[j].cve {
			return keys[i].cve < keys[j].cve
		}
		return !keys[i].fixed && keys[j].fixed
	})
	bom := cdx.NewBOM()
	h := sha256.New()
	h.Write([]byte(serial))
	var vulns []cdx.Vulnerability
	for _, k := range keys {
		fs := groups[k]
		sort.Slice(fs, func(i, j int) bool { return fs[i].Package.Name < fs[j].Package.Name })
		v := cdx.Vulnerability{
			BOMRef: k.cve + map[bool]string{true: "-resolved", false: "-affected"}[k.fixed],
			ID:     k.cve,
			Source: &cdx.Source{Name: "Debian", URL: "https://security-tracker.debian.org/tracker/" + k.cve},
		}
		if fs[0].CVE == "" {
			v.Source.URL = "https://security-tracker.debian.org/tracker/source-package/" + sourceOf(fs[0].Package)
			v.Description = "A security update of " + sourceOf(fs[0].Package) + " whose changelog names no CVE."
		}
		var affects []cdx.Affects
		var notes []string
		for _, f := range fs {
			ref := refs[f.Package.Name+"@"+f.Package.Version]
			if ref == "" {
				continue // not in the SBOM: nothing to point at
			}
			status := cdx.VulnerabilityStatusNotAffected
			versions := []cdx.AffectedVersions{{Version: f.Package.Version, Status: status}}
			if !f.Fixed {
				versions = []cdx.AffectedVersions{{Version: f.Package.Version, Status: cdx.VulnerabilityStatusAffected}, {Version: f.FixedIn, Status: cdx.VulnerabilityStatusNotAffected}}
			}
			affects = append(affects, cdx.Affects{Ref: "urn:cdx:" + serial + "/1#" + ref, Range: &versions})
			notes = append(notes, fmt.Sprintf("%s %s (%s)", f.Package.Name, f.FixedIn, f.Suite))
		}
		if len(affects) == 0 {
			continue
		}
		v.Affects = &affects
		if k.fixed {
			v.Analysis = &cdx.VulnerabilityAnalysis{State: cdx.IASResolved,
				Detail: "Fixed in the locked version: Debian's changelog names it in " + strings.Join(notes, ", ") + "."}
		} else {
			v.Analysis = &cdx.VulnerabilityAnalysis{State: cdx.IASExploitable, Response: &[]cdx.ImpactAnalysisResponse{cdx.IARUpdate},
				Detail: "The locked version is affected; Debian fixed it in " + strings.Join(notes, ", ") + ": run appliance lock, build and push."}
		}
		fmt.Fprintf(h, "%s %v %s\n", k.cve, k.fixed, strings.Join(notes, ","))
		vulns = append(vulns, v)
	}
	// A name-based UUID of the content, as the SBOM's.
	sum := h.Sum(nil)
	sum[6] = sum[6]&0x0f | 0x50
	sum[8] = sum[8]&0x3f | 0x80
	bom.SerialNumber = fmt.Sprintf("urn:uuid:%x-%x-%x-%x-%x", sum[0:4], sum[4:6], sum[6:8], sum[8:10], sum[10:16])
	bom.Metadata = &cdx.Metadata{Component: sbom.Metadata.Component}
	if !when.IsZero() {
		bom.Metadata.Timestamp = when.UTC().Format(time.RFC3339)
	}
	bom.Metadata.Tools = &cdx.ToolsChoice{Components: &[]cdx.Component{{Type: cdx.ComponentTypeApplication, Name: tool}}}
	bom.Vulnerabilities = &vulns
	return bom
}

// findingID is the vulnerability's name: its CVE, or for an update that
// names none, the update itself.
func findingID(f Finding) string {
	if f.CVE != "" {
		return f.CVE
	}
	return "DEBIAN-" + strings.NewReplacer(":", "_", "~", "_").Replace(sourceOf(f.Package)+"-"+f.FixedIn)
}

// encode writes a BOM as CycloneDX 1.6 JSON.
func encode(bom *cdx.BOM) ([]byte, error) {
	var b bytes.Buffer
	enc := cdx.NewBOMEncoder(&b, cdx.BOMFileFormatJSON)
	enc.SetPretty(true)
	if err := enc.EncodeVersion(bom, cdx.SpecVersion1_6); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
