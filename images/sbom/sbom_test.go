package sbom

import (
	"bytes"
	"strings"
	"testing"
	"time"

	cdx "github.com/CycloneDX/cyclonedx-go"
)

func TestWrite(t *testing.T) {
	doc := Document{
		Subject: Component{Type: "operating-system", Name: "demo-gw", Version: "abc"},
		Components: []Component{
			Deb("debian", "systemd", "257.9-1~deb13u1", "arm64", "", "", "aa"),
			Deb("debian", "libgcc-s1", "14.2.0-19", "arm64", "gcc-14", "", "bb"),
			Deb("debian", "bsdutils", "1:2.41-5", "arm64", "util-linux", "2.41-5", "cc"),
			{Type: "application", Name: "ingest", Version: "v1", Properties: [][2]string{{"go:module", "github.com/appliance/appliance"}}},
		},
		Timestamp: time.Unix(1767225600, 0),
		Tool:      "appliance test",
	}
	var a bytes.Buffer
	if err := Write(&a, doc); err != nil {
		t.Fatal(err)
	}
	// The order of the input does not matter.
	doc.Components[0], doc.Components[3] = doc.Components[3], doc.Components[0]
	var b bytes.Buffer
	if err := Write(&b, doc); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Errorf("the same components in another order give another document")
	}

	var bom cdx.BOM
	if err := cdx.NewBOMDecoder(bytes.NewReader(a.Bytes()), cdx.BOMFileFormatJSON).Decode(&bom); err != nil {
		t.Fatal(err)
	}
	if bom.SpecVersion != cdx.SpecVersion1_6 || !strings.HasPrefix(bom.SerialNumber, "urn:uuid:") || bom.Metadata.Timestamp != "2026-01-01T00:00:00Z" {
		t.Errorf("header: spec %v serial %q time %q", bom.SpecVersion, bom.SerialNumber, bom.Metadata.Timestamp)
	}
	if bom.Components == nil || len(*bom.Components) != 4 {
		t.Fatalf("components: %+v", bom.Components)
	}
	byName := map[string]cdx.Component{}
	for _, c := range *bom.Components {
		byName[c.Name] = c
	}
	// The epoch's colon is escaped, so purl parsers do not split on it.
	if p := byName["bsdutils"].PackageURL; p != "pkg:deb/debian/bsdutils@1%3A2.41-5?arch=arm64" {
		t.Errorf("bsdutils purl %q", p)
	}
	if h := byName["systemd"].Hashes; h == nil || (*h)[0].Algorithm != cdx.HashAlgoSHA256 || (*h)[0].Value != "aa" {
		t.Errorf("systemd hashes %+v", h)
	}
	if p := byName["libgcc-s1"].Properties; p == nil || (*p)[0] != (cdx.Property{Name: "debian:source", Value: "gcc-14"}) {
		t.Errorf("libgcc-s1 properties %+v", p)
	}
	deps := *bom.Dependencies
	if len(deps) != 1 || deps[0].Ref != bom.Metadata.Component.BOMRef || len(*deps[0].Dependencies) != 4 {
		t.Errorf("dependencies %+v", deps)
	}

	// Another package set gets another serial number.
	doc.Components = doc.Components[:3]
	var c bytes.Buffer
	Write(&c, doc)
	var other cdx.BOM
	cdx.NewBOMDecoder(&c, cdx.BOMFileFormatJSON).Decode(&other)
	if other.SerialNumber == bom.SerialNumber {
		t.Errorf("two package sets share serial number %s", bom.SerialNumber)
	}
}
