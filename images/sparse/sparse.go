// Package sparse reads and copies sparse files — disk images are mostly
// holes — touching only the ranges that hold data.
package sparse

import (
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// Range is a run of data in a file.
type Range struct{ Off, Len int64 }

// Data lists the ranges of f that hold data, by SEEK_DATA and SEEK_HOLE.
func Data(f *os.File, size int64) ([]Range, error) {
	var out []Range
	var off int64
	for off < size {
		data, err := unix.Seek(int(f.Fd()), off, unix.SEEK_DATA)
		if err == unix.ENXIO {
			break // no data after off
		}
		if err != nil {
			return nil, fmt.Errorf("%s: finding data: %w", f.Name(), err)
		}
		hole, err := unix.Seek(int(f.Fd()), data, unix.SEEK_HOLE)
		if err != nil {
			return nil, err
		}
		out = append(out, Range{data, hole - data})
		off = hole
	}
	return out, nil
}

// WriteTo writes f's bytes, holes included, to w, reading only data.
func WriteTo(w io.Writer, f *os.File, size int64) error {
	ranges, err := Data(f, size)
	if err != nil {
		return err
	}
	zeros := make([]byte, 1<<20)
	buf := make([]byte, 4<<20)
	var off int64
	pad := func(to int64) error {
		for off < to {
			n := min(int64(len(zeros)), to-off)
			if _, err := w.Write(zeros[:n]); err != nil {
				return err
			}
			off += n
		}
		return nil
	}
	for _, r := range ranges {
		if err := pad(r.Off); err != nil {
			return err
		}
		for off < r.Off+r.Len {
			n := min(int64(len(buf)), r.Off+r.Len-off)
			if _, err := f.ReadAt(buf[:n], off); err != nil {
				return err
			}
			if _, err := w.Write(buf[:n]); err != nil {
				return err
			}
			off += n
		}
	}
	return pad(size)
}

// Copy copies src to dst as a sparse file of size (at least src's size):
// only data ranges are written.
func Copy(dst, src string, size int64) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	size = max(size, fi.Size())
	out, err := os.OpenFile(dst, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	defer out.Close()
	if err := out.Truncate(size); err != nil {
		return err
	}
	ranges, err := Data(in, fi.Size())
	if err != nil {
		return err
	}
	buf := make([]byte, 4<<20)
	for _, r := range ranges {
		for off := r.Off; off < r.Off+r.Len; {
			n := min(int64(len(buf)), r.Off+r.Len-off)
			if _, err := in.ReadAt(buf[:n], off); err != nil {
				return err
			}
			if _, err := out.WriteAt(buf[:n], off); err != nil {
				return err
			}
			off += n
		}
	}
	return out.Close()
}
