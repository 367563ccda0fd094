// Package lfsref is the reference littlefs (the upstream C code, v2.8,
// through tinygo.org/x/tinyfs and cgo) configured as esp_littlefs
// configures it on the ESP32: read and prog size 128, cache 512,
// lookahead 128, block cycles 512. The firmware packages' tests use it
// as the oracle for their images; only tests import it, so cgo stays out
// of the appliance binary.
package lfsref

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"

	"tinygo.org/x/tinyfs"
	"tinygo.org/x/tinyfs/littlefs"
)

// The esp_littlefs configuration.
const (
	ProgSize    = 128
	CacheSize   = 512
	Lookahead   = 128
	BlockCycles = 512
)

// FS is a mounted image.
type FS struct {
	dev *tinyfs.MemBlockDevice
	lfs *littlefs.LFS
}

func newLFS(dev *tinyfs.MemBlockDevice) *littlefs.LFS {
	return littlefs.New(dev).Configure(&littlefs.Config{CacheSize: CacheSize, LookaheadSize: Lookahead, BlockCycles: BlockCycles})
}

// Mount mounts an image of blocks of blockSize bytes.
func Mount(img []byte, blockSize int) (*FS, error) {
	if blockSize <= 0 || len(img)%blockSize != 0 {
		return nil, fmt.Errorf("an image of %d bytes is no whole number of %d-byte blocks", len(img), blockSize)
	}
	dev := tinyfs.NewMemoryDevice(ProgSize, blockSize, len(img)/blockSize)
	if _, err := dev.WriteAt(img, 0); err != nil {
		return nil, err
	}
	fs := &FS{dev: dev, lfs: newLFS(dev)}
	if err := fs.lfs.Mount(); err != nil {
		return nil, fmt.Errorf("the reference littlefs does not mount the image: %w", err)
	}
	return fs, nil
}

// Format makes an empty file system of blockCount blocks.
func Format(blockSize, blockCount int) (*FS, error) {
	dev := tinyfs.NewMemoryDevice(ProgSize, blockSize, blockCount)
	fs := &FS{dev: dev, lfs: newLFS(dev)}
	if err := fs.lfs.Format(); err != nil {
		return nil, err
	}
	return fs, fs.lfs.Mount()
}

// Unmount ends the mount.
func (fs *FS) Unmount() error { return fs.lfs.Unmount() }

// Bytes is the device's content.
func (fs *FS) Bytes() []byte {
	b := make([]byte, fs.dev.Size())
	fs.dev.ReadAt(b, 0)
	return b
}

// Mkdir makes a folder.
func (fs *FS) Mkdir(p string) error { return fs.lfs.Mkdir(p, 0o755) }

// WriteFile writes a file.
func (fs *FS) WriteFile(p string, data []byte) error {
	f, err := fs.lfs.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC)
	if err != nil {
		return err
	}
	// tinyfs's Write indexes its buffer: an empty file needs no write.
	if len(data) > 0 {
		if _, err := f.Write(data); err != nil {
			f.Close()
			return err
		}
	}
	return f.Close()
}

// Entry is a file or folder found by Walk.
type Entry struct {
	Path  string
	IsDir bool
	Data  []byte
}

// Walk lists every file and folder under the root, depth first, each
// folder's entries in the order littlefs reads them, files with their
// content.
func (fs *FS) Walk() ([]Entry, error) {
	var out []Entry
	err := fs.walk("/", &out)
	return out, err
}

func (fs *FS) walk(dir string, out *[]Entry) error {
	d, err := fs.lfs.Open(dir)
	if err != nil {
		return fmt.Errorf("opening %s: %w", dir, err)
	}
	infos, err := d.Readdir(-1)
	d.Close()
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("reading %s: %w", dir, err)
	}
	sort.Slice(infos, func(i, j int) bool { return infos[i].Name() < infos[j].Name() })
	for _, fi := range infos {
		if fi.Name() == "." || fi.Name() == ".." {
			continue
		}
		p := path.Join(dir, fi.Name())
		if fi.IsDir() {
			*out = append(*out, Entry{Path: p, IsDir: true})
			if err := fs.walk(p, out); err != nil {
				return err
			}
			continue
		}
		data, err := fs.ReadFile(p)
		if err != nil {
			return err
		}
		if int64(len(data)) != fi.Size() {
			return fmt.Errorf("%s: read %d bytes, the directory says %d", p, len(data), fi.Size())
		}
		*out = append(*out, Entry{Path: p, Data: data})
	}
	return nil
}

// ReadFile reads a file whole.
func (fs *FS) ReadFile(p string) ([]byte, error) {
	f, err := fs.lfs.Open(p)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", p, err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", p, err)
	}
	return b, nil
}
