package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"path"
	"runtime"
	"runtime/debug"

	"github.com/appliance/appliance/images/gobin"
)

// Version is set at link time by the Makefile (-X); builds without it
// report the module version Go recorded.
var Version = ""

func init() {
	register(&verb{
		name:    "version",
		summary: "Print appliance's version and where the gateway's programs come from",
		usage:   "version [--json]",
		examples: `
appliance version          # a release binary lists the gateway programs it carries
appliance version --json`,
		run: runVersion,
	})
}

// versionInfo is what version --json prints.
type versionInfo struct {
	Version string `json:"version"`
	Go      string `json:"go"`
	OS      string `json:"os"`
	Arch    string `json:"arch"`
	// Programs are the gateway programs this binary carries; none when it
	// builds them from source.
	Programs []gobin.ManifestEntry `json:"programs"`
}

func runVersion(ctx context.Context, e *Env, args []string) error {
	v := verbs["version"]
	fs := newFlags(v)
	asJSON := fs.Bool("json", false, "print as JSON")
	if err := parse(e, v, fs, args); err != nil {
		return err
	}
	m, err := gobin.Embedded()
	if err != nil {
		return err
	}
	info := versionInfo{Version: version(), Go: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH, Programs: []gobin.ManifestEntry{}}
	if m != nil {
		info.Programs = m.Programs
	}
	if *asJSON {
		b, err := json.MarshalIndent(info, "", "  ")
		if err != nil {
			return err
		}
		fmt.Fprintf(e.Stdout, "%s\n", b)
		return nil
	}
	fmt.Fprintf(e.Stdout, "appliance %s (%s, %s/%s)\n", info.Version, info.Go, info.OS, info.Arch)
	if m == nil {
		fmt.Fprintf(e.Stdout, "gateway programs: built from appliance's source when a build needs them (Go on PATH)\n")
		return nil
	}
	fmt.Fprintf(e.Stdout, "gateway programs: embedded, built with %s\n", m.Go)
	for _, p := range m.Programs {
		fmt.Fprintf(e.Stdout, "  linux/%s %-16s sha256 %s\n", p.Arch, path.Base(p.Package), p.SHA256)
	}
	return nil
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
