package spec

import (
	"fmt"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/ext/typeexpr"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

// EnvPrefix starts the names of environment variables that set input
// variables: APPLIANCE_VAR_wifi_psk sets var.wifi_psk.
const EnvPrefix = "APPLIANCE_VAR_"

var variableSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "type"}, {Name: "default"}, {Name: "description"}, {Name: "sensitive"},
	},
	Blocks: []hcl.BlockHeaderSchema{{Type: "validation"}},
}

var validationSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "condition", Required: true}, {Name: "error_message", Required: true},
	},
}

type varDecl struct {
	Variable
	typ         cty.Type
	def         cty.Value // cty.NilVal when there is no default
	validations []*hcl.Block
}

// decodeVariables reads the variable blocks. Their attributes are
// constants: a variable's type and default cannot depend on other values.
func (d *decoder) decodeVariables(blocks hcl.Blocks) []*varDecl {
	var out []*varDecl
	seen := map[string]hcl.Range{}
	for _, blk := range blocks {
		name := blk.Labels[0]
		if !hclsyntax.ValidIdentifier(name) {
			d.errorAt(blk.LabelRanges[0], "Invalid variable name", fmt.Sprintf("%q is not a valid name; use letters, digits, underscores and dashes, starting with a letter.", name))
			continue
		}
		if prev, dup := seen[name]; dup {
			d.errorAt(blk.LabelRanges[0], "Duplicate variable", fmt.Sprintf("Variable %q is already declared at %s.", name, shortRange(prev)))
			continue
		}
		seen[name] = blk.DefRange
		v := &varDecl{Variable: Variable{Name: name, Where: Where{Block: blk.DefRange}}, typ: cty.DynamicPseudoType, def: cty.NilVal}
		b, vblocks := d.open(blk.Body, variableSchema, nil, &v.Where, "var."+name)
		if a, ok := b.attrs["type"]; ok {
			ty, diags := typeexpr.TypeConstraint(a.Expr)
			d.add(diags...)
			if !diags.HasErrors() {
				v.typ = ty
			}
		}
		b.str("description", &v.Description)
		b.boolean("sensitive", &v.Sensitive)
		if a, ok := b.attrs["default"]; ok {
			val, diags := a.Expr.Value(nil)
			d.add(diags...)
			if !diags.HasErrors() {
				cv, err := convert.Convert(val, v.typ)
				if err != nil {
					d.add(&hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid default value for variable",
						Detail:  fmt.Sprintf("The default of var.%s does not fit its type %s: %s.", name, typeexpr.TypeString(v.typ), err),
						Subject: a.Expr.Range().Ptr(), Extra: secretIf(v.Sensitive)})
				} else {
					v.def = cv
				}
			}
		}
		v.validations = vblocks
		out = append(out, v)
	}
	return out
}

func secretIf(sensitive bool) any {
	if sensitive {
		return noSnippet{}
	}
	return nil
}

// VarSources are the values given for variables outside the spec, in
// increasing precedence: environment, var-files in order, --var in order.
type varValue struct {
	raw    string // from --var or the environment: parsed per the type
	expr   hcl.Expression
	source string
	rng    *hcl.Range
}

// assignVariables gives every declared variable its value and returns the
// var object for evaluation. In partial mode a variable without a value
// becomes unknown, and its dependents are listed as pending.
func (d *decoder) assignVariables(decls []*varDecl, opts Options, parser *hclparse.Parser) cty.Value {
	byName := map[string]*varDecl{}
	for _, v := range decls {
		byName[v.Name] = v
	}
	given := map[string]varValue{}

	env := opts.environ()
	for _, kv := range env {
		k, val, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(k, EnvPrefix) {
			continue
		}
		name := strings.TrimPrefix(k, EnvPrefix)
		if byName[name] == nil {
			// The environment is shared with other specs: ignore names
			// this one does not declare.
			continue
		}
		given[name] = varValue{raw: val, source: "env " + k}
	}

	for _, path := range opts.VarFiles {
		f, diags := parser.ParseHCLFile(path)
		d.add(diags...)
		if diags.HasErrors() {
			continue
		}
		attrs, diags := f.Body.JustAttributes()
		d.add(diags...)
		names := make([]string, 0, len(attrs))
		for n := range attrs {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			a := attrs[n]
			if byName[n] == nil {
				d.warnAt(a.NameRange, "Value for undeclared variable",
					fmt.Sprintf("%s sets %q, which the spec does not declare; remove it, or declare it with variable %q {}.", path, n, n))
				continue
			}
			r := a.Expr.Range()
			given[n] = varValue{expr: a.Expr, source: path, rng: &r}
		}
	}

	for _, kv := range opts.Vars {
		name, val, ok := strings.Cut(kv, "=")
		if !ok {
			d.add(&hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid --var",
				Detail: fmt.Sprintf("--var takes name=value; got %q without \"=\".", name)})
			continue
		}
		if byName[name] == nil {
			d.add(&hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Undeclared variable",
				Detail: fmt.Sprintf("--var sets %q, which the spec does not declare; declare it with variable %q {}, or check the name.", name, name)})
			continue
		}
		given[name] = varValue{raw: val, source: "--var"}
	}

	vals := map[string]cty.Value{}
	for _, v := range decls {
		var val cty.Value
		if g, ok := given[v.Name]; ok {
			val = d.parseVarValue(v, g)
			if val == cty.NilVal {
				// Already reported; unknown keeps its uses from failing
				// again as "no such attribute".
				vals[v.Name] = cty.UnknownVal(v.typ)
				continue
			}
			v.Source = g.source
		} else if v.def != cty.NilVal {
			val = v.def
			v.Source = "default"
		} else if opts.Partial {
			val = cty.UnknownVal(v.typ)
			d.unset[v.Name] = true
		} else {
			d.errorAt(v.Where.Block, "No value for variable",
				fmt.Sprintf("var.%s has no default and was not set; set it with --var %s=…, in a --var-file, or with the environment variable %s%s.", v.Name, v.Name, EnvPrefix, v.Name))
			vals[v.Name] = cty.UnknownVal(v.typ)
			continue
		}
		if v.Sensitive {
			val = val.Mark(sensitiveMark)
		}
		vals[v.Name] = val
	}
	for _, v := range decls {
		if val, ok := vals[v.Name]; ok && !d.checkValidations(v, val) {
			// A value its own validation refuses goes no further: what
			// depends on it is not checked again, and not reported twice.
			vals[v.Name] = cty.UnknownVal(v.typ).WithMarks(val.Marks())
		}
	}
	if len(vals) == 0 {
		return cty.EmptyObjectVal
	}
	return cty.ObjectVal(vals)
}

func (d *decoder) parseVarValue(v *varDecl, g varValue) cty.Value {
	var val cty.Value
	switch {
	case g.expr != nil:
		ev, diags := g.expr.Value(nil)
		if diags.HasErrors() {
			for _, diag := range diags {
				diag.Extra = secretIf(v.Sensitive)
			}
			d.add(diags...)
			return cty.NilVal
		}
		val = ev
	case v.typ == cty.String || v.typ == cty.DynamicPseudoType:
		val = cty.StringVal(g.raw)
	default:
		// Lists, maps, numbers and bools are written as HCL, the way
		// users of Terraform know from -var.
		expr, diags := hclsyntax.ParseExpression([]byte(g.raw), g.source, hcl.InitialPos)
		if !diags.HasErrors() {
			val, diags = expr.Value(nil)
		}
		if diags.HasErrors() {
			d.add(&hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid value for variable",
				Detail: fmt.Sprintf("The value of var.%s from %s is not a valid %s; write it as HCL, such as [\"a\", \"b\"] or 42.", v.Name, g.source, typeexpr.TypeString(v.typ))})
			return cty.NilVal
		}
	}
	cv, err := convert.Convert(val, v.typ)
	if err != nil {
		d.add(&hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid value for variable",
			Detail:  fmt.Sprintf("The value of var.%s from %s does not fit its type %s: %s.", v.Name, g.source, typeexpr.TypeString(v.typ), err),
			Subject: g.rng, Extra: secretIf(v.Sensitive)})
		return cty.NilVal
	}
	return cv
}

// checkValidations runs the variable's validation blocks and reports
// whether the value passed them all.
func (d *decoder) checkValidations(v *varDecl, val cty.Value) bool {
	ok := true
	ctx := &hcl.EvalContext{
		Variables: map[string]cty.Value{"var": cty.ObjectVal(map[string]cty.Value{v.Name: val})},
		Functions: functions("", func(string) string { return "" }),
	}
	for _, blk := range v.validations {
		content, diags := blk.Body.Content(validationSchema)
		d.add(diags...)
		if diags.HasErrors() {
			continue
		}
		cond := content.Attributes["condition"]
		refsSelf := false
		for _, t := range cond.Expr.Variables() {
			if t.RootName() != "var" || len(t) < 2 {
				d.errorAt(t.SourceRange(), "Invalid validation condition", fmt.Sprintf("A validation of var.%s may refer only to var.%s.", v.Name, v.Name))
				return false
			}
			if a, ok := t[1].(hcl.TraverseAttr); ok && a.Name != v.Name {
				d.errorAt(t.SourceRange(), "Invalid validation condition", fmt.Sprintf("A validation of var.%s may refer only to var.%s, not var.%s.", v.Name, v.Name, a.Name))
				return false
			}
			refsSelf = true
		}
		if !refsSelf {
			d.errorAt(cond.Expr.Range(), "Invalid validation condition", fmt.Sprintf("The condition must refer to var.%s; otherwise it checks nothing.", v.Name))
			continue
		}
		res, diags := cond.Expr.Value(ctx)
		if diags.HasErrors() {
			for _, diag := range diags {
				diag.Extra = secretIf(v.Sensitive)
			}
			d.add(diags...)
			continue
		}
		if !res.IsWhollyKnown() {
			continue
		}
		res, _ = res.UnmarkDeep()
		if res.IsNull() || res.Type() != cty.Bool {
			d.errorAt(cond.Expr.Range(), "Invalid validation condition", "The condition must be true or false.")
			continue
		}
		if res.True() {
			continue
		}
		msg := "The value is not valid."
		mv, diags := content.Attributes["error_message"].Expr.Value(ctx)
		if !diags.HasErrors() && mv.IsWhollyKnown() && !mv.IsNull() {
			if mv, marks := mv.UnmarkDeep(); mv.Type() == cty.String {
				if _, s := marks[sensitiveMark]; s {
					msg = "The value is not valid (the error message is hidden because it contains the sensitive value)."
				} else {
					msg = mv.AsString()
				}
			}
		}
		d.add(&hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid value for variable",
			Detail:  fmt.Sprintf("var.%s (from %s): %s", v.Name, v.Source, msg),
			Subject: cond.Expr.Range().Ptr()})
		ok = false
	}
	return ok
}

// decodeLocals evaluates every local value, in dependency order.
func (d *decoder) decodeLocals(blocks hcl.Blocks, ctx *hcl.EvalContext) cty.Value {
	exprs := map[string]*hcl.Attribute{}
	var order []string
	for _, blk := range blocks {
		attrs, diags := blk.Body.JustAttributes()
		d.add(diags...)
		names := make([]string, 0, len(attrs))
		for n := range attrs {
			names = append(names, n)
		}
		sort.Slice(names, func(i, j int) bool { return attrs[names[i]].Range.Start.Byte < attrs[names[j]].Range.Start.Byte })
		for _, n := range names {
			if prev, dup := exprs[n]; dup {
				d.errorAt(attrs[n].NameRange, "Duplicate local value", fmt.Sprintf("local.%s is already defined at %s.", n, shortRange(prev.NameRange)))
				continue
			}
			exprs[n] = attrs[n]
			order = append(order, n)
		}
	}
	deps := func(n string) []string {
		var out []string
		for _, t := range exprs[n].Expr.Variables() {
			if t.RootName() != "local" || len(t) < 2 {
				continue
			}
			if a, ok := t[1].(hcl.TraverseAttr); ok && exprs[a.Name] != nil {
				out = append(out, a.Name)
			}
		}
		return out
	}
	vals := map[string]cty.Value{}
	done := map[string]bool{}
	for len(done) < len(order) {
		progress := false
		for _, n := range order {
			if done[n] {
				continue
			}
			ready := true
			for _, dep := range deps(n) {
				if !done[dep] {
					ready = false
				}
			}
			if !ready {
				continue
			}
			local := cty.EmptyObjectVal
			if len(vals) > 0 {
				local = cty.ObjectVal(vals)
			}
			ctx.Variables["local"] = local
			v, diags := exprs[n].Expr.Value(ctx)
			d.add(diags...)
			if diags.HasErrors() {
				v = cty.DynamicVal
			}
			d.localUnset[n] = d.unsetVars(exprs[n].Expr)
			vals[n] = v
			done[n] = true
			progress = true
		}
		if !progress {
			// Report each cycle once, at its first member in the files;
			// locals that merely depend on a cycle get no message of
			// their own.
			reported := map[string]bool{}
			for _, n := range order {
				if done[n] || reported[n] {
					continue
				}
				if path := cycle(n, deps); path != nil {
					for _, p := range path {
						reported[strings.TrimPrefix(p, "local.")] = true
					}
					d.errorAt(exprs[n].NameRange, "Cycle in local values",
						fmt.Sprintf("local.%s depends on itself: %s; break the cycle.", n, strings.Join(path, " → ")))
				}
			}
			for _, n := range order {
				if !done[n] {
					done[n] = true
					vals[n] = cty.DynamicVal
				}
			}
		}
	}
	if len(vals) == 0 {
		return cty.EmptyObjectVal
	}
	return cty.ObjectVal(vals)
}

// cycle finds a path of local names from n back to n, or nil when n is
// not on a cycle.
func cycle(n string, deps func(string) []string) []string {
	var path []string
	var walk func(cur string, seen map[string]bool) bool
	walk = func(cur string, seen map[string]bool) bool {
		path = append(path, "local."+cur)
		for _, dep := range deps(cur) {
			if dep == n {
				path = append(path, "local."+n)
				return true
			}
			if !seen[dep] {
				seen[dep] = true
				if walk(dep, seen) {
					return true
				}
			}
		}
		path = path[:len(path)-1]
		return false
	}
	if walk(n, map[string]bool{n: true}) {
		return path
	}
	return nil
}

func shortRange(r hcl.Range) string {
	return fmt.Sprintf("%s:%d:%d", r.Filename, r.Start.Line, r.Start.Column)
}
