package ext4

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// pattern is deterministic file content: n bytes from seed, made on the
// fly so a 200 MB file costs no memory.
type pattern struct {
	state uint64
	left  int64
}

func (p *pattern) Read(b []byte) (int, error) {
	if p.left == 0 {
		return 0, io.EOF
	}
	b = b[:min(int64(len(b)), p.left)]
	var w [8]byte
	for i := 0; i < len(b); i += 8 {
		p.state ^= p.state << 13
		p.state ^= p.state >> 7
		p.state ^= p.state << 17
		binary.LittleEndian.PutUint64(w[:], p.state)
		copy(b[i:], w[:])
	}
	p.left -= int64(len(b))
	return len(b), nil
}

func content(seed uint64, n int64) func() (io.ReadCloser, error) {
	return func() (io.ReadCloser, error) {
		return io.NopCloser(&pattern{state: seed*2654435761 + 1, left: n}), nil
	}
}

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// synthetic is a tree with the cases a root file system has, and the odd
// ones: empty files and directories, a directory of 10,000 files, a big
// file, symlinks either side of the inline limit and at the longest,
// names with spaces and UTF-8, setuid/setgid/sticky, many hard links,
// devices with large numbers, fifos, sockets, file capabilities, owners
// past 16 bits and times past 2038 with nanoseconds.
func synthetic(bigFile int64, many int) []Entry {
	dir := func(p string, mode fs.FileMode) Entry {
		return Entry{Path: p, Type: Dir, Mode: mode, MTime: t0}
	}
	file := func(p string, mode fs.FileMode, size int64) Entry {
		return Entry{Path: p, Type: Regular, Mode: mode, MTime: t0, Size: size, Open: content(uint64(len(p))*7+uint64(size), size)}
	}
	link := func(p, target string) Entry {
		return Entry{Path: p, Type: Symlink, Mode: 0o777, MTime: t0, LinkTarget: target}
	}
	// vfs_cap_data revision 2 for cap_net_raw, as setcap writes for ping.
	capNetRaw := []byte{0, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	es := []Entry{
		dir("/", 0o755),
		dir("/bin", 0o755),
		{Path: "/bin/ping", Type: Regular, Mode: 0o755, MTime: t0, Size: 1000, Open: content(1, 1000), Xattrs: map[string][]byte{"security.capability": capNetRaw}},
		file("/bin/su", 0o755|fs.ModeSetuid, 5000),
		file("/bin/wall", 0o755|fs.ModeSetgid, 4096),
		link("/bin/sh", "dash"),
		file("/bin/dash", 0o755, 120000),
		dir("/dev", 0o755),
		{Path: "/dev/null", Type: CharDev, Mode: 0o666, MTime: t0, Major: 1, Minor: 3},
		{Path: "/dev/sda", Type: BlockDev, Mode: 0o660, GID: 6, MTime: t0, Major: 8, Minor: 0},
		{Path: "/dev/big", Type: CharDev, Mode: 0o600, MTime: t0, Major: 511, Minor: 70000},
		{Path: "/dev/initctl", Type: FIFO, Mode: 0o600, MTime: t0},
		{Path: "/dev/log", Type: Socket, Mode: 0o666, MTime: t0},
		dir("/empty", 0o700),
		file("/empty file", 0o644, 0),
		file("/exactly-one-block", 0o644, BlockSize),
		dir("/home", 0o755),
		{Path: "/home/ops", Type: Dir, Mode: 0o750, UID: 100000, GID: 100000, MTime: time.Date(2040, 1, 2, 3, 4, 5, 123456789, time.UTC)},
		{Path: "/home/ops/notes ü 日本.txt", Type: Regular, Mode: 0o600, UID: 100000, GID: 100000, MTime: time.Date(1999, 12, 31, 23, 59, 59, 999999999, time.UTC), Size: 11, Open: content(9, 11)},
		link("/link59", strings.Repeat("a", 59)),
		link("/link60", strings.Repeat("b", 60)),
		link("/link4095", strings.Repeat("c/", 2047)+"d"),
		dir("/links", 0o755),
		file("/links/target", 0o644, 70),
		dir("/tmp", 0o777|fs.ModeSticky),
		dir("/many", 0o755),
	}
	for i := range 300 {
		es = append(es, Entry{Path: fmt.Sprintf("/links/l%03d", i), HardLinkTo: "/links/target"})
	}
	for i := range many {
		es = append(es, file(fmt.Sprintf("/many/file-with-a-longer-name-%05d", i), 0o644, int64(i%97)))
	}
	if bigFile > 0 {
		es = append(es, file("/big.bin", 0o644, bigFile))
	}
	return es
}

// writeImage writes entries to a new sparse image file.
func writeImage(t testing.TB, entries []Entry, opts Options) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), "root.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(opts.Size); err != nil {
		t.Fatal(err)
	}
	if err := Write(f, entries, opts); err != nil {
		t.Fatal(err)
	}
	return img
}

func need(t testing.TB, progs ...string) {
	for _, p := range progs {
		if _, err := exec.LookPath(p); err != nil {
			t.Fatalf("%s is needed (scripts/deps installs it): %v", p, err)
		}
	}
}

// fsck runs e2fsck -fn, which answers no to every question: exit 0 only
// for a file system with nothing to fix.
func fsck(t testing.TB, img string) {
	t.Helper()
	need(t, "e2fsck")
	out, err := exec.Command("e2fsck", "-fn", img).CombinedOutput()
	if err != nil {
		t.Fatalf("e2fsck -fn %s: %v\n%s", img, err, out)
	}
}

func opts(size int64) Options {
	return Options{
		Size:                  size,
		Label:                 "root",
		UUID:                  [16]byte{0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12},
		HashSeed:              [16]byte{1, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 121, 98, 219},
		Time:                  t0,
		ReservedBlocksPercent: 5,
	}
}

func TestSyntheticTree(t *testing.T) {
	es := synthetic(200<<20, 10000)
	img := writeImage(t, es, opts(600<<20))
	fsck(t, img)
	checkDebugfs(t, img, es)
	checkMounted(t, img, es)
}

// TestHtreeTwoLevels: a directory of more leaf blocks than the htree
// root indexes gets a second level of index blocks. The loop mount then
// looks every name up through the kernel's own hash.
func TestHtreeTwoLevels(t *testing.T) {
	es := []Entry{{Path: "/d", Type: Dir, Mode: 0o755, MTime: t0}}
	for i := range 20000 {
		es = append(es, Entry{Path: fmt.Sprintf("/d/%05d-%s", i, strings.Repeat("n", 94)), Type: Regular, Mode: 0o644, MTime: t0})
	}
	img := writeImage(t, es, opts(64<<20))
	fsck(t, img)
	out, err := exec.Command("debugfs", "-R", "htree_dump /d", img).CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("Indirect levels: 1")) {
		t.Fatalf("debugfs htree_dump /d: want two levels (%v):\n%.500s", err, out)
	}
	checkDebugfs(t, img, es)
	checkMounted(t, img, es)
}

// TestKernelWrites: the kernel takes the bitmaps and counts as written
// and keeps the file system consistent when it allocates, frees and
// turns a directory into an htree on top of them.
func TestKernelWrites(t *testing.T) {
	es := synthetic(1<<20, 300)
	img := writeImage(t, es, opts(64<<20))
	dir := loopMount(t, img, false)
	if err := os.Mkdir(filepath.Join(dir, "new"), 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range 500 {
		if err := os.WriteFile(filepath.Join(dir, "new", fmt.Sprintf("a-long-file-name-%04d", i)), bytes.Repeat([]byte{byte(i)}, i*100), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{"/big.bin", "/links/l007", "/many/file-with-a-longer-name-00003", "/link4095"} {
		if err := os.Remove(filepath.Join(dir, p)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "many", "added"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	unmount(t, dir)
	fsck(t, img)
}

// TestFragmented makes every file and directory of several blocks take
// several runs, so that extent tree leaf blocks and directories in many
// extents are written and checked too.
func TestFragmented(t *testing.T) {
	testMaxRun = 3
	defer func() { testMaxRun = 0 }()
	es := synthetic(2<<20, 3000)
	img := writeImage(t, es, opts(64<<20))
	fsck(t, img)
	checkDebugfs(t, img, es)
	checkMounted(t, img, es)
}

func sha(t testing.TB, f string) string {
	t.Helper()
	b, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", sha256.Sum256(b))
}

func TestReproducible(t *testing.T) {
	es := synthetic(3<<20, 500)
	o := opts(64 << 20)
	a, b := writeImage(t, es, o), writeImage(t, es, o)
	if sha(t, a) != sha(t, b) {
		t.Fatal("two writes of the same entries differ")
	}
	o.UUID[0]++
	if c := writeImage(t, es, o); sha(t, a) == sha(t, c) {
		t.Fatal("a different UUID gave the same image")
	}
}

// TestGrow grows the file system as the gateway does on first boot, from
// 64 MiB to 40 GiB, which needs the reserved GDT blocks: offline with
// resize2fs on the image file, and online through a loop mount where the
// kernel lets us.
func TestGrow(t *testing.T) {
	need(t, "resize2fs")
	es := synthetic(1<<20, 200)
	img := writeImage(t, es, opts(64<<20))
	if err := os.Truncate(img, 40<<30); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("resize2fs", img).CombinedOutput(); err != nil {
		t.Fatalf("resize2fs: %v\n%s", err, out)
	}
	fsck(t, img)
	if got := blockCount(t, img); got != 40<<30/BlockSize {
		t.Fatalf("after resize2fs the file system has %d blocks; want %d", got, 40<<30/BlockSize)
	}
	checkDebugfs(t, img, es)

	t.Run("online", func(t *testing.T) {
		img := writeImage(t, es, opts(64<<20))
		if err := os.Truncate(img, 40<<30); err != nil {
			t.Fatal(err)
		}
		dir := loopMount(t, img, false)
		out, err := exec.Command("resize2fs", loopDevice(t, dir)).CombinedOutput()
		if err != nil && bytes.Contains(out, []byte("Permission denied")) {
			// EXT4_IOC_RESIZE_FS needs CAP_SYS_RESOURCE; a container
			// without it refuses mke2fs's file systems alike.
			t.Skipf("the kernel refused online resize (no CAP_SYS_RESOURCE here?): %s", out)
		}
		if err != nil {
			t.Fatalf("online resize2fs: %v\n%s", err, out)
		}
		unmount(t, dir)
		fsck(t, img)
		if got := blockCount(t, img); got != 40<<30/BlockSize {
			t.Fatalf("after online resize the file system has %d blocks; want %d", got, 40<<30/BlockSize)
		}
	})
}

// TestGrowTo: GrowTo reserves GDT blocks past mke2fs's 1024×, so that a
// tiny image could still grow online to a 128 GiB card.
func TestGrowTo(t *testing.T) {
	need(t, "dumpe2fs")
	for _, tc := range []struct {
		growTo int64
		want   string
	}{
		{0, "Reserved GDT blocks:      1\n"},          // 16 MiB × 1024: 128 groups, 2 GDT blocks
		{128 << 30, "Reserved GDT blocks:      15\n"}, // 1024 groups, 16 GDT blocks
	} {
		o := opts(16 << 20)
		o.GrowTo = tc.growTo
		img := writeImage(t, nil, o)
		fsck(t, img)
		out, err := exec.Command("dumpe2fs", "-h", img).CombinedOutput()
		if err != nil || !bytes.Contains(out, []byte(tc.want)) {
			t.Errorf("GrowTo %d: dumpe2fs shows no %q (%v):\n%s", tc.growTo, tc.want, err, out)
		}
	}
}

// TestLikeMke2fs: for the same size, the file system has mke2fs's
// geometry and features, and its resize inode maps the reserved GDT
// blocks and their backups exactly as mke2fs's does: the structure the
// kernel's online resize reads (it cannot run in every container; see
// TestGrow).
func TestLikeMke2fs(t *testing.T) {
	need(t, "mke2fs", "dumpe2fs", "debugfs")
	const size = 600 << 20
	ours := writeImage(t, nil, opts(size))
	theirs := filepath.Join(t.TempDir(), "mke2fs.img")
	if err := os.WriteFile(theirs, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mke2fs", "-q", "-F", "-t", "ext4", "-O", "^orphan_file", theirs, fmt.Sprint(size>>10)+"k").CombinedOutput(); err != nil {
		t.Fatalf("mke2fs: %v\n%s", err, out)
	}
	header := func(img string) map[string]string {
		out, err := exec.Command("dumpe2fs", "-h", img).CombinedOutput()
		if err != nil {
			t.Fatalf("dumpe2fs: %v\n%s", err, out)
		}
		m := map[string]string{}
		for _, l := range strings.Split(string(out), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok {
				m[k] = strings.TrimSpace(v)
			}
		}
		return m
	}
	a, b := header(ours), header(theirs)
	for _, k := range []string{"Filesystem features", "Inode count", "Block count", "Reserved GDT blocks", "Blocks per group", "Inodes per group", "Inode size", "Flex block group size", "Total journal size", "Default mount options", "Required extra isize"} {
		if a[k] == "" || a[k] != b[k] {
			t.Errorf("%s: %q; mke2fs makes %q", k, a[k], b[k])
		}
	}
	resizeMap := func(img string) string {
		out, err := exec.Command("debugfs", "-R", "stat <7>", img).CombinedOutput()
		if err != nil {
			t.Fatalf("debugfs: %v\n%s", err, out)
		}
		_, blocks, _ := strings.Cut(string(out), "BLOCKS:")
		// Where the double indirect block itself sits is free to differ.
		return regexp.MustCompile(`\(DIND\):\d+`).ReplaceAllString(blocks, "(DIND)")
	}
	if a, b := resizeMap(ours), resizeMap(theirs); !strings.Contains(a, "(IND)") || a != b {
		t.Errorf("resize inode maps\n%.300s\nmke2fs's maps\n%.300s", a, b)
	}
}

func blockCount(t *testing.T, img string) int64 {
	t.Helper()
	out, err := exec.Command("dumpe2fs", "-h", img).CombinedOutput()
	if err != nil {
		t.Fatalf("dumpe2fs: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`(?m)^Block count:\s+(\d+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("dumpe2fs shows no block count:\n%s", out)
	}
	n, _ := strconv.ParseInt(string(m[1]), 10, 64)
	return n
}

func TestErrors(t *testing.T) {
	f := func(p string) Entry { return Entry{Path: p, Type: Regular, Mode: 0o644} }
	d := func(p string) Entry { return Entry{Path: p, Type: Dir, Mode: 0o755} }
	for _, tc := range []struct {
		name    string
		entries []Entry
		opts    Options
		want    string
	}{
		{"parent missing", []Entry{f("/a/b")}, opts(64 << 20), "its directory /a is not listed before it"},
		{"twice", []Entry{f("/a"), f("/a")}, opts(64 << 20), "/a is listed twice"},
		{"parent is a file", []Entry{f("/a"), f("/a/b")}, opts(64 << 20), "its directory /a is not listed"},
		{"relative", []Entry{f("a")}, opts(64 << 20), "absolute and clean"},
		{"hard link to dir", []Entry{d("/a"), {Path: "/b", HardLinkTo: "/a"}}, opts(64 << 20), "not an earlier non-directory"},
		{"mode with type", []Entry{{Path: "/a", Type: Regular, Mode: fs.ModeDir | 0o755}}, opts(64 << 20), "has type bits"},
		{"long symlink", []Entry{{Path: "/a", Type: Symlink, LinkTarget: strings.Repeat("x", 4096)}}, opts(64 << 20), "symlink target must be 1 to 4095 bytes"},
		{"acl", []Entry{{Path: "/a", Type: Regular, Xattrs: map[string][]byte{"system.posix_acl_access": {2}}}}, opts(64 << 20), "POSIX ACLs are not supported"},
		{"xattrs too big", []Entry{{Path: "/a", Type: Regular, Xattrs: map[string][]byte{"user.x": make([]byte, 100)}}}, opts(64 << 20), "do not fit in the inode"},
		{"too small", nil, opts(4 << 20), "too small"},
		{"does not fit", []Entry{{Path: "/a", Type: Regular, Size: 100 << 20, Open: content(1, 100<<20)}}, opts(64 << 20), "give a bigger Size"},
		{"label", nil, Options{Size: 64 << 20, Label: "a label of 17 byt"}, "longer than 16 bytes"},
		{"lost+found", []Entry{f("/lost+found")}, opts(64 << 20), "/lost+found is a regular file; e2fsck needs it to be a directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Write(discard{}, tc.entries, tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Write = %v; want an error containing %q", err, tc.want)
			}
		})
	}
	t.Run("short content", func(t *testing.T) {
		es := []Entry{{Path: "/a", Type: Regular, Size: 10, Open: content(1, 9)}}
		err := Write(discard{}, es, opts(64<<20))
		if err == nil || !strings.Contains(err.Error(), "/a: content is 9 bytes, not its Size 10") {
			t.Fatalf("Write = %v; want the short content named", err)
		}
	})
	t.Run("long content", func(t *testing.T) {
		es := []Entry{{Path: "/a", Type: Regular, Size: 10, Open: content(1, 11)}}
		err := Write(discard{}, es, opts(64<<20))
		if !errors.Is(err, errLonger) {
			t.Fatalf("Write = %v; want %v", err, errLonger)
		}
	})
}

type discard struct{}

func (discard) WriteAt(p []byte, _ int64) (int, error) { return len(p), nil }

// listing is what debugfs shows of one path.
type listing struct {
	ino, mode, uid, gid string
	size                string
}

// checkDebugfs reads the image back with debugfs: every directory's
// listing (inode, mode with type, owner, size), device numbers and link
// counts from stat, and every file's content and symlink's target from
// an rdump of the whole tree.
func checkDebugfs(t *testing.T, img string, es []Entry) {
	t.Helper()
	need(t, "debugfs")
	dir := t.TempDir()
	var cmds strings.Builder
	for _, e := range es {
		if e.Type == Dir && e.HardLinkTo == "" {
			fmt.Fprintf(&cmds, "ls -p %q\n", e.Path)
		}
	}
	cmds.WriteString("ls -p \"/\"\n") // the root, listed or not
	for _, e := range es {
		if e.Type == CharDev || e.Type == BlockDev {
			fmt.Fprintf(&cmds, "stat %q\n", e.Path)
		}
	}
	out := filepath.Join(dir, "out")
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(&cmds, "rdump / %q\n", out)
	cmdFile := filepath.Join(dir, "cmds")
	if err := os.WriteFile(cmdFile, []byte(cmds.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	raw, err := exec.Command("debugfs", "-f", cmdFile, img).CombinedOutput()
	if err != nil {
		t.Fatalf("debugfs: %v\n%s", err, raw)
	}
	got := map[string]listing{}
	devices := map[string]string{}
	var cwd, statting string
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(nil, 1<<20)
	devRe := regexp.MustCompile(`Device major/minor number: (\d+):(\d+)`)
	for sc.Scan() {
		line := sc.Text()
		if c, ok := strings.CutPrefix(line, "debugfs: "); ok {
			cwd, statting = "", ""
			if a, ok := strings.CutPrefix(c, "ls -p "); ok {
				cwd, _ = strconv.Unquote(a)
			}
			if a, ok := strings.CutPrefix(c, "stat "); ok {
				statting, _ = strconv.Unquote(a)
			}
			continue
		}
		if m := devRe.FindStringSubmatch(line); m != nil && statting != "" {
			major, _ := strconv.Atoi(m[1])
			minor, _ := strconv.Atoi(m[2])
			devices[statting] = fmt.Sprintf("%d:%d", major, minor)
		}
		if cwd == "" || !strings.HasPrefix(line, "/") {
			continue
		}
		// /ino/mode/uid/gid/name/size/ — a name has no "/".
		f := strings.Split(line, "/")
		if len(f) != 8 || f[5] == "." || f[5] == ".." {
			continue
		}
		got[strings.TrimSuffix(cwd, "/")+"/"+f[5]] = listing{ino: f[1], mode: f[2], uid: f[3], gid: f[4], size: f[6]}
	}
	byPath := map[string]*Entry{}
	for i := range es {
		byPath[es[i].Path] = &es[i]
	}
	for _, e := range es {
		if e.Path == "/" {
			continue
		}
		l, ok := got[e.Path]
		if !ok {
			t.Errorf("debugfs does not list %s", e.Path)
			continue
		}
		if e.HardLinkTo != "" {
			if want := got[e.HardLinkTo].ino; l.ino != want {
				t.Errorf("%s is inode %s; want %s, the inode of %s", e.Path, l.ino, want, e.HardLinkTo)
			}
			continue
		}
		n := &node{e: &e}
		if want := fmt.Sprintf("%06o", unixMode(n)); l.mode != want {
			t.Errorf("%s: mode %s; want %s", e.Path, l.mode, want)
		}
		if l.uid != fmt.Sprint(e.UID) || l.gid != fmt.Sprint(e.GID) {
			t.Errorf("%s: owner %s:%s; want %d:%d", e.Path, l.uid, l.gid, e.UID, e.GID)
		}
		switch e.Type {
		case Regular:
			if l.size != fmt.Sprint(e.Size) {
				t.Errorf("%s: size %s; want %d", e.Path, l.size, e.Size)
			}
			if got, want := fileSHA(t, filepath.Join(out, e.Path)), entrySHA(t, &e); got != want {
				t.Errorf("%s: content sha256 %s; want %s", e.Path, got, want)
			}
		case Symlink:
			if target, err := os.Readlink(filepath.Join(out, e.Path)); err != nil || target != e.LinkTarget {
				t.Errorf("%s: symlink to %q (%v); want %q", e.Path, target, err, e.LinkTarget)
			}
		case CharDev, BlockDev:
			if want := fmt.Sprintf("%d:%d", e.Major, e.Minor); devices[e.Path] != want {
				t.Errorf("%s: device %s; want %s", e.Path, devices[e.Path], want)
			}
		}
	}
	if t.Failed() {
		t.FailNow()
	}
}

func fileSHA(t testing.TB, p string) string {
	f, err := os.Open(p)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

func entrySHA(t testing.TB, e *Entry) string {
	h := sha256.New()
	if e.Size > 0 {
		r, err := e.Open()
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		if _, err := io.Copy(h, r); err != nil {
			t.Fatal(err)
		}
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

// loopMount mounts img on a new directory, or skips the test where loop
// mounts are not allowed (not root, no loop devices).
func loopMount(t *testing.T, img string, ro bool) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("loop mounts need root")
	}
	dir := t.TempDir()
	opt := "loop"
	if ro {
		opt += ",ro"
	}
	if out, err := exec.Command("mount", "-t", "ext4", "-o", opt, img, dir).CombinedOutput(); err != nil {
		t.Skipf("cannot loop mount here: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", dir).Run() })
	return dir
}

func unmount(t *testing.T, dir string) {
	t.Helper()
	if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
		t.Fatalf("umount: %v: %s", err, out)
	}
}

func loopDevice(t *testing.T, dir string) string {
	out, err := exec.Command("findmnt", "-n", "-o", "SOURCE", dir).Output()
	if err != nil {
		t.Fatalf("findmnt %s: %v", dir, err)
	}
	return strings.TrimSpace(string(out))
}

// checkMounted mounts the image read-only with the kernel's ext4 and
// compares every entry with lstat: type and mode, owner, size, link
// count, device number, mtime to the nanosecond, content, symlink target
// and file capabilities.
func checkMounted(t *testing.T, img string, es []Entry) {
	t.Helper()
	dir := loopMount(t, img, true)
	links := map[string]uint64{}
	for _, e := range es {
		if e.HardLinkTo != "" {
			links[e.HardLinkTo]++
		}
	}
	byPath := map[string]*Entry{}
	for i := range es {
		byPath[es[i].Path] = &es[i]
	}
	for _, e := range es {
		p := filepath.Join(dir, e.Path)
		var st syscall.Stat_t
		if err := syscall.Lstat(p, &st); err != nil {
			t.Errorf("%s: %v", e.Path, err)
			continue
		}
		if e.HardLinkTo != "" {
			var tst syscall.Stat_t
			if err := syscall.Lstat(filepath.Join(dir, e.HardLinkTo), &tst); err != nil || tst.Ino != st.Ino {
				t.Errorf("%s is not a hard link to %s", e.Path, e.HardLinkTo)
			}
			continue
		}
		if want := uint32(unixMode(&node{e: &e})); st.Mode != want {
			t.Errorf("%s: mode %o; want %o", e.Path, st.Mode, want)
		}
		if st.Uid != e.UID || st.Gid != e.GID {
			t.Errorf("%s: owner %d:%d; want %d:%d", e.Path, st.Uid, st.Gid, e.UID, e.GID)
		}
		if e.Path != "/" && !time.Unix(st.Mtim.Sec, st.Mtim.Nsec).Equal(e.MTime) {
			t.Errorf("%s: mtime %v; want %v", e.Path, time.Unix(st.Mtim.Sec, st.Mtim.Nsec).UTC(), e.MTime)
		}
		switch e.Type {
		case Regular:
			if st.Nlink != 1+links[e.Path] {
				t.Errorf("%s: %d links; want %d", e.Path, st.Nlink, 1+links[e.Path])
			}
			if st.Size != e.Size {
				t.Errorf("%s: size %d; want %d", e.Path, st.Size, e.Size)
			}
			if got, want := fileSHA(t, p), entrySHA(t, &e); got != want {
				t.Errorf("%s: content differs", e.Path)
			}
			for name, want := range e.Xattrs {
				got := make([]byte, 256)
				n, err := syscall.Getxattr(p, name, got)
				if err != nil || !bytes.Equal(got[:n], want) {
					t.Errorf("%s: xattr %s = %x (%v); want %x", e.Path, name, got[:max(n, 0)], err, want)
				}
			}
		case Symlink:
			if target, err := os.Readlink(p); err != nil || target != e.LinkTarget {
				t.Errorf("%s: symlink to %q (%v); want %q", e.Path, target, err, e.LinkTarget)
			}
		case CharDev, BlockDev:
			major := uint32((st.Rdev>>8)&0xfff | (st.Rdev>>32)&^0xfff)
			minor := uint32(st.Rdev&0xff | (st.Rdev>>12)&^0xff)
			if major != e.Major || minor != e.Minor {
				t.Errorf("%s: device %d:%d; want %d:%d", e.Path, major, minor, e.Major, e.Minor)
			}
		}
	}
	// Nothing more than the entries (and lost+found).
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		rel := "/" + strings.TrimPrefix(strings.TrimPrefix(p, dir), "/")
		if rel == "/lost+found" {
			return filepath.SkipDir
		}
		if byPath[rel] == nil && rel != "/" {
			t.Errorf("the mounted tree has %s, which is not an entry", rel)
		}
		return nil
	})
}

// BenchmarkWrite writes a 64 MB, 2,000-file tree. For the comparison
// with mke2fs on a real-sized tree, see make bench-disk.
func BenchmarkWrite(b *testing.B) {
	es := synthetic(60<<20, 2000)
	var bytes int64
	for _, e := range es {
		bytes += e.Size
	}
	img := filepath.Join(b.TempDir(), "root.img")
	b.SetBytes(bytes)
	for b.Loop() {
		f, err := os.Create(img)
		if err != nil {
			b.Fatal(err)
		}
		if err := f.Truncate(256 << 20); err != nil {
			b.Fatal(err)
		}
		if err := Write(f, es, opts(256<<20)); err != nil {
			b.Fatal(err)
		}
		f.Close()
	}
}

// TestTimeRange: times ext4 cannot hold are clamped to its range, as the
// kernel clamps them, instead of wrapping around (1900 read back as 2444,
// 2500 as 1955); the ends of the range and the times inside it are kept
// to the nanosecond.
func TestTimeRange(t *testing.T) {
	first, last := time.Unix(-1<<31, 0), time.Unix(1<<34-1<<31-1, 0)
	cases := []struct {
		name     string
		in, want time.Time
	}{
		{"1900", time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC), first},
		{"year 2", time.Date(2, 1, 1, 0, 0, 0, 0, time.UTC), first},
		{"just before", first.Add(-time.Nanosecond), first},
		{"first", first, first},
		{"before 1970", time.Date(1969, 7, 20, 20, 17, 40, 123456789, time.UTC), time.Date(1969, 7, 20, 20, 17, 40, 123456789, time.UTC)},
		{"2038", time.Date(2038, 1, 19, 3, 14, 8, 5, time.UTC), time.Date(2038, 1, 19, 3, 14, 8, 5, time.UTC)},
		{"last", last.Add(999999999), last.Add(999999999)},
		{"just after", last.Add(time.Second), last},
		{"2500", time.Date(2500, 1, 1, 0, 0, 0, 0, time.UTC), last},
	}
	var in, want []Entry
	for i, c := range cases {
		e := Entry{Path: fmt.Sprintf("/f%d", i), Type: Regular, Mode: 0o644, MTime: c.in, Size: 1, Open: content(uint64(i), 1)}
		in = append(in, e)
		e.MTime = c.want
		want = append(want, e)
	}
	img := writeImage(t, in, opts(16<<20))
	fsck(t, img)
	checkMounted(t, img, want)
}
