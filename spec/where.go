package spec

import "github.com/hashicorp/hcl/v2"

// Where records where a block and its attributes were written, so that
// checks made after decoding can point at the exact place.
type Where struct {
	// Block is the range of the block's header (type and labels), or of the
	// file when the block was left out and its defaults apply.
	Block hcl.Range
	attrs map[string]hcl.Range
}

// Attr returns the range of the named attribute's expression, or the block's
// range when the attribute was not written.
func (w Where) Attr(name string) hcl.Range {
	if r, ok := w.attrs[name]; ok {
		return r
	}
	return w.Block
}

// Has reports whether the named attribute was written in the spec.
func (w Where) Has(name string) bool {
	_, ok := w.attrs[name]
	return ok
}

func (w *Where) set(name string, r hcl.Range) {
	if w.attrs == nil {
		w.attrs = map[string]hcl.Range{}
	}
	w.attrs[name] = r
}
