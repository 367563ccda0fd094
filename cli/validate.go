package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/appliance/appliance/spec"
)

func init() {
	register(&verb{
		name:    "validate",
		summary: "Check a spec and report every problem in it",
		usage:   "validate [--json] [--var name=value] [--var-file FILE] PATH",
		examples: `
appliance validate examples/demo.hcl
appliance validate --json site/          # a folder of .hcl files
appliance validate --var wifi_psk=… greenhouse.hcl`,
		run: runValidate,
	})
}

// validateResult is what validate --json prints.
type validateResult struct {
	Valid       bool                  `json:"valid"`
	Errors      int                   `json:"errors"`
	Warnings    int                   `json:"warnings"`
	Diagnostics []spec.JSONDiagnostic `json:"diagnostics"`
	Pending     []spec.Pending        `json:"pending"`
}

func runValidate(ctx context.Context, e *Env, args []string) error {
	v := verbs["validate"]
	fs := newFlags(v)
	asJSON := fs.Bool("json", false, "print the result as JSON")
	sf := addSpecFlags(fs)
	if err := parse(e, v, fs, args); err != nil {
		return err
	}
	path, err := onePath(v.name, fs.Args())
	if err != nil {
		return err
	}
	// Variables without a value are not an error here: validate checks
	// the spec, build needs the values.
	site, rep := spec.Load(path, sf.options(e, true))
	errs, warns := rep.Count()
	if *asJSON {
		res := validateResult{Valid: errs == 0, Errors: errs, Warnings: warns, Diagnostics: rep.JSON(), Pending: []spec.Pending{}}
		if site != nil {
			res.Pending = site.Pending
		}
		enc := json.NewEncoder(e.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			return err
		}
	} else {
		if err := rep.WriteText(e.Stderr); err != nil {
			return err
		}
		if errs == 0 {
			fmt.Fprintf(e.Stdout, "%s: valid: site %s, gateway %s (%s), %d %s\n", path, site.Name, site.Gateway.Hostname, site.Gateway.Board, len(site.Nodes), plural(len(site.Nodes), "node", "nodes"))
			writePending(e, site)
		} else {
			fmt.Fprintf(e.Stderr, "%s: %d %s, %d %s\n", path, errs, plural(errs, "error", "errors"), warns, plural(warns, "warning", "warnings"))
		}
	}
	if errs > 0 {
		return errSilent
	}
	return nil
}

// writePending says which variables still need a value before a build.
func writePending(e *Env, site *spec.Site) {
	byVar := map[string]int{}
	var order []string
	for _, p := range site.Pending {
		for _, v := range p.Variables {
			if byVar[v] == 0 {
				order = append(order, v)
			}
			byVar[v]++
		}
	}
	for _, v := range order {
		name := strings.TrimPrefix(v, "var.")
		fmt.Fprintf(e.Stdout, "note: %s is not set; %d %s on it. Set it to build: --var %s=… or %s%s=…\n",
			v, byVar[v], plural(byVar[v], "setting depends", "settings depend"), name, spec.EnvPrefix, name)
	}
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
