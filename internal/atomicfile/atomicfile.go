// Package atomicfile replaces files so that a crash or a failed write
// leaves the old content or the new, never a torn file: keys, the lock,
// formatted specs, the ingest spool's metadata.
package atomicfile

import (
	"os"
	"path/filepath"
)

// WriteFile replaces path with data and mode: a temporary file in the
// same folder is written, synced and renamed over it, and the folder is
// synced. On error nothing is left behind and path is as it was.
func WriteFile(path string, data []byte, mode os.FileMode) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	name := tmp.Name()
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(name)
		}
	}()
	if err := tmp.Chmod(mode); err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(name, path); err != nil {
		return err
	}
	ok = true
	return SyncDir(dir)
}

// SyncDir syncs a folder, so that renames and new names in it last.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
