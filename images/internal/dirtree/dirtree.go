// Package dirtree reads a directory on the host into ext4 entries: for
// the disk writers' tests and benchmark, which check the writers against
// real trees. The image builder uses images/tree instead.
package dirtree

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/appliance/appliance/images/ext4"
)

// Entries walks root (in lexical order, so parents come first) and
// returns its entries, with the paths relative to root. Files that share
// an inode become hard links to the first one seen; security.capability
// is kept.
func Entries(root string) ([]ext4.Entry, error) {
	var out []ext4.Entry
	seen := map[[2]uint64]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		name := "/" + filepath.ToSlash(rel)
		if rel == "." {
			name = "/"
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		e := ext4.Entry{
			Path:  name,
			Mode:  fi.Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky),
			UID:   st.Uid,
			GID:   st.Gid,
			MTime: time.Unix(st.Mtim.Sec, st.Mtim.Nsec),
		}
		if !fi.IsDir() && st.Nlink > 1 {
			key := [2]uint64{st.Dev, st.Ino}
			if first, ok := seen[key]; ok {
				out = append(out, ext4.Entry{Path: name, HardLinkTo: first})
				return nil
			}
			seen[key] = name
		}
		switch fi.Mode().Type() {
		case 0:
			e.Type, e.Size = ext4.Regular, fi.Size()
			e.Open = func() (io.ReadCloser, error) { return os.Open(p) }
			if v, err := getxattr(p, "security.capability"); err == nil {
				e.Xattrs = map[string][]byte{"security.capability": v}
			}
		case fs.ModeDir:
			e.Type = ext4.Dir
		case fs.ModeSymlink:
			e.Type = ext4.Symlink
			if e.LinkTarget, err = os.Readlink(p); err != nil {
				return err
			}
		case fs.ModeDevice | fs.ModeCharDevice:
			e.Type, e.Major, e.Minor = ext4.CharDev, major(st.Rdev), minor(st.Rdev)
		case fs.ModeDevice:
			e.Type, e.Major, e.Minor = ext4.BlockDev, major(st.Rdev), minor(st.Rdev)
		case fs.ModeNamedPipe:
			e.Type = ext4.FIFO
		case fs.ModeSocket:
			e.Type = ext4.Socket
		default:
			return errors.New(p + ": unknown file type")
		}
		out = append(out, e)
		return nil
	})
	return out, err
}

func major(dev uint64) uint32 { return uint32((dev>>8)&0xfff | (dev>>32)&^0xfff) }
func minor(dev uint64) uint32 { return uint32(dev&0xff | (dev>>12)&^0xff) }

func getxattr(path, name string) ([]byte, error) {
	buf := make([]byte, 256)
	n, err := syscall.Getxattr(path, name, buf)
	if err != nil {
		return nil, err
	}
	return buf[:n], nil
}
