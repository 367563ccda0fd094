package apply

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/appliance/appliance/generation"
	"github.com/appliance/appliance/internal/testenv"
)

// TestHostile: manifests and staging that try to write outside the
// root, through links, or with content other than the manifest's are
// refused with a message that names the problem, and nothing on the
// gateway changes — not even the store — nor outside it.
func TestHostile(t *testing.T) {
	cases := []struct {
		name string
		// change makes generation 2 and the gateway hostile; outside is
		// a folder beside the root.
		change func(g *gateway, m2 *generation.Manifest, outside string)
		want   string
	}{
		{"path traversal", func(g *gateway, m2 *generation.Manifest, outside string) {
			set(m2, g.file("/etc/demo/../../../outside/x", "x", 0o644, "root", "root"))
		}, "not an absolute, clean path"},
		{"a path under a managed file", func(g *gateway, m2 *generation.Manifest, outside string) {
			set(m2, g.file("/etc/demo/broker.conf/x", "x", 0o644, "root", "root"))
		}, "lies under /etc/demo/broker.conf, which is not a folder"},
		{"a path under a file on the gateway", func(g *gateway, m2 *generation.Manifest, outside string) {
			g.write("etc/plain", "plain\n", 0o644)
			set(m2, g.file("/etc/plain/x", "x", 0o644, "root", "root"))
		}, "/etc/plain is a file on the gateway, not a folder"},
		{"a folder that is a link out of the root", func(g *gateway, m2 *generation.Manifest, outside string) {
			must(g.t, os.Symlink(outside, filepath.Join(g.root, "etc/evil")))
			set(m2, g.file("/etc/evil/x", "x", 0o644, "root", "root"))
		}, "/etc/evil is a link on the gateway (-> " + "OUTSIDE" + "); appliance writes nothing through a link"},
		{"a link where the generation makes a folder", func(g *gateway, m2 *generation.Manifest, outside string) {
			must(g.t, os.Symlink(outside, filepath.Join(g.root, "etc/evil")))
			set(m2, dir("/etc/evil", 0o755))
			set(m2, g.file("/etc/evil/x", "x", 0o644, "root", "root"))
		}, "/etc/evil is a link on the gateway"},
		{"a managed folder swapped for a link", func(g *gateway, m2 *generation.Manifest, outside string) {
			keys := filepath.Join(g.root, "etc/demo/keys")
			must(g.t, os.Rename(keys, filepath.Join(outside, "keys")))
			must(g.t, os.Symlink(filepath.Join(outside, "keys"), keys))
			set(m2, g.file("/etc/demo/keys/server.key", "secret key 2\n", 0o600, "demo", "demo"))
		}, "/etc/demo/keys is a link on the gateway"},
		{"a blob whose content is not its name", func(g *gateway, m2 *generation.Manifest, outside string) {
			e := g.file("/etc/demo/broker.conf", "listener 8884\n", 0o644, "root", "root")
			set(m2, e)
			g.stage(m2)
			g.write(filepath.Join(stagingDir, "blobs", e.SHA256), "listener 1883\nallow_anonymous true\n", 0o644)
		}, "is damaged or was tampered with"},
		{"a missing blob", func(g *gateway, m2 *generation.Manifest, outside string) {
			e := g.file("/etc/demo/broker.conf", "listener 8884\n", 0o644, "root", "root")
			set(m2, e)
			g.stage(m2)
			must(g.t, os.Remove(filepath.Join(g.root, stagingDir, "blobs", e.SHA256)))
		}, "the content of /etc/demo/broker.conf (SHA-256 "},
		{"a blob that is a link", func(g *gateway, m2 *generation.Manifest, outside string) {
			e := g.file("/etc/demo/broker.conf", "listener 8884\n", 0o644, "root", "root")
			set(m2, e)
			g.stage(m2)
			blob := filepath.Join(g.root, stagingDir, "blobs", e.SHA256)
			must(g.t, os.WriteFile(filepath.Join(outside, "right-content"), g.content[e.SHA256], 0o644))
			must(g.t, os.Remove(blob))
			must(g.t, os.Symlink(filepath.Join(outside, "right-content"), blob))
		}, "is a link; appliance reads no file through a link"},
		{"a staged manifest that is a link", func(g *gateway, m2 *generation.Manifest, outside string) {
			g.stage(m2)
			p := filepath.Join(g.root, stagingDir, "manifest.json")
			must(g.t, os.Rename(p, filepath.Join(outside, "manifest.json")))
			must(g.t, os.Symlink(filepath.Join(outside, "manifest.json"), p))
		}, "is a link; appliance reads no file through a link"},
		{"a package name that climbs", func(g *gateway, m2 *generation.Manifest, outside string) {
			m2.Packages = []generation.Package{{Name: "../../../etc/x", Version: "1", Arch: "all", SHA256: strings.Repeat("a", 64)}}
		}, "not a Debian package name"},
		{"a user name that is an option", func(g *gateway, m2 *generation.Manifest, outside string) {
			m2.Users = append(m2.Users, generation.User{Name: "-o", UID: 0, Group: "root", Home: "/", Shell: "/bin/sh"})
		}, `user "-o"`},
		{"an entry in apply's own folder", func(g *gateway, m2 *generation.Manifest, outside string) {
			set(m2, link("/var/lib/appliance/current", "/etc"))
		}, "which apply keeps for itself"},
		{"a name apply writes its temporary files under", func(g *gateway, m2 *generation.Manifest, outside string) {
			set(m2, g.file("/etc/demo/.broker.conf.appliance-tmp", "x", 0o644, "root", "root"))
		}, "names ending in .appliance-tmp are apply's temporary files"},
		{"an owner nobody makes", func(g *gateway, m2 *generation.Manifest, outside string) {
			set(m2, g.file("/etc/demo/extra.conf", "x", 0o644, "stranger", "root"))
		}, "belongs to user stranger, who is neither on the gateway nor in generation 2"},
		{"a group that clashes", func(g *gateway, m2 *generation.Manifest, outside string) {
			m2.Groups = []generation.Group{{Name: "demo", GID: 2001}, {Name: "www", GID: 3000}}
		}, "group www has GID 2002 on the gateway; generation 2 wants 3000"},
		{"a named pipe where a file goes", func(g *gateway, m2 *generation.Manifest, outside string) {
			must(g.t, syscall.Mkfifo(filepath.Join(g.root, "etc/demo/pipe"), 0o644))
			set(m2, g.file("/etc/demo/pipe", "x", 0o644, "root", "root"))
		}, "/etc/demo/pipe is a named pipe on the gateway"},
		{"a package whose file is not the lock's", func(g *gateway, m2 *generation.Manifest, outside string) {
			m2.Packages = []generation.Package{{Name: "apphello", Version: "1.0", Arch: "all", SHA256: strings.Repeat("a", 64)}}
			g.write(filepath.Join(stagingDir, "debs", "apphello.deb"), "not the package", 0o644)
		}, "staging/debs/apphello.deb has SHA-256 "},
		{"a missing package", func(g *gateway, m2 *generation.Manifest, outside string) {
			m2.Packages = []generation.Package{{Name: "apphello", Version: "1.0", Arch: "all", SHA256: strings.Repeat("a", 64)}}
		}, "package apphello 1.0: /var/lib/appliance/staging/debs/apphello.deb is missing"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := newGateway(t)
			m1 := g.gen1()
			g.mustSwitch(m1)
			g.clearCalls()
			outside := t.TempDir()
			m2 := next(m1)
			g.stage(m2)
			c.change(g, m2, outside)
			if _, err := os.Lstat(filepath.Join(g.root, stagingDir, "manifest.json")); err == nil {
				if fi, _ := os.Lstat(filepath.Join(g.root, stagingDir, "manifest.json")); fi.Mode().IsRegular() {
					b, err := m2.Marshal()
					must(t, err)
					g.write(filepath.Join(stagingDir, "manifest.json"), string(b), 0o644)
				}
			}
			before, outBefore := testenv.TreeDigest(t, g.root), testenv.TreeDigest(t, outside)
			evs, code, stderr := g.run("switch")
			t.Logf("refused: %s", strings.TrimSpace(stderr))
			want := strings.ReplaceAll(c.want, "OUTSIDE", outside)
			if code != 1 || !strings.Contains(stderr, want) {
				t.Errorf("exit %d, stderr %q; want 1 and an error that says %q", code, stderr, want)
			}
			if e := find(evs, "verify", ""); e == nil || !e.Failed || last(evs).Generation != 1 {
				t.Errorf("events:\n%s", dump(evs))
			}
			if d := testenv.DiffTrees(before, testenv.TreeDigest(t, g.root)); d != "" {
				t.Errorf("the refused switch changed the gateway:\n%s", d)
			}
			if d := testenv.DiffTrees(outBefore, testenv.TreeDigest(t, outside)); d != "" {
				t.Errorf("the refused switch changed what is outside the root:\n%s", d)
			}
			if c := g.calls(); len(c) > 0 {
				t.Errorf("systemctl calls %q", c)
			}
		})
	}
}
