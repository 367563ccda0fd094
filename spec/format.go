package spec

import (
	"bytes"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/hcl/v2/hclwrite"
)

// Format returns src in the canonical HCL layout. It refuses source that
// does not parse, since formatting broken syntax can move text in ways
// the author did not mean.
func Format(src []byte, filename string) ([]byte, hcl.Diagnostics) {
	_, diags := hclsyntax.ParseConfig(src, filename, hcl.InitialPos)
	if diags.HasErrors() {
		return nil, diags
	}
	return hclwrite.Format(src), nil
}

// IsFormatted reports whether src is already in the canonical layout.
func IsFormatted(src []byte, filename string) (bool, hcl.Diagnostics) {
	out, diags := Format(src, filename)
	if diags.HasErrors() {
		return false, diags
	}
	return bytes.Equal(out, src), nil
}
