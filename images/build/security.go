package build

import (
	"context"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"

	"github.com/appliance/appliance/evidence"
	"github.com/appliance/appliance/images/tree"
)

// SecurityDir is the folder of the security evidence in the outputs.
const SecurityDir = "security"

// security writes the security evidence (package evidence) from the
// desired state's facts, the lock, and the changelogs in the root file
// system.
func (b *builder) security(ctx context.Context, dir string) error {
	s := b.step("security")
	req, err := b.opt.Gateway.Request()
	if err != nil {
		return err
	}
	var locked []evidence.Locked
	for _, p := range b.lock.Packages {
		locked = append(locked, evidence.Locked{Name: p.Name, Version: p.Version, Arch: p.Architecture, Source: p.Source, SourceVersion: p.SourceVersion, Repo: p.Repo})
	}
	sum, err := evidence.Write(ctx, filepath.Join(dir, SecurityDir), evidence.Input{
		Facts: b.opt.Gateway.Evidence, Locked: locked, Sources: req.Sources, Arch: b.opt.Gateway.Arch,
		Client: b.opt.Client, Cache: b.opt.Cache, ReadFile: b.rootFile, SBOM: filepath.Join(dir, SBOMName),
		// Dated as the image is, so that the same inputs give the same
		// folder.
		Now: b.mtime, Tool: "appliance " + b.opt.Version,
	})
	if err != nil {
		return fmt.Errorf("security evidence: %w", err)
	}
	note := "no security update pending"
	if len(sum.Updates) > 0 {
		var names []string
		for _, u := range sum.Updates {
			names = append(names, u.Name)
		}
		note = fmt.Sprintf("%d security updates pending (%s): run appliance lock", len(sum.Updates), strings.Join(names, ", "))
	}
	if sum.Unchecked != "" {
		note = "security suite not checked: " + sum.Unchecked
	}
	if len(b.opt.Gateway.Evidence.Contact) == 0 {
		note += "; security.txt names no contact: set site.contact in the spec"
	}
	s.done("%s/: VEX of %d fixed and %d open vulnerabilities, %s", SecurityDir, sum.Fixed, sum.Affected, note)
	return nil
}

// rootFile reads a file of the root file system, following the links
// of its folders (many packages share a documentation folder).
func (b *builder) rootFile(p string) ([]byte, error) {
	r, err := b.tree.Resolve(p)
	if err != nil {
		return nil, err
	}
	if e := b.tree.Get(r); e == nil || e.Type != tree.Regular {
		return nil, &fs.PathError{Op: "read", Path: "/" + p, Err: fs.ErrNotExist}
	}
	return treeSource{b.tree, b.opt.Cache}.ReadFile(r)
}
