package apply

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/appliance/appliance/generation"
	"github.com/appliance/appliance/internal/testenv"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// applyBinary builds cmd/appliance-apply once for the tests that kill
// it.
func applyBinary(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "appliance-apply-test")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "appliance-apply")
		out, err := exec.Command("go", "build", "-o", binPath, "github.com/appliance/appliance/cmd/appliance-apply").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// runBinary runs the built program to its end, or, when stopAfter is
// set, until it has printed that many events, then kills it (SIGKILL)
// at that point: the program waits there (StopEnv), so the kill lands
// exactly after the event.
func (g *gateway) runBinary(stopAfter int, args ...string) ([]generation.Event, int) {
	g.t.Helper()
	args = append(args, "--root", g.root, "--systemctl", g.systemctl, "--check-timeout", "1s")
	cmd := exec.Command(applyBinary(g.t), args...)
	cmd.Env = append(os.Environ(), StopEnv+"="+strconv.Itoa(stopAfter))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	must(g.t, err)
	must(g.t, cmd.Start())
	var lines bytes.Buffer
	r := bufio.NewReader(out)
	for n := 0; stopAfter == 0 || n < stopAfter; n++ {
		l, err := r.ReadBytes('\n')
		lines.Write(l)
		if err != nil {
			break
		}
	}
	if stopAfter > 0 {
		cmd.Process.Signal(syscall.SIGKILL)
	}
	err = cmd.Wait()
	code := cmd.ProcessState.ExitCode()
	if err != nil && code < 0 && stopAfter == 0 {
		g.t.Fatalf("appliance-apply %v: %v\n%s", args, err, stderr.String())
	}
	return parseEvents(g.t, lines.Bytes()), code
}

// killSetup is generation 1 installed, and generation 2 staged.
func killSetup(t *testing.T, failing bool) (g *gateway, m1, m2 *generation.Manifest, before string) {
	g = newGateway(t)
	m1 = g.gen1()
	g.mustSwitch(m1)
	g.clearCalls()
	before = g.digest()
	m2 = g.gen2(m1)
	if failing {
		m2.Checks = append(m2.Checks, generation.Check{Name: "closed port", Kind: "tcp", Port: testenv.FreePort(t)})
	}
	g.stage(m2)
	return g, m1, m2, before
}

// fullSwitch is the events of a switch to generation 2 that nothing
// interrupts.
func fullSwitch(t *testing.T) []generation.Event {
	g, _, _, _ := killSetup(t, false)
	evs, code := g.runBinary(0, "switch")
	if code != 0 {
		t.Fatalf("a whole switch: exit %d\n%s", code, dump(evs))
	}
	return evs
}

// firstEvent is the number (from 1) of the first event of a step.
func firstEvent(evs []generation.Event, step string) int {
	for i, e := range evs {
		if e.Step == step {
			return i + 1
		}
	}
	return 0
}

var acted = []string{"daemon-reload", "reload broker.service", "restart web.service", "restart demo.service"}

// assertBack: after recover the gateway is exactly on generation 1 (the
// tree as it was, every entry as the manifest says, nothing of
// generation 2 left), and the units were restarted when the killed
// apply had begun acting on them.
func assertBack(t *testing.T, g *gateway, m1, m2 *generation.Manifest, before string, restarted bool) {
	t.Helper()
	if d := testenv.DiffTrees(before, g.digest()); d != "" {
		t.Errorf("after recover the tree differs from generation 1:\n%s", d)
	}
	g.assertOn(m1, m2)
	var want []string
	if restarted {
		want = acted
	}
	if got := g.calls(); !reflect.DeepEqual(got, want) {
		t.Errorf("recover's systemctl calls %q, want %q", got, want)
	}
}

func (g *gateway) journalRestart() bool {
	b, err := os.ReadFile(filepath.Join(g.root, journalPath))
	return err == nil && bytes.Contains(b, []byte(`"restart": true`))
}

// TestKillAnywhere kills a switch right after each of its events: recover
// then leaves the gateway exactly on generation 1 (or, once the commit
// event is out, it stays on 2), and a following switch reaches
// generation 2.
func TestKillAnywhere(t *testing.T) {
	g, _, m2, _ := killSetup(t, false)
	full, code := g.runBinary(0, "switch")
	if code != 0 {
		t.Fatalf("a whole switch: exit %d\n%s", code, dump(full))
	}
	g.assertOn(m2)
	commit := 0
	for i, e := range full {
		if e.Step == "commit" {
			commit = i + 1
		}
	}
	t.Logf("a switch has %d events; the commit is event %d", len(full), commit)
	for k := 1; k < len(full); k++ {
		t.Run(fmt.Sprintf("%02d-%s", k, full[k-1].Step), func(t *testing.T) {
			g, m1, m2, before := killSetup(t, false)
			g.runBinary(k, "switch")
			if k >= commit {
				g.assertOn(m2, m1)
				return
			}
			restarted := g.journalRestart()
			g.clearCalls()
			if evs, code := g.runBinary(0, "recover"); code != 0 || last(evs).Generation != 1 {
				t.Fatalf("recover: exit %d\n%s", code, dump(evs))
			}
			assertBack(t, g, m1, m2, before, restarted)
			if evs, code := g.runBinary(0, "switch"); code != 0 {
				t.Fatalf("switch after recover: exit %d\n%s", code, dump(evs))
			}
			g.assertOn(m2, m1)
		})
	}
}

// TestKillDuringRollback kills a switch whose check fails at each event
// of its rollback: recover finishes the rollback.
func TestKillDuringRollback(t *testing.T) {
	g, m1, _, _ := killSetup(t, true)
	full, code := g.runBinary(0, "switch")
	if code != 1 {
		t.Fatalf("a failing switch: exit %d\n%s", code, dump(full))
	}
	g.assertOn(m1)
	failed := 0
	for i, e := range full {
		if e.Failed && failed == 0 {
			failed = i + 1
		}
	}
	for k := failed; k < len(full); k++ {
		t.Run(fmt.Sprintf("%02d-%s", k, full[k-1].Step), func(t *testing.T) {
			g, m1, m2, before := killSetup(t, true)
			g.runBinary(k, "switch")
			g.clearCalls()
			if evs, code := g.runBinary(0, "recover"); code != 0 {
				t.Fatalf("recover: exit %d\n%s", code, dump(evs))
			}
			assertBack(t, g, m1, m2, before, true)
		})
	}
}

// TestKillDuringRecover kills a switch during its checks, then kills
// recover after each of its events: the next recover still ends on
// generation 1.
func TestKillDuringRecover(t *testing.T) {
	check := firstEvent(fullSwitch(t), "check")
	g, m1, m2, before := killSetup(t, false)
	g.runBinary(check, "switch")
	g.clearCalls()
	rec, code := g.runBinary(0, "recover")
	if code != 0 {
		t.Fatalf("recover: exit %d\n%s", code, dump(rec))
	}
	assertBack(t, g, m1, m2, before, true)
	for j := 1; j < len(rec); j++ {
		t.Run(fmt.Sprintf("%02d-%s", j, rec[j-1].Step), func(t *testing.T) {
			g, m1, m2, before := killSetup(t, false)
			g.runBinary(check, "switch")
			g.runBinary(j, "recover")
			g.clearCalls()
			evs, code := g.runBinary(0, "recover")
			if code != 0 {
				t.Fatalf("recover again: exit %d\n%s", code, dump(evs))
			}
			if d := testenv.DiffTrees(before, g.digest()); d != "" {
				t.Errorf("after two recovers:\n%s", d)
			}
			g.assertOn(m1, m2)
		})
	}
}

// TestRecoverAtBoot: at boot, recover puts the files back and has
// systemd read the unit it put back, and restarts nothing: the
// services have not started yet.
func TestRecoverAtBoot(t *testing.T) {
	check := firstEvent(fullSwitch(t), "check")
	g, m1, m2, before := killSetup(t, false)
	g.runBinary(check, "switch")
	g.clearCalls()
	if evs, code := g.runBinary(0, "recover", "--boot"); code != 0 {
		t.Fatalf("recover --boot: exit %d\n%s", code, dump(evs))
	}
	if d := testenv.DiffTrees(before, g.digest()); d != "" {
		t.Errorf("after recover --boot:\n%s", d)
	}
	g.assertOn(m1, m2)
	if got := g.calls(); !reflect.DeepEqual(got, []string{"daemon-reload"}) {
		t.Errorf("systemctl calls %q, want only daemon-reload", got)
	}
	// Nothing under way: recover does nothing.
	g.clearCalls()
	if evs, code := g.runBinary(0, "recover", "--boot"); code != 0 || len(evs) != 1 || len(g.calls()) != 0 {
		t.Errorf("recover with nothing to do: exit %d, calls %q\n%s", code, g.calls(), dump(evs))
	}
}

// TestKillFirstGeneration: an interrupted first switch, onto a gateway
// with no generation, is undone to nothing managed and no current.
func TestKillFirstGeneration(t *testing.T) {
	g := newGateway(t)
	if _, code := g.runBinary(0, "recover"); code != 0 {
		t.Fatal("recover on a fresh gateway failed")
	}
	m1 := g.gen1()
	g.stage(m1)
	full, code := g.runBinary(0, "switch")
	if code != 0 {
		t.Fatalf("first switch: exit %d\n%s", code, dump(full))
	}
	install := 0
	for i, e := range full {
		if e.Step == "install" && strings.HasPrefix(e.Message, "installed /etc/demo/keys") {
			install = i + 1
		}
	}
	g = newGateway(t)
	g.runBinary(0, "recover")
	before := withoutAccounts(g.digest())
	g.stage(g.gen1())
	g.runBinary(install, "switch")
	if evs, code := g.runBinary(0, "recover"); code != 0 || last(evs).Generation != 0 {
		t.Fatalf("recover: exit %d\n%s", code, dump(evs))
	}
	if d := testenv.DiffTrees(before, withoutAccounts(g.digest())); d != "" {
		t.Errorf("after recover:\n%s", d)
	}
	if _, err := os.Lstat(filepath.Join(g.root, currentPath)); !os.IsNotExist(err) {
		t.Errorf("current after undoing the first generation: %v", err)
	}
}

// withoutAccounts leaves out /etc/passwd and the like: accounts are made
// before the journal and stay.
func withoutAccounts(digest string) string {
	var keep []string
	for _, l := range strings.Split(digest, "\n") {
		if !strings.HasPrefix(l, "etc/passwd") && !strings.HasPrefix(l, "etc/group") && !strings.HasPrefix(l, "etc/shadow") && !strings.HasPrefix(l, "etc/gshadow") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}
