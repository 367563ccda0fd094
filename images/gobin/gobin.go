// Package gobin gives appliance's own programs for the gateway — the
// init, the ingest service, the setup tool — as the bytes a build puts
// into the image.
//
// A release binary of appliance carries them: `make build` compiles them
// for linux/arm64 (go generate, see internal/gen) and embeds them with the
// appliance_embed build tag, so a user needs neither Go nor appliance's
// source. A binary built without the tag (go test, go run, go install)
// builds them from appliance's source with the Go toolchain instead, for
// development; APPLIANCE_SOURCE chooses a source folder over the embedded
// programs.
//
// Both ways build with the same command (BuildCommand): CGO off,
// -trimpath, no build ID or VCS stamp, so the programs are reproducible.
// Nothing is kept in appliance's cache: programs built from source are
// built anew when a build needs them (Go's own build cache makes that a
// second), so no cached binary can be swapped under a build.
package gobin

//go:generate go run ./internal/gen -o embedded

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"debug/buildinfo"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
)

// Module is the module path of appliance's source.
const Module = "github.com/appliance/appliance"

// Gateway lists every program appliance puts on a gateway; a release
// binary embeds each of them for every architecture in Arches.
var Gateway = []string{
	Module + "/cmd/appliance-init",
	Module + "/cmd/ingest",
	Module + "/cmd/appliance-health",
	Module + "/cmd/appliance-setup",
	Module + "/cmd/appliance-apply",
}

// Arches are the gateway architectures a release binary carries
// programs for.
var Arches = []string{"arm64"}

// Program is one program built for the gateway.
type Program struct {
	// Package is the import path, such as Module + "/cmd/ingest".
	Package string
	// Path is where the program goes on the gateway.
	Path string
}

// Built is a program ready for the gateway.
type Built struct {
	Program
	// Data is the linux binary; SHA256 its digest in hex.
	Data   []byte
	SHA256 string
	// Deps are the Go modules compiled into it (for the SBOM).
	Deps []Dep
}

// Dep is a Go module in a binary.
type Dep struct {
	Path, Version, Sum string
}

// BuildCommand is the one command that builds gateway programs, for
// the embedded set and for builds from source alike: each package's
// binary is written into outDir under the package's last element.
func BuildCommand(ctx context.Context, src, arch, outDir string, pkgs ...string) *exec.Cmd {
	args := append([]string{"build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w -buildid=", "-o", outDir + string(filepath.Separator)}, pkgs...)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch, "GOFLAGS=-mod=readonly")
	return cmd
}

// SourceDir finds appliance's source: $APPLIANCE_SOURCE, the folder this
// package was compiled from (when the binary kept its file names, as go
// build and go install do without -trimpath), or a parent of the working
// folder or of the executable that holds appliance's go.mod.
func SourceDir() (string, error) {
	if d := os.Getenv("APPLIANCE_SOURCE"); d != "" {
		if isSource(d) {
			return d, nil
		}
		return "", fmt.Errorf("APPLIANCE_SOURCE=%s is not appliance's source (no go.mod of %s there)", d, Module)
	}
	var starts []string
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		starts = append(starts, filepath.Dir(file))
	}
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
	return "", fmt.Errorf("this appliance binary carries no gateway programs and appliance's source was not found to build them: use a release binary (make build), or set APPLIANCE_SOURCE to a checkout and have Go on PATH")
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

// sourceHash hashes every file a build of the programs reads: Go sources
// (not tests), embedded files, go.mod and go.sum, and the toolchain
// version.
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
			if p != dir && (strings.HasPrefix(name, ".") || name == "testdata" || name == "out" || name == "bin" || name == "embedded") {
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

// built makes a Built of a program's binary, with the modules Go
// recorded in it.
func built(p Program, data []byte) (Built, error) {
	sum := sha256.Sum256(data)
	b := Built{Program: p, Data: data, SHA256: hex.EncodeToString(sum[:])}
	info, err := buildinfo.Read(bytes.NewReader(data))
	if err != nil {
		return b, fmt.Errorf("%s: reading its Go build information: %w", p.Package, err)
	}
	for _, d := range info.Deps {
		if d.Replace != nil {
			d = d.Replace
		}
		b.Deps = append(b.Deps, Dep{Path: d.Path, Version: d.Version, Sum: d.Sum})
	}
	return b, nil
}
