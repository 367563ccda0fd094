package apply

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"sort"

	"golang.org/x/sys/unix"

	"github.com/appliance/appliance/generation"
)

// state is one path as it is, or is to be, on disk, with numeric
// owners. Type "" means absent. A switch installs the new generation's
// states; the journal keeps the states it found, which a rollback
// installs again with the same code.
type state struct {
	Path   string          `json:"path"`
	Type   generation.Type `json:"type,omitempty"`
	Mode   generation.Mode `json:"mode,omitempty"`
	UID    int             `json:"uid,omitempty"`
	GID    int             `json:"gid,omitempty"`
	SHA256 string          `json:"sha256,omitempty"`
	Target string          `json:"target,omitempty"`
}

func (s state) same(o state) bool {
	if s.Type != o.Type {
		return false
	}
	switch s.Type {
	case generation.File:
		return s.SHA256 == o.SHA256 && s.Mode == o.Mode && s.UID == o.UID && s.GID == o.GID
	case generation.Dir:
		return s.Mode == o.Mode && s.UID == o.UID && s.GID == o.GID
	case generation.Symlink:
		return s.Target == o.Target
	}
	return true
}

// inspect says what is at p; a file's content is hashed, and when save
// is set its bytes are copied into the store in the same read.
func (a *applier) inspect(p string, save bool) (state, error) {
	s := state{Path: p}
	n, err := a.fs.at(p)
	if isNotExist(err) {
		return s, nil
	}
	if err != nil {
		return s, err
	}
	defer n.close()
	st, ok, err := n.lstat()
	if err != nil || !ok {
		return s, err
	}
	s.Type = typeOf(st)
	s.Mode, s.UID, s.GID = generation.Mode(st.Mode&0o7777), int(st.Uid), int(st.Gid)
	switch s.Type {
	case generation.File:
		s.SHA256, err = a.hashNode(n, save)
	case generation.Symlink:
		s.Mode, s.UID, s.GID = 0, 0, 0
		s.Target, err = n.readlink()
	case "":
		err = fmt.Errorf("%s is a %s on the gateway; appliance manages only files, folders and links: move it away", p, kindOf(st))
	}
	return s, err
}

func (a *applier) hashNode(n *node, save bool) (string, error) {
	f, err := n.open()
	if err != nil {
		return "", err
	}
	defer f.Close()
	if !save {
		h := sha256.New()
		if _, err := io.Copy(h, f); err != nil {
			return "", fmt.Errorf("reading %s: %w", n.path, err)
		}
		return hex.EncodeToString(h.Sum(nil)), nil
	}
	// The name in the store is only known once the bytes are read.
	tmp, err := a.fs.at(storeDir + "/incoming")
	if err != nil {
		return "", err
	}
	defer tmp.close()
	tmp.durable = false // save flushes the store before the journal
	sum, err := tmp.writeFile(f, "", 0o600, 0, 0)
	if err != nil {
		return "", fmt.Errorf("saving %s into the store: %w", n.path, err)
	}
	if err := unix.Renameat(tmp.dfd(), tmp.name, tmp.dfd(), sum); err != nil {
		return "", fmt.Errorf("saving %s into the store: %w", n.path, err)
	}
	return sum, tmp.sync()
}

// install brings every path to its state: what is to be absent goes
// first, deepest first, then the rest in path order, so a folder is
// there before what it holds. content maps a file's SHA-256 to a path
// on the gateway that holds those bytes. Each change is reported to
// done: the path, and a line for the user.
func (a *applier) install(states []state, content map[string]string, done func(p, msg string)) error {
	sorted := append([]state(nil), states...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Path < sorted[j].Path })
	var order []state
	for i := len(sorted) - 1; i >= 0; i-- {
		if sorted[i].Type == "" {
			order = append(order, sorted[i])
		}
	}
	for _, s := range sorted {
		if s.Type != "" {
			order = append(order, s)
		}
	}
	var paths []string
	for _, s := range order {
		msg, err := a.put(s, content)
		if err != nil {
			return err
		}
		if msg != "" {
			done(s.Path, msg)
		}
		paths = append(paths, s.Path)
	}
	return a.fs.flush(paths)
}

// put brings one path to its state and says what it did ("" when the
// path already was so).
func (a *applier) put(want state, content map[string]string) (string, error) {
	n, err := a.fs.at(want.Path)
	if want.Type == "" && isNotExist(err) {
		return "", nil // its folder is gone, and it with it
	}
	if err != nil {
		return "", err
	}
	defer n.close()
	n.durable = false // install flushes at its end
	if err := n.removeTmp(); err != nil {
		return "", err
	}
	have, err := a.inspect(want.Path, false)
	if err != nil {
		return "", err
	}
	if have.same(want) {
		return "", nil
	}
	// A folder in the way of a file or link must go first (a rename
	// does not replace a folder); one that still holds something is an
	// error, not a loss.
	if have.Type == generation.Dir && want.Type != generation.Dir {
		notEmpty, err := n.remove(true)
		if err != nil {
			return "", err
		}
		if notEmpty && want.Type == "" {
			return "kept " + want.Path + ": the folder is not empty", nil
		}
		if notEmpty {
			return "", fmt.Errorf("%s is a folder with files in it on the gateway, where a %s is to be: move them away", want.Path, want.Type)
		}
		have.Type = ""
	}
	switch want.Type {
	case "":
		_, err = n.remove(false)
		return "removed " + want.Path, err
	case generation.Dir:
		if have.Type != generation.Dir {
			if have.Type != "" {
				if _, err := n.remove(false); err != nil {
					return "", err
				}
			}
			if err := n.mkdir(); err != nil {
				return "", err
			}
		}
		err = n.own(true, uint32(want.Mode), want.UID, want.GID)
	case generation.File:
		if have.Type == generation.File && have.SHA256 == want.SHA256 {
			err = n.own(false, uint32(want.Mode), want.UID, want.GID)
			break
		}
		err = a.writeFrom(n, want, content)
	case generation.Symlink:
		err = n.symlink(want.Target)
	}
	return "installed " + want.Path, err
}

// writeFrom writes a file's content from the gateway path content
// names for it, checking the bytes against the SHA-256 as they pass.
func (a *applier) writeFrom(n *node, want state, content map[string]string) error {
	src, ok := content[want.SHA256]
	if !ok {
		return fmt.Errorf("%s: no copy of its content (SHA-256 %s) on the gateway", want.Path, want.SHA256)
	}
	s, err := a.fs.at(src)
	if err != nil {
		return err
	}
	defer s.close()
	r, err := s.open()
	if err != nil {
		return err
	}
	defer r.Close()
	if _, err := n.writeFile(r, want.SHA256, uint32(want.Mode), want.UID, want.GID); err != nil {
		return fmt.Errorf("%s from %s: %w", want.Path, src, err)
	}
	return nil
}
