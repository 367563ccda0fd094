package gobin

import (
	"bytes"
	"context"
	"debug/elf"
	"os"
	"strings"
	"testing"
)

// TestFromSource builds the gateway's init for arm64 from source twice,
// the second time with an empty Go build cache: the binaries are
// identical byte for byte, ARM64 ELF, and list their Go modules. The
// source's key is stable and changes with the architecture.
func TestFromSource(t *testing.T) {
	dir, err := SourceDir()
	if err != nil {
		t.Fatal(err)
	}
	s := &Source{Dir: dir}
	progs := []Program{{Package: Module + "/cmd/appliance-init", Path: "/usr/lib/appliance/init"}}
	ctx := context.Background()
	first, err := s.Build(ctx, "arm64", progs)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("GOCACHE", t.TempDir())
	second, err := s.Build(ctx, "arm64", progs)
	if err != nil {
		t.Fatal(err)
	}
	if first[0].SHA256 != second[0].SHA256 || !bytes.Equal(first[0].Data, second[0].Data) {
		t.Errorf("two builds of the same source differ: %s, %s", first[0].SHA256, second[0].SHA256)
	}
	f, err := elf.NewFile(bytes.NewReader(first[0].Data))
	if err != nil || f.Machine != elf.EM_AARCH64 {
		t.Fatalf("not an arm64 ELF: %v", err)
	}
	if len(first[0].Deps) == 0 {
		t.Errorf("no Go modules recorded")
	}
	k1, _ := s.Key(ctx, "arm64")
	k2, _ := s.Key(ctx, "arm64")
	k3, _ := s.Key(ctx, "amd64")
	if k1 == "" || k1 != k2 || k1 == k3 {
		t.Errorf("keys: %q twice %q, amd64 %q", k1, k2, k3)
	}
}

// TestNoGo: building from source without Go on PATH says what to do.
func TestNoGo(t *testing.T) {
	dir, err := SourceDir()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", t.TempDir())
	_, err = (&Source{Dir: dir}).Build(context.Background(), "arm64", []Program{{Package: Module + "/cmd/ingest"}})
	if err == nil || !strings.Contains(err.Error(), "Go toolchain") || !strings.Contains(err.Error(), "release binary") {
		t.Errorf("without Go: %v", err)
	}
}

// TestSourceDirFromEnv: APPLIANCE_SOURCE names the source; a folder that
// is not appliance's source is refused by name.
func TestSourceDirFromEnv(t *testing.T) {
	bad := t.TempDir()
	t.Setenv("APPLIANCE_SOURCE", bad)
	if _, err := SourceDir(); err == nil || !strings.Contains(err.Error(), bad) {
		t.Errorf("APPLIANCE_SOURCE at an empty folder: %v", err)
	}
	if _, err := Find(); err == nil {
		t.Errorf("Find with a bad APPLIANCE_SOURCE succeeded")
	}
	os.Unsetenv("APPLIANCE_SOURCE")
}
