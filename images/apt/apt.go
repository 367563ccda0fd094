// Package apt is appliance's apt repository client: it fetches a
// repository's InRelease (or Release and Release.gpg), verifies the
// OpenPGP signature against the keyring the spec names and the
// Valid-Until date, then fetches the Packages indexes the Release lists
// and checks each against the Release's SHA-256 before reading it. Only
// verified bytes are ever parsed. http, https and file:// URLs work
// alike; with a cache, verified files are kept and --offline reuses them.
package apt

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"strings"
	"time"

	pgperrors "github.com/ProtonMail/go-crypto/openpgp/errors"
)

var errUnknownIssuer = pgperrors.ErrUnknownIssuer

// Source is one apt repository, as a sources.list line names it.
type Source struct {
	Name       string
	URL        string // http://deb.debian.org/debian, file:///srv/mirror
	Suite      string
	Components []string
	Keyring    *Keyring
	// Priority decides between sources that carry the same package: the
	// candidate comes from the sources of the highest priority, and
	// among those it is the highest version (apt's pinning, where every
	// source is 500 unless configured).
	Priority int
}

// Store keeps verified files by their SHA-256 and signed Release files
// by their URL, so a later run can work offline. *cache.Cache is one.
type Store interface {
	// Path is where the file of a content hash lives if it is present.
	Path(kind, sha256hex string) string
	// Put stores r under its SHA-256, refusing content of another hash.
	Put(kind, sha256hex string, r io.Reader) error
	// PutNamed and GetNamed keep a small file by name.
	PutNamed(kind, name string, b []byte) error
	GetNamed(kind, name string) ([]byte, error)
}

// Client fetches and verifies repositories.
type Client struct {
	HTTP *http.Client
	// Store, when set, keeps indexes and Release files; nil keeps
	// nothing.
	Store Store
	// Offline forbids the network: everything must come from Store.
	Offline bool
	// Now is the clock signatures and Valid-Until are checked against.
	Now func() time.Time
	// Retries is how often a failed download is tried again.
	Retries int
}

func (c *Client) now() time.Time {
	if c.Now == nil {
		return time.Now()
	}
	return c.Now()
}

func (c *Client) http() *http.Client {
	if c.HTTP == nil {
		return http.DefaultClient
	}
	return c.HTTP
}

// ErrOffline is wrapped by every error that says a file is needed from
// the network while the client is offline.
var ErrOffline = errors.New("not in the cache and --offline forbids the network")

// NotFoundError is a URL the server answered 404 for.
type NotFoundError struct{ URL string }

func (e *NotFoundError) Error() string { return e.URL + ": not found (404)" }

// Get fetches a URL into memory (http, https, file), retrying
// transient failures with a growing pause.
func (c *Client) Get(ctx context.Context, rawURL string) ([]byte, error) {
	var buf bytes.Buffer
	err := c.Download(ctx, rawURL, func() io.Writer { buf.Reset(); return &buf })
	return buf.Bytes(), err
}

// Download streams a URL into the writer w returns; w is called again
// for every attempt, so a retry starts from an empty writer.
func (c *Client) Download(ctx context.Context, rawURL string, w func() io.Writer) error {
	if c.Offline {
		return fmt.Errorf("%s: %w", rawURL, ErrOffline)
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return err
	}
	if u.Scheme == "file" {
		f, err := os.Open(u.Path)
		if errors.Is(err, os.ErrNotExist) {
			return &NotFoundError{URL: rawURL}
		}
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(w(), f)
		return err
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("%s: only http, https and file URLs are supported", rawURL)
	}
	var last error
	for attempt := 0; attempt <= c.Retries; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Duration(attempt*attempt) * 500 * time.Millisecond):
			}
		}
		last = c.try(ctx, rawURL, w())
		var nf *NotFoundError
		if last == nil || errors.As(last, &nf) || ctx.Err() != nil {
			return last
		}
	}
	return last
}

func (c *Client) try(ctx context.Context, rawURL string, w io.Writer) error {
	req, err := http.NewRequestWithContext(ctx, "GET", rawURL, nil)
	if err != nil {
		return err
	}
	resp, err := c.http().Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return &NotFoundError{URL: rawURL}
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("%s: %s", rawURL, resp.Status)
	}
	if _, err := io.Copy(w, resp.Body); err != nil {
		return fmt.Errorf("%s: %w", rawURL, err)
	}
	return nil
}

// distURL is the URL of a file under the suite's dists/ folder.
func (s *Source) distURL(p string) string {
	return strings.TrimSuffix(s.URL, "/") + "/dists/" + s.Suite + "/" + p
}

// PoolURL is the URL of a file the index names by Filename; each path
// segment is escaped, so a file name is fetched as it is spelt.
func (s *Source) PoolURL(filename string) string {
	segs := strings.Split(strings.TrimPrefix(filename, "/"), "/")
	for i, seg := range segs {
		segs[i] = url.PathEscape(seg)
	}
	return strings.TrimSuffix(s.URL, "/") + "/" + strings.Join(segs, "/")
}

func (s *Source) String() string {
	return fmt.Sprintf("%s (%s %s)", s.Name, s.URL, s.Suite)
}

// Release fetches and verifies the source's Release: InRelease if the
// repository has one, else Release with Release.gpg. It refuses a bad
// or unknown signature, an expired Valid-Until and a Release for
// another suite. Offline, the verified file kept in the Store is
// verified again (and may have expired since).
func (c *Client) Release(ctx context.Context, s *Source) (*Release, error) {
	if s.Keyring == nil {
		return nil, fmt.Errorf("source %s has no keyring; every repository must be verified", s.Name)
	}
	key := releaseKey(s)
	var raw, detached []byte
	var err error
	if c.Offline {
		if c.Store == nil {
			return nil, fmt.Errorf("source %s: the Release: %w", s.Name, ErrOffline)
		}
		raw, err = c.Store.GetNamed("releases", key+".InRelease")
		if err != nil {
			raw, err = c.Store.GetNamed("releases", key+".Release")
			if err == nil {
				detached, err = c.Store.GetNamed("releases", key+".Release.gpg")
			}
		}
		if err != nil {
			return nil, fmt.Errorf("source %s: the Release of %s %s: %w", s.Name, s.URL, s.Suite, ErrOffline)
		}
	} else {
		raw, err = c.Get(ctx, s.distURL("InRelease"))
		var nf *NotFoundError
		if errors.As(err, &nf) {
			if raw, err = c.Get(ctx, s.distURL("Release")); err == nil {
				detached, err = c.Get(ctx, s.distURL("Release.gpg"))
			}
		}
		if err != nil {
			return nil, fmt.Errorf("source %s: %w", s.Name, err)
		}
	}
	var text []byte
	var signer string
	where := s.distURL("InRelease")
	if detached != nil {
		where = s.distURL("Release")
		text = raw
		signer, err = verifyDetached(raw, detached, s.Keyring, c.now())
	} else {
		text, signer, err = verifyInRelease(raw, s.Keyring, c.now())
	}
	if err != nil {
		return nil, fmt.Errorf("source %s: %s: %w", s.Name, where, err)
	}
	rel, err := parseRelease(text)
	if err != nil {
		return nil, fmt.Errorf("source %s: %s: %w", s.Name, where, err)
	}
	rel.Signer, rel.Raw = signer, raw
	if !rel.ValidUntil.IsZero() && c.now().After(rel.ValidUntil) {
		return nil, fmt.Errorf("source %s: %s expired on %s (Valid-Until): the mirror is stale, or an old Release is being replayed; try again later or use another mirror", s.Name, where, rel.ValidUntil.UTC().Format(time.RFC3339))
	}
	if rel.Suite != s.Suite && rel.Codename != s.Suite {
		return nil, fmt.Errorf("source %s: %s is signed for suite %q (codename %q), not %q", s.Name, where, rel.Suite, rel.Codename, s.Suite)
	}
	if c.Store != nil && !c.Offline {
		if detached != nil {
			err = c.Store.PutNamed("releases", key+".Release", raw)
			if err == nil {
				err = c.Store.PutNamed("releases", key+".Release.gpg", detached)
			}
		} else {
			err = c.Store.PutNamed("releases", key+".InRelease", raw)
		}
		if err != nil {
			return nil, err
		}
	}
	return rel, nil
}

func releaseKey(s *Source) string {
	h := sha256.Sum256([]byte(strings.TrimSuffix(s.URL, "/") + " " + s.Suite))
	return hex.EncodeToString(h[:12])
}

// fetchVerified returns the content of a dists/ file whose hash the
// Release gives, from the Store or the network (by hash where the
// archive supports it, so a mirror update between the Release and the
// index cannot mismatch them); keep stores what was downloaded.
func (c *Client) fetchVerified(ctx context.Context, s *Source, rel *Release, p string, keep bool) ([]byte, error) {
	fh := rel.Files[p]
	if c.Store != nil {
		if b, err := os.ReadFile(c.Store.Path("indexes", fh.SHA256)); err == nil && checkHash(b, fh) == nil {
			return b, nil
		}
	}
	u := s.distURL(p)
	if rel.AcquireByHash {
		u = s.distURL(path.Dir(p) + "/by-hash/SHA256/" + fh.SHA256)
	}
	b, err := c.Get(ctx, u)
	var nf *NotFoundError
	if errors.As(err, &nf) && rel.AcquireByHash {
		u = s.distURL(p)
		b, err = c.Get(ctx, u)
	}
	if err != nil {
		return nil, err
	}
	if err := checkHash(b, fh); err != nil {
		return nil, fmt.Errorf("%s: %w: the mirror is inconsistent or the file was altered; nothing of it was used", u, err)
	}
	if c.Store != nil && keep {
		if err := c.Store.Put("indexes", fh.SHA256, bytes.NewReader(b)); err != nil {
			return nil, err
		}
	}
	return b, nil
}

func checkHash(b []byte, fh FileHash) error {
	sum := sha256.Sum256(b)
	if got := hex.EncodeToString(sum[:]); got != fh.SHA256 || int64(len(b)) != fh.Size {
		return fmt.Errorf("SHA-256 %s (%d bytes) does not match the Release's %s (%d bytes)", got, len(b), fh.SHA256, fh.Size)
	}
	return nil
}
