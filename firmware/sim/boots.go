package sim

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/appliance/appliance/internal/atomicfile"
)

// BootsFile is the file in the sim's folder that keeps each node's boot
// counter, as a node keeps it in NVS.
const BootsFile = "boots.json"

type bootsFile struct {
	Format int               `json:"format"`
	Boots  map[string]uint32 `json:"boots"`
}

// Boots is the sim's record of boot counters, locked while a sim runs:
// two sims of one node at once would share a boot and so collide in
// ingest's duplicate table.
type Boots struct {
	dir  string
	lock *os.File
	rec  bootsFile
}

// OpenBoots opens (creating it) the sim's folder and locks it.
func OpenBoots(dir string) (*Boots, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("the sim's folder: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("the sim's folder: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("another appliance sim is using %s; stop it, or give this one another folder with --sim-dir", dir)
		}
		return nil, err
	}
	b := &Boots{dir: dir, lock: f, rec: bootsFile{Format: 1, Boots: map[string]uint32{}}}
	data, err := os.ReadFile(filepath.Join(dir, BootsFile))
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		b.Close()
		return nil, err
	default:
		if err := json.Unmarshal(data, &b.rec); err != nil || b.rec.Format != 1 {
			b.Close()
			return nil, fmt.Errorf("%s is damaged (%v); delete it, and the nodes start from new boot numbers", filepath.Join(dir, BootsFile), err)
		}
		if b.rec.Boots == nil {
			b.rec.Boots = map[string]uint32{}
		}
	}
	return b, nil
}

// Next counts a boot of each node and returns its boot number. A node
// without a record starts from a random number, as docs/wire.md allows:
// a counter that started again from 1 (its record lost with a rebuilt
// output folder) could repeat a boot ingest still remembers, and its
// readings would be dropped as duplicates.
func (b *Boots) Next(names []string) (map[string]uint32, error) {
	out := make(map[string]uint32, len(names))
	for _, n := range names {
		v, ok := b.rec.Boots[n]
		if ok {
			v++
		} else {
			var r [4]byte
			if _, err := rand.Read(r[:]); err != nil {
				return nil, err
			}
			// Room for many boots before the counter wraps.
			v = binary.LittleEndian.Uint32(r[:]) >> 1
		}
		b.rec.Boots[n] = v
		out[n] = v
	}
	data, err := json.MarshalIndent(b.rec, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := atomicfile.WriteFile(filepath.Join(b.dir, BootsFile), append(data, '\n'), 0o644); err != nil {
		return nil, fmt.Errorf("recording the boots: %w", err)
	}
	return out, nil
}

// Close releases the lock.
func (b *Boots) Close() error {
	if b.lock == nil {
		return nil
	}
	err := b.lock.Close()
	b.lock = nil
	return err
}
