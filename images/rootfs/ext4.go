package rootfs

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"time"

	"github.com/appliance/appliance/images/ext4"
	"github.com/appliance/appliance/images/tree"
)

// Ext4Entries lists a tree as images/ext4 entries, in the tree's order
// (parents first). Regular files' content is streamed from the blob
// store when the writer asks for it and checked against its SHA-256 as
// it is read: a damaged cache fails the write instead of landing in the
// image. Of the names of a hard-linked file, the first in that order
// carries the content and the others link to it, as ext4.Write wants.
func Ext4Entries(t *tree.Tree, blobs tree.Blobs) []ext4.Entry {
	all := t.Entries()
	// The first name of each hard-linked inode, in entry order.
	first := map[string]string{}
	for _, e := range all {
		target := e.Path
		if e.Type == tree.Hardlink {
			target = e.Link
		} else if e.Type != tree.Regular {
			continue
		}
		if _, ok := first[target]; !ok {
			first[target] = e.Path
		}
	}
	out := make([]ext4.Entry, 0, len(all))
	for _, e := range all {
		x := ext4.Entry{
			Path:  "/" + e.Path,
			Mode:  e.FileMode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky),
			UID:   uint32(e.UID),
			GID:   uint32(e.GID),
			MTime: time.Unix(e.MTime, 0),
		}
		switch e.Type {
		case tree.Dir:
			x.Type = ext4.Dir
		case tree.Symlink:
			x.Type, x.LinkTarget = ext4.Symlink, e.Link
		case tree.CharDev:
			x.Type, x.Major, x.Minor = ext4.CharDev, e.Major, e.Minor
		case tree.BlockDev:
			x.Type, x.Major, x.Minor = ext4.BlockDev, e.Major, e.Minor
		case tree.FIFO:
			x.Type = ext4.FIFO
		case tree.Regular, tree.Hardlink:
			content := e
			if e.Type == tree.Hardlink {
				content = t.Get(e.Link)
			}
			name := first[content.Path]
			if name != e.Path {
				x.HardLinkTo = "/" + name
				break
			}
			x.Type, x.Size = ext4.Regular, content.Size
			x.Mode = content.FileMode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)
			x.UID, x.GID, x.MTime = uint32(content.UID), uint32(content.GID), time.Unix(content.MTime, 0)
			x.Open = opener(content, blobs)
		}
		out = append(out, x)
	}
	return out
}

func opener(e *tree.Entry, blobs tree.Blobs) func() (io.ReadCloser, error) {
	if e.Blob == "" {
		data := e.Data
		return func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }
	}
	path, want, size := blobs.BlobPath(e.Blob), e.Blob, e.Size
	return func() (io.ReadCloser, error) {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("content %s: %w", want, err)
		}
		return &checked{f: f, h: sha256.New(), want: want, size: size, path: path}, nil
	}
}

// checked reads a blob and fails at its end if the content is not what
// its name says.
type checked struct {
	f    *os.File
	h    hash.Hash
	want string
	path string
	n    int64
	size int64
}

// Read checks the hash once the expected size has been read (a writer
// reads exactly that much and need not wait for EOF) and refuses a blob
// that ends early or runs long.
func (c *checked) Read(b []byte) (int, error) {
	if c.n >= c.size {
		// Anything past the expected end is damage too.
		if n, _ := c.f.Read(b[:min(len(b), 1)]); n > 0 {
			return 0, c.damaged()
		}
		return 0, io.EOF
	}
	n, err := c.f.Read(b[:min(int64(len(b)), c.size-c.n)])
	c.h.Write(b[:n])
	c.n += int64(n)
	if c.n == c.size || err == io.EOF {
		if hex.EncodeToString(c.h.Sum(nil)) != c.want || c.n != c.size {
			// No bytes with the error: io.ReadFull would drop an error
			// that comes with all it asked for.
			return 0, c.damaged()
		}
	}
	return n, err
}

// damaged removes the blob, which the next build then misses: it
// unpacks the blob's package again (Unpack checks that every blob a
// manifest names is present).
func (c *checked) damaged() error {
	os.Remove(c.path)
	return fmt.Errorf("content %s in the cache was damaged (SHA-256 %x after %d bytes); removed it: build again to unpack it anew", c.path, c.h.Sum(nil), c.n)
}

func (c *checked) Close() error { return c.f.Close() }
