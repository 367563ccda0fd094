package apply

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"time"

	"github.com/appliance/appliance/generation"
)

// A switch that could cut the admin off — a firewall that no longer
// lets SSH in, an sshd that no longer takes the key — passes every check
// on the gateway itself. So a switch with --confirm-within does not
// commit: it leaves the journal in the confirm phase, and a systemd
// timer that runs recover when the time is up; push must then reach the
// gateway over a new connection and run confirm, which commits. Unless
// it does, the gateway returns to the previous generation by itself (as
// Junos's "commit confirmed" does). At boot, an unconfirmed switch is
// rolled back too.

// confirmUnit is the transient unit of the timer that rolls back an
// unconfirmed switch.
const confirmUnit = "appliance-apply-confirm"

// awaitConfirm puts the switch in the confirm phase and starts the timer.
func (a *applier) awaitConfirm(ctx context.Context, j *journal) error {
	j.Phase = phaseConfirm
	j.ConfirmBy = a.opt.Now().Add(a.opt.ConfirmWithin).UTC()
	if err := a.writeJournal(j); err != nil {
		return err
	}
	// A timer from an earlier switch would make systemd-run refuse.
	a.systemctl(ctx, "stop", confirmUnit+".timer")
	args := []string{"--unit", confirmUnit, "--on-active", strconv.Itoa(int(a.opt.ConfirmWithin/time.Second)) + "s",
		"--timer-property=AccuracySec=1s", "--description=Undo an unconfirmed appliance push",
		filepath.Join(a.opt.Root, generation.ApplyPath), "recover", "--root", a.opt.Root}
	args = append(args, a.toolFlags()...)
	if err := a.runTool(ctx, a.opt.SystemdRun, args...); err != nil {
		return fmt.Errorf("starting the timer that undoes an unconfirmed switch: %w", err)
	}
	a.event("confirm", fmt.Sprintf("generation %d waits for a new connection to confirm it by %s; without one the gateway returns to generation %d", j.To, j.ConfirmBy.Format(time.RFC3339), j.From))
	return nil
}

// toolFlags are the flags that name the tools, for a recover run by the
// timer.
func (a *applier) toolFlags() []string {
	flags := []string{"--systemctl", a.opt.Systemctl, "--dpkg", a.opt.Dpkg, "--useradd", a.opt.Useradd, "--groupadd", a.opt.Groupadd, "--usermod", a.opt.Usermod}
	if a.opt.Runner != "" {
		flags = append(flags, "--run", a.opt.Runner)
	}
	return flags
}

// doConfirm commits a switch that waits for confirmation.
func (a *applier) doConfirm(ctx context.Context) error {
	j, err := a.readJournal()
	if err != nil {
		return err
	}
	if j == nil || j.Phase != phaseConfirm {
		return errRefused{fmt.Errorf("no switch waits for confirmation (it was confirmed, or the time was up and the gateway returned to its previous generation: see appliance generations)")}
	}
	var from *generation.Manifest
	if j.From > 0 {
		if from, err = a.manifest(j.From); err != nil {
			return err
		}
	}
	if err := a.commit(j, from); err != nil {
		return err
	}
	a.systemctl(ctx, "stop", confirmUnit+".timer")
	return nil
}
