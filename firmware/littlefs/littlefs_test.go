package littlefs_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"

	"github.com/appliance/appliance/firmware/internal/lfsref"
	"github.com/appliance/appliance/firmware/littlefs"
)

func data(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 2))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// sets are the trees the writer is tested with.
func sets() map[string][]littlefs.Entry {
	var many []littlefs.Entry
	for i := range 300 {
		many = append(many, littlefs.Entry{Path: fmt.Sprintf("/many/file-%03d.txt", i), Data: data(uint64(i), i%700)})
	}
	bs := 4096
	var sizes []littlefs.Entry
	// Around inline_max and the CTZ block boundaries: block 0 holds
	// 4096 bytes, block 1 4092, block 2 4088, block 3 4092, block 4 4084.
	for _, n := range []int{0, 1, 511, 512, 513, bs - 1, bs, bs + 1, 2*bs - 4, 2*bs - 3, 3*bs - 12, 3*bs - 11, 5*bs - 36, 5*bs - 35, 40000} {
		sizes = append(sizes, littlefs.Entry{Path: fmt.Sprintf("/size-%d", n), Data: data(uint64(n), n)})
	}
	return map[string][]littlefs.Entry{
		"empty": nil,
		"identity": {
			{Path: "/config.json", Data: []byte(`{"name":"bench-1"}`)},
			{Path: "/ca.pem", Data: data(1, 700)},
			{Path: "/node.crt", Data: data(2, 800)},
			{Path: "/node.key", Data: data(3, 241)},
			{Path: "/ota/manifest-0.pub.pem", Data: data(4, 178)},
		},
		"sizes": sizes,
		"names": {
			{Path: "/a", Data: []byte("a")},
			{Path: "/ab", Data: []byte("ab")},
			{Path: "/alpha", Data: []byte("alpha")},
			{Path: "/zeta", Data: []byte("z")},
			{Path: "/littlefs", Data: []byte("not the superblock")},
			{Path: "/" + strings.Repeat("n", 63), Data: []byte("longest")},
			{Path: "/UPPER", Data: nil},
		},
		"folders": {
			{Path: "/empty", Dir: true},
			{Path: "/a/b/c/d/file", Data: data(5, 5000)},
			{Path: "/a/b/x", Data: []byte("x")},
			{Path: "/a/y", Data: data(6, 9000)},
			{Path: "/z/deep/er", Dir: true},
		},
		"many": many,
	}
}

func geometry(t testing.TB, size int) littlefs.Geometry {
	g, err := littlefs.ESP32(size)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// want is the entries in the order the walks give them: depth first,
// by path, with every implied folder.
func want(entries []littlefs.Entry) []lfsref.Entry {
	seen := map[string]bool{}
	var out []lfsref.Entry
	for _, e := range entries {
		parts := strings.Split(e.Path[1:], "/")
		for i := 1; i < len(parts); i++ {
			d := "/" + strings.Join(parts[:i], "/")
			if !seen[d] {
				seen[d] = true
				out = append(out, lfsref.Entry{Path: d, IsDir: true})
			}
		}
		if e.Dir {
			if !seen[e.Path] {
				seen[e.Path] = true
				out = append(out, lfsref.Entry{Path: e.Path, IsDir: true})
			}
			continue
		}
		out = append(out, lfsref.Entry{Path: e.Path, Data: e.Data})
	}
	sortEntries(out)
	return out
}

func sortEntries(es []lfsref.Entry) {
	sort.Slice(es, func(i, j int) bool { return walkOrder(es[i].Path) < walkOrder(es[j].Path) })
}

// walkOrder sorts a depth-first walk by name: "/" before any byte.
func walkOrder(p string) string { return strings.ReplaceAll(p, "/", "\x00") }

func same(t *testing.T, who string, got, want []lfsref.Entry) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s lists %d entries, want %d", who, len(got), len(want))
	}
	for i := range min(len(got), len(want)) {
		g, w := got[i], want[i]
		if g.Path != w.Path || g.IsDir != w.IsDir || !bytes.Equal(g.Data, w.Data) {
			t.Errorf("%s entry %d: %s (dir %v, %d bytes), want %s (dir %v, %d bytes)", who, i, g.Path, g.IsDir, len(g.Data), w.Path, w.IsDir, len(w.Data))
			return
		}
	}
}

func ours(t *testing.T, img []byte) []lfsref.Entry {
	t.Helper()
	fs, err := littlefs.Read(img, 4096)
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	var out []lfsref.Entry
	for _, e := range fs.Entries {
		out = append(out, lfsref.Entry{Path: e.Path, IsDir: e.Dir, Data: e.Data})
	}
	sortEntries(out)
	return out
}

// TestReferenceMountsImages: every image Build writes mounts with the
// reference littlefs, which reads every folder and file back byte for
// byte; so does Read.
func TestReferenceMountsImages(t *testing.T) {
	for name, entries := range sets() {
		t.Run(name, func(t *testing.T) {
			img, err := littlefs.Build(geometry(t, 0x60000), entries)
			if err != nil {
				t.Fatal(err)
			}
			if len(img) != 0x60000 {
				t.Errorf("image of %#x bytes, want the partition's %#x", len(img), 0x60000)
			}
			fs, err := lfsref.Mount(img, 4096)
			if err != nil {
				t.Fatal(err)
			}
			got, err := fs.Walk()
			if err != nil {
				t.Fatalf("reference walk: %v", err)
			}
			same(t, "the reference littlefs", got, want(entries))
			same(t, "Read", ours(t, img), want(entries))
			if err := fs.Unmount(); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestDeviceWritesAfter: the reference littlefs, mounted on an image of
// ours, can add, change and remove files, as a node does, and both
// readers read the result.
func TestDeviceWritesAfter(t *testing.T) {
	entries := sets()["folders"]
	img, err := littlefs.Build(geometry(t, 0x30000), entries)
	if err != nil {
		t.Fatal(err)
	}
	fs, err := lfsref.Mount(img, 4096)
	if err != nil {
		t.Fatal(err)
	}
	added := data(9, 7000)
	for _, step := range []error{
		fs.WriteFile("/a/new", added),
		fs.WriteFile("/a/b/x", []byte("changed")),
		fs.WriteFile("/a/y", []byte("shorter")),
		fs.Mkdir("/empty/sub"),
	} {
		if step != nil {
			t.Fatal(step)
		}
	}
	if err := fs.Unmount(); err != nil {
		t.Fatal(err)
	}
	after := []littlefs.Entry{
		{Path: "/empty/sub", Dir: true},
		{Path: "/a/b/c/d/file", Data: entries[1].Data},
		{Path: "/a/b/x", Data: []byte("changed")},
		{Path: "/a/y", Data: []byte("shorter")},
		{Path: "/a/new", Data: added},
		{Path: "/z/deep/er", Dir: true},
	}
	again, err := lfsref.Mount(fs.Bytes(), 4096)
	if err != nil {
		t.Fatal(err)
	}
	got, err := again.Walk()
	if err != nil {
		t.Fatal(err)
	}
	same(t, "the reference littlefs", got, want(after))
	same(t, "Read", ours(t, fs.Bytes()), want(after))
}

// TestReadsReferenceImages: files the reference littlefs wrote, with
// the many commits, overwrites and removals it leaves, read back with
// Read.
func TestReadsReferenceImages(t *testing.T) {
	fs, err := lfsref.Format(4096, 64)
	if err != nil {
		t.Fatal(err)
	}
	var entries []littlefs.Entry
	for i := range 40 {
		p := fmt.Sprintf("/d%d/f%02d", i%3, i)
		if i%3 == 0 {
			p = fmt.Sprintf("/f%02d", i)
		}
		if i%3 != 0 && i < 3 {
			if err := fs.Mkdir(fmt.Sprintf("/d%d", i%3)); err != nil {
				t.Fatal(err)
			}
		}
		b := data(uint64(i), (i*397)%6000)
		if err := fs.WriteFile(p, b); err != nil {
			t.Fatal(err)
		}
		entries = append(entries, littlefs.Entry{Path: p, Data: b})
	}
	// Overwrite some, remove one.
	entries[4].Data = []byte("rewritten")
	if err := fs.WriteFile(entries[4].Path, entries[4].Data); err != nil {
		t.Fatal(err)
	}
	if err := fs.Unmount(); err != nil {
		t.Fatal(err)
	}
	same(t, "Read", ours(t, fs.Bytes()), want(entries))
	img, err := littlefs.Read(fs.Bytes(), 4096)
	if err != nil {
		t.Fatal(err)
	}
	if img.Version != 0x20001 || img.BlockCount != 64 || img.NameMax != 255 {
		t.Errorf("superblock: version %#x, %d blocks, name_max %d", img.Version, img.BlockCount, img.NameMax)
	}
}

func TestSuperblock(t *testing.T) {
	img, err := littlefs.Build(geometry(t, 0x30000), sets()["identity"])
	if err != nil {
		t.Fatal(err)
	}
	fs, err := littlefs.Read(img, 4096)
	if err != nil {
		t.Fatal(err)
	}
	g := fs.Geometry
	if fs.Version != 0x20001 || g.BlockSize != 4096 || g.BlockCount != 0x30 || g.NameMax != 64 || g.FileMax != 0x7FFFFFFF || g.AttrMax != 1022 {
		t.Errorf("superblock: version %#x, %+v", fs.Version, g)
	}
	// The magic sits at byte 8 of block 0, where tools look for it.
	if string(img[8:16]) != "littlefs" {
		t.Errorf("bytes 8–16 are %q", img[8:16])
	}
}

func TestReproducible(t *testing.T) {
	entries := sets()["folders"]
	a, err := littlefs.Build(geometry(t, 0x30000), entries)
	if err != nil {
		t.Fatal(err)
	}
	reversed := append([]littlefs.Entry(nil), entries...)
	for i, j := 0, len(reversed)-1; i < j; i, j = i+1, j-1 {
		reversed[i], reversed[j] = reversed[j], reversed[i]
	}
	b, err := littlefs.Build(geometry(t, 0x30000), reversed)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Error("the same entries in another order give other bytes")
	}
}

func TestBuildRefuses(t *testing.T) {
	for _, tc := range []struct {
		name    string
		size    int
		entries []littlefs.Entry
		want    string
	}{
		{"name of 64 bytes", 0x30000, []littlefs.Entry{{Path: "/" + strings.Repeat("n", 64)}}, "shorter than name_max (64)"},
		{"relative", 0x30000, []littlefs.Entry{{Path: "config.json"}}, "not a clean absolute path"},
		{"dot-dot", 0x30000, []littlefs.Entry{{Path: "/a/../b"}}, "not a clean absolute path"},
		{"root", 0x30000, []littlefs.Entry{{Path: "/", Dir: true}}, "not a clean absolute path"},
		{"twice", 0x30000, []littlefs.Entry{{Path: "/a"}, {Path: "/a"}}, "given twice"},
		{"file and folder", 0x30000, []littlefs.Entry{{Path: "/a"}, {Path: "/a/b"}}, "is a file and a folder"},
		{"too big", 0x4000, []littlefs.Entry{{Path: "/big", Data: make([]byte, 9000)}}, "more than the 4 blocks"},
		{"not 4 KiB", 0x30001, nil, "multiple of 4 KiB"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, err := littlefs.ESP32(tc.size)
			if err == nil {
				_, err = littlefs.Build(g, tc.entries)
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error saying %q", err, tc.want)
			}
		})
	}
}

func FuzzRead(f *testing.F) {
	g, _ := littlefs.ESP32(0x8000)
	g.BlockSize, g.BlockCount, g.InlineMax, g.ProgSize = 512, 64, 64, 64
	for _, name := range []string{"identity", "folders"} {
		var small []littlefs.Entry
		for _, e := range sets()[name] {
			small = append(small, littlefs.Entry{Path: e.Path, Dir: e.Dir, Data: e.Data[:min(len(e.Data), 900)]})
		}
		img, err := littlefs.Build(g, small)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(img)
	}
	ref, err := lfsref.Format(512, 64)
	if err != nil {
		f.Fatal(err)
	}
	ref.WriteFile("/a", data(1, 300))
	ref.Mkdir("/d")
	ref.WriteFile("/d/b", data(2, 2000))
	ref.Unmount()
	f.Add(ref.Bytes())
	f.Fuzz(func(t *testing.T, img []byte) {
		if len(img) < 1024 {
			return
		}
		img = img[:len(img)/512*512]
		fs, err := littlefs.Read(img, 512)
		if err != nil {
			return
		}
		total := 0
		for _, e := range fs.Entries {
			total += len(e.Data)
		}
		if total > len(img)*len(fs.Entries)+1 {
			t.Fatalf("read %d bytes of files from an image of %d", total, len(img))
		}
	})
}

// BenchmarkIdentity writes an identity-sized image (five files, one
// folder, 192 KiB): Build, and beside it the reference littlefs
// formatting the same partition and writing the same files, the peer.
func BenchmarkIdentity(b *testing.B) {
	entries := sets()["identity"]
	b.Run("Build", func(b *testing.B) {
		g, _ := littlefs.ESP32(0x30000)
		for b.Loop() {
			if _, err := littlefs.Build(g, entries); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("reference", func(b *testing.B) {
		for b.Loop() {
			fs, err := lfsref.Format(4096, 0x30)
			if err != nil {
				b.Fatal(err)
			}
			fs.Mkdir("/ota")
			for _, e := range entries {
				if err := fs.WriteFile(e.Path, e.Data); err != nil {
					b.Fatal(err)
				}
			}
			fs.Unmount()
			_ = fs.Bytes()
		}
	})
}
