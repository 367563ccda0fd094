package spec

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files")

// testEnv is a fixed environment, so that results do not depend on the
// machine running the tests.
var testEnv = []string{"HOME=/nonexistent", "APPLIANCE_TEST=1"}

func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./spec -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from what the code produces now; if the change is intended, run go test ./spec -update.\n--- got:\n%s\n--- want:\n%s", path, got, want)
	}
}

// TestValid loads every spec in testdata/valid and compares the decoded
// site, defaults included, with its golden JSON.
func TestValid(t *testing.T) {
	entries, err := os.ReadDir("testdata/valid")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		name := e.Name()
		if !e.IsDir() && !strings.HasSuffix(name, ".hcl") {
			continue
		}
		t.Run(name, func(t *testing.T) {
			path := filepath.Join("testdata/valid", name)
			site, rep := Load(path, Options{Environ: testEnv, Partial: true})
			var text bytes.Buffer
			rep.WriteText(&text)
			if rep.HasErrors() {
				t.Fatalf("Load(%s) failed:\n%s", path, text.String())
			}
			got, err := json.MarshalIndent(struct {
				Site        *Site  `json:"site"`
				Diagnostics string `json:"diagnostics"`
			}{site, text.String()}, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			golden(t, strings.TrimSuffix(path, ".hcl")+".golden.json", append(got, '\n'))
		})
	}
}

// TestInvalid loads every spec in testdata/invalid and compares the
// rendered diagnostics with the golden text.
func TestInvalid(t *testing.T) {
	matches, err := filepath.Glob("testdata/invalid/*.hcl")
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range matches {
		t.Run(filepath.Base(path), func(t *testing.T) {
			site, rep := Load(path, Options{Environ: testEnv, Partial: true})
			if !rep.HasErrors() || site != nil {
				t.Fatalf("Load(%s) reported no error", path)
			}
			var text bytes.Buffer
			if err := rep.WriteText(&text); err != nil {
				t.Fatal(err)
			}
			golden(t, strings.TrimSuffix(path, ".hcl")+".txt", text.Bytes())
		})
	}
}

// TestExamples checks that the shipped examples are valid and formatted.
func TestExamples(t *testing.T) {
	for _, path := range []string{"../examples/demo.hcl", "../examples/greenhouse.hcl"} {
		site, rep := Load(path, Options{Environ: testEnv, Partial: true})
		if rep.HasErrors() {
			var text bytes.Buffer
			rep.WriteText(&text)
			t.Errorf("%s: %s", path, text.String())
			continue
		}
		if errs, warns := rep.Count(); errs+warns != 0 {
			t.Errorf("%s: %d warnings, want none", path, warns)
		}
		if len(site.Pending) == 0 {
			t.Errorf("%s: Pending is empty; the Wi-Fi passphrase variable has no default and should be pending", path)
		}
		src, _ := os.ReadFile(path)
		if ok, _ := IsFormatted(src, path); !ok {
			t.Errorf("%s is not formatted; run appliance fmt %s", path, path)
		}
	}
}
