package push_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/appliance/appliance/generation"
	"github.com/appliance/appliance/internal/testenv"
	"github.com/appliance/appliance/push"
	"golang.org/x/crypto/ssh"
)

// gatewayFixture is a gateway root with generation 1 of a few files, the
// real apply program built for this machine, stand-ins for systemctl and
// the actions, and a real sshd in front.
type gatewayFixture struct {
	root, calls string
	target      push.Target
	apply       []byte
	args        []string
}

func newGatewayFixture(t *testing.T) *gatewayFixture {
	t.Helper()
	t.Setenv("SSH_AUTH_SOCK", "")
	k := newKeys(t)
	srv := testenv.StartSSHD(t, k.hostPriv, k.authLine)
	f := &gatewayFixture{root: t.TempDir(), target: push.Target{Addr: srv.Addr, User: "root", HostKey: k.host, Keys: []ssh.Signer{k.client}}}
	bin := filepath.Join(t.TempDir(), "apply")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/appliance-apply").CombinedOutput(); err != nil {
		t.Fatalf("building the apply program: %v\n%s", err, out)
	}
	f.apply, _ = os.ReadFile(bin)
	tools := t.TempDir()
	f.calls = filepath.Join(tools, "calls")
	script := "#!/bin/sh\necho \"$(basename \"$0\") $*\" >>" + f.calls + "\ncase $1 in is-active) echo active ;; is-system-running) echo running ;; esac\n"
	for _, tool := range []string{"systemctl", "run", "systemd-run"} {
		p := filepath.Join(tools, tool)
		os.WriteFile(p, []byte(script), 0o755)
		f.args = append(f.args, "--"+tool+"="+p)
	}
	for _, d := range []string{"etc/demo", "usr/lib/appliance"} {
		os.MkdirAll(filepath.Join(f.root, d), 0o755)
	}
	os.WriteFile(filepath.Join(f.root, "etc/passwd"), []byte("root:x:0:0:root:/root:/bin/sh\n"), 0o644)
	os.WriteFile(filepath.Join(f.root, "etc/group"), []byte("root:x:0:\n"), 0o644)
	return f
}

// generation is generation n: conf holds body, and the apply program.
func (f *gatewayFixture) generation(n int, body string) (*generation.Manifest, map[string][]byte, string) {
	blobs := map[string][]byte{}
	entry := func(p string, data []byte, mode generation.Mode) generation.Entry {
		s := sha256.Sum256(data)
		h := hex.EncodeToString(s[:])
		blobs[h] = data
		return generation.Entry{Path: p, Type: generation.File, Mode: mode, Owner: "root", Group: "root", SHA256: h, Size: int64(len(data))}
	}
	app := entry(generation.ApplyPath, f.apply, 0o755)
	m := &generation.Manifest{Format: generation.Format, Generation: n, Site: "demo", Created: time.Now().UTC(),
		Entries: []generation.Entry{entry("/etc/demo/demo.conf", []byte(body), 0o644), entry("/etc/demo/big.bin", []byte(strings.Repeat(body, 1<<18)), 0o644), app},
		Actions: []generation.Action{{Paths: []string{"/etc/demo/"}, Unit: "demo.service", Do: "restart", Why: "its configuration changed"}},
		Checks:  []generation.Check{{Name: "demo running", Kind: "unit", Unit: "demo.service"}}}
	m.Sort()
	return m, blobs, app.SHA256
}

func (f *gatewayFixture) dial(t *testing.T) *push.Gateway {
	t.Helper()
	c, err := push.Dial(context.Background(), f.target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &push.Gateway{Conn: c, Root: f.root, ApplyArgs: f.args}
}

// push stages and switches to m, cutting the connection after cutAfter
// events of the apply program (0: never).
func (f *gatewayFixture) push(t *testing.T, m *generation.Manifest, blobs map[string][]byte, apply string, cutAfter int) error {
	t.Helper()
	g := f.dial(t)
	cur, err := g.Current()
	if err != nil {
		t.Fatal(err)
	}
	if cur != nil {
		m.Generation = cur.Generation + 1
	} else {
		m.Generation = 1
	}
	d := generation.Compare(cur, m)
	if _, err := g.Stage(context.Background(), d, push.Upload{Current: cur, Manifest: m, Blobs: blobs, Apply: apply}); err != nil {
		return err
	}
	n := 0
	_, err = g.Switch(context.Background(), cur, apply, 0, func(generation.Event) {
		n++
		if n == cutAfter {
			g.Close()
		}
	})
	return err
}

// onlyGeneration checks that the gateway is wholly on one generation:
// its current one, whose files all hold their manifest's bytes.
func (f *gatewayFixture) onlyGeneration(t *testing.T, g *push.Gateway, bodies map[int]string) int {
	t.Helper()
	// The apply program finishes, or rolls back, after the cut: wait for
	// its lock and journal to go.
	deadline := time.Now().Add(time.Minute)
	for {
		_, err := os.Stat(filepath.Join(f.root, generation.Root, "apply.json"))
		if errors.Is(err, os.ErrNotExist) || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	cur, err := g.Current()
	if err != nil || cur == nil {
		t.Fatalf("the gateway's generation: %v %v", cur, err)
	}
	for _, e := range cur.Entries {
		if e.Type != generation.File {
			continue
		}
		b, err := os.ReadFile(filepath.Join(f.root, e.Path))
		s := sha256.Sum256(b)
		if err != nil || hex.EncodeToString(s[:]) != e.SHA256 {
			t.Errorf("%s does not hold what generation %d says (%v)", e.Path, cur.Generation, err)
		}
	}
	return cur.Generation
}

// TestConnectionCut: a push whose connection is cut during the upload,
// or at any step of the switch, leaves the gateway wholly on the old or
// wholly on the new generation, and the next push succeeds.
func TestConnectionCut(t *testing.T) {
	f := newGatewayFixture(t)
	m1, b1, apply := f.generation(0, "one")
	if err := f.push(t, m1, b1, apply, 0); err != nil {
		t.Fatalf("generation 1: %v", err)
	}
	// How many events a switch reports.
	m2, b2, _ := f.generation(0, "two")
	var events int
	g := f.dial(t)
	cur, _ := g.Current()
	m2.Generation = cur.Generation + 1
	d := generation.Compare(cur, m2)
	g.Stage(context.Background(), d, push.Upload{Current: cur, Manifest: m2, Blobs: b2, Apply: apply})
	g.Switch(context.Background(), cur, apply, 0, func(generation.Event) { events++ })
	if events < 8 {
		t.Fatalf("a switch reported %d events", events)
	}
	body := "three"
	for cut := 1; cut <= events; cut++ {
		m, b, _ := f.generation(0, body)
		err := f.push(t, m, b, apply, cut)
		g := f.dial(t)
		gen := f.onlyGeneration(t, g, nil)
		t.Logf("cut after event %d: %v; the gateway is on generation %d", cut, err, gen)
		if err != nil && !errors.Is(err, push.ErrConnectionLost) {
			t.Errorf("a cut after event %d: %v; want it to say the connection was lost", cut, err)
		}
		// The next push succeeds, whatever the cut left.
		m, b, _ = f.generation(0, body+"!")
		if err := f.push(t, m, b, apply, 0); err != nil {
			t.Fatalf("the push after a cut after event %d: %v", cut, err)
		}
		f.onlyGeneration(t, f.dial(t), nil)
		body += "+"
	}

	// A cut upload resumes: the blobs already whole are not sent again.
	g = f.dial(t)
	cur, _ = g.Current()
	m, b, _ := f.generation(cur.Generation+1, "resumed "+strings.Repeat("x", 10))
	d = generation.Compare(cur, m)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := g.Stage(ctx, d, push.Upload{Current: cur, Manifest: m, Blobs: b, Apply: apply}); err == nil {
		t.Fatalf("a stage with its context ended went through")
	}
	st, err := g.Stage(context.Background(), d, push.Upload{Current: cur, Manifest: m, Blobs: b, Apply: apply})
	if err != nil || st.Files == 0 {
		t.Fatalf("stage after the cut: %+v %v", st, err)
	}
	st, err = g.Stage(context.Background(), d, push.Upload{Current: cur, Manifest: m, Blobs: b, Apply: apply})
	if err != nil || st.Files != 0 || st.Reused == 0 {
		t.Errorf("a second stage sent %+v; want nothing sent again", st)
	}
}

// TestConfirm: a switch made to wait for confirmation commits once push
// confirms it over a new connection; unconfirmed, the timer's recover
// returns the gateway to the old generation.
func TestConfirm(t *testing.T) {
	f := newGatewayFixture(t)
	m1, b1, apply := f.generation(0, "one")
	if err := f.push(t, m1, b1, apply, 0); err != nil {
		t.Fatal(err)
	}
	switchAwaiting := func(body string) (*push.Gateway, *generation.Manifest) {
		g := f.dial(t)
		cur, _ := g.Current()
		m, b, _ := f.generation(cur.Generation+1, body)
		d := generation.Compare(cur, m)
		if _, err := g.Stage(context.Background(), d, push.Upload{Current: cur, Manifest: m, Blobs: b, Apply: apply}); err != nil {
			t.Fatal(err)
		}
		awaiting, err := g.Switch(context.Background(), cur, apply, time.Minute, nil)
		if err != nil || !awaiting {
			t.Fatalf("a switch to confirm: awaiting %v, %v", awaiting, err)
		}
		calls, _ := os.ReadFile(f.calls)
		if !strings.Contains(string(calls), "systemd-run --unit appliance-apply-confirm --on-active 60s") {
			t.Errorf("no timer was started to undo the switch:\n%s", calls)
		}
		return g, cur
	}
	g, cur := switchAwaiting("two")
	if err := g.Confirm(context.Background(), f.target, nil); err != nil {
		t.Fatalf("confirm: %v", err)
	}
	if n := f.onlyGeneration(t, f.dial(t), nil); n != cur.Generation+1 {
		t.Errorf("after the confirm the gateway is on generation %d; want %d", n, cur.Generation+1)
	}
	if _, err := os.Stat(filepath.Join(f.root, generation.Root, "apply.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the confirmed switch left its journal")
	}

	// Unconfirmed: the timer runs recover, and the gateway is back.
	g, cur = switchAwaiting("three")
	if err := g.Run(context.Background(), append([]string{filepath.Join(f.root, generation.ApplyPath), "recover", "--root", f.root}, f.args...), io.Discard); err != nil {
		t.Fatal(err)
	}
	if n := f.onlyGeneration(t, f.dial(t), nil); n != cur.Generation {
		t.Errorf("after an unconfirmed switch the gateway is on generation %d; want %d", n, cur.Generation)
	}
	if b, _ := os.ReadFile(filepath.Join(f.root, "etc/demo/demo.conf")); string(b) != "two" {
		t.Errorf("after an unconfirmed switch demo.conf holds %q", b)
	}
	// And a confirm too late says so.
	if err := g.Confirm(context.Background(), f.target, nil); err == nil || !strings.Contains(err.Error(), "no switch waits for confirmation") {
		t.Errorf("a confirm after the undo: %v", err)
	}
}
