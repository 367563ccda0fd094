package ext4

import (
	"fmt"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// TestDirHash compares dirHash with debugfs's dx_hash (hash 4: half_md4
// with unsigned characters), with a seed and without.
func TestDirHash(t *testing.T) {
	need(t, "debugfs")
	img := writeImage(t, nil, opts(16<<20))
	names := []string{"a", "hello", "hellö", "日本語のファイル名", "exactly-thirty-two-bytes-long-xx", "exactly-thirty-three-bytes-long-x", strings.Repeat("long name ", 25), "libc.so.6", "\xff\x80"}
	seed := opts(0).HashSeed
	for _, s := range [][16]byte{seed, {}} {
		for _, n := range names {
			args := []string{"-R", fmt.Sprintf("dx_hash -h 4 \"%s\"", n)}
			if s != ([16]byte{}) {
				args[1] = fmt.Sprintf("dx_hash -h 4 -s %x-%x-%x-%x-%x \"%s\"", s[0:4], s[4:6], s[6:8], s[8:10], s[10:16], n)
			}
			out, err := exec.Command("debugfs", append(args, img)...).CombinedOutput()
			if err != nil {
				t.Fatalf("debugfs: %v\n%s", err, out)
			}
			m := regexp.MustCompile(`is 0x([0-9a-f]+) \(minor 0x([0-9a-f]+)\)`).FindStringSubmatch(string(out))
			if m == nil {
				t.Fatalf("debugfs dx_hash: %s", out)
			}
			hash, minor := dirHash(n, s)
			if got := fmt.Sprintf("%x %x", hash, minor); got != m[1]+" "+m[2] {
				t.Errorf("dirHash(%q, seed %x) = %s; debugfs says %s %s", n, s, got, m[1], m[2])
			}
		}
	}
}
