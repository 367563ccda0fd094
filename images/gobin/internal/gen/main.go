// Command gen builds the gateway's programs for every gateway
// architecture into a folder, with a manifest of their digests, for a
// release binary of appliance to embed (go generate in images/gobin;
// make build runs it). The folder is replaced whole, so a failed run
// leaves the old one.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/appliance/appliance/images/gobin"
)

func main() {
	out := flag.String("o", "embedded", "folder to write")
	arches := flag.String("arch", strings.Join(gobin.Arches, ","), "the GOARCHes to build for, comma-separated (benchmarks run the gateway's programs on this machine)")
	flag.Parse()
	if err := run(context.Background(), *out, strings.Split(*arches, ",")); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, out string, arches []string) error {
	src, err := gobin.SourceDir()
	if err != nil {
		return err
	}
	out, err = filepath.Abs(out)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(out), "."+filepath.Base(out)+".tmp-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	goVersion, err := gobin.GoVersion(ctx)
	if err != nil {
		return err
	}
	m := gobin.Manifest{Go: goVersion}
	for _, arch := range arches {
		dir := "linux-" + arch
		if b, err := gobin.BuildCommand(ctx, src, arch, filepath.Join(tmp, dir), gobin.Gateway...).CombinedOutput(); err != nil {
			return fmt.Errorf("building the gateway's programs for linux/%s: %v\n%s", arch, err, b)
		}
		for _, pkg := range gobin.Gateway {
			file := path.Join(dir, path.Base(pkg))
			data, err := os.ReadFile(filepath.Join(tmp, file))
			if err != nil {
				return err
			}
			sum := sha256.Sum256(data)
			m.Programs = append(m.Programs, gobin.ManifestEntry{Package: pkg, Arch: arch, File: file, Size: int64(len(data)), SHA256: hex.EncodeToString(sum[:])})
		}
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(tmp, gobin.ManifestName), append(b, '\n'), 0o644); err != nil {
		return err
	}
	if err := os.RemoveAll(out); err != nil {
		return err
	}
	return os.Rename(tmp, out)
}
