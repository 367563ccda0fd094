// Package apt is appliance's apt repository client: it fetches a
// repository's InRelease (or Release and Release.gpg), verifies the
// OpenPGP signature against the keyring the spec names, the Valid-Until
// date and the Date (no older than the Release seen before, not in the
// future), then fetches the Packages indexes the Release lists and
// checks each against the Release's SHA-256 before reading it. Only
// verified bytes are ever parsed, and every field read from an index
// that names something (package, version, architecture, file, hash) is
// checked against Debian's policy before it is used. http, https and
// file:// URLs work alike; with a cache, verified files are kept and
// --offline reuses them.
//
// Nothing is read without a bound: a Release (which nothing signed
// vouches for before it is read) at most MaxReleaseSize; an index or a
// package at most the size the signed data gives, and an index no more
// than MaxIndexSize; a compressed index is decompressed only up to the
// size the Release gives its uncompressed form. A server that sends more
// is cut off at that size.
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
	// NotBefore, when set, refuses a Release dated earlier: the date of
	// the Release the lock was made from.
	NotBefore time.Time
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
	// PutNamed and GetNamed keep a small file by name; GetNamed
	// refuses one larger than limit.
	PutNamed(kind, name string, b []byte) error
	GetNamed(kind, name string, limit int64) ([]byte, error)
}

// MaxReleaseSize bounds an InRelease, Release or Release.gpg: nothing
// signed gives their size before they are read. It is apt's
// Acquire::MaxReleaseFileSize; Debian's InRelease is about 200 kB.
const MaxReleaseSize = 10_000_000

// MaxIndexSize bounds a Packages index, compressed or not, whatever the
// Release says: Debian's largest (trixie main arm64) is 56 MB
// uncompressed. An index the Release does not give uncompressed is
// decompressed up to this size.
const MaxIndexSize = 512 << 20

// MaxFuture is how far ahead of this machine's clock a Release may be
// dated: clock skew, not a Release signed ahead of its time.
const MaxFuture = 10 * time.Minute

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

// TooLargeError is a body longer than what was expected of it; the
// download stopped one byte past Limit.
type TooLargeError struct {
	URL   string
	Limit int64
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("%s: the server sent more than the %d bytes expected; stopped reading there and kept nothing: the mirror is broken or hostile", e.URL, e.Limit)
}

// Get fetches a URL of at most limit bytes into memory (http, https,
// file), retrying transient failures with a growing pause.
func (c *Client) Get(ctx context.Context, rawURL string, limit int64) ([]byte, error) {
	var buf bytes.Buffer
	err := c.Download(ctx, rawURL, limit, func() io.Writer { buf.Reset(); return &buf })
	return buf.Bytes(), err
}

// Download streams a URL of at most limit bytes into the writer w
// returns; w is called again for every attempt, so a retry starts from
// an empty writer. A longer body is a *TooLargeError once limit+1 bytes
// have arrived (or at once when the server declares its length), and is
// not tried again.
func (c *Client) Download(ctx context.Context, rawURL string, limit int64, w func() io.Writer) error {
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
		return copyLimited(w(), f, limit, rawURL)
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
		last = c.try(ctx, rawURL, limit, w())
		var nf *NotFoundError
		var tl *TooLargeError
		if last == nil || errors.As(last, &nf) || errors.As(last, &tl) || ctx.Err() != nil {
			return last
		}
	}
	return last
}

func (c *Client) try(ctx context.Context, rawURL string, limit int64, w io.Writer) error {
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
	case resp.ContentLength > limit:
		return &TooLargeError{URL: rawURL, Limit: limit}
	}
	return copyLimited(w, resp.Body, limit, rawURL)
}

// copyLimited copies at most limit bytes, and fails if r has more.
func copyLimited(w io.Writer, r io.Reader, limit int64, rawURL string) error {
	n, err := io.Copy(w, io.LimitReader(r, limit+1))
	if err != nil {
		return fmt.Errorf("%s: %w", rawURL, err)
	}
	if n > limit {
		return &TooLargeError{URL: rawURL, Limit: limit}
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
// repository has one, else Release with Release.gpg. It refuses an
// unsigned repository, a bad or unknown signature, an expired
// Valid-Until, a Release for another suite, one without a Date, one
// dated more than MaxFuture ahead, and one older than the source's
// NotBefore or than the Release kept from an earlier run (a replay:
// apt's Date check). Offline, the verified file kept in the Store is
// verified again (and may have expired since).
func (c *Client) Release(ctx context.Context, s *Source) (*Release, error) {
	if s.Keyring == nil {
		return nil, fmt.Errorf("source %s has no keyring; every repository must be verified", s.Name)
	}
	var raw, detached []byte
	var err error
	if c.Offline {
		if c.Store == nil {
			return nil, fmt.Errorf("source %s: the Release: %w", s.Name, ErrOffline)
		}
		raw, detached, err = c.kept(s)
		if err != nil {
			return nil, fmt.Errorf("source %s: the Release of %s %s: %w", s.Name, s.URL, s.Suite, ErrOffline)
		}
	} else if raw, detached, err = c.fetchRelease(ctx, s); err != nil {
		return nil, fmt.Errorf("source %s: %w", s.Name, err)
	}
	rel, err := c.verify(s, raw, detached)
	if err != nil {
		return nil, err
	}
	where := rel.where(s)
	if !rel.ValidUntil.IsZero() && c.now().After(rel.ValidUntil) {
		return nil, fmt.Errorf("source %s: %s expired on %s (Valid-Until): the mirror is stale, or an old Release is being replayed; try again later or use another mirror", s.Name, where, rel.ValidUntil.UTC().Format(time.RFC3339))
	}
	if err := c.checkDate(s, rel); err != nil {
		return nil, err
	}
	if c.Store != nil && !c.Offline {
		if err := c.keep(s, raw, detached); err != nil {
			return nil, err
		}
	}
	return rel, nil
}

// fetchRelease downloads InRelease, or Release and Release.gpg.
func (c *Client) fetchRelease(ctx context.Context, s *Source) (raw, detached []byte, err error) {
	raw, err = c.Get(ctx, s.distURL("InRelease"), MaxReleaseSize)
	var nf *NotFoundError
	if !errors.As(err, &nf) {
		return raw, nil, err
	}
	raw, err = c.Get(ctx, s.distURL("Release"), MaxReleaseSize)
	if errors.As(err, &nf) {
		return nil, nil, fmt.Errorf("%s has neither InRelease nor Release: check the source's URL and suite", s.distURL(""))
	}
	if err != nil {
		return nil, nil, err
	}
	detached, err = c.Get(ctx, s.distURL("Release.gpg"), MaxReleaseSize)
	if errors.As(err, &nf) {
		return nil, nil, fmt.Errorf("the repository is unsigned: %s has a Release but neither InRelease nor Release.gpg; appliance reads only signed repositories", s.distURL(""))
	}
	return raw, detached, err
}

// kept returns the Release kept from an earlier run.
func (c *Client) kept(s *Source) (raw, detached []byte, err error) {
	key := releaseKey(s)
	raw, err = c.Store.GetNamed("releases", key+".InRelease", MaxReleaseSize)
	if err == nil {
		return raw, nil, nil
	}
	raw, err = c.Store.GetNamed("releases", key+".Release", MaxReleaseSize)
	if err == nil {
		detached, err = c.Store.GetNamed("releases", key+".Release.gpg", MaxReleaseSize)
	}
	return raw, detached, err
}

// keep stores a verified Release for later runs.
func (c *Client) keep(s *Source, raw, detached []byte) error {
	key := releaseKey(s)
	if detached == nil {
		return c.Store.PutNamed("releases", key+".InRelease", raw)
	}
	if err := c.Store.PutNamed("releases", key+".Release", raw); err != nil {
		return err
	}
	return c.Store.PutNamed("releases", key+".Release.gpg", detached)
}

// verify checks a Release's signature and reads it.
func (c *Client) verify(s *Source, raw, detached []byte) (*Release, error) {
	var text []byte
	var signer string
	var err error
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
	rel.Signer, rel.Raw, rel.Detached = signer, raw, detached != nil
	if rel.Suite != s.Suite && rel.Codename != s.Suite {
		return nil, fmt.Errorf("source %s: %s is signed for suite %q (codename %q), not %q", s.Name, where, rel.Suite, rel.Codename, s.Suite)
	}
	return rel, nil
}

// checkDate refuses a Release dated in the future, or older than what
// was seen of the source before: the lock's Release (s.NotBefore) or
// the one kept in the Store, which is verified again first (a kept file
// that no longer verifies says nothing).
func (c *Client) checkDate(s *Source, rel *Release) error {
	where := rel.where(s)
	const layout = "2006-01-02 15:04:05 UTC"
	if rel.Date.IsZero() {
		return fmt.Errorf("source %s: %s has no Date, so a replayed old Release could not be told from a new one; appliance reads only archives that date their Releases", s.Name, where)
	}
	now := c.now()
	if rel.Date.After(now.Add(MaxFuture)) {
		return fmt.Errorf("source %s: %s is dated %s, ahead of this machine's clock (%s): a Release signed ahead of its time, or a wrong clock here; check the clock", s.Name, where, rel.Date.UTC().Format(layout), now.UTC().Format(layout))
	}
	if !s.NotBefore.IsZero() && rel.Date.Before(s.NotBefore) {
		return fmt.Errorf("source %s: %s is dated %s, before the Release of %s that the lock was made from: an old Release is being replayed, or the mirror went back in time; nothing of it was used. Try again later or use another mirror", s.Name, where, rel.Date.UTC().Format(layout), s.NotBefore.UTC().Format(layout))
	}
	if c.Offline || c.Store == nil {
		return nil
	}
	raw, detached, err := c.kept(s)
	if err != nil {
		return nil
	}
	prev, err := c.verify(s, raw, detached)
	if err != nil || !rel.Date.Before(prev.Date) {
		return nil
	}
	return fmt.Errorf("source %s: %s is dated %s, before the Release of %s read here earlier: an old Release is being replayed, or the mirror went back in time; nothing of it was used. Try again later or use another mirror", s.Name, where, rel.Date.UTC().Format(layout), prev.Date.UTC().Format(layout))
}

func releaseKey(s *Source) string {
	h := sha256.Sum256([]byte(strings.TrimSuffix(s.URL, "/") + " " + s.Suite))
	return hex.EncodeToString(h[:12])
}

// fetchVerified returns the content of a dists/ file whose hash the
// Release gives, from the Store or the network (by hash where the
// archive supports it, so a mirror update between the Release and the
// index cannot mismatch them); keep stores what was downloaded. No more
// than the size the Release gives is read.
func (c *Client) fetchVerified(ctx context.Context, s *Source, rel *Release, p string, keep bool) ([]byte, error) {
	fh := rel.Files[p]
	if fh.Size > MaxIndexSize {
		return nil, fmt.Errorf("%s: the Release gives it as %d bytes, more than the %d appliance reads of an index", s.distURL(p), fh.Size, MaxIndexSize)
	}
	if b, ok := c.stored(fh); ok {
		return b, nil
	}
	u := s.distURL(p)
	if rel.AcquireByHash {
		u = s.distURL(path.Dir(p) + "/by-hash/SHA256/" + fh.SHA256)
	}
	b, err := c.Get(ctx, u, fh.Size)
	var nf *NotFoundError
	if errors.As(err, &nf) && rel.AcquireByHash {
		u = s.distURL(p)
		b, err = c.Get(ctx, u, fh.Size)
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

// stored reads an index kept in the Store if it is there, of the size
// and hash the Release gives; anything else there is ignored (and
// replaced once the index is downloaded again).
func (c *Client) stored(fh FileHash) ([]byte, bool) {
	if c.Store == nil {
		return nil, false
	}
	f, err := os.Open(c.Store.Path("indexes", fh.SHA256))
	if err != nil {
		return nil, false
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() || fi.Size() != fh.Size {
		return nil, false
	}
	b := make([]byte, fh.Size)
	if _, err := io.ReadFull(f, b); err != nil || checkHash(b, fh) != nil {
		return nil, false
	}
	return b, true
}

func checkHash(b []byte, fh FileHash) error {
	sum := sha256.Sum256(b)
	if got := hex.EncodeToString(sum[:]); got != fh.SHA256 || int64(len(b)) != fh.Size {
		return fmt.Errorf("SHA-256 %s (%d bytes) does not match the Release's %s (%d bytes)", got, len(b), fh.SHA256, fh.Size)
	}
	return nil
}
