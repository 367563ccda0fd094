package tree

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"time"
)

// WriteTar writes the tree as a POSIX (pax) tar stream: every entry in
// Entries order with numeric owners, modes, seconds-resolution times,
// link targets and device numbers, and regular files' content streamed
// from the blob store, each checked against its SHA-256 on the way. The
// same tree always gives the same bytes. A tar is what a container
// runtime or a later image step can take, and it shows what writing the
// tree as one file costs — what the image writer does.
func WriteTar(w io.Writer, t *Tree, blobs Blobs) error {
	tw := tar.NewWriter(w)
	buf := make([]byte, 256<<10)
	for _, e := range t.Entries() {
		if e.Path == "" {
			continue
		}
		h := &tar.Header{
			Name:    e.Path,
			Mode:    int64(e.Mode),
			Uid:     e.UID,
			Gid:     e.GID,
			ModTime: time.Unix(e.MTime, 0),
			Format:  tar.FormatPAX,
		}
		switch e.Type {
		case Dir:
			h.Typeflag, h.Name = tar.TypeDir, e.Path+"/"
		case Regular:
			h.Typeflag, h.Size = tar.TypeReg, e.Size
		case Symlink:
			h.Typeflag, h.Linkname = tar.TypeSymlink, e.Link
		case Hardlink:
			h.Typeflag, h.Linkname = tar.TypeLink, e.Link
		case CharDev, BlockDev:
			h.Typeflag, h.Devmajor, h.Devminor = tar.TypeChar, int64(e.Major), int64(e.Minor)
			if e.Type == BlockDev {
				h.Typeflag = tar.TypeBlock
			}
		case FIFO:
			h.Typeflag = tar.TypeFifo
		}
		if err := tw.WriteHeader(h); err != nil {
			return fmt.Errorf("/%s: %w", e.Path, err)
		}
		if e.Type != Regular {
			continue
		}
		if e.Blob == "" {
			if _, err := tw.Write(e.Data); err != nil {
				return err
			}
			continue
		}
		if err := streamBlob(tw, e, blobs, buf); err != nil {
			return fmt.Errorf("/%s: %w", e.Path, err)
		}
	}
	return tw.Close()
}

func streamBlob(w io.Writer, e *Entry, blobs Blobs, buf []byte) error {
	f, err := os.Open(blobs.BlobPath(e.Blob))
	if err != nil {
		return fmt.Errorf("content %s: %w", e.Blob, err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.CopyBuffer(io.MultiWriter(w, h), io.LimitReader(f, e.Size+1), buf)
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
