// Command bench-image times a whole warm `appliance build` of the demo
// site against its peer, side by side on this machine, and prints wall
// times, peak memory and the ratio. It is a benchmark, not a test: run it
// with make bench-image, as root (mmdebstrap --mode=root needs it), with
// Debian's archive reachable.
//
// Both sides start from the same downloaded .debs (the packages of
// examples/demo.lock) and end with an SD card image, its compressed copy
// and its checksum:
//
//   - appliance: bin/appliance build examples/demo.hcl into a fresh
//     output folder (so nothing is skipped), with the cache warm: resolve
//     from the lock, unpack from the cache, the site's files and
//     programs, the ext4 and FAT file systems, the MBR image, bmap, zstd
//     (its frames from the cache), SBOM and SHA256SUMS. Then the same
//     after a site edit (another admin SSH key each round), for which the
//     ranges of the image that changed are compressed anew.
//   - peer: mmdebstrap --mode=root --variant=extract with the same .debs
//     in its apt cache (it still downloads the indexes), then sfdisk,
//     mkfs.vfat and mcopy of the kernel and initramfs, and mke2fs -t
//     ext4 -d of its tree, the file systems made in place in the image
//     (--offset, -E offset): "peer: image". Then bmaptool create, zstd -1
//     -T0 and sha256sum: "peer: total". The peer does less: no dpkg
//     database, no site configuration, no programs, no SBOM.
//
// An unchanged rebuild (appliance's "up to date") is timed too. With
// -peer=false only appliance is timed, to compare two of its versions
// (-appliance) quickly.
package main

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/appliance/appliance/images/cache"
	"github.com/appliance/appliance/images/rootfs"
	"github.com/appliance/appliance/internal/benchrun"
	"github.com/appliance/appliance/keys"
	"golang.org/x/crypto/ssh"
)

var (
	bin      = flag.String("appliance", "bin/appliance", "the appliance binary to time")
	specPath = flag.String("spec", "examples/demo.hcl", "the site to build")
	lockPath = flag.String("lock", "examples/demo.lock", "the site's lock (its packages are the peer's)")
	rounds   = flag.Int("rounds", 3, "how often to run every measurement; medians are compared")
	withPeer = flag.Bool("peer", true, "time the peer too (false: appliance alone, to compare two versions of it quickly)")
	work     = flag.String("work", "", "folder for state, outputs and the peer's trees (default: a new one under /var/tmp, removed at the end)")
)

func main() {
	flag.Parse()
	if err := bench(); err != nil {
		fmt.Fprintln(os.Stderr, "bench-image:", err)
		os.Exit(1)
	}
}

// timed is benchrun.Timed without the output.
func timed(what string, cmd *exec.Cmd) (benchrun.Result, error) {
	r, _, err := benchrun.Timed(what, cmd)
	return r, err
}

// seq times a series of commands as one step.
func seq(what string, cmds ...*exec.Cmd) (benchrun.Result, error) {
	total := benchrun.Result{What: what}
	for _, c := range cmds {
		r, err := timed(what, c)
		if err != nil {
			return total, err
		}
		total.Add(r)
	}
	return total, nil
}

func bench() error {
	if os.Getuid() != 0 {
		return fmt.Errorf("run as root: mmdebstrap --mode=root needs it")
	}
	for _, p := range []string{"mmdebstrap", "mke2fs", "mkfs.vfat", "mcopy", "sfdisk", "zstd", "bmaptool"} {
		if _, err := exec.LookPath(p); err != nil {
			return fmt.Errorf("%s is missing; run scripts/deps", p)
		}
	}
	dir := *work
	if dir == "" {
		d, err := os.MkdirTemp("/var/tmp", "bench-image-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	ca, err := cache.Default()
	if err != nil {
		return err
	}
	gocache, err := exec.Command("go", "env", "GOCACHE", "GOMODCACHE").Output()
	if err != nil {
		return fmt.Errorf("go env: %w", err)
	}
	goDirs := strings.Fields(string(gocache))
	// Each build runs with a home of its own, which holds the admin's SSH
	// key the demo puts on the gateway; the caches stay the warm ones.
	homes := filepath.Join(dir, "homes")
	buildWith := func(out, home string) (*exec.Cmd, error) {
		h := filepath.Join(homes, home)
		if err := adminKey(h); err != nil {
			return nil, err
		}
		c := exec.Command(*bin, "build", "--state", filepath.Join(dir, "state"), "--out", out, *specPath)
		c.Env = append(os.Environ(), "SOURCE_DATE_EPOCH=1767225600", "APPLIANCE_VAR_wifi_psk=bench-image-passphrase",
			"HOME="+h, "XDG_CACHE_HOME="+filepath.Dir(ca.Dir), "GOCACHE="+goDirs[0], "GOMODCACHE="+goDirs[1])
		return c, nil
	}
	build := func(out string) *exec.Cmd {
		c, err := buildWith(out, "base")
		if err != nil {
			panic(err)
		}
		return c
	}

	// The first build fills the cache (downloads, unpacked packages, the
	// gateway's programs): everything after it is warm.
	fmt.Fprintln(os.Stderr, "warming the cache with a first build")
	if _, err := timed("first build", build(filepath.Join(dir, "warm"))); err != nil {
		return err
	}
	var info struct {
		Kernel string `json:"kernel"`
	}
	b, err := os.ReadFile(filepath.Join(dir, "warm", "build-info.json"))
	if err != nil {
		return err
	}
	json.Unmarshal(b, &info)
	sizes, err := imageSizes(filepath.Join(dir, "warm", "gateway.img"))
	if err != nil {
		return err
	}
	var peer *peer
	if *withPeer {
		if peer, err = newPeer(dir, sizes, filepath.Join(dir, "warm", "boot")); err != nil {
			return err
		}
	}

	all := map[string][]benchrun.Result{}
	order := []string{"appliance build (warm)", "appliance build (unchanged)", "appliance build (site edited)", "peer: mmdebstrap warm", "peer: partition table, FAT", "peer: mke2fs -d", "peer: image", "peer: bmaptool, zstd, sha256sum", "peer: total"}
	for r := 1; r <= *rounds; r++ {
		fmt.Fprintf(os.Stderr, "round %d of %d\n", r, *rounds)
		out := filepath.Join(dir, fmt.Sprint("out-", r))
		res, err := timed(order[0], build(out))
		if err != nil {
			return err
		}
		all[order[0]] = append(all[order[0]], res)
		if res, err = timed(order[1], build(out)); err != nil {
			return err
		}
		all[order[1]] = append(all[order[1]], res)
		os.RemoveAll(out)
		// Another admin key changes a file of the image (the admin's
		// authorized_keys): its ranges are compressed anew.
		edit, err := buildWith(out, fmt.Sprint("edit-", r))
		if err != nil {
			return err
		}
		if res, err = timed(order[2], edit); err != nil {
			return err
		}
		all[order[2]] = append(all[order[2]], res)
		os.RemoveAll(out)
		if peer == nil {
			continue
		}

		steps, err := peer.run(filepath.Join(dir, fmt.Sprint("peer-", r)))
		if err != nil {
			return err
		}
		image, total := benchrun.Result{What: "peer: image"}, benchrun.Result{What: "peer: total"}
		for _, s := range steps {
			all[s.What] = append(all[s.What], s)
			if s.What != "peer: bmaptool, zstd, sha256sum" {
				image.Add(s)
			}
			total.Add(s)
		}
		all[image.What] = append(all[image.What], image)
		all[total.What] = append(all[total.What], total)
	}

	if peer == nil {
		order = order[:3]
	}
	fmt.Printf("\nthe demo's gateway image (kernel %s, root %d MiB, boot %d MiB): %d rounds on %d cores\n\n",
		info.Kernel, sizes.root>>20, sizes.boot>>20, *rounds, runtime.NumCPU())
	med := benchrun.Table(os.Stdout, order, all)
	if peer == nil {
		return nil
	}
	ours := med[order[0]].Seconds()
	fmt.Printf("\nratios of medians, peer / appliance (above 1: appliance is faster)\n")
	fmt.Printf("  %-60s %6.2f s / %5.2f s = %5.2f\n", "peer's image alone vs appliance's whole build", med["peer: image"].Seconds(), ours, med["peer: image"].Seconds()/ours)
	edited := med[order[2]].Seconds()
	fmt.Printf("  %-60s %6.2f s / %5.2f s = %5.2f\n", "the same, appliance's build after a site edit", med["peer: image"].Seconds(), edited, med["peer: image"].Seconds()/edited)
	fmt.Printf("  %-60s %6.2f s / %5.2f s = %5.2f\n", "the same outputs (image, bmap, zstd, checksums)", med["peer: total"].Seconds(), ours, med["peer: total"].Seconds()/ours)
	return nil
}

// adminKey gives the home folder a new ~/.ssh/id_ed25519.pub, the demo's
// admin key, unless it has one.
func adminKey(home string) error {
	p := filepath.Join(home, ".ssh", "id_ed25519.pub")
	if _, err := os.Stat(p); err == nil {
		return nil
	}
	pub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		return err
	}
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return err
	}
	return os.WriteFile(p, append(bytes.TrimSpace(ssh.MarshalAuthorizedKey(k)), " bench@image\n"...), 0o644)
}

// sizes are the partitions of the image appliance built, so the peer
// writes file systems of the same size.
type sizes struct{ boot, root, bootStart int64 }

func imageSizes(img string) (sizes, error) {
	out, err := exec.Command("sfdisk", "--json", img).Output()
	if err != nil {
		return sizes{}, fmt.Errorf("sfdisk --json %s: %w", img, err)
	}
	var t struct {
		PartitionTable struct {
			Partitions []struct{ Start, Size int64 }
		}
	}
	if err := json.Unmarshal(out, &t); err != nil || len(t.PartitionTable.Partitions) != 2 {
		return sizes{}, fmt.Errorf("%s: not the two partitions of a gateway image", img)
	}
	p := t.PartitionTable.Partitions
	return sizes{boot: p[0].Size * 512, root: p[1].Size * 512, bootStart: p[0].Start * 512}, nil
}

// peer is the conventional pipeline for the same image.
type peer struct {
	dir, keyring, debs, boot string
	lock                     *rootfs.Lock
	sz                       sizes
}

func newPeer(dir string, sz sizes, boot string) (*peer, error) {
	l, err := rootfs.ReadLock(*lockPath)
	if err != nil {
		return nil, err
	}
	p := &peer{dir: dir, lock: l, sz: sz, boot: boot, keyring: filepath.Join(dir, "debian-archive.pgp"), debs: filepath.Join(dir, "apt-archives")}
	b, err := keys.Read("debian-archive")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(p.keyring, b, 0o644); err != nil {
		return nil, err
	}
	// apt's file names for the cached .debs, so mmdebstrap downloads
	// none of them.
	ca, err := cache.Default()
	if err != nil {
		return nil, err
	}
	os.MkdirAll(p.debs, 0o755)
	for _, pk := range l.Packages {
		name := fmt.Sprintf("%s_%s_%s.deb", pk.Name, strings.ReplaceAll(pk.Version, ":", "%3a"), pk.Architecture)
		if err := os.Link(ca.Path("debs", pk.SHA256), filepath.Join(p.debs, name)); err != nil {
			return nil, fmt.Errorf("the first build's .debs: %w", err)
		}
	}
	return p, nil
}

func (p *peer) run(dir string) ([]benchrun.Result, error) {
	defer os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var names []string
	for _, pk := range p.lock.Packages {
		names = append(names, pk.Name)
	}
	tree, img := filepath.Join(dir, "tree"), filepath.Join(dir, "gateway.img")
	var res []benchrun.Result
	step := func(what string, cmds ...*exec.Cmd) error {
		fmt.Fprintf(os.Stderr, "  %s\n", what)
		r, err := seq(what, cmds...)
		res = append(res, r)
		return err
	}
	if err := step("peer: mmdebstrap warm", exec.Command("mmdebstrap", "--quiet", "--mode=root", "--variant=extract", "--arch=arm64",
		"--keyring="+p.keyring, "--include="+strings.Join(names, ","),
		`--setup-hook=mkdir -p "$1/var/cache/apt/archives" && ln `+p.debs+`/*.deb "$1/var/cache/apt/archives/"`,
		"trixie", tree,
		"deb http://deb.debian.org/debian trixie main",
		"deb http://deb.debian.org/debian-security trixie-security main")); err != nil {
		return nil, err
	}
	// The root file system is made in place in the image (the peer's
	// fastest way: no copy of it); the small FAT is copied in.
	rootStart := p.sz.bootStart + p.sz.boot
	sf := exec.Command("sfdisk", "--quiet", img)
	sf.Stdin = strings.NewReader(fmt.Sprintf("label: dos\n%d,%d,c\n%d,%d,83\n", p.sz.bootStart/512, p.sz.boot/512, rootStart/512, p.sz.root/512))
	boot := filepath.Join(dir, "boot.vfat")
	if err := step("peer: partition table, FAT",
		exec.Command("truncate", "-s", fmt.Sprint(rootStart+p.sz.root), img),
		exec.Command("mkfs.vfat", "-C", boot, fmt.Sprint(p.sz.boot>>10)),
		exec.Command("mcopy", "-i", boot, filepath.Join(p.boot, "vmlinuz"), filepath.Join(p.boot, "initrd.img"), filepath.Join(p.boot, "cmdline.txt"), "::/"),
		exec.Command("dd", "if="+boot, "of="+img, "bs=1M", "conv=sparse,notrunc", "oflag=seek_bytes", fmt.Sprint("seek=", p.sz.bootStart), "status=none"),
		sf,
	); err != nil {
		return nil, err
	}
	if err := step("peer: mke2fs -d", exec.Command("mke2fs", "-q", "-F", "-t", "ext4", "-E", fmt.Sprint("offset=", rootStart), "-d", tree, img, fmt.Sprintf("%dk", p.sz.root>>10))); err != nil {
		return nil, err
	}
	if err := step("peer: bmaptool, zstd, sha256sum",
		exec.Command("bmaptool", "create", "-o", img+".bmap", img),
		exec.Command("zstd", "-1", "-T0", "-q", "-f", img, "-o", img+".zst"),
		exec.Command("sha256sum", img, img+".zst", img+".bmap"),
	); err != nil {
		return nil, err
	}
	return res, nil
}
