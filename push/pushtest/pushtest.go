// Package pushtest makes gateways to push to on this machine, for the
// tests and the benchmark of appliance push: a root folder laid out as
// appliance build leaves a gateway (the desired files, generation 1, the
// accounts), and stand-ins for the programs the apply program runs
// there (systemctl, dpkg, systemd-run, the actions' commands), which
// record their calls.
package pushtest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/appliance/appliance/desired"
	"github.com/appliance/appliance/generation"
	"github.com/appliance/appliance/images/rootfs"
	"github.com/appliance/appliance/spec"
	"github.com/appliance/appliance/state"
)

// Gateway lays out root as the image of the site at specPath (with its
// state in stateDir) would: the desired files and folders, generation 1
// recording them, and the accounts they belong to — base-passwd's that
// the site uses, and the site's own, made with the real shadow tools.
// Appliance's programs are left out: the build puts them in for the
// gateway's architecture, push for this machine's.
func Gateway(root, specPath, stateDir string, environ []string) error {
	site, rep := spec.Load(specPath, spec.Options{Environ: environ})
	if rep.HasErrors() {
		var b bytes.Buffer
		rep.WriteText(&b)
		return fmt.Errorf("%s", b.String())
	}
	g, err := desired.Compute(site)
	if err != nil {
		return err
	}
	st, err := state.Open(stateDir, state.Options{})
	if err != nil {
		return err
	}
	defer st.Close()
	r, err := g.Resolve(st, time.Now())
	if err != nil {
		return err
	}
	for _, d := range []string{"etc", "usr/bin", "usr/sbin", "usr/lib", "var/lib"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return err
		}
	}
	for f, body := range map[string]string{
		"passwd":  "root:x:0:0:root:/root:/bin/sh\nwww-data:x:33:33:www-data:/var/www:/usr/sbin/nologin\n",
		"group":   "root:x:0:\nadm:x:4:\nsudo:x:27:\nwww-data:x:33:\nshadow:x:42:\n",
		"shadow":  "root:*:20000:0:99999:7:::\nwww-data:*:20000:0:99999:7:::\n",
		"gshadow": "root:*::\nadm:*::\nsudo:*::\nwww-data:*::\nshadow:*::\n",
	} {
		if err := os.WriteFile(filepath.Join(root, "etc", f), []byte(body), 0o644); err != nil {
			return err
		}
	}
	for _, gr := range r.Groups {
		if err := run("groupadd", "--prefix", root, "-g", strconv.Itoa(gr.GID), gr.Name); err != nil {
			return err
		}
	}
	for _, u := range r.Users {
		args := []string{"--prefix", root, "-u", strconv.Itoa(u.UID), "-g", u.Group, "-d", u.Home, "-s", u.Shell, "-M"}
		if len(u.Groups) > 0 {
			args = append(args, "-G", strings.Join(u.Groups, ","))
		}
		if err := run("useradd", append(args, u.Name)...); err != nil {
			return err
		}
	}
	if err := r.Apply(desired.Folder{Root: root}); err != nil {
		return err
	}
	lock, err := rootfs.ReadLock(site.Location.Lock)
	if err != nil {
		return err
	}
	var pkgs []generation.Package
	for _, p := range lock.Packages {
		pkgs = append(pkgs, generation.Package{Name: p.Name, Version: p.Version, Arch: p.Architecture, SHA256: p.SHA256})
	}
	data, err := r.Generation(1, time.Now(), "test", nil, pkgs).Manifest.Marshal()
	if err != nil {
		return err
	}
	manifest, current, target := desired.GenerationFiles(1)
	if err := os.MkdirAll(filepath.Dir(filepath.Join(root, manifest)), 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(root, manifest), data, 0o600); err != nil {
		return err
	}
	return os.Symlink(target, filepath.Join(root, current))
}

func run(name string, args ...string) error {
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

// Tools are the stand-ins, in one folder.
type Tools struct {
	// Calls is where each records its arguments, a line a call.
	Calls string
	// Failing lists units that systemctl is-active calls failed.
	Failing string
	// ApplyArgs make the apply program use them (push --apply-arg) and
	// run only the checks they can answer: the services do not run here.
	ApplyArgs []string
}

// FakeTools writes the stand-ins into dir.
func FakeTools(dir string) (*Tools, error) {
	t := &Tools{Calls: filepath.Join(dir, "calls"), Failing: filepath.Join(dir, "failing")}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(t.Failing, nil, 0o644); err != nil {
		return nil, err
	}
	script := `#!/bin/sh
echo "$(basename "$0") $*" >>` + t.Calls + `
if [ "$(basename "$0")" = systemctl ]; then
	case $1 in
	is-active) if grep -qx "$2" ` + t.Failing + `; then echo failed; exit 3; fi; echo active ;;
	is-system-running) echo running ;;
	esac
fi
exit 0
`
	for _, tool := range []string{"systemctl", "dpkg", "run", "systemd-run"} {
		p := filepath.Join(dir, tool)
		if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
			return nil, err
		}
		t.ApplyArgs = append(t.ApplyArgs, "--"+tool+"="+p)
	}
	t.ApplyArgs = append(t.ApplyArgs, "--checks=unit,system", "--check-timeout=2s")
	return t, nil
}
