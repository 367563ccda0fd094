package rootfs

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/appliance/appliance/images/apt"
	"github.com/appliance/appliance/images/cache"
	"github.com/appliance/appliance/images/deb"
	"github.com/appliance/appliance/images/tree"
	"golang.org/x/sync/errgroup"
	"pault.ag/go/debian/dependency"
	"pault.ag/go/debian/version"
)

// UnpackOptions tune Unpack.
type UnpackOptions struct {
	// SourceDateEpoch, when set, clamps every modification time to it
	// and dates what appliance generates (the dpkg database, the
	// merged-/usr links). Without it, those get the newest modification
	// time found in the packages, so the tree still depends only on the
	// lock.
	SourceDateEpoch *int64
	Progress        Progress
	// Client, when set (and online), downloads again what the cache
	// turns out to lack or to hold damaged: a .deb that is not the
	// lock's, or one needed because its package's unpacked form is gone,
	// altered or missing a blob. Without it such packages are reported
	// as a *MissingError.
	Client *apt.Client
}

// EpochFromEnv reads SOURCE_DATE_EPOCH from an environment list; nil
// when it is unset.
func EpochFromEnv(environ []string) (*int64, error) {
	for _, kv := range environ {
		if v, ok := strings.CutPrefix(kv, "SOURCE_DATE_EPOCH="); ok && v != "" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				return nil, fmt.Errorf("SOURCE_DATE_EPOCH=%q is not a number of seconds since 1970", v)
			}
			return &n, nil
		}
	}
	return nil, nil
}

// mergedUsr are the aliasing symlinks of the merged-/usr layout, per
// architecture: what trixie's base-files ships in its data.tar (on
// arm64: bin, lib and sbin; amd64 adds lib64). They are made before any
// package is unpacked, so a package's /bin/sh lands in /usr/bin/sh as
// dpkg would put it; base-files later replaces them with its identical
// links.
var mergedUsr = map[string][]string{
	"arm64": {"bin", "lib", "sbin"},
	"armhf": {"bin", "lib", "sbin"},
	"amd64": {"bin", "lib", "lib64", "sbin"},
}

// Unpack assembles the lock's packages into a file tree, with the dpkg
// database as dpkg --unpack leaves it. Packages not unpacked before are
// unpacked into the cache first, in parallel; after that, a build reads
// only manifests — each one checked against the SHA-256 recorded for it
// outside the cache (LockPackage.Unpacked, which a build loads from the
// site's state with LoadUnpacked). Unpack records that hash for every
// package it unpacks; SaveUnpacked keeps them. Nothing else in the cache
// is trusted: a manifest without the recorded hash, or whose blobs are
// gone, is made again from the .deb, and a .deb that is not the lock's
// is downloaded again (with opt.Client). Unpack stops when ctx is done.
func Unpack(ctx context.Context, l *Lock, ca *cache.Cache, opt UnpackOptions) (*tree.Tree, error) {
	manifests := make([]*Manifest, len(l.Packages))
	var todo []int
	for i, p := range l.Packages {
		if m, ok := readManifest(ca, p); ok {
			manifests[i] = m
			continue
		}
		todo = append(todo, i)
	}
	if err := unpackAll(ctx, l, ca, opt, todo, manifests); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	epoch := int64(0)
	if opt.SourceDateEpoch != nil {
		epoch = *opt.SourceDateEpoch
	} else {
		for _, m := range manifests {
			for _, e := range m.Entries {
				epoch = max(epoch, e.MTime)
			}
		}
	}
	u := newUnpacker(l.Arch, epoch)
	for i, p := range l.Packages {
		if err := u.apply(p.Name, manifests[i]); err != nil {
			return nil, err
		}
	}
	if err := u.writeDpkgDB(); err != nil {
		return nil, fmt.Errorf("writing the dpkg database: %w", err)
	}
	if opt.SourceDateEpoch != nil {
		u.t.Clamp(epoch)
	}
	return u.t, ctx.Err()
}

// unpackAll unpacks the packages todo indexes, downloading first the
// .debs that are not in the cache, and again those found damaged.
func unpackAll(ctx context.Context, l *Lock, ca *cache.Cache, opt UnpackOptions, todo []int, manifests []*Manifest) error {
	prog := opt.Progress
	if prog == nil {
		prog = NoProgress{}
	}
	for attempt := 0; len(todo) > 0; attempt++ {
		var missing []LockPackage
		for _, i := range todo {
			if !ca.Has("debs", l.Packages[i].SHA256) {
				missing = append(missing, l.Packages[i])
			}
		}
		if len(missing) > 0 {
			if opt.Client == nil || opt.Client.Offline || attempt > 1 {
				return &MissingError{Packages: missing}
			}
			if err := fetchPackages(ctx, opt.Client, missing, ca, prog); err != nil {
				return err
			}
		}
		damaged, err := unpackSome(ctx, l, ca, prog, todo, manifests)
		if err != nil {
			return err
		}
		todo = damaged
	}
	return nil
}

// unpackSome unpacks packages in parallel, recording their manifests'
// hashes in l; it returns those whose cached .deb was damaged
// (and is now removed).
func unpackSome(ctx context.Context, l *Lock, ca *cache.Cache, prog Progress, todo []int, manifests []*Manifest) ([]int, error) {
	// Largest first: the kernel alone is a third of the bytes, and
	// started last it would leave the other cores idle at the end.
	slices.SortStableFunc(todo, func(a, b int) int { return cmp.Compare(l.Packages[b].Size, l.Packages[a].Size) })
	var total int64
	for _, i := range todo {
		total += l.Packages[i].Size
	}
	prog.Begin("unpacking", len(todo), total)
	defer prog.End()
	var mu sync.Mutex
	var damaged []int
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(runtime.GOMAXPROCS(0))
	for _, i := range todo {
		g.Go(func() error {
			if err := gctx.Err(); err != nil {
				return err
			}
			m, sum, err := makeManifest(gctx, ca, l.Packages[i], l.Arch)
			var dd *damagedDebError
			if errors.As(err, &dd) {
				mu.Lock()
				damaged = append(damaged, i)
				mu.Unlock()
				return nil
			}
			if err != nil {
				return err
			}
			manifests[i] = m
			l.Packages[i].Unpacked = sum
			prog.Bytes(l.Packages[i].Size)
			prog.Item(l.Packages[i].Name)
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	slices.Sort(damaged)
	return damaged, nil
}

// unpacker assembles packages into a tree as dpkg --unpack would.
type unpacker struct {
	arch  string
	epoch int64
	t     *tree.Tree
	// owner is the package that owns each non-folder path of the tree.
	owner map[string]*unpacked
	order []*unpacked
}

// unpacked is a package in the tree.
type unpacked struct {
	name     string
	m        *Manifest
	ctrl     deb.Paragraph
	version  version.Version
	replaces []dependency.Possibility
	conff    map[string]bool // package paths of conffiles ("etc/x")
	// list holds the package's paths as dpkg's .list does ("/.",
	// "/etc", "/etc/x"); lost marks paths a later package took over.
	list []string
	lost map[string]bool
	// multiArchSame names the package "name:arch" in dpkg's files.
	multiArchSame bool
}

func newUnpacker(arch string, epoch int64) *unpacker {
	u := &unpacker{arch: arch, epoch: epoch, t: tree.New(), owner: map[string]*unpacked{}}
	u.t.Get("").MTime = epoch
	for _, l := range mergedUsr[arch] {
		u.t.Put(&tree.Entry{Path: "usr", Type: tree.Dir, Mode: 0o755, MTime: epoch})
		u.t.Put(&tree.Entry{Path: "usr/" + l, Type: tree.Dir, Mode: 0o755, MTime: epoch})
		u.t.Put(&tree.Entry{Path: l, Type: tree.Symlink, Mode: 0o777, Link: "usr/" + l, MTime: epoch})
	}
	return u
}

func (u *unpacker) dirTemplate() tree.Entry {
	return tree.Entry{Type: tree.Dir, Mode: 0o755, MTime: u.epoch}
}

// conffiles reads the conffiles member: one absolute path a line,
// optionally after flags ("remove-on-upgrade /etc/x"), which dpkg does
// not unpack.
func conffiles(m *Manifest) map[string]bool {
	out := map[string]bool{}
	mem := m.Member("conffiles")
	if mem == nil {
		return out
	}
	for _, line := range strings.Split(string(mem.Data), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) > 1 && f[0] == "remove-on-upgrade" {
			continue
		}
		out[strings.TrimPrefix(f[len(f)-1], "/")] = true
	}
	return out
}

func (u *unpacker) apply(name string, m *Manifest) error {
	ctrl, err := deb.ParseControl([]byte(m.Control))
	if err != nil {
		return fmt.Errorf("package %s: control file: %w", name, err)
	}
	pk := &unpacked{name: name, m: m, ctrl: ctrl, conff: conffiles(m), lost: map[string]bool{}, multiArchSame: ctrl.Get("Multi-Arch") == "same"}
	if pk.version, err = version.Parse(ctrl.Get("Version")); err != nil {
		return fmt.Errorf("package %s: version: %w", name, err)
	}
	if r := ctrl.Get("Replaces"); r != "" {
		d, err := dependency.Parse(r)
		if err != nil {
			return fmt.Errorf("package %s: Replaces: %w", name, err)
		}
		for _, rel := range d.Relations {
			pk.replaces = append(pk.replaces, rel.Possibilities...)
		}
	}
	for i := range m.Entries {
		if err := u.put(pk, &m.Entries[i]); err != nil {
			return fmt.Errorf("package %s: %w", name, err)
		}
	}
	u.order = append(u.order, pk)
	return nil
}

// replaces reports whether a's Replaces field covers b.
func (a *unpacked) replacesPkg(b *unpacked) bool {
	for _, p := range a.replaces {
		if p.Name == b.name && (p.Version == nil || p.Version.SatisfiedBy(b.version)) {
			return true
		}
	}
	return false
}

func (u *unpacker) put(pk *unpacked, e *tree.Entry) error {
	p := e.Path
	if p == "" {
		pk.list = append(pk.list, "/.")
		return nil
	}
	pk.list = append(pk.list, "/"+p)
	rp, err := u.t.Resolve(p)
	if err != nil {
		return err
	}
	if e.Type == tree.Regular && pk.conff[p] {
		// dpkg unpacks a conffile beside its place; dpkg --configure
		// moves it there.
		rp += ".dpkg-new"
	}
	ex := u.t.Get(rp)
	if e.Type == tree.Dir {
		if ex != nil {
			switch ex.Type {
			case tree.Dir:
				return nil
			case tree.Symlink:
				// A folder over a symlink to a folder keeps the symlink,
				// as merged /usr needs: /lib stays a link to usr/lib.
				q, err := u.t.Resolve(rp + "/.")
				var esc *tree.EscapeError
				if errors.As(err, &esc) {
					esc.Path = p
					return esc
				}
				if err != nil {
					return fmt.Errorf("/%s: %w", p, err)
				}
				if d := u.t.Get(q); d == nil || d.Type != tree.Dir {
					return fmt.Errorf("/%s: a folder, but the tree has a symlink there to /%s, which is not a folder", p, q)
				}
				return nil
			}
			return fmt.Errorf("/%s: a folder, but %s put a %s there", p, ownerName(u.owner[rp]), ex.Type)
		}
		if err := u.t.MkdirAll(parent(rp), u.dirTemplate()); err != nil {
			return fmt.Errorf("/%s: %w", p, err)
		}
		ne := *e
		ne.Path, ne.Package = rp, pk.name
		return u.t.Put(&ne)
	}
	if ex != nil {
		if ex.Type == tree.Dir {
			return fmt.Errorf("/%s: a %s, but there is a folder there", p, e.Type)
		}
		if old := u.owner[rp]; old != nil && old != pk {
			switch {
			case pk.replacesPkg(old):
				old.lost["/"+strings.TrimSuffix(rp, ".dpkg-new")] = true
			case old.replacesPkg(pk):
				pk.lost["/"+p] = true
				return nil
			default:
				return fmt.Errorf("/%s is also in package %s, and neither Replaces the other", p, old.name)
			}
		}
	}
	if err := u.t.MkdirAll(parent(rp), u.dirTemplate()); err != nil {
		return fmt.Errorf("/%s: %w", p, err)
	}
	ne := *e
	ne.Path, ne.Package = rp, pk.name
	if e.Type == tree.Hardlink {
		tp, err := u.t.Resolve(e.Link)
		if err != nil {
			return fmt.Errorf("/%s: hard link to /%s: %w", p, e.Link, err)
		}
		if pk.conff[e.Link] {
			tp += ".dpkg-new"
		}
		target := u.t.Get(tp)
		if target != nil && target.Type == tree.Hardlink {
			tp, target = target.Link, u.t.Get(target.Link)
		}
		if target == nil || target.Type != tree.Regular {
			return fmt.Errorf("/%s: hard link to /%s, which is not a file of the tree", p, e.Link)
		}
		// One inode: the link has its target's metadata.
		ne.Link, ne.Size = tp, target.Size
		ne.Mode, ne.UID, ne.GID, ne.MTime = target.Mode, target.UID, target.GID, target.MTime
	}
	if err := u.t.Put(&ne); err != nil {
		return err
	}
	u.owner[rp] = pk
	return nil
}

func ownerName(p *unpacked) string {
	if p == nil {
		return "appliance"
	}
	return "package " + p.name
}

func parent(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[:i]
	}
	return ""
}
