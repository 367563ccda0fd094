package spec

import (
	"os"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
)

// TestReferenceDocumentsEverySetting keeps docs/spec.md complete: every
// block and attribute the decoder accepts is described there.
func TestReferenceDocumentsEverySetting(t *testing.T) {
	b, err := os.ReadFile("../docs/spec.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	schemas := map[string]*hcl.BodySchema{
		"site": siteSchema, "gateway": gatewaySchema, "admin": adminSchema, "network": networkSchema,
		"wifi": wifiSchema, "os": osSchema, "source": sourceSchema, "mqtt": mqttSchema, "https": httpsSchema,
		"ota": otaSchema, "influxdb": influxSchema, "grafana": grafanaSchema, "firewall": firewallSchema,
		"ssh": sshSchema, "ingest": ingestSchema, "firmware": firmwareSchema, "node": nodeSchema,
		"variable": variableSchema, "validation": validationSchema,
	}
	for _, blk := range rootSchema.Blocks {
		if blk.Type != "locals" && schemas[blk.Type] == nil {
			t.Errorf("block %q has no schema in this test", blk.Type)
		}
	}
	for name, s := range schemas {
		if !strings.Contains(doc, "`"+name+"`") && !strings.Contains(doc, "## "+name) {
			t.Errorf("docs/spec.md does not describe the %s block", name)
		}
		for _, a := range s.Attributes {
			if !strings.Contains(doc, "`"+a.Name+"`") {
				t.Errorf("docs/spec.md does not describe %s.%s", name, a.Name)
			}
		}
	}
}
