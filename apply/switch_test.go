package apply

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/appliance/appliance/generation"
	"github.com/appliance/appliance/internal/testenv"
)

// TestFirstGeneration: onto a gateway that has none, generation 1 is
// installed whole, its accounts made with their IDs by shadow's tools,
// and every action runs once, in the manifest's order, after systemd
// reloaded the new unit.
func TestFirstGeneration(t *testing.T) {
	g := newGateway(t)
	m1 := g.gen1()
	evs := g.mustSwitch(m1)
	want := []string{"daemon-reload", "reload broker.service", "restart web.service", "restart demo.service"}
	if got := g.calls(); !reflect.DeepEqual(got, want) {
		t.Errorf("systemctl calls %q, want %q", got, want)
	}
	if d := last(evs); d.Step != "done" || d.Generation != 1 {
		t.Errorf("last event %+v, want done on generation 1", d)
	}
	if u, gr := g.ids("etc/passwd"), g.ids("etc/group"); u["demo"] != 2001 || gr["demo"] != 2001 || gr["www"] != 2002 {
		t.Errorf("accounts: users %v, groups %v", u, gr)
	}
	if b, _ := os.ReadFile(filepath.Join(g.root, "etc/group")); !strings.Contains(string(b), "www:x:2002:demo") {
		t.Errorf("demo is not in www:\n%s", b)
	}
}

// TestSwitchOneFile: a generation that changes one file changes exactly
// that file on disk and runs exactly the action for it; the store keeps
// the old bytes, both generations are kept, current is the new one,
// staging is emptied.
func TestSwitchOneFile(t *testing.T) {
	g := newGateway(t)
	m1 := g.gen1()
	g.mustSwitch(m1)
	g.clearCalls()
	before := g.digest()
	oldSHA := m1.Entries[1].SHA256

	m2 := next(m1)
	set(m2, g.file("/etc/demo/broker.conf", "listener 8883\nmax_connections 100\n", 0o644, "root", "root"))
	evs := g.mustSwitch(m2)

	var managed []string
	for _, l := range strings.Split(testenv.DiffTrees(before, g.digest()), "\n") {
		if !strings.HasPrefix(l[2:], "var/lib/appliance/") {
			managed = append(managed, l)
		}
	}
	want := []string{
		fmt.Sprintf("+ etc/demo/broker.conf -rw-r--r-- %d %s", m2.Entries[1].Size, m2.Entries[1].SHA256),
		"- etc/demo/broker.conf -rw-r--r-- 14 " + oldSHA,
	}
	if !reflect.DeepEqual(managed, want) {
		t.Errorf("changed on disk:\n%s\nwant:\n%s", strings.Join(managed, "\n"), strings.Join(want, "\n"))
	}
	if got := g.calls(); !reflect.DeepEqual(got, []string{"reload broker.service"}) {
		t.Errorf("systemctl calls %q, want only the broker's reload", got)
	}
	if b, err := os.ReadFile(filepath.Join(g.root, storeDir, oldSHA)); err != nil || string(b) != "listener 8883\n" {
		t.Errorf("the store's copy of generation 1's broker.conf: %q, %v", b, err)
	}
	for _, n := range []int{1, 2} {
		if _, err := os.Stat(filepath.Join(g.root, manifestPath(n))); err != nil {
			t.Errorf("generation %d: %v", n, err)
		}
	}
	blobs, _ := os.ReadDir(filepath.Join(g.root, stagingDir, "blobs"))
	if _, err := os.Stat(filepath.Join(g.root, stagingDir, "manifest.json")); !os.IsNotExist(err) || len(blobs) > 0 {
		t.Errorf("staging is not empty after the commit: %v, %d blobs", err, len(blobs))
	}
	var steps []string
	for _, e := range evs {
		steps = append(steps, e.Step)
	}
	wantSteps := []string{"verify", "save", "save", "install", "switch", "action", "check", "check", "commit", "done"}
	if !reflect.DeepEqual(steps, wantSteps) {
		t.Errorf("events:\n%s\nwant steps %v", dump(evs), wantSteps)
	}
}

// TestSwitchMany: every kind of change at once lands exactly, and each
// affected unit is acted on once, in the manifest's order.
func TestSwitchMany(t *testing.T) {
	g := newGateway(t)
	m1 := g.gen1()
	g.mustSwitch(m1)
	g.clearCalls()
	m2 := g.gen2(m1)
	g.mustSwitch(m2)
	g.assertOn(m2, m1)
	want := []string{"daemon-reload", "reload broker.service", "restart web.service", "restart demo.service"}
	if got := g.calls(); !reflect.DeepEqual(got, want) {
		t.Errorf("systemctl calls %q, want %q", got, want)
	}
}

// TestSwitchUnchanged: a generation with the same content changes
// nothing, runs nothing, and makes no new generation.
func TestSwitchUnchanged(t *testing.T) {
	g := newGateway(t)
	m1 := g.gen1()
	g.mustSwitch(m1)
	g.clearCalls()
	before := g.digest()
	g.stage(next(m1))
	evs, code, stderr := g.run("switch")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if d := testenv.DiffTrees(before, g.digest()); d != "" {
		t.Errorf("an unchanged switch changed:\n%s", d)
	}
	if c := g.calls(); len(c) > 0 {
		t.Errorf("systemctl calls %q, want none", c)
	}
	if d := last(evs); d.Generation != 1 || find(evs, "verify", "nothing to do") == nil {
		t.Errorf("events:\n%s", dump(evs))
	}
}

// TestFailingCheckRollsBack: when a check fails, the gateway is put back
// exactly as it was, current points at generation 1 again, what the
// switch restarted is restarted again, and the failed check is named.
func TestFailingCheckRollsBack(t *testing.T) {
	g := newGateway(t)
	m1 := g.gen1()
	g.mustSwitch(m1)
	g.clearCalls()
	before := g.digest()
	m2 := g.gen2(m1)
	m2.Checks = append(m2.Checks, generation.Check{Name: "web port", Kind: "tcp", Port: testenv.FreePort(t)})
	g.stage(m2)
	evs, code, stderr := g.run("switch")
	if code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	if d := testenv.DiffTrees(before, g.digest()); d != "" {
		t.Errorf("after the rollback the tree differs from generation 1:\n%s", d)
	}
	g.assertOn(m1, m2)
	e := find(evs, "check", "web port")
	if e == nil || !e.Failed {
		t.Errorf("no failed event names the check:\n%s", dump(evs))
	}
	if !strings.Contains(stderr, "check web port failed") || !strings.Contains(stderr, "back on generation 1") {
		t.Errorf("stderr: %s", stderr)
	}
	if d := last(evs); d.Step != "done" || d.Generation != 1 {
		t.Errorf("last event %+v", d)
	}
	acted := []string{"daemon-reload", "reload broker.service", "restart web.service", "restart demo.service"}
	if got := g.calls(); !reflect.DeepEqual(got, append(acted, acted...)) {
		t.Errorf("systemctl calls %q, want the actions on the way there and again on the way back", got)
	}
	// Staging stays, so that push can try again without uploading.
	if _, err := os.Stat(filepath.Join(g.root, stagingDir, "manifest.json")); err != nil {
		t.Errorf("staging after a rollback: %v", err)
	}
}

// TestFailingActionRollsBack: an action that fails rolls back too.
func TestFailingActionRollsBack(t *testing.T) {
	g := newGateway(t)
	m1 := g.gen1()
	g.mustSwitch(m1)
	before := g.digest()
	g.answer("active broker.service", "fail restart web.service")
	g.stage(g.gen2(m1))
	evs, code, _ := g.run("switch")
	if code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	if e := find(evs, "action", "restart web.service"); e == nil || !e.Failed {
		t.Errorf("no failed event for the action:\n%s", dump(evs))
	}
	if d := testenv.DiffTrees(before, g.digest()); d != "" {
		t.Errorf("after the rollback:\n%s", d)
	}
	g.assertOn(m1)
}

// TestDriftKeptForRollback: a file changed by hand since generation 1 is
// reported, and a rollback puts back what was there, not what
// generation 1 said.
func TestDriftKeptForRollback(t *testing.T) {
	g := newGateway(t)
	m1 := g.gen1()
	g.mustSwitch(m1)
	g.write("etc/demo/broker.conf", "edited by hand\n", 0o644)
	before := g.digest()
	m2 := g.gen2(m1)
	m2.Checks = append(m2.Checks, generation.Check{Name: "closed", Kind: "tcp", Port: testenv.FreePort(t)})
	g.stage(m2)
	evs, code, _ := g.run("switch")
	if code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	if find(evs, "save", "/etc/demo/broker.conf is not as generation 1 left it") == nil {
		t.Errorf("no drift reported:\n%s", dump(evs))
	}
	if d := testenv.DiffTrees(before, g.digest()); d != "" {
		t.Errorf("after the rollback:\n%s", d)
	}
}

// TestWrongGeneration: a staged generation that is not the next one is
// refused, naming the one expected.
func TestWrongGeneration(t *testing.T) {
	g := newGateway(t)
	m1 := g.gen1()
	g.mustSwitch(m1)
	m3 := next(next(m1))
	g.stage(m3)
	evs, code, stderr := g.run("switch")
	if code != 1 || !strings.Contains(stderr, "is generation 3, but the gateway is on generation 1, so the next is 2") {
		t.Errorf("exit %d: %s", code, stderr)
	}
	if e := find(evs, "verify", "generation 3"); e == nil || !e.Failed {
		t.Errorf("events:\n%s", dump(evs))
	}
}

// TestRemovedAlready: what the generation removes may be gone from the
// gateway already: the switch reports it and goes on.
func TestRemovedAlready(t *testing.T) {
	g := newGateway(t)
	m1 := g.gen1()
	g.mustSwitch(m1)
	must(t, os.RemoveAll(filepath.Join(g.root, "usr/lib/demo")))
	evs := g.mustSwitch(g.gen2(m1))
	if find(evs, "save", "/usr/lib/demo is not as generation 1 left it") == nil {
		t.Errorf("the missing folder is not reported:\n%s", dump(evs))
	}
}
