package fat

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/appliance/appliance/internal/testenv"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 7, 500, time.UTC)

func content(seed byte, n int64) func() (io.ReadCloser, error) {
	return func() (io.ReadCloser, error) {
		return io.NopCloser(io.LimitReader(&counter{seed}, n)), nil
	}
}

type counter struct{ b byte }

func (c *counter) Read(p []byte) (int, error) {
	for i := range p {
		c.b = c.b*31 + 7
		p[i] = c.b
	}
	return len(p), nil
}

// boot is a boot partition's kind of tree, with the odd cases: names in
// both 8.3 cases, long and UTF-8 names, names with spaces and leading
// dots, a directory of 1,000 long names whose short names collide, empty
// files and directories, a file of exactly one cluster and a big one.
func boot() []Entry {
	f := func(p string, n int64) Entry {
		return Entry{Path: p, MTime: t0, Size: n, Open: content(byte(len(p)), n)}
	}
	d := func(p string) Entry { return Entry{Path: p, Dir: true, MTime: t0} }
	es := []Entry{
		{Path: "/", Dir: true, MTime: t0},
		f("/config.txt", 1200),
		f("/CMDLINE.TXT", 90),
		f("/start4.elf", 2<<20),
		f("/bcm2712-rpi-5-b.dtb", 75000),
		f("/MixedCase.Txt", 5),
		f("/.hidden", 1),
		f("/name with spaces.txt", 2),
		f("/Größe ü 日本.txt", 3),
		f("/empty", 0),
		f("/one-cluster", 4096),
		f("/kernel8.img", 10<<20),
		d("/emptydir"),
		d("/a"),
		d("/a/b"),
		d("/a/b/c"),
		f("/a/b/c/deep file", 10),
		d("/overlays"),
	}
	for i := range 1000 {
		es = append(es, f(fmt.Sprintf("/overlays/overlay-%04d.dtbo", i), int64(i)))
	}
	return es
}

func writeImage(t *testing.T, es []Entry, o Options) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), "boot.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(o.Size); err != nil {
		t.Fatal(err)
	}
	if err := Write(f, es, o); err != nil {
		t.Fatal(err)
	}
	return img
}

func need(t *testing.T, progs ...string) {
	for _, p := range progs {
		if _, err := exec.LookPath(p); err != nil {
			t.Fatalf("%s is needed (scripts/deps installs it): %v", p, err)
		}
	}
}

var testOptions = Options{Size: 256 << 20, Label: "bootfs", VolumeID: 0x1234abcd, HiddenSectors: 8192}

func TestWrite(t *testing.T) {
	need(t, "fsck.vfat", "mcopy", "mdir")
	es := boot()
	img := writeImage(t, es, testOptions)
	check(t, img, "", es)

	out, err := exec.Command("mdir", "-i", img, "::/").CombinedOutput()
	if err != nil {
		t.Fatalf("mdir: %v\n%s", err, out)
	}
	for _, want := range []string{"Volume in drive : is BOOTFS", "Volume Serial Number is 1234-ABCD"} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("mdir shows no %q:\n%s", want, out)
		}
	}
}

// check checks the FAT file system in img (at offset, in mtools's
// "@@offset" form, or "") with fsck.vfat -n and reads it back with
// mcopy: the same paths, sizes, contents and times (UTC, even seconds).
func check(t *testing.T, img, offset string, es []Entry) {
	t.Helper()
	fsckImg := img
	if offset != "" {
		fsckImg = extract(t, img, offset)
	}
	if out, err := exec.Command("fsck.vfat", "-n", fsckImg).CombinedOutput(); err != nil {
		t.Fatalf("fsck.vfat -n: %v\n%s", err, out)
	}
	dir := t.TempDir()
	cmd := exec.Command("mcopy", "-s", "-m", "-n", "-i", img+offset, "::/", dir)
	cmd.Env = append(os.Environ(), "TZ=UTC")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mcopy: %v\n%s", err, out)
	}
	want := map[string]*Entry{}
	for i := range es {
		want[es[i].Path] = &es[i]
	}
	seen := 0
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		rel := "/" + strings.TrimPrefix(strings.TrimPrefix(p, dir), "/")
		if rel == "/" {
			return nil
		}
		e := want[rel]
		if e == nil {
			t.Errorf("mcopy gives %s, which is not an entry", rel)
			return nil
		}
		seen++
		fi, _ := d.Info()
		if fi.IsDir() != e.Dir {
			t.Errorf("%s: directory %v; want %v", rel, fi.IsDir(), e.Dir)
		}
		if wantT := e.MTime.UTC().Truncate(2 * time.Second); !fi.ModTime().Equal(wantT) {
			t.Errorf("%s: mtime %v; want %v", rel, fi.ModTime().UTC(), wantT)
		}
		if !e.Dir {
			if fi.Size() != e.Size {
				t.Errorf("%s: size %d; want %d", rel, fi.Size(), e.Size)
			}
			if got, want := testenv.FileSHA256(t, p), entrySHA(t, e); got != want {
				t.Errorf("%s: content differs", rel)
			}
		}
		return nil
	})
	if n := len(es) - 1; seen != n && es[0].Path == "/" || es[0].Path != "/" && seen != len(es) {
		t.Errorf("mcopy gives %d paths; want %d", seen, len(es))
	}
}

// extract copies a partition out of a disk image for fsck.vfat, which
// reads only whole devices or files.
func extract(t *testing.T, img, offset string) string {
	var off int64
	if _, err := fmt.Sscanf(offset, "@@%d", &off); err != nil {
		t.Fatalf("offset %q: %v", offset, err)
	}
	src, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	// The boot sector knows the partition's size.
	var bs [512]byte
	if _, err := src.ReadAt(bs[:], off); err != nil {
		t.Fatal(err)
	}
	size := int64(le.Uint32(bs[0x20:])) * sectorSize
	out := filepath.Join(t.TempDir(), "part.img")
	dst, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	if _, err := io.Copy(dst, io.NewSectionReader(src, off, size)); err != nil {
		t.Fatal(err)
	}
	return out
}

func entrySHA(t *testing.T, e *Entry) string {
	h := sha256.New()
	if e.Size > 0 {
		r, err := e.Open()
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(h, r)
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

func TestReproducible(t *testing.T) {
	es := boot()
	o := testOptions
	o.Size = 64 << 20
	a, b := writeImage(t, es, o), writeImage(t, es, o)
	if testenv.FileSHA256(t, a) != testenv.FileSHA256(t, b) {
		t.Fatal("two writes of the same entries differ")
	}
	o.VolumeID++
	if c := writeImage(t, es, o); testenv.FileSHA256(t, a) == testenv.FileSHA256(t, c) {
		t.Fatal("a different volume ID gave the same image")
	}
}

func TestSmallest(t *testing.T) {
	need(t, "fsck.vfat")
	es := []Entry{{Path: "/a", MTime: t0, Size: 3, Open: content(1, 3)}}
	o := Options{Size: 34 << 20}
	img := writeImage(t, es, o)
	check(t, img, "", es)
}

func TestErrors(t *testing.T) {
	f := func(p string) Entry { return Entry{Path: p, MTime: t0} }
	for _, tc := range []struct {
		name    string
		entries []Entry
		opts    Options
		want    string
	}{
		{"case", []Entry{f("/Config.txt"), f("/config.TXT")}, testOptions, "same name to FAT, which ignores case"},
		{"char", []Entry{f("/a:b")}, testOptions, "':' is not allowed"},
		{"trailing dot", []Entry{f("/a.")}, testOptions, "trailing dot"},
		{"parent", []Entry{f("/a/b")}, testOptions, "its directory /a is not listed"},
		{"too big", []Entry{{Path: "/a", Size: 1 << 32}}, testOptions, "outside FAT's 0 to 4 GiB-1"},
		{"too small", nil, Options{Size: 30 << 20}, "too small for FAT32"},
		{"negative", nil, Options{Size: -1}, "too small for FAT32"},
		{"label", nil, Options{Size: 64 << 20, Label: "boot:fs"}, "is not allowed"},
		{"full", []Entry{{Path: "/a", Size: 40 << 20, Open: content(1, 40<<20)}}, Options{Size: 36 << 20}, "do not fit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Write(discard{}, tc.entries, tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Write = %v; want an error containing %q", err, tc.want)
			}
		})
	}
}

type discard struct{}

func (discard) WriteAt(p []byte, _ int64) (int, error) { return len(p), nil }

func TestShortNames(t *testing.T) {
	var children []*node
	for _, n := range []string{"config.txt", "CONFIG.TXT2", "Config.txt.bak", "long name.text", "longna~1.tex", ".bashrc", "日本"} {
		children = append(children, &node{name: n})
	}
	shortNames(children)
	var got []string
	for _, c := range children {
		got = append(got, fmt.Sprintf("%s|%02x|%v", c.short, c.caseBits, c.long))
	}
	want := []string{
		"CONFIG  TXT|18|false",
		"CONFIG~1TXT|00|true",
		"CONFIG~1BAK|00|true", // unique by its extension
		"LONGNA~2TEX|00|true", // ~1 is taken by the 8.3 name below
		"LONGNA~1TEX|18|false",
		"BASHRC~1   |00|true",
		"__~1       |00|true",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("short names:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
