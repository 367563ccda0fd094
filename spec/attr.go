package spec

import (
	"fmt"
	"math/big"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

// sensitiveMark marks cty values that come from variables declared
// sensitive, so that they can be kept out of every plain setting.
const sensitiveMark = "sensitive"

// noSnippet is set as a diagnostic's Extra when the renderer must not
// show the source line: the line may hold a secret, or the subject is a
// whole file rather than a place in it.
type noSnippet struct{}

// decoder carries what every block's decoding shares.
type decoder struct {
	diags   hcl.Diagnostics
	pending []Pending
	// unset are the variables without a value (only in partial mode);
	// localUnset says which of them each local depends on.
	unset      map[string]bool
	localUnset map[string][]string
	getenv     func(string) string
	// bad holds the settings ("mqtt.port") already reported as wrong,
	// so that checks across blocks do not report them again.
	bad map[string]bool
}

func (d *decoder) add(diags ...*hcl.Diagnostic) { d.diags = append(d.diags, diags...) }

func (d *decoder) errorAt(r hcl.Range, summary, detail string) {
	d.add(&hcl.Diagnostic{Severity: hcl.DiagError, Summary: summary, Detail: detail, Subject: r.Ptr()})
}

func (d *decoder) warnAt(r hcl.Range, summary, detail string) {
	d.add(&hcl.Diagnostic{Severity: hcl.DiagWarning, Summary: summary, Detail: detail, Subject: r.Ptr()})
}

// unsetVars returns the unset variables an expression depends on,
// directly or through locals.
func (d *decoder) unsetVars(expr hcl.Expression) []string {
	seen := map[string]bool{}
	for _, t := range expr.Variables() {
		root := t.RootName()
		if len(t) < 2 {
			continue
		}
		attr, ok := t[1].(hcl.TraverseAttr)
		if !ok {
			continue
		}
		switch root {
		case "var":
			if d.unset[attr.Name] {
				seen[attr.Name] = true
			}
		case "local":
			for _, v := range d.localUnset[attr.Name] {
				seen[strings.TrimPrefix(v, "var.")] = true
			}
		}
	}
	out := make([]string, 0, len(seen))
	for v := range seen {
		out = append(out, "var."+v)
	}
	sort.Strings(out)
	return out
}

// body is one block's attributes, being decoded.
type body struct {
	d     *decoder
	ctx   *hcl.EvalContext
	attrs hcl.Attributes
	where *Where
	// path names the block in messages and in Pending, e.g. "gateway.admin".
	path string
}

// open decodes a block's structure against its schema.
func (d *decoder) open(hb hcl.Body, schema *hcl.BodySchema, ctx *hcl.EvalContext, where *Where, path string) (*body, hcl.Blocks) {
	content, diags := hb.Content(schema)
	d.add(diags...)
	if content == nil {
		content = &hcl.BodyContent{}
	}
	return &body{d: d, ctx: ctx, attrs: content.Attributes, where: where, path: path}, content.Blocks
}

func (b *body) has(name string) bool {
	_, ok := b.attrs[name]
	return ok
}

// rng is the attribute's expression range, or the block's.
func (b *body) rng(name string) hcl.Range { return b.where.Attr(name) }

func (b *body) fail(name, summary, detail string) {
	b.d.bad[b.path+"."+name] = true
	b.d.errorAt(b.rng(name), summary, detail)
}

// failAt reports a problem with one part of the attribute, such as an
// element of a list.
func (b *body) failAt(name string, r hcl.Range, summary, detail string) {
	b.d.bad[b.path+"."+name] = true
	b.d.errorAt(r, summary, detail)
}

func (b *body) failSecret(name, summary, detail string) {
	b.d.bad[b.path+"."+name] = true
	b.d.add(&hcl.Diagnostic{Severity: hcl.DiagError, Summary: summary, Detail: detail, Subject: b.rng(name).Ptr(), Extra: noSnippet{}})
}

// eval evaluates the named attribute and converts it to ty. ok is false
// when the attribute is absent or null, has errors (already reported), or
// depends on an unset variable (recorded as pending). Values from
// sensitive variables are refused unless secret is set.
func (b *body) eval(name string, ty cty.Type, secret bool) (cty.Value, bool) {
	a, ok := b.attrs[name]
	if !ok {
		return cty.NilVal, false
	}
	b.where.set(name, a.Expr.Range())
	v, diags := a.Expr.Value(b.ctx)
	b.d.add(diags...)
	if diags.HasErrors() {
		b.d.bad[b.path+"."+name] = true
		return cty.NilVal, false
	}
	if !v.IsWhollyKnown() {
		b.d.pending = append(b.d.pending, Pending{Attr: b.path + "." + name, Variables: b.d.unsetVars(a.Expr), Range: a.Expr.Range()})
		return cty.NilVal, false
	}
	v, marks := v.UnmarkDeep()
	if _, sensitive := marks[sensitiveMark]; sensitive && !secret {
		b.failSecret(name, "Sensitive value in a plain setting",
			fmt.Sprintf("%s.%s would show a value derived from a sensitive variable in plans and on the device; sensitive values may only be used for secrets such as Wi-Fi passphrases.", b.path, name))
		return cty.NilVal, false
	}
	if v.IsNull() {
		return cty.NilVal, false
	}
	if ty != cty.DynamicPseudoType {
		cv, err := convert.Convert(v, ty)
		if err != nil {
			b.fail(name, fmt.Sprintf("Invalid value for %q", name), fmt.Sprintf("%s.%s: %s.", b.path, name, typeError(err, ty)))
			return cty.NilVal, false
		}
		v = cv
	}
	return v, true
}

func typeError(err error, ty cty.Type) string {
	msg := err.Error()
	switch {
	case ty == cty.String:
		return "a string is required"
	case ty == cty.Number:
		return "a number is required"
	case ty == cty.Bool:
		return "true or false is required"
	case ty.IsListType() && ty.ElementType() == cty.String:
		return "a list of strings is required, such as [\"a\", \"b\"]"
	}
	return msg
}

func (b *body) str(name string, dst *string) bool {
	v, ok := b.eval(name, cty.String, false)
	if ok {
		*dst = v.AsString()
	}
	return ok
}

func (b *body) boolean(name string, dst *bool) bool {
	v, ok := b.eval(name, cty.Bool, false)
	if ok {
		*dst = v.True()
	}
	return ok
}

// integer reads a whole number within [min, max].
func (b *body) integer(name string, dst *int, min, max int) bool {
	v, ok := b.eval(name, cty.Number, false)
	if !ok {
		return false
	}
	n, ok := wholeNumber(v.AsBigFloat())
	if !ok || n < int64(min) || n > int64(max) {
		b.fail(name, fmt.Sprintf("Invalid %s", name), fmt.Sprintf("%s.%s must be a whole number from %d to %d.", b.path, name, min, max))
		return false
	}
	*dst = int(n)
	return true
}

func wholeNumber(f *big.Float) (int64, bool) {
	if !f.IsInt() {
		return 0, false
	}
	n, acc := f.Int64()
	return n, acc == big.Exact
}

// port reads a TCP port; 0 is accepted when off is true, meaning "none".
func (b *body) port(name string, dst *int, off bool) bool {
	min := 1
	if off {
		min = 0
	}
	return b.integer(name, dst, min, 65535)
}

// elemRange finds the range of the i-th element of a list constructor,
// so that a problem with one element points at it.
func (b *body) elemRange(name string, i int) hcl.Range {
	a, ok := b.attrs[name]
	if !ok {
		return b.where.Block
	}
	if t, ok := a.Expr.(*hclsyntax.TupleConsExpr); ok && i < len(t.Exprs) {
		return t.Exprs[i].Range()
	}
	return a.Expr.Range()
}

func (b *body) strings(name string, dst *[]string) bool {
	v, ok := b.eval(name, cty.List(cty.String), false)
	if !ok {
		return false
	}
	out := []string{}
	for it := v.ElementIterator(); it.Next(); {
		_, e := it.Element()
		if e.IsNull() {
			b.fail(name, fmt.Sprintf("Invalid value for %q", name), fmt.Sprintf("%s.%s must not contain null.", b.path, name))
			return false
		}
		out = append(out, e.AsString())
	}
	*dst = out
	return true
}

// duration reads a duration within [min, max]; zero is accepted when
// zeroOK, and written as "0" or "infinite".
func (b *body) duration(name string, dst *time.Duration, min, max time.Duration, zeroOK bool) bool {
	var s string
	if !b.str(name, &s) {
		return false
	}
	if zeroOK && (s == "0" || s == "infinite") {
		*dst = 0
		return true
	}
	d, err := ParseDuration(s)
	if err != nil {
		b.fail(name, fmt.Sprintf("Invalid %s", name), fmt.Sprintf("%s.%s: %s.", b.path, name, err))
		return false
	}
	if d < min || d > max {
		extra := ""
		if zeroOK {
			extra = `, or "infinite"`
		}
		b.fail(name, fmt.Sprintf("%s out of range", strings.ToUpper(name[:1])+name[1:]),
			fmt.Sprintf("%s.%s is %s; it must be from %s to %s%s.", b.path, name, FormatDuration(d), FormatDuration(min), FormatDuration(max), extra))
		return false
	}
	*dst = d
	return true
}

// size reads a byte size, written as a number or with a unit, within
// [min, max].
func (b *body) size(name string, dst *int64, min, max int64) bool {
	v, ok := b.eval(name, cty.DynamicPseudoType, false)
	if !ok {
		return false
	}
	var n int64
	switch v.Type() {
	case cty.Number:
		i, whole := wholeNumber(v.AsBigFloat())
		if !whole || i < 0 {
			b.fail(name, fmt.Sprintf("Invalid %s", name), fmt.Sprintf("%s.%s must be a whole number of bytes, or a size such as \"64MiB\".", b.path, name))
			return false
		}
		n = i
	case cty.String:
		i, err := ParseSize(v.AsString())
		if err != nil {
			b.fail(name, fmt.Sprintf("Invalid %s", name), fmt.Sprintf("%s.%s: %s.", b.path, name, err))
			return false
		}
		n = i
	default:
		b.fail(name, fmt.Sprintf("Invalid %s", name), fmt.Sprintf("%s.%s must be a size such as \"64MiB\".", b.path, name))
		return false
	}
	if n < min || n > max {
		b.fail(name, fmt.Sprintf("%s out of range", strings.ToUpper(name[:1])+name[1:]),
			fmt.Sprintf("%s.%s is %s; it must be from %s to %s.", b.path, name, FormatSize(n), FormatSize(min), FormatSize(max)))
		return false
	}
	*dst = n
	return true
}

// fieldRange finds the range of one key inside an object constructor such
// as sensor = { type = "dht11", pin = 4 }, so that a problem with one
// field points at it rather than at the whole object.
func (b *body) fieldRange(name, key string) hcl.Range {
	a, ok := b.attrs[name]
	if !ok {
		return b.where.Block
	}
	if obj, ok := a.Expr.(*hclsyntax.ObjectConsExpr); ok {
		for _, item := range obj.Items {
			k, diags := item.KeyExpr.Value(nil)
			if diags.HasErrors() || k.Type() != cty.String || !k.IsKnown() {
				// Bare keys parse as traversals: take the name as written.
				if kt, ok := item.KeyExpr.(*hclsyntax.ObjectConsKeyExpr); ok {
					if n := hcl.ExprAsKeyword(kt.Wrapped); n == key {
						return item.ValueExpr.Range()
					}
				}
				continue
			}
			if k.AsString() == key {
				return item.ValueExpr.Range()
			}
		}
	}
	return a.Expr.Range()
}

// object evaluates an object-valued attribute such as sensor = {…} and
// checks its keys: every key in required must be there, and none outside
// allowed. secretKeys may hold values from sensitive variables. The
// fields that could be read are returned even when others had problems,
// so that those are checked too; ok is false when anything was wrong.
func (b *body) object(name string, required, allowed []string, secretKeys ...string) (map[string]cty.Value, bool) {
	a, ok := b.attrs[name]
	if !ok {
		return nil, false
	}
	b.where.set(name, a.Expr.Range())
	v, diags := a.Expr.Value(b.ctx)
	b.d.add(diags...)
	if diags.HasErrors() {
		return nil, false
	}
	if v.IsNull() {
		return nil, false
	}
	ty := v.Type()
	if !(ty.IsObjectType() || ty.IsMapType()) {
		b.fail(name, fmt.Sprintf("Invalid value for %q", name), fmt.Sprintf("%s.%s must be an object, such as { %s = … }.", b.path, name, strings.Join(required, " = …, ")))
		return nil, false
	}
	if !v.IsKnown() {
		b.d.pending = append(b.d.pending, Pending{Attr: b.path + "." + name, Variables: b.d.unsetVars(a.Expr), Range: a.Expr.Range()})
		return nil, false
	}
	v, outer := v.Unmark()
	fields := map[string]cty.Value{}
	for it := v.ElementIterator(); it.Next(); {
		k, e := it.Element()
		key := k.AsString()
		if len(outer) > 0 {
			e = e.WithMarks(outer)
		}
		fields[key] = e
	}
	good := true
	for key := range fields {
		if !containsString(allowed, key) {
			b.d.errorAt(b.fieldRange(name, key), fmt.Sprintf("Unknown key %q in %s", key, name),
				fmt.Sprintf("%s.%s takes the keys %s.", b.path, name, strings.Join(allowed, ", ")))
			good = false
		}
	}
	for _, key := range required {
		if _, ok := fields[key]; !ok {
			b.fail(name, fmt.Sprintf("Missing %s.%s", name, key), fmt.Sprintf("%s.%s needs a value for %q.", b.path, name, key))
			good = false
		}
	}
	out := map[string]cty.Value{}
	for key, e := range fields {
		if !e.IsWhollyKnown() {
			b.d.pending = append(b.d.pending, Pending{Attr: b.path + "." + name + "." + key, Variables: b.d.unsetVars(a.Expr), Range: b.fieldRange(name, key)})
			continue
		}
		e, marks := e.UnmarkDeep()
		if _, s := marks[sensitiveMark]; s && !containsString(secretKeys, key) {
			b.d.add(&hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Sensitive value in a plain setting",
				Detail:  fmt.Sprintf("%s.%s.%s would show a value derived from a sensitive variable; sensitive values may only be used for secrets such as Wi-Fi passphrases.", b.path, name, key),
				Subject: b.fieldRange(name, key).Ptr(), Extra: noSnippet{}})
			good = false
			continue
		}
		if e.IsNull() {
			continue
		}
		out[key] = e
	}
	if !good {
		b.d.bad[b.path+"."+name] = true
	}
	return out, good
}

// fieldString converts one object field to a string.
func (b *body) fieldString(name, key string, fields map[string]cty.Value, dst *string) bool {
	v, ok := fields[key]
	if !ok {
		return false
	}
	sv, err := convert.Convert(v, cty.String)
	if err != nil {
		b.d.errorAt(b.fieldRange(name, key), fmt.Sprintf("Invalid value for %s.%s", name, key), fmt.Sprintf("%s.%s.%s: a string is required.", b.path, name, key))
		return false
	}
	*dst = sv.AsString()
	return true
}

// fieldInt converts one object field to a whole number.
func (b *body) fieldInt(name, key string, fields map[string]cty.Value, dst *int) bool {
	v, ok := fields[key]
	if !ok {
		return false
	}
	nv, err := convert.Convert(v, cty.Number)
	var n int64
	whole := false
	if err == nil {
		n, whole = wholeNumber(nv.AsBigFloat())
	}
	if !whole || n < -1<<31 || n > 1<<31 {
		b.d.errorAt(b.fieldRange(name, key), fmt.Sprintf("Invalid value for %s.%s", name, key), fmt.Sprintf("%s.%s.%s: a whole number is required.", b.path, name, key))
		return false
	}
	*dst = int(n)
	return true
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
