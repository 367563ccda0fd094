package testenv

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/appliance/appliance/images/apt"
	"github.com/appliance/appliance/images/cache"
	"github.com/appliance/appliance/images/deb"
	"github.com/appliance/appliance/keys"
)

// DebianPython is Debian's interpreter. The python3 first on PATH may be
// another installation, without Debian's python3-cryptography.
const DebianPython = "/usr/bin/python3"

// esptoolPackages come from Debian trixie: bookworm has no esptool, nor
// python3-intelhex, and its python3-serial is not installed by default.
// All are pure Python (architecture all), so trixie's run on bookworm's
// interpreter; python3-cryptography, which is not pure Python, comes
// from the host (scripts/deps).
var esptoolPackages = []string{"esptool", "python3-ecdsa", "python3-serial", "python3-intelhex"}

// Esptool is Debian trixie's esptool (esptool, espsecure), unpacked from
// packages fetched through appliance's own apt client and verified
// against the Debian archive keyring that appliance ships: no trust is
// added to the host for it.
type Esptool struct {
	// Root holds the packages' usr/ tree.
	Root string
}

var esptoolOnce struct {
	sync.Once
	e   *Esptool
	err error
}

// RequireEsptool fetches (once per cache) and unpacks trixie's esptool
// and returns it, or fails the test: a test that needs esptool is never
// skipped for want of it.
func RequireEsptool(t testing.TB) *Esptool {
	t.Helper()
	if out, err := exec.Command(DebianPython, "-c", "import cryptography").CombinedOutput(); err != nil {
		t.Fatalf("%s with python3-cryptography is needed to run esptool (%v: %s); run scripts/deps (as root) to install it", DebianPython, err, strings.TrimSpace(string(out)))
	}
	esptoolOnce.Do(func() {
		esptoolOnce.e, esptoolOnce.err = fetchEsptool(context.Background())
	})
	if esptoolOnce.err != nil {
		t.Fatalf("getting Debian trixie's esptool: %v", esptoolOnce.err)
	}
	return esptoolOnce.e
}

// Command is a command running one of the package's programs: tool is
// "esptool" or "espsecure".
func (e *Esptool) Command(tool string, args ...string) *exec.Cmd {
	cmd := exec.Command(DebianPython, append([]string{"-m", tool}, args...)...)
	cmd.Env = append(os.Environ(),
		"PYTHONPATH="+filepath.Join(e.Root, "usr/lib/python3/dist-packages"),
		"PYTHONNOUSERSITE=1",
		"PYTHONDONTWRITEBYTECODE=1",
	)
	return cmd
}

// Run runs a program to its end and returns its combined output and
// exit code; a program that cannot start fails the test.
func (e *Esptool) Run(t testing.TB, tool string, args ...string) (string, int) {
	t.Helper()
	out, err := e.Command(tool, args...).CombinedOutput()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		return string(out), ee.ExitCode()
	case err != nil:
		t.Fatalf("running %s: %v", tool, err)
	}
	return string(out), 0
}

// MustRun is Run that fails the test unless the program exits 0.
func (e *Esptool) MustRun(t testing.TB, tool string, args ...string) string {
	t.Helper()
	out, code := e.Run(t, tool, args...)
	if code != 0 {
		t.Fatalf("%s %s: exit %d\n%s", tool, strings.Join(args, " "), code, out)
	}
	return out
}

func fetchEsptool(ctx context.Context) (*Esptool, error) {
	ca, err := cache.Default()
	if err != nil {
		return nil, err
	}
	kr, err := keys.Read("debian-archive")
	if err != nil {
		return nil, err
	}
	ring, err := apt.ReadKeyring(kr)
	if err != nil {
		return nil, err
	}
	src := &apt.Source{Name: "debian-trixie", URL: "http://deb.debian.org/debian", Suite: "trixie", Components: []string{"main"}, Keyring: ring}
	client := &apt.Client{Store: ca, Retries: 3}
	rel, err := client.Release(ctx, src)
	if err != nil {
		return nil, err
	}
	// arm64's index: the one the gateway builds read, so usually cached;
	// it lists the architecture-all packages too.
	index, err := client.Packages(ctx, src, rel, "arm64")
	if err != nil {
		return nil, err
	}
	var pkgs []*apt.Package
	for _, name := range esptoolPackages {
		p := pick(index, name)
		if p == nil {
			return nil, fmt.Errorf("trixie's index has no package %s", name)
		}
		pkgs = append(pkgs, p)
	}
	key := sha256.New()
	for _, p := range pkgs {
		fmt.Fprintf(key, "%s %s\n", p.Name, p.SHA256)
	}
	root := filepath.Join(ca.Dir, "esptool", hex.EncodeToString(key.Sum(nil))[:16])
	if _, err := os.Stat(filepath.Join(root, ".complete")); err == nil {
		return &Esptool{Root: root}, nil
	}
	tmp, err := os.MkdirTemp(filepath.Dir(root), ".tmp-")
	if err != nil {
		if err := os.MkdirAll(filepath.Dir(root), 0o755); err != nil {
			return nil, err
		}
		if tmp, err = os.MkdirTemp(filepath.Dir(root), ".tmp-"); err != nil {
			return nil, err
		}
	}
	defer os.RemoveAll(tmp)
	for _, p := range pkgs {
		if err := fetchDeb(ctx, client, ca, p); err != nil {
			return nil, fmt.Errorf("%s: %w", p.ID(), err)
		}
		if err := unpackDeb(ca.Path("debs", p.SHA256), tmp); err != nil {
			return nil, fmt.Errorf("unpacking %s: %w", p.ID(), err)
		}
	}
	if err := os.WriteFile(filepath.Join(tmp, ".complete"), nil, 0o644); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, root); err != nil && !exists(filepath.Join(root, ".complete")) {
		return nil, err
	}
	return &Esptool{Root: root}, nil
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// pick is the package of that name with the highest version (the archive
// usually has one).
func pick(index []*apt.Package, name string) *apt.Package {
	var found []*apt.Package
	for _, p := range index {
		if p.Name == name {
			found = append(found, p)
		}
	}
	if len(found) == 0 {
		return nil
	}
	sort.Slice(found, func(i, j int) bool { return found[i].Version < found[j].Version })
	return found[len(found)-1]
}

// fetchDeb puts the package's .deb in the cache unless it is there,
// keeping it only once its SHA-256 matches the verified index.
func fetchDeb(ctx context.Context, c *apt.Client, ca *cache.Cache, p *apt.Package) error {
	if ca.Has("debs", p.SHA256) {
		return ca.Verify("debs", p.SHA256)
	}
	var w *cache.Writer
	var werr error
	err := c.Download(ctx, p.URL(), p.Size, func() io.Writer {
		if w != nil {
			w.Abort()
		}
		w, werr = ca.Create("debs", p.SHA256)
		if werr != nil {
			return io.Discard
		}
		return w
	})
	if err == nil {
		err = werr
	}
	if err != nil {
		if w != nil {
			w.Abort()
		}
		return err
	}
	return w.Commit()
}

// unpackDeb writes a package's regular files and symbolic links under
// dir; a member whose path leaves dir is refused.
func unpackDeb(debPath, dir string) error {
	f, err := os.Open(debPath)
	if err != nil {
		return err
	}
	defer f.Close()
	p, err := deb.Read(f)
	if err != nil {
		return err
	}
	return p.Data(func(h *tar.Header, body io.Reader) error {
		name := path.Clean("/" + h.Name)
		if name == "/" {
			return nil
		}
		dst := filepath.Join(dir, filepath.FromSlash(name))
		switch h.Typeflag {
		case tar.TypeDir:
			return os.MkdirAll(dst, 0o755)
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				return err
			}
			out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(h.Mode&0o755)|0o600)
			if err != nil {
				return err
			}
			if _, err := io.Copy(out, body); err != nil {
				out.Close()
				return err
			}
			return out.Close()
		case tar.TypeSymlink:
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				return err
			}
			return os.Symlink(h.Linkname, dst)
		}
		return nil
	})
}
