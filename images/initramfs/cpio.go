// Package initramfs builds the initial RAM file system for boards whose
// kernel needs modules before it can mount the root file system (the
// Debian arm64 kernel QEMU boots: virtio_blk and ext4 are modules). It is
// appliance's own: a newc cpio archive holding a static init program and
// the modules it loads, in dependency order — no initramfs-tools, no
// host tools, nothing run on the gateway to make it.
package initramfs

import (
	"bufio"
	"fmt"
	"io"
	"io/fs"
	"sort"
	"strings"
)

// Writer writes a cpio archive in the "newc" format the kernel unpacks.
// Inode numbers count up from 1 and times are the caller's, so the same
// input gives the same bytes.
type Writer struct {
	w     *bufio.Writer
	n     int64
	ino   uint32
	mtime int64
	dirs  map[string]bool
}

// NewWriter writes to w; every entry gets mtime (seconds since the epoch).
func NewWriter(w io.Writer, mtime int64) *Writer {
	return &Writer{w: bufio.NewWriter(w), mtime: mtime, dirs: map[string]bool{"": true}}
}

func (cw *Writer) header(name string, mode uint32, nlink, size, rmajor, rminor uint32) error {
	cw.ino++
	name = strings.TrimPrefix(name, "/")
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		cw.ino, mode, 0, 0, nlink, uint32(cw.mtime), size, 0, 0, rmajor, rminor, len(name)+1, 0)
	if _, err := cw.w.WriteString(hdr + name + "\x00"); err != nil {
		return err
	}
	cw.n += int64(len(hdr) + len(name) + 1)
	return cw.pad()
}

func (cw *Writer) pad() error {
	for cw.n%4 != 0 {
		if err := cw.w.WriteByte(0); err != nil {
			return err
		}
		cw.n++
	}
	return nil
}

// mkdirs writes the parent folders of name that are not written yet.
func (cw *Writer) mkdirs(name string) error {
	parts := strings.Split(strings.Trim(name, "/"), "/")
	for i := 1; i < len(parts); i++ {
		d := strings.Join(parts[:i], "/")
		if !cw.dirs[d] {
			if err := cw.Dir(d, 0o755); err != nil {
				return err
			}
		}
	}
	return nil
}

// Dir writes a folder.
func (cw *Writer) Dir(name string, perm fs.FileMode) error {
	name = strings.Trim(name, "/")
	if cw.dirs[name] {
		return nil
	}
	if err := cw.mkdirs(name); err != nil {
		return err
	}
	cw.dirs[name] = true
	return cw.header(name, 0o040000|uint32(perm.Perm()), 2, 0, 0, 0)
}

// File writes a regular file.
func (cw *Writer) File(name string, perm fs.FileMode, data []byte) error {
	if err := cw.mkdirs(name); err != nil {
		return err
	}
	if err := cw.header(name, 0o100000|uint32(perm.Perm()), 1, uint32(len(data)), 0, 0); err != nil {
		return err
	}
	if _, err := cw.w.Write(data); err != nil {
		return err
	}
	cw.n += int64(len(data))
	return cw.pad()
}

// Symlink writes a symbolic link.
func (cw *Writer) Symlink(name, target string) error {
	if err := cw.mkdirs(name); err != nil {
		return err
	}
	if err := cw.header(name, 0o120777, 1, uint32(len(target)), 0, 0); err != nil {
		return err
	}
	if _, err := cw.w.WriteString(target); err != nil {
		return err
	}
	cw.n += int64(len(target))
	return cw.pad()
}

// CharDev writes a character device node, such as /dev/console, which
// the kernel needs before devtmpfs is mounted.
func (cw *Writer) CharDev(name string, perm fs.FileMode, major, minor uint32) error {
	if err := cw.mkdirs(name); err != nil {
		return err
	}
	return cw.header(name, 0o020000|uint32(perm.Perm()), 1, 0, major, minor)
}

// Close writes the trailer and flushes.
func (cw *Writer) Close() error {
	if err := cw.header("TRAILER!!!", 0, 1, 0, 0, 0); err != nil {
		return err
	}
	return cw.w.Flush()
}

// Files writes files sorted by name, so the archive does not depend on
// map order.
func (cw *Writer) Files(files map[string][]byte, perm fs.FileMode) error {
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := cw.File(n, perm, files[n]); err != nil {
			return err
		}
	}
	return nil
}
