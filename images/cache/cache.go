// Package cache is appliance's content-addressed download and unpack
// cache, under the XDG cache folder ($XDG_CACHE_HOME/appliance, by
// default ~/.cache/appliance):
//
//	debs/sha256/ab/abcd….deb         packages, by the SHA-256 the index gives
//	indexes/sha256/ab/abcd…          Packages indexes, by the Release's SHA-256
//	releases/<url-hash>.InRelease    the last verified Release of each source
//	blobs/sha256/ab/abcd…            unpacked file contents, by their SHA-256
//	manifests/sha256/ab/abcd….json   a package's unpacked form, by its .deb's SHA-256
//	                                 (used only with the SHA-256 the site's state records for it)
//	zst/sha256/ab/abcd…              zstd frames of images, by compressor and content (package zst)
//
// Every file appears under its final name only once complete and, for
// content-addressed ones, only once its hash matched: writes go to a
// temporary file in the same folder that is renamed into place, or
// removed on any failure. A killed run leaves at most a ".tmp-" file,
// which nothing reads.
package cache

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// Cache is a cache folder.
type Cache struct {
	Dir string
}

// Default returns the cache in the XDG cache folder of the process.
func Default() (*Cache, error) {
	return FromEnv(os.Environ())
}

// FromEnv returns the cache in the XDG cache folder an environment names:
// $XDG_CACHE_HOME/appliance, else $HOME/.cache/appliance.
func FromEnv(environ []string) (*Cache, error) {
	var xdg, home string
	for _, kv := range environ {
		if v, ok := strings.CutPrefix(kv, "XDG_CACHE_HOME="); ok {
			xdg = v
		} else if v, ok := strings.CutPrefix(kv, "HOME="); ok {
			home = v
		}
	}
	switch {
	case filepath.IsAbs(xdg):
		return &Cache{Dir: filepath.Join(xdg, "appliance")}, nil
	case home != "":
		return &Cache{Dir: filepath.Join(home, ".cache", "appliance")}, nil
	}
	return nil, errors.New("no cache folder: set XDG_CACHE_HOME or HOME")
}

// Path is where the file of a hash lives; it may not exist. A key that
// is not a SHA-256 in lower-case hex (one read from a damaged or hostile
// index, manifest or lock) maps to a name no file is ever stored under,
// never to a path outside kind's folder.
func (c *Cache) Path(kind, sha256hex string) string {
	ext := ""
	switch kind {
	case "debs":
		ext = ".deb"
	case "manifests":
		ext = ".json"
	}
	if !isSHA256(sha256hex) || strings.ContainsAny(kind, "/\\") || kind == ".." {
		return filepath.Join(c.Dir, "invalid")
	}
	return filepath.Join(c.Dir, kind, "sha256", sha256hex[:2], sha256hex+ext)
}

func isSHA256(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// BlobPath is the file of an unpacked content; it makes Cache a
// tree.Blobs.
func (c *Cache) BlobPath(sha256hex string) string { return c.Path("blobs", sha256hex) }

// Has reports whether the file of a hash is present.
func (c *Cache) Has(kind, sha256hex string) bool {
	_, err := os.Stat(c.Path(kind, sha256hex))
	return err == nil
}

// HashMismatchError is content whose SHA-256 differs from the expected.
type HashMismatchError struct {
	Want, Got string
	Size      int64
}

func (e *HashMismatchError) Error() string {
	return fmt.Sprintf("SHA-256 is %s (%d bytes), not the expected %s", e.Got, e.Size, e.Want)
}

// Put stores r under sha256hex if its content has that hash, and
// refuses it otherwise, leaving nothing behind.
func (c *Cache) Put(kind, sha256hex string, r io.Reader) error {
	w, err := c.Create(kind, sha256hex)
	if err != nil {
		return err
	}
	if _, err := io.Copy(w, r); err != nil {
		w.Abort()
		return err
	}
	return w.Commit()
}

// Writer writes one cache file; Commit checks its hash and moves it into
// place, Abort removes it.
type Writer struct {
	f     *os.File
	final string
	want  string
	h     hash.Hash
	n     int64
}

// Create starts a content-addressed file. An empty sha256hex means the
// hash is not known yet: CommitAs names it by what was written.
func (c *Cache) Create(kind, sha256hex string) (*Writer, error) {
	if sha256hex != "" && !isSHA256(sha256hex) {
		return nil, fmt.Errorf("%q is not a SHA-256 in hex: not a key of the cache", sha256hex)
	}
	final := c.Path(kind, sha256hex)
	d := filepath.Dir(final)
	if sha256hex == "" {
		d = filepath.Join(c.Dir, kind, "sha256")
	}
	if err := os.MkdirAll(d, 0o755); err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(d, ".tmp-")
	if err != nil {
		return nil, err
	}
	return &Writer{f: f, final: final, want: sha256hex, h: sha256.New()}, nil
}

func (w *Writer) Write(b []byte) (int, error) {
	n, err := w.f.Write(b)
	w.h.Write(b[:n])
	w.n += int64(n)
	return n, err
}

// Size is how many bytes were written.
func (w *Writer) Size() int64 { return w.n }

// Sum is the hex SHA-256 of what was written so far.
func (w *Writer) Sum() string { return hex.EncodeToString(w.h.Sum(nil)) }

// Abort removes the temporary file.
func (w *Writer) Abort() {
	w.f.Close()
	os.Remove(w.f.Name())
}

// Commit moves the file into place if its content has the expected hash.
func (w *Writer) Commit() error {
	if got := w.Sum(); got != w.want {
		w.Abort()
		return &HashMismatchError{Want: w.want, Got: got, Size: w.n}
	}
	return w.rename(w.final)
}

// CommitAs moves a file created without a known hash to its place in
// kind's folder of c, and returns its hash and whether it is new. A
// file already present is left as it is (same content by construction).
func (w *Writer) CommitAs(c *Cache, kind string) (sum string, created bool, err error) {
	sum = w.Sum()
	final := c.Path(kind, sum)
	if _, err := os.Stat(final); err == nil {
		w.Abort()
		return sum, false, nil
	}
	if err := os.MkdirAll(filepath.Dir(final), 0o755); err != nil {
		w.Abort()
		return "", false, err
	}
	return sum, true, w.rename(final)
}

func (w *Writer) rename(final string) error {
	if err := w.f.Close(); err != nil {
		os.Remove(w.f.Name())
		return err
	}
	if err := os.Chmod(w.f.Name(), 0o644); err != nil {
		os.Remove(w.f.Name())
		return err
	}
	if err := os.Rename(w.f.Name(), final); err != nil {
		os.Remove(w.f.Name())
		return err
	}
	return nil
}

// Verify re-hashes a cached file and removes it if it is damaged, so
// the next run fetches it again.
func (c *Cache) Verify(kind, sha256hex string) error {
	p := c.Path(kind, sha256hex)
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != sha256hex {
		os.Remove(p)
		return fmt.Errorf("%s: %w; removed it", p, &HashMismatchError{Want: sha256hex, Got: got, Size: n})
	}
	return nil
}

// PutNamed writes a small file by name, atomically.
func (c *Cache) PutNamed(kind, name string, b []byte) error {
	d := filepath.Join(c.Dir, kind)
	if err := os.MkdirAll(d, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(d, ".tmp-")
	if err != nil {
		return err
	}
	w := &Writer{f: f}
	if _, err := f.Write(b); err != nil {
		w.Abort()
		return err
	}
	return w.rename(filepath.Join(d, name))
}

// GetNamed reads a file PutNamed wrote, refusing one of more than limit
// bytes or that is not a regular file.
func (c *Cache) GetNamed(kind, name string, limit int64) ([]byte, error) {
	p := filepath.Join(c.Dir, kind, name)
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() || fi.Size() > limit {
		return nil, fmt.Errorf("%s is not a file of at most %d bytes; it is ignored", p, limit)
	}
	return io.ReadAll(io.LimitReader(f, limit))
}

// Temporaries lists the ".tmp-" files left in the cache: none after a
// run that ended, whether it succeeded or not.
func (c *Cache) Temporaries() ([]string, error) {
	var out []string
	err := filepath.WalkDir(c.Dir, func(p string, d os.DirEntry, err error) error {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if strings.HasPrefix(d.Name(), ".tmp-") {
			out = append(out, p)
		}
		return nil
	})
	return out, err
}

// PutHashed stores b under sha256hex, which the caller has just computed
// from b: the content is written without hashing it a second time.
func (c *Cache) PutHashed(kind, sha256hex string, b []byte) error {
	return c.PutAt(kind, sha256hex, b)
}

// PutAt writes b atomically at the path of key in kind's folder, without
// checking a hash: for files named after something other than their
// content (a package's manifest is named after its .deb).
func (c *Cache) PutAt(kind, key string, b []byte) error {
	if !isSHA256(key) {
		return fmt.Errorf("%q is not a SHA-256 in hex: not a key of the cache", key)
	}
	final := c.Path(kind, key)
	if err := os.MkdirAll(filepath.Dir(final), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(final), ".tmp-")
	if err != nil {
		return err
	}
	w := &Writer{f: f}
	if _, err := f.Write(b); err != nil {
		w.Abort()
		return err
	}
	return w.rename(final)
}

// Remove deletes a cached file; a missing one is not an error.
func (c *Cache) Remove(kind, key string) error {
	err := os.Remove(c.Path(kind, key))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}
