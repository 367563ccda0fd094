package tree

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	"golang.org/x/sys/unix"
)

// Blobs finds the content of regular files by their SHA-256.
type Blobs interface {
	// BlobPath is the host path of the file holding a blob.
	BlobPath(sha256hex string) string
}

// WriteOptions tune WriteDir.
type WriteOptions struct {
	// Verify re-hashes every blob while copying it and refuses one whose
	// content no longer matches its name.
	Verify bool
	// Owners applies the entries' uid and gid (needs root); without it
	// files belong to whoever runs the writer.
	Owners bool
}

// WriteDir writes the tree into dir, which must be empty or missing:
// folders, files (copied from the blob store), symlinks, hard links,
// device nodes and FIFOs with their modes and times. Device nodes and
// ownership need root. It exists for tests and for the benchmark against
// mmdebstrap; images are written from the tree directly.
func WriteDir(t *Tree, dir string, blobs Blobs, opt WriteOptions) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if ents, err := os.ReadDir(dir); err != nil {
		return err
	} else if len(ents) > 0 {
		return fmt.Errorf("%s is not empty; the tree is written only into an empty folder", dir)
	}
	all := t.Entries()
	// Hard links last, once their targets exist.
	var links []*Entry
	for _, e := range all {
		if e.Type == Hardlink {
			links = append(links, e)
			continue
		}
		if err := writeEntry(e, dir, blobs, opt); err != nil {
			return fmt.Errorf("writing /%s: %w", e.Path, err)
		}
	}
	for _, e := range links {
		if err := writeEntry(e, dir, blobs, opt); err != nil {
			return fmt.Errorf("writing /%s: %w", e.Path, err)
		}
	}
	// A folder's time changes whenever something is created in it: set
	// folders' times last, children before their parents.
	for _, e := range slices.Backward(all) {
		if e.Type != Dir {
			continue
		}
		p := filepath.Join(dir, e.Path)
		ts := []unix.Timespec{{Sec: e.MTime}, {Sec: e.MTime}}
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("setting the time of /%s: %w", e.Path, err)
		}
	}
	return nil
}

func writeEntry(e *Entry, root string, blobs Blobs, opt WriteOptions) error {
	p := filepath.Join(root, e.Path)
	switch e.Type {
	case Dir:
		if e.Path != "" {
			if err := os.Mkdir(p, 0o700); err != nil {
				return err
			}
		}
	case Regular:
		// Owner, mode and time through the open file: no path lookups.
		return writeFile(p, e, blobs, opt)
	case Symlink:
		if err := os.Symlink(e.Link, p); err != nil {
			return err
		}
	case Hardlink:
		// The target's inode already has the metadata.
		return os.Link(filepath.Join(root, e.Link), p)
	case CharDev, BlockDev, FIFO:
		mode := uint32(unix.S_IFIFO)
		if e.Type == CharDev {
			mode = unix.S_IFCHR
		} else if e.Type == BlockDev {
			mode = unix.S_IFBLK
		}
		if err := unix.Mknod(p, mode|0o600, int(unix.Mkdev(e.Major, e.Minor))); err != nil {
			return err
		}
	default:
		return fmt.Errorf("unknown entry type %v", e.Type)
	}
	if opt.Owners {
		if err := unix.Lchown(p, e.UID, e.GID); err != nil {
			return err
		}
	}
	if e.Type != Symlink {
		// After chown, which clears setuid and setgid bits.
		if err := os.Chmod(p, e.FileMode()&^os.ModeType); err != nil {
			return err
		}
	}
	if e.Type == Dir {
		return nil // timed at the end
	}
	ts := []unix.Timespec{{Sec: e.MTime}, {Sec: e.MTime}}
	return unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW)
}

func writeFile(p string, e *Entry, blobs Blobs, opt WriteOptions) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if e.Blob == "" {
		_, err = f.Write(e.Data)
	} else {
		err = copyBlob(f, e, blobs, opt.Verify)
	}
	if err == nil && opt.Owners {
		err = f.Chown(e.UID, e.GID)
	}
	if err == nil {
		// After chown, which clears setuid and setgid bits.
		err = f.Chmod(e.FileMode())
	}
	if err == nil {
		tv := []unix.Timeval{{Sec: e.MTime}, {Sec: e.MTime}}
		err = unix.Futimes(int(f.Fd()), tv)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func copyBlob(dst *os.File, e *Entry, blobs Blobs, verify bool) error {
	src, err := os.Open(blobs.BlobPath(e.Blob))
	if err != nil {
		return fmt.Errorf("content %s: %w", e.Blob, err)
	}
	defer src.Close()
	if !verify {
		// io.Copy between two files uses copy_file_range: no copy
		// through user space.
		n, err := io.Copy(dst, src)
		if err == nil && n != e.Size {
			err = fmt.Errorf("content %s holds %d bytes; want %d", e.Blob, n, e.Size)
		}
		return err
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(dst, h), src)
	if err != nil {
		return err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != e.Blob || n != e.Size {
		// Removed, the blob is missed by the next build, which unpacks
		// its package again.
		os.Remove(blobs.BlobPath(e.Blob))
		return fmt.Errorf("content %s in the cache was damaged (SHA-256 %s, %d bytes); removed it: build again to unpack it anew", blobs.BlobPath(e.Blob), got, n)
	}
	return nil
}
