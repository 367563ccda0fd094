package cli

import (
	"context"
	"fmt"
	"os"

	"github.com/appliance/appliance/internal/atomicfile"
	"github.com/appliance/appliance/spec"
)

func init() {
	register(&verb{
		name:    "fmt",
		summary: "Rewrite spec files in the canonical layout",
		usage:   "fmt [--check] PATH...",
		examples: `
appliance fmt site.hcl
appliance fmt --check examples/     # exit 1 and list files that need formatting`,
		run: runFmt,
	})
}

func runFmt(ctx context.Context, e *Env, args []string) error {
	v := verbs["fmt"]
	fs := newFlags(v)
	check := fs.Bool("check", false, "change nothing; list the files that are not formatted and exit 1 if any")
	if err := parse(e, v, fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return usagef(v.name, "missing PATH: name spec files or folders")
	}
	var files []string
	for _, p := range fs.Args() {
		fl, err := spec.Files(p)
		if err != nil {
			return err
		}
		files = append(files, fl...)
	}
	unformatted := 0
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		out, diags := spec.Format(src, f)
		if diags.HasErrors() {
			return fmt.Errorf("%s does not parse, so it was not formatted: %s; run appliance validate %s", f, diags.Errs()[0], f)
		}
		if string(out) == string(src) {
			continue
		}
		unformatted++
		if *check {
			fmt.Fprintln(e.Stdout, f)
			continue
		}
		if err := writeFileAtomic(f, out); err != nil {
			return err
		}
		fmt.Fprintln(e.Stdout, f)
	}
	if *check && unformatted > 0 {
		return errSilent
	}
	return nil
}

// writeFileAtomic replaces a file, keeping its mode, so an interrupted
// write leaves the old file.
func writeFileAtomic(path string, data []byte) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(path, data, fi.Mode().Perm())
}
