package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
)

func init() {
	register(&verb{
		name:    "generations",
		summary: "List the generations a gateway keeps, with dates and what changed",
		usage:   "generations [--json] [--host HOST:PORT] [--jump BASTION] [--key FILE] [--state DIR] PATH",
		examples: `
appliance generations site.hcl
appliance generations --host 127.0.0.1:2222 examples/demo.hcl`,
		run: runGenerations,
	})
}

func runGenerations(ctx context.Context, e *Env, args []string) error {
	v := verbs["generations"]
	fs := newFlags(v)
	asJSON := fs.Bool("json", false, "print as JSON")
	stateFlag := addStateFlag(fs)
	sf := addSpecFlags(fs)
	pf := addPushFlags(fs)
	if err := parse(e, v, fs, args); err != nil {
		return err
	}
	path, err := onePath(v.name, fs.Args())
	if err != nil {
		return err
	}
	p, err := preparePush(ctx, e, e.Stderr, path, sf, pf, *stateFlag, false)
	if err != nil {
		return err
	}
	defer p.close()
	gw, err := p.connect(ctx)
	if err != nil {
		return err
	}
	defer gw.Close()
	l, err := gw.Generations(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		b, _ := json.MarshalIndent(l, "", "  ")
		fmt.Fprintf(e.Stdout, "%s\n", b)
		return nil
	}
	if u := l.UnderWay; u != nil {
		fmt.Fprintf(e.Stdout, "An apply from generation %d to %d (%s) was interrupted in its %s phase; the next push, or the next boot, rolls it back.\n", u.From, u.To, u.Kind, u.Phase)
	}
	tw := tabwriter.NewWriter(e.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "\tGENERATION\tCREATED\tAPPLIANCE\tCHANGES")
	for _, g := range l.Generations {
		mark := ""
		if g.Current {
			mark = "*"
		}
		changes := strings.Join(g.Changes, "; ")
		if len(changes) > 100 {
			changes = changes[:97] + "..."
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\n", mark, g.Generation, g.Created.Local().Format("2006-01-02 15:04"), g.Appliance, changes)
	}
	return tw.Flush()
}
