package desired_test

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/appliance/appliance/desired"
	"github.com/appliance/appliance/modules"
	"github.com/appliance/appliance/spec"
	"github.com/appliance/appliance/state"
)

func demo(t *testing.T) (*desired.Gateway, *state.Store) {
	t.Helper()
	site, rep := spec.Load("../examples/demo.hcl", spec.Options{Environ: []string{"HOME=/nonexistent", "APPLIANCE_VAR_wifi_psk=desired-test-psk"}})
	if rep.HasErrors() {
		var b bytes.Buffer
		rep.WriteText(&b)
		t.Fatal(b.String())
	}
	g, err := desired.Compute(site)
	if err != nil {
		t.Fatal(err)
	}
	st, err := state.Open(filepath.Join(t.TempDir(), "state"), state.Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if _, err := st.Ensure(g.Wants, false); err != nil {
		t.Fatal(err)
	}
	return g, st
}

// TestApplyToFolder: every folder, file and link of the desired gateway
// lands in a folder target with its mode and bytes; placeholders are
// filled from the state and the disk identity, and no @@ is left.
func TestApplyToFolder(t *testing.T) {
	g, st := demo(t)
	r, err := g.Resolve(st, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	if err := r.Apply(desired.Folder{Root: root}); err != nil {
		t.Fatal(err)
	}
	for _, f := range r.Files {
		p := filepath.Join(root, f.Path)
		fi, err := os.Stat(p)
		if err != nil {
			t.Errorf("%s: %v", f.Path, err)
			continue
		}
		if fi.Mode().Perm() != f.Mode.Perm() {
			t.Errorf("%s: mode %v; want %v", f.Path, fi.Mode().Perm(), f.Mode.Perm())
		}
		if b, _ := os.ReadFile(p); !bytes.Equal(b, f.Data) {
			t.Errorf("%s: content differs from the resolved bytes", f.Path)
		}
		if bytes.Contains(f.Data, []byte("@@state:")) || bytes.Contains(f.Data, []byte("@@disk:")) {
			t.Errorf("%s: a placeholder is left", f.Path)
		}
		if f.Source.Kind == modules.FromState {
			want, _ := st.ReadFile(f.Source.Name)
			if !bytes.Equal(f.Data, want) {
				t.Errorf("%s: not the state's %s", f.Path, f.Source.Name)
			}
		}
	}
	for _, d := range r.Dirs {
		if fi, err := os.Stat(filepath.Join(root, d.Path)); err != nil || !fi.IsDir() || fi.Mode().Perm() != d.Mode.Perm() {
			t.Errorf("folder %s: %v %v", d.Path, fi, err)
		}
	}
	for _, l := range r.Symlinks {
		if got, err := os.Readlink(filepath.Join(root, l.Path)); err != nil || got != l.Target {
			t.Errorf("link %s -> %q (%v); want %s", l.Path, got, err, l.Target)
		}
	}
	fstab, _ := os.ReadFile(filepath.Join(root, "etc/fstab"))
	if !strings.Contains(string(fstab), "PARTUUID="+r.Disk.RootPartUUID()+"\t/\t") || !strings.Contains(string(fstab), "PARTUUID="+r.Disk.BootPartUUID()+"\t/boot/firmware\t") {
		t.Errorf("fstab does not mount the disk's partitions %s and %s:\n%s", r.Disk.RootPartUUID(), r.Disk.BootPartUUID(), fstab)
	}
	// Applying again changes nothing and fails on nothing.
	before := listing(t, root)
	if err := r.Apply(desired.Folder{Root: root}); err != nil {
		t.Fatal(err)
	}
	if after := listing(t, root); after != before {
		t.Errorf("a second Apply changed the folder")
	}
}

// TestDiskIdentity: the disk identity depends on the site and its CA
// only, and differs between two sites of one name.
func TestDiskIdentity(t *testing.T) {
	a := desired.DiskOf("demo", []byte("ca one"))
	if b := desired.DiskOf("demo", []byte("ca one")); a != b {
		t.Errorf("the same site and CA give two identities")
	}
	if c := desired.DiskOf("demo", []byte("ca two")); c.ID == a.ID || c.RootUUID == a.RootUUID {
		t.Errorf("another CA gives the same identity")
	}
	if got := a.RootPartUUID(); !strings.HasSuffix(got, "-02") || len(got) != 11 {
		t.Errorf("root PARTUUID %q", got)
	}
}

func listing(t *testing.T, root string) string {
	var b strings.Builder
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		fi, _ := d.Info()
		data, _ := os.ReadFile(p)
		b.WriteString(p + " " + fi.Mode().String() + " " + string(data) + "\n")
		return nil
	})
	return b.String()
}
