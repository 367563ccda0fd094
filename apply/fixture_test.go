package apply

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/appliance/appliance/generation"
	"github.com/appliance/appliance/internal/testenv"
)

// gateway is a gateway's root folder with a recording systemctl: every
// call goes into log, and is-active / is-system-running answer from
// answers, which the test writes.
type gateway struct {
	t         testing.TB
	root      string
	log       string
	answers   string
	systemctl string
	// content holds every file content a test's manifests name, by
	// SHA-256, for staging.
	content map[string][]byte
	// port is a loopback listener the tcp checks use.
	port int
}

const fakeSystemctl = `#!/bin/sh
echo "$*" >> %[1]q
case "$1" in
is-active)
	if grep -qx "active $2" %[2]q; then echo active; exit 0; fi
	echo failed; exit 3;;
is-system-running)
	s=$(sed -n 's/^system //p' %[2]q)
	echo "${s:-running}"
	[ "${s:-running}" = running ];;
list-units)
	sed -n 's/^failed //p' %[2]q;;
*)
	if grep -qx "fail $*" %[2]q; then echo "Job for $2 failed." >&2; exit 1; fi;;
esac
`

// newGateway makes a root with the folders and accounts of a Debian
// system that the test manifests build on.
func newGateway(t testing.TB) *gateway {
	t.Helper()
	testenv.Require(t, "sh", "grep", "sed", "useradd", "groupadd", "usermod")
	tools := t.TempDir()
	g := &gateway{t: t, root: filepath.Join(t.TempDir(), "root"), log: filepath.Join(tools, "calls"),
		answers: filepath.Join(tools, "answers"), systemctl: filepath.Join(tools, "systemctl"), content: map[string][]byte{}}
	for _, d := range []string{"etc/systemd/system", "usr/lib", "var/lib"} {
		must(t, os.MkdirAll(filepath.Join(g.root, d), 0o755))
	}
	g.write("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n", 0o644)
	g.write("etc/group", "root:x:0:\nadm:x:4:\n", 0o644)
	g.write("etc/shadow", "root:*:19000:0:99999:7:::\n", 0o600)
	g.write("etc/gshadow", "root:*::\nadm:*::\n", 0o600)
	must(t, os.WriteFile(g.systemctl, fmt.Appendf(nil, fakeSystemctl, g.log, g.answers), 0o755))
	g.answer("active broker.service", "active web.service", "active demo.service")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	g.port = l.Addr().(*net.TCPAddr).Port
	return g
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func (g *gateway) write(rel, content string, mode os.FileMode) {
	g.t.Helper()
	p := filepath.Join(g.root, rel)
	must(g.t, os.MkdirAll(filepath.Dir(p), 0o755))
	must(g.t, os.WriteFile(p, []byte(content), mode))
	must(g.t, os.Chmod(p, mode))
}

// answer sets what the fake systemctl answers.
func (g *gateway) answer(lines ...string) {
	must(g.t, os.WriteFile(g.answers, []byte(strings.Join(lines, "\n")+"\n"), 0o644))
}

// calls are the systemctl calls that change something, in order.
func (g *gateway) calls() []string {
	b, err := os.ReadFile(g.log)
	if os.IsNotExist(err) {
		return nil
	}
	must(g.t, err)
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if l != "" && !strings.HasPrefix(l, "is-") && !strings.HasPrefix(l, "list-units") {
			out = append(out, l)
		}
	}
	return out
}

func (g *gateway) clearCalls() { os.Remove(g.log) }

func (g *gateway) file(p, content string, mode generation.Mode, owner, group string) generation.Entry {
	sum := sha256.Sum256([]byte(content))
	h := hex.EncodeToString(sum[:])
	g.content[h] = []byte(content)
	return generation.Entry{Path: p, Type: generation.File, Mode: mode, Owner: owner, Group: group, SHA256: h, Size: int64(len(content))}
}

func dir(p string, mode generation.Mode) generation.Entry {
	return generation.Entry{Path: p, Type: generation.Dir, Mode: mode, Owner: "root", Group: "root"}
}

func link(p, target string) generation.Entry {
	return generation.Entry{Path: p, Type: generation.Symlink, Target: target}
}

var created = time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)

// gen1 is a small site: a broker and a web server with their configs,
// a unit of our own, a key, a link, an account made for them.
func (g *gateway) gen1() *generation.Manifest {
	return &generation.Manifest{
		Format: 1, Generation: 1, Site: "demo", Created: created, Appliance: "v1.0.0", Changes: []string{"first"},
		Entries: []generation.Entry{
			dir("/etc/demo", 0o755),
			g.file("/etc/demo/broker.conf", "listener 8883\n", 0o644, "root", "root"),
			g.file("/etc/demo/web.conf", "server { listen 443; }\n", 0o640, "root", "www"),
			dir("/etc/demo/keys", 0o750),
			g.file("/etc/demo/keys/server.key", "secret key 1\n", 0o600, "demo", "demo"),
			link("/etc/demo/active.conf", "broker.conf"),
			g.file("/etc/systemd/system/demo.service", "[Service]\nExecStart=/usr/bin/demo\n", 0o644, "root", "root"),
			dir("/usr/lib/demo", 0o755),
			g.file("/usr/lib/demo/old.txt", "to be removed\n", 0o644, "root", "root"),
		},
		Groups: []generation.Group{{Name: "demo", GID: 2001}, {Name: "www", GID: 2002}},
		Users:  []generation.User{{Name: "demo", UID: 2001, Group: "demo", Home: "/nonexistent", Shell: "/usr/sbin/nologin", Groups: []string{"www"}}},
		Actions: []generation.Action{
			{Paths: []string{"/etc/demo/broker.conf", "/etc/demo/keys/"}, Unit: "broker.service", Do: "reload", Why: "the broker reads its config on SIGHUP"},
			{Paths: []string{"/etc/demo/web.conf"}, Unit: "web.service", Do: "restart", Why: "the web server"},
			{Paths: []string{"/etc/systemd/system/demo.service", "/usr/lib/demo/"}, Unit: "demo.service", Do: "restart", Why: "demo's unit or files"},
		},
		Checks: []generation.Check{
			{Name: "broker running", Kind: "unit", Unit: "broker.service"},
			{Name: "broker port", Kind: "tcp", Port: g.port},
		},
	}
}

// next is a copy of m as the next generation, with its entries copied.
func next(m *generation.Manifest) *generation.Manifest {
	n := *m
	n.Generation++
	n.Created = n.Created.Add(24 * time.Hour)
	n.Appliance = "v1.1.0"
	n.Changes = []string{fmt.Sprintf("generation %d", n.Generation)}
	n.Entries = append([]generation.Entry(nil), m.Entries...)
	n.Checks = append([]generation.Check(nil), m.Checks...)
	return &n
}

// set replaces or adds an entry.
func set(m *generation.Manifest, e generation.Entry) {
	for i := range m.Entries {
		if m.Entries[i].Path == e.Path {
			m.Entries[i] = e
			return
		}
	}
	m.Entries = append(m.Entries, e)
}

func drop(m *generation.Manifest, p string) {
	for i := range m.Entries {
		if m.Entries[i].Path == p {
			m.Entries = append(m.Entries[:i], m.Entries[i+1:]...)
			return
		}
	}
}

// stage writes m into staging with every file's content as a blob.
func (g *gateway) stage(m *generation.Manifest) {
	g.t.Helper()
	b, err := m.Marshal()
	must(g.t, err)
	g.write(filepath.Join(stagingDir, "manifest.json"), string(b), 0o644)
	for _, e := range m.Entries {
		if e.Type == generation.File {
			c, ok := g.content[e.SHA256]
			if !ok {
				g.t.Fatalf("no content for %s", e.Path)
			}
			g.write(filepath.Join(stagingDir, "blobs", e.SHA256), string(c), 0o644)
		}
	}
}

// run runs appliance-apply in this process.
func (g *gateway) run(args ...string) (events []generation.Event, code int, stderr string) {
	g.t.Helper()
	var out, errb bytes.Buffer
	args = append(args, "--root", g.root, "--systemctl", g.systemctl, "--check-timeout", "1s")
	code = Main(context.Background(), args, &out, &errb)
	return parseEvents(g.t, out.Bytes()), code, errb.String()
}

func parseEvents(t testing.TB, b []byte) []generation.Event {
	t.Helper()
	var evs []generation.Event
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		var e generation.Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("event %q: %v", sc.Text(), err)
		}
		evs = append(evs, e)
	}
	return evs
}

// mustSwitch stages m and switches to it, failing the test unless the
// gateway ends on m.
func (g *gateway) mustSwitch(m *generation.Manifest) []generation.Event {
	g.t.Helper()
	g.stage(m)
	evs, code, stderr := g.run("switch")
	if code != 0 {
		g.t.Fatalf("switch to %d: exit %d: %s\n%s", m.Generation, code, stderr, dump(evs))
	}
	g.assertOn(m)
	return evs
}

func dump(evs []generation.Event) string {
	var b strings.Builder
	for _, e := range evs {
		fmt.Fprintf(&b, "  %s: %s%s\n", e.Step, e.Message, map[bool]string{true: " [FAILED]"}[e.Failed])
	}
	return b.String()
}

// assertOn checks that the gateway is exactly on m: current points at
// it, no apply is under way, every entry has m's type, mode, owner,
// content or target, and the paths other generations manage are gone.
func (g *gateway) assertOn(m *generation.Manifest, others ...*generation.Manifest) {
	g.t.Helper()
	if t, err := os.Readlink(filepath.Join(g.root, currentPath)); err != nil || t != "generations/"+strconv.Itoa(m.Generation) {
		g.t.Errorf("current -> %q (%v), want generations/%d", t, err, m.Generation)
	}
	if _, err := os.Lstat(filepath.Join(g.root, journalPath)); !os.IsNotExist(err) {
		g.t.Errorf("the journal is still there: %v", err)
	}
	uids, gids := g.ids("etc/passwd"), g.ids("etc/group")
	has := map[string]bool{}
	for _, e := range m.Entries {
		has[e.Path] = true
		p := filepath.Join(g.root, e.Path)
		fi, err := os.Lstat(p)
		if err != nil {
			g.t.Errorf("%s: %v", e.Path, err)
			continue
		}
		st := fi.Sys().(*syscall.Stat_t)
		var got generation.Type
		switch {
		case fi.Mode().IsRegular():
			got = generation.File
		case fi.IsDir():
			got = generation.Dir
		case fi.Mode()&os.ModeSymlink != 0:
			got = generation.Symlink
		}
		if got != e.Type {
			g.t.Errorf("%s is a %s, want a %s", e.Path, got, e.Type)
			continue
		}
		switch e.Type {
		case generation.Symlink:
			if t, _ := os.Readlink(p); t != e.Target {
				g.t.Errorf("%s -> %s, want -> %s", e.Path, t, e.Target)
			}
			continue
		case generation.File:
			if sum := testenv.FileSHA256(g.t, p); sum != e.SHA256 {
				g.t.Errorf("%s has content %s, want %s", e.Path, sum[:12], e.SHA256[:12])
			}
		}
		if mode := generation.Mode(st.Mode & 0o7777); mode != e.Mode {
			g.t.Errorf("%s has mode %04o, want %04o", e.Path, mode, e.Mode)
		}
		if int(st.Uid) != uids[e.Owner] || int(st.Gid) != gids[e.Group] {
			g.t.Errorf("%s is owned by %d:%d, want %s:%s (%d:%d)", e.Path, st.Uid, st.Gid, e.Owner, e.Group, uids[e.Owner], gids[e.Group])
		}
		if e.Type == generation.Dir {
			entries, _ := os.ReadDir(p)
			for _, de := range entries {
				if strings.HasSuffix(de.Name(), ".appliance-tmp") {
					g.t.Errorf("a leftover %s in %s", de.Name(), e.Path)
				}
			}
		}
	}
	for _, o := range others {
		for _, e := range o.Entries {
			if has[e.Path] {
				continue
			}
			if _, err := os.Lstat(filepath.Join(g.root, e.Path)); !os.IsNotExist(err) {
				g.t.Errorf("%s (of generation %d) is still there on generation %d", e.Path, o.Generation, m.Generation)
			}
		}
	}
}

func (g *gateway) ids(rel string) map[string]int {
	b, err := os.ReadFile(filepath.Join(g.root, rel))
	must(g.t, err)
	ids := map[string]int{}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Split(l, ":"); len(f) > 2 {
			ids[f[0]], _ = strconv.Atoi(f[2])
		}
	}
	return ids
}

// digest is the tree without what apply may leave differently after an
// apply that ends where it began: the store and staging (and the lock).
func (g *gateway) digest() string {
	g.t.Helper()
	var keep []string
	for _, l := range strings.Split(testenv.TreeDigest(g.t, g.root), "\n") {
		if strings.HasPrefix(l, "var/lib/appliance/store") || strings.HasPrefix(l, "var/lib/appliance/staging") || strings.HasPrefix(l, "var/lib/appliance/apply.lock") {
			continue
		}
		keep = append(keep, l)
	}
	return strings.Join(keep, "\n")
}

func find(evs []generation.Event, step, sub string) *generation.Event {
	for i := range evs {
		if evs[i].Step == step && strings.Contains(evs[i].Message, sub) {
			return &evs[i]
		}
	}
	return nil
}

func last(evs []generation.Event) generation.Event {
	if len(evs) == 0 {
		return generation.Event{}
	}
	return evs[len(evs)-1]
}

// gen2 changes every kind of thing gen1 has: a file's content, only a
// mode, a key, a link that becomes a file, a new folder with a file, a
// removed folder with its file, a unit, a new link.
func (g *gateway) gen2(m1 *generation.Manifest) *generation.Manifest {
	m := next(m1)
	set(m, g.file("/etc/demo/broker.conf", "listener 8883\nmax_connections 100\n", 0o644, "root", "root"))
	set(m, g.file("/etc/demo/web.conf", "server { listen 443; }\n", 0o644, "root", "www"))
	set(m, g.file("/etc/demo/keys/server.key", "secret key 2\n", 0o600, "demo", "demo"))
	set(m, g.file("/etc/demo/active.conf", "active\n", 0o644, "root", "root"))
	set(m, dir("/etc/demo/extra", 0o755))
	set(m, g.file("/etc/demo/extra/x.conf", "x\n", 0o644, "demo", "www"))
	set(m, link("/etc/demo/web-link", "web.conf"))
	set(m, g.file("/etc/systemd/system/demo.service", "[Service]\nExecStart=/usr/bin/demo --new\n", 0o644, "root", "root"))
	drop(m, "/usr/lib/demo/old.txt")
	drop(m, "/usr/lib/demo")
	return m
}
