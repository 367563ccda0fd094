package apply

import (
	"context"
	"errors"
	"fmt"
	"path"
	"path/filepath"
	"reflect"
	"sort"
	"strings"

	"github.com/appliance/appliance/generation"
)

// plan is one apply: from the generation the gateway runs (nil: none)
// to the next.
type plan struct {
	kind  string // "switch" or "rollback"
	fromN int
	from  *generation.Manifest
	to    *generation.Manifest
	// staged: the blobs and packages may come from the staging folder.
	staged bool
}

// errRefused is an apply that stopped before changing anything managed.
type errRefused struct{ error }

func (e errRefused) Unwrap() error { return e.error }

// run applies p: verify, packages and accounts, save, journal,
// install, switch, actions, checks, then commit or roll back.
func (a *applier) run(ctx context.Context, p plan) error {
	d := generation.Compare(p.from, p.to)
	touched := touchedPaths(d)
	src, err := a.verify(p, d)
	if err != nil {
		return errRefused{err}
	}
	from := "none"
	if p.fromN > 0 {
		from = fmt.Sprint(p.fromN)
	}
	a.event("verify", fmt.Sprintf("generation %d (from %s): %d added, %d changed, %d removed; %d files' content verified",
		p.to.Generation, from, len(d.Added), len(d.Changed), len(d.Removed), len(src.at)))
	if p.staged && len(d.Packages) > 0 {
		if err := a.installPackages(ctx, d.Packages); err != nil {
			return err
		}
	}
	if err := a.ensureAccounts(ctx, p.to); err != nil {
		return fmt.Errorf("making accounts: %w", err)
	}
	wants, err := a.wants(p.to, d)
	if err != nil {
		return err
	}
	if err := a.stash(src); err != nil {
		return err
	}
	before, err := a.save(p.from, touched)
	if err != nil {
		return err
	}
	if err := a.fs.flush([]string{storeDir + "/"}); err != nil {
		return err
	}
	j := &journal{Format: 1, Kind: p.kind, From: p.fromN, To: p.to.Generation, Phase: phaseInstall, Started: a.opt.Now().UTC(), Before: before}
	if err := a.writeJournal(j); err != nil {
		return err
	}
	a.event("save", fmt.Sprintf("journal written: generation %d to %d, %d paths", j.From, j.To, len(before)))

	if err := a.install(wants, src.at, func(_, msg string) { a.event("install", msg) }); err != nil {
		return a.rollback(ctx, j, fmt.Errorf("installing: %w", err))
	}
	if err := a.writeGeneration(p.to); err != nil {
		return a.rollback(ctx, j, err)
	}
	if err := a.setCurrent(p.to.Generation); err != nil {
		return a.rollback(ctx, j, err)
	}
	a.event("switch", fmt.Sprintf("current is generation %d", p.to.Generation))

	j.Phase, j.Restart = phaseActions, true
	if err := a.writeJournal(j); err != nil {
		return a.rollback(ctx, j, err)
	}
	if err := a.actions(ctx, d.Actions, touched, true); err != nil {
		return a.rollback(ctx, j, err)
	}
	j.Phase = phaseChecks
	if err := a.writeJournal(j); err != nil {
		return a.rollback(ctx, j, err)
	}
	if failed := a.checks(ctx, p.to.Checks); len(failed) > 0 {
		return a.rollback(ctx, j, fmt.Errorf("check %s failed", strings.Join(failed, ", ")))
	}
	if p.kind == "switch" && a.opt.ConfirmWithin > 0 {
		if err := a.awaitConfirm(ctx, j); err != nil {
			return a.rollback(ctx, j, err)
		}
		return nil
	}
	return a.commit(j, p.from)
}

func touchedPaths(d *generation.Diff) []string {
	var ps []string
	for _, l := range [][]generation.Entry{d.Added, d.Changed, d.Removed} {
		for _, e := range l {
			ps = append(ps, e.Path)
		}
	}
	sort.Strings(ps)
	return ps
}

// wants are the states the diff installs, with the gateway's IDs.
func (a *applier) wants(m *generation.Manifest, d *generation.Diff) ([]state, error) {
	acc, err := a.readAccounts()
	if err != nil {
		return nil, err
	}
	var ws []state
	for _, e := range append(append([]generation.Entry(nil), d.Added...), d.Changed...) {
		s := state{Path: e.Path, Type: e.Type, Mode: e.Mode, SHA256: e.SHA256, Target: e.Target}
		if e.Type != generation.Symlink {
			if s.UID, s.GID, err = acc.owners(e); err != nil {
				return nil, err
			}
		}
		ws = append(ws, s)
	}
	for _, e := range d.Removed {
		ws = append(ws, state{Path: e.Path})
	}
	return ws, nil
}

// save records every touched path as it is, copying files' bytes into
// the store, and reports what differs from the generation that should
// be there (drift): a rollback restores what was there.
func (a *applier) save(from *generation.Manifest, touched []string) ([]state, error) {
	was := map[string]generation.Entry{}
	if from != nil {
		for _, e := range from.Entries {
			was[e.Path] = e
		}
	}
	acc, err := a.readAccounts()
	if err != nil {
		return nil, err
	}
	var before []state
	files := 0
	for _, p := range touched {
		s, err := a.inspect(p, true)
		if err != nil {
			return nil, fmt.Errorf("saving %s: %w", p, err)
		}
		before = append(before, s)
		if s.Type == generation.File {
			files++
		}
		if e, ok := was[p]; ok {
			want := state{Path: p, Type: e.Type, Mode: e.Mode, SHA256: e.SHA256, Target: e.Target}
			want.UID, want.GID, _ = acc.owners(e)
			if !s.same(want) {
				a.event("save", fmt.Sprintf("%s is not as generation %d left it; kept as it is for a rollback", p, from.Generation))
			}
		} else if s.Type != "" {
			a.event("save", fmt.Sprintf("%s was on the gateway and not managed; kept for a rollback", p))
		}
	}
	a.event("save", fmt.Sprintf("saved %d files into the store", files))
	return before, nil
}

// actions follow a change of the touched paths: systemd reloads
// changed units, then the actions run in order. A failing action fails
// the apply when stop is set; otherwise (when rolling back) it is
// reported and the next runs.
func (a *applier) actions(ctx context.Context, acts []generation.Action, touched []string, stop bool) error {
	var errs []error
	do := func(msg string, prog string, args ...string) error {
		err := a.runTool(ctx, prog, args...)
		if err != nil {
			a.emit(generation.Event{Step: "action", Message: fmt.Sprintf("%s: %v", msg, err), Failed: stop})
			errs = append(errs, err)
			if stop {
				return err
			}
			return nil
		}
		a.event("action", msg)
		return nil
	}
	if unitChanged(touched) {
		if err := do("systemctl daemon-reload", a.opt.Systemctl, "daemon-reload"); err != nil {
			return err
		}
	}
	for _, act := range acts {
		var err error
		if act.Unit != "" {
			err = do(fmt.Sprintf("%s %s (%s)", act.Do, act.Unit, act.Why), a.opt.Systemctl, act.Do, act.Unit)
		} else {
			prog, args := act.Run[0], act.Run[1:]
			if a.opt.Runner != "" {
				prog, args = a.opt.Runner, act.Run
			} else if filepath.Clean(a.opt.Root) != "/" {
				return fmt.Errorf("%s would act on this machine, not on the root %s: give --run", strings.Join(act.Run, " "), a.opt.Root)
			}
			err = do(fmt.Sprintf("%s (%s)", strings.Join(act.Run, " "), act.Why), prog, args...)
		}
		if err != nil {
			return err
		}
	}
	return errors.Join(errs...)
}

// matching are the actions of m (nil: none) that a change of paths
// calls for, as generation.Compare picks them.
func matching(m *generation.Manifest, paths []string) []generation.Action {
	if m == nil {
		return nil
	}
	var acts []generation.Action
	for _, act := range m.Actions {
		for _, p := range paths {
			if act.Matches(p) {
				acts = append(acts, act)
				break
			}
		}
	}
	return acts
}

// unitDirs are where systemd reads units and drop-ins from.
var unitDirs = []string{"/etc/systemd/system/", "/usr/lib/systemd/system/", "/lib/systemd/system/", "/usr/local/lib/systemd/system/"}

func unitChanged(paths []string) bool {
	for _, p := range paths {
		for _, d := range unitDirs {
			if strings.HasPrefix(p, d) {
				return true
			}
		}
	}
	return false
}

// rollback returns to the journal's first generation after why made
// the apply fail, and says so.
func (a *applier) rollback(ctx context.Context, j *journal, why error) error {
	a.emit(generation.Event{Step: "rollback", Message: fmt.Sprintf("%v: returning to generation %d", why, j.From), Failed: !a.failed})
	if err := a.undo(ctx, j); err != nil {
		return fmt.Errorf("%v, and the rollback stopped: %w", why, err)
	}
	return fmt.Errorf("%w; the gateway is back on generation %d", why, j.From)
}

// undo puts back every path the journal's apply touched, points
// current at its first generation, removes the one it was making, and
// restarts what the apply may have restarted. Each step can be
// repeated, so an interrupted undo is finished by the next.
func (a *applier) undo(ctx context.Context, j *journal) error {
	j.Phase = phaseRollback
	if err := a.writeJournal(j); err != nil {
		return err
	}
	var changed []string
	content := map[string]string{}
	for _, s := range j.Before {
		if s.Type == generation.File {
			content[s.SHA256] = storeDir + "/" + s.SHA256
		}
	}
	err := a.install(j.Before, content, func(p, msg string) {
		changed = append(changed, p)
		a.event("rollback", strings.Replace(msg, "installed ", "restored ", 1))
	})
	if err != nil {
		return fmt.Errorf("restoring generation %d's files: %w; the journal is kept: run appliance-apply recover again", j.From, err)
	}
	if err := a.setCurrent(j.From); err != nil {
		return err
	}
	if err := a.removeGeneration(j.To); err != nil {
		return err
	}
	a.event("switch", fmt.Sprintf("current is generation %d", j.From))
	var from *generation.Manifest
	if j.From > 0 {
		if from, err = a.manifest(j.From); err != nil {
			return err
		}
	}
	var paths []string
	for _, s := range j.Before {
		paths = append(paths, s.Path)
	}
	switch {
	case a.opt.Boot:
		// Before the services start, systemd needs only to read again
		// the units this run put back.
		a.actions(ctx, nil, changed, false)
	case j.Restart:
		a.actions(ctx, matching(from, paths), paths, false)
	}
	if err := a.remove(journalPath, true); err != nil {
		return err
	}
	return a.fsyncState()
}

// commit ends an apply that passed its checks: the journal goes, the
// first generation stays for a rollback, older ones and store blobs no
// kept generation needs are pruned, staging is emptied.
func (a *applier) commit(j *journal, from *generation.Manifest) error {
	if err := a.remove(journalPath, true); err != nil {
		return err
	}
	if err := a.fsyncState(); err != nil {
		return err
	}
	gens, blobs, err := a.prune(j.To, from)
	if err == nil && j.Kind == "switch" {
		err = a.clearStaging()
	}
	msg := fmt.Sprintf("generation %d committed", j.To)
	if j.From > 0 {
		msg += fmt.Sprintf("; generation %d kept for a rollback", j.From)
	}
	msg += fmt.Sprintf("; pruned %d generations and %d stored files", gens, blobs)
	if err != nil {
		msg += fmt.Sprintf(" (pruning stopped: %v)", err)
	}
	a.event("commit", msg)
	return nil
}

func (a *applier) fsyncState() error {
	d, err := a.fs.dir(generation.Root)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// prune keeps the current generation and the one before (prev) and the
// stored bytes of prev's files; everything else in generations/ and
// store/ goes.
func (a *applier) prune(cur int, prev *generation.Manifest) (gens, blobs int, err error) {
	keep := map[int]bool{cur: true}
	need := map[string]bool{}
	if prev != nil {
		keep[prev.Generation] = true
		for _, e := range prev.Entries {
			need[e.SHA256] = true
		}
	}
	all, err := a.generations()
	if err != nil {
		return 0, 0, err
	}
	for _, g := range all {
		if !keep[g] {
			if err := a.removeGeneration(g); err != nil {
				return gens, 0, err
			}
			gens++
		}
	}
	d, err := a.fs.dir(storeDir)
	if err != nil {
		return gens, 0, err
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return gens, 0, err
	}
	for _, name := range names {
		if !need[name] {
			if err := a.remove(path.Join(storeDir, name), false); err != nil {
				return gens, blobs, err
			}
			blobs++
		}
	}
	return gens, blobs, nil
}

// clearStaging removes what a committed push staged.
func (a *applier) clearStaging() error {
	for _, dir := range []string{stagingDir + "/blobs", stagingDir + "/debs"} {
		d, err := a.fs.dir(dir)
		if isNotExist(err) {
			continue
		}
		if err != nil {
			return err
		}
		names, err := d.Readdirnames(-1)
		d.Close()
		if err != nil {
			return err
		}
		for _, name := range names {
			if err := a.remove(dir+"/"+name, false); err != nil {
				return err
			}
		}
	}
	return a.remove(stagingDir+"/manifest.json", false)
}

// sameContent reports that two generations manage the same things in
// the same way, so that switching changes nothing.
func sameContent(a, b *generation.Manifest) bool {
	if a == nil || !generation.Compare(a, b).Empty() {
		return false
	}
	return reflect.DeepEqual(a.Users, b.Users) && reflect.DeepEqual(a.Groups, b.Groups) &&
		reflect.DeepEqual(a.Actions, b.Actions) && reflect.DeepEqual(a.Checks, b.Checks) &&
		reflect.DeepEqual(a.Packages, b.Packages)
}
