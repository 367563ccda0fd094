package apply

import (
	"context"
	"fmt"
	"path"
	"sort"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/appliance/appliance/generation"
)

// verify refuses, before anything changes, what apply must not do: a
// write through a link, a folder that is missing or is something else,
// an owner nobody makes, content that is missing or is not what its
// name says. It returns where each file's content is (a SHA-256 to a
// path on the gateway) and what must be copied into the store first.
func (a *applier) verify(p plan, d *generation.Diff) (*sources, error) {
	if err := a.checkPaths(p, d); err != nil {
		return nil, err
	}
	acc, err := a.readAccounts()
	if err != nil {
		return nil, err
	}
	if err := acc.check(p.to); err != nil {
		return nil, err
	}
	src, err := a.findContent(p, d)
	if err != nil {
		return nil, err
	}
	if p.staged {
		for _, pkg := range d.Packages {
			if err := a.checkDeb(pkg); err != nil {
				return nil, err
			}
		}
	}
	return src, nil
}

// lstat is Lstat beneath the root; a missing parent is a missing name.
func (a *applier) lstat(p string) (unix.Stat_t, bool, error) {
	n, err := a.fs.at(p)
	if isNotExist(err) {
		return unix.Stat_t{}, false, nil
	}
	if err != nil {
		return unix.Stat_t{}, false, err
	}
	defer n.close()
	return n.lstat()
}

// checkPaths walks down to every path the diff touches: each folder on
// the way must be a real folder on the gateway, or missing and made by
// the generation.
func (a *applier) checkPaths(p plan, d *generation.Diff) error {
	dirs, old := map[string]bool{}, map[string]bool{}
	for _, e := range p.to.Entries {
		if e.Type == generation.Dir {
			dirs[e.Path] = true
		}
	}
	if p.from != nil {
		for _, e := range p.from.Entries {
			old[e.Path] = true
		}
	}
	for _, e := range p.to.Entries {
		if strings.HasSuffix(e.Path, ".appliance-tmp") {
			return fmt.Errorf("%s: names ending in .appliance-tmp are apply's temporary files", e.Path)
		}
	}
	seen := map[string]bool{}
	way := func(target string, removing bool) error {
		var up []string
		for q := path.Dir(target); q != "/"; q = path.Dir(q) {
			up = append(up, q)
		}
		for i := len(up) - 1; i >= 0; i-- {
			q := up[i]
			if seen[q] {
				continue
			}
			seen[q] = true
			st, ok, err := a.lstat(q)
			switch {
			case err != nil:
				return err
			case !ok && !dirs[q] && !removing:
				return fmt.Errorf("%s: folder %s is not on the gateway and generation %d does not make it: add it to the generation as a folder", target, q, p.to.Generation)
			case !ok || st.Mode&unix.S_IFMT == unix.S_IFDIR:
			case st.Mode&unix.S_IFMT == unix.S_IFLNK:
				t, _ := a.fs.readlink(q)
				return fmt.Errorf("%s: %s is a link on the gateway (-> %s); appliance writes nothing through a link: name the real folder in the generation instead", target, q, t)
			case !dirs[q] || !old[q]:
				return fmt.Errorf("%s: %s is a %s on the gateway, not a folder", target, q, kindOf(st))
			}
		}
		return nil
	}
	for _, e := range append(append([]generation.Entry(nil), d.Added...), d.Changed...) {
		if err := way(e.Path, false); err != nil {
			return err
		}
		st, ok, err := a.lstat(e.Path)
		if err != nil {
			return err
		}
		if ok && e.Type == generation.Dir && st.Mode&unix.S_IFMT == unix.S_IFLNK {
			t, _ := a.fs.readlink(e.Path)
			return fmt.Errorf("%s is a link on the gateway (-> %s) where generation %d has a folder: remove the link, or name the real folder", e.Path, t, p.to.Generation)
		}
		if ok && typeOf(st) == "" {
			return fmt.Errorf("%s is a %s on the gateway; appliance manages only files, folders and links: move it away", e.Path, kindOf(st))
		}
	}
	for _, e := range d.Removed {
		// What is to go may be gone already, with its folder.
		if err := way(e.Path, true); err != nil {
			return err
		}
	}
	return nil
}

func (f *fsys) readlink(p string) (string, error) {
	n, err := f.at(p)
	if err != nil {
		return "", err
	}
	defer n.close()
	return n.readlink()
}

// sources says where the content of each file to write is.
type sources struct {
	// at maps a SHA-256 to a path on the gateway with those bytes,
	// which stays so while the generation installs.
	at map[string]string
	// stash are current files whose bytes another path needs: the
	// install may replace them, so they go into the store first
	// (SHA-256 to path).
	stash map[string]string
}

// findContent finds every new file's bytes: at its own path already,
// in staging/blobs (a switch), in the store, or in a file of the
// current generation, each checked against its SHA-256 here and again
// when copied.
func (a *applier) findContent(p plan, d *generation.Diff) (*sources, error) {
	src := &sources{at: map[string]string{}, stash: map[string]string{}}
	current := map[string][]string{}
	if p.from != nil {
		for _, e := range p.from.Entries {
			if e.Type == generation.File {
				current[e.SHA256] = append(current[e.SHA256], e.Path)
			}
		}
	}
	var missing []string
	for _, e := range append(append([]generation.Entry(nil), d.Added...), d.Changed...) {
		if e.Type != generation.File {
			continue
		}
		if _, ok := src.at[e.SHA256]; ok {
			continue
		}
		if sum, err := a.fs.hashFile(e.Path); err == nil && sum == e.SHA256 {
			src.at[e.SHA256] = e.Path
			continue
		}
		found, err := a.findBlob(p, e.SHA256, current[e.SHA256], src)
		if err != nil {
			return nil, err
		}
		if !found {
			missing = append(missing, fmt.Sprintf("%s (SHA-256 %s)", e.Path, e.SHA256))
		}
	}
	if len(missing) == 0 {
		return src, nil
	}
	if p.staged {
		return nil, fmt.Errorf("the content of %s is neither staged nor on the gateway: push must upload it to %s/blobs, named by its SHA-256", strings.Join(missing, ", "), stagingDir)
	}
	return nil, fmt.Errorf("the content of %s is no longer on the gateway: push generation %d again instead of rolling back", strings.Join(missing, ", "), p.to.Generation)
}

func (a *applier) findBlob(p plan, sha string, current []string, src *sources) (bool, error) {
	var places []string
	if p.staged {
		places = append(places, stagingDir+"/blobs/"+sha)
	}
	places = append(places, storeDir+"/"+sha)
	for _, q := range places {
		sum, err := a.fs.hashFile(q)
		if isNotExist(err) {
			continue
		}
		if err != nil {
			return false, err
		}
		if sum != sha {
			return false, fmt.Errorf("%s is damaged or was tampered with: its content's SHA-256 is %s; remove it and push again", q, sum)
		}
		src.at[sha] = q
		return true, nil
	}
	for _, q := range current {
		if sum, err := a.fs.hashFile(q); err == nil && sum == sha {
			src.at[sha] = storeDir + "/" + sha
			src.stash[sha] = q
			return true, nil
		}
	}
	return false, nil
}

// stash copies the current files whose bytes the new generation needs
// elsewhere into the store, before the install may replace them.
func (a *applier) stash(src *sources) error {
	shas := make([]string, 0, len(src.stash))
	for sha := range src.stash {
		shas = append(shas, sha)
	}
	sort.Strings(shas)
	for _, sha := range shas {
		s, err := a.fs.at(src.stash[sha])
		if err != nil {
			return err
		}
		r, err := s.open()
		if err != nil {
			s.close()
			return err
		}
		n, err := a.fs.at(storeDir + "/" + sha)
		if err == nil {
			n.durable = false // save flushes the store
			_, err = n.writeFile(r, sha, 0o600, 0, 0)
			n.close()
		}
		r.Close()
		s.close()
		if err != nil {
			return fmt.Errorf("copying %s into the store: %w", src.stash[sha], err)
		}
	}
	return nil
}

func debPath(pkg generation.Package) string { return stagingDir + "/debs/" + pkg.Name + ".deb" }

func (a *applier) checkDeb(pkg generation.Package) error {
	sum, err := a.fs.hashFile(debPath(pkg))
	if isNotExist(err) {
		return fmt.Errorf("package %s %s: %s is missing: push must upload it", pkg.Name, pkg.Version, debPath(pkg))
	}
	if err != nil {
		return fmt.Errorf("package %s: %w", pkg.Name, err)
	}
	if sum != pkg.SHA256 {
		return fmt.Errorf("package %s %s: %s has SHA-256 %s, not the lock's %s: push again", pkg.Name, pkg.Version, debPath(pkg), sum, pkg.SHA256)
	}
	return nil
}

// installPackages installs the staged packages with dpkg, from copies
// checked against their SHA-256 in a folder only root writes. Packages
// are not rolled back: a rollback restores files, and the previous
// generation runs on the newer packages.
func (a *applier) installPackages(ctx context.Context, pkgs []generation.Package) error {
	if err := a.fs.mkdirAll(debsDir, 0o700); err != nil {
		return err
	}
	defer a.removeDebs(pkgs)
	args := []string{"--force-confold", "--force-confdef"}
	if a.fs.root != "/" {
		args = append(args, "--root="+a.fs.root)
	}
	args = append(args, "-i")
	var names []string
	for _, pkg := range pkgs {
		s, err := a.fs.at(debPath(pkg))
		if err != nil {
			return err
		}
		r, err := s.open()
		if err != nil {
			s.close()
			return err
		}
		n, err := a.fs.at(debsDir + "/" + pkg.Name + ".deb")
		if err == nil {
			n.durable = false // read by dpkg now, not needed after a crash
			_, err = n.writeFile(r, pkg.SHA256, 0o600, 0, 0)
			n.close()
		}
		r.Close()
		s.close()
		if err != nil {
			return fmt.Errorf("package %s: %w", pkg.Name, err)
		}
		args = append(args, a.fs.host(debsDir+"/"+pkg.Name+".deb"))
		names = append(names, pkg.Name+" "+pkg.Version)
	}
	a.event("install", "installing packages: "+strings.Join(names, ", "))
	if err := a.runTool(ctx, a.opt.Dpkg, args...); err != nil {
		return fmt.Errorf("installing packages (no file of the generation was changed yet): %w", err)
	}
	a.event("install", "packages installed")
	return nil
}

func (a *applier) removeDebs(pkgs []generation.Package) {
	for _, pkg := range pkgs {
		a.remove(debsDir+"/"+pkg.Name+".deb", false)
	}
}
