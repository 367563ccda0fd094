package rootfs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/appliance/appliance/images/apt"
	"github.com/appliance/appliance/images/cache"
	"golang.org/x/sync/errgroup"
)

// Downloads run this many at a time: enough to fill a link to one
// mirror, few enough not to be rude to it.
const parallelDownloads = 4

// MissingError lists the packages an offline build lacks.
type MissingError struct {
	Packages []LockPackage
}

func (e *MissingError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d %s missing from the cache and --offline forbids downloading:", len(e.Packages), plural(len(e.Packages), "package is", "packages are"))
	for _, p := range e.Packages {
		fmt.Fprintf(&b, "\n  %s %s (%s)", p.Name, p.Version, p.URL)
	}
	b.WriteString("\nrun once without --offline to fill the cache")
	return b.String()
}

// Missing lists the lock's packages the cache cannot build: a package
// is present when its .deb is cached, or its unpacked form with the hash
// recorded for it (LockPackage.Unpacked). (Whether a cached .deb is whole is checked as
// it is unpacked; Unpack downloads a damaged one again.)
func Missing(l *Lock, ca *cache.Cache) []LockPackage {
	var out []LockPackage
	for _, p := range l.Packages {
		if !ca.Has("debs", p.SHA256) && !vouched(ca, p) {
			out = append(out, p)
		}
	}
	return out
}

// Fetch downloads the lock's packages that are not in the cache, a few
// at a time, each checked against the SHA-256 the lock gives before it
// takes its place in the cache. Offline, it lists what is missing.
func Fetch(ctx context.Context, c *apt.Client, l *Lock, ca *cache.Cache, prog Progress) error {
	if prog == nil {
		prog = NoProgress{}
	}
	missing := Missing(l, ca)
	if len(missing) == 0 {
		return nil
	}
	if c.Offline {
		return &MissingError{Packages: missing}
	}
	return fetchPackages(ctx, c, missing, ca, prog)
}

// fetchPackages downloads packages into the cache.
func fetchPackages(ctx context.Context, c *apt.Client, pkgs []LockPackage, ca *cache.Cache, prog Progress) error {
	var total int64
	for _, p := range pkgs {
		total += p.Size
	}
	prog.Begin("downloading", len(pkgs), total)
	defer prog.End()
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(parallelDownloads)
	for _, p := range pkgs {
		g.Go(func() error {
			if err := fetchOne(ctx, c, p, ca, prog); err != nil {
				return fmt.Errorf("%s: %w", p.ID(), err)
			}
			prog.Item(p.Name)
			return nil
		})
	}
	return g.Wait()
}

// counter reports bytes to the progress as they arrive.
type counter struct {
	w    io.Writer
	prog Progress
}

func (c counter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.prog.Bytes(int64(n))
	return n, err
}

func fetchOne(ctx context.Context, c *apt.Client, p LockPackage, ca *cache.Cache, prog Progress) error {
	var w *cache.Writer
	var werr error
	err := c.Download(ctx, p.URL, p.Size, func() io.Writer {
		if w != nil {
			// A retry: the attempt before left a partial file.
			prog.Bytes(-w.Size())
			w.Abort()
		}
		w, werr = ca.Create("debs", p.SHA256)
		if werr != nil {
			return io.Discard
		}
		return counter{w: w, prog: prog}
	})
	if werr != nil {
		err = werr
	}
	if err != nil {
		if w != nil {
			w.Abort()
		}
		var nf *apt.NotFoundError
		if errors.As(err, &nf) {
			return fmt.Errorf("%w: the archive no longer has this version (superseded by an update); run appliance lock to refresh the lock", err)
		}
		return err
	}
	if w.Size() != p.Size {
		w.Abort()
		return fmt.Errorf("%s: downloaded %d bytes, the index says %d: the mirror is damaged or the file was altered; nothing was kept", p.URL, w.Size(), p.Size)
	}
	if err := w.Commit(); err != nil {
		var hm *cache.HashMismatchError
		if errors.As(err, &hm) {
			return fmt.Errorf("%s: %w: the mirror is damaged or the file was altered; nothing was kept", p.URL, err)
		}
		return err
	}
	return nil
}
