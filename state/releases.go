package state

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"regexp"

	"github.com/appliance/appliance/internal/atomicfile"
)

// ManifestKeyPublic is the OTA manifest key's public half in ota/, which
// the nodes' identity images carry.
const ManifestKeyPublic = "manifest-ecdsa-p256" + publicSuffixed

// Release is the OTA manifest of a firmware that a build or push last
// published, kept in releases/ so that the next manifest's version goes
// on from it (nodes refuse a version they have passed).
type Release struct {
	Manifest, Signature []byte
}

var firmwareName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,32}$`)

func releasePaths(s *Store, fw string) (string, string, error) {
	if !firmwareName.MatchString(fw) {
		return "", "", fmt.Errorf("%q is not a firmware name", fw)
	}
	p := s.path("releases", fw+".manifest.json")
	return p, p + ".sig", nil
}

// Release returns the firmware's last published release, or nil when
// there is none.
func (s *Store) Release(fw string) (*Release, error) {
	mp, sp, err := releasePaths(s, fw)
	if err != nil {
		return nil, err
	}
	m, err := os.ReadFile(mp)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	sig, err := os.ReadFile(sp)
	if err != nil {
		return nil, fmt.Errorf("the release of %s has no signature (%w); restore releases/ from your backup", fw, err)
	}
	return &Release{Manifest: m, Signature: sig}, nil
}

// SaveRelease records a firmware's release once it is published.
func (s *Store) SaveRelease(fw string, r Release) error {
	mp, sp, err := releasePaths(s, fw)
	if err != nil {
		return err
	}
	if err := mkdirPrivate(s.path("releases")); err != nil {
		return err
	}
	// The signature first: a manifest is never left without its own.
	if err := atomicfile.WriteFile(sp, r.Signature, 0o644); err != nil {
		return err
	}
	return atomicfile.WriteFile(mp, r.Manifest, 0o644)
}
