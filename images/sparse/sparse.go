// Package sparse finds the data in sparse files — disk images are mostly
// holes — and copies them touching only the ranges that hold data.
package sparse

import (
	"fmt"
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
