package gobin

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

// Source is where a build's gateway programs come from: embedded in
// this binary, or built from a source folder.
type Source struct {
	// Dir is the source folder, "" for the embedded programs.
	Dir string
	man *Manifest
}

// Manifest describes the embedded programs (embedded/manifest.json).
type Manifest struct {
	Go       string          `json:"go"`
	Programs []ManifestEntry `json:"programs"`
}

// ManifestEntry is one embedded program.
type ManifestEntry struct {
	Package string `json:"package"`
	Arch    string `json:"arch"`
	// File is its path inside the embedded folder.
	File   string `json:"file"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// ManifestName is the manifest's name in the embedded folder.
const ManifestName = "manifest.json"

// Find picks the programs' source: the folder APPLIANCE_SOURCE names,
// else the programs embedded in this binary, else appliance's source
// found as SourceDir says (development builds).
func Find() (*Source, error) {
	if os.Getenv("APPLIANCE_SOURCE") == "" {
		if m, err := Embedded(); err != nil {
			return nil, err
		} else if m != nil {
			return &Source{man: m}, nil
		}
	}
	dir, err := SourceDir()
	if err != nil {
		return nil, err
	}
	return &Source{Dir: dir}, nil
}

// Embedded returns the manifest of the programs this binary carries, or
// nil when it carries none.
func Embedded() (*Manifest, error) {
	b, err := fs.ReadFile(embedded, path.Join("embedded", ManifestName))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("the embedded programs' manifest: %w", err)
	}
	return &m, nil
}

func (s *Source) String() string {
	if s.Dir == "" {
		return "embedded in appliance (" + s.man.Go + ")"
	}
	return "built from the source in " + s.Dir
}

// Key changes whenever the programs Build gives for arch would.
func (s *Source) Key(ctx context.Context, arch string) (string, error) {
	if s.Dir == "" {
		b, err := json.Marshal(s.man)
		if err != nil {
			return "", err
		}
		sum := sha256.Sum256(append([]byte("embedded "+arch+"\n"), b...))
		return hex.EncodeToString(sum[:]), nil
	}
	v, err := GoVersion(ctx)
	if err != nil {
		return "", err
	}
	return sourceHash(s.Dir, v, arch)
}

// Build gives the programs for linux/arch.
func (s *Source) Build(ctx context.Context, arch string, progs []Program) ([]Built, error) {
	if s.Dir == "" {
		return s.fromEmbedded(arch, progs)
	}
	return s.fromSource(ctx, arch, progs)
}

func (s *Source) fromEmbedded(arch string, progs []Program) ([]Built, error) {
	var out []Built
	for _, p := range progs {
		i := slices.IndexFunc(s.man.Programs, func(e ManifestEntry) bool { return e.Package == p.Package && e.Arch == arch })
		if i < 0 {
			return nil, fmt.Errorf("this appliance binary carries no %s for linux/%s; rebuild appliance with make build", p.Package, arch)
		}
		e := s.man.Programs[i]
		data, err := fs.ReadFile(embedded, path.Join("embedded", e.File))
		if err != nil {
			return nil, err
		}
		b, err := built(p, data)
		if err != nil {
			return nil, err
		}
		if b.SHA256 != e.SHA256 || int64(len(data)) != e.Size {
			return nil, fmt.Errorf("the embedded %s is not the one its manifest names; rebuild appliance with make build", p.Package)
		}
		out = append(out, b)
	}
	return out, nil
}

func (s *Source) fromSource(ctx context.Context, arch string, progs []Program) ([]Built, error) {
	if _, err := GoVersion(ctx); err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp("", "appliance-programs-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	var pkgs []string
	for _, p := range progs {
		if !slices.Contains(pkgs, p.Package) {
			pkgs = append(pkgs, p.Package)
		}
	}
	if b, err := BuildCommand(ctx, s.Dir, arch, tmp, pkgs...).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("building %s for linux/%s: %v\n%s", strings.Join(pkgs, ", "), arch, err, b)
	}
	var out []Built
	for _, p := range progs {
		data, err := os.ReadFile(filepath.Join(tmp, path.Base(p.Package)))
		if err != nil {
			return nil, err
		}
		b, err := built(p, data)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

// GoVersion is the version of the Go toolchain on PATH, which builds
// programs from source.
func GoVersion(ctx context.Context) (string, error) {
	if _, err := exec.LookPath("go"); err != nil {
		return "", errors.New("building the gateway's programs from appliance's source needs the Go toolchain on PATH; a release binary (make build) carries them instead")
	}
	v, err := exec.CommandContext(ctx, "go", "env", "GOVERSION").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOVERSION: %w", err)
	}
	return strings.TrimSpace(string(v)), nil
}
