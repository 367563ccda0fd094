package cli

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/appliance/appliance/images/apt"
	"github.com/appliance/appliance/images/build"
	"github.com/appliance/appliance/images/cache"
	"github.com/appliance/appliance/images/gobin"
	"github.com/appliance/appliance/images/rootfs"
	"github.com/appliance/appliance/outputs"
	"github.com/appliance/appliance/state"
)

func init() {
	register(&verb{
		name:    "build",
		summary: "Build the gateway image (and its SBOM) into out/SITE",
		usage:   "build [--out DIR] [--state DIR] [--offline] [--var name=value] [--var-file FILE] PATH",
		examples: `
appliance build --var wifi_psk=… examples/demo.hcl
SOURCE_DATE_EPOCH=1767225600 appliance build site.hcl   # reproducible times
appliance build --offline site.hcl                      # only the cache; say what is missing`,
		run: runBuild,
	})
}

func runBuild(ctx context.Context, e *Env, args []string) error {
	v := verbs["build"]
	fs := newFlags(v)
	out := fs.String("out", "", "output folder (default: out/SITE in the current folder)")
	offline := fs.Bool("offline", false, "use only the lock and the cache; no network")
	stateFlag := addStateFlag(fs)
	sf := addSpecFlags(fs)
	if err := parse(e, v, fs, args); err != nil {
		return err
	}
	path, err := onePath(v.name, fs.Args())
	if err != nil {
		return err
	}
	// A build needs every variable: no partial load.
	site, gw, err := loadGateway(e, path, sf, false)
	if err != nil {
		return err
	}
	st, err := state.Open(stateDir(*stateFlag, site), stateOptions(e, path, true))
	if err != nil {
		return fmt.Errorf("opening the state: %w", err)
	}
	defer st.Close()
	res, err := st.Ensure(gw.Wants, false)
	if err != nil {
		return fmt.Errorf("state: %w", err)
	}
	for _, c := range res.Created {
		fmt.Fprintf(e.Stderr, "state      created %s\n", c)
	}
	for _, p := range res.Problems {
		sev := "warning"
		if p.Error {
			sev = "error"
		}
		fmt.Fprintf(e.Stderr, "state      %s: %s: %s\n", sev, p.Name, p.Message)
	}
	if res.Errors() {
		return fmt.Errorf("the state has problems that stop a build (above)")
	}
	if err := renewState(e, st, gw.Wants); err != nil {
		return err
	}
	ca, err := cache.FromEnv(e.environ())
	if err != nil {
		return err
	}
	epoch, err := rootfs.EpochFromEnv(e.environ())
	if err != nil {
		return err
	}
	progs, err := gobin.Find()
	if err != nil {
		return err
	}
	outDir := *out
	if outDir == "" {
		outDir = filepath.Join("out", site.Name)
	}
	if err := os.MkdirAll(filepath.Dir(outDir), 0o755); err != nil {
		return err
	}
	start := time.Now()
	r, err := build.Build(ctx, build.Options{
		SpecPath: path, LockPath: site.Location.Lock, Gateway: gw, State: st, Cache: ca,
		Client: &apt.Client{Store: ca, Offline: *offline, Retries: 3, HTTP: &http.Client{Timeout: 10 * time.Minute}},
		OutDir: outDir, Epoch: epoch, Programs: progs, Progress: progressFor(e), Log: e.Stderr, Version: version(),
	})
	if err != nil {
		return err
	}
	if !r.UpToDate {
		fmt.Fprintf(e.Stdout, "%s: %s and its companions, built in %s\n", outDir, build.ImageName, time.Since(start).Round(100*time.Millisecond))
	} else {
		fmt.Fprintf(e.Stdout, "%s: up to date\n", outDir)
	}
	printNodes(e, outDir, r.Info)
	return nil
}

// printNodes says what the nodes got: a line for their bundles, and one
// per firmware that has no app image yet, with the command that builds
// it.
func printNodes(e *Env, outDir string, info *build.Info) {
	if len(info.Nodes) == 0 {
		return
	}
	noApp := map[string][]string{}
	var order []string
	chip := map[string]string{}
	for _, n := range info.Nodes {
		if !n.App {
			if _, ok := noApp[n.Firmware]; !ok {
				order = append(order, n.Firmware)
			}
			noApp[n.Firmware] = append(noApp[n.Firmware], n.Name)
			chip[n.Firmware] = n.Chip
		}
	}
	fmt.Fprintf(e.Stdout, "%s: %d node %s (%s)\n", filepath.Join(outDir, outputs.NodesDir), len(info.Nodes), plural(len(info.Nodes), "bundle", "bundles"), "flash with esptool write_flash @flash_args in each node's folder")
	for _, fw := range order {
		fmt.Fprintf(e.Stdout, "nodes: firmware %q names no app image, so %d %s hold the identity only; build the app with `idf.py set-target %s && idf.py build` in firmware/sensor and set firmware %q's image\n",
			fw, len(noApp[fw]), plural(len(noApp[fw]), "bundle", "bundles"), chip[fw], fw)
	}
}
