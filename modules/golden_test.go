package modules_test

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/appliance/appliance/modules"
	"github.com/appliance/appliance/spec"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// TestGolden renders every module's files for both examples and compares
// them with testdata/golden (go test ./modules -update refreshes them).
// The files hold no secret: keys come from the state, and configs that
// need one inline hold a placeholder until they are installed.
func TestGolden(t *testing.T) {
	for _, ex := range []string{"demo", "greenhouse"} {
		t.Run(ex, func(t *testing.T) {
			site, rep := spec.Load("../examples/"+ex+".hcl", spec.Options{Environ: []string{"HOME=/nonexistent"}, Partial: true})
			if rep.HasErrors() {
				t.Fatal("example does not load")
			}
			set, err := modules.Collect(site)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string][]byte{}
			var manifest bytes.Buffer
			for _, f := range set.Files() {
				flags := ""
				switch f.Source.Kind {
				case modules.Inline:
				case modules.Expand:
					flags += " expand"
				default:
					flags += " from=" + f.Source.String()
				}
				if f.Sensitive {
					flags += " sensitive"
				}
				fmt.Fprintf(&manifest, "file %s %04o %s:%s%s\n", f.Path, f.Mode, f.Owner, f.Group, flags)
				if f.Source.Kind == modules.Inline || f.Source.Kind == modules.Expand {
					got[strings.TrimPrefix(f.Path, "/")] = f.Content
				}
			}
			var links []string
			for _, c := range set.Contributions {
				for _, l := range c.Symlinks {
					links = append(links, fmt.Sprintf("link %s -> %s\n", l.Path, l.Target))
				}
				for _, d := range c.Dirs {
					links = append(links, fmt.Sprintf("dir %s %04o %s:%s\n", d.Path, d.Mode, d.Owner, d.Group))
				}
			}
			sort.Strings(links)
			manifest.WriteString(strings.Join(links, ""))
			for _, u := range set.Users() {
				fmt.Fprintf(&manifest, "user %s %d %s %s %s %v\n", u.Name, u.UID, u.Group, u.Home, u.Shell, u.Groups)
			}
			for _, g := range set.Groups() {
				fmt.Fprintf(&manifest, "group %s %d\n", g.Name, g.GID)
			}
			fmt.Fprintf(&manifest, "packages %s\n", strings.Join(set.Packages(), " "))
			got["MANIFEST"] = manifest.Bytes()

			dir := filepath.Join("testdata/golden", ex)
			if *update {
				os.RemoveAll(dir)
				for p, b := range got {
					os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o755)
					if err := os.WriteFile(filepath.Join(dir, p), b, 0o644); err != nil {
						t.Fatal(err)
					}
				}
				return
			}
			seen := map[string]bool{}
			filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
				if err != nil || fi.IsDir() {
					return err
				}
				rel, _ := filepath.Rel(dir, p)
				seen[rel] = true
				want, _ := os.ReadFile(p)
				if g, ok := got[rel]; !ok {
					t.Errorf("%s: the modules no longer write %s", ex, rel)
				} else if !bytes.Equal(g, want) {
					t.Errorf("%s: %s differs from the golden file; run go test ./modules -update if intended\n--- got:\n%s", ex, rel, g)
				}
				return nil
			})
			for p := range got {
				if !seen[p] {
					t.Errorf("%s: new file %s has no golden copy; run go test ./modules -update", ex, p)
				}
			}
		})
	}
}
