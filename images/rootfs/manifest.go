package rootfs

import (
	"archive/tar"
	"bytes"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"os"
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

// readManifest reads a package's cached manifest; ok is false when
// there is none (or an unreadable one, which is unpacked again).
func readManifest(ca *cache.Cache, debSHA string) (*Manifest, bool) {
	b, err := os.ReadFile(ca.Path("manifests", debSHA))
	if err != nil {
		return nil, false
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil || m.Format != manifestFormat || m.Deb != debSHA {
		return nil, false
	}
	return &m, true
}

// smallFile is the size up to which a file's content is hashed in
// memory first, so content already in the cache is not written again.
const smallFile = 1 << 20

// makeManifest unpacks a cached .deb into blobs and a manifest. The .deb
// is hashed as it is read; on any failure (a damaged .deb, a path that
// leaves the tree) every blob this call created is removed again and no
// manifest is written, so a refused package leaves nothing behind.
func makeManifest(ca *cache.Cache, p LockPackage, arch string) (m *Manifest, err error) {
	f, err := os.Open(ca.Path("debs", p.SHA256))
	if err != nil {
		return nil, err
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
	pkg, err := deb.Read(tee)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p.ID(), err)
	}
	m = &Manifest{Format: manifestFormat, Deb: p.SHA256, Control: string(pkg.Control), Members: pkg.Members}
	var md5s *strings.Builder
	if pkg.Member("md5sums") == nil {
		md5s = &strings.Builder{}
		m.GeneratedMD5Sums = true
	}
	buf := make([]byte, 0, 64<<10)
	err = pkg.Data(func(h *tar.Header, body io.Reader) error {
		e, err := entryOf(h)
		if err != nil {
			return fmt.Errorf("package %s: %w", p.Name, err)
		}
		if e.Type == tree.Regular {
			var mh hash.Hash
			if md5s != nil {
				mh = md5.New()
			}
			sum, isNew, err := putBlob(ca, body, h.Size, mh, &buf)
			if err != nil {
				return fmt.Errorf("package %s: /%s: %w", p.Name, e.Path, err)
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
	if err != nil {
		return nil, err
	}
	if _, err := io.Copy(io.Discard, tee); err != nil {
		return nil, err
	}
	if got := hex.EncodeToString(dh.Sum(nil)); got != p.SHA256 {
		ca.Remove("debs", p.SHA256)
		return nil, fmt.Errorf("%s: the cached .deb has SHA-256 %s, not the lock's %s; removed it, run again to download it anew", p.ID(), got, p.SHA256)
	}
	if md5s != nil {
		m.Members = append(m.Members, deb.Member{Name: "md5sums", Mode: 0o644, Data: []byte(md5s.String())})
	}
	// The package alone must unpack into a tree: a path that climbs out
	// through one of its own symlinks is refused before anything of it
	// is kept.
	u := newUnpacker(arch, 0)
	if err := u.apply(p.Name, m); err != nil {
		return nil, err
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	if err := ca.PutAt("manifests", p.SHA256, b); err != nil {
		return nil, err
	}
	return m, nil
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

// entryOf turns a tar header into a manifest entry, refusing names that
// are absolute or contain "..".
func entryOf(h *tar.Header) (tree.Entry, error) {
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
		e.Type, e.Link = tree.Symlink, h.Linkname
	case tar.TypeLink:
		t, err := tree.Clean(h.Linkname)
		if err != nil {
			return e, fmt.Errorf("/%s: hard link target %w", p, err)
		}
		e.Type, e.Link = tree.Hardlink, t
	case tar.TypeChar:
		e.Type, e.Major, e.Minor = tree.CharDev, uint32(h.Devmajor), uint32(h.Devminor)
	case tar.TypeBlock:
		e.Type, e.Major, e.Minor = tree.BlockDev, uint32(h.Devmajor), uint32(h.Devminor)
	case tar.TypeFifo:
		e.Type = tree.FIFO
	default:
		return e, fmt.Errorf("/%s: tar entry type %q is not something dpkg unpacks", p, h.Typeflag)
	}
	return e, nil
}
