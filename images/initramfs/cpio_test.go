package initramfs

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

// TestCpioExtracts has GNU cpio unpack an archive the way the kernel
// does (newc, folders before their entries) and compares what it made.
func TestCpioExtracts(t *testing.T) {
	if _, err := exec.LookPath("cpio"); err != nil {
		t.Fatal("cpio is not installed; run scripts/deps")
	}
	write := func() []byte {
		var b bytes.Buffer
		w := NewWriter(&b, 1767225600)
		must := func(err error) {
			if err != nil {
				t.Fatal(err)
			}
		}
		must(w.File("init", 0o755, []byte("#!/bin/sh\n")))
		must(w.Files(map[string][]byte{"modules/02-b.ko": bytes.Repeat([]byte{2}, 4099), "modules/01-a.ko": {1, 2, 3}}, 0o644))
		must(w.Symlink("bin/sh", "../init"))
		must(w.Dir("dev", 0o755))
		must(w.CharDev("dev/console", 0o600, 5, 1))
		must(w.Close())
		return b.Bytes()
	}
	archive := write()
	if !bytes.Equal(archive, write()) {
		t.Fatal("two archives of the same entries differ")
	}

	dir := t.TempDir()
	cmd := exec.Command("cpio", "-idmu", "--quiet", "--no-absolute-filenames")
	cmd.Dir, cmd.Stdin = dir, bytes.NewReader(archive)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cpio: %v\n%s", err, out)
	}
	for name, want := range map[string]string{"init": "#!/bin/sh\n", "modules/01-a.ko": "\x01\x02\x03", "modules/02-b.ko": string(bytes.Repeat([]byte{2}, 4099))} {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || string(got) != want {
			t.Errorf("%s: %d bytes, %v", name, len(got), err)
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, "init")); err != nil || fi.Mode().Perm() != 0o755 || fi.ModTime().Unix() != 1767225600 {
		t.Errorf("init: %v %v", fi.Mode(), err)
	}
	if l, err := os.Readlink(filepath.Join(dir, "bin/sh")); l != "../init" {
		t.Errorf("bin/sh -> %q (%v)", l, err)
	}
	if os.Getuid() == 0 {
		var st syscall.Stat_t
		if err := syscall.Lstat(filepath.Join(dir, "dev/console"), &st); err != nil || st.Mode&syscall.S_IFMT != syscall.S_IFCHR || st.Rdev != 5<<8|1 {
			t.Errorf("dev/console: mode %o rdev %x (%v)", st.Mode, st.Rdev, err)
		}
	}
}
