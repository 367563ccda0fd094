package push

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"time"

	"github.com/appliance/appliance/generation"
	"golang.org/x/crypto/ssh"
)

// Gateway is a connection to one gateway's generations. Root is where
// the gateway's file system is ("/"; a folder in tests, with the apply
// program told so); ApplyArgs are more arguments for the apply program
// (tests give it a stand-in systemctl).
type Gateway struct {
	*Conn
	Root      string
	ApplyArgs []string
}

func (g *Gateway) path(p string) string {
	if g.Root == "" {
		return p
	}
	return path.Join(g.Root, p)
}

func (g *Gateway) appliance(p string) string { return g.path(path.Join(generation.Root, p)) }

// Current reads the generation the gateway runs; nil when appliance
// manages nothing on it yet.
func (g *Gateway) Current() (*generation.Manifest, error) {
	f, err := g.SFTP.Open(g.appliance("current/manifest.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the gateway's generation: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 64<<20))
	if err != nil {
		return nil, err
	}
	m, err := generation.Parse(b)
	if err != nil {
		return nil, fmt.Errorf("the gateway's current generation: %w", err)
	}
	return m, nil
}

// Upload is what a switch needs on the gateway.
type Upload struct {
	// Current is the generation the gateway runs (nil: none): what its
	// files hold need not be sent.
	Current  *generation.Manifest
	Manifest *generation.Manifest
	// Blobs are the bytes of the files the manifest names, by SHA-256.
	Blobs map[string][]byte
	// Debs are local .deb files of the packages to install, by name.
	Debs map[string]string
	// Apply is the SHA-256 of the new apply program among Blobs.
	Apply string
}

// Staged says what Stage sent.
type Staged struct {
	Files, Bytes int64
	// Reused are the blobs the gateway had already (a resumed push).
	Reused int
}

// Stage uploads what the gateway lacks of the new generation into its
// staging folder: the blobs of added and changed files that neither the
// store nor the staging folder holds yet, the packages to add, the apply
// program, and last the manifest. Each file is written under a
// temporary name and renamed once whole, so a cut upload resumes.
func (g *Gateway) Stage(ctx context.Context, d *generation.Diff, u Upload) (Staged, error) {
	var st Staged
	staging := g.appliance("staging")
	for _, dir := range []string{staging, path.Join(staging, "blobs"), path.Join(staging, "debs")} {
		if err := g.SFTP.MkdirAll(dir); err != nil {
			return st, fmt.Errorf("making %s on the gateway: %w", dir, err)
		}
	}
	g.SFTP.Chmod(staging, 0o700)
	// The gateway copies what its current files hold (apply looks for a
	// blob's content there first), and runs the apply program it has if
	// it is the one wanted.
	have := map[string]bool{}
	if u.Current != nil {
		for _, e := range u.Current.Entries {
			if e.Type == generation.File {
				have[e.SHA256] = true
			}
		}
	}
	var need []string
	if !installed(u.Current, u.Apply) {
		need = append(need, u.Apply)
	}
	for _, e := range append(append([]generation.Entry(nil), d.Added...), d.Changed...) {
		if e.Type == generation.File {
			need = append(need, e.SHA256)
		}
	}
	sent := map[string]bool{}
	for _, sum := range need {
		if sent[sum] {
			continue
		}
		sent[sum] = true
		if err := ctx.Err(); err != nil {
			return st, err
		}
		data, ok := u.Blobs[sum]
		if !ok {
			return st, fmt.Errorf("no bytes for blob %s", sum)
		}
		if (have[sum] && sum != u.Apply) || g.has(path.Join(staging, "blobs", sum), int64(len(data))) || g.has(g.appliance("store/"+sum), int64(len(data))) {
			st.Reused++
			continue
		}
		mode := os.FileMode(0o600)
		if sum == u.Apply {
			mode = 0o700
		}
		if err := g.put(path.Join(staging, "blobs", sum), bytes.NewReader(data), mode); err != nil {
			return st, err
		}
		st.Files++
		st.Bytes += int64(len(data))
	}
	if fi, err := g.SFTP.Stat(path.Join(staging, "blobs", u.Apply)); err == nil && fi.Mode().Perm() != 0o700 && !installed(u.Current, u.Apply) {
		g.SFTP.Chmod(path.Join(staging, "blobs", u.Apply), 0o700)
	}
	for _, p := range d.Packages {
		local, ok := u.Debs[p.Name]
		if !ok {
			return st, fmt.Errorf("package %s %s is not in the cache; run appliance build first, which downloads it", p.Name, p.Version)
		}
		remote := path.Join(staging, "debs", p.Name+".deb")
		fi, err := os.Stat(local)
		if err != nil {
			return st, err
		}
		if g.has(remote, fi.Size()) {
			st.Reused++
			continue
		}
		f, err := os.Open(local)
		if err != nil {
			return st, err
		}
		err = g.put(remote, f, 0o600)
		f.Close()
		if err != nil {
			return st, err
		}
		st.Files++
		st.Bytes += fi.Size()
	}
	data, err := u.Manifest.Marshal()
	if err != nil {
		return st, err
	}
	return st, g.put(path.Join(staging, "manifest.json"), bytes.NewReader(data), 0o600)
}

func (g *Gateway) has(p string, size int64) bool {
	fi, err := g.SFTP.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Size() == size
}

// put writes a file on the gateway through a temporary one.
func (g *Gateway) put(p string, r io.Reader, mode os.FileMode) error {
	var rnd [6]byte
	rand.Read(rnd[:])
	tmp := path.Join(path.Dir(p), ".tmp-"+hex.EncodeToString(rnd[:]))
	f, err := g.SFTP.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
	if err != nil {
		return fmt.Errorf("writing %s on the gateway: %w", p, err)
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		g.SFTP.Remove(tmp)
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		g.SFTP.Remove(tmp)
		return fmt.Errorf("writing %s on the gateway: %w", p, err)
	}
	if err := f.Close(); err != nil {
		g.SFTP.Remove(tmp)
		return err
	}
	if err := g.SFTP.PosixRename(tmp, p); err != nil {
		g.SFTP.Remove(tmp)
		return fmt.Errorf("renaming %s on the gateway: %w", p, err)
	}
	return nil
}

// ErrRolledBack is an apply that did not keep the new generation.
var ErrRolledBack = errors.New("the gateway stayed on its previous generation")

// installed reports whether the gateway's current generation has the
// apply program of that digest.
func installed(cur *generation.Manifest, apply string) bool {
	if cur == nil {
		return false
	}
	for _, e := range cur.Entries {
		if e.Path == generation.ApplyPath {
			return e.SHA256 == apply
		}
	}
	return false
}

// Switch runs the new generation's apply program — the gateway's own
// when it is that one, else the staged one — which switches the gateway
// to the staged generation; each event it reports goes to events. An
// error wrapping ErrRolledBack means the gateway is on its previous
// generation and says why.
//
// With confirmWithin, the gateway commits the new generation only once
// Confirm reaches it over a new connection within that long, and
// returns to the old one by itself otherwise: Switch then reports
// awaiting.
func (g *Gateway) Switch(ctx context.Context, cur *generation.Manifest, apply string, confirmWithin time.Duration, events func(generation.Event)) (awaiting bool, err error) {
	prog := g.appliance("staging/blobs/" + apply)
	if installed(cur, apply) {
		prog = g.path(generation.ApplyPath)
	}
	var extra []string
	if confirmWithin > 0 {
		extra = append(extra, fmt.Sprintf("--confirm-within=%ds", int(confirmWithin/time.Second)))
	}
	err = g.apply(ctx, prog, "switch", extra, func(ev generation.Event) {
		if ev.Step == "confirm" {
			awaiting = true
		}
		if events != nil {
			events(ev)
		}
	})
	return awaiting && err == nil, err
}

// Confirm commits a switch that waits for confirmation, over a new
// connection to target: one that the new generation let in.
func (g *Gateway) Confirm(ctx context.Context, target Target, events func(generation.Event)) error {
	c, err := Dial(ctx, target)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnconfirmed, err)
	}
	defer c.Close()
	ng := &Gateway{Conn: c, Root: g.Root, ApplyArgs: g.ApplyArgs}
	return ng.apply(ctx, ng.path(generation.ApplyPath), "confirm", nil, events)
}

// ErrUnconfirmed is a switch push could not confirm: no new connection
// got through to the gateway after it.
var ErrUnconfirmed = errors.New("the gateway took no new connection after the switch")

// Rollback returns the gateway to its previous generation.
func (g *Gateway) Rollback(ctx context.Context, events func(generation.Event)) error {
	return g.apply(ctx, g.path(generation.ApplyPath), "rollback", nil, events)
}

func (g *Gateway) apply(ctx context.Context, prog, verb string, extra []string, events func(generation.Event)) error {
	argv := []string{prog, verb}
	if g.Root != "" {
		argv = append(argv, "--root", g.Root)
	}
	argv = append(append(argv, g.ApplyArgs...), extra...)
	pr, pw := io.Pipe()
	var failed []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			var ev generation.Event
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				ev = generation.Event{Step: "output", Message: sc.Text()}
			}
			if ev.Failed {
				failed = append(failed, ev.Message)
			}
			if events != nil {
				events(ev)
			}
		}
		io.Copy(io.Discard, pr)
	}()
	err := g.Run(ctx, argv, pw)
	pw.Close()
	<-done
	if err != nil {
		if len(failed) > 0 {
			return fmt.Errorf("%w: %s", ErrRolledBack, strings.Join(failed, "; "))
		}
		var missing *ssh.ExitMissingError
		if errors.As(err, &missing) || errors.Is(err, io.EOF) || errors.Is(err, context.Canceled) {
			return fmt.Errorf("%w during the %s: the gateway finishes it or rolls it back by itself; appliance generations shows which", ErrConnectionLost, verb)
		}
		return fmt.Errorf("%s on the gateway: %w", verb, err)
	}
	return nil
}

// ErrConnectionLost is a connection that ended while the apply program
// ran.
var ErrConnectionLost = errors.New("the connection to the gateway was lost")

// Generations lists the generations the gateway keeps.
func (g *Gateway) Generations(ctx context.Context) (*generation.Listing, error) {
	var out bytes.Buffer
	argv := []string{g.path(generation.ApplyPath), "list"}
	if g.Root != "" {
		argv = append(argv, "--root", g.Root)
	}
	if err := g.Run(ctx, argv, &out); err != nil {
		return nil, fmt.Errorf("listing the generations: %w", err)
	}
	var l generation.Listing
	if err := json.Unmarshal(out.Bytes(), &l); err != nil {
		return nil, fmt.Errorf("the gateway's list of generations: %w", err)
	}
	return &l, nil
}
