package desired

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/appliance/appliance/keys"
	"github.com/appliance/appliance/modules"
	"github.com/appliance/appliance/state"
)

// File is a module's file with its final bytes.
type File struct {
	modules.File
	Data []byte
}

var placeholder = regexp.MustCompile(`@@state:([A-Za-z0-9._/-]+)@@`)

// Files resolves every module's files against the state: key material and
// secrets are read from it, placeholders in configs filled in, shipped
// and host keyrings read. build and push install exactly these bytes.
func (g *Gateway) Files(st *state.Store) ([]File, error) {
	var out []File
	for _, f := range g.Modules.Files() {
		data, err := resolve(f, st)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.Path, err)
		}
		out = append(out, File{File: f, Data: data})
	}
	return out, nil
}

func resolve(f modules.File, st *state.Store) ([]byte, error) {
	switch {
	case strings.HasPrefix(f.From, "state:"):
		return st.ReadFile(strings.TrimPrefix(f.From, "state:"))
	case strings.HasPrefix(f.From, "keyring:"):
		return keys.Read(strings.TrimPrefix(f.From, "keyring:"))
	case strings.HasPrefix(f.From, "host:"):
		return os.ReadFile(strings.TrimPrefix(f.From, "host:"))
	case f.From != "":
		return nil, fmt.Errorf("unknown source %q", f.From)
	case !f.Expand:
		return f.Content, nil
	}
	var err error
	out := placeholder.ReplaceAllFunc(f.Content, func(m []byte) []byte {
		rel := string(placeholder.FindSubmatch(m)[1])
		b, rerr := st.ReadFile(rel)
		if rerr != nil && err == nil {
			err = rerr
		}
		return bytes.TrimSpace(b)
	})
	return out, err
}

// WriteTree writes the resolved files, folders and links under root, as
// they would be on the gateway, for tests that run the real programs on
// this machine. Ownership is left to the caller: only root may set it.
func (g *Gateway) WriteTree(root string, files []File) error {
	for _, c := range g.Modules.Contributions {
		for _, d := range c.Dirs {
			if err := os.MkdirAll(filepath.Join(root, d.Path), d.Mode); err != nil {
				return err
			}
		}
	}
	for _, f := range files {
		p := filepath.Join(root, f.Path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, f.Data, f.Mode); err != nil {
			return err
		}
		if err := os.Chmod(p, f.Mode); err != nil {
			return err
		}
	}
	for _, c := range g.Modules.Contributions {
		for _, l := range c.Symlinks {
			p := filepath.Join(root, l.Path)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
			os.Remove(p)
			if err := os.Symlink(l.Target, p); err != nil {
				return err
			}
		}
	}
	return nil
}
