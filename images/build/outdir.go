package build

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/appliance/appliance/outputs"
)

// MarkerName is the file that marks a folder as a build's output. A build
// replaces its output folder whole, so it replaces only a folder that a
// build made, and never one that holds what the build reads.
const MarkerName = outputs.MarkerName

const markerText = "This folder is an appliance build output: appliance build replaces it whole.\n"

// checkOutDir refuses an output folder that a build must not replace: a
// file, a folder that no build made (an empty one is fine), and any
// folder that holds one of keep (the spec, its lock, the state, the
// cache), however it was made.
func checkOutDir(out string, keep []kept) error {
	abs, err := filepath.Abs(out)
	if err != nil {
		return err
	}
	for _, k := range keep {
		what, p := k.what, k.path
		if p == "" {
			continue
		}
		kp, err := filepath.Abs(p)
		if err != nil {
			return err
		}
		if within(kp, abs) {
			return fmt.Errorf("the output folder %s holds the %s (%s), which a build replaces whole; choose a folder of its own for the outputs, such as out/SITE", out, what, p)
		}
	}
	fi, err := os.Lstat(abs)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("the output folder %s is a file; name a folder for the outputs (a build replaces it whole)", out)
	}
	if isOutput(abs) {
		return nil
	}
	ents, err := os.ReadDir(abs)
	if err != nil {
		return err
	}
	if len(ents) > 0 {
		return fmt.Errorf("the output folder %s is not empty and no build made it (it has no %s); a build replaces its output folder whole, so it leaves this one alone: choose a new or empty folder, or an earlier build's output", out, MarkerName)
	}
	return nil
}

// kept is something a build reads, which its output folder must not hold.
type kept struct{ what, path string }

// isOutput reports whether dir was made by a build: it has the marker,
// or, from builds before the marker, a build-info.json naming a site.
func isOutput(dir string) bool {
	if b, err := os.ReadFile(filepath.Join(dir, MarkerName)); err == nil && string(b) == markerText {
		return true
	}
	i, err := readInfo(dir)
	return err == nil && i.Site != "" && i.Key != ""
}

// within reports whether p is dir or inside it.
func within(p, dir string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

func writeMarker(dir string) error {
	return os.WriteFile(filepath.Join(dir, MarkerName), []byte(markerText), 0o644)
}
