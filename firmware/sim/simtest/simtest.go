// Package simtest makes, for the tests and benchmarks of the node tools,
// a site from spec text: its state (CA, certificates, OTA keys), its
// gateway's files with the OTA tree, and the nodes' part of a build's
// output — the bundles in nodes/NODE/ and build-info.json with its
// nodes, as the output contract (package outputs) lays them out. The
// gateway and the nodes are what desired.Resolve makes of the site, the
// very computation appliance build runs; simtest writes its bundles as
// the build's nodes step does, without the rest of the build (no
// packages, no image). It runs the gateway's own mosquitto and nginx
// from the generated configs, moved under the test's folder. The node
// tools read only the output; only tests and benchmarks import this.
package simtest

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/appliance/appliance/desired"
	"github.com/appliance/appliance/firmware/espimage"
	"github.com/appliance/appliance/internal/fwtest"
	"github.com/appliance/appliance/outputs"
	"github.com/appliance/appliance/spec"
	"github.com/appliance/appliance/state"
)

// TB is what the helpers need of a test, a benchmark or a program.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
	Logf(format string, args ...any)
	Cleanup(func())
	TempDir() string
}

// AppFile is an app image to write where a spec's firmware block names
// its image, as idf.py build leaves one: fwtest's, laid out as
// `esptool elf2image --secure-pad-v2` lays out an app.
type AppFile struct {
	// Path is relative to the spec's folder.
	Path          string
	Chip          espimage.Chip
	Version       string
	SecureVersion uint32
	// Size is the app's data size (default 300,000 bytes).
	Size int
	// Bootloader also writes bootloader/bootloader.bin beside it, which
	// the build puts in the bundles.
	Bootloader bool
}

func (a AppFile) write(dir string) error {
	if a.Size == 0 {
		a.Size = 300000
	}
	p := filepath.Join(dir, a.Path)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	img := fwtest.App{Chip: a.Chip, Version: a.Version, Project: "sensor", SecureVersion: a.SecureVersion, DataSize: a.Size}.Image()
	if err := os.WriteFile(p, img, 0o644); err != nil {
		return err
	}
	if !a.Bootloader {
		return nil
	}
	bl := filepath.Join(filepath.Dir(p), "bootloader", "bootloader.bin")
	if err := os.MkdirAll(filepath.Dir(bl), 0o755); err != nil {
		return err
	}
	return os.WriteFile(bl, fwtest.App{Chip: a.Chip, Bootloader: true, DataSize: 20000}.Image(), 0o644)
}

// Site is a site made for a test.
type Site struct {
	Spec    *spec.Site
	Gateway *desired.Gateway
	State   *state.Store
	// Resolved is what the last Rewrite, Build or Update resolved.
	Resolved *desired.Resolved
	// Dir holds the spec, Root the gateway's files, Out the build
	// output (out/SITE).
	Dir, Root, Out string
}

// Load writes spec text (and app images) into dir, a new folder when
// "", and loads it.
func Load(t TB, dir, src string, apps ...AppFile) (*spec.Site, *desired.Gateway, string) {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	for _, a := range apps {
		if err := a.write(dir); err != nil {
			t.Fatalf("%v", err)
		}
	}
	path := filepath.Join(dir, "site.hcl")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatalf("%v", err)
	}
	site, rep := spec.Load(path, spec.Options{Environ: []string{"HOME=/nonexistent"}})
	if rep.HasErrors() {
		var b bytes.Buffer
		rep.WriteText(&b)
		t.Fatalf("spec: %s", b.String())
	}
	g, err := desired.Compute(site)
	if err != nil {
		t.Fatalf("desired: %v", err)
	}
	return site, g, dir
}

// New loads spec text after writing the app images it names, makes the
// site's state and writes the gateway's files under Root.
func New(t TB, src string, apps ...AppFile) *Site {
	t.Helper()
	site, g, dir := Load(t, "", src, apps...)
	st, err := state.Open(filepath.Join(dir, "state"), state.Options{Create: true})
	if err != nil {
		t.Fatalf("state: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	if res, err := st.Ensure(g.Wants, false); err != nil || res.Errors() {
		t.Fatalf("state: %v %+v", err, res)
	}
	s := &Site{Spec: site, Gateway: g, State: st, Dir: dir, Root: filepath.Join(dir, "root"), Out: filepath.Join(dir, "out", site.Name)}
	s.Rewrite(t)
	return s
}

// Path is a gateway path under Root.
func (s *Site) Path(p string) string { return filepath.Join(s.Root, p) }

// Rewrite resolves the site again and writes the gateway's files, the
// OTA tree among them, as a build or push puts them on the gateway,
// recording the OTA releases it publishes; the nodes' bundles in Out
// stay as they were, as flashed nodes do. After a revocation it brings
// the gateway the new CRL.
func (s *Site) Rewrite(t TB) {
	t.Helper()
	r, err := s.Gateway.Resolve(s.State, time.Now())
	if err != nil {
		t.Fatalf("resolve: %v", err)
	}
	if err := r.Apply(desired.Folder{Root: s.Root}); err != nil {
		t.Fatalf("apply: %v", err)
	}
	for _, fw := range r.Firmware {
		if fw.Release != nil {
			if err := s.State.SaveRelease(fw.Name, *fw.Release); err != nil {
				t.Fatalf("%v", err)
			}
		}
	}
	s.Resolved = r
}

// Build is Rewrite, then the nodes' part of the build output in Out.
func (s *Site) Build(t TB) *outputs.Info {
	t.Helper()
	s.Rewrite(t)
	info, err := WriteNodes(s.Out, s.Spec, s.Resolved)
	if err != nil {
		t.Fatalf("writing the nodes: %v", err)
	}
	return info
}

// Update replaces the spec (and writes app images), as when a new
// firmware version is built for the gateway, and rewrites the gateway's
// files; the nodes still run what Out holds.
func (s *Site) Update(t TB, src string, apps ...AppFile) {
	t.Helper()
	s.Spec, s.Gateway, _ = Load(t, s.Dir, src, apps...)
	s.Rewrite(t)
}

// WriteNodes writes the resolved nodes' bundles in out/nodes/NODE and
// build-info.json with them, as appliance build does.
func WriteNodes(out string, site *spec.Site, r *desired.Resolved) (*outputs.Info, error) {
	info := &outputs.Info{Site: site.Name, Board: site.Gateway.Board, Hostname: site.Gateway.Hostname, Admin: site.Gateway.Admin.User}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, err
	}
	for _, n := range r.Nodes {
		dir := outputs.NodeDir(out, n.Name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		if err := n.Bundle.Write(dir); err != nil {
			return nil, fmt.Errorf("node %q: %w", n.Name, err)
		}
		node := outputs.Node{Name: n.Name, Firmware: n.Firmware.Name, Version: n.Firmware.Version, Chip: n.Firmware.Chip, App: n.Bundle.HasApp}
		if !n.CertExpires.IsZero() {
			node.CertExpires = n.CertExpires.UTC().Format(time.RFC3339)
		}
		info.Nodes = append(info.Nodes, node)
	}
	if err := outputs.WriteInfo(out, info); err != nil {
		return nil, err
	}
	return info, nil
}

// StateFile reads a file of the site's state.
func (s *Site) StateFile(t TB, rel string) []byte {
	t.Helper()
	b, err := s.State.ReadFile(rel)
	if err != nil {
		t.Fatalf("%v", err)
	}
	return b
}

// App is an ESP-IDF app image for a chip, laid out as elf2image
// --secure-pad-v2 lays one out, and its ELF, for tools that sign images
// built elsewhere.
func App(chip espimage.Chip, version string, secureVersion uint32) (image, elf []byte) {
	a := fwtest.App{Chip: chip, Version: version, Project: "sensor", SecureVersion: secureVersion, DataSize: 100000}
	return a.Image(), a.ELF()
}
