package desired

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"os"
	"regexp"
	"sort"
	"time"

	"github.com/appliance/appliance/images/mbr"
	"github.com/appliance/appliance/keys"
	"github.com/appliance/appliance/modules"
	"github.com/appliance/appliance/state"
)

// Resolved is the desired gateway with every file's final bytes.
type Resolved struct {
	*Gateway
	// Files are the gateway's files with their bytes, by path; Dirs its
	// folders, the OTA tree's among them.
	Files []File
	Dirs  []Dir
	// Disk identifies the gateway's disk.
	Disk Disk
	// Firmware and Nodes are the nodes' signed firmware and flash
	// bundles; the firmware's OTA trees are among Files.
	Firmware []*Firmware
	Nodes    []Node
	// Unflashable are nodes that get no bundle: their certificate was
	// revoked and not renewed (appliance pki renew makes them a new one).
	Unflashable []string
}

// File is a module's file with its final bytes.
type File struct {
	modules.File
	Data []byte
}

// Disk is the identity of the gateway's disk: derived from the site's
// name and its CA, so it is stable across builds yet differs between
// sites (and between two sites that share a name).
type Disk struct {
	// ID is the MBR disk identifier; the partitions' PARTUUIDs follow.
	ID uint32
	// RootUUID is the root file system's UUID, HashSeed its directory
	// hash seed, BootVolumeID the FAT volume's serial number.
	RootUUID, HashSeed [16]byte
	BootVolumeID       uint32
}

// BootPartUUID and RootPartUUID are the partitions' PARTUUIDs, as the
// kernel names them: the root is found by them, and fstab mounts them.
func (d Disk) BootPartUUID() string { return mbr.PartUUID(d.ID, 1) }

// RootPartUUID: see BootPartUUID.
func (d Disk) RootPartUUID() string { return mbr.PartUUID(d.ID, 2) }

// RootFSUUID is the root file system's UUID as blkid and root=UUID=
// write it.
func (d Disk) RootFSUUID() string {
	u := d.RootUUID
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}

// DiskOf derives the disk identity of a site from its name and CA.
func DiskOf(site string, caCert []byte) Disk {
	sum := sha256.Sum256(append([]byte("appliance disk "+site+"\n"), caCert...))
	var d Disk
	d.ID = binary.BigEndian.Uint32(sum[0:4])
	copy(d.RootUUID[:], sum[4:20])
	d.RootUUID[6] = d.RootUUID[6]&0x0f | 0x40 // a version 4 UUID's marks
	d.RootUUID[8] = d.RootUUID[8]&0x3f | 0x80
	seed := sha256.Sum256(sum[:])
	copy(d.HashSeed[:], seed[:16])
	d.BootVolumeID = binary.BigEndian.Uint32(seed[16:20])
	return d
}

var placeholder = regexp.MustCompile(`@@(state|disk):([A-Za-z0-9._/-]+)@@`)

// Resolve reads what the files need from the state: key material and
// secrets, placeholders in configs, shipped and host keyrings; it signs
// the nodes' firmware, puts its OTA tree among the files and makes every
// node's bundle. Build and push install exactly these bytes. now dates
// what is signed (a new OTA manifest lasts the support period from it).
// Resolve writes nothing: the caller records the releases it published
// (Firmware[i].Release) in the state.
func (g *Gateway) Resolve(st *state.Store, now time.Time) (*Resolved, error) {
	ca, err := st.ReadFile("pki/ca.crt")
	if err != nil {
		return nil, err
	}
	r := &Resolved{Gateway: g, Disk: DiskOf(g.Name, ca)}
	for _, f := range g.Files {
		data, err := r.content(f, st)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.Path, err)
		}
		r.Files = append(r.Files, File{File: f, Data: data})
	}
	r.Dirs = append([]Dir(nil), g.Dirs...)
	if err := r.nodes(st, now); err != nil {
		return nil, err
	}
	sort.SliceStable(r.Files, func(i, j int) bool { return r.Files[i].Path < r.Files[j].Path })
	sort.SliceStable(r.Dirs, func(i, j int) bool { return r.Dirs[i].Path < r.Dirs[j].Path })
	return r, nil
}

func (r *Resolved) content(f modules.File, st *state.Store) ([]byte, error) {
	switch f.Source.Kind {
	case modules.Inline:
		return f.Content, nil
	case modules.FromState:
		return st.ReadFile(f.Source.Name)
	case modules.FromKeyring:
		return keys.Read(f.Source.Name)
	case modules.FromHost:
		return os.ReadFile(f.Source.Name)
	case modules.Expand:
	default:
		return nil, fmt.Errorf("unknown source %v", f.Source)
	}
	var err error
	out := placeholder.ReplaceAllFunc(f.Content, func(m []byte) []byte {
		sm := placeholder.FindSubmatch(m)
		v, verr := r.value(string(sm[1]), string(sm[2]), st)
		if verr != nil && err == nil {
			err = verr
		}
		return v
	})
	return out, err
}

func (r *Resolved) value(space, name string, st *state.Store) ([]byte, error) {
	if space == "disk" {
		switch name {
		case "boot":
			return []byte(r.Disk.BootPartUUID()), nil
		case "root":
			return []byte(r.Disk.RootPartUUID()), nil
		case "rootfs":
			return []byte(r.Disk.RootFSUUID()), nil
		}
		return nil, fmt.Errorf("no disk value %q", name)
	}
	b, err := st.ReadFile(name)
	return bytes.TrimSpace(b), err
}
