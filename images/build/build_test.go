package build_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/appliance/appliance/images/build"
	"github.com/appliance/appliance/images/build/buildtest"
	"github.com/appliance/appliance/images/gobin"
	"github.com/appliance/appliance/images/tree"
	"github.com/appliance/appliance/internal/testenv"
	"github.com/appliance/appliance/state"
)

type demo struct {
	opt build.Options
	st  *state.Store
}

// demoBuild prepares a build of examples/demo.hcl from its committed lock
// and the real Debian archive (the shared cache keeps later runs warm).
func demoBuild(t *testing.T) *demo {
	t.Helper()
	return siteBuild(t, "../../examples/demo.hcl")
}

// siteBuild prepares a build of a spec with new state.
func siteBuild(t *testing.T, specPath string) *demo {
	t.Helper()
	opt, st := buildtest.Options(t, specPath)
	return &demo{st: st, opt: opt}
}

func (d *demo) build(t *testing.T, out string) *build.Result {
	t.Helper()
	var log bytes.Buffer
	opt := d.opt
	opt.OutDir, opt.Log = out, &log
	r, err := build.Build(context.Background(), opt)
	if err != nil {
		t.Fatalf("build: %v\n%s", err, log.String())
	}
	return r
}

// table is a partition table as sfdisk --json reads it.
type table struct {
	Label, ID  string
	Partitions []struct {
		Start, Size int64
		Type        string
	}
}

func readTable(t *testing.T, img string) table {
	t.Helper()
	var out struct{ PartitionTable table }
	if err := json.Unmarshal([]byte(testenv.MustRun(t, "sfdisk", "--json", img)), &out); err != nil {
		t.Fatal(err)
	}
	return out.PartitionTable
}

// loop gives partition i a read-only loop device of its own, by offset:
// the partition nodes of a scanned loop device need udev, which
// containers lack.
func (pt table) loop(t *testing.T, img string, i int) string {
	t.Helper()
	if i >= len(pt.Partitions) {
		t.Fatalf("%s has no partition %d: %+v", img, i+1, pt)
	}
	p := pt.Partitions[i]
	dev := strings.TrimSpace(testenv.MustRun(t, "losetup", "--find", "--show", "--read-only",
		"--offset", fmt.Sprint(p.Start*512), "--sizelimit", fmt.Sprint(p.Size*512), img))
	t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })
	return dev
}

// TestDemoImage builds the demo site and reads the image back with the
// system's own tools: the partition table, e2fsck and fsck.vfat, and a
// read-only mount of the root compared entry by entry with the tree
// (type, mode, owner, size, SHA-256 of content, symlink target);
// bmaptool copies its compressed copy by its bmap, checking every range.
// A second build is bit-identical, a third is recognised as up to date,
// and a failing build leaves the outputs as they were.
func TestDemoImage(t *testing.T) {
	d := demoBuild(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "demo")
	r := d.build(t, out)
	checkSecurity(t, out, "mosquitto", "nginx", "health", "ssh", "firewall")
	img := filepath.Join(out, build.ImageName)
	check := exec.Command("sha256sum", "--check", "--quiet", build.SumsName)
	check.Dir = out
	if b, err := check.CombinedOutput(); err != nil {
		t.Fatalf("sha256sum --check: %v\n%s", err, b)
	}
	// bmaptool decodes the compressed copy (frame after frame) and checks
	// every range's checksum as it writes; the result, holes and all, is
	// the image.
	copied := filepath.Join(dir, "copy.img")
	testenv.MustRun(t, "bmaptool", "--quiet", "copy", "--bmap", img+".bmap", img+".zst", copied)
	testenv.MustRun(t, "cmp", img, copied)
	os.Remove(copied)

	pt := readTable(t, img)
	if pt.Label != "dos" || pt.ID != "0x"+r.Info.DiskID || len(pt.Partitions) != 2 ||
		pt.Partitions[0].Start != 8192 || pt.Partitions[0].Type != "c" || pt.Partitions[1].Type != "83" {
		t.Errorf("partition table: %+v", pt)
	}
	if !strings.Contains(r.Info.Cmdline, "root=PARTUUID="+r.Info.DiskID+"-02") {
		t.Errorf("command line %q does not name the root partition", r.Info.Cmdline)
	}
	boot, root := pt.loop(t, img, 0), pt.loop(t, img, 1)
	testenv.MustRun(t, "e2fsck", "-fn", root)
	testenv.MustRun(t, "fsck.vfat", "-n", boot)
	mnt := t.TempDir()
	testenv.MustRun(t, "mount", "-o", "ro", root, mnt)
	defer exec.Command("umount", mnt).Run()
	compareTree(t, r.Tree, d.opt.Cache, mnt)

	// The boot partition holds what QEMU boots, as appliance vm takes it.
	for _, f := range []string{"vmlinuz", "initrd.img", "cmdline.txt"} {
		want, _ := os.ReadFile(filepath.Join(out, "boot", f))
		copied := filepath.Join(t.TempDir(), f)
		testenv.MustRun(t, "mcopy", "-n", "-i", boot, "::/"+f, copied)
		if got, _ := os.ReadFile(copied); !bytes.Equal(got, want) {
			t.Errorf("the boot partition's %s (%d bytes) differs from out/boot/%s (%d bytes)", f, len(got), f, len(want))
		}
	}

	again := filepath.Join(dir, "again")
	d.build(t, again)
	a, _ := os.ReadFile(filepath.Join(out, build.SumsName))
	b, _ := os.ReadFile(filepath.Join(again, build.SumsName))
	if !bytes.Equal(a, b) {
		t.Errorf("two builds of the same inputs differ:\n%s\n%s", a, b)
	}
	if r := d.build(t, out); !r.UpToDate {
		t.Errorf("an unchanged rebuild was not recognised")
	}

	// A build that fails leaves the outputs as they were, and no debris.
	before, _ := os.ReadFile(filepath.Join(out, build.SumsName))
	bad := d.opt
	bad.OutDir, bad.Programs, bad.Epoch = out, &gobin.Source{Dir: t.TempDir()}, new(int64)
	if _, err := build.Build(context.Background(), bad); err == nil {
		t.Fatalf("a build with no source for the gateway's programs succeeded")
	}
	after, _ := os.ReadFile(filepath.Join(out, build.SumsName))
	if !bytes.Equal(before, after) {
		t.Errorf("a failed build changed the outputs")
	}
	left, _ := filepath.Glob(filepath.Join(dir, ".demo.tmp-*"))
	if len(left) != 0 {
		t.Errorf("a failed build left %v", left)
	}
}

// compareTree checks every entry of the tree against the mounted image.
func compareTree(t *testing.T, tr *tree.Tree, blobs tree.Blobs, root string) {
	t.Helper()
	seen := map[string]bool{}
	problems := 0
	for _, e := range tr.Entries() {
		if problems > 20 {
			t.Fatalf("too many differences")
		}
		p := filepath.Join(root, e.Path)
		seen[e.Path] = true
		fi, err := os.Lstat(p)
		if err != nil {
			t.Errorf("/%s: %v", e.Path, err)
			problems++
			continue
		}
		st := fi.Sys().(*syscall.Stat_t)
		want := e
		if e.Type == tree.Hardlink {
			want = tr.Get(e.Link)
		}
		if perm := uint32(st.Mode) & 0o7777; perm != want.Mode || int(st.Uid) != want.UID || int(st.Gid) != want.GID {
			t.Errorf("/%s: mode %o uid %d gid %d; want %o %d %d", e.Path, perm, st.Uid, st.Gid, want.Mode, want.UID, want.GID)
			problems++
		}
		switch e.Type {
		case tree.Symlink:
			if l, _ := os.Readlink(p); l != e.Link {
				t.Errorf("/%s -> %q; want %q", e.Path, l, e.Link)
				problems++
			}
		case tree.Regular, tree.Hardlink:
			if fi.Size() != want.Size {
				t.Errorf("/%s: size %d; want %d", e.Path, fi.Size(), want.Size)
				problems++
				continue
			}
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(b)
			if wantSum := want.Blob; wantSum != "" && hex.EncodeToString(sum[:]) != wantSum {
				t.Errorf("/%s: content differs", e.Path)
				problems++
			}
		case tree.Dir:
			if !fi.IsDir() {
				t.Errorf("/%s is not a folder", e.Path)
				problems++
			}
		case tree.CharDev, tree.BlockDev:
			if uint32(st.Rdev>>8&0xfff) != e.Major || uint32(st.Rdev&0xff|st.Rdev>>12&0xfff00) != e.Minor {
				t.Errorf("/%s: device %d; want %d:%d", e.Path, st.Rdev, e.Major, e.Minor)
				problems++
			}
		}
	}
	extra := 0
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			rel = ""
		}
		if !seen[rel] && rel != "lost+found" {
			extra++
			if extra < 5 {
				t.Errorf("/%s is in the image but not in the tree", rel)
			}
		}
		return nil
	})
	t.Logf("compared %d entries", len(seen))
}

// cancelOn cancels a context when a line starting with step is logged.
type cancelOn struct {
	step   string
	cancel context.CancelFunc
	log    bytes.Buffer
}

func (c *cancelOn) Write(b []byte) (int, error) {
	if bytes.HasPrefix(b, []byte(c.step)) {
		c.cancel()
	}
	return c.log.Write(b)
}

// TestInterrupted: a build stopped by Ctrl-C or SIGTERM in any of its
// steps says so and publishes nothing: no output folder, no temporary
// one left beside it.
func TestInterrupted(t *testing.T) {
	d := demoBuild(t)
	for _, step := range []string{"resolve", "download", "unpack", "programs", "site", "nodes", "image"} {
		t.Run(step, func(t *testing.T) {
			dir := t.TempDir()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			opt := d.opt
			log := &cancelOn{step: step, cancel: cancel}
			opt.OutDir, opt.Log = filepath.Join(dir, "demo"), log
			_, err := build.Build(ctx, opt)
			if !errors.Is(err, build.ErrInterrupted) && !errors.Is(err, context.Canceled) {
				t.Fatalf("a build cancelled after %s: %v\n%s", step, err, log.log.String())
			}
			if ents, _ := os.ReadDir(dir); len(ents) != 0 {
				t.Errorf("an interrupted build left %v", ents)
			}
		})
	}
}
