package apply

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/appliance/appliance/generation"
)

// Where things are, under generation.Root.
const (
	generationsDir = generation.Root + "/generations"
	storeDir       = generation.Root + "/store"
	stagingDir     = generation.Root + "/staging"
	journalPath    = generation.Root + "/apply.json"
	currentPath    = generation.Root + "/current"
	lockPath       = generation.Root + "/apply.lock"
	// debsDir holds verified copies of the staged packages while dpkg
	// installs them: the staging folder is push's to write.
	debsDir = generation.Root + "/debs"
)

// maxManifest bounds what is read of a manifest or the journal.
const maxManifest = 64 << 20

// Journal phases.
const (
	phaseInstall  = "install"
	phaseActions  = "actions"
	phaseChecks   = "checks"
	phaseRollback = "rollback"
	// phaseConfirm: installed and checked, waiting for push to confirm
	// over a new connection (see confirm.go).
	phaseConfirm = "confirm"
)

// journal is apply.json: an apply under way, from its first change on
// disk to its commit (the journal's removal).
type journal struct {
	Format int `json:"format"`
	// Kind is "switch" or "rollback" (the command that started it).
	Kind    string    `json:"kind"`
	From    int       `json:"from"`
	To      int       `json:"to"`
	Phase   string    `json:"phase"`
	Started time.Time `json:"started"`
	// Restart is set once actions have begun: services may then run the
	// new generation's files, and a rollback must restart them.
	Restart bool `json:"restart,omitempty"`
	// Before is every path the apply changes, as it was.
	Before []state `json:"before"`
	// ConfirmBy is when an unconfirmed switch is undone.
	ConfirmBy time.Time `json:"confirm_by,omitzero"`
}

func genDir(n int) string       { return generationsDir + "/" + strconv.Itoa(n) }
func manifestPath(n int) string { return genDir(n) + "/manifest.json" }

func (a *applier) readFile(p string) ([]byte, error) {
	n, err := a.fs.at(p)
	if err != nil {
		return nil, err
	}
	defer n.close()
	return n.readAll(maxManifest)
}

// writeState replaces one of apply's own files, durably.
func (a *applier) writeState(p string, b []byte, mode uint32) error {
	n, err := a.fs.at(p)
	if err != nil {
		return err
	}
	defer n.close()
	_, err = n.writeFile(bytes.NewReader(b), "", mode, 0, 0)
	return err
}

// remove removes one of apply's own files; durably when it must stay
// removed after a crash.
func (a *applier) remove(p string, durable bool) error {
	n, err := a.fs.at(p)
	if isNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	defer n.close()
	n.durable = durable
	_, err = n.remove(false)
	return err
}

var currentRe = regexp.MustCompile(`^generations/([1-9][0-9]{0,8})$`)

// current is the generation the gateway runs: 0 and nil when none.
func (a *applier) current() (int, *generation.Manifest, error) {
	n, err := a.fs.at(currentPath)
	if isNotExist(err) {
		return 0, nil, nil
	}
	if err != nil {
		return 0, nil, err
	}
	defer n.close()
	if _, ok, err := n.lstat(); err != nil || !ok {
		return 0, nil, err
	}
	t, err := n.readlink()
	if err != nil {
		return 0, nil, err
	}
	m := currentRe.FindStringSubmatch(t)
	if m == nil {
		return 0, nil, fmt.Errorf("%s points at %q, not at generations/N", currentPath, t)
	}
	g, _ := strconv.Atoi(m[1])
	man, err := a.manifest(g)
	return g, man, err
}

func (a *applier) manifest(g int) (*generation.Manifest, error) {
	b, err := a.readFile(manifestPath(g))
	if err != nil {
		return nil, fmt.Errorf("generation %d: %w", g, err)
	}
	m, err := generation.Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", manifestPath(g), err)
	}
	if m.Generation != g {
		return nil, fmt.Errorf("%s says generation %d", manifestPath(g), m.Generation)
	}
	return m, nil
}

// generations lists the numbers in generations/, in order.
func (a *applier) generations() ([]int, error) {
	d, err := a.fs.dir(generationsDir)
	if isNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", generationsDir, err)
	}
	var gs []int
	for _, name := range names {
		if g, err := strconv.Atoi(name); err == nil && g > 0 && strconv.Itoa(g) == name {
			gs = append(gs, g)
		}
	}
	sort.Ints(gs)
	return gs, nil
}

// writeGeneration records m as generations/N/manifest.json.
func (a *applier) writeGeneration(m *generation.Manifest) error {
	b, err := m.Marshal()
	if err != nil {
		return err
	}
	if err := a.fs.mkdirAll(genDir(m.Generation), 0o755); err != nil {
		return err
	}
	return a.writeState(manifestPath(m.Generation), b, 0o644)
}

// removeGeneration removes generations/N, which holds only apply's own
// files.
func (a *applier) removeGeneration(g int) error {
	d, err := a.fs.dir(genDir(g))
	if isNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return err
	}
	for _, name := range names {
		if err := a.remove(genDir(g)+"/"+name, false); err != nil {
			return err
		}
	}
	n, err := a.fs.at(genDir(g))
	if err != nil {
		return err
	}
	defer n.close()
	_, err = n.remove(true)
	return err
}

// setCurrent points current at generation g (none when 0) by renaming
// a new link over it.
func (a *applier) setCurrent(g int) error {
	n, err := a.fs.at(currentPath)
	if err != nil {
		return err
	}
	defer n.close()
	if g == 0 {
		_, err = n.remove(false)
		return err
	}
	return n.symlink("generations/" + strconv.Itoa(g))
}

func (a *applier) readJournal() (*journal, error) {
	b, err := a.readFile(journalPath)
	if isNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var j journal
	if err := json.Unmarshal(b, &j); err != nil {
		return nil, fmt.Errorf("%s: %w", journalPath, err)
	}
	if j.Format != 1 {
		return nil, fmt.Errorf("%s: format %d; this appliance-apply reads format 1", journalPath, j.Format)
	}
	return &j, nil
}

func (a *applier) writeJournal(j *journal) error {
	b, err := json.MarshalIndent(j, "", " ")
	if err != nil {
		return err
	}
	if err := a.writeState(journalPath, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("writing the journal: %w", err)
	}
	return nil
}

// lock keeps a second appliance-apply out until this one exits.
func (a *applier) lock() error {
	n, err := a.fs.at(lockPath)
	if err != nil {
		return err
	}
	defer n.close()
	fd, err := unix.Openat(n.dfd(), n.name, unix.O_RDWR|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return n.err("open", err)
	}
	if err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		unix.Close(fd)
		return fmt.Errorf("another appliance-apply is running on this gateway (%s is locked); wait for it to finish", lockPath)
	}
	a.lockFile = os.NewFile(uintptr(fd), lockPath)
	return nil
}

// prepare makes apply's folders when they are missing.
func (a *applier) prepare() error {
	for _, d := range []struct {
		path string
		mode uint32
	}{{generation.Root, 0o755}, {generationsDir, 0o755}, {storeDir, 0o700}} {
		if err := a.fs.mkdirAll(d.path, d.mode); err != nil {
			return fmt.Errorf("making %s: %w", d.path, err)
		}
	}
	return nil
}
