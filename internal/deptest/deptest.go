// Package deptest guards the wall between appliance's two wings: the
// programs that run on the gateway (init, ingest, setup) import nothing of
// the build — no spec, modules, desired state, site state, image code or
// HCL — so a gateway binary stays small and cannot reach the build's
// secrets or its parser. Its test lists each program's dependencies as
// the Go toolchain sees them for linux/arm64.
package deptest

// Gateway are the programs that run on the gateway.
var Gateway = []string{
	"github.com/appliance/appliance/cmd/appliance-init",
	"github.com/appliance/appliance/cmd/ingest",
	"github.com/appliance/appliance/cmd/appliance-health",
	"github.com/appliance/appliance/cmd/appliance-setup",
	"github.com/appliance/appliance/cmd/appliance-apply",
}

// Forbidden are the import path prefixes a gateway program must not
// depend on.
var Forbidden = []string{
	"github.com/appliance/appliance/spec",
	"github.com/appliance/appliance/modules",
	"github.com/appliance/appliance/desired",
	"github.com/appliance/appliance/state",
	"github.com/appliance/appliance/pki",
	"github.com/appliance/appliance/images",
	"github.com/appliance/appliance/cli",
	"github.com/appliance/appliance/firmware",
	"github.com/hashicorp/hcl",
	"github.com/zclconf/go-cty",
}
