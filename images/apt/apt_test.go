package apt

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp/clearsign"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/appliance/appliance/images/fixture"
	"github.com/appliance/appliance/keys"
)

func TestShippedKeyringsRead(t *testing.T) {
	for name, k := range keys.Shipped {
		b, err := keys.Read(name)
		if err != nil {
			t.Fatal(err)
		}
		kr, err := ReadKeyring(b)
		if err != nil {
			t.Errorf("%s (%s): %v", name, k.File, err)
			continue
		}
		got := strings.Join(kr.Fingerprints(), " ")
		for _, fp := range k.Fingerprints {
			if !strings.Contains(got, fp) {
				t.Errorf("%s: fingerprint %s missing from %s", name, fp, got)
			}
		}
	}
}

// TestAnySignature: an archive signed by several keys verifies with a
// keyring that knows only one of them, whichever signature comes first.
func TestAnySignature(t *testing.T) {
	a, _ := fixture.NewKey("a")
	b, _ := fixture.NewKey("b")
	text := "Suite: trixie\nCodename: trixie\nSHA256:\n " + strings.Repeat("0", 64) + " 1 main/binary-arm64/Packages\n"
	var signed bytes.Buffer
	w, err := clearsign.EncodeMulti(&signed, []*packet.PrivateKey{a.Entity.PrivateKey, b.Entity.PrivateKey}, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, text)
	w.Close()
	for _, k := range []*fixture.Key{a, b} {
		for _, armored := range []bool{false, true} {
			kr, err := ReadKeyring(k.Public(armored))
			if err != nil {
				t.Fatal(err)
			}
			got, signer, err := verifyInRelease(signed.Bytes(), kr, time.Now())
			if err != nil || string(got) != text || signer != kr.Fingerprints()[0] {
				t.Errorf("keyring of one signer (armored %v): %q, %s, %v", armored, got, signer, err)
			}
		}
	}
	c, _ := fixture.NewKey("c")
	kr, _ := ReadKeyring(c.Public(false))
	if _, _, err := verifyInRelease(signed.Bytes(), kr, time.Now()); err == nil || !strings.Contains(err.Error(), "signed by no key of the keyring") {
		t.Errorf("unknown signers: %v", err)
	}
}

// TestWrongSuite: a correctly signed Release of another suite (a replay
// of bookworm's as trixie's) is refused.
func TestWrongSuite(t *testing.T) {
	k, _ := fixture.NewKey("k")
	dir := t.TempDir()
	r := &fixture.Repo{Suite: "bookworm", Key: k}
	if _, err := r.Write(dir); err != nil {
		t.Fatal(err)
	}
	os.Rename(filepath.Join(dir, "dists/bookworm"), filepath.Join(dir, "dists/trixie"))
	kr, _ := ReadKeyring(k.Public(false))
	c := &Client{}
	_, err := c.Release(context.Background(), &Source{Name: "d", URL: "file://" + dir, Suite: "trixie", Components: []string{"main"}, Keyring: kr})
	if err == nil || !strings.Contains(err.Error(), `is signed for suite "bookworm"`) {
		t.Errorf("a bookworm Release served as trixie: %v", err)
	}
}

// TestManySignatures: a Release signed more times than any archive signs
// is refused before each signature is checked.
func TestManySignatures(t *testing.T) {
	var keys []*packet.PrivateKey
	for i := range maxSignatures + 1 {
		k, err := fixture.NewKey(fmt.Sprint("k", i))
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k.Entity.PrivateKey)
	}
	var signed bytes.Buffer
	w, err := clearsign.EncodeMulti(&signed, keys, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "Suite: trixie\n")
	w.Close()
	k, _ := fixture.NewKey("other")
	kr, _ := ReadKeyring(k.Public(false))
	if _, _, err := verifyInRelease(signed.Bytes(), kr, time.Now()); err == nil || !strings.Contains(err.Error(), "more than 16 signatures") {
		t.Errorf("%d signatures: %v", len(keys), err)
	}
}
