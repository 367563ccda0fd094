//go:build !appliance_embed

package gobin

import "embed"

// embedded is empty without the appliance_embed tag: the programs are
// built from source.
var embedded embed.FS
