// Command bench-rootfs times appliance's root file system build against
// its peer, side by side on this machine: mmdebstrap --mode=root
// --variant=extract --arch=arm64 for the same packages, and mke2fs -t
// ext4 -d for the image. It prints wall times, peak memory and the
// ratios. It is a benchmark, not a test: run it with make bench-rootfs,
// as root, with Debian's archive reachable.
//
// What is compared:
//
//   - appliance cold: an empty cache; resolve (indexes downloaded),
//     download, unpack into the cache, write the tree into a folder as
//     root (owners, modes, device nodes, hard links), every file
//     hash-checked.
//   - appliance warm: the lock and the cache from the cold run; assemble
//     the tree from the cached manifests and write it into a folder.
//     "warm, resolving" resolves again from the cached indexes first.
//   - appliance cold to ext4: the cold build, written by images/ext4
//     into an image.
//   - mmdebstrap cold: its own empty apt cache, so it downloads.
//   - mmdebstrap warm: the same .debs put into its apt cache by a setup
//     hook, so apt downloads only the indexes.
//   - appliance tar: warm, the tree streamed into one tar file: what the
//     image writer will do (blobs streamed into one file), without the
//     cost of creating 16,000 files on the host.
//   - appliance ext4: warm, the tree written by images/ext4 into a 2 GiB
//     image: the build's real path.
//   - mke2fs -t ext4 -d of the mmdebstrap tree: the peer's image step.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/appliance/appliance/images/apt"
	"github.com/appliance/appliance/images/cache"
	"github.com/appliance/appliance/images/ext4"
	"github.com/appliance/appliance/images/rootfs"
	"github.com/appliance/appliance/images/tree"
	"github.com/appliance/appliance/internal/benchrun"
	"github.com/appliance/appliance/keys"
)

// The package set of DESIGN.md's measurements.
const defaultPackages = "systemd-sysv openssh-server mosquitto nginx influxdb nftables unattended-upgrades chrony ca-certificates linux-image-arm64"

var (
	packages = flag.String("packages", defaultPackages, "the packages to build a root file system of (and their dependencies)")
	work     = flag.String("work", "", "folder for caches, trees and images (default: a new one under /var/tmp, removed at the end)")
	skipPeer = flag.Bool("skip-mmdebstrap", false, "time appliance only")
	rounds   = flag.Int("rounds", 3, "how often to run every measurement; medians are compared")
	child    = flag.String("child", "", "internal: run one appliance build (cold, warm, resolve) in this process")
	cacheDir = flag.String("cache", "", "internal: the child's cache")
	outDir   = flag.String("out", "", "internal: the child's output folder")
	lockFile = flag.String("lock", "", "internal: the child's lock file")
)

func main() {
	flag.Parse()
	var err error
	if *child != "" {
		err = runChild(context.Background())
	} else {
		err = bench()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench-rootfs:", err)
		os.Exit(1)
	}
}

func request() (*rootfs.Request, error) {
	b, err := keys.Read("debian-archive")
	if err != nil {
		return nil, err
	}
	kr, err := apt.ReadKeyring(b)
	if err != nil {
		return nil, err
	}
	return &rootfs.Request{Suite: "trixie", Arch: "arm64", Packages: strings.Fields(*packages), Sources: []*apt.Source{
		{Name: "debian", URL: "http://deb.debian.org/debian", Suite: "trixie", Components: []string{"main"}, Keyring: kr, Priority: rootfs.DefaultPriority},
		{Name: "debian-security", URL: "http://deb.debian.org/debian-security", Suite: "trixie-security", Components: []string{"main"}, Keyring: kr, Priority: rootfs.DefaultPriority},
	}}, nil
}

// phases is what a child reports.
type phases struct {
	Plan, Fetch, Unpack, Write time.Duration
	Entries                    int
	Packages                   int
	Download                   int64
}

func runChild(ctx context.Context) error {
	req, err := request()
	if err != nil {
		return err
	}
	ca := &cache.Cache{Dir: *cacheDir}
	cold := strings.HasPrefix(*child, "cold")
	client := &apt.Client{Store: ca, Retries: 3, Offline: !cold}
	var ph phases
	var lock *rootfs.Lock
	t := time.Now()
	if *child == "warm" || *child == "tar" || *child == "ext4" {
		lock, err = rootfs.ReadLock(*lockFile)
		if err == nil && !lock.Fits(req) {
			err = fmt.Errorf("%s does not fit the request", *lockFile)
		}
	} else {
		lock, err = rootfs.Plan(ctx, client, req)
	}
	if err != nil {
		return err
	}
	ph.Plan = time.Since(t)
	if cold {
		if err := lock.WriteFile(*lockFile); err != nil {
			return err
		}
	}
	// The unpacked packages' hashes, which a build keeps in the site's
	// state, are kept beside the lock.
	record := *lockFile + ".unpacked"
	if err := lock.LoadUnpacked(record); err != nil {
		return err
	}
	t = time.Now()
	if err := rootfs.Fetch(ctx, client, lock, ca, nil); err != nil {
		return err
	}
	ph.Fetch = time.Since(t)
	t = time.Now()
	tr, err := rootfs.Unpack(ctx, lock, ca, rootfs.UnpackOptions{})
	if err != nil {
		return err
	}
	ph.Unpack = time.Since(t)
	if err := lock.SaveUnpacked(record); err != nil {
		return err
	}
	t = time.Now()
	if *child == "ext4" || *child == "cold-ext4" {
		f, err := os.Create(*outDir + ".img")
		if err != nil {
			return err
		}
		if err := ext4.Write(f, rootfs.Ext4Entries(tr, ca), ext4.Options{Size: 2 << 30}); err != nil {
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
	} else if *child == "tar" {
		f, err := os.Create(*outDir + ".tar")
		if err != nil {
			return err
		}
		if err := tree.WriteTar(f, tr, ca); err != nil {
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
	} else if err := tree.WriteDir(tr, *outDir, ca, tree.WriteOptions{Verify: true, Owners: true}); err != nil {
		return err
	}
	ph.Write = time.Since(t)
	ph.Entries, ph.Packages, ph.Download = tr.Len(), len(lock.Packages), lock.DownloadSize()
	return json.NewEncoder(os.Stdout).Encode(ph)
}

// timed runs a child or a peer; its progress goes to the terminal.
func timed(what string, cmd *exec.Cmd) (benchrun.Result, []byte, error) {
	cmd.Stderr = os.Stderr
	return benchrun.Timed(what, cmd)
}

func bench() error {
	if os.Getuid() != 0 {
		return fmt.Errorf("run as root: the trees are written with their owners and device nodes, and mmdebstrap --mode=root needs it")
	}
	if _, err := exec.LookPath("mke2fs"); err != nil {
		return fmt.Errorf("mke2fs is missing; run scripts/deps")
	}
	if !*skipPeer {
		if _, err := exec.LookPath("mmdebstrap"); err != nil {
			return fmt.Errorf("mmdebstrap is missing; run scripts/deps")
		}
	}
	dir := *work
	if dir == "" {
		d, err := os.MkdirTemp("/var/tmp", "bench-rootfs-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	all := map[string][]benchrun.Result{}
	var order []string
	var cold phases
	for r := 1; r <= *rounds; r++ {
		fmt.Fprintf(os.Stderr, "round %d of %d\n", r, *rounds)
		res, ph, err := round(filepath.Join(dir, fmt.Sprint(r)))
		if err != nil {
			return err
		}
		cold = ph
		for _, x := range res {
			if all[x.What] == nil {
				order = append(order, x.What)
			}
			all[x.What] = append(all[x.What], x)
		}
	}

	fmt.Printf("\nroot file system of %q (trixie, arm64): %d packages, %.1f MB of .debs, %d entries; %d rounds on %d cores\n\n", *packages, cold.Packages, float64(cold.Download)/1e6, cold.Entries, *rounds, runtime.NumCPU())
	med := benchrun.Table(os.Stdout, order, all)
	if !*skipPeer {
		mk := med["mke2fs -t ext4 -d (mmdebstrap tree)"]
		line := func(name string, peer, ours time.Duration) {
			fmt.Printf("  %-52s %6.2f s / %6.2f s = %5.2f\n", name, peer.Seconds(), ours.Seconds(), ratio(peer, ours))
		}
		fmt.Printf("\nratios of medians, peer / appliance (above 1: appliance is faster)\n")
		line("cold, tree in a folder", med["mmdebstrap cold"], med["appliance cold"])
		line("cold, peer's image (+ mke2fs -d) vs our ext4 image", med["mmdebstrap cold"]+mk, med["appliance cold to ext4"])
		line("warm, tree in a folder", med["mmdebstrap warm"], med["appliance warm"])
		line("warm, resolving again, tree in a folder", med["mmdebstrap warm"], med["appliance resolve"])
		line("warm, peer's image (+ mke2fs -d) vs our folder", med["mmdebstrap warm"]+mk, med["appliance warm"])
		line("warm, peer's image (+ mke2fs -d) vs our tar", med["mmdebstrap warm"]+mk, med["appliance tar"])
		line("warm, peer's image (+ mke2fs -d) vs our ext4 image", med["mmdebstrap warm"]+mk, med["appliance ext4"])
	}
	return nil
}

// round runs every measurement once, in a folder of its own, with a
// fresh cache for the cold build.
func round(dir string) ([]benchrun.Result, phases, error) {
	defer os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, phases{}, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, phases{}, err
	}
	ca := filepath.Join(dir, "cache")
	lock := filepath.Join(dir, "bench.lock")
	var results []benchrun.Result
	var cold phases
	for _, mode := range []string{"cold-ext4", "cold", "warm", "resolve", "tar", "ext4"} {
		if mode == "cold-ext4" {
			// A cold build of its own, into an ext4 image.
			defer os.RemoveAll(ca + "-ext4")
			r, stdout, err := timed("appliance cold to ext4", exec.Command(self, "-child", mode, "-cache", ca+"-ext4", "-out", filepath.Join(dir, "cold"), "-lock", lock+"-ext4", "-packages", *packages))
			if err != nil {
				return nil, cold, err
			}
			var ph phases
			if err := json.Unmarshal(stdout, &ph); err != nil {
				return nil, cold, fmt.Errorf("appliance %s printed %q: %w", mode, stdout, err)
			}
			r.Detail = fmt.Sprintf("resolve %.2f s, download %.2f s, unpack %.2f s, write ext4 image %.2f s", ph.Plan.Seconds(), ph.Fetch.Seconds(), ph.Unpack.Seconds(), ph.Write.Seconds())
			results = append(results, r)
			os.Remove(filepath.Join(dir, "cold.img"))
			os.RemoveAll(ca + "-ext4")
			continue
		}
		out := filepath.Join(dir, "appliance-"+mode)
		fmt.Fprintf(os.Stderr, "  appliance %s\n", mode)
		r, stdout, err := timed("appliance "+mode, exec.Command(self, "-child", mode, "-cache", ca, "-out", out, "-lock", lock, "-packages", *packages))
		if err != nil {
			return nil, cold, err
		}
		var ph phases
		if err := json.Unmarshal(stdout, &ph); err != nil {
			return nil, cold, fmt.Errorf("appliance %s printed %q: %w", mode, stdout, err)
		}
		if mode == "cold" {
			cold = ph
		}
		what := "write folder"
		switch mode {
		case "tar":
			what = "write tar"
		case "ext4":
			what = "write ext4 image"
		}
		r.Detail = fmt.Sprintf("resolve %.2f s, download %.2f s, unpack %.2f s, %s %.2f s", ph.Plan.Seconds(), ph.Fetch.Seconds(), ph.Unpack.Seconds(), what, ph.Write.Seconds())
		results = append(results, r)
		if mode != "cold" {
			os.RemoveAll(out)
			os.Remove(out + ".tar")
			os.Remove(out + ".img")
		}
	}
	img := filepath.Join(dir, "appliance.img")
	r, _, err := timed("mke2fs -t ext4 -d (appliance tree)", exec.Command("mke2fs", "-q", "-F", "-t", "ext4", "-d", filepath.Join(dir, "appliance-cold"), img, "2G"))
	if err != nil {
		return nil, cold, err
	}
	results = append(results, r)
	os.Remove(img)
	os.RemoveAll(filepath.Join(dir, "appliance-cold"))
	if !*skipPeer {
		peer, err := benchPeer(dir, lock, ca)
		if err != nil {
			return nil, cold, err
		}
		results = append(results, peer...)
	}
	return results, cold, nil
}

func ratio(a, b time.Duration) float64 {
	if b == 0 {
		return 0
	}
	return a.Seconds() / b.Seconds()
}

// benchPeer runs mmdebstrap on the same packages the lock holds, cold
// and with the .debs in its apt cache, and mke2fs -d on its tree.
func benchPeer(dir, lockPath, cacheDir string) ([]benchrun.Result, error) {
	l, err := rootfs.ReadLock(lockPath)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, p := range l.Packages {
		names = append(names, p.Name)
	}
	keyring := filepath.Join(dir, "debian-archive.pgp")
	b, _ := keys.Read("debian-archive")
	if err := os.WriteFile(keyring, b, 0o644); err != nil {
		return nil, err
	}
	// apt's file names for the cached .debs, for the warm run.
	debs := filepath.Join(dir, "apt-archives")
	os.MkdirAll(debs, 0o755)
	ca := &cache.Cache{Dir: cacheDir}
	for _, p := range l.Packages {
		name := fmt.Sprintf("%s_%s_%s.deb", p.Name, strings.ReplaceAll(p.Version, ":", "%3a"), p.Architecture)
		if err := os.Link(ca.Path("debs", p.SHA256), filepath.Join(debs, name)); err != nil {
			return nil, fmt.Errorf("the cold run's .debs: %w", err)
		}
	}
	args := func(target string, warm bool) []string {
		a := []string{"--mode=root", "--variant=extract", "--arch=arm64", "--keyring=" + keyring, "--include=" + strings.Join(names, ",")}
		if warm {
			a = append(a, `--setup-hook=mkdir -p "$1/var/cache/apt/archives" && ln `+debs+`/*.deb "$1/var/cache/apt/archives/"`)
		}
		return append(a, "trixie", target,
			"deb http://deb.debian.org/debian trixie main",
			"deb http://deb.debian.org/debian-security trixie-security main")
	}
	var out []benchrun.Result
	for _, mode := range []string{"cold", "warm"} {
		target := filepath.Join(dir, "mmdebstrap-"+mode)
		fmt.Fprintf(os.Stderr, "  mmdebstrap %s\n", mode)
		cmd := exec.Command("mmdebstrap", append([]string{"--quiet"}, args(target, mode == "warm")...)...)
		r, _, err := timed("mmdebstrap "+mode, cmd)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
		if mode == "cold" {
			os.RemoveAll(target)
		}
	}
	img := filepath.Join(dir, "mmdebstrap.img")
	r, _, err := timed("mke2fs -t ext4 -d (mmdebstrap tree)", exec.Command("mke2fs", "-q", "-F", "-t", "ext4", "-d", filepath.Join(dir, "mmdebstrap-warm"), img, "2G"))
	if err != nil {
		return nil, err
	}
	os.Remove(img)
	return append(out, r), nil
}
