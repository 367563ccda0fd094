package keys

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/appliance/appliance/spec"
)

// TestShippedKeyrings parses every shipped keyring and checks that it
// holds exactly the documented primary keys.
func TestShippedKeyrings(t *testing.T) {
	for name, k := range Shipped {
		b, err := Read(name)
		if err != nil {
			t.Fatal(err)
		}
		var ring openpgp.EntityList
		if strings.HasSuffix(k.File, ".asc") {
			ring, err = openpgp.ReadArmoredKeyRing(bytes.NewReader(b))
		} else {
			ring, err = openpgp.ReadKeyRing(bytes.NewReader(b))
		}
		if err != nil {
			t.Errorf("%s: %v", k.File, err)
			continue
		}
		got := map[string]bool{}
		for _, e := range ring {
			got[strings.ToUpper(fmt.Sprintf("%x", e.PrimaryKey.Fingerprint))] = true
		}
		for _, fp := range k.Fingerprints {
			if !got[fp] {
				t.Errorf("%s lacks key %s", k.File, fp)
			}
		}
		// The README documents every fingerprint.
		readme, _ := os.ReadFile("README.md")
		for _, fp := range k.Fingerprints {
			if !strings.Contains(string(readme), fp) {
				t.Errorf("README.md does not document %s (%s)", fp, k.File)
			}
		}
	}
}

// TestSpecNamesShipped: every keyring a spec can default to is shipped,
// and the examples' keyring files are these very files.
func TestSpecNamesShipped(t *testing.T) {
	for _, n := range spec.ShippedKeyringNames {
		if _, err := Read(n); err != nil {
			t.Error(err)
		}
	}
	matches, _ := filepath.Glob("*.asc")
	pgp, _ := filepath.Glob("*.pgp")
	if len(matches)+len(pgp) != len(Shipped) {
		t.Errorf("keys/ holds %d key files, but %d are registered in Shipped", len(matches)+len(pgp), len(Shipped))
	}
}
