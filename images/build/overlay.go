package build

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path"
	"strings"

	"github.com/appliance/appliance/bootinit"
	"github.com/appliance/appliance/images/disk"
	"github.com/appliance/appliance/images/tree"
)

// overlay adds the site to the unpacked packages: accounts, the modules'
// files, folders and links, the gateway's programs, fstab, and what the
// first boot needs.
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
	if err := acct.add(b.opt.Gateway.Modules.Users(), b.opt.Gateway.Modules.Groups()); err != nil {
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
	dirTmpl := tree.Entry{Type: tree.Dir, Mode: 0o755, MTime: mtime}
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

	for _, c := range b.opt.Gateway.Modules.Contributions {
		for _, d := range c.Dirs {
			uid, err1 := acct.uid(d.Owner)
			gid, err2 := acct.gid(d.Group)
			if err1 != nil || err2 != nil {
				return fmt.Errorf("%s: %v %v", d.Path, err1, err2)
			}
			p := strings.TrimPrefix(d.Path, "/")
			if err := t.MkdirAll(p, dirTmpl); err != nil {
				return err
			}
			e := *t.Get(p)
			e.Mode, e.UID, e.GID = uint32(d.Mode.Perm()), uid, gid
			if err := t.Put(&e); err != nil {
				return err
			}
		}
	}
	for _, f := range b.files {
		uid, err1 := acct.uid(f.Owner)
		gid, err2 := acct.gid(f.Group)
		if err1 != nil || err2 != nil {
			return fmt.Errorf("%s: %v %v", f.Path, err1, err2)
		}
		if err := put(strings.TrimPrefix(f.Path, "/"), uint32(f.Mode.Perm()), uid, gid, f.Data); err != nil {
			return err
		}
	}
	for _, c := range b.opt.Gateway.Modules.Contributions {
		for _, l := range c.Symlinks {
			if err := b.putLink(t, strings.TrimPrefix(l.Path, "/"), l.Target, mtime); err != nil {
				return err
			}
		}
	}
	for _, p := range b.progs {
		if err := put(strings.TrimPrefix(p.Path, "/"), 0o755, 0, 0, p.Data); err != nil {
			return err
		}
	}

	// The boot partition is mounted where Raspberry Pi OS mounts it.
	layoutID, _, _, _, err := b.ids()
	if err != nil {
		return err
	}
	l := disk.Layout{DiskID: layoutID}
	fstab := fmt.Sprintf("# Written by appliance. The root grows to the card on the first boot.\nPARTUUID=%s\t/\text4\tdefaults,noatime,errors=remount-ro\t0\t1\nPARTUUID=%s\t/boot/firmware\tvfat\tdefaults,noatime,umask=0077,nofail\t0\t2\n",
		l.RootPartUUID(), l.BootPartUUID())
	if err := put("etc/fstab", 0o644, 0, 0, []byte(fstab)); err != nil {
		return err
	}
	if err := t.MkdirAll("boot/firmware", dirTmpl); err != nil {
		return err
	}
	// A failed first boot shows in the journal and makes the system
	// degraded; the marker it checks is written by appliance's init.
	check := fmt.Sprintf("# Written by appliance.\n[Unit]\nDescription=Report a failed appliance first boot\nConditionPathExists=%s\n\n[Service]\nType=oneshot\nExecStart=%s --check\n\n[Install]\nWantedBy=multi-user.target\n", bootinit.FailedMarker, bootinit.InitPath)
	if err := put("etc/systemd/system/appliance-firstboot-check.service", 0o644, 0, 0, []byte(check)); err != nil {
		return err
	}
	if err := b.putLink(t, "etc/systemd/system/multi-user.target.wants/appliance-firstboot-check.service", "/etc/systemd/system/appliance-firstboot-check.service", mtime); err != nil {
		return err
	}
	s.done("%d files, %d accounts, %d programs", len(b.files), len(acct.passwd), len(b.progs))
	return nil
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
