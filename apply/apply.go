// Package apply is appliance-apply, the program on the gateway that
// switches it from one generation to the next (package generation has
// the layout under /var/lib/appliance and the manifest). appliance push
// stages the next generation and runs it with sudo:
//
//	appliance-apply switch    apply staging/manifest.json (generation N+1)
//	appliance-apply rollback  return to the previous generation's state
//	appliance-apply recover   undo an apply that was interrupted (--boot at boot)
//	appliance-apply list      the kept generations, as JSON (generation.Listing)
//
// switch, rollback and recover print their progress as JSON lines
// (generation.Event) and end with a "done" event naming the generation
// the gateway is on; each exits 0 when it did what it was asked, 1 when
// it did not, 2 on a usage error.
//
// # What it guarantees
//
// The gateway is always entirely on one generation: an apply either
// commits or is rolled back, even when it is killed or the power goes at
// any point. The means is a journal, apply.json, written (and synced)
// before the first managed path changes and removed at the commit. It
// holds every path the apply touches as it was before (its type, mode,
// owner, content's SHA-256 or link target, or that it was absent), and
// the bytes of every such file are in store/ before the journal is
// written. Every file is written under a temporary name in its folder
// and renamed over the old; links likewise; current is a link renamed
// over. A batch (the store's copies, an install) is made durable with
// one syncfs per file system before the next step relies on it: the
// store before the journal, the installed files before current moves
// and before the commit; the journal and current are synced each time.
// Journal phases, and what recover does after a stop in each:
//
//	(no journal)  nothing under way: the gateway is on current
//	install       files may be old, new, or a leftover temporary name:
//	              every path is put back as the journal has it,
//	              current points at From again, generations/To goes
//	actions       the same, then systemd reloads any unit put back and
//	checks        From's actions for the touched paths run (services
//	              may have loaded To's files)
//	rollback      an undo under way: it is done again from the start
//
// Putting a path back is idempotent, so recover may itself be
// interrupted and run again. recover runs at the start of every switch
// and rollback, and at boot (recover --boot, before the services start:
// it then only reloads systemd when it put a unit back).
//
// # A switch, step by step
//
// verify (refuse before any change: every path through Validate and
// along real folders, never a link; owners that exist or are made; every
// new file's content found by SHA-256 in staging/blobs, the store, or a
// current file, and hashed), packages (dpkg -i of the staged .debs when
// the packages differ), accounts (groupadd and useradd with the fixed
// IDs), save (the touched paths' bytes into the store, drift from the
// current generation reported), the journal, install (what goes first,
// deepest first, then the rest in path order), generations/N+1 and
// current, actions (systemctl daemon-reload when a unit or drop-in
// changed, then the generation's actions that the changed paths call
// for, in the manifest's order), checks (retried until CheckTimeout),
// commit. A failing action or check rolls back: the files are put back,
// current points at N, N's actions for the touched paths run.
//
// Packages and accounts are not rolled back: a rollback restores files,
// and the previous generation runs on the newer packages (dpkg keeps our
// config files with --force-confold). A rollback makes a new generation
// (N+1, with N-1's content) rather than moving current back, so that
// numbers only grow: push after a rollback stages the generation after
// current as always, and list shows the rollback with its date.
//
// # Disk space
//
// A commit keeps generations/N+1 (current) and generations/N (for a
// rollback) and removes older ones; it keeps in store/ only the bytes of
// generation N's files (those N+1 changed; the rest are on disk), and
// empties the staging folder. A rollback keeps staging, so push can try
// again without uploading again. Beside the layout of package
// generation, apply keeps apply.lock (locked while it runs) and, while
// dpkg runs, debs/ (its checked copies of the staged packages).
package apply

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/appliance/appliance/generation"
)

// StopEnv names an environment variable for fault-injection tests: set
// to K, the program does nothing more after its K-th event, so that a
// test that reads the event and kills the program kills it at that
// exact point. (It sleeps rather than stop itself: SIGCONT, which an
// orphaned process group gets, would wake a stopped process.)
const StopEnv = "APPLIANCE_APPLY_STOP_AFTER"

type options struct {
	Root                        string
	Systemctl, Dpkg             string
	Useradd, Groupadd, Usermod  string
	CheckTimeout, ActionTimeout time.Duration
	// Runner runs the actions' commands (argv after it) instead of
	// running them itself: with a root that is not /, a command would act
	// on the machine, not on the root.
	Runner string
	// Checks limits the checks to these kinds; none means all.
	Checks []string
	// ConfirmWithin makes a switch wait that long for confirm before it
	// commits (confirm.go); SystemdRun starts the timer that undoes it.
	ConfirmWithin time.Duration
	SystemdRun    string
	Boot          bool
	Now           func() time.Time
	StopAfter     int
}

type applier struct {
	opt      options
	fs       *fsys
	out      io.Writer
	events   int
	step     string // of the last event
	failed   bool
	lockFile *os.File
}

const usage = `usage: appliance-apply COMMAND [flags]

  switch    apply the staged generation (staging/manifest.json)
  rollback  return to the previous generation, as a new generation
  recover   roll back an apply that was interrupted (or not confirmed)
  confirm   commit a switch made with --confirm-within
  list      print the generations as JSON

flags:
`

// Main runs appliance-apply with its arguments (without the program's
// name) and returns the exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(stderr, usage)
		newFlags(&options{}, stderr).PrintDefaults()
		return 2
	}
	cmd := args[0]
	opt := options{Now: time.Now}
	fl := newFlags(&opt, stderr)
	if err := fl.Parse(args[1:]); err != nil {
		return 2
	}
	if fl.NArg() > 0 {
		fmt.Fprintf(stderr, "appliance-apply %s: unexpected arguments %q\n", cmd, fl.Args())
		return 2
	}
	if opt.Boot && cmd != "recover" {
		fmt.Fprintf(stderr, "appliance-apply %s: --boot is for recover\n", cmd)
		return 2
	}
	opt.StopAfter, _ = strconv.Atoi(os.Getenv(StopEnv))
	fs, err := openRoot(opt.Root)
	if err != nil {
		fmt.Fprintf(stderr, "appliance-apply: %v\n", err)
		return 1
	}
	defer fs.close()
	a := &applier{opt: opt, fs: fs, out: stdout}
	switch cmd {
	case "switch":
		err = a.locked(ctx, a.doSwitch)
	case "rollback":
		err = a.locked(ctx, a.doRollback)
	case "recover":
		err = a.locked(ctx, func(context.Context) error { return nil })
	case "confirm":
		err = a.lockedKeepingJournal(ctx, a.doConfirm)
	case "list":
		err = a.list(stdout)
	default:
		fmt.Fprintf(stderr, "appliance-apply: unknown command %q\n%s", cmd, usage)
		return 2
	}
	if err != nil {
		fmt.Fprintf(stderr, "appliance-apply %s: %v\n", cmd, err)
		return 1
	}
	return 0
}

func newFlags(o *options, stderr io.Writer) *flag.FlagSet {
	fl := flag.NewFlagSet("appliance-apply", flag.ContinueOnError)
	fl.SetOutput(stderr)
	fl.StringVar(&o.Root, "root", "/", "the gateway's root `folder`: managed paths and "+generation.Root+" are under it")
	fl.StringVar(&o.Systemctl, "systemctl", "systemctl", "the systemctl `program`")
	fl.StringVar(&o.Dpkg, "dpkg", "dpkg", "the dpkg `program` (given --root when the root is not /)")
	fl.StringVar(&o.Useradd, "useradd", "useradd", "the useradd `program` (given --prefix when the root is not /)")
	fl.StringVar(&o.Groupadd, "groupadd", "groupadd", "the groupadd `program`")
	fl.StringVar(&o.Usermod, "usermod", "usermod", "the usermod `program`")
	fl.DurationVar(&o.CheckTimeout, "check-timeout", 60*time.Second, "how long the checks may take to pass, retried")
	fl.DurationVar(&o.ActionTimeout, "action-timeout", 2*time.Minute, "how long one action or tool may run")
	fl.BoolVar(&o.Boot, "boot", false, "recover at boot, before the services start: restart nothing")
	fl.StringVar(&o.Runner, "run", "", "run the actions' commands through this `program` (a root that is not / needs one)")
	fl.DurationVar(&o.ConfirmWithin, "confirm-within", 0, "switch: commit only once confirm runs within this long, else return to the previous generation")
	fl.StringVar(&o.SystemdRun, "systemd-run", "systemd-run", "the systemd-run `program`, for the timer of --confirm-within")
	fl.Func("checks", "run only the checks of these `kinds` (comma-separated: unit, tcp, tls, http, system)", func(v string) error {
		o.Checks = strings.Split(v, ",")
		return nil
	})
	return fl
}

// locked runs a command that may change the gateway: under the lock,
// after recovering an interrupted apply, ending with "done".
func (a *applier) locked(ctx context.Context, cmd func(context.Context) error) error {
	return a.lockedWith(ctx, true, cmd)
}

// lockedKeepingJournal is locked for confirm, which commits the journal
// of the switch it confirms instead of rolling it back.
func (a *applier) lockedKeepingJournal(ctx context.Context, cmd func(context.Context) error) error {
	return a.lockedWith(ctx, false, cmd)
}

func (a *applier) lockedWith(ctx context.Context, recover bool, cmd func(context.Context) error) error {
	err := a.prepare()
	if err == nil {
		err = a.lock()
	}
	if err == nil {
		defer a.lockFile.Close()
		if recover {
			err = a.recoverJournal(ctx)
		}
	}
	if err == nil {
		err = cmd(ctx)
	}
	if err != nil && !a.failed {
		step := a.step
		if step == "" || errors.As(err, new(errRefused)) {
			step = "verify"
		}
		a.emit(generation.Event{Step: step, Message: err.Error(), Failed: true})
	}
	n, _, cerr := a.current()
	if cerr != nil && err == nil {
		err = cerr
	}
	msg := fmt.Sprintf("the gateway is on generation %d", n)
	if n == 0 {
		msg = "no generation is on the gateway yet"
	}
	a.emit(generation.Event{Step: "done", Message: msg, Generation: n})
	return err
}

// recoverJournal rolls back an apply that did not finish.
func (a *applier) recoverJournal(ctx context.Context) error {
	j, err := a.readJournal()
	if err != nil || j == nil {
		return err
	}
	a.event("rollback", fmt.Sprintf("the %s from generation %d to %d stopped during %s: returning to generation %d", j.Kind, j.From, j.To, j.Phase, j.From))
	return a.undo(ctx, j)
}

func (a *applier) doSwitch(ctx context.Context) error {
	n, cur, err := a.current()
	if err != nil {
		return err
	}
	b, err := a.readFile(stagingDir + "/manifest.json")
	if isNotExist(err) {
		return errRefused{fmt.Errorf("nothing is staged: %s/manifest.json is missing (appliance push uploads it)", stagingDir)}
	}
	if err != nil {
		return errRefused{err}
	}
	m, err := generation.Parse(b)
	if err != nil {
		return errRefused{fmt.Errorf("%s/manifest.json: %w", stagingDir, err)}
	}
	if m.Generation != n+1 {
		return errRefused{fmt.Errorf("%s/manifest.json is generation %d, but the gateway is on generation %d, so the next is %d: push again (it stages the generation after the gateway's)", stagingDir, m.Generation, n, n+1)}
	}
	if sameContent(cur, m) {
		a.event("verify", fmt.Sprintf("generation %d changes nothing from generation %d: nothing to do", m.Generation, n))
		return a.clearStaging()
	}
	return a.run(ctx, plan{kind: "switch", fromN: n, from: cur, to: m, staged: true})
}

func (a *applier) doRollback(ctx context.Context) error {
	n, cur, err := a.current()
	if err != nil {
		return err
	}
	if cur == nil {
		return errRefused{fmt.Errorf("no generation is on this gateway yet")}
	}
	gens, err := a.generations()
	if err != nil {
		return err
	}
	prev := 0
	for _, g := range gens {
		if g < n {
			prev = g
		}
	}
	if prev == 0 {
		return errRefused{fmt.Errorf("generation %d is the only one on this gateway: there is none to roll back to", n)}
	}
	pm, err := a.manifest(prev)
	if err != nil {
		return err
	}
	back := *pm
	back.Generation, back.Created = n+1, a.opt.Now().UTC()
	back.Changes = []string{fmt.Sprintf("rollback from generation %d to generation %d (of %s)", n, prev, pm.Created.Format(time.DateOnly))}
	return a.run(ctx, plan{kind: "rollback", fromN: n, from: cur, to: &back})
}

func (a *applier) event(step, msg string) { a.emit(generation.Event{Step: step, Message: msg}) }

// emit writes one event line. A lost connection must not stop an apply
// halfway, so write errors are ignored.
func (a *applier) emit(e generation.Event) {
	if e.Failed {
		a.failed = true
	}
	a.step = e.Step
	b, _ := json.Marshal(e)
	a.out.Write(append(b, '\n'))
	a.events++
	for a.events == a.opt.StopAfter {
		time.Sleep(time.Hour)
	}
}
