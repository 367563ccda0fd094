// Command diskbench compares images/ext4 with mke2fs -d on the same tree:
// about 14,000 files and 420 MB, a sample of the host's /usr copied once
// into a cache folder (like the gateway's root file system in size and
// file count). Each writer runs as its own process, warm cache, a few
// times; it prints wall time, CPU time, MB/s, peak RSS and the ratio. A
// third line is the whole image as the builder makes it: MBR, boot
// partition, root and the bmap (which reads back and hashes every
// mapped block).
//
//	go run ./images/internal/diskbench [-cache DIR] [-runs N]
package main

import (
	"flag"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/appliance/appliance/images/disk"
	"github.com/appliance/appliance/images/ext4"
	"github.com/appliance/appliance/images/internal/dirtree"
)

const (
	wantFiles = 14000
	wantBytes = 420 << 20
)

func main() {
	if len(os.Args) == 4 && (os.Args[1] == "-write" || os.Args[1] == "-image") {
		write := writeOurs
		if os.Args[1] == "-image" {
			write = writeImage
		}
		if err := write(os.Args[2], os.Args[3]); err != nil {
			fmt.Fprintln(os.Stderr, "diskbench:", err)
			os.Exit(1)
		}
		return
	}
	cache := flag.String("cache", "/var/tmp/appliance-diskbench", "where the sample tree is kept between runs")
	runs := flag.Int("runs", 3, "timed runs of each writer")
	flag.Parse()
	if err := run(*cache, *runs); err != nil {
		fmt.Fprintln(os.Stderr, "diskbench:", err)
		os.Exit(1)
	}
}

func run(cache string, runs int) error {
	tree := filepath.Join(cache, "tree")
	if _, err := os.Stat(tree); err != nil {
		fmt.Println("sampling /usr into", tree, "(once)")
		if err := sample("/usr", tree); err != nil {
			return err
		}
	}
	files, bytes, err := measure(tree)
	if err != nil {
		return err
	}
	size := (bytes*5/4 + 128<<20) / (4 << 20) * (4 << 20)
	fmt.Printf("tree: %d files, %.0f MB; file system %d MiB\n", files, float64(bytes)/1e6, size>>20)

	self, err := os.Executable()
	if err != nil {
		return err
	}
	img := filepath.Join(cache, "bench.img")
	writers := []struct {
		name string
		cmd  func() *exec.Cmd
	}{
		{"images/ext4", func() *exec.Cmd { return exec.Command(self, "-write", tree, img) }},
		{"images/disk", func() *exec.Cmd { return exec.Command(self, "-image", tree, img) }},
		{"mke2fs -d", func() *exec.Cmd {
			return exec.Command("mke2fs", "-q", "-F", "-t", "ext4", "-d", tree, img, fmt.Sprint(size>>10)+"k")
		}},
	}
	os.Setenv("DISKBENCH_SIZE", fmt.Sprint(size))
	best := map[string]time.Duration{}
	for _, w := range writers {
		var times, cpus []time.Duration
		var rss int64
		for i := 0; i <= runs; i++ { // the first run warms the cache
			os.Remove(img)
			// Write back the last run's image first, so that one run's
			// writeback does not slow the next.
			syscall.Sync()
			cmd := w.cmd()
			cmd.Stderr = os.Stderr
			start := time.Now()
			if err := cmd.Run(); err != nil {
				return fmt.Errorf("%s: %w", w.name, err)
			}
			d := time.Since(start)
			if i > 0 {
				times = append(times, d)
				cpus = append(cpus, cmd.ProcessState.UserTime()+cmd.ProcessState.SystemTime())
				rss = max(rss, cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss)
			}
		}
		check := img
		if w.name == "images/disk" {
			check = fmt.Sprintf("%s?offset=%d", img, disk.BootStart+256<<20)
		}
		if out, err := exec.Command("e2fsck", "-fn", check).CombinedOutput(); err != nil {
			return fmt.Errorf("%s: e2fsck: %v\n%s", w.name, err, out)
		}
		slices.Sort(times)
		slices.Sort(cpus)
		med := times[len(times)/2]
		best[w.name] = med
		fmt.Printf("%-12s median %5.2f s (best %5.2f s, CPU %5.2f s)  %4.0f MB/s  peak RSS %3d MiB  e2fsck clean\n",
			w.name, med.Seconds(), times[0].Seconds(), cpus[len(cpus)/2].Seconds(), float64(bytes)/1e6/med.Seconds(), rss>>10)
	}
	os.Remove(img)
	fmt.Printf("ratio: images/ext4 is %.1f× as fast as mke2fs -d; the whole image with its bmap %.1f×\n",
		best["mke2fs -d"].Seconds()/best["images/ext4"].Seconds(), best["mke2fs -d"].Seconds()/best["images/disk"].Seconds())
	return nil
}

func writeOurs(tree, img string) error {
	var size int64
	fmt.Sscan(os.Getenv("DISKBENCH_SIZE"), &size)
	es, err := dirtree.Entries(tree)
	if err != nil {
		return err
	}
	f, err := os.Create(img)
	if err != nil {
		return err
	}
	if err := f.Truncate(size); err != nil {
		return err
	}
	opts := ext4.Options{Size: size, Label: "bench", Time: time.Unix(1700000000, 0), ReservedBlocksPercent: 5}
	if err := ext4.Write(f, es, opts); err != nil {
		return err
	}
	return f.Close()
}

// writeImage writes the whole disk image: MBR, an empty 256 MiB boot
// partition, the tree as root, and the bmap, which hashes every mapped
// block.
func writeImage(tree, img string) error {
	var size int64
	fmt.Sscan(os.Getenv("DISKBENCH_SIZE"), &size)
	es, err := dirtree.Entries(tree)
	if err != nil {
		return err
	}
	l := disk.Layout{
		DiskID:   0x12345678,
		BootSize: 256 << 20,
		RootSize: size,
		Root:     ext4.Options{Label: "bench", Time: time.Unix(1700000000, 0), ReservedBlocksPercent: 5},
	}
	defer os.Remove(img + ".bmap")
	return disk.Write(img, l, nil, es)
}

func measure(tree string) (files int, bytes int64, err error) {
	err = filepath.WalkDir(tree, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			files++
			bytes += fi.Size()
		}
		return nil
	})
	return files, bytes, err
}

// sample copies about one file in seven of src (none over 32 MiB) (picked by a hash of the
// path, so every machine picks the same), with modes, owners and times,
// until it has wantFiles files or wantBytes bytes.
func sample(src, dst string) error {
	tmp := dst + ".tmp"
	os.RemoveAll(tmp)
	files, bytes := 0, int64(0)
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // unreadable: leave it out
		}
		if files >= wantFiles || bytes >= wantBytes {
			return filepath.SkipAll
		}
		rel, _ := filepath.Rel(src, p)
		out := filepath.Join(tmp, rel)
		fi, err := d.Info()
		if err != nil {
			return nil
		}
		st := fi.Sys().(*syscall.Stat_t)
		if d.IsDir() {
			return os.MkdirAll(out, 0o755)
		}
		h := fnv.New32a()
		h.Write([]byte(rel))
		if h.Sum32()%7 != 0 || !(d.Type().IsRegular() || d.Type()&fs.ModeSymlink != 0) || fi.Size() > 32<<20 {
			return nil
		}
		if d.Type()&fs.ModeSymlink != 0 {
			target, err := os.Readlink(p)
			if err != nil {
				return nil
			}
			if err := os.Symlink(target, out); err != nil {
				return err
			}
			return os.Lchown(out, int(st.Uid), int(st.Gid))
		}
		if err := copyFile(p, out, fi); err != nil {
			return err
		}
		files++
		bytes += fi.Size()
		os.Chown(out, int(st.Uid), int(st.Gid))
		os.Chmod(out, fi.Mode())
		return os.Chtimes(out, fi.ModTime(), fi.ModTime())
	})
	if err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}

func copyFile(src, dst string, fi fs.FileInfo) error {
	in, err := os.Open(src)
	if err != nil {
		return nil // unreadable: leave it out
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fi.Mode().Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
