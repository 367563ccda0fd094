package cli

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/appliance/appliance/firmware/bundle"
	"github.com/appliance/appliance/firmware/identity"
	"github.com/appliance/appliance/firmware/littlefs"
	"github.com/appliance/appliance/firmware/sim"
	"github.com/appliance/appliance/internal/atomicfile"
	"github.com/appliance/appliance/pki"
)

func init() {
	register(&verb{
		name:    "node",
		summary: "List a build's sensor nodes, show one, export its identity files",
		usage:   "node list [--json] OUT\nnode show [--json] OUT NODE\nnode export [--force] OUT NODE DIR",
		examples: `
appliance node list out/demo
appliance node show out/demo bench-1
appliance node export out/demo bench-1 /tmp/bench-1   # for the sensor firmware's host build`,
		run: runNode,
	})
}

func runNode(ctx context.Context, e *Env, args []string) error {
	v := verbs["node"]
	if len(args) == 0 {
		return usagef(v.name, "missing subcommand: list, show or export")
	}
	fs := newFlags(v)
	asJSON := fs.Bool("json", false, "list, show: print JSON")
	force := fs.Bool("force", false, "export: write into a folder that is not empty")
	switch args[0] {
	case "list", "show", "export":
	case "-h", "--help", "help":
		writeUsage(e.Stdout, v, fs)
		return nil
	default:
		return usagef(v.name, "unknown subcommand %q: use list, show or export", args[0])
	}
	if err := parse(e, v, fs, args[1:]); err != nil {
		return err
	}
	want := map[string]int{"list": 1, "show": 2, "export": 3}[args[0]]
	if fs.NArg() != want {
		return usagef(v.name, "%s takes %s", args[0], map[string]string{"list": "OUT", "show": "OUT and NODE", "export": "OUT, NODE and DIR"}[args[0]])
	}
	if *asJSON && args[0] == "export" || *force && args[0] != "export" {
		return usagef(v.name, "--json is for list and show, --force for export")
	}
	switch args[0] {
	case "list":
		return nodeList(e, fs.Arg(0), *asJSON)
	case "show":
		return nodeShow(e, fs.Arg(0), fs.Arg(1), *asJSON)
	}
	return nodeExport(e, fs.Arg(0), fs.Arg(1), fs.Arg(2), *force)
}

func nodeList(e *Env, out string, asJSON bool) error {
	info, err := sim.ReadInfo(out)
	if err != nil {
		return err
	}
	if asJSON {
		b, _ := json.MarshalIndent(info.Nodes, "", "  ")
		if info.Nodes == nil {
			b = []byte("[]")
		}
		fmt.Fprintf(e.Stdout, "%s\n", b)
		return nil
	}
	if len(info.Nodes) == 0 {
		fmt.Fprintf(e.Stdout, "The build in %s made no sensor nodes.\n", out)
		return nil
	}
	tw := tabwriter.NewWriter(e.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tFIRMWARE\tVERSION\tCHIP\tCERTIFICATE ENDS\tAPP")
	for _, n := range info.Nodes {
		app := "yes"
		if !n.App {
			app = "no (identity only)"
		}
		ends := n.CertExpires
		if t, err := time.Parse(time.RFC3339, ends); err == nil {
			ends = t.Format(time.DateOnly)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", n.Name, n.Firmware, n.Version, n.Chip, ends, app)
	}
	return tw.Flush()
}

// nodeShown is what node show prints: the node's settings without its
// secrets (the Wi-Fi passphrase, the private key).
type nodeShown struct {
	Node      string       `json:"node"`
	Firmware  string       `json:"firmware"`
	Version   string       `json:"version"`
	Chip      string       `json:"chip"`
	App       bool         `json:"app"`
	Config    shownConfig  `json:"config"`
	Cert      shownCert    `json:"certificate"`
	OTAKeys   []shownKey   `json:"ota_manifest_keys"`
	Artifacts []nodeFile   `json:"artifacts"`
	Flash     flashCommand `json:"flash"`
}

// shownConfig is config.json with the passphrase left out: an allowlist,
// so a field added to the config later cannot leak through it.
type shownConfig struct {
	Format     int               `json:"format"`
	Node       string            `json:"node"`
	Firmware   string            `json:"firmware"`
	WiFi       shownWiFi         `json:"wifi"`
	MQTT       identity.MQTT     `json:"mqtt"`
	IntervalMS int64             `json:"interval_ms"`
	Sensor     identity.Sensor   `json:"sensor"`
	OTA        identity.OTA      `json:"ota"`
	TimeServer string            `json:"time_server"`
	Tags       map[string]string `json:"tags"`
}

type shownWiFi struct {
	SSID    string `json:"ssid"`
	PSKSet  bool   `json:"psk_set"`
	Country string `json:"country,omitempty"`
}

type shownCert struct {
	Subject     string    `json:"subject"`
	Issuer      string    `json:"issuer"`
	Serial      string    `json:"serial"`
	NotBefore   time.Time `json:"not_before"`
	NotAfter    time.Time `json:"not_after"`
	Fingerprint string    `json:"sha256_fingerprint"`
}

type shownKey struct {
	Path string `json:"path"`
	// SHA256 is the SHA-256 of the key's SubjectPublicKeyInfo.
	SHA256 string `json:"sha256"`
}

type nodeFile struct {
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

type flashCommand struct {
	Dir    string `json:"dir"`
	Bundle string `json:"bundle"`
	Merged string `json:"merged"`
}

func nodeShow(e *Env, out, name string, asJSON bool) error {
	n, err := sim.LoadNode(out, name)
	if err != nil {
		return err
	}
	view, err := viewNode(n)
	if err != nil {
		return err
	}
	if asJSON {
		b, _ := json.MarshalIndent(view, "", "  ")
		fmt.Fprintf(e.Stdout, "%s\n", b)
		return nil
	}
	writeNode(e.Stdout, view)
	return nil
}

func viewNode(n *sim.Node) (*nodeShown, error) {
	c := n.Identity.Config
	v := &nodeShown{
		Node: n.Name, Firmware: n.Info.Firmware, Version: n.Version(), Chip: n.Chip(), App: n.App != nil,
		Config: shownConfig{
			Format: c.Format, Node: c.Node, Firmware: c.Firmware,
			WiFi: shownWiFi{SSID: c.WiFi.SSID, PSKSet: c.WiFi.PSK != "", Country: c.WiFi.Country},
			MQTT: c.MQTT, IntervalMS: c.IntervalMS, Sensor: c.Sensor, OTA: c.OTA, TimeServer: c.TimeServer, Tags: c.Tags,
		},
	}
	cert, err := n.Certificate()
	if err != nil {
		return nil, err
	}
	v.Cert = shownCert{
		Subject: cert.Subject.String(), Issuer: cert.Issuer.String(), Serial: pki.SerialHex(cert.SerialNumber),
		NotBefore: cert.NotBefore.UTC(), NotAfter: cert.NotAfter.UTC(), Fingerprint: pki.Fingerprint(cert),
	}
	for i, k := range n.Identity.ManifestKeys {
		kv := shownKey{Path: identity.ManifestKeyPath(i)}
		if blk, _ := pem.Decode(k); blk != nil {
			if _, err := x509.ParsePKIXPublicKey(blk.Bytes); err == nil {
				sum := sha256.Sum256(blk.Bytes)
				kv.SHA256 = hex.EncodeToString(sum[:])
			}
		}
		v.OTAKeys = append(v.OTAKeys, kv)
	}
	if v.Artifacts, err = artifacts(n.Dir); err != nil {
		return nil, err
	}
	chip := n.Chip()
	v.Flash = flashCommand{
		Dir:    n.Dir,
		Bundle: fmt.Sprintf("esptool.py --chip %s write_flash @%s", chip, bundle.FlashArgs),
		Merged: fmt.Sprintf("esptool.py --chip %s write_flash 0x0 %s", chip, filepath.Join(n.Dir, bundle.MergedFile)),
	}
	return v, nil
}

// artifacts are the files of a node's bundle folder, with their sizes
// and digests.
func artifacts(dir string) ([]nodeFile, error) {
	var out []nodeFile
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		sum := sha256.Sum256(b)
		out = append(out, nodeFile{Path: filepath.ToSlash(rel), Size: int64(len(b)), SHA256: hex.EncodeToString(sum[:])})
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, err
}

func writeNode(w io.Writer, v *nodeShown) {
	c := v.Config
	app := "signed app " + v.Version
	if !v.App {
		app = "no app (the spec's firmware names no image): identity and bundle only"
	}
	fmt.Fprintf(w, "Node %s: firmware %s, %s, %s\n\n", v.Node, v.Firmware, app, v.Chip)
	fmt.Fprintf(w, "Settings (%s in %s):\n", identity.ConfigPath, bundle.IdentityFile)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	wifi := fmt.Sprintf("%q, passphrase set (not shown)", c.WiFi.SSID)
	if !c.WiFi.PSKSet {
		wifi = fmt.Sprintf("%q, no passphrase", c.WiFi.SSID)
	}
	if c.WiFi.Country != "" {
		wifi += ", country " + c.WiFi.Country
	}
	fmt.Fprintf(tw, "  wifi\t%s\n", wifi)
	fmt.Fprintf(tw, "  mqtt\t%s:%d, topic %s\n", c.MQTT.Host, c.MQTT.Port, c.MQTT.Topic)
	fmt.Fprintf(tw, "  interval\t%s\n", time.Duration(c.IntervalMS)*time.Millisecond)
	fmt.Fprintf(tw, "  sensor\t%s on GPIO %d\n", c.Sensor.Type, c.Sensor.Pin)
	fmt.Fprintf(tw, "  ota\t%s/%s/\n", c.OTA.URL, c.Firmware)
	fmt.Fprintf(tw, "  time server\t%s\n", c.TimeServer)
	if len(c.Tags) > 0 {
		var tags []string
		for k, val := range c.Tags {
			tags = append(tags, k+"="+val)
		}
		sort.Strings(tags)
		fmt.Fprintf(tw, "  tags\t%s\n", strings.Join(tags, ", "))
	}
	tw.Flush()
	fmt.Fprintf(w, "\nCertificate (%s; its private key %s is in the image, not shown):\n", identity.CertPath, identity.KeyPath)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "  subject\t%s\n  issuer\t%s\n  serial\t%s\n  valid\t%s to %s\n  sha256\t%s\n", v.Cert.Subject, v.Cert.Issuer, v.Cert.Serial,
		v.Cert.NotBefore.Format(time.DateOnly), v.Cert.NotAfter.Format(time.DateOnly), v.Cert.Fingerprint)
	tw.Flush()
	fmt.Fprintf(w, "\nTrusted OTA manifest keys:\n")
	for _, k := range v.OTAKeys {
		fmt.Fprintf(w, "  %s  sha256 %s\n", k.Path, k.SHA256)
	}
	fmt.Fprintf(w, "\nArtifacts (%s):\n", v.Flash.Dir)
	width := 0
	for _, a := range v.Artifacts {
		width = max(width, len(a.Path))
	}
	for _, a := range v.Artifacts {
		fmt.Fprintf(w, "  %-*s %9d  sha256 %s\n", width, a.Path, a.Size, a.SHA256)
	}
	fmt.Fprintf(w, "\nFlash it (esptool; the port is found, or give --port):\n  cd %s && %s\n  or the merged image: %s\n", v.Flash.Dir, v.Flash.Bundle, v.Flash.Merged)
	if !v.App {
		fmt.Fprintf(w, "  (the bundle holds no app: a node flashed with it has its identity but nothing to boot)\n")
	}
}

// nodeExport writes the identity image's files into dir, at their
// paths on the LittleFS, the private key 0600: the folder the sensor
// firmware's host build reads.
func nodeExport(e *Env, out, name, dir string, force bool) error {
	n, err := sim.LoadNode(out, name)
	if err != nil {
		return err
	}
	img, err := os.ReadFile(filepath.Join(n.Dir, bundle.IdentityFile))
	if err != nil {
		return err
	}
	fsys, err := littlefs.Read(img, littlefs.ESP32BlockSize)
	if err != nil {
		return fmt.Errorf("node %q: %s: %w", name, bundle.IdentityFile, err)
	}
	if err := exportable(dir, force); err != nil {
		return err
	}
	// Everything is written in a folder beside dir first, so that a
	// failure leaves dir as it was.
	parent := filepath.Dir(filepath.Clean(dir))
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(dir)+".tmp-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	files, err := writeEntries(tmp, name, fsys.Entries)
	if err != nil {
		return err
	}
	if err := moveInto(tmp, dir); err != nil {
		return fmt.Errorf("exporting into %s: %w", dir, err)
	}
	fmt.Fprintf(e.Stdout, "%s: %d files of %s's identity image; %s is its private key (0600): keep the folder private\n", dir, files, name, filepath.Join(dir, strings.TrimPrefix(identity.KeyPath, "/")))
	return nil
}

// writeEntries writes a file system's entries under dir and returns how
// many files it wrote.
func writeEntries(dir, node string, entries []littlefs.Entry) (int, error) {
	files := 0
	for _, en := range entries {
		rel := strings.TrimPrefix(en.Path, "/")
		if rel == "" || strings.Contains("/"+rel+"/", "/../") {
			return 0, fmt.Errorf("node %q: the identity image holds a path %q that leaves the folder", node, en.Path)
		}
		p := filepath.Join(dir, filepath.FromSlash(rel))
		if en.Dir {
			if err := os.MkdirAll(p, 0o755); err != nil {
				return 0, err
			}
			continue
		}
		mode := os.FileMode(0o644)
		if en.Path == identity.KeyPath {
			mode = 0o600
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return 0, err
		}
		if err := os.WriteFile(p, en.Data, mode); err != nil {
			return 0, err
		}
		if err := os.Chmod(p, mode); err != nil {
			return 0, err
		}
		files++
	}
	return files, nil
}

// moveInto moves a new folder's content to dir: the folder itself when
// dir does not exist (0700: it holds a private key), else file by file.
func moveInto(tmp, dir string) error {
	if _, err := os.Lstat(dir); errors.Is(err, fs.ErrNotExist) {
		if err := os.Chmod(tmp, 0o700); err != nil {
			return err
		}
		return os.Rename(tmp, dir)
	}
	return filepath.WalkDir(tmp, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == tmp {
			return err
		}
		rel, _ := filepath.Rel(tmp, p)
		dst := filepath.Join(dir, rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		if err := os.Rename(p, dst); err != nil {
			return err
		}
		return atomicfile.SyncDir(filepath.Dir(dst))
	})
}

// exportable refuses a folder that holds anything, unless forced.
func exportable(dir string, force bool) error {
	ents, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return err
	case len(ents) > 0 && !force:
		return fmt.Errorf("%s is not empty; name a new or empty folder, or pass --force to write the identity files over what is there", dir)
	}
	return nil
}
