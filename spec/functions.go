package spec

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2/ext/tryfunc"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"
	"github.com/zclconf/go-cty/cty/function/stdlib"
)

// maxFileSize bounds file(): a spec reads keys and small texts, and a
// mistaken path to a disk image should fail fast, not fill memory.
const maxFileSize = 1 << 20

// functions returns the functions a spec may call. Paths are resolved
// against dir, the spec's folder; getenv reads the environment.
func functions(dir string, getenv func(string) string) map[string]function.Function {
	return map[string]function.Function{
		"file":       fileFunc(dir, getenv),
		"fileexists": fileExistsFunc(dir, getenv),
		"env":        envFunc(getenv),
		"try":        tryfunc.TryFunc,
		"can":        tryfunc.CanFunc,

		"abs": stdlib.AbsoluteFunc, "ceil": stdlib.CeilFunc, "floor": stdlib.FloorFunc,
		"max": stdlib.MaxFunc, "min": stdlib.MinFunc, "parseint": stdlib.ParseIntFunc,
		"pow": stdlib.PowFunc, "signum": stdlib.SignumFunc,

		"chomp": stdlib.ChompFunc, "format": stdlib.FormatFunc, "formatlist": stdlib.FormatListFunc,
		"indent": stdlib.IndentFunc, "join": stdlib.JoinFunc, "lower": stdlib.LowerFunc,
		"upper": stdlib.UpperFunc, "regex": stdlib.RegexFunc, "regexall": stdlib.RegexAllFunc,
		"replace": stdlib.ReplaceFunc, "split": stdlib.SplitFunc, "strrev": stdlib.ReverseFunc,
		"substr": stdlib.SubstrFunc, "title": stdlib.TitleFunc, "trim": stdlib.TrimFunc,
		"trimprefix": stdlib.TrimPrefixFunc, "trimsuffix": stdlib.TrimSuffixFunc,
		"trimspace": stdlib.TrimSpaceFunc, "startswith": startsWithFunc, "endswith": endsWithFunc,

		"chunklist": stdlib.ChunklistFunc, "coalesce": stdlib.CoalesceFunc,
		"coalescelist": stdlib.CoalesceListFunc, "compact": stdlib.CompactFunc,
		"concat": stdlib.ConcatFunc, "contains": stdlib.ContainsFunc, "distinct": stdlib.DistinctFunc,
		"element": stdlib.ElementFunc, "flatten": stdlib.FlattenFunc, "index": stdlib.IndexFunc,
		"keys": stdlib.KeysFunc, "length": lengthFunc, "lookup": stdlib.LookupFunc,
		"merge": stdlib.MergeFunc, "range": stdlib.RangeFunc, "reverse": stdlib.ReverseListFunc,
		"setintersection": stdlib.SetIntersectionFunc, "setproduct": stdlib.SetProductFunc,
		"setsubtract": stdlib.SetSubtractFunc, "setunion": stdlib.SetUnionFunc,
		"slice": stdlib.SliceFunc, "sort": stdlib.SortFunc, "values": stdlib.ValuesFunc,
		"zipmap": stdlib.ZipmapFunc,

		"tobool": stdlib.MakeToFunc(cty.Bool), "tolist": stdlib.MakeToFunc(cty.List(cty.DynamicPseudoType)),
		"tomap": stdlib.MakeToFunc(cty.Map(cty.DynamicPseudoType)), "tonumber": stdlib.MakeToFunc(cty.Number),
		"toset": stdlib.MakeToFunc(cty.Set(cty.DynamicPseudoType)), "tostring": stdlib.MakeToFunc(cty.String),
		"jsonencode": stdlib.JSONEncodeFunc, "jsondecode": stdlib.JSONDecodeFunc,
	}
}

// resolvePath expands a leading "~/" to the home folder and makes relative
// paths relative to the spec's folder, as users expect of a config file.
func resolvePath(dir, p string, getenv func(string) string) (string, error) {
	if p == "~" || strings.HasPrefix(p, "~/") {
		home := getenv("HOME")
		if home == "" {
			return "", fmt.Errorf("cannot expand ~: HOME is not set")
		}
		p = filepath.Join(home, strings.TrimPrefix(p, "~"))
	}
	if !filepath.IsAbs(p) {
		p = filepath.Join(dir, p)
	}
	return p, nil
}

func fileFunc(dir string, getenv func(string) string) function.Function {
	return function.New(&function.Spec{
		Description: "Reads a UTF-8 text file, relative to the spec's folder.",
		Params:      []function.Parameter{{Name: "path", Type: cty.String}},
		Type:        function.StaticReturnType(cty.String),
		RefineResult: func(b *cty.RefinementBuilder) *cty.RefinementBuilder {
			return b.NotNull()
		},
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			p, err := resolvePath(dir, args[0].AsString(), getenv)
			if err != nil {
				return cty.NilVal, err
			}
			fi, err := os.Stat(p)
			if err != nil {
				return cty.NilVal, fmt.Errorf("no file at %s; check the path (relative paths start at the spec's folder)", p)
			}
			if !fi.Mode().IsRegular() {
				// Devices and pipes could block or never end.
				return cty.NilVal, fmt.Errorf("%s is not a regular file", p)
			}
			if fi.Size() > maxFileSize {
				return cty.NilVal, fmt.Errorf("%s is %d bytes; file() reads text files up to 1 MiB", p, fi.Size())
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return cty.NilVal, err
			}
			if !utf8.Valid(b) {
				return cty.NilVal, fmt.Errorf("%s is not UTF-8 text", p)
			}
			return cty.StringVal(string(b)), nil
		},
	})
}

func fileExistsFunc(dir string, getenv func(string) string) function.Function {
	return function.New(&function.Spec{
		Description: "Reports whether a file exists, relative to the spec's folder.",
		Params:      []function.Parameter{{Name: "path", Type: cty.String}},
		Type:        function.StaticReturnType(cty.Bool),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			p, err := resolvePath(dir, args[0].AsString(), getenv)
			if err != nil {
				// No home folder, so no file in it.
				return cty.False, nil
			}
			fi, err := os.Stat(p)
			return cty.BoolVal(err == nil && fi.Mode().IsRegular()), nil
		},
	})
}

func envFunc(getenv func(string) string) function.Function {
	return function.New(&function.Spec{
		Description: "Reads an environment variable; the optional second argument is the value when it is unset or empty.",
		Params:      []function.Parameter{{Name: "name", Type: cty.String}},
		VarParam:    &function.Parameter{Name: "default", Type: cty.String},
		Type:        function.StaticReturnType(cty.String),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			if len(args) > 2 {
				return cty.NilVal, fmt.Errorf("env takes a name and at most one default")
			}
			name := args[0].AsString()
			if v := getenv(name); v != "" {
				return cty.StringVal(v), nil
			}
			if len(args) == 2 {
				return args[1], nil
			}
			return cty.NilVal, fmt.Errorf("environment variable %s is not set; set it, or give a default: env(%q, \"…\")", name, name)
		},
	})
}

// lengthFunc counts characters of a string, or elements of a collection,
// as users of Terraform expect of length().
var lengthFunc = function.New(&function.Spec{
	Params: []function.Parameter{{Name: "value", Type: cty.DynamicPseudoType, AllowDynamicType: true, AllowUnknown: true}},
	Type:   function.StaticReturnType(cty.Number),
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		v := args[0]
		ty := v.Type()
		switch {
		case ty == cty.String:
			return stdlib.Strlen(v)
		case ty.IsListType() || ty.IsSetType() || ty.IsMapType() || ty.IsTupleType() || ty.IsObjectType():
			if !v.IsKnown() {
				return cty.UnknownVal(cty.Number), nil
			}
			if ty.IsObjectType() {
				return cty.NumberIntVal(int64(len(ty.AttributeTypes()))), nil
			}
			return v.Length(), nil
		case ty == cty.DynamicPseudoType:
			return cty.UnknownVal(cty.Number), nil
		}
		return cty.NilVal, fmt.Errorf("length() takes a string or a collection, not %s", ty.FriendlyName())
	},
})

var startsWithFunc = function.New(&function.Spec{
	Params: []function.Parameter{{Name: "s", Type: cty.String}, {Name: "prefix", Type: cty.String}},
	Type:   function.StaticReturnType(cty.Bool),
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		return cty.BoolVal(strings.HasPrefix(args[0].AsString(), args[1].AsString())), nil
	},
})

var endsWithFunc = function.New(&function.Spec{
	Params: []function.Parameter{{Name: "s", Type: cty.String}, {Name: "suffix", Type: cty.String}},
	Type:   function.StaticReturnType(cty.Bool),
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		return cty.BoolVal(strings.HasSuffix(args[0].AsString(), args[1].AsString())), nil
	},
})
