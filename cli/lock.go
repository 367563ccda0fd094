package cli

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/appliance/appliance/evidence"
	"github.com/appliance/appliance/images/apt"
	"github.com/appliance/appliance/images/cache"
	"github.com/appliance/appliance/images/rootfs"
	"golang.org/x/term"
)

func init() {
	register(&verb{
		name:    "lock",
		summary: "Resolve the gateway's packages and write them to the lock file",
		usage:   "lock [--offline] [--fetch] [--check] [--var name=value] [--var-file FILE] PATH",
		examples: `
appliance lock examples/demo.hcl             # writes examples/demo.lock
appliance lock site/                         # writes site/appliance.lock
appliance lock --check examples/demo.hcl     # does the lock still fit the spec, and has Debian fixed anything since?
appliance lock --fetch examples/demo.hcl     # and download the packages, for build --offline`,
		run: runLock,
	})
}

func runLock(ctx context.Context, e *Env, args []string) error {
	v := verbs["lock"]
	fs := newFlags(v)
	offline := fs.Bool("offline", false, "use only the cache (Release files and indexes verified by an earlier run); no network")
	fetch := fs.Bool("fetch", false, "also download every locked package into the cache")
	check := fs.Bool("check", false, "only report whether the lock fits the spec and which locked packages the security suite has newer versions of (exit status 3); change nothing")
	sf := addSpecFlags(fs)
	if err := parse(e, v, fs, args); err != nil {
		return err
	}
	path, err := onePath(v.name, fs.Args())
	if err != nil {
		return err
	}
	// The packages do not depend on the nodes' variables: a lock needs
	// none of them.
	site, gw, err := loadGateway(e, path, sf, true)
	if err != nil {
		return err
	}
	req, err := gw.Request()
	if err != nil {
		return err
	}
	lockPath := site.Location.Lock
	if *check {
		return checkLock(ctx, e, path, lockPath, req, *offline)
	}
	old, err := rootfs.ReadLock(lockPath)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		fmt.Fprintf(e.Stderr, "appliance lock: ignoring %v\n", err)
		old = nil
	}
	ca, err := cache.FromEnv(e.environ())
	if err != nil {
		return err
	}
	client := &apt.Client{Store: ca, Offline: *offline, Retries: 3, Now: e.now, HTTP: &http.Client{Timeout: 10 * time.Minute}}
	// A Release older than the one the lock was made from is a replay.
	req.RefuseOlder(old)
	// Interrupted (Ctrl-C, SIGTERM), lock stops at the next step and
	// writes nothing.
	interrupted := func(err error) error {
		if ctx.Err() != nil {
			return fmt.Errorf("interrupted; %s was not written", lockPath)
		}
		return err
	}
	lock, err := rootfs.Plan(ctx, client, req)
	if err != nil {
		if errors.Is(err, apt.ErrOffline) {
			return fmt.Errorf("%w\nrun appliance lock %s once without --offline to fill the cache", err, path)
		}
		return interrupted(err)
	}
	if *fetch {
		if err := rootfs.Fetch(ctx, client, lock, ca, progressFor(e)); err != nil {
			return interrupted(err)
		}
	}
	if err := interrupted(nil); err != nil {
		return err
	}
	added, removed, changed := rootfs.Diff(old, lock)
	var base, inst int64
	for _, p := range lock.Packages {
		if p.Base {
			base++
		}
		inst += p.InstalledSize
	}
	summary := fmt.Sprintf("%d packages (%d base, %d requested, the rest dependencies), %s to download, %s installed",
		len(lock.Packages), base, len(lock.Requested), megabytes(lock.DownloadSize()), megabytes(inst*1024))
	if old != nil && old.Inputs == lock.Inputs && len(added)+len(removed)+len(changed) == 0 {
		fmt.Fprintf(e.Stdout, "%s: up to date: %s\n", lockPath, summary)
		return nil
	}
	if err := lock.WriteFile(lockPath); err != nil {
		return fmt.Errorf("writing the lock: %w", err)
	}
	fmt.Fprintf(e.Stdout, "%s: %s\n", lockPath, summary)
	if old != nil {
		for _, l := range []struct {
			what  string
			names []string
		}{{"added", added}, {"removed", removed}, {"changed", changed}} {
			if len(l.names) > 0 {
				fmt.Fprintf(e.Stdout, "  %s: %s\n", l.what, strings.Join(l.names, ", "))
			}
		}
	}
	return nil
}

// checkLock says whether the lock fits the spec, and lists each locked
// package that the security suite has a newer version of: exit status
// 3 when there is one, so that a scheduled job can rebuild and push.
func checkLock(ctx context.Context, e *Env, path, lockPath string, req *rootfs.Request, offline bool) error {
	l, err := rootfs.LoadLock(lockPath, path, req)
	if err != nil {
		return err
	}
	if l == nil {
		return fmt.Errorf("%s does not exist; run appliance lock %s", lockPath, path)
	}
	fmt.Fprintf(e.Stdout, "%s fits %s (%d packages)\n", lockPath, path, len(l.Packages))
	sources := evidence.SecuritySources(req.Sources, req.Suite)
	if len(sources) == 0 {
		fmt.Fprintf(e.Stdout, "no security suite to check: the spec names none and no source is Debian's archive; add a source with suite = \"%s-security\"\n", req.Suite)
		return nil
	}
	ca, err := cache.FromEnv(e.environ())
	if err != nil {
		return err
	}
	client := &apt.Client{Store: ca, Offline: offline, Retries: 3, Now: e.now, HTTP: &http.Client{Timeout: 10 * time.Minute}}
	var locked []evidence.Locked
	for _, p := range l.Packages {
		locked = append(locked, evidence.Locked{Name: p.Name, Version: p.Version, Arch: p.Architecture, Source: p.Source})
	}
	ups, err := evidence.SecurityUpdates(ctx, client, sources, req.Arch, locked)
	if err != nil {
		if errors.Is(err, apt.ErrOffline) {
			return fmt.Errorf("%w\nrun appliance lock --check %s once without --offline to fill the cache", err, path)
		}
		return fmt.Errorf("checking for security updates: %w", err)
	}
	if len(ups) == 0 {
		fmt.Fprintf(e.Stdout, "no locked package has a newer version in %s\n", suiteNames(sources))
		return nil
	}
	for _, u := range ups {
		fmt.Fprintf(e.Stdout, "security update: %s\n", u)
	}
	fmt.Fprintf(e.Stderr, "appliance lock: %d locked packages have security updates; run appliance lock %s, then build or push\n", len(ups), path)
	return exitStatus(3)
}

func suiteNames(sources []*apt.Source) string {
	var names []string
	for _, s := range sources {
		names = append(names, s.Suite)
	}
	return strings.Join(names, ", ")
}

// progressFor reports long steps on the verb's stderr: a bar on a
// terminal, plain lines otherwise.
func progressFor(e *Env) rootfs.Progress {
	f, ok := e.Stderr.(*os.File)
	return rootfs.NewProgress(e.Stderr, ok && term.IsTerminal(int(f.Fd())))
}

func megabytes(n int64) string {
	return fmt.Sprintf("%.1f MB", float64(n)/1e6)
}
