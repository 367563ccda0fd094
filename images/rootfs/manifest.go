package rootfs

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/url"
	"os"
	"path"
	"strings"

	"github.com/appliance/appliance/images/cache"
	"github.com/appliance/appliance/images/deb"
	"github.com/appliance/appliance/images/tree"
)

// manifestFormat is the version of the manifest layout; a change makes
// old manifests unreadable, so they are unpacked again.
const manifestFormat = 1

// Manifest is a package's unpacked form: its control archive and every
// member of its data archive, with regular files' content in the cache's
// blobs. Paths are as the package spells them, cleaned; where they land
// is decided when the tree is assembled.
type Manifest struct {
	Format int `json:"format"`
	// Deb is the SHA-256 of the .deb this was unpacked from.
	Deb     string       `json:"deb"`
	Control string       `json:"control"`
	Members []deb.Member `json:"members"`
	// GeneratedMD5Sums reports that the package had no md5sums and the
	// member was computed while unpacking, as dpkg does.
	GeneratedMD5Sums bool         `json:"generated_md5sums,omitempty"`
	Entries          []tree.Entry `json:"entries"`
}

// Member returns a control member, or nil.
func (m *Manifest) Member(name string) *deb.Member {
	for i := range m.Members {
		if m.Members[i].Name == name {
			return &m.Members[i]
		}
	}
	return nil
}

// maxManifest bounds a manifest file: the kernel's, of some 6,000
// files, is about 1.5 MB.
const maxManifest = 256 << 20

// readManifest reads a package's cached manifest if the lock vouches
// for it: the file must have the SHA-256 the lock records (Unpacked),
// which the build that unpacked the package computed, and every content
// blob it names must be present. ok is false otherwise — no manifest, a
// damaged or altered one, one of another format, a blob gone — and the
// package is unpacked again from its .deb.
func readManifest(ca *cache.Cache, p LockPackage) (*Manifest, bool) {
	if p.Unpacked == "" {
		return nil, false
	}
	b, ok := readVouched(ca.Path("manifests", p.SHA256), p.Unpacked)
	if !ok {
		return nil, false
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil || m.Format != manifestFormat || m.Deb != p.SHA256 {
		return nil, false
	}
	for _, e := range m.Entries {
		if e.Type == tree.Regular && !ca.Has("blobs", e.Blob) {
			return nil, false
		}
	}
	return &m, true
}

// readVouched reads a file if it is at most maxManifest bytes and has
// the SHA-256 want.
func readVouched(path, want string) ([]byte, bool) {
	f, err := os.Open(path)
	if err != nil {
		return nil, false
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxManifest+1))
	if err != nil || len(b) > maxManifest {
		return nil, false
	}
	sum := sha256.Sum256(b)
	return b, hex.EncodeToString(sum[:]) == want
}

// vouched reports whether a package's cached manifest has the hash the
// lock records, without reading its blobs.
func vouched(ca *cache.Cache, p LockPackage) bool {
	if p.Unpacked == "" {
		return false
	}
	_, ok := readVouched(ca.Path("manifests", p.SHA256), p.Unpacked)
	return ok
}

// smallFile is the size up to which a file's content is hashed in
// memory first, so content already in the cache is not written again.
const smallFile = 1 << 20

// maxData bounds a package's data archive, uncompressed: twice the
// Installed-Size the index gives (which dpkg-gencontrol computes as
// the files' sizes rounded up to KiB: Debian's packages decompress to
// at most 1.2 times it, the tar headers included) and 16 MiB more for
// the headers of small files; 4 GiB for a package that does not say.
// More is a decompression bomb, refused before it fills the disk.
func maxData(p LockPackage) int64 {
	if p.InstalledSize <= 0 {
		return 4 << 30
	}
	return 2*p.InstalledSize<<10 + 16<<20
}

// makeManifest unpacks a cached .deb into blobs and a manifest, and
// returns the manifest's SHA-256 for the lock. The .deb is hashed as it
// is read: one that is not what the lock names (damaged in the cache)
// is removed, and reported as a *damagedDebError so that it is fetched
// again. On any failure (a damaged .deb, a path that leaves the tree)
// every blob this call created is removed again and no manifest is
// written, so a refused package leaves nothing behind.
func makeManifest(ctx context.Context, ca *cache.Cache, p LockPackage, arch string) (m *Manifest, sum string, err error) {
	f, err := os.Open(ca.Path("debs", p.SHA256))
	if err != nil {
		return nil, "", err
	}
	defer f.Close()
	dh := sha256.New()
	tee := io.TeeReader(f, dh)
	var created []string
	defer func() {
		if err != nil {
			for _, b := range created {
				ca.Remove("blobs", b)
			}
		}
	}()
	// Whatever goes wrong, a .deb that is not the lock's is cache
	// damage, not the package's fault: hash the rest and say so.
	defer func() {
		if err == nil || ctx.Err() != nil {
			return
		}
		if _, cerr := io.Copy(io.Discard, tee); cerr == nil && hex.EncodeToString(dh.Sum(nil)) != p.SHA256 {
			ca.Remove("debs", p.SHA256)
			err = &damagedDebError{pkg: p, got: hex.EncodeToString(dh.Sum(nil))}
		}
	}()
	where := fmt.Sprintf("package %s (%s)", p.ID(), debFile(p))
	pkg, err := deb.Read(tee)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", where, err)
	}
	if err := checkControl(pkg, p); err != nil {
		return nil, "", fmt.Errorf("%s: %w", where, err)
	}
	pkg.MaxData = maxData(p)
	m = &Manifest{Format: manifestFormat, Deb: p.SHA256, Control: string(pkg.Control), Members: pkg.Members}
	var md5s *strings.Builder
	if pkg.Member("md5sums") == nil {
		md5s = &strings.Builder{}
		m.GeneratedMD5Sums = true
	}
	buf := make([]byte, 0, 64<<10)
	err = pkg.Data(func(h *tar.Header, body io.Reader) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		e, err := entryOf(h)
		if err != nil {
			return err
		}
		if e.Type == tree.Regular {
			var mh hash.Hash
			if md5s != nil {
				mh = md5.New()
			}
			sum, isNew, err := putBlob(ca, body, h.Size, mh, &buf)
			if err != nil {
				return fmt.Errorf("/%s: %w", e.Path, err)
			}
			if isNew {
				created = append(created, sum)
			}
			e.Blob = sum
			if mh != nil {
				fmt.Fprintf(md5s, "%x  %s\n", mh.Sum(nil), e.Path)
			}
		}
		m.Entries = append(m.Entries, e)
		return nil
	})
	var tl *deb.TooLargeError
	switch {
	case errors.As(err, &tl):
		return nil, "", fmt.Errorf("%s: %w, more than twice the Installed-Size the index gives (%d KiB): a decompression bomb, or a damaged package", where, err, p.InstalledSize)
	case err != nil && ctx.Err() != nil:
		return nil, "", ctx.Err()
	case err != nil:
		return nil, "", fmt.Errorf("%s: %w", where, err)
	}
	if _, err := io.Copy(io.Discard, tee); err != nil {
		return nil, "", err
	}
	if got := hex.EncodeToString(dh.Sum(nil)); got != p.SHA256 {
		ca.Remove("debs", p.SHA256)
		return nil, "", &damagedDebError{pkg: p, got: got}
	}
	if md5s != nil {
		m.Members = append(m.Members, deb.Member{Name: "md5sums", Mode: 0o644, Data: []byte(md5s.String())})
	}
	// The package alone must unpack into a tree: a path that climbs out
	// through one of its own symlinks is refused before anything of it
	// is kept.
	u := newUnpacker(arch, 0)
	if err := u.apply(p.Name, m); err != nil {
		return nil, "", fmt.Errorf("%s: %w", where, err)
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, "", err
	}
	if err := ca.PutAt("manifests", p.SHA256, b); err != nil {
		return nil, "", err
	}
	s := sha256.Sum256(b)
	return m, hex.EncodeToString(s[:]), nil
}

// debFile is the .deb's file name, for messages.
func debFile(p LockPackage) string {
	name := path.Base(p.URL)
	if u, err := url.PathUnescape(name); err == nil {
		return u
	}
	return name
}

// damagedDebError is a cached .deb whose content is not the lock's: it
// was removed, to be downloaded again.
type damagedDebError struct {
	pkg LockPackage
	got string
}

func (e *damagedDebError) Error() string {
	return fmt.Sprintf("package %s: the cached .deb has SHA-256 %s, not the lock's %s; removed it, to be downloaded again", e.pkg.ID(), e.got, e.pkg.SHA256)
}

// dpkgOwned are the fields of dpkg's status that dpkg writes itself: a
// package's control file that sets one would forge its own state.
var dpkgOwned = []string{"Status", "Config-Version", "Conffiles", "Triggers-Pending", "Triggers-Awaited"}

// checkControl checks that a .deb is the package the lock names, and
// that its control archive holds nothing dpkg would not accept: a
// control file naming another package, version or architecture, setting
// fields of dpkg's own status, or a member whose name is not a plain
// file name of the info folder (or is "list", dpkg's record of the
// package's files).
func checkControl(pkg *deb.Package, p LockPackage) error {
	ctrl, err := deb.ParseControl(pkg.Control)
	if err != nil {
		return fmt.Errorf("control file: %w", err)
	}
	got := [3]string{ctrl.Get("Package"), ctrl.Get("Version"), ctrl.Get("Architecture")}
	if want := [3]string{p.Name, p.Version, p.Architecture}; got != want {
		return fmt.Errorf("its control file says it is %s %s (%s), not what the index gives: the repository is damaged or hostile", got[0], got[1], got[2])
	}
	for _, f := range dpkgOwned {
		for _, cf := range ctrl {
			if strings.EqualFold(cf.Name, f) {
				return fmt.Errorf("its control file sets %s, which only dpkg's database holds", cf.Name)
			}
		}
	}
	for _, mem := range pkg.Members {
		if mem.Name == "list" || !controlMemberName(mem.Name) {
			return fmt.Errorf("control member %q cannot be a file of dpkg's info folder", mem.Name)
		}
	}
	return nil
}

func controlMemberName(s string) bool {
	if s == "" || s[0] == '.' || s[0] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("_.+-", c) >= 0) {
			return false
		}
	}
	return true
}

// putBlob stores a file's content in the cache under its SHA-256.
func putBlob(ca *cache.Cache, body io.Reader, size int64, md5h hash.Hash, buf *[]byte) (sum string, created bool, err error) {
	if size <= smallFile {
		b := (*buf)[:0]
		w := bytes.NewBuffer(b)
		if _, err := io.Copy(w, body); err != nil {
			return "", false, err
		}
		b = w.Bytes()
		*buf = b
		if md5h != nil {
			md5h.Write(b)
		}
		s := sha256.Sum256(b)
		sum = hex.EncodeToString(s[:])
		if ca.Has("blobs", sum) {
			return sum, false, nil
		}
		if err := ca.PutHashed("blobs", sum, b); err != nil {
			return "", false, err
		}
		return sum, true, nil
	}
	w, err := ca.Create("blobs", "")
	if err != nil {
		return "", false, err
	}
	var dst io.Writer = w
	if md5h != nil {
		dst = io.MultiWriter(w, md5h)
	}
	if _, err := io.Copy(dst, body); err != nil {
		w.Abort()
		return "", false, err
	}
	return w.CommitAs(ca, "blobs")
}

// File system limits a name must fit: ext4's 255-byte component, and
// Linux's PATH_MAX for a path and a symlink's target.
const (
	maxComponent = 255
	maxPath      = 4095
)

// entryOf turns a tar header into a manifest entry, refusing what dpkg
// or the image could not hold: names that are absolute or contain "..",
// names with a newline (dpkg refuses them: they would forge lines of its
// file lists), names and link targets no file system takes, device nodes
// and FIFOs (Debian Policy 10.6: "Packages must not include device files
// or named pipes"; appliance makes the few a system needs, such as
// /dev/console, itself). Modes are kept as the package gives them,
// setuid and setgid included, as dpkg keeps them.
func entryOf(h *tar.Header) (tree.Entry, error) {
	if err := checkName(h.Name, "name"); err != nil {
		return tree.Entry{}, err
	}
	p, err := tree.Clean(h.Name)
	if err != nil {
		return tree.Entry{}, err
	}
	e := tree.Entry{Path: p, Mode: uint32(h.Mode) & 0o7777, UID: h.Uid, GID: h.Gid, MTime: h.ModTime.Unix()}
	switch h.Typeflag {
	case tar.TypeReg:
		e.Type, e.Size = tree.Regular, h.Size
	case tar.TypeDir:
		e.Type = tree.Dir
	case tar.TypeSymlink:
		if h.Linkname == "" {
			return e, fmt.Errorf("/%s: symlink with an empty target", p)
		}
		if err := checkName(h.Linkname, "symlink target"); err != nil {
			return e, fmt.Errorf("/%s: %w", p, err)
		}
		e.Type, e.Link = tree.Symlink, h.Linkname
	case tar.TypeLink:
		if err := checkName(h.Linkname, "hard link target"); err != nil {
			return e, fmt.Errorf("/%s: %w", p, err)
		}
		t, err := tree.Clean(h.Linkname)
		if err != nil {
			return e, fmt.Errorf("/%s: hard link target %w", p, err)
		}
		e.Type, e.Link = tree.Hardlink, t
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		kind := map[byte]string{tar.TypeChar: "a character device", tar.TypeBlock: "a block device", tar.TypeFifo: "a FIFO"}[h.Typeflag]
		return e, fmt.Errorf("/%s is %s; Debian Policy (10.6) forbids device files and named pipes in a package, and appliance does not put them in an image", p, kind)
	default:
		return e, fmt.Errorf("/%s: tar entry type %q is not something dpkg unpacks", p, h.Typeflag)
	}
	return e, nil
}

// checkName refuses a member name or link target that no file system
// holds or that holds a newline.
func checkName(s, what string) error {
	short := s
	if len(short) > 60 {
		short = short[:60] + "…"
	}
	if strings.ContainsAny(s, "\n\x00") {
		return fmt.Errorf("%s %q holds a newline or NUL, which dpkg refuses", what, short)
	}
	if len(s) > maxPath {
		return fmt.Errorf("%s %q is %d bytes; a path has at most %d", what, short, len(s), maxPath)
	}
	for _, c := range strings.Split(s, "/") {
		if len(c) > maxComponent {
			return fmt.Errorf("%s %q has a component of %d bytes; a file name has at most %d", what, short, len(c), maxComponent)
		}
	}
	return nil
}
