package apt

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"path"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/appliance/appliance/images/deb"
)

// Package is one binary package of an index, with the fields the
// resolver, the lock and the dpkg database need. Relationship fields
// stay unparsed here: the resolver parses the few it visits.
type Package struct {
	Name          string
	Version       string
	Architecture  string
	MultiArch     string
	Priority      string
	Essential     bool
	Source        string // source package name
	SourceVersion string // "" when equal to Version
	Depends       string
	PreDepends    string
	Provides      string
	Conflicts     string
	Breaks        string
	Replaces      string
	// Recommends, Suggests and Enhances are never followed; the
	// resolver reads the names they mention (see resolve.NewUniverse).
	Recommends string
	Suggests   string
	Enhances   string
	// Important is "Important: yes" or "Protected: yes": apt prefers
	// such a provider of a virtual package.
	Important     bool
	Filename      string
	Size          int64
	SHA256        string
	InstalledSize int64

	// Repo is the source the package comes from.
	Repo *Source
}

// URL is where the package's .deb is downloaded from.
func (p *Package) URL() string { return p.Repo.PoolURL(p.Filename) }

// ID names a package version for messages: "mosquitto 2.0.21-1 (arm64)".
func (p *Package) ID() string {
	return p.Name + " " + p.Version + " (" + p.Architecture + ")"
}

// indexNames are the compressions appliance reads, best first.
var indexNames = []string{"Packages.xz", "Packages.gz", "Packages"}

// Packages fetches, verifies and reads the source's package indexes for
// one architecture: binary-ARCH of every component, and binary-all when
// the archive lists architecture-all packages separately. An index that
// lists one package version twice with different contents is refused:
// which of the two would be installed is not something an archive
// leaves open.
func (c *Client) Packages(ctx context.Context, s *Source, rel *Release, arch string) ([]*Package, error) {
	archs := []string{arch}
	if !rel.AllInArch && contains(rel.Architectures, "all") {
		archs = append(archs, "all")
	}
	var out []*Package
	seen := map[string]*Package{}
	for _, comp := range s.Components {
		for _, a := range archs {
			var name string
			for _, n := range indexNames {
				p := comp + "/binary-" + a + "/" + n
				if _, ok := rel.Files[p]; ok {
					name = p
					break
				}
			}
			if name == "" {
				if a == "all" {
					continue
				}
				return nil, fmt.Errorf("source %s: the Release lists no %s/binary-%s/Packages index; check the component and architecture", s.Name, comp, a)
			}
			b, err := c.index(ctx, s, rel, comp+"/binary-"+a+"/Packages", name)
			if err != nil {
				return nil, fmt.Errorf("source %s: %w", s.Name, err)
			}
			pkgs, err := parseParallel(ctx, b, s)
			if err != nil {
				return nil, fmt.Errorf("source %s: %s: %w", s.Name, name, err)
			}
			for _, p := range pkgs {
				id := p.ID()
				if q := seen[id]; q == nil {
					seen[id] = p
				} else if q.SHA256 != p.SHA256 {
					return nil, fmt.Errorf("source %s: %s lists %s twice, as %s and as %s: the index is damaged or hostile; nothing of it was used", s.Name, name, id, q.SHA256, p.SHA256)
				}
			}
			out = append(out, pkgs...)
		}
	}
	return out, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// index returns an index uncompressed. The Release gives the hash of
// the uncompressed index too: what is kept in the Store is the
// uncompressed file, checked against that hash, so a later run reads it
// without decompressing (the xz of Debian's main index alone takes 1.5 s).
// Decompression stops one byte past the uncompressed size the Release
// gives (or past MaxIndexSize when it gives none).
func (c *Client) index(ctx context.Context, s *Source, rel *Release, plain, compressed string) ([]byte, error) {
	ph, hasPlain := rel.Files[plain]
	limit := int64(MaxIndexSize)
	if hasPlain {
		if ph.Size > MaxIndexSize {
			return nil, fmt.Errorf("%s: the Release gives it as %d bytes, more than the %d appliance reads of an index", s.distURL(plain), ph.Size, MaxIndexSize)
		}
		if b, ok := c.stored(ph); ok {
			return b, nil
		}
		limit = ph.Size
	}
	b, err := c.fetchVerified(ctx, s, rel, compressed, !hasPlain)
	if err != nil {
		return nil, err
	}
	raw, err := decompressIndex(b, compressed, limit)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.distURL(compressed), err)
	}
	if hasPlain {
		if err := checkHash(raw, ph); err != nil {
			return nil, fmt.Errorf("%s uncompressed: %w", s.distURL(compressed), err)
		}
		if c.Store != nil {
			if err := c.Store.Put("indexes", ph.SHA256, bytes.NewReader(raw)); err != nil {
				return nil, err
			}
		}
	}
	return raw, nil
}

// decompressed counts the bytes read from index decompressors, for
// tests that check a bomb was stopped.
var decompressed atomic.Int64

// decompressIndex decompresses an index, reading at most limit+1 bytes
// of its uncompressed form.
func decompressIndex(b []byte, name string, limit int64) ([]byte, error) {
	if path.Ext(name) != ".xz" && path.Ext(name) != ".gz" {
		if int64(len(b)) > limit {
			return nil, fmt.Errorf("%d bytes, more than the %d the Release gives the index", len(b), limit)
		}
		return b, nil
	}
	r, done, err := deb.Decompress(bytes.NewReader(b), path.Ext(name))
	if err != nil {
		return nil, err
	}
	defer done()
	var out bytes.Buffer
	n, err := io.Copy(&out, io.LimitReader(r, limit+1))
	decompressed.Add(n)
	if err != nil {
		return nil, err
	}
	if n > limit {
		return nil, fmt.Errorf("decompresses past the %d bytes the Release gives the index; stopped there: the index is damaged or a decompression bomb", limit)
	}
	return out.Bytes(), nil
}

// parseParallel parses an uncompressed index in as many pieces as there
// are processors, split at paragraph boundaries; the order is kept.
func parseParallel(ctx context.Context, b []byte, s *Source) ([]*Package, error) {
	n := runtime.GOMAXPROCS(0)
	var chunks [][]byte
	for i := 1; i < n && len(b) > 1<<20; i++ {
		cut := bytes.Index(b[len(b)/(n-i+1):], []byte("\n\n"))
		if cut < 0 {
			break
		}
		cut += len(b)/(n-i+1) + 2
		chunks = append(chunks, b[:cut])
		b = b[cut:]
	}
	chunks = append(chunks, b)
	res := make([][]*Package, len(chunks))
	errs := make([]error, len(chunks))
	var wg sync.WaitGroup
	for i, ch := range chunks {
		wg.Go(func() { res[i], errs[i] = ParsePackages(ctx, ch, s) })
	}
	wg.Wait()
	var out []*Package
	for i := range chunks {
		if errs[i] != nil {
			return nil, errs[i]
		}
		out = append(out, res[i]...)
	}
	return out, nil
}

// ParsePackages reads an uncompressed Packages index; it stops when ctx
// is done.
func ParsePackages(ctx context.Context, b []byte, s *Source) ([]*Package, error) {
	pr := deb.NewParagraphReader(bytes.NewReader(b))
	var out []*Package
	for i := 0; ; i++ {
		if i%256 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		para, err := pr.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		p, err := fromParagraph(para)
		if err != nil {
			return nil, fmt.Errorf("the stanza ending at line %d: %w", pr.Line(), err)
		}
		p.Repo = s
		out = append(out, p)
	}
}

// fromParagraph reads the fields appliance uses from an index stanza,
// and checks those that name something.
func fromParagraph(para deb.Paragraph) (*Package, error) {
	p := &Package{}
	var source, size, isize string
	for _, f := range para {
		v := strings.TrimSpace(f.Value)
		switch f.Name {
		case "Package":
			p.Name = v
		case "Version":
			p.Version = v
		case "Architecture":
			p.Architecture = v
		case "Multi-Arch":
			p.MultiArch = v
		case "Priority":
			p.Priority = v
		case "Essential":
			p.Essential = v == "yes"
		case "Important", "Protected":
			p.Important = p.Important || v == "yes"
		case "Depends":
			p.Depends = v
		case "Pre-Depends":
			p.PreDepends = v
		case "Provides":
			p.Provides = v
		case "Conflicts":
			p.Conflicts = v
		case "Breaks":
			p.Breaks = v
		case "Replaces":
			p.Replaces = v
		case "Recommends":
			p.Recommends = v
		case "Suggests":
			p.Suggests = v
		case "Enhances":
			p.Enhances = v
		case "Filename":
			p.Filename = v
		case "SHA256":
			p.SHA256 = strings.ToLower(v)
		case "Source":
			source = v
		case "Size":
			size = v
		case "Installed-Size":
			isize = v
		}
	}
	if p.Name == "" || p.Version == "" || p.Architecture == "" {
		return nil, fmt.Errorf("a paragraph lacks Package, Version or Architecture")
	}
	if err := CheckPackage(p.Name, p.Version, p.Architecture); err != nil {
		return nil, err
	}
	p.Source, p.SourceVersion = ParseSource(source, p.Name)
	if err := ValidName(p.Source); err != nil {
		return nil, fmt.Errorf("%s: Source: %w", p.ID(), err)
	}
	if p.SourceVersion != "" {
		if err := ValidVersion(p.SourceVersion); err != nil {
			return nil, fmt.Errorf("%s: Source: %w", p.ID(), err)
		}
	}
	if p.SourceVersion == p.Version {
		p.SourceVersion = ""
	}
	var err error
	if p.Size, err = strconv.ParseInt(size, 10, 64); err != nil || p.Size <= 0 {
		return nil, fmt.Errorf("%s: bad Size %q", p.ID(), size)
	}
	if !IsSHA256(p.SHA256) || p.Filename == "" {
		return nil, fmt.Errorf("%s: no SHA256 or Filename; appliance downloads only packages whose hash the index gives", p.ID())
	}
	if err := ValidFilename(p.Filename); err != nil {
		return nil, fmt.Errorf("%s: Filename: %w", p.ID(), err)
	}
	if isize != "" {
		if p.InstalledSize, err = strconv.ParseInt(isize, 10, 64); err != nil || p.InstalledSize < 0 {
			return nil, fmt.Errorf("%s: bad Installed-Size %q", p.ID(), isize)
		}
	}
	return p, nil
}

// ParseSource splits a Source field ("openssl (3.5.1-1)") into name and
// version; a missing field means the source is named like the package.
func ParseSource(field, pkg string) (name, version string) {
	field = strings.TrimSpace(field)
	if field == "" {
		return pkg, ""
	}
	name, rest, ok := strings.Cut(field, " ")
	if ok {
		version = strings.Trim(strings.TrimSpace(rest), "()")
	}
	return name, version
}
