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
	"github.com/appliance/appliance/images/sparse"
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

// outputs writes the compressed image, the SBOM and SHA256SUMS beside
// the image and its bmap.
func (b *builder) outputs(dir string) error {
	s := b.step("outputs")
	img := filepath.Join(dir, ImageName)
	sums := map[string]Output{}
	// The bmap, the checksum and the compressed copy each read the
	// image; together they keep both cores busy.
	bmapDone := make(chan error, 1)
	go func() { bmapDone <- disk.WriteBmap(img) }()
	imgOut, zstOut, err := hashAndCompress(img, img+".zst")
	if berr := <-bmapDone; berr != nil {
		return berr
	}
	if err != nil {
		return fmt.Errorf("compressing: %w", err)
	}
	sums[ImageName], sums[ImageName+".zst"] = imgOut, zstOut
	if err := b.writeSBOM(filepath.Join(dir, SBOMName)); err != nil {
		return fmt.Errorf("SBOM: %w", err)
	}
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

// hashAndCompress hashes the image and writes a zstd copy of it (hashed
// as it is written) for download and storage. The host's zstd, when
// there is one, compresses twice as fast as Go's; the image is hashed
// meanwhile on the other core.
func hashAndCompress(src, dst string) (img, zst Output, err error) {
	if _, lerr := exec.LookPath("zstd"); lerr != nil {
		return hashAndCompressGo(src, dst)
	}
	type result struct {
		o   Output
		err error
	}
	imgc := make(chan result, 1)
	go func() {
		sum, size, err := sha256File(src)
		imgc <- result{Output{Name: filepath.Base(src), Size: size, SHA256: sum}, err}
	}()
	out, err := os.Create(dst)
	if err != nil {
		return img, zst, err
	}
	defer out.Close()
	zh := sha256.New()
	cw := &countWriter{w: io.MultiWriter(out, zh)}
	cmd := exec.Command("zstd", "-1", "-T0", "-q", "-c", src)
	cmd.Stdout = cw
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return img, zst, fmt.Errorf("zstd: %v: %s", err, stderr.String())
	}
	r := <-imgc
	if r.err != nil {
		return img, zst, r.err
	}
	zst = Output{Name: filepath.Base(dst), Size: cw.n, SHA256: hex.EncodeToString(zh.Sum(nil))}
	return r.o, zst, out.Close()
}

// hashAndCompressGo reads the image once: it hashes it and writes a zstd
// copy (hashed as it is written). The image is sparse; its holes are fed
// as zeros without reading them.
func hashAndCompressGo(src, dst string) (img, zst Output, err error) {
	in, err := os.Open(src)
	if err != nil {
		return img, zst, err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return img, zst, err
	}
	out, err := os.Create(dst)
	if err != nil {
		return img, zst, err
	}
	defer out.Close()
	zh := sha256.New()
	bw := bufio.NewWriterSize(io.MultiWriter(out, zh), 4<<20)
	cw := &countWriter{w: bw}
	// The fastest level: a build is on the critical path of every edit;
	// the copy is for moving the image, and its holes shrink to nothing
	// at any level.
	enc, err := zstd.NewWriter(cw, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)))
	if err != nil {
		return img, zst, err
	}
	ih := sha256.New()
	sink := io.MultiWriter(ih, enc)
	if err := sparse.WriteTo(sink, in, fi.Size()); err != nil {
		enc.Close()
		return img, zst, err
	}
	if err := enc.Close(); err != nil {
		return img, zst, err
	}
	if err := bw.Flush(); err != nil {
		return img, zst, err
	}
	img = Output{Name: filepath.Base(src), Size: fi.Size(), SHA256: hex.EncodeToString(ih.Sum(nil))}
	zst = Output{Name: filepath.Base(dst), Size: cw.n, SHA256: hex.EncodeToString(zh.Sum(nil))}
	return img, zst, out.Close()
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
