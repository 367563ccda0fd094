// Package deb reads Debian binary packages: the ar container, the
// control archive (control file, maintainer scripts, md5sums, conffiles,
// triggers) and the data archive, each tar compressed with gzip, xz,
// zstd, bzip2, lzma or not at all — what dpkg reads. It reads; it never
// writes to disk, so what a package may do with its paths is decided by
// the caller. Nothing is decompressed without a bound: the control
// archive at most MaxControl bytes, the data archive at most
// Package.MaxData.
package deb

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/bzip2"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
	"github.com/ulikunitz/xz/lzma"
)

// MaxControl bounds the control archive, uncompressed: every member of it
// is held in memory. The largest of Debian's (linux-image, for its
// md5sums) is about 640 kB.
const MaxControl = 64 << 20

// TooLargeError is an archive member that decompresses past its bound.
type TooLargeError struct {
	Member string
	Limit  int64
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("%s decompresses past %d bytes; stopped there", e.Member, e.Limit)
}

// Member is one file of the control archive.
type Member struct {
	Name string
	Mode int64
	Data []byte
}

// Package is an opened .deb.
type Package struct {
	// Control is the control file as the package ships it.
	Control []byte
	// Members are the other files of the control archive (preinst,
	// postinst, prerm, postrm, config, templates, md5sums, conffiles,
	// triggers, shlibs, symbols…), by name.
	Members []Member

	// MaxData bounds the data archive, uncompressed (tar headers
	// included); 0 means no bound.
	MaxData int64

	data       io.Reader // the compressed data member
	dataFormat string
}

// Member returns a control member's content, or nil.
func (p *Package) Member(name string) []byte {
	for _, m := range p.Members {
		if m.Name == name {
			return m.Data
		}
	}
	return nil
}

// Read opens a .deb from r and reads its control archive; Data then
// walks the data archive. r is read once, front to back.
func Read(r io.Reader) (*Package, error) {
	ar := &arReader{r: bufio.NewReaderSize(r, 64<<10)}
	if err := ar.header(); err != nil {
		return nil, err
	}
	p := &Package{}
	sawVersion := false
	for {
		name, size, err := ar.next()
		if err == io.EOF {
			return nil, errors.New("no data.tar member: not a complete .deb")
		}
		if err != nil {
			return nil, err
		}
		body := io.LimitReader(ar.r, size)
		switch {
		case name == "debian-binary":
			b, err := io.ReadAll(body)
			if err != nil {
				return nil, err
			}
			if !bytes.HasPrefix(b, []byte("2.")) {
				return nil, fmt.Errorf("debian-binary says format %q; only 2.x is known", strings.TrimSpace(string(b)))
			}
			sawVersion = true
		case strings.HasPrefix(name, "control.tar"):
			if !sawVersion {
				return nil, errors.New("control.tar before debian-binary: not a .deb")
			}
			if err := knownCompression(name); err != nil {
				return nil, err
			}
			if err := p.readControl(body, strings.TrimPrefix(name, "control.tar")); err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
		case strings.HasPrefix(name, "data.tar"):
			if p.Control == nil {
				return nil, errors.New("data.tar before control.tar or no control file: not a .deb")
			}
			if err := knownCompression(name); err != nil {
				return nil, err
			}
			p.data, p.dataFormat = body, strings.TrimPrefix(name, "data.tar")
			ar.pending = size
			return p, nil
		case strings.HasPrefix(name, "_"):
			// Reserved for extensions; dpkg skips them.
		default:
			return nil, fmt.Errorf("unexpected member %q", name)
		}
		if err := ar.skip(body, size); err != nil {
			return nil, err
		}
	}
}

// compressions are the suffixes of the members dpkg reads.
var compressions = []string{"", ".xz", ".zst", ".gz", ".bz2", ".lzma"}

func knownCompression(member string) error {
	suffix := member[strings.Index(member, ".tar")+len(".tar"):]
	for _, c := range compressions {
		if suffix == c {
			return nil
		}
	}
	return fmt.Errorf("%s: unknown compression %q; dpkg reads a member compressed with xz, zstd, gzip, bzip2, lzma or not at all", member, suffix)
}

// PureGo makes xz decompression use the Go decoder even when the host
// has xz; tests set it to cover both paths.
var PureGo = os.Getenv("APPLIANCE_PURE_GO_XZ") != ""

// xzPath is the host's xz, if any. Debian packages are mostly xz, and
// liblzma decodes them two to three times as fast as the Go decoder
// (and decodes the blocks of multi-threaded archives, such as the
// kernel's 90 MB, in parallel): the critical path of a cold build.
var xzPath, _ = exec.LookPath("xz")

// hostXZ decompresses through the host's xz. The returned closer waits
// for xz; a damaged stream surfaces as a read error naming xz's reason.
func hostXZ(r io.Reader) (io.Reader, func(), error) {
	cmd := exec.Command(xzPath, "--decompress", "--stdout", "--threads=0", "--quiet")
	cmd.Stdin = r
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	x := &xzReader{out: out, cmd: cmd, stderr: &stderr}
	return x, x.close, nil
}

type xzReader struct {
	out    io.ReadCloser
	cmd    *exec.Cmd
	stderr *bytes.Buffer
	done   bool
	err    error
}

func (x *xzReader) Read(b []byte) (int, error) {
	n, err := x.out.Read(b)
	if err == io.EOF {
		if werr := x.wait(); werr != nil {
			return n, werr
		}
	}
	return n, err
}

func (x *xzReader) wait() error {
	if !x.done {
		x.done = true
		if err := x.cmd.Wait(); err != nil {
			x.err = fmt.Errorf("xz: %s", strings.TrimSpace(x.stderr.String()))
			if x.stderr.Len() == 0 {
				x.err = fmt.Errorf("xz: %w", err)
			}
		}
	}
	return x.err
}

// close stops xz if the reader was abandoned early.
func (x *xzReader) close() {
	if !x.done {
		x.cmd.Process.Kill()
		x.out.Close()
		x.wait()
	}
}

// Decompress wraps r according to a file name's suffix (".xz", ".gz",
// ".zst", ".bz2" or none); done releases what it holds (the host's xz
// process) and must be called.
func Decompress(r io.Reader, suffix string) (rd io.Reader, done func(), err error) {
	return decompress(r, suffix)
}

// decompress wraps r according to a member's suffix.
func decompress(r io.Reader, suffix string) (io.Reader, func(), error) {
	switch suffix {
	case "":
		return r, func() {}, nil
	case ".gz":
		z, err := gzip.NewReader(r)
		if err != nil {
			return nil, nil, err
		}
		return z, func() { z.Close() }, nil
	case ".xz":
		if xzPath != "" && !PureGo {
			return hostXZ(r)
		}
		z, err := xz.NewReader(r)
		if err != nil {
			return nil, nil, err
		}
		return z, func() {}, nil
	case ".zst":
		// One goroutine per package: the caller runs packages in
		// parallel already.
		z, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(1<<30))
		if err != nil {
			return nil, nil, err
		}
		return z, z.Close, nil
	case ".bz2":
		return bzip2.NewReader(r), func() {}, nil
	case ".lzma":
		z, err := lzma.NewReader(r)
		if err != nil {
			return nil, nil, err
		}
		return z, func() {}, nil
	}
	return nil, nil, fmt.Errorf("unknown compression %q", suffix)
}

func (p *Package) readControl(r io.Reader, suffix string) error {
	zr, done, err := decompress(r, suffix)
	if err != nil {
		return err
	}
	defer done()
	tr := tar.NewReader(&capped{r: zr, left: MaxControl, err: &TooLargeError{Member: "control.tar" + suffix, Limit: MaxControl}})
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		name := strings.TrimPrefix(h.Name, "./")
		if strings.Contains(name, "/") {
			continue
		}
		if h.Size > MaxControl {
			return fmt.Errorf("control member %s is %d bytes: too large", name, h.Size)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			return err
		}
		if name == "control" {
			p.Control = b
			continue
		}
		p.Members = append(p.Members, Member{Name: name, Mode: h.Mode, Data: b})
	}
	if p.Control == nil {
		return errors.New("no control file")
	}
	return nil
}

// Data calls fn for every member of the data archive in archive order.
// body reads a regular file's content; fn need not read it. Data may be
// called once.
func (p *Package) Data(fn func(h *tar.Header, body io.Reader) error) error {
	if p.data == nil {
		return errors.New("data archive already read")
	}
	member := "data.tar" + p.dataFormat
	zr, done, err := decompress(p.data, p.dataFormat)
	p.data = nil
	if err != nil {
		return fmt.Errorf("%s: %w", member, damaged(err))
	}
	defer done()
	if p.MaxData > 0 {
		zr = &capped{r: zr, left: p.MaxData, err: &TooLargeError{Member: member, Limit: p.MaxData}}
	}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			// Read the compressed stream to its end too, so that its
			// checksum is verified.
			if _, err := io.Copy(io.Discard, zr); err != nil {
				return fmt.Errorf("%s: %w", member, damaged(err))
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: %w", member, damaged(err))
		}
		if err := fn(h, tr); err != nil {
			return err
		}
	}
}

// damaged says what a read error of an archive means.
func damaged(err error) error {
	var tl *TooLargeError
	if errors.As(err, &tl) {
		return err
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return fmt.Errorf("cut short (%w): the archive is incomplete", err)
	}
	return fmt.Errorf("damaged: %w", err)
}

// capped reads r and fails with err once more than left bytes came out.
type capped struct {
	r    io.Reader
	left int64
	err  error
}

func (c *capped) Read(b []byte) (int, error) {
	if c.left < 0 {
		return 0, c.err
	}
	if int64(len(b)) > c.left+1 {
		b = b[:c.left+1]
	}
	n, err := c.r.Read(b)
	c.left -= int64(n)
	if c.left < 0 {
		return 0, c.err
	}
	return n, err
}

// arReader reads the common ar format that .debs use.
type arReader struct {
	r       *bufio.Reader
	pending int64
}

func (a *arReader) header() error {
	magic := make([]byte, 8)
	if _, err := io.ReadFull(a.r, magic); err != nil {
		return fmt.Errorf("reading the ar header: %w", err)
	}
	if string(magic) != "!<arch>\n" {
		return errors.New("not an ar archive, so not a .deb")
	}
	return nil
}

func (a *arReader) next() (string, int64, error) {
	var h [60]byte
	if _, err := io.ReadFull(a.r, h[:]); err != nil {
		if err == io.EOF {
			return "", 0, io.EOF
		}
		return "", 0, fmt.Errorf("reading an ar member header: %w", err)
	}
	if h[58] != '`' || h[59] != '\n' {
		return "", 0, errors.New("damaged ar member header")
	}
	name := strings.TrimRight(string(h[0:16]), " ")
	name = strings.TrimSuffix(name, "/") // GNU ar
	size, err := strconv.ParseInt(strings.TrimSpace(string(h[48:58])), 10, 64)
	if err != nil || size < 0 {
		return "", 0, fmt.Errorf("ar member %q: bad size", name)
	}
	return name, size, nil
}

// skip discards what is left of a member and its padding byte.
func (a *arReader) skip(body io.Reader, size int64) error {
	if _, err := io.Copy(io.Discard, body); err != nil {
		return err
	}
	if size%2 == 1 {
		if _, err := a.r.ReadByte(); err != nil && err != io.EOF {
			return err
		}
	}
	return nil
}
