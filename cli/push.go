package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/appliance/appliance/desired"
	"github.com/appliance/appliance/generation"
	"github.com/appliance/appliance/images/cache"
	"github.com/appliance/appliance/images/gobin"
	"github.com/appliance/appliance/images/rootfs"
	"github.com/appliance/appliance/pki"
	"github.com/appliance/appliance/push"
	"github.com/appliance/appliance/spec"
	"github.com/appliance/appliance/state"
	"github.com/spf13/pflag"
	"golang.org/x/crypto/ssh"
)

func init() {
	register(&verb{
		name:    "push",
		summary: "Update running gateways over SSH to what their specs say",
		usage:   "push [--plan] [--rollback] [--host HOST:PORT] [--jump BASTION] [--key FILE] [--trust-new-host-key] [--parallel N] [--json] [--state DIR] [--var name=value] PATH…",
		examples: `
appliance push site.hcl                          # update the gateway at the spec's address
appliance push --plan site.hcl                   # what would change; change nothing
appliance push --host 127.0.0.1:2222 examples/demo.hcl   # the gateway appliance vm runs
appliance push --rollback site.hcl               # back to the previous generation
appliance push --parallel 8 sites/*.hcl          # many gateways at once`,
		run: runPush,
	})
}

// pushFlags are the flags push, generations and plan --remote share.
type pushFlags struct {
	host, jump, key, user *string
	trustNew              *bool
	// root and applyArgs are for tests: the gateway's root folder and the
	// apply program's extra arguments (a stand-in systemctl).
	root      *string
	applyArgs *[]string
	// arch is the architecture of the apply program to upload (tests run
	// it on this machine).
	arch *string
}

func addPushFlags(fs *pflag.FlagSet) *pushFlags {
	f := &pushFlags{
		host:     fs.String("host", "", "connect to HOST:PORT instead of the spec's gateway address (e.g. 127.0.0.1:2222 for appliance vm)"),
		jump:     fs.String("jump", "", "reach the gateway through a bastion, [user@]host[:port] (as ssh -J)"),
		key:      fs.String("key", "", "log in with this private key instead of the state's deploy key (ssh-agent keys are tried first)"),
		user:     fs.String("user", "", "log in as this user (default: the spec's gateway admin)"),
		trustNew: fs.Bool("trust-new-host-key", false, "take the host key the gateway shows when the state has none (a gateway appliance did not build)"),
		root:     fs.String("gateway-root", "", ""),
		arch:     fs.String("gateway-arch", "", ""),
	}
	f.applyArgs = fs.StringArray("apply-arg", nil, "")
	for _, hidden := range []string{"gateway-root", "apply-arg", "gateway-arch"} {
		fs.MarkHidden(hidden)
	}
	return f
}

func runPush(ctx context.Context, e *Env, args []string) error {
	v := verbs["push"]
	fs := newFlags(v)
	planOnly := fs.Bool("plan", false, "show what would change on each gateway, and change nothing")
	rollback := fs.Bool("rollback", false, "return each gateway to its previous generation")
	parallel := fs.Int("parallel", 4, "push to this many gateways at once")
	asJSON := fs.Bool("json", false, "print the plan or the result as JSON")
	stateFlag := addStateFlag(fs)
	sf := addSpecFlags(fs)
	pf := addPushFlags(fs)
	if err := parse(e, v, fs, args); err != nil {
		return err
	}
	paths := fs.Args()
	if len(paths) == 0 {
		return usagef(v.name, "missing PATH: name the spec of each gateway to push to")
	}
	if len(paths) > 1 && (*pf.host != "" || *stateFlag != "") {
		return usagef(v.name, "--host and --state name one gateway; push to several specs without them")
	}
	if *parallel < 1 {
		return usagef(v.name, "--parallel %d: at least 1", *parallel)
	}
	results := make([]*pushResult, len(paths))
	var wg sync.WaitGroup
	sem := make(chan struct{}, *parallel)
	var mu sync.Mutex
	for i, p := range paths {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			out := &prefixed{w: e.Stderr, mu: &mu}
			if len(paths) > 1 {
				out.prefix = p + ": "
			}
			results[i] = pushOne(ctx, e, out, p, sf, pf, *stateFlag, *planOnly, *rollback)
		})
	}
	wg.Wait()
	return reportPushes(e, results, *asJSON, *planOnly)
}

// confirmWithin is how long a switched gateway waits for push to come
// back over a new connection before it returns to its old generation.
const confirmWithin = 2 * time.Minute

// pushResult is what happened to one gateway.
type pushResult struct {
	Spec       string   `json:"spec"`
	Gateway    string   `json:"gateway"`
	From       int      `json:"from"`
	To         int      `json:"to"`
	Changes    []string `json:"changes"`
	UpToDate   bool     `json:"up_to_date"`
	RolledBack bool     `json:"rolled_back"`
	Error      string   `json:"error,omitempty"`
	Seconds    float64  `json:"seconds"`
	plan       *generation.Diff
}

// pushOne pushes one spec's gateway; its error is in the result, so that
// one failing gateway stops no other.
func pushOne(ctx context.Context, e *Env, out io.Writer, path string, sf *specFlags, pf *pushFlags, stateFlag string, planOnly, rollback bool) *pushResult {
	start := time.Now()
	r := &pushResult{Spec: path, Changes: []string{}}
	err := func() error {
		p, err := preparePush(ctx, e, out, path, sf, pf, stateFlag, !rollback)
		if err != nil {
			return err
		}
		defer p.close()
		r.Gateway = p.target.Addr
		gw, err := p.connect(ctx)
		if err != nil {
			return err
		}
		defer gw.Close()
		if rollback {
			cur, err := gw.Current()
			if err != nil {
				return err
			}
			if cur == nil {
				return fmt.Errorf("appliance manages nothing on %s yet: there is no generation to return from", r.Gateway)
			}
			r.From = cur.Generation
			fmt.Fprintf(out, "%-10s %s: returning from generation %d to the one before\n", "rollback", r.Gateway, r.From)
			if err := gw.Rollback(ctx, eventPrinter(out)); err != nil {
				return err
			}
			if cur, err = gw.Current(); err == nil && cur != nil {
				r.To = cur.Generation
			}
			return nil
		}
		cur, err := gw.Current()
		if err != nil {
			return err
		}
		next, diff := p.next(cur)
		r.To, r.plan, r.Changes = next.Manifest.Generation, diff, next.Manifest.Changes
		if cur != nil {
			r.From = cur.Generation
		}
		if diff.Empty() {
			r.UpToDate, r.To = true, r.From
			fmt.Fprintf(out, "%-10s %s is up to date (generation %d)\n", "push", r.Gateway, r.From)
			return nil
		}
		writeDiff(out, r.Gateway, cur, diff)
		if planOnly {
			return nil
		}
		st, err := gw.Stage(ctx, diff, push.Upload{Current: cur, Manifest: next.Manifest, Blobs: next.Blobs, Debs: p.debs(diff), Apply: p.applySHA})
		if err != nil {
			return fmt.Errorf("uploading: %w", err)
		}
		fmt.Fprintf(out, "%-10s %d files, %s (%d already on the gateway)\n", "upload", st.Files, formatBytes(st.Bytes), st.Reused)
		// A switch that waits for confirmation is not done: the confirm's
		// own "done" says where the gateway ended.
		printSwitch, confirming := eventPrinter(out), false
		awaiting, err := gw.Switch(ctx, cur, p.applySHA, confirmWithin, func(ev generation.Event) {
			confirming = confirming || ev.Step == "confirm"
			if ev.Step != "done" || !confirming {
				printSwitch(ev)
			}
		})
		if err != nil {
			if errors.Is(err, push.ErrRolledBack) {
				r.RolledBack = true
			}
			return err
		}
		if awaiting {
			if err := gw.Confirm(ctx, p.target, eventPrinter(out)); errors.Is(err, push.ErrUnconfirmed) {
				return fmt.Errorf("%v. The gateway returns to generation %d by itself within %s: the new generation probably shuts SSH out (check firewall.ssh_from, ssh and the gateway's address)", err, r.From, confirmWithin)
			} else if err != nil {
				return err
			}
		}
		// The gateway serves these manifests now: the next ones go on
		// from their versions.
		for _, fw := range p.resolved.Firmware {
			if fw.Release != nil {
				if err := p.st.SaveRelease(fw.Name, *fw.Release); err != nil {
					return fmt.Errorf("recording the OTA release of %s: %w", fw.Name, err)
				}
			}
		}
		return nil
	}()
	r.Seconds = time.Since(start).Seconds()
	if err != nil {
		r.Error = err.Error()
		fmt.Fprintf(out, "%-10s %v\n", "error", err)
	} else if !r.UpToDate && !planOnly {
		fmt.Fprintf(out, "%-10s %s runs generation %d (%s)\n", "done", r.Gateway, r.To, time.Since(start).Round(100*time.Millisecond))
	}
	return r
}

// pushPrep is one gateway's push made ready: the desired generation and
// how to reach the gateway.
type pushPrep struct {
	e        *Env
	site     *spec.Site
	st       *state.Store
	resolved *desired.Resolved
	gen      *desired.Generation
	applySHA string
	target   push.Target
	pf       *pushFlags
	lock     *rootfs.Lock
	cache    *cache.Cache
}

func preparePush(ctx context.Context, e *Env, out io.Writer, path string, sf *specFlags, pf *pushFlags, stateFlag string, desire bool) (*pushPrep, error) {
	site, gw, err := loadGateway(e, path, sf, false)
	if err != nil {
		return nil, err
	}
	st, err := state.Open(stateDir(stateFlag, site), stateOptions(e, path, false))
	if err != nil {
		return nil, fmt.Errorf("opening the state: %w", err)
	}
	p := &pushPrep{e: e, site: site, st: st, pf: pf}
	if p.target, err = target(site, st, pf); err != nil {
		st.Close()
		return nil, err
	}
	if !desire {
		return p, nil
	}
	if err := p.desire(ctx, out, gw); err != nil {
		st.Close()
		return nil, err
	}
	return p, nil
}

// desire brings the state up to date (new nodes' certificates, renewals)
// and computes the desired generation, as build does.
func (p *pushPrep) desire(ctx context.Context, out io.Writer, gw *desired.Gateway) error {
	res, err := p.st.Ensure(gw.Wants, false)
	if err != nil {
		return fmt.Errorf("state: %w", err)
	}
	for _, c := range res.Created {
		fmt.Fprintf(out, "%-10s created %s\n", "state", c)
	}
	for _, pr := range res.Problems {
		fmt.Fprintf(out, "%-10s %s: %s: %s\n", "state", severity(pr), pr.Name, pr.Message)
	}
	if res.Errors() {
		return errors.New("the state has problems that stop a push (above)")
	}
	renewed, err := p.st.Renew(gw.Wants, p.e.now())
	if err != nil {
		return fmt.Errorf("state: %w", err)
	}
	for _, r := range renewed {
		fmt.Fprintf(out, "%-10s renewed %s\n", "state", r)
	}
	req, err := gw.Request()
	if err != nil {
		return err
	}
	if p.lock, err = rootfs.LoadLock(p.site.Location.Lock, p.site.Location.Path, req); err != nil {
		return err
	}
	if p.lock == nil {
		return fmt.Errorf("%s has no lock yet; run appliance build %s first, which makes the gateway's image and its lock", p.site.Location.Path, p.site.Location.Path)
	}
	if p.cache, err = cache.FromEnv(p.e.environ()); err != nil {
		return err
	}
	if p.resolved, err = gw.Resolve(p.st, p.e.now()); err != nil {
		return err
	}
	progs, err := p.programs(ctx, gw)
	if err != nil {
		return err
	}
	var pkgs []generation.Package
	for _, lp := range p.lock.Packages {
		pkgs = append(pkgs, generation.Package{Name: lp.Name, Version: lp.Version, Arch: lp.Architecture, SHA256: lp.SHA256})
	}
	p.gen = p.resolved.Generation(0, p.e.now(), version(), progs, pkgs)
	return nil
}

// programs builds appliance's programs for the gateway; the apply
// program among them is the one that will run the switch.
func (p *pushPrep) programs(ctx context.Context, gw *desired.Gateway) ([]desired.Program, error) {
	src, err := gobin.Find()
	if err != nil {
		return nil, err
	}
	arch := gw.Arch
	if *p.pf.arch != "" {
		arch = *p.pf.arch
	}
	var list []gobin.Program
	for _, pr := range gw.Programs {
		list = append(list, gobin.Program{Package: pr.Package, Path: pr.Path})
	}
	built, err := src.Build(ctx, arch, list)
	if err != nil {
		return nil, err
	}
	var out []desired.Program
	for _, b := range built {
		out = append(out, desired.Program{Path: b.Path, Data: b.Data})
		if b.Path == generation.ApplyPath {
			p.applySHA = b.SHA256
		}
	}
	if p.applySHA == "" {
		return nil, fmt.Errorf("the gateway's programs have no apply program at %s", generation.ApplyPath)
	}
	return out, nil
}

// next is the desired generation numbered after the gateway's current
// one, with what it changes.
func (p *pushPrep) next(cur *generation.Manifest) (*desired.Generation, *generation.Diff) {
	m := *p.gen.Manifest
	m.Generation = 1
	if cur != nil {
		m.Generation = cur.Generation + 1
	}
	d := generation.Compare(cur, &m)
	m.Changes = changeLines(d)
	return &desired.Generation{Manifest: &m, Blobs: p.gen.Blobs}, d
}

func (p *pushPrep) connect(ctx context.Context) (*push.Gateway, error) {
	c, err := push.Dial(ctx, p.target)
	if err != nil {
		return nil, err
	}
	if p.target.HostKey == nil && c.HostKey != nil {
		fmt.Fprintf(p.e.Stderr, "%-10s trusting %s's host key %s (--trust-new-host-key)\n", "ssh", p.target.Addr, ssh.FingerprintSHA256(c.HostKey))
	}
	return &push.Gateway{Conn: c, Root: *p.pf.root, ApplyArgs: *p.pf.applyArgs}, nil
}

// debs are the cached .deb files of the packages a push adds.
func (p *pushPrep) debs(d *generation.Diff) map[string]string {
	out := map[string]string{}
	for _, pkg := range d.Packages {
		if p.cache.Has("debs", pkg.SHA256) {
			out[pkg.Name] = p.cache.Path("debs", pkg.SHA256)
		}
	}
	return out
}

func (p *pushPrep) close() { p.st.Close() }

// target is how to reach a site's gateway: its address and SSH port (or
// --host), the admin, the host key and deploy key of the state.
func target(site *spec.Site, st *state.Store, pf *pushFlags) (push.Target, error) {
	t := push.Target{User: site.Gateway.Admin.User, Jump: *pf.jump, TrustNew: *pf.trustNew}
	if *pf.user != "" {
		t.User = *pf.user
	}
	t.Addr = *pf.host
	if t.Addr == "" {
		if site.Gateway.Address == "" {
			return t, fmt.Errorf("the spec gives the gateway no address; set gateway.address, or push with --host HOST:PORT")
		}
		t.Addr = net.JoinHostPort(site.Gateway.Address, strconv.Itoa(site.SSH.Port))
	}
	if b, err := st.ReadFile("ssh/" + state.HostKeyEd25519 + ".pub"); err == nil {
		if t.HostKey, _, _, _, err = ssh.ParseAuthorizedKey(b); err != nil {
			return t, fmt.Errorf("the state's host key: %w", err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return t, err
	}
	keyFile, keyPEM := *pf.key, []byte(nil)
	var err error
	if keyFile != "" {
		keyPEM, err = os.ReadFile(keyFile)
	} else {
		keyFile = filepath.Join(st.Dir, "ssh", state.DeployKey)
		keyPEM, err = st.ReadFile("ssh/" + state.DeployKey)
	}
	if err != nil {
		return t, fmt.Errorf("the key to log in with: %w", err)
	}
	signer, err := pki.ParseSSHKey(keyPEM)
	if err != nil {
		return t, fmt.Errorf("%s: %w", keyFile, err)
	}
	t.Keys = []ssh.Signer{signer}
	return t, nil
}

// changeLines say in a line each what a generation changes.
func changeLines(d *generation.Diff) []string {
	var out []string
	for _, set := range []struct {
		what    string
		entries []generation.Entry
	}{{"added", d.Added}, {"changed", d.Changed}, {"removed", d.Removed}} {
		for _, e := range set.entries {
			out = append(out, set.what+" "+e.Path)
		}
	}
	for _, p := range d.Packages {
		out = append(out, fmt.Sprintf("package %s %s", p.Name, p.Version))
	}
	return out
}

// writeDiff prints a generation's changes: paths (a secret's shown as
// changed, never its content), the actions they call for and why, the
// packages added.
func writeDiff(w io.Writer, host string, cur *generation.Manifest, d *generation.Diff) {
	from := 0
	if cur != nil {
		from = cur.Generation
	}
	fmt.Fprintf(w, "%-10s %s: generation %d → %d: %d added, %d changed, %d removed, %d packages\n", "plan", host, from, from+1, len(d.Added), len(d.Changed), len(d.Removed), len(d.Packages))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, set := range []struct {
		mark    string
		entries []generation.Entry
	}{{"+", d.Added}, {"~", d.Changed}, {"-", d.Removed}} {
		for _, e := range set.entries {
			note := string(e.Type)
			if e.Sensitive {
				note += ", secret"
			}
			fmt.Fprintf(tw, "  %s %s\t%s\n", set.mark, e.Path, note)
		}
	}
	for _, p := range d.Packages {
		fmt.Fprintf(tw, "  + package %s\t%s\n", p.Name, p.Version)
	}
	for _, a := range d.Actions {
		what := strings.Join(a.Run, " ")
		if a.Unit != "" {
			what = a.Do + " " + a.Unit
		}
		fmt.Fprintf(tw, "  then %s\t%s\n", what, a.Why)
	}
	tw.Flush()
}

func eventPrinter(w io.Writer) func(generation.Event) {
	return func(ev generation.Event) {
		mark := ""
		if ev.Failed {
			mark = "FAILED: "
		}
		fmt.Fprintf(w, "%-10s %s%s\n", "  "+ev.Step, mark, ev.Message)
	}
}

func reportPushes(e *Env, results []*pushResult, asJSON, planOnly bool) error {
	failed := 0
	for _, r := range results {
		if r.Error != "" {
			failed++
		}
	}
	if asJSON {
		b, _ := json.MarshalIndent(results, "", "  ")
		fmt.Fprintf(e.Stdout, "%s\n", b)
	} else if len(results) > 1 || !planOnly {
		tw := tabwriter.NewWriter(e.Stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "SPEC\tGATEWAY\tGENERATION\tRESULT\tTIME")
		for _, r := range results {
			res := "updated"
			switch {
			case r.Error != "" && r.RolledBack:
				res = "rolled back: " + r.Error
			case r.Error != "":
				res = "failed: " + r.Error
			case r.UpToDate:
				res = "up to date"
			case planOnly:
				res = fmt.Sprintf("%d changes planned", len(r.Changes))
			}
			gen := fmt.Sprintf("%d → %d", r.From, r.To)
			if r.UpToDate || r.Error != "" {
				gen = strconv.Itoa(r.From)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.1fs\n", r.Spec, r.Gateway, gen, res, r.Seconds)
		}
		tw.Flush()
	}
	if failed > 0 {
		if len(results) == 1 {
			return errSilent
		}
		return fmt.Errorf("%d of %d gateways failed", failed, len(results))
	}
	return nil
}

// prefixed writes lines to w, each with the prefix, whole lines at a
// time, so that several pushes can share one terminal.
type prefixed struct {
	w      io.Writer
	mu     *sync.Mutex
	prefix string
	buf    []byte
}

func (p *prefixed) Write(b []byte) (int, error) {
	p.buf = append(p.buf, b...)
	for {
		i := strings.IndexByte(string(p.buf), '\n')
		if i < 0 {
			return len(b), nil
		}
		p.mu.Lock()
		fmt.Fprintf(p.w, "%s%s\n", p.prefix, p.buf[:i])
		p.mu.Unlock()
		p.buf = p.buf[i+1:]
	}
}

func formatBytes(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f kB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}
