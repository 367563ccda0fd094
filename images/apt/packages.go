package apt

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"runtime"
	"strconv"
	"strings"
	"sync"

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
// the archive lists architecture-all packages separately.
func (c *Client) Packages(ctx context.Context, s *Source, rel *Release, arch string) ([]*Package, error) {
	archs := []string{arch}
	if !rel.AllInArch && contains(rel.Architectures, "all") {
		archs = append(archs, "all")
	}
	var out []*Package
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
			pkgs, err := parseParallel(b, s)
			if err != nil {
				return nil, fmt.Errorf("source %s: %s: %w", s.Name, name, err)
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
func (c *Client) index(ctx context.Context, s *Source, rel *Release, plain, compressed string) ([]byte, error) {
	ph, hasPlain := rel.Files[plain]
	if hasPlain && c.Store != nil {
		if b, err := os.ReadFile(c.Store.Path("indexes", ph.SHA256)); err == nil && checkHash(b, ph) == nil {
			return b, nil
		}
	}
	b, err := c.fetchVerified(ctx, s, rel, compressed, !hasPlain)
	if err != nil {
		return nil, err
	}
	raw, err := decompressIndex(b, compressed)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", compressed, err)
	}
	if hasPlain {
		if err := checkHash(raw, ph); err != nil {
			return nil, fmt.Errorf("%s uncompressed: %w", compressed, err)
		}
		if c.Store != nil && compressed != plain {
			if err := c.Store.Put("indexes", ph.SHA256, bytes.NewReader(raw)); err != nil {
				return nil, err
			}
		}
	}
	return raw, nil
}

func decompressIndex(b []byte, name string) ([]byte, error) {
	r, done, err := deb.Decompress(bytes.NewReader(b), path.Ext(name))
	if err != nil {
		return nil, err
	}
	defer done()
	return io.ReadAll(r)
}

// parseParallel parses an uncompressed index in as many pieces as there
// are processors, split at paragraph boundaries; the order is kept.
func parseParallel(b []byte, s *Source) ([]*Package, error) {
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
		wg.Go(func() { res[i], errs[i] = ParsePackages(ch, s) })
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

// ParsePackages reads an uncompressed Packages index.
func ParsePackages(b []byte, s *Source) ([]*Package, error) {
	pr := deb.NewParagraphReader(bytes.NewReader(b))
	var out []*Package
	for {
		para, err := pr.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		p, err := fromParagraph(para)
		if err != nil {
			return nil, err
		}
		p.Repo = s
		out = append(out, p)
	}
}

// fromParagraph reads the fields appliance uses from an index stanza.
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
	p.Source, p.SourceVersion = ParseSource(source, p.Name)
	if p.SourceVersion == p.Version {
		p.SourceVersion = ""
	}
	var err error
	if p.Size, err = strconv.ParseInt(size, 10, 64); err != nil {
		return nil, fmt.Errorf("%s: bad Size %q", p.Name, size)
	}
	if len(p.SHA256) != 64 || p.Filename == "" {
		return nil, fmt.Errorf("%s %s: no SHA256 or Filename; appliance downloads only packages whose hash the index gives", p.Name, p.Version)
	}
	p.InstalledSize, _ = strconv.ParseInt(isize, 10, 64)
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
