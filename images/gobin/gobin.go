// Package gobin builds appliance's own programs for the gateway —
// the init, the ingest service, the setup tool — from the same source
// as the appliance binary that runs the build, with the Go toolchain
// alone, as gokrazy does. Builds are reproducible (CGO off, -trimpath,
// no build ID or VCS stamp) and cached by a hash of the source, so an
// unchanged rebuild costs nothing.
package gobin

import (
	"bufio"
	"context"
	"crypto/sha256"
	"debug/buildinfo"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// Module is the module path of appliance's source.
const Module = "github.com/appliance/appliance"

// Program is one program built for the gateway.
type Program struct {
	// Package is the import path, such as Module + "/cmd/ingest".
	Package string
	// Path is where the program goes on the gateway.
	Path string
}

// Built is a program built for the gateway.
type Built struct {
	Program
	// File is the built binary, in the cache.
	File string
	// Deps are the Go modules compiled into it (for the SBOM).
	Deps []Dep
}

// Dep is a Go module in a binary.
type Dep struct {
	Path, Version, Sum string
}

// SourceDir finds appliance's source: $APPLIANCE_SOURCE, the folder the
// build recorded (from is set at link time by the Makefile), or a
// parent of the working folder or of the executable that holds
// appliance's go.mod.
func SourceDir(from string) (string, error) {
	var tried []string
	for _, d := range []string{os.Getenv("APPLIANCE_SOURCE"), from} {
		if d != "" {
			if isSource(d) {
				return d, nil
			}
			tried = append(tried, d)
		}
	}
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if exe, err := os.Executable(); err == nil {
		starts = append(starts, filepath.Dir(exe))
	}
	for _, s := range starts {
		for d := s; ; d = filepath.Dir(d) {
			if isSource(d) {
				return d, nil
			}
			if filepath.Dir(d) == d {
				break
			}
		}
	}
	return "", fmt.Errorf("appliance's source was not found (tried %s and the parents of the working folder); the gateway's programs are built from it: set APPLIANCE_SOURCE to the checkout", strings.Join(tried, ", "))
}

func isSource(dir string) bool {
	f, err := os.Open(filepath.Join(dir, "go.mod"))
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	return sc.Scan() && strings.TrimSpace(sc.Text()) == "module "+Module
}

// SourceHash is the hash Build caches under: it changes whenever the
// programs would.
func SourceHash(ctx context.Context, src, arch string) (string, error) {
	goVersion, err := exec.CommandContext(ctx, "go", "env", "GOVERSION").Output()
	if err != nil {
		return "", fmt.Errorf("the Go toolchain is needed to build the gateway's programs: %w", err)
	}
	return sourceHash(src, strings.TrimSpace(string(goVersion)), arch)
}

// sourceHash hashes every file the build reads: Go sources (not tests),
// embedded files, go.mod and go.sum, and the toolchain version.
func sourceHash(dir, goVersion, arch string) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "%s %s\n", goVersion, arch)
	var files []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if p != dir && (strings.HasPrefix(name, ".") || name == "testdata" || name == "out" || name == "bin") {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(name, "_test.go") {
			return nil
		}
		files = append(files, p)
		return nil
	})
	if err != nil {
		return "", err
	}
	sort.Strings(files)
	for _, p := range files {
		f, err := os.Open(p)
		if err != nil {
			return "", err
		}
		rel, _ := filepath.Rel(dir, p)
		fmt.Fprintf(h, "%s\n", rel)
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			return "", err
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Build builds the programs for GOARCH arch into cacheDir, reusing an
// earlier build of the same source.
func Build(ctx context.Context, src, cacheDir, arch string, progs []Program) ([]Built, error) {
	hash, err := SourceHash(ctx, src, arch)
	if err != nil {
		return nil, err
	}
	return BuildHashed(ctx, src, hash, cacheDir, arch, progs)
}

// BuildHashed is Build for a caller that has the SourceHash already.
func BuildHashed(ctx context.Context, src, hash, cacheDir, arch string, progs []Program) ([]Built, error) {
	dir := filepath.Join(cacheDir, "gobin", hash[:32])
	var out []Built
	for _, p := range progs {
		bin := filepath.Join(dir, filepath.Base(p.Package))
		if _, err := os.Stat(bin); errors.Is(err, fs.ErrNotExist) {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return nil, err
			}
			tmp := bin + ".tmp"
			cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w -buildid=", "-o", tmp, p.Package)
			cmd.Dir = src
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch, "GOFLAGS=-mod=readonly")
			if b, err := cmd.CombinedOutput(); err != nil {
				os.Remove(tmp)
				return nil, fmt.Errorf("building %s for linux/%s: %v\n%s", p.Package, arch, err, b)
			}
			if err := os.Rename(tmp, bin); err != nil {
				return nil, err
			}
		} else if err != nil {
			return nil, err
		}
		info, err := buildinfo.ReadFile(bin)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", bin, err)
		}
		b := Built{Program: p, File: bin}
		for _, d := range info.Deps {
			if d.Replace != nil {
				d = d.Replace
			}
			b.Deps = append(b.Deps, Dep{Path: d.Path, Version: d.Version, Sum: d.Sum})
		}
		out = append(out, b)
	}
	return out, nil
}
