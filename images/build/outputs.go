package build

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"

	"github.com/appliance/appliance/images/disk"
	"github.com/appliance/appliance/images/rootfs"
	"github.com/appliance/appliance/images/sbom"
	"github.com/klauspost/compress/zstd"
)

// Output files in out/<site>/.
const (
	ImageName = "gateway.img"
	InfoName  = "build-info.json"
	SumsName  = "SHA256SUMS"
	SBOMName  = "sbom.cdx.json"
)

// Info is build-info.json: what went into the image and how long each
// step took.
type Info struct {
	Site      string `json:"site"`
	Board     string `json:"board"`
	Hostname  string `json:"hostname"`
	Admin     string `json:"admin"`
	Appliance string `json:"appliance"`
	Go        string `json:"go"`
	// Key hashes every input; an unchanged key means nothing to rebuild.
	Key              string   `json:"key"`
	Lock             string   `json:"lock"`
	Packages         int      `json:"packages"`
	Kernel           string   `json:"kernel"`
	Cmdline          string   `json:"cmdline"`
	DiskID           string   `json:"disk_id"`
	InitramfsModules int      `json:"initramfs_modules,omitempty"`
	SourceDateEpoch  *int64   `json:"source_date_epoch,omitempty"`
	Outputs          []Output `json:"outputs"`
	Timings          []Timing `json:"timings"`
	Seconds          float64  `json:"seconds"`
}

// Output is one file the build wrote.
type Output struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Timing is one step's wall time.
type Timing struct {
	Step    string  `json:"step"`
	Seconds float64 `json:"seconds"`
}

// ReadInfo reads the build-info.json of an output folder.
func ReadInfo(dir string) (*Info, error) { return readInfo(dir) }

func readInfo(dir string) (*Info, error) {
	b, err := os.ReadFile(filepath.Join(dir, InfoName))
	if err != nil {
		return nil, err
	}
	var i Info
	return &i, json.Unmarshal(b, &i)
}

func writeInfo(dir string, i *Info) error {
	b, err := json.MarshalIndent(i, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, InfoName), append(b, '\n'), 0o644)
}

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
func (b *builder) outputs(dir string) error {
	s := b.step("outputs")
	img := filepath.Join(dir, ImageName)
	sums := map[string]Output{}
	// The SBOM needs none of the image: it is written while the image is
	// read.
	sbomDone := make(chan error, 1)
	go func() { sbomDone <- b.writeSBOM(filepath.Join(dir, SBOMName)) }()
	d, zst, err := digestAndCompress(img, img+".zst")
	if serr := <-sbomDone; err == nil && serr != nil {
		err = fmt.Errorf("SBOM: %w", serr)
	}
	if err != nil {
		return err
	}
	if err := os.WriteFile(img+".bmap", []byte(d.Bmap), 0o644); err != nil {
		return err
	}
	sums[ImageName] = Output{Name: ImageName, Size: d.Size, SHA256: hex.EncodeToString(d.SHA256[:])}
	sums[ImageName+".zst"] = zst
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
	s.done("%d files", len(names)+2)
	return nil
}

// digestAndCompress digests the image (disk.DigestImage: its checksum
// and bmap) and writes a zstd copy at dst for download and storage,
// hashed as it is written. The host's zstd, when there is one,
// compresses twice as fast as Go's; it reads the image itself, on both
// cores, while the digest reads it once more — measured, that beats
// piping one read through to zstd by a quarter. Without it the build
// falls back to Go's zstd, fed by the digest's one read.
func digestAndCompress(src, dst string) (*disk.Digest, Output, error) {
	if _, err := exec.LookPath("zstd"); err != nil {
		return digestAndCompressGo(src, dst)
	}
	out, err := os.Create(dst)
	if err != nil {
		return nil, Output{}, err
	}
	defer out.Close()
	zh := sha256.New()
	cw := &countWriter{w: io.MultiWriter(out, zh)}
	// -1: a build is on the critical path of every edit; the copy is
	// for moving the image, and its holes shrink to nothing at any level.
	cmd := exec.Command("zstd", "-1", "-T0", "-q", "-c", src)
	cmd.Stdout = cw
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return nil, Output{}, fmt.Errorf("zstd: %w", err)
	}
	d, derr := disk.DigestImage(src, nil)
	if err := cmd.Wait(); err != nil {
		return nil, Output{}, fmt.Errorf("compressing the image: zstd: %v: %s", err, strings.TrimSpace(stderr.String()))
	}
	if derr != nil {
		return nil, Output{}, derr
	}
	zst := Output{Name: filepath.Base(dst), Size: cw.n, SHA256: hex.EncodeToString(zh.Sum(nil))}
	return d, zst, out.Close()
}

// digestAndCompressGo is digestAndCompress with Go's zstd.
func digestAndCompressGo(src, dst string) (*disk.Digest, Output, error) {
	out, err := os.Create(dst)
	if err != nil {
		return nil, Output{}, err
	}
	defer out.Close()
	zh := sha256.New()
	bw := bufio.NewWriterSize(io.MultiWriter(out, zh), 4<<20)
	cw := &countWriter{w: bw}
	enc, err := zstd.NewWriter(cw, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)))
	if err != nil {
		return nil, Output{}, err
	}
	d, err := disk.DigestImage(src, enc)
	if cerr := enc.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("compressing the image: %w", cerr)
	}
	if err != nil {
		return nil, Output{}, err
	}
	if err := bw.Flush(); err != nil {
		return nil, Output{}, err
	}
	zst := Output{Name: filepath.Base(dst), Size: cw.n, SHA256: hex.EncodeToString(zh.Sum(nil))}
	return d, zst, out.Close()
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
		sum, _, err := sha256File(p.File)
		if err != nil {
			return err
		}
		comps = append(comps, sbom.Component{Type: "application", Name: filepath.Base(p.Path), Version: b.opt.Version,
			PURL: "pkg:golang/" + p.Package + "@" + b.opt.Version, SHA256: sum,
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
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	doc := sbom.Document{
		Subject:    sbom.Component{Type: "operating-system", Name: "appliance gateway " + b.opt.Site.Name, Version: b.info.Key[:12]},
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
// leaves dst half-written, and a successful one replaces it whole.
func swap(src, dst string) error {
	old := ""
	if _, err := os.Stat(dst); err == nil {
		old = dst + ".old"
		os.RemoveAll(old)
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
	if old != "" {
		return os.RemoveAll(old)
	}
	return nil
}
