// Package tree is the model of a root file system that appliance builds:
// every path with its type, mode, owner, modification time, and either a
// link target, device numbers or the SHA-256 of its content. Content
// lives outside the model, as content-addressed blob files, so a tree of
// 400 MB is a few megabytes of memory and an image writer can stream the
// blobs straight into the image without copying them first.
//
// Paths are relative to the root, without a leading slash ("usr/bin/sh";
// the root itself is ""). A tree never holds a path with a symlink in
// its parent chain: Resolve follows the tree's own symlinks the way dpkg
// does when it unpacks (so "bin/sh" lands in "usr/bin/sh" once "bin" is
// the merged-/usr symlink), and refuses a path that would leave the
// tree. Writers can therefore create every entry at its path, parents
// first, without ever following a symlink on the host.
package tree

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"
)

// Type is the kind of a tree entry.
type Type uint8

// The kinds of entry a root file system holds.
const (
	Dir Type = iota + 1
	Regular
	Symlink
	// Hardlink is a second name of a regular file: Link is the path of
	// the entry that holds the content (never itself a Hardlink).
	Hardlink
	CharDev
	BlockDev
	FIFO
)

var typeNames = map[Type]string{Dir: "dir", Regular: "file", Symlink: "symlink", Hardlink: "hardlink", CharDev: "char", BlockDev: "block", FIFO: "fifo"}

func (t Type) String() string {
	if s, ok := typeNames[t]; ok {
		return s
	}
	return fmt.Sprintf("type(%d)", t)
}

// MarshalText writes the type by name, for manifests people can read.
func (t Type) MarshalText() ([]byte, error) { return []byte(t.String()), nil }

// UnmarshalText reads a type name.
func (t *Type) UnmarshalText(b []byte) error {
	for k, v := range typeNames {
		if v == string(b) {
			*t = k
			return nil
		}
	}
	return fmt.Errorf("unknown entry type %q", b)
}

// Entry is one path of the tree.
type Entry struct {
	Path string `json:"path"`
	Type Type   `json:"type"`
	// Mode is the permission bits with setuid, setgid and sticky
	// (07777); the type is in Type.
	Mode  uint32 `json:"mode"`
	UID   int    `json:"uid"`
	GID   int    `json:"gid"`
	MTime int64  `json:"mtime"` // seconds since the Unix epoch
	// Size is the content's length in bytes (regular files).
	Size int64 `json:"size,omitempty"`
	// Blob is the hex SHA-256 of a regular file's content, which the
	// tree's blob store holds.
	Blob string `json:"blob,omitempty"`
	// Data is the content of a small file appliance generated itself
	// (the dpkg database); such a file has no Blob.
	Data []byte `json:"-"`
	// Link is a symlink's target as written in the package, or a hard
	// link's tree path.
	Link  string `json:"link,omitempty"`
	Major uint32 `json:"major,omitempty"`
	Minor uint32 `json:"minor,omitempty"`
	// Package is the package that owns the entry ("" for what appliance
	// made itself).
	Package string `json:"-"`
}

// FileMode returns the entry's mode as Go spells it.
func (e *Entry) FileMode() fs.FileMode {
	m := fs.FileMode(e.Mode & 0o777)
	if e.Mode&0o4000 != 0 {
		m |= fs.ModeSetuid
	}
	if e.Mode&0o2000 != 0 {
		m |= fs.ModeSetgid
	}
	if e.Mode&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	switch e.Type {
	case Dir:
		m |= fs.ModeDir
	case Symlink:
		m |= fs.ModeSymlink
	case CharDev:
		m |= fs.ModeDevice | fs.ModeCharDevice
	case BlockDev:
		m |= fs.ModeDevice
	case FIFO:
		m |= fs.ModeNamedPipe
	}
	return m
}

// Tree is a root file system model.
type Tree struct {
	entries map[string]*Entry
}

// New returns a tree holding only its root folder (0755, root, mtime 0).
func New() *Tree {
	return &Tree{entries: map[string]*Entry{"": {Path: "", Type: Dir, Mode: 0o755}}}
}

// Len is the number of entries, the root included.
func (t *Tree) Len() int { return len(t.entries) }

// Get returns the entry at a resolved path, or nil.
func (t *Tree) Get(p string) *Entry { return t.entries[p] }

// ErrEscape is wrapped by errors for paths that leave the tree.
var ErrEscape = errors.New("leaves the root file system")

// EscapeError is a path that resolves outside the tree.
type EscapeError struct {
	Path string
	// Link and Target name the symlink that climbs out, if one does.
	Link, Target string
}

func (e *EscapeError) Error() string {
	if e.Link == "" {
		return "/" + e.Path + ": " + ErrEscape.Error()
	}
	return fmt.Sprintf("/%s: symlink /%s → %s %s", e.Path, e.Link, e.Target, ErrEscape)
}

func (e *EscapeError) Unwrap() error { return ErrEscape }

// Clean turns a path as packages and tar archives spell it ("./usr/bin/",
// "/etc/passwd") into the tree's form ("usr/bin", "etc/passwd"). It
// refuses ".." components and absolute paths (other than "/" and "./"
// prefixes dpkg accepts), so no package can name a path outside the tree.
func Clean(name string) (string, error) {
	p := strings.TrimPrefix(name, "./")
	if p == "." || p == "" {
		return "", nil
	}
	if strings.HasPrefix(p, "/") {
		return "", fmt.Errorf("%q is an absolute path: %w", name, ErrEscape)
	}
	p = strings.TrimSuffix(p, "/")
	for _, c := range strings.Split(p, "/") {
		if c == ".." {
			return "", fmt.Errorf("%q contains \"..\": %w", name, ErrEscape)
		}
	}
	p = path.Clean(p)
	if p == "." {
		return "", nil
	}
	return p, nil
}

// maxLinks bounds symlink chains, as the kernel's ELOOP does.
const maxLinks = 40

// Resolve maps a clean path to where it lands in the tree: every parent
// component that is a symlink in the tree is followed (relative targets
// from the link's folder, absolute ones from the tree's root, as they
// will be on the gateway). The last component is not followed. A chain
// that climbs above the root is refused with ErrEscape, naming the link.
func (t *Tree) Resolve(p string) (string, error) {
	rest := strings.Split(p, "/") // components still to walk
	var done []string             // resolved components so far
	hops := 0
	for len(rest) > 0 {
		c := rest[0]
		rest = rest[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(done) == 0 {
				return "", &EscapeError{Path: p}
			}
			done = done[:len(done)-1]
			continue
		}
		cur := strings.Join(append(done, c), "/")
		e := t.entries[cur]
		if len(rest) == 0 || e == nil || e.Type != Symlink {
			done = append(done, c)
			continue
		}
		if hops++; hops > maxLinks {
			return "", fmt.Errorf("/%s: too many levels of symlinks at /%s", p, cur)
		}
		target := e.Link
		if strings.HasPrefix(target, "/") {
			done = done[:0]
			target = strings.TrimLeft(target, "/")
		}
		// Check the link's own target before following it, so that the
		// error names the link that climbs out.
		depth := len(done)
		for _, r := range strings.Split(target, "/") {
			switch r {
			case "", ".":
			case "..":
				if depth--; depth < 0 {
					return "", &EscapeError{Path: p, Link: cur, Target: e.Link}
				}
			default:
				depth++
			}
		}
		rest = append(strings.Split(target, "/"), rest...)
	}
	return strings.Join(done, "/"), nil
}

// Put stores an entry at its path, which must be resolved, replacing
// what was there. The parent must be a folder of the tree.
func (t *Tree) Put(e *Entry) error {
	if e.Path != "" {
		parent := t.entries[dir(e.Path)]
		if parent == nil {
			return fmt.Errorf("/%s: folder /%s does not exist", e.Path, dir(e.Path))
		}
		if parent.Type != Dir {
			return fmt.Errorf("/%s: /%s is a %s, not a folder", e.Path, dir(e.Path), parent.Type)
		}
	}
	t.entries[e.Path] = e
	return nil
}

// Remove deletes an entry and, for a folder, everything under it.
func (t *Tree) Remove(p string) {
	e := t.entries[p]
	if e == nil {
		return
	}
	delete(t.entries, p)
	if e.Type == Dir {
		prefix := p + "/"
		for k := range t.entries {
			if strings.HasPrefix(k, prefix) {
				delete(t.entries, k)
			}
		}
	}
}

// MkdirAll creates the missing folders of a resolved path with the given
// metadata, as tar and dpkg do for a member whose folder the archive
// never named.
func (t *Tree) MkdirAll(p string, tmpl Entry) error {
	if p == "" {
		return nil
	}
	if e := t.entries[p]; e != nil {
		if e.Type != Dir {
			return fmt.Errorf("/%s is a %s, not a folder", p, e.Type)
		}
		return nil
	}
	if err := t.MkdirAll(dir(p), tmpl); err != nil {
		return err
	}
	d := tmpl
	d.Path, d.Type = p, Dir
	t.entries[p] = &d
	return nil
}

func dir(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[:i]
	}
	return ""
}

// Entries returns every entry in the order writers use: parents before
// their children, siblings by byte order of their names. The order
// depends only on the paths, so a fixed input gives a fixed image.
func (t *Tree) Entries() []*Entry {
	out := make([]*Entry, 0, len(t.entries))
	for _, e := range t.entries {
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b *Entry) int { return ComparePaths(a.Path, b.Path) })
	return out
}

// ComparePaths orders paths component by component, so that "a/b" sorts
// right after "a" and before "a-b" — a depth-first walk.
func ComparePaths(a, b string) int {
	for {
		if a == b {
			return 0
		}
		if a == "" {
			return -1
		}
		if b == "" {
			return 1
		}
		ca, ra, _ := strings.Cut(a, "/")
		cb, rb, _ := strings.Cut(b, "/")
		if c := strings.Compare(ca, cb); c != 0 {
			return c
		}
		a, b = ra, rb
	}
}

// Clamp sets every modification time later than epoch to epoch, as
// SOURCE_DATE_EPOCH asks of a reproducible build.
func (t *Tree) Clamp(epoch int64) {
	for _, e := range t.entries {
		if e.MTime > epoch {
			e.MTime = epoch
		}
	}
}
