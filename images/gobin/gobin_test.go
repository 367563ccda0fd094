package gobin

import (
	"context"
	"crypto/sha256"
	"debug/elf"
	"os"
	"testing"
)

// TestBuild builds the gateway's programs for arm64 twice, in two caches:
// the binaries are identical byte for byte, ARM64 ELF, and list their
// Go modules.
func TestBuild(t *testing.T) {
	src, err := SourceDir("")
	if err != nil {
		t.Fatal(err)
	}
	progs := []Program{{Package: Module + "/cmd/appliance-init", Path: "/usr/lib/appliance/init"}}
	var sums [2][32]byte
	for i := range sums {
		built, err := Build(context.Background(), src, t.TempDir(), "arm64", progs)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(built[0].File)
		sums[i] = sha256.Sum256(b)
		f, err := elf.Open(built[0].File)
		if err != nil || f.Machine != elf.EM_AARCH64 {
			t.Fatalf("not an arm64 ELF: %v", err)
		}
		f.Close()
		if i == 0 && len(built[0].Deps) == 0 {
			t.Errorf("no Go modules recorded")
		}
	}
	if sums[0] != sums[1] {
		t.Errorf("two builds of the same source differ")
	}
	// The cache is reused: a second Build in the same cache builds nothing.
	cache := t.TempDir()
	first, _ := Build(context.Background(), src, cache, "arm64", progs)
	st1, _ := os.Stat(first[0].File)
	second, _ := Build(context.Background(), src, cache, "arm64", progs)
	st2, _ := os.Stat(second[0].File)
	if first[0].File != second[0].File || !st1.ModTime().Equal(st2.ModTime()) {
		t.Errorf("the cache was not reused")
	}
}
