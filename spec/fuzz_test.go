package spec

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzLoad feeds arbitrary text to the decoder: whatever it is, Load must
// return a site or diagnostics, never panic.
func FuzzLoad(f *testing.F) {
	for _, dir := range []string{"testdata/valid", "testdata/invalid", "../examples"} {
		matches, _ := filepath.Glob(filepath.Join(dir, "*.hcl"))
		for _, m := range matches {
			if b, err := os.ReadFile(m); err == nil {
				f.Add(b)
			}
		}
	}
	f.Add([]byte(`node "x" { count = -1 }`))
	f.Add([]byte("variable \"v\" {\n  validation {\n    condition = var.v\n    error_message = 1\n  }\n}\n"))
	f.Fuzz(func(t *testing.T, src []byte) {
		site, rep := LoadSources([]string{"fuzz.hcl"}, [][]byte{src}, "testdata/valid", Options{Environ: testEnv, Partial: true})
		if site == nil && !rep.HasErrors() {
			t.Fatalf("no site and no error")
		}
		var discard discardWriter
		rep.WriteText(discard)
		rep.JSON()
	})
}

type discardWriter struct{}

func (discardWriter) Write(p []byte) (int, error) { return len(p), nil }
