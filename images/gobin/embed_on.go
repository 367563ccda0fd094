//go:build appliance_embed

package gobin

import "embed"

// embedded holds the programs go generate built (make build runs it):
// embedded/manifest.json and embedded/linux-ARCH/NAME.
//
//go:embed embedded
var embedded embed.FS
