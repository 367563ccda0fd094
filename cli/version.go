package cli

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"
)

// Version is set at link time by the Makefile (-X); builds without it
// report the module version Go recorded.
var Version = ""

func init() {
	register(&verb{
		name:    "version",
		summary: "Print appliance's version",
		usage:   "version",
		run: func(ctx context.Context, e *Env, args []string) error {
			v := verbs["version"]
			fs := newFlags(v)
			if err := parse(e, v, fs, args); err != nil {
				return err
			}
			fmt.Fprintf(e.Stdout, "appliance %s (%s, %s/%s)\n", version(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return nil
		},
	})
}

func version() string {
	if Version != "" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "devel"
}
