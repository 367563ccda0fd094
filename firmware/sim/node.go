package sim

import (
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
	// App is the bundle's signed app.bin, the app the node runs; nil
	// when the build had no app image.
	App []byte
	// AppImage is App parsed.
	AppImage *espimage.Image
}

// Version is the firmware version the node runs: its app's descriptor,
// or what the build recorded when the bundle holds no app.
func (n *Node) Version() string {
	if n.AppImage != nil && n.AppImage.App != nil {
		return n.AppImage.App.Version
	}
	return n.Info.Version
}

// SecureVersion is the running app's anti-rollback version (0 without
// an app).
func (n *Node) SecureVersion() uint32 {
	if n.AppImage != nil && n.AppImage.App != nil {
		return n.AppImage.App.SecureVersion
	}
	return 0
}

// Chip is the node's chip: the running app's, else the build's record.
func (n *Node) Chip() string {
	if n.AppImage != nil {
		return n.AppImage.Chip.String()
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
	for _, name := range names {
		ni, ok := byName[name]
		if !ok {
			return nil, fmt.Errorf("the build in %s has no node %q; its nodes are %s", out, name, list(all))
		}
		n, err := loadNode(out, ni)
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

func loadNode(out string, ni outputs.Node) (*Node, error) {
	n := &Node{Name: ni.Name, Dir: outputs.NodeDir(out, ni.Name), Info: ni}
	img, err := os.ReadFile(filepath.Join(n.Dir, bundle.IdentityFile))
	if err != nil {
		return nil, fmt.Errorf("node %q: %w; run appliance build again", ni.Name, err)
	}
	n.Identity, err = identity.Read(img)
	if err != nil {
		return nil, fmt.Errorf("node %q: %s: %w", ni.Name, filepath.Join(n.Dir, bundle.IdentityFile), err)
	}
	if err := n.Identity.Config.Validate(); err != nil {
		return nil, fmt.Errorf("node %q: %s: %w", ni.Name, identity.ConfigPath, err)
	}
	if n.Identity.Config.Node != ni.Name {
		return nil, fmt.Errorf("node %q: its identity image is node %q's; run appliance build again", ni.Name, n.Identity.Config.Node)
	}
	app, err := os.ReadFile(filepath.Join(n.Dir, bundle.AppFile))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return n, nil
	case err != nil:
		return nil, fmt.Errorf("node %q: %w", ni.Name, err)
	}
	n.App = app
	if n.AppImage, err = espimage.Parse(app); err != nil {
		return nil, fmt.Errorf("node %q: %s: %w", ni.Name, filepath.Join(n.Dir, bundle.AppFile), err)
	}
	return n, nil
}

func list(names []string) string {
	if len(names) > 8 {
		return strings.Join(names[:8], ", ") + fmt.Sprintf(" … (%d in all; appliance node list OUT shows them)", len(names))
	}
	return strings.Join(names, ", ")
}
