// Package build is appliance build: from a site's spec, state and lock
// to a bootable gateway image and its companions in out/<site>/. The
// build is a straight list of steps, each timed and each wrapping its
// error: resolve, download, unpack, add the site, boot files, image,
// outputs. A rebuild whose inputs have not changed is recognised and
// costs less than a second.
package build

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/appliance/appliance/bootinit"
	"github.com/appliance/appliance/desired"
	"github.com/appliance/appliance/firmware/bundle"
	"github.com/appliance/appliance/images/apt"
	"github.com/appliance/appliance/images/boards"
	"github.com/appliance/appliance/images/cache"
	"github.com/appliance/appliance/images/disk"
	"github.com/appliance/appliance/images/ext4"
	"github.com/appliance/appliance/images/fat"
	"github.com/appliance/appliance/images/gobin"
	"github.com/appliance/appliance/images/initramfs"
	"github.com/appliance/appliance/images/rootfs"
	"github.com/appliance/appliance/images/tree"
	"github.com/appliance/appliance/outputs"
	"github.com/appliance/appliance/state"
)

// Options are a build's inputs.
type Options struct {
	// SpecPath and LockPath are where the spec and its lock lie.
	SpecPath, LockPath string
	// Gateway is the whole gateway: the build reads nothing else of the
	// site.
	Gateway *desired.Gateway
	State   *state.Store
	Cache   *cache.Cache
	Client  *apt.Client
	// OutDir is where the outputs go: out/<site> by default.
	OutDir string
	// Epoch is SOURCE_DATE_EPOCH, when set.
	Epoch *int64
	// Programs gives appliance's programs for the gateway.
	Programs *gobin.Source
	Progress rootfs.Progress
	// Log receives one line per step.
	Log io.Writer
	// Version is appliance's version, recorded in build-info.json.
	Version string
	// Now is the clock that dates what the build signs (OTA manifests);
	// nil means time.Now.
	Now func() time.Time
}

// Result says what a build made.
type Result struct {
	Dir      string
	UpToDate bool
	Info     *Info
	// Tree is the root file system the image holds (nil when up to date).
	Tree *tree.Tree
}

// step times one step of the build.
type step struct {
	log   io.Writer
	info  *Info
	name  string
	start time.Time
}

func (b *builder) step(name string) *step {
	return &step{log: b.opt.Log, info: b.info, name: name, start: time.Now()}
}

func (s *step) done(format string, args ...any) {
	d := time.Since(s.start)
	s.info.Timings = append(s.info.Timings, Timing{Step: s.name, Seconds: d.Seconds()})
	if s.log != nil {
		fmt.Fprintf(s.log, "%-10s %s (%s)\n", s.name, fmt.Sprintf(format, args...), d.Round(10*time.Millisecond))
	}
}

type builder struct {
	opt   Options
	board *desired.Board
	info  *Info
	lock  *rootfs.Lock
	gw    *desired.Resolved
	progs []gobin.Built
	acct  *accounts
	tree  *tree.Tree
	// mtime dates everything appliance makes (see timeOf).
	mtime   time.Time
	srcHash string
}

// Build builds the site's gateway image.
func Build(ctx context.Context, opt Options) (*Result, error) {
	start := time.Now()
	g := opt.Gateway
	b := &builder{opt: opt, board: g.Board, info: &Info{Site: g.Name, Board: g.Board.ID, Hostname: g.Hostname, Admin: g.Admin, Appliance: opt.Version, Listeners: []outputs.Listener{}}}
	for _, l := range g.Listeners {
		if l.Bind == desired.Network {
			b.info.Listeners = append(b.info.Listeners, outputs.Listener{Port: l.Port, Proto: l.Proto, Setting: l.Setting, Purpose: l.Purpose})
		}
	}
	keep := []kept{{"spec", opt.SpecPath}, {"lock", opt.LockPath}}
	if opt.State != nil {
		keep = append(keep, kept{"site's state", opt.State.Dir})
	}
	if opt.Cache != nil {
		keep = append(keep, kept{"package cache", opt.Cache.Dir})
	}
	if err := checkOutDir(opt.OutDir, keep); err != nil {
		return nil, err
	}
	steps := []struct {
		what string
		fn   func(context.Context) error
	}{
		{"resolving packages", b.resolve},
		{"downloading packages", b.fetch},
		{"reading the site's files", b.siteFiles},
	}
	for _, s := range steps {
		if err := s.fn(ctx); err != nil {
			return nil, fmt.Errorf("%s: %w", s.what, err)
		}
		if err := interrupted(ctx, opt.OutDir); err != nil {
			return nil, err
		}
	}
	var err error
	if b.srcHash, err = opt.Programs.Key(ctx, g.Arch); err != nil {
		return nil, fmt.Errorf("the gateway's programs: %w", err)
	}
	key, err := b.key(ctx)
	if err != nil {
		return nil, fmt.Errorf("hashing the inputs: %w", err)
	}
	b.info.Key = key
	if prev, err := readInfo(opt.OutDir); err == nil && prev.Key == key && outputsIntact(opt.OutDir, prev) {
		fmt.Fprintf(opt.Log, "%-10s nothing changed since the last build (%s)\n", "done", time.Since(start).Round(10*time.Millisecond))
		return &Result{Dir: opt.OutDir, UpToDate: true, Info: prev}, nil
	}

	// MkdirTemp makes the folder 0700, and it stays so: the image holds
	// the gateway's keys and secrets, the node bundles the nodes' keys
	// and Wi-Fi passphrase.
	tmp, err := os.MkdirTemp(filepath.Dir(opt.OutDir), "."+filepath.Base(opt.OutDir)+".tmp-")
	if err != nil {
		return nil, fmt.Errorf("making the output folder: %w", err)
	}
	defer os.RemoveAll(tmp)
	t, err := b.unpack(ctx)
	if err != nil {
		return nil, fmt.Errorf("unpacking packages: %w", err)
	}
	b.mtime, b.tree = b.timeOf(t), t
	more := []struct {
		what string
		fn   func(context.Context) error
	}{
		{"building the gateway's programs", b.programs},
		{"adding the site to the root file system", func(context.Context) error { return b.overlay(t) }},
		{"writing the nodes' bundles", func(context.Context) error { return b.nodes(tmp) }},
		{"writing the image", func(ctx context.Context) error { return b.image(ctx, t, tmp) }},
		{"writing the outputs", func(ctx context.Context) error { return b.outputs(ctx, tmp) }},
	}
	for _, s := range more {
		if err := s.fn(ctx); err != nil {
			return nil, fmt.Errorf("%s: %w", s.what, err)
		}
		// Ctrl-C or SIGTERM: stop after the step under way, and publish
		// nothing (the temporary folder goes).
		if err := interrupted(ctx, opt.OutDir); err != nil {
			return nil, err
		}
	}
	b.info.Seconds = time.Since(start).Seconds()
	if err := writeInfo(tmp, b.info); err != nil {
		return nil, err
	}
	if err := writeMarker(tmp); err != nil {
		return nil, err
	}
	if err := swap(tmp, opt.OutDir); err != nil {
		return nil, fmt.Errorf("replacing %s: %w", opt.OutDir, err)
	}
	// The gateway image carries these manifests now: the next ones go on
	// from their versions.
	for _, fw := range b.gw.Firmware {
		if fw.Release != nil {
			if err := opt.State.SaveRelease(fw.Name, *fw.Release); err != nil {
				return nil, fmt.Errorf("recording the OTA release of %s: %w", fw.Name, err)
			}
		}
	}
	return &Result{Dir: opt.OutDir, Info: b.info, Tree: t}, nil
}

// ErrInterrupted is a build stopped by its context (Ctrl-C, SIGTERM).
var ErrInterrupted = errors.New("interrupted")

func interrupted(ctx context.Context, out string) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%w; %s was left as it was", ErrInterrupted, out)
	}
	return nil
}

func (b *builder) resolve(ctx context.Context) error {
	s := b.step("resolve")
	req, err := b.opt.Gateway.Request()
	if err != nil {
		return err
	}
	lockPath := b.opt.LockPath
	lock, err := rootfs.LoadLock(lockPath, b.opt.SpecPath, req)
	if err != nil {
		return err
	}
	if lock == nil {
		// No lock yet: resolve now and keep the result, so the next
		// build uses the same packages.
		if lock, err = rootfs.Plan(ctx, b.opt.Client, req); err != nil {
			return err
		}
		if err := lock.WriteFile(lockPath); err != nil {
			return err
		}
		s.done("%d packages, resolved and written to %s", len(lock.Packages), lockPath)
	} else {
		s.done("%d packages, from %s", len(lock.Packages), lockPath)
	}
	// What the cache holds unpacked is used only as the state vouches
	// for it.
	if err := lock.LoadUnpacked(filepath.Join(b.opt.State.Dir, rootfs.UnpackedName)); err != nil {
		return err
	}
	b.lock = lock
	b.info.Lock = lockPath
	b.info.Packages = len(lock.Packages)
	return nil
}

// nodes writes every node's flash bundle into nodes/NODE/.
func (b *builder) nodes(dir string) error {
	if len(b.gw.Nodes)+len(b.gw.Unflashable) == 0 {
		return nil
	}
	s := b.step("nodes")
	apps := 0
	for _, n := range b.gw.Nodes {
		if err := n.Bundle.Write(outputs.NodeDir(dir, n.Name)); err != nil {
			return fmt.Errorf("node %s: %w", n.Name, err)
		}
		node := outputs.Node{Name: n.Name, Firmware: n.Firmware.Name, Version: n.Firmware.Version, Chip: n.Firmware.Chip, App: n.Bundle.HasApp}
		if !n.CertExpires.IsZero() {
			node.CertExpires = n.CertExpires.UTC().Format(time.RFC3339)
		}
		if n.Bundle.HasApp {
			apps++
		}
		b.info.Nodes = append(b.info.Nodes, node)
	}
	s.done("%d bundles in %s, %d with the signed app", len(b.gw.Nodes), outputs.NodesDir, apps)
	for _, n := range b.gw.Unflashable {
		fmt.Fprintf(b.opt.Log, "%-10s %s gets no bundle: its certificate was revoked; appliance pki renew makes it a new one\n", "nodes", n)
	}
	return nil
}

func (b *builder) fetch(ctx context.Context) error {
	s := b.step("download")
	missing := len(rootfs.Missing(b.lock, b.opt.Cache))
	if err := rootfs.Fetch(ctx, b.opt.Client, b.lock, b.opt.Cache, b.opt.Progress); err != nil {
		return err
	}
	if missing == 0 {
		s.done("none: all %d packages were in the cache (%s)", len(b.lock.Packages), b.opt.Cache.Dir)
	} else {
		s.done("%d of %d packages, into the cache (%s)", missing, len(b.lock.Packages), b.opt.Cache.Dir)
	}
	return nil
}

// siteFiles resolves the gateway's files against the state, so that
// the key covers every byte the site adds.
func (b *builder) siteFiles(ctx context.Context) error {
	now := time.Now
	if b.opt.Now != nil {
		now = b.opt.Now
	}
	gw, err := b.opt.Gateway.Resolve(b.opt.State, now())
	if err != nil {
		return err
	}
	b.gw = gw
	return nil
}

func (b *builder) programs(ctx context.Context) error {
	s := b.step("programs")
	var list []gobin.Program
	for _, p := range b.opt.Gateway.Programs {
		list = append(list, gobin.Program{Package: p.Package, Path: p.Path})
	}
	built, err := b.opt.Programs.Build(ctx, b.opt.Gateway.Arch, list)
	if err != nil {
		return err
	}
	b.progs = built
	s.done("%d programs for linux/%s, %s", len(built), b.opt.Gateway.Arch, b.opt.Programs)
	return nil
}

// key hashes every input of the image: appliance itself, the lock, the
// site's files, the gateway's programs' source, the time.
func (b *builder) key(ctx context.Context) (string, error) {
	h := sha256.New()
	exe, err := os.Executable()
	if err == nil {
		if f, err := os.Open(exe); err == nil {
			io.Copy(h, f)
			f.Close()
		}
	}
	lockBytes, err := os.ReadFile(b.opt.LockPath)
	if err != nil {
		return "", err
	}
	h.Write(lockBytes)
	g := b.gw
	fmt.Fprintf(h, "\nboard %+v epoch %v disk %+v\n", *b.board, epochString(b.opt.Epoch), g.Disk)
	for _, f := range g.Files {
		fmt.Fprintf(h, "%s %o %s %s %x\n", f.Path, f.Mode, f.Owner, f.Group, sha256.Sum256(f.Data))
	}
	fmt.Fprintf(h, "%+v %+v %+v %+v %+v\n", g.Dirs, g.Symlinks, g.Users, g.Groups, g.Programs)
	// A firmware's signed app is the same in every node's bundle: it is
	// hashed once, not once a node.
	for _, fw := range g.Firmware {
		fmt.Fprintf(h, "firmware %s %s\n", fw.Name, fw.AppSHA256)
	}
	for _, n := range g.Nodes {
		fmt.Fprintf(h, "node %s %s\n", n.Name, n.Firmware.Name)
		for _, f := range n.Bundle.Files {
			if f.Path != bundle.AppFile {
				fmt.Fprintf(h, "%s %x\n", f.Path, sha256.Sum256(f.Data))
			}
		}
	}
	fmt.Fprintf(h, "source %s\n", b.srcHash)
	return hex.EncodeToString(h.Sum(nil)), nil
}

func epochString(e *int64) string {
	if e == nil {
		return "none"
	}
	return fmt.Sprint(*e)
}

func (b *builder) unpack(ctx context.Context) (*tree.Tree, error) {
	s := b.step("unpack")
	t, err := rootfs.Unpack(ctx, b.lock, b.opt.Cache, rootfs.UnpackOptions{SourceDateEpoch: b.opt.Epoch, Progress: b.opt.Progress, Client: b.opt.Client})
	if err != nil {
		return nil, err
	}
	// Unpack recorded the hashes of what it unpacked: kept in the
	// state, they vouch for the cache's unpacked packages next time.
	if err := b.lock.SaveUnpacked(filepath.Join(b.opt.State.Dir, rootfs.UnpackedName)); err != nil {
		return nil, fmt.Errorf("recording the unpacked packages in the state: %w", err)
	}
	s.done("%d entries", t.Len())
	return t, nil
}

// timeOf is when the files appliance makes are dated: SOURCE_DATE_EPOCH,
// or the newest package's time, so the image depends on its inputs only.
func (b *builder) timeOf(t *tree.Tree) time.Time {
	if b.opt.Epoch != nil {
		return time.Unix(*b.opt.Epoch, 0).UTC()
	}
	var newest int64
	for _, e := range t.Entries() {
		if e.Package != "" && e.MTime > newest {
			newest = e.MTime
		}
	}
	return time.Unix(newest, 0).UTC()
}

func (b *builder) image(ctx context.Context, t *tree.Tree, dir string) error {
	s := b.step("image")
	mtime := b.mtime
	d := b.gw.Disk

	kver, err := boards.Kernel(t, b.board.ID, b.board.KernelFlavour, b.board.Packages[0])
	if err != nil {
		return err
	}
	bctx := &boards.Context{Boot: b.board.Boot, KernelImage: b.board.KernelImage, SoC: b.board.SoC, GPUFirmware: b.board.GPUFirmware, DTB: b.board.DTB,
		Tree: t, Blobs: b.opt.Cache, Kernel: kver, Time: mtime}
	if b.board.InitramfsModules != nil {
		if bctx.Initramfs, err = b.initramfs(t, kver, mtime); err != nil {
			return fmt.Errorf("initramfs: %w", err)
		}
	}
	if b.board.Boot == "raspi-firmware" {
		// raspi-firmware's hook copies /boot's newest initramfs to the
		// boot partition whenever it runs; until the gateway's initramfs
		// tool makes its own, that is appliance's.
		if err := b.putFile(t, "boot/initrd.img-"+kver, 0o644, 0, 0, bctx.Initramfs, mtime.Unix()); err != nil {
			return err
		}
		// The command line is the one the hook writes from the gateway's
		// settings.
		if bctx.Cmdline, err = boards.RaspiFirmwareCmdlineOf(t, b.opt.Cache, b.board.DTB); err != nil {
			return err
		}
	} else {
		bctx.Cmdline = boards.Cmdline(b.board.Console, d.RootPartUUID())
	}
	layout := disk.Layout{DiskID: d.ID, BootSize: b.board.BootSize}
	root := rootfs.Ext4Entries(t, b.opt.Cache)
	layout.RootSize = rootSize(root)
	layout.Boot = fat.Options{Label: "BOOTFS", VolumeID: d.BootVolumeID}
	layout.Root = ext4.Options{Label: "rootfs", UUID: d.RootUUID, HashSeed: d.HashSeed, Time: mtime, ReservedBlocksPercent: 5}
	bootFiles, err := boards.BootFiles(bctx)
	if err != nil {
		return err
	}
	b.info.Kernel, b.info.Cmdline, b.info.DiskID = kver, bctx.Cmdline, fmt.Sprintf("%08x", d.ID)
	img := filepath.Join(dir, ImageName)
	// The bmap is made in the outputs step, alongside the image's other
	// reads.
	if err := disk.WriteImage(img, layout, boards.FATEntries(bootFiles, b.opt.Cache, mtime), root); err != nil {
		return err
	}
	// QEMU boots the kernel and initramfs it is given (and a Pi 3's
	// device tree): appliance vm and the boot test take them from beside
	// the image, under the names outputs gives them.
	if err := b.bootCopy(dir, bootFiles, kver); err != nil {
		return err
	}
	s.done("%s: boot %d MiB, root %d MiB, kernel %s", img, layout.BootSize>>20, layout.RootSize>>20, kver)
	return nil
}

// bootCopy writes what QEMU boots a qemu-arm64 or Debian-booted Pi
// image with into the output's boot folder.
func (b *builder) bootCopy(dir string, files []boards.File, kver string) error {
	var names map[string]string
	switch b.board.Boot {
	case "qemu":
		names = map[string]string{"vmlinuz": outputs.BootKernel, "initrd.img": outputs.BootInitrd, "cmdline.txt": outputs.BootCmdline}
	case "raspi-firmware":
		names = map[string]string{"vmlinuz-" + kver: outputs.BootKernel, "initrd.img-" + kver: outputs.BootInitrd, "cmdline.txt": outputs.BootCmdline, b.board.DTB: outputs.BootDTB}
	default:
		return nil
	}
	if err := os.MkdirAll(filepath.Join(dir, outputs.BootDir), 0o755); err != nil {
		return err
	}
	for _, f := range files {
		name, ok := names[f.Path]
		if !ok {
			continue
		}
		data := f.Data
		if f.Entry != nil {
			var err error
			if data, err = os.ReadFile(b.opt.Cache.BlobPath(f.Entry.Blob)); err != nil {
				return err
			}
		}
		if err := os.WriteFile(filepath.Join(dir, outputs.BootDir, name), data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// rootSize is what the files take plus a little: the first boot grows
// the root to the card before it configures the packages, so the image
// carries no more zeros than it must.
func rootSize(entries []ext4.Entry) int64 {
	var blocks, inodes int64
	for _, e := range entries {
		inodes++
		switch {
		case e.Type == ext4.Regular && e.HardLinkTo == "":
			blocks += (e.Size + 4095) / 4096
		case e.Type == ext4.Dir:
			blocks++
		}
	}
	used := blocks*4096 + inodes*256
	// The journal, group descriptors and bitmaps, and room to boot.
	size := used + used/8 + 192<<20
	return (size + disk.Align - 1) / disk.Align * disk.Align
}

func (b *builder) initramfs(t *tree.Tree, kver string, mtime time.Time) ([]byte, error) {
	mods, err := initramfs.Modules(treeSource{t, b.opt.Cache}, kver, b.board.InitramfsModules)
	if err != nil {
		return nil, err
	}
	var initBin []byte
	for _, p := range b.progs {
		if p.Path == bootinit.InitPath {
			initBin = p.Data
		}
	}
	if initBin == nil {
		return nil, errors.New("the init program was not built")
	}
	var buf bytes.Buffer
	w := initramfs.NewWriter(&buf, mtime.Unix())
	for _, d := range []string{"dev", "proc", "sys", "root"} {
		if err := w.Dir(d, 0o755); err != nil {
			return nil, err
		}
	}
	// The kernel opens /dev/console for init before devtmpfs exists.
	if err := w.CharDev("dev/console", 0o600, 5, 1); err != nil {
		return nil, err
	}
	if err := w.File("init", 0o755, initBin); err != nil {
		return nil, err
	}
	if err := w.File(strings.TrimPrefix(bootinit.InitramfsMarker, "/"), 0o644, nil); err != nil {
		return nil, err
	}
	for i, m := range mods {
		if err := w.File(fmt.Sprintf("%s/%02d-%s.ko", strings.TrimPrefix(bootinit.ModulesDir, "/"), i, m.Name), 0o644, m.Data); err != nil {
			return nil, err
		}
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	b.info.InitramfsModules = len(mods)
	return buf.Bytes(), nil
}

// treeSource reads kernel modules out of the tree.
type treeSource struct {
	t     *tree.Tree
	blobs tree.Blobs
}

func (s treeSource) ReadFile(name string) ([]byte, error) {
	e := s.t.Get(name)
	if e == nil || e.Type != tree.Regular {
		return nil, &fs.PathError{Op: "read", Path: "/" + name, Err: fs.ErrNotExist}
	}
	if e.Blob == "" {
		return e.Data, nil
	}
	return os.ReadFile(s.blobs.BlobPath(e.Blob))
}

func (s treeSource) Walk(dir string, fn func(string) error) error {
	var names []string
	for _, e := range s.t.Entries() {
		if strings.HasPrefix(e.Path, dir+"/") && e.Type == tree.Regular {
			names = append(names, e.Path)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		if err := fn(n); err != nil {
			return err
		}
	}
	return nil
}
