package apply

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/appliance/appliance/generation"
)

// fsys reaches paths beneath the root without following any link: a
// folder is opened with openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS),
// and every change is made relative to that folder's descriptor, so a
// link planted anywhere on the way (or swapped in between a check and a
// write) makes the operation fail instead of writing elsewhere.
type fsys struct {
	root string
	fd   int
}

func openRoot(dir string) (*fsys, error) {
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("opening the root %s: %w", dir, err)
	}
	return &fsys{root: dir, fd: fd}, nil
}

func (f *fsys) close() { unix.Close(f.fd) }

// host is where p lies on this machine, for programs run on it.
func (f *fsys) host(p string) string { return path.Join(f.root, p) }

// dir opens the folder p (absolute, clean).
func (f *fsys) dir(p string) (*os.File, error) {
	rel := strings.TrimPrefix(p, "/")
	if rel == "" {
		rel = "."
	}
	how := unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	}
	for {
		fd, err := unix.Openat2(f.fd, rel, &how)
		if err == unix.EINTR || err == unix.EAGAIN {
			continue
		}
		if err == unix.ELOOP || err == unix.ENOTDIR {
			if l := f.linkOnWay(p); l != "" {
				return nil, fmt.Errorf("%s: a link on the gateway lies on the way (%s); appliance writes nothing through a link", p, l)
			}
		}
		if err != nil {
			return nil, &fs.PathError{Op: "open", Path: p, Err: err}
		}
		return os.NewFile(uintptr(fd), p), nil
	}
}

// linkOnWay names the first link among p and its parents, for errors.
func (f *fsys) linkOnWay(p string) string {
	q := ""
	for _, c := range strings.Split(strings.TrimPrefix(p, "/"), "/") {
		q += "/" + c
		if t, err := os.Readlink(f.host(q)); err == nil {
			return q + " -> " + t
		}
	}
	return ""
}

// node is one name in an opened folder. A durable node syncs each
// change (the file's bytes before its rename, the folder after); a
// batch of changes clears durable and syncs once at its end (flush).
type node struct {
	d       *os.File
	name    string
	path    string
	durable bool
}

// at opens p's folder. The root itself is not a node.
func (f *fsys) at(p string) (*node, error) {
	if !path.IsAbs(p) || path.Clean(p) != p || p == "/" {
		return nil, fmt.Errorf("%q: not an absolute, clean path beneath the root", p)
	}
	d, err := f.dir(path.Dir(p))
	if err != nil {
		return nil, err
	}
	return &node{d: d, name: path.Base(p), path: p, durable: true}, nil
}

func (n *node) close()   { n.d.Close() }
func (n *node) dfd() int { return int(n.d.Fd()) }

func (n *node) err(op string, err error) error { return &fs.PathError{Op: op, Path: n.path, Err: err} }

// lstat says what the name is; ok is false when it does not exist.
func (n *node) lstat() (st unix.Stat_t, ok bool, err error) {
	err = unix.Fstatat(n.dfd(), n.name, &st, unix.AT_SYMLINK_NOFOLLOW)
	if err == unix.ENOENT {
		return st, false, nil
	}
	if err != nil {
		return st, false, n.err("lstat", err)
	}
	return st, true, nil
}

// open opens the name for reading if it is a regular file.
func (n *node) open() (*os.File, error) {
	fd, err := unix.Openat(n.dfd(), n.name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err == unix.ELOOP {
		return nil, fmt.Errorf("%s is a link; appliance reads no file through a link", n.path)
	}
	if err != nil {
		return nil, n.err("open", err)
	}
	f := os.NewFile(uintptr(fd), n.path)
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s is not a regular file", n.path)
	}
	return f, nil
}

func (n *node) readAll(limit int64) ([]byte, error) {
	f, err := n.open()
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err == nil && int64(len(b)) > limit {
		err = fmt.Errorf("%s is larger than %d bytes", n.path, limit)
	}
	return b, err
}

// tmpName is the name a replacement is written under before the
// rename; it is fixed per path so that whoever restores the path
// finds and removes a leftover of an interrupted write.
func (n *node) tmpName() string { return "." + n.name + ".appliance-tmp" }

func (n *node) removeTmp() error {
	if err := unix.Unlinkat(n.dfd(), n.tmpName(), 0); err != nil && err != unix.ENOENT {
		return n.err("removing the leftover", err)
	}
	return nil
}

// writeFile replaces the name with r's bytes, owned by uid:gid with
// mode: written under tmpName, synced, renamed over, and the folder
// synced. When want is set, the bytes must hash to it or nothing is
// replaced. It returns the bytes' SHA-256.
func (n *node) writeFile(r io.Reader, want string, mode uint32, uid, gid int) (string, error) {
	if err := n.removeTmp(); err != nil {
		return "", err
	}
	fd, err := unix.Openat(n.dfd(), n.tmpName(), unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return "", n.err("creating", err)
	}
	tmp := os.NewFile(uintptr(fd), n.path)
	h := sha256.New()
	_, err = io.Copy(io.MultiWriter(tmp, h), r)
	sum := hex.EncodeToString(h.Sum(nil))
	if err == nil && want != "" && sum != want {
		err = fmt.Errorf("its content's SHA-256 is %s, not %s", sum, want)
	}
	if err == nil && n.durable {
		err = tmp.Sync()
	}
	if err == nil {
		// chown clears set-ID bits, so the mode comes after.
		err = unix.Fchown(fd, uid, gid)
	}
	if err == nil {
		err = unix.Fchmod(fd, mode)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = unix.Renameat(n.dfd(), n.tmpName(), n.dfd(), n.name)
	}
	if err != nil {
		unix.Unlinkat(n.dfd(), n.tmpName(), 0)
		return "", fmt.Errorf("writing %s: %w", n.path, err)
	}
	return sum, n.sync()
}

// own sets the owner and mode of the existing regular file or folder.
func (n *node) own(dir bool, mode uint32, uid, gid int) error {
	flags := unix.O_RDONLY | unix.O_NOFOLLOW | unix.O_NONBLOCK | unix.O_CLOEXEC
	if dir {
		flags |= unix.O_DIRECTORY
	}
	fd, err := unix.Openat(n.dfd(), n.name, flags, 0)
	if err != nil {
		return n.err("open", err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return n.err("stat", err)
	}
	if isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR; isDir != dir || (!dir && st.Mode&unix.S_IFMT != unix.S_IFREG) {
		return fmt.Errorf("%s changed type under appliance-apply", n.path)
	}
	if err := unix.Fchown(fd, uid, gid); err != nil {
		return n.err("chown", err)
	}
	if err := unix.Fchmod(fd, mode); err != nil {
		return n.err("chmod", err)
	}
	if !n.durable {
		return nil
	}
	return unix.Fsync(fd)
}

func (n *node) mkdir() error {
	if err := unix.Mkdirat(n.dfd(), n.name, 0o700); err != nil {
		return n.err("mkdir", err)
	}
	return n.sync()
}

// symlink points the name at target, replacing what is there by rename.
func (n *node) symlink(target string) error {
	if err := n.removeTmp(); err != nil {
		return err
	}
	if err := unix.Symlinkat(target, n.dfd(), n.tmpName()); err != nil {
		return n.err("symlink", err)
	}
	if err := unix.Renameat(n.dfd(), n.tmpName(), n.dfd(), n.name); err != nil {
		unix.Unlinkat(n.dfd(), n.tmpName(), 0)
		return n.err("rename", err)
	}
	return n.sync()
}

func (n *node) readlink() (string, error) {
	buf := make([]byte, unix.PathMax)
	k, err := unix.Readlinkat(n.dfd(), n.name, buf)
	if err != nil {
		return "", n.err("readlink", err)
	}
	return string(buf[:k]), nil
}

// remove removes the name; a folder only when empty (notEmpty is then
// true and nothing is removed).
func (n *node) remove(dir bool) (notEmpty bool, err error) {
	flags := 0
	if dir {
		flags = unix.AT_REMOVEDIR
	}
	err = unix.Unlinkat(n.dfd(), n.name, flags)
	switch {
	case err == unix.ENOENT:
		return false, nil
	case err == unix.ENOTEMPTY || err == unix.EEXIST:
		return true, nil
	case err != nil:
		return false, n.err("remove", err)
	}
	return false, n.sync()
}

func (n *node) sync() error {
	if !n.durable {
		return nil
	}
	if err := unix.Fsync(n.dfd()); err != nil {
		return fmt.Errorf("syncing %s: %w", path.Dir(n.path), err)
	}
	return nil
}

// hashFile is the SHA-256 of the regular file at p.
func (f *fsys) hashFile(p string) (string, error) {
	n, err := f.at(p)
	if err != nil {
		return "", err
	}
	defer n.close()
	r, err := n.open()
	if err != nil {
		return "", err
	}
	defer r.Close()
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		return "", fmt.Errorf("reading %s: %w", p, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// mkdirAll makes p and its missing parents, owned by root.
func (f *fsys) mkdirAll(p string, mode uint32) error {
	if p == "/" {
		return nil
	}
	if err := f.mkdirAll(path.Dir(p), 0o755); err != nil {
		return err
	}
	n, err := f.at(p)
	if err != nil {
		return err
	}
	defer n.close()
	st, ok, err := n.lstat()
	if err != nil {
		return err
	}
	if ok {
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			return fmt.Errorf("%s is not a folder", p)
		}
		return nil
	}
	if err := n.mkdir(); err != nil {
		return err
	}
	return n.own(true, mode, 0, 0)
}

// flush makes the changes of a batch under the folders of paths
// durable: one syncfs per file system they are on, rather than an
// fsync per file and folder (hundreds of them, each a journal commit
// on an SD card).
func (f *fsys) flush(paths []string) error {
	devs, done := map[uint64]bool{}, map[string]bool{}
	for _, p := range paths {
		// The nearest folder that is there (a removed one is not).
		for dir := path.Dir(p); !done[dir]; dir = path.Dir(dir) {
			done[dir] = true
			err := f.syncfs(dir, devs)
			if err != nil && (!isNotExist(err) || dir == "/") {
				return err
			}
			if err == nil {
				break
			}
		}
	}
	return nil
}

func (f *fsys) syncfs(dir string, devs map[uint64]bool) error {
	d, err := f.dir(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(d.Fd()), &st); err != nil {
		return err
	}
	if devs[st.Dev] {
		return nil
	}
	devs[st.Dev] = true
	if err := unix.Syncfs(int(d.Fd())); err != nil {
		return fmt.Errorf("syncing the file system of %s: %w", dir, err)
	}
	return nil
}

// kindOf names a file type for messages.
func kindOf(st unix.Stat_t) string {
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		return "file"
	case unix.S_IFDIR:
		return "folder"
	case unix.S_IFLNK:
		return "link"
	case unix.S_IFIFO:
		return "named pipe"
	case unix.S_IFSOCK:
		return "socket"
	default:
		return "device"
	}
}

func typeOf(st unix.Stat_t) generation.Type {
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		return generation.File
	case unix.S_IFDIR:
		return generation.Dir
	case unix.S_IFLNK:
		return generation.Symlink
	}
	return ""
}

var errNotExist = fs.ErrNotExist

func isNotExist(err error) bool { return errors.Is(err, errNotExist) }
