package sim

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/appliance/appliance/firmware/bundle"
	"github.com/appliance/appliance/firmware/espimage"
	"github.com/appliance/appliance/firmware/identity"
	"github.com/appliance/appliance/firmware/secureboot"
	"github.com/appliance/appliance/outputs"
)

// Node is a sensor node as a build made it: what its flash bundle in
// OUT/nodes/NODE holds.
type Node struct {
	Name string
	// Dir is the node's bundle folder.
	Dir string
	// Info is what build-info.json says of the node.
	Info outputs.Node
	// Identity is read from the bundle's littlefs.bin, the image that
	// is flashed to the node's littlefs partition.
	Identity *identity.Identity
	// App is what the node's running app — the bundle's signed app.bin
	// — says of itself; nil when the build had no app image.
	App *App
}

// App is what a node's running app tells: its chip and descriptor, and
// the keys of its signature blocks. Nodes of one firmware share it.
type App struct {
	Chip espimage.Chip
	Desc espimage.AppDesc
	// Blocks are its valid Secure Boot V2 signature blocks.
	Blocks []secureboot.Block
	// SHA256 is the digest of app.bin.
	SHA256 [32]byte
}

// Version is the firmware version the node runs: its app's descriptor,
// or what the build recorded when the bundle holds no app.
func (n *Node) Version() string {
	if n.App != nil {
		return n.App.Desc.Version
	}
	return n.Info.Version
}

// SecureVersion is the running app's anti-rollback version (0 without
// an app).
func (n *Node) SecureVersion() uint32 {
	if n.App != nil {
		return n.App.Desc.SecureVersion
	}
	return 0
}

// Chip is the node's chip: the running app's, else the build's record.
func (n *Node) Chip() string {
	if n.App != nil {
		return n.App.Chip.String()
	}
	return n.Info.Chip
}

// TLS is the node's client configuration: its own certificate, the
// site CA as the only root, and serverName (the gateway's name from
// config.json) as the name the server's certificate must carry,
// whatever address is dialled. It speaks TLS 1.2, as ESP-IDF's mbedTLS
// does by default; there a server that refuses the node's certificate
// says so with an alert during the handshake, where TLS 1.3 would have
// the client learn it only from a later read (or a reset connection).
func (n *Node) TLS(serverName string) (*tls.Config, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(n.Identity.CA) {
		return nil, fmt.Errorf("node %q: the identity image's %s holds no certificate", n.Name, identity.CAPath)
	}
	pair, err := tls.X509KeyPair(n.Identity.Cert, n.Identity.Key)
	if err != nil {
		// The error names neither the key's bytes nor its content.
		return nil, fmt.Errorf("node %q: the identity image's certificate and key do not make a pair; run appliance build again", n.Name)
	}
	return &tls.Config{
		RootCAs:      pool,
		Certificates: []tls.Certificate{pair},
		ServerName:   serverName,
		MinVersion:   tls.VersionTLS12,
		MaxVersion:   tls.VersionTLS12,
	}, nil
}

// Certificate is the node's client certificate, parsed.
func (n *Node) Certificate() (*x509.Certificate, error) {
	pair, err := tls.X509KeyPair(n.Identity.Cert, n.Identity.Key)
	if err != nil {
		return nil, fmt.Errorf("node %q: the identity image's certificate and key do not make a pair", n.Name)
	}
	return x509.ParseCertificate(pair.Certificate[0])
}

// ReadInfo reads an output folder's build-info.json, naming the fix when
// the folder is not a build's output.
func ReadInfo(out string) (*outputs.Info, error) {
	info, err := outputs.ReadInfo(out)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s has no %s: name a build's output folder (out/SITE), made by appliance build SPEC", out, outputs.InfoName)
	}
	if err != nil {
		return nil, err
	}
	return info, nil
}

// Load reads the nodes of a build's output folder: every node it lists,
// or the named ones in that order.
func Load(out string, names []string) ([]*Node, error) {
	info, err := ReadInfo(out)
	if err != nil {
		return nil, err
	}
	if len(info.Nodes) == 0 {
		return nil, fmt.Errorf("the build in %s made no sensor nodes: the spec has no node blocks, or the build predates them; run appliance build SPEC", out)
	}
	byName := map[string]outputs.Node{}
	var all []string
	for _, n := range info.Nodes {
		byName[n.Name] = n
		all = append(all, n.Name)
	}
	if len(names) == 0 {
		names = all
	}
	nodes := make([]*Node, 0, len(names))
	apps := map[[32]byte]*App{}
	for _, name := range names {
		ni, ok := byName[name]
		if !ok {
			return nil, fmt.Errorf("the build in %s has no node %q; its nodes are %s", out, name, list(all))
		}
		n, err := loadNode(out, ni, apps)
		if err != nil {
			return nil, err
		}
		nodes = append(nodes, n)
	}
	return nodes, nil
}

// LoadNode reads one node of a build's output folder.
func LoadNode(out, name string) (*Node, error) {
	nodes, err := Load(out, []string{name})
	if err != nil {
		return nil, err
	}
	return nodes[0], nil
}

// loadNode reads a node's bundle; apps are the running apps read so
// far, by digest, so that a thousand nodes of one firmware hold one.
func loadNode(out string, ni outputs.Node, apps map[[32]byte]*App) (*Node, error) {
	n := &Node{Name: ni.Name, Dir: outputs.NodeDir(out, ni.Name), Info: ni}
	img, err := os.ReadFile(filepath.Join(n.Dir, bundle.IdentityFile))
	if err != nil {
		return nil, fmt.Errorf("node %q: %w; run appliance build again", ni.Name, err)
	}
	n.Identity, err = identity.Read(img)
	if err != nil {
		return nil, fmt.Errorf("node %q: %s: %w", ni.Name, filepath.Join(n.Dir, bundle.IdentityFile), err)
	}
	// Copies, so that the image itself is not kept alive by them.
	id := n.Identity
	id.CA, id.Cert, id.Key = bytes.Clone(id.CA), bytes.Clone(id.Cert), bytes.Clone(id.Key)
	for i := range id.ManifestKeys {
		id.ManifestKeys[i] = bytes.Clone(id.ManifestKeys[i])
	}
	if err := n.Identity.Config.Validate(); err != nil {
		return nil, fmt.Errorf("node %q: %s: %w", ni.Name, identity.ConfigPath, err)
	}
	if n.Identity.Config.Node != ni.Name {
		return nil, fmt.Errorf("node %q: its identity image is node %q's; run appliance build again", ni.Name, n.Identity.Config.Node)
	}
	p := filepath.Join(n.Dir, bundle.AppFile)
	b, err := os.ReadFile(p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return n, nil
	case err != nil:
		return nil, fmt.Errorf("node %q: %w", ni.Name, err)
	}
	sum := sha256.Sum256(b)
	if a, ok := apps[sum]; ok {
		n.App = a
		return n, nil
	}
	parsed, err := espimage.Parse(b)
	if err != nil {
		return nil, fmt.Errorf("node %q: %s: %w", ni.Name, p, err)
	}
	if parsed.App == nil {
		return nil, fmt.Errorf("node %q: %s has no app descriptor; run appliance build again", ni.Name, p)
	}
	// A bundle's app is always signed; Blocks says so.
	blocks, err := secureboot.Blocks(b)
	if err != nil {
		return nil, fmt.Errorf("node %q: %s: %w", ni.Name, p, err)
	}
	n.App = &App{Chip: parsed.Chip, Desc: *parsed.App, Blocks: blocks, SHA256: sum}
	apps[sum] = n.App
	return n, nil
}

func list(names []string) string {
	if len(names) > 8 {
		return strings.Join(names[:8], ", ") + fmt.Sprintf(" … (%d in all; appliance node list OUT shows them)", len(names))
	}
	return strings.Join(names, ", ")
}
