package desired

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/appliance/appliance/modules"
)

// Dir and Symlink are a folder and a link on the gateway, as the modules
// ask for them.
type (
	Dir     = modules.Dir
	Symlink = modules.Symlink
)

// Listener is a port the gateway listens on; Network ones are reachable
// from outside, through the firewall.
type Listener = modules.Listener

// Network binds a listener to every interface.
const Network = modules.Network

// User and Group are accounts the gateway needs, with fixed IDs.
type (
	User  = modules.User
	Group = modules.Group
)

// Target is where a desired gateway is applied: the image's file tree,
// a folder on this machine in tests, the live gateway over SFTP.
// Paths are absolute on the gateway ("/etc/hostname").
type Target interface {
	Dir(d Dir) error
	File(f File) error
	Symlink(l Symlink) error
}

// Apply puts the gateway on t in one order: folders, then files, then
// links, each by path, so that a file's folder exists before it and a
// link may point at a file just written.
func (r *Resolved) Apply(t Target) error {
	for _, d := range r.Dirs {
		if err := t.Dir(d); err != nil {
			return err
		}
	}
	for _, f := range r.Files {
		if err := t.File(f); err != nil {
			return err
		}
	}
	for _, l := range r.Symlinks {
		if err := t.Symlink(l); err != nil {
			return err
		}
	}
	return nil
}

// Folder is a Target on this machine: the gateway's paths under Root,
// for tests that run the real programs with the gateway's files.
// Ownership is left as it is: only root may set it.
type Folder struct{ Root string }

func (f Folder) path(p string) string { return filepath.Join(f.Root, filepath.FromSlash(p)) }

// Dir implements Target.
func (f Folder) Dir(d Dir) error {
	p := f.path(d.Path)
	if err := os.MkdirAll(p, 0o755); err != nil {
		return err
	}
	return os.Chmod(p, d.Mode.Perm())
}

// File implements Target.
func (f Folder) File(file File) error {
	p := f.path(file.Path)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(p, file.Data, file.Mode.Perm()); err != nil {
		return err
	}
	return os.Chmod(p, file.Mode.Perm())
}

// Symlink implements Target.
func (f Folder) Symlink(l Symlink) error {
	p := f.path(l.Path)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return os.Symlink(l.Target, p)
}
