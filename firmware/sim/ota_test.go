package sim_test

import (
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/appliance/appliance/firmware/espimage"
	"github.com/appliance/appliance/firmware/ota"
	"github.com/appliance/appliance/firmware/secureboot"
	"github.com/appliance/appliance/firmware/sim"
	"github.com/appliance/appliance/firmware/sim/simtest"
	"github.com/appliance/appliance/modules"
	"github.com/appliance/appliance/pki"
	"github.com/appliance/appliance/state"
)

func checkOTA(t *testing.T, s *simtest.Site, node string) *sim.OTAResult {
	t.Helper()
	n, err := sim.LoadNode(s.Out, node)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return sim.CheckOTA(ctx, n, fmt.Sprintf("127.0.0.1:%d", s.Spec.HTTPS.Port), time.Now())
}

// otaFile is a file of the OTA tree the gateway's nginx serves.
func otaFile(s *simtest.Site, rel string) string {
	return filepath.Join(s.Path(modules.OTADir), rel)
}

func signingKey(t *testing.T, s *simtest.Site) crypto.Signer {
	k, err := pki.ParseKey(s.StateFile(t, "ota/"+state.SecureBootKey))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestOTACheck runs a node's OTA check against the gateway's nginx with
// its generated config: the node's certificate fetches the manifest, its
// signature and the image, and every check a node makes passes — the
// version it runs is the one served, so it would stop there, and an
// update built later is one it would install. A tampered image, a
// manifest signed by another key, and an image whose Secure Boot
// signature is by a key the node does not trust are refused, as is a
// revoked node's certificate.
func TestOTACheck(t *testing.T) {
	s := newSite(t)
	srv := s.StartNginx(t)

	r := checkOTA(t, s, "bench-1")
	if r.Status != sim.OTACurrent || r.Manifest == nil || r.Manifest.Version != "1.0.0" || r.SignatureBlock != 0 {
		t.Fatalf("current firmware: %+v", r)
	}
	want, _ := secureboot.KeyDigest(signingKey(t, s).Public())
	if r.KeyDigest != hex.EncodeToString(want[:]) {
		t.Errorf("verified with key %s, want the state's signing key %x", r.KeyDigest, want)
	}
	if !strings.Contains(r.String(), "up to date") {
		t.Errorf("String() = %q", r.String())
	}
	manifest, _ := os.ReadFile(otaFile(s, "sensor/"+ota.ManifestFile))
	sig, _ := os.ReadFile(otaFile(s, "sensor/"+ota.SignatureFile))
	image := otaFile(s, r.Manifest.Path)
	good, _ := os.ReadFile(image)

	refused := func(what, want string) {
		t.Helper()
		r := checkOTA(t, s, "bench-1")
		if r.Status != sim.OTARefused || !strings.Contains(r.Reason, want) || r.OK() {
			t.Errorf("%s: %s %q; want refused, saying %q", what, r.Status, r.Reason, want)
		}
	}

	// One bit of the served image changed.
	bad := append([]byte(nil), good...)
	bad[len(bad)/2] ^= 1
	os.WriteFile(image, bad, 0o644)
	refused("tampered image", "SHA-256")
	os.WriteFile(image, good, 0o644)

	// The manifest signed by a key the node does not trust.
	_, otherKey := newKeys(t)
	forged, err := ota.Sign(manifest, otherKey)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(otaFile(s, "sensor/"+ota.SignatureFile), forged, 0o644)
	refused("manifest signed by another key", "signature does not verify")
	os.WriteFile(otaFile(s, "sensor/"+ota.SignatureFile), sig, 0o644)

	// A manifest the site's key signed, naming an image signed for
	// Secure Boot by another key.
	otherSigning, _ := newKeys(t)
	foreign, _ := simtest.App(espimage.ESP32S3, "1.1.0", 1)
	signed, err := secureboot.SignApp(foreign, espimage.ESP32S3, otherSigning)
	if err != nil {
		t.Fatal(err)
	}
	mk, _ := pki.ParseKey(s.StateFile(t, "ota/"+state.ManifestKey))
	tree, err := ota.Build(ota.Input{Firmware: "sensor", Chip: espimage.ESP32S3, Version: "1.1.0", SecureVersion: 1, Image: signed,
		Expires: time.Now().AddDate(0, 1, 0), Key: mk, Now: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if err := ota.Write(s.Path(modules.OTADir), tree.Files); err != nil {
		t.Fatal(err)
	}
	refused("image signed by an untrusted key", "no key the node trusts signed it")

	// A new version built for the gateway, which the nodes do not run
	// yet: its manifest goes on from the release the state recorded.
	s.Update(t, siteHCL(s.Spec.MQTT.Port, s.Spec.HTTPS.Port, s.Spec.HTTPS.RedirectPort, "1.1.0", false), app("1.1.0"))
	r = checkOTA(t, s, "bench-1")
	if r.Status != sim.OTAUpdate || r.Manifest.Version != "1.1.0" || r.Manifest.ManifestVersion != 2 || r.SignatureBlock != 0 || !r.OK() {
		t.Errorf("update: %+v", r)
	}
	sum := sha256.Sum256(mustRead(t, otaFile(s, r.Manifest.Path)))
	if r.Manifest.SHA256 != hex.EncodeToString(sum[:]) {
		t.Errorf("manifest names %s, the served image is %x", r.Manifest.SHA256, sum)
	}

	// A revoked node's certificate is refused by nginx.
	if _, err := s.State.Revoke("bench-2", "keyCompromise", s.Gateway.Wants); err != nil {
		t.Fatal(err)
	}
	s.Rewrite(t)
	srv.Stop()
	s.StartNginx(t)
	r = checkOTA(t, s, "bench-2")
	if r.Status != sim.OTARefused || !strings.Contains(r.Reason, "400") {
		t.Errorf("revoked node: %+v", r)
	}
	if r := checkOTA(t, s, "bench-3"); r.Status != sim.OTAUpdate {
		t.Errorf("bench-3 after bench-2's revocation: %+v", r)
	}
}

// TestOTANoTree: a build without an app publishes no OTA tree, and the
// check says what is missing.
func TestOTANoTree(t *testing.T) {
	s := simtest.New(t, siteHCL(simtest.FreePort(t), simtest.FreePort(t), simtest.FreePort(t), "1.0.0", true))
	s.Build(t)
	s.StartNginx(t)
	r := checkOTA(t, s, "cold")
	if r.Status != sim.OTAFailed || !strings.Contains(r.Reason, "404") {
		t.Errorf("%+v", r)
	}
}

func newKeys(t *testing.T) (signing, manifest crypto.Signer) {
	t.Helper()
	priv, _, err := pki.NewSecureBootKey()
	if err != nil {
		t.Fatal(err)
	}
	signing, _ = pki.ParseKey(priv)
	priv, _, err = pki.NewECDSAKey()
	if err != nil {
		t.Fatal(err)
	}
	manifest, _ = pki.ParseKey(priv)
	return signing, manifest
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
