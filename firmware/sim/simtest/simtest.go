// Package simtest makes, for the tests and benchmarks of the node tools,
// a site from spec text: its state (CA, certificates, OTA keys), its
// gateway's files, and the nodes' part of a build's output laid out as
// the output contract (package outputs) says — nodes/NODE/ bundles
// written by bundle.Write, build-info.json with its nodes — with the OTA
// tree in the gateway's /var/lib/appliance/ota. It runs the gateway's own
// mosquitto and nginx from the generated configs, moved under the test's
// folder. The node tools read only the output contract; this package is
// how their tests make one without the build. Only tests and benchmarks
// import it.
package simtest

import (
	"bytes"
	"crypto"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/appliance/appliance/desired"
	"github.com/appliance/appliance/firmware"
	"github.com/appliance/appliance/firmware/espimage"
	"github.com/appliance/appliance/firmware/identity"
	"github.com/appliance/appliance/internal/fwtest"
	"github.com/appliance/appliance/firmware/ota"
	"github.com/appliance/appliance/modules"
	"github.com/appliance/appliance/outputs"
	"github.com/appliance/appliance/pki"
	"github.com/appliance/appliance/spec"
	"github.com/appliance/appliance/state"
)

// TB is what the helpers need of a test, a benchmark or a program.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
	Logf(format string, args ...any)
	Cleanup(func())
	TempDir() string
}

// Site is a site made for a test.
type Site struct {
	Spec    *spec.Site
	Gateway *desired.Gateway
	State   *state.Store
	// Dir holds the spec, Root the gateway's files, Out the build
	// output (out/SITE).
	Dir, Root, Out string
}

// Load writes spec text into a new folder and loads it.
func Load(t TB, src string) (*spec.Site, *desired.Gateway, string) {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "site.hcl")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatalf("%v", err)
	}
	site, rep := spec.Load(path, spec.Options{Environ: []string{"HOME=/nonexistent"}})
	if rep.HasErrors() {
		var b bytes.Buffer
		rep.WriteText(&b)
		t.Fatalf("spec: %s", b.String())
	}
	g, err := desired.Compute(site)
	if err != nil {
		t.Fatalf("desired: %v", err)
	}
	return site, g, dir
}

// New loads spec text, makes the site's state and writes the gateway's
// files under Root.
func New(t TB, src string) *Site {
	t.Helper()
	site, g, dir := Load(t, src)
	st, err := state.Open(filepath.Join(dir, "state"), state.Options{Create: true})
	if err != nil {
		t.Fatalf("state: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	if res, err := st.Ensure(g.Wants, false); err != nil || res.Errors() {
		t.Fatalf("state: %v %+v", err, res)
	}
	s := &Site{Spec: site, Gateway: g, State: st, Dir: dir, Root: filepath.Join(dir, "root"), Out: filepath.Join(dir, "out", site.Name)}
	s.Rewrite(t)
	return s
}

// Path is a gateway path under Root.
func (s *Site) Path(p string) string { return filepath.Join(s.Root, p) }

// Rewrite writes the gateway's files again after a change to the state
// (a revocation), as a build would.
func (s *Site) Rewrite(t TB) {
	t.Helper()
	r, err := s.Gateway.Resolve(s.State, time.Now())
	if err != nil {
		t.Fatalf("resolve: %v", err)
	}
	if err := r.Apply(desired.Folder{Root: s.Root}); err != nil {
		t.Fatalf("apply: %v", err)
	}
}

// StateFile reads a file of the site's state.
func (s *Site) StateFile(t TB, rel string) []byte {
	t.Helper()
	b, err := s.State.ReadFile(rel)
	if err != nil {
		t.Fatalf("%v", err)
	}
	return b
}

// BuildOptions vary what Build makes.
type BuildOptions struct {
	// NoApp builds as without a firmware image: bundles without an app,
	// no OTA tree.
	NoApp bool
	// Version overrides the firmware's version (the app's descriptor
	// says the same); SkipBundles then leaves the nodes' bundles as an
	// earlier Build wrote them, as when the gateway was updated with a
	// new firmware that the nodes do not run yet.
	Version     string
	SkipBundles bool
	// AppSize is the app's data size (default 300,000 bytes).
	AppSize int
	// Now is the build's clock (default time.Now()).
	Now time.Time
}

// Build makes the nodes' part of the build output in Out and the OTA
// tree in the gateway's /var/lib/appliance/ota, and returns the
// build-info it wrote.
func (s *Site) Build(t TB, o BuildOptions) *outputs.Info {
	t.Helper()
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	fws, ids, err := Inputs(s.Spec, s.State, o)
	if err != nil {
		t.Fatalf("node inputs: %v", err)
	}
	var outs []*firmware.Output
	for i := range fws {
		out, err := firmware.Build(fws[i], ids[i], o.Now)
		if err != nil {
			t.Fatalf("firmware.Build: %v", err)
		}
		outs = append(outs, out)
	}
	if o.SkipBundles {
		for _, out := range outs {
			out.Bundles = nil
		}
	}
	info, err := Write(s.Out, s.Path(modules.OTADir), s.Spec, fws, ids, outs)
	if err != nil {
		t.Fatalf("writing the output: %v", err)
	}
	return info
}

// Inputs are firmware.Build's inputs for every firmware of the site,
// from the spec and the state as a build takes them: the state's
// signing and manifest keys, each node's certificate and key, and an
// app image (fwtest's, as elf2image --secure-pad-v2 lays one out)
// carrying the spec's version and secure version.
func Inputs(site *spec.Site, st *state.Store, o BuildOptions) ([]firmware.Firmware, [][]identity.Identity, error) {
	signing, err := key(st, "ota/"+state.SecureBootKey)
	if err != nil {
		return nil, nil, err
	}
	manifest, err := key(st, "ota/"+state.ManifestKey)
	if err != nil {
		return nil, nil, err
	}
	manifestPub, err := pki.MarshalPublic(manifest.Public())
	if err != nil {
		return nil, nil, err
	}
	ca, err := st.ReadFile("pki/ca.crt")
	if err != nil {
		return nil, nil, err
	}
	if o.AppSize == 0 {
		o.AppSize = 300000
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	var fws []firmware.Firmware
	var ids [][]identity.Identity
	for _, f := range site.Firmware {
		chip, err := espimage.ParseChip(f.Chip)
		if err != nil {
			return nil, nil, err
		}
		version := f.Version
		if o.Version != "" {
			version = o.Version
		}
		fw := firmware.Firmware{
			Name: f.Name, Chip: f.Chip, Version: version, SecureVersion: f.SecureVersion, FlashSize: 4 << 20,
			Bootloader:  fwtest.App{Chip: chip, Bootloader: true, DataSize: 20000}.Image(),
			SigningKeys: []crypto.Signer{signing}, ManifestKey: manifest,
			ManifestExpires: o.Now.AddDate(1, 0, 0),
		}
		if !o.NoApp {
			fw.App = fwtest.App{Chip: chip, Version: version, Project: f.Name, SecureVersion: uint32(f.SecureVersion), DataSize: o.AppSize}.Image()
		}
		var nodes []identity.Identity
		for _, n := range site.Nodes {
			if n.Firmware != f.Name {
				continue
			}
			id, err := nodeIdentity(site, st, n, ca, manifestPub)
			if err != nil {
				return nil, nil, err
			}
			nodes = append(nodes, id)
		}
		fws = append(fws, fw)
		ids = append(ids, nodes)
	}
	return fws, ids, nil
}

func key(st *state.Store, rel string) (crypto.Signer, error) {
	b, err := st.ReadFile(rel)
	if err != nil {
		return nil, err
	}
	return pki.ParseKey(b)
}

// nodeIdentity is a node's identity as docs/node.md describes it: the
// gateway's name for the broker, the time server and the OTA URL.
func nodeIdentity(site *spec.Site, st *state.Store, n spec.Node, ca, manifestPub []byte) (identity.Identity, error) {
	crt, err := st.ReadFile("pki/issued/" + n.Name + ".crt")
	if err != nil {
		return identity.Identity{}, err
	}
	k, err := st.ReadFile("pki/issued/" + n.Name + ".key")
	if err != nil {
		return identity.Identity{}, err
	}
	host := site.Gateway.Hostname
	web := host
	if site.HTTPS.Port != 443 {
		web += ":" + strconv.Itoa(site.HTTPS.Port)
	}
	return identity.Identity{
		Config: identity.Config{
			Format: identity.ConfigFormat, Node: n.Name, Firmware: n.Firmware,
			WiFi:       identity.WiFi{SSID: n.WiFi.SSID, PSK: n.WiFi.PSK.Reveal(), Country: n.WiFi.Country},
			MQTT:       identity.MQTT{Host: host, Port: site.MQTT.Port, Topic: "sensors/" + n.Name + "/reading"},
			IntervalMS: n.Interval.Milliseconds(),
			Sensor:     identity.Sensor{Type: n.Sensor.Type, Pin: n.Sensor.Pin},
			OTA:        identity.OTA{URL: "https://" + web + strings.TrimSuffix(site.OTA.Path, "/")},
			TimeServer: host,
			Tags:       n.Tags,
		},
		CA: ca, Cert: crt, Key: k, ManifestKeys: [][]byte{manifestPub},
	}, nil
}

// Write writes what firmware.Build made as a build does: each node's
// bundle in out/nodes/NODE, the OTA trees under otaDir, and
// build-info.json with the nodes.
func Write(out, otaDir string, site *spec.Site, fws []firmware.Firmware, ids [][]identity.Identity, outs []*firmware.Output) (*outputs.Info, error) {
	info := &outputs.Info{Site: site.Name, Board: site.Gateway.Board, Hostname: site.Gateway.Hostname, Admin: site.Gateway.Admin.User}
	for i, o := range outs {
		for j, b := range o.Bundles {
			name := ids[i][j].Config.Node
			if err := os.MkdirAll(outputs.NodeDir(out, name), 0o755); err != nil {
				return nil, err
			}
			if err := b.Write(outputs.NodeDir(out, name)); err != nil {
				return nil, fmt.Errorf("node %q: %w", name, err)
			}
		}
		for _, id := range ids[i] {
			cert, err := pki.ParseCert(id.Cert)
			if err != nil {
				return nil, err
			}
			info.Nodes = append(info.Nodes, outputs.Node{
				Name: id.Config.Node, Firmware: fws[i].Name, Version: fws[i].Version, Chip: fws[i].Chip,
				App: !o.NoApp, CertExpires: cert.NotAfter.UTC().Format(time.RFC3339),
			})
		}
		if o.OTA != nil {
			if err := os.MkdirAll(otaDir, 0o755); err != nil {
				return nil, err
			}
			if err := ota.Write(otaDir, o.OTA.Files); err != nil {
				return nil, err
			}
			// The gateway's folder is root's and www-data's; the test's
			// nginx worker runs as root, and readable is enough.
			if err := os.Chmod(otaDir, 0o755); err != nil {
				return nil, err
			}
		}
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, err
	}
	if err := outputs.WriteInfo(out, info); err != nil {
		return nil, err
	}
	return info, nil
}

// BundleFile reads a file of a node's bundle.
func (s *Site) BundleFile(t TB, node, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(outputs.NodeDir(s.Out, node), name))
	if err != nil {
		t.Fatalf("%v", err)
	}
	return b
}

// App is an ESP-IDF app image for a chip, laid out as elf2image
// --secure-pad-v2 lays one out, and its ELF, for tools that sign images
// built elsewhere.
func App(chip espimage.Chip, version string, secureVersion uint32) (image, elf []byte) {
	a := fwtest.App{Chip: chip, Version: version, Project: "sensor", SecureVersion: secureVersion, DataSize: 100000}
	return a.Image(), a.ELF()
}
