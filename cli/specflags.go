package cli

import (
	"fmt"

	"github.com/appliance/appliance/desired"
	"github.com/appliance/appliance/spec"
	"github.com/appliance/appliance/state"
	"github.com/spf13/pflag"
)

// specFlags are the flags of every verb that reads a spec.
type specFlags struct {
	vars     []string
	varFiles []string
}

func addSpecFlags(fs *pflag.FlagSet) *specFlags {
	f := &specFlags{}
	fs.StringArrayVar(&f.vars, "var", nil, "set a variable: --var name=value (repeatable; wins over --var-file and APPLIANCE_VAR_name)")
	fs.StringArrayVar(&f.varFiles, "var-file", nil, "read variables from an HCL file of name = value lines (repeatable)")
	return f
}

func (f *specFlags) options(e *Env, partial bool) spec.Options {
	return spec.Options{Vars: f.vars, VarFiles: f.varFiles, Environ: e.environ(), Partial: partial}
}

// onePath takes the single PATH argument of a verb.
func onePath(v string, args []string) (string, error) {
	switch len(args) {
	case 1:
		return args[0], nil
	case 0:
		return "", usagef(v, "missing PATH: name the spec file, or the folder of .hcl files")
	}
	return "", usagef(v, "takes one PATH, got %d arguments", len(args))
}

// loadSite reads the spec, printing its diagnostics (warnings too) to
// stderr; on errors it returns errSilent, the diagnostics having said
// why.
func loadSite(e *Env, path string, sf *specFlags, partial bool) (*spec.Site, error) {
	site, rep := spec.Load(path, sf.options(e, partial))
	if err := rep.WriteText(e.Stderr); err != nil {
		return nil, err
	}
	if rep.HasErrors() {
		errs, _ := rep.Count()
		fmt.Fprintf(e.Stderr, "%s: %d %s; run appliance validate %s after fixing\n", path, errs, plural(errs, "error", "errors"), path)
		return nil, errSilent
	}
	return site, nil
}

// loadGateway reads the spec and computes the gateway's desired state,
// which every verb past validate starts from.
func loadGateway(e *Env, path string, sf *specFlags, partial bool) (*spec.Site, *desired.Gateway, error) {
	site, err := loadSite(e, path, sf, partial)
	if err != nil {
		return nil, nil, err
	}
	gw, err := desired.Compute(site)
	if err != nil {
		return nil, nil, err
	}
	return site, gw, nil
}

// stateFlag is --state, shared by the verbs that use the site's state.
func addStateFlag(fs *pflag.FlagSet) *string {
	return fs.String("state", "", "the site's state folder (default: .appliance/SITE beside the spec)")
}

func stateDir(flag string, site *spec.Site) string {
	if flag != "" {
		return flag
	}
	return site.Location.State
}

// stateOptions opens a site's state for a verb: the spec's path goes into
// the commands its messages suggest.
func stateOptions(e *Env, path string, create bool) state.Options {
	return state.Options{Create: create, Now: e.now, Spec: path}
}
