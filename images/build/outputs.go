package build

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/appliance/appliance/images/bmap"
	"github.com/appliance/appliance/images/cache"
	"github.com/appliance/appliance/images/disk"
	"github.com/appliance/appliance/images/rootfs"
	"github.com/appliance/appliance/images/sbom"
	"github.com/appliance/appliance/images/zst"
	"github.com/appliance/appliance/outputs"
)

// The output folder's names and build-info.json are package outputs'.
const (
	ImageName = outputs.ImageName
	InfoName  = outputs.InfoName
	SumsName  = outputs.SumsName
	SBOMName  = outputs.SBOMName
)

// Info is build-info.json (see package outputs).
type (
	Info   = outputs.Info
	Output = outputs.Output
	Timing = outputs.Timing
)

func readInfo(dir string) (*Info, error) { return outputs.ReadInfo(dir) }

func writeInfo(dir string, i *Info) error { return outputs.WriteInfo(dir, i) }

// outputsIntact checks that the outputs a build recorded are all there,
// with their sizes: a rebuild may then be skipped.
func outputsIntact(dir string, i *Info) bool {
	if len(i.Outputs) == 0 {
		return false
	}
	for _, o := range i.Outputs {
		fi, err := os.Stat(filepath.Join(dir, o.Name))
		if err != nil || fi.Size() != o.Size {
			return false
		}
	}
	return true
}

func sha256File(p string) (string, int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, bufio.NewReaderSize(f, 1<<20))
	return hex.EncodeToString(h.Sum(nil)), n, err
}

// outputs writes the compressed image, the bmap, the SBOM and
// SHA256SUMS beside the image.
func (b *builder) outputs(ctx context.Context, dir string) error {
	s := b.step("outputs")
	img := filepath.Join(dir, ImageName)
	sums := map[string]Output{}
	// The SBOM needs none of the image: it is written while the image is
	// read.
	sbomDone := make(chan error, 1)
	go func() { sbomDone <- b.writeSBOM(filepath.Join(dir, SBOMName)) }()
	d, zstOut, zs, err := digestAndCompress(img, img+".zst", zst.Zstd(), b.opt.Cache)
	if serr := <-sbomDone; err == nil && serr != nil {
		err = fmt.Errorf("SBOM: %w", serr)
	}
	if err == nil {
		err = b.security(ctx, dir)
	}
	if err != nil {
		return err
	}
	if err := os.WriteFile(img+".bmap", []byte(d.Bmap), 0o644); err != nil {
		return err
	}
	sums[ImageName] = Output{Name: ImageName, Size: d.Size, SHA256: hex.EncodeToString(d.SHA256[:])}
	sums[ImageName+".zst"] = zstOut
	var names []string
	err = filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel != InfoName && rel != SumsName {
			names = append(names, rel)
		}
		return nil
	})
	if err != nil {
		return err
	}
	sort.Strings(names)
	var list strings.Builder
	for _, n := range names {
		o, ok := sums[n]
		if !ok {
			sum, size, err := sha256File(filepath.Join(dir, n))
			if err != nil {
				return err
			}
			o = Output{Name: n, Size: size, SHA256: sum}
		}
		b.info.Outputs = append(b.info.Outputs, o)
		fmt.Fprintf(&list, "%s  %s\n", o.SHA256, n)
	}
	if err := os.WriteFile(filepath.Join(dir, SumsName), []byte(list.String()), 0o644); err != nil {
		return err
	}
	b.info.Go = runtime.Version()
	b.info.SourceDateEpoch = b.opt.Epoch
	// Frames no build has used for a month are of no more use.
	zst.Prune(b.opt.Cache, 30*24*time.Hour)
	s.done("%d files; compressed %d of the image's %d frames, %d came from the cache", len(names)+2, zs.Made, zs.Frames, zs.Frames-zs.Made)
	return nil
}

// digestAndCompress digests the image (disk.DigestRanges: its checksum
// and bmap) and meanwhile writes its zstd copy at dst for download and
// storage, hashed as it is written: frame by frame, each as soon as its
// range's hash is known, from the cache where it can (see package zst).
func digestAndCompress(src, dst string, comp *zst.Compressor, c *cache.Cache) (*disk.Digest, Output, zst.Stats, error) {
	img, err := os.Open(src)
	if err != nil {
		return nil, Output{}, zst.Stats{}, err
	}
	defer img.Close()
	ranges, size, err := bmap.Unhashed(img)
	if err != nil {
		return nil, Output{}, zst.Stats{}, err
	}
	out, err := os.Create(dst)
	if err != nil {
		return nil, Output{}, zst.Stats{}, err
	}
	defer out.Close()

	hashed := make([]chan struct{}, len(ranges))
	for i := range hashed {
		hashed[i] = make(chan struct{})
	}
	var (
		d      *disk.Digest
		derr   error
		done   = make(chan struct{})
		failed = make(chan struct{})
	)
	go func() {
		defer close(done)
		d, derr = disk.DigestRanges(img, size, ranges, func(i int) { close(hashed[i]) })
		if derr != nil {
			close(failed)
		}
	}()
	sum := func(i int) ([32]byte, error) {
		select {
		case <-hashed[i]:
			return ranges[i].SHA256, nil
		case <-failed:
			return [32]byte{}, errors.New("the image was not digested")
		}
	}
	zh := sha256.New()
	cw := &countWriter{w: io.MultiWriter(out, zh)}
	st, zerr := zst.Write(cw, img, size, ranges, sum, comp, c)
	<-done
	if derr != nil {
		return nil, Output{}, st, derr
	}
	if zerr != nil {
		return nil, Output{}, st, fmt.Errorf("compressing the image: %w", zerr)
	}
	o := Output{Name: filepath.Base(dst), Size: cw.n, SHA256: hex.EncodeToString(zh.Sum(nil))}
	return d, o, st, out.Close()
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// writeSBOM lists every package of the root file system and appliance's
// programs with the Go modules compiled into them.
func (b *builder) writeSBOM(path string) error {
	comps := rootfs.SBOM(b.lock)
	seen := map[string]bool{}
	for _, p := range b.progs {
		comps = append(comps, sbom.Component{Type: "application", Name: filepath.Base(p.Path), Version: b.opt.Version,
			PURL: "pkg:golang/" + p.Package + "@" + b.opt.Version, SHA256: p.SHA256,
			Properties: [][2]string{{"appliance:path", p.Path}}})
		for _, d := range p.Deps {
			key := d.Path + "@" + d.Version
			if seen[key] {
				continue
			}
			seen[key] = true
			comps = append(comps, sbom.Component{Type: "library", Name: d.Path, Version: d.Version, PURL: "pkg:golang/" + d.Path + "@" + d.Version})
		}
	}
	for _, fw := range b.gw.Firmware {
		if !fw.NoApp {
			comps = append(comps, sbom.Component{Type: "firmware", Name: fw.Name, Version: fw.Version, SHA256: fw.AppSHA256,
				Properties: [][2]string{{"appliance:chip", fw.Chip}, {"appliance:signed", "Secure Boot V2"}}})
		}
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	doc := sbom.Document{
		Subject:    sbom.Component{Type: "operating-system", Name: "appliance gateway " + b.opt.Gateway.Name, Version: b.info.Key[:12]},
		Components: comps,
		Timestamp:  b.mtime,
		Tool:       "appliance " + b.opt.Version,
	}
	if err := sbom.Write(f, doc); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// swap replaces dst with the finished build in src: a failed build never
// leaves dst half-written, and a successful one replaces it whole. The
// old output is moved aside under a name of its own, so nothing else
// beside it is touched.
func swap(src, dst string) error {
	// What went into src (thousands of node files among it, each written
	// unsynced) reaches the disk before the rename publishes it: one
	// syncfs for the lot.
	if err := syncFS(src); err != nil {
		return err
	}
	old := ""
	if _, err := os.Stat(dst); err == nil {
		aside, err := os.MkdirTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".old-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(aside)
		old = filepath.Join(aside, "old")
		if err := os.Rename(dst, old); err != nil {
			return err
		}
	}
	if err := os.Rename(src, dst); err != nil {
		if old != "" {
			os.Rename(old, dst)
		}
		return err
	}
	// And the rename itself.
	return syncFS(filepath.Dir(dst))
}
