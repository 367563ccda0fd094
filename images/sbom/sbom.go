// Package sbom writes CycloneDX software bills of materials (JSON,
// specification 1.6) for what appliance puts on a gateway: today every
// Debian package of the root file system; the ingest binary and the
// nodes' firmware join as further components. Output is deterministic:
// components sorted, the serial number derived from the content, the
// timestamp only when given (SOURCE_DATE_EPOCH).
package sbom

import (
	"crypto/sha256"
	"fmt"
	"io"
	"net/url"
	"sort"
	"strings"
	"time"

	cdx "github.com/CycloneDX/cyclonedx-go"
)

// Component is one thing the gateway runs.
type Component struct {
	// Type is a CycloneDX component type: "library" for packages,
	// "application", "firmware", "operating-system".
	Type    string
	Name    string
	Version string
	PURL    string
	SHA256  string
	// Properties are extra name/value facts (the Debian source
	// package, the architecture).
	Properties [][2]string
}

// Document is a bill of materials for one subject (the gateway image).
type Document struct {
	Subject    Component
	Components []Component
	// Timestamp is recorded when not zero.
	Timestamp time.Time
	// Tool names what made the document ("appliance v1.2").
	Tool string
}

// Deb describes a Debian binary package as a component. namespace is the
// purl namespace: "debian", or the vendor of another archive.
func Deb(namespace, name, version, arch, source, sourceVersion, sha256hex string) Component {
	c := Component{
		Type:    "library",
		Name:    name,
		Version: version,
		PURL:    fmt.Sprintf("pkg:deb/%s/%s@%s?arch=%s", namespace, name, purlEscape(version), arch),
		SHA256:  sha256hex,
	}
	if source != "" {
		sv := sourceVersion
		if sv == "" {
			sv = version
		}
		c.Properties = append(c.Properties, [2]string{"debian:source", source}, [2]string{"debian:source_version", sv})
	}
	return c
}

// purlEscape percent-encodes a version for a purl: the epoch's colon
// must not be read as a separator.
func purlEscape(s string) string {
	return strings.ReplaceAll(url.PathEscape(s), ":", "%3A")
}

func (c Component) cdx() cdx.Component {
	out := cdx.Component{
		BOMRef:     c.PURL,
		Type:       cdx.ComponentType(c.Type),
		Name:       c.Name,
		Version:    c.Version,
		PackageURL: c.PURL,
	}
	if out.BOMRef == "" {
		out.BOMRef = c.Type + ":" + c.Name + "@" + c.Version
	}
	if c.SHA256 != "" {
		out.Hashes = &[]cdx.Hash{{Algorithm: cdx.HashAlgoSHA256, Value: c.SHA256}}
	}
	if len(c.Properties) > 0 {
		var ps []cdx.Property
		for _, p := range c.Properties {
			ps = append(ps, cdx.Property{Name: p[0], Value: p[1]})
		}
		out.Properties = &ps
	}
	return out
}

// Write writes the document as CycloneDX 1.6 JSON.
func Write(w io.Writer, d Document) error {
	comps := append([]Component{}, d.Components...)
	sort.Slice(comps, func(i, j int) bool {
		if comps[i].Name != comps[j].Name {
			return comps[i].Name < comps[j].Name
		}
		return comps[i].Version < comps[j].Version
	})
	bom := cdx.NewBOM()
	h := sha256.New()
	fmt.Fprintf(h, "%s %s\n", d.Subject.Name, d.Subject.Version)
	var cs []cdx.Component
	var refs []string
	for _, c := range comps {
		cc := c.cdx()
		cs = append(cs, cc)
		refs = append(refs, cc.BOMRef)
		fmt.Fprintf(h, "%s %s\n", cc.BOMRef, c.SHA256)
	}
	sum := h.Sum(nil)
	// A name-based UUID (version 5 layout) of the content: the same
	// image gets the same serial number.
	sum[6] = sum[6]&0x0f | 0x50
	sum[8] = sum[8]&0x3f | 0x80
	bom.SerialNumber = fmt.Sprintf("urn:uuid:%x-%x-%x-%x-%x", sum[0:4], sum[4:6], sum[6:8], sum[8:10], sum[10:16])
	subj := d.Subject.cdx()
	bom.Metadata = &cdx.Metadata{Component: &subj}
	if !d.Timestamp.IsZero() {
		bom.Metadata.Timestamp = d.Timestamp.UTC().Format(time.RFC3339)
	}
	if d.Tool != "" {
		bom.Metadata.Tools = &cdx.ToolsChoice{Components: &[]cdx.Component{{Type: cdx.ComponentTypeApplication, Name: d.Tool}}}
	}
	bom.Components = &cs
	bom.Dependencies = &[]cdx.Dependency{{Ref: subj.BOMRef, Dependencies: &refs}}
	enc := cdx.NewBOMEncoder(w, cdx.BOMFileFormatJSON)
	enc.SetPretty(true)
	return enc.EncodeVersion(bom, cdx.SpecVersion1_6)
}
