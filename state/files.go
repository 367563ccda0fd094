package state

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// readPrivate reads a file that holds a secret, refusing it when other
// users could read it too: a key that leaked may not be used.
func readPrivate(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if err := checkPrivateMode(path, fi); err != nil {
		return nil, err
	}
	return os.ReadFile(path)
}

func checkPrivateMode(path string, fi fs.FileInfo) error {
	if fi.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("%s holds a private key or secret and can be read by other users (mode %04o); run chmod 600 %s, and if others did read it, replace it (appliance pki renew, or a new state)", path, fi.Mode().Perm(), path)
	}
	return nil
}

// mkdirPrivate creates a folder (and missing parents) readable by its
// owner only.
func mkdirPrivate(path string) error {
	if err := os.MkdirAll(path, 0o700); err != nil {
		return err
	}
	return os.Chmod(path, 0o700)
}

// checkPrivateDir refuses a state folder that other users can enter.
func checkPrivateDir(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a folder", path)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("the state folder %s can be entered by other users (mode %04o); run chmod -R go= %s", path, fi.Mode().Perm(), path)
	}
	return nil
}

// lockFile takes an exclusive lock on path, so that two appliance runs
// never change one state at the same time.
func lockFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("another appliance command is using the state in %s; wait for it to finish", filepath.Dir(path))
		}
		return nil, err
	}
	return f, nil
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}
