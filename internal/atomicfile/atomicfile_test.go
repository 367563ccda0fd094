package atomicfile

import (
	"os"
	"path/filepath"
	"testing"
)

// TestWriteFile replaces a file with the mode asked for, and a failed
// write (into a folder that is gone) leaves nothing behind.
func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "key")
	if err := os.WriteFile(p, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(p, []byte("new"), 0o600); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	fi, _ := os.Stat(p)
	if string(b) != "new" || fi.Mode().Perm() != 0o600 {
		t.Errorf("after WriteFile: %q, mode %v", b, fi.Mode().Perm())
	}
	if es, _ := os.ReadDir(dir); len(es) != 1 {
		t.Errorf("%d files in the folder; want the one written", len(es))
	}
	if err := WriteFile(filepath.Join(dir, "gone", "key"), []byte("x"), 0o600); err == nil {
		t.Error("WriteFile into a missing folder succeeded")
	}
}
