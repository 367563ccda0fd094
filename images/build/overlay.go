package build

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path"
	"strings"

	"github.com/appliance/appliance/desired"
	"github.com/appliance/appliance/generation"
	"github.com/appliance/appliance/images/tree"
)

// overlay adds the site to the unpacked packages: the accounts, then
// the desired gateway — folders, files, links — and appliance's
// programs.
func (b *builder) overlay(t *tree.Tree) error {
	s := b.step("site")
	mtime := b.mtime.Unix()
	read := func(p string) ([]byte, error) {
		e := t.Get(p)
		if e == nil || e.Type != tree.Regular {
			return nil, fmt.Errorf("/%s is missing (package base-passwd)", p)
		}
		return os.ReadFile(b.opt.Cache.BlobPath(e.Blob))
	}
	pm, err := read("usr/share/base-passwd/passwd.master")
	if err != nil {
		return err
	}
	gm, err := read("usr/share/base-passwd/group.master")
	if err != nil {
		return err
	}
	acct, err := newAccounts(pm, gm)
	if err != nil {
		return err
	}
	if err := acct.add(b.opt.Gateway.Users, b.opt.Gateway.Groups); err != nil {
		return err
	}
	b.acct = acct
	shadowGID, err := acct.gid("shadow")
	if err != nil {
		return err
	}
	passwd, group, shadow, gshadow := acct.files(mtime / 86400)

	put := func(p string, mode uint32, uid, gid int, data []byte) error {
		return b.putFile(t, p, mode, uid, gid, data, mtime)
	}
	for _, f := range []struct {
		path string
		mode uint32
		gid  int
		data []byte
	}{
		{"etc/passwd", 0o644, 0, passwd}, {"etc/group", 0o644, 0, group},
		{"etc/shadow", 0o640, shadowGID, shadow}, {"etc/gshadow", 0o640, shadowGID, gshadow},
		// systemd makes the machine ID on the first boot, not here: every
		// gateway built from one image must get its own.
		{"etc/machine-id", 0o444, 0, nil},
	} {
		if err := put(f.path, f.mode, 0, f.gid, f.data); err != nil {
			return err
		}
	}

	if err := b.gw.Apply(&treeTarget{b: b, t: t, acct: acct, mtime: mtime}); err != nil {
		return err
	}
	var progs []desired.Program
	for _, p := range b.progs {
		if err := put(strings.TrimPrefix(p.Path, "/"), 0o755, 0, 0, p.Data); err != nil {
			return err
		}
		progs = append(progs, desired.Program{Path: p.Path, Data: p.Data})
	}
	if err := b.generation(t, progs, mtime); err != nil {
		return err
	}
	s.done("%d files, %d accounts, %d programs", len(b.gw.Files), len(acct.passwd), len(b.progs))
	return nil
}

// generation records the image's managed files as generation 1, which
// push makes the next generations of.
func (b *builder) generation(t *tree.Tree, progs []desired.Program, mtime int64) error {
	var pkgs []generation.Package
	for _, p := range b.lock.Packages {
		pkgs = append(pkgs, generation.Package{Name: p.Name, Version: p.Version, Arch: p.Architecture, SHA256: p.SHA256})
	}
	g := b.gw.Generation(1, b.mtime, b.opt.Version, progs, pkgs)
	data, err := g.Manifest.Marshal()
	if err != nil {
		return err
	}
	manifest, current, target := desired.GenerationFiles(1)
	gens := strings.TrimPrefix(path.Dir(path.Dir(manifest)), "/")
	if err := t.MkdirAll(gens, tree.Entry{Type: tree.Dir, Mode: 0o755, MTime: mtime}); err != nil {
		return err
	}
	e := *t.Get(gens)
	e.Mode = 0o700
	if err := t.Put(&e); err != nil {
		return err
	}
	if err := b.putFile(t, strings.TrimPrefix(manifest, "/"), 0o600, 0, 0, data, mtime); err != nil {
		return err
	}
	return b.putLink(t, strings.TrimPrefix(current, "/"), target, mtime)
}

// treeTarget applies the desired gateway to the image's file tree, its
// accounts resolved by the image's passwd and group.
type treeTarget struct {
	b     *builder
	t     *tree.Tree
	acct  *accounts
	mtime int64
}

func (tt *treeTarget) ids(what, owner, group string) (int, int, error) {
	uid, err1 := tt.acct.uid(owner)
	gid, err2 := tt.acct.gid(group)
	if err := errors.Join(err1, err2); err != nil {
		return 0, 0, fmt.Errorf("%s: %w", what, err)
	}
	return uid, gid, nil
}

// Dir implements desired.Target.
func (tt *treeTarget) Dir(d desired.Dir) error {
	uid, gid, err := tt.ids(d.Path, d.Owner, d.Group)
	if err != nil {
		return err
	}
	p := strings.TrimPrefix(d.Path, "/")
	if err := tt.t.MkdirAll(p, tree.Entry{Type: tree.Dir, Mode: 0o755, MTime: tt.mtime}); err != nil {
		return err
	}
	e := *tt.t.Get(p)
	e.Mode, e.UID, e.GID = uint32(d.Mode.Perm()), uid, gid
	return tt.t.Put(&e)
}

// File implements desired.Target.
func (tt *treeTarget) File(f desired.File) error {
	uid, gid, err := tt.ids(f.Path, f.Owner, f.Group)
	if err != nil {
		return err
	}
	return tt.b.putFile(tt.t, strings.TrimPrefix(f.Path, "/"), uint32(f.Mode.Perm()), uid, gid, f.Data, tt.mtime)
}

// Symlink implements desired.Target.
func (tt *treeTarget) Symlink(l desired.Symlink) error {
	return tt.b.putLink(tt.t, strings.TrimPrefix(l.Path, "/"), l.Target, tt.mtime)
}

// putFile puts a file made by appliance into the tree; content goes to
// the blob store like a package's, so the image writer treats it alike.
func (b *builder) putFile(t *tree.Tree, p string, mode uint32, uid, gid int, data []byte, mtime int64) error {
	if err := t.MkdirAll(path.Dir(p), tree.Entry{Type: tree.Dir, Mode: 0o755, MTime: mtime}); err != nil {
		return err
	}
	sum := sha256.Sum256(data)
	blob := hex.EncodeToString(sum[:])
	if !b.opt.Cache.Has("blobs", blob) {
		if err := b.opt.Cache.PutHashed("blobs", blob, data); err != nil {
			return err
		}
	}
	real, err := t.Resolve(p)
	if err != nil {
		return err
	}
	return t.Put(&tree.Entry{Path: real, Type: tree.Regular, Mode: mode, UID: uid, GID: gid, MTime: mtime, Size: int64(len(data)), Blob: blob})
}

func (b *builder) putLink(t *tree.Tree, p, target string, mtime int64) error {
	if err := t.MkdirAll(path.Dir(p), tree.Entry{Type: tree.Dir, Mode: 0o755, MTime: mtime}); err != nil {
		return err
	}
	real, err := t.Resolve(p)
	if err != nil {
		return err
	}
	return t.Put(&tree.Entry{Path: real, Type: tree.Symlink, Mode: 0o777, MTime: mtime, Link: target})
}
