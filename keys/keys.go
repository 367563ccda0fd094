// Package keys ships the OpenPGP keys of the apt archives appliance knows,
// so that a spec can use Debian, Raspberry Pi OS, InfluxData's and
// Grafana's repositories without fetching a key over the network — the
// one step of apt set-up where a man in the middle could win. The files
// are the projects' own publications; README.md lists where each came
// from and its fingerprint.
package keys

import (
	"embed"
	"fmt"
)

//go:embed debian-archive.pgp raspberrypi.asc influxdata.asc grafana.asc
var files embed.FS

// Keyring is a shipped archive key.
type Keyring struct {
	Name string
	File string
	// Fingerprints are the primary keys the file must hold.
	Fingerprints []string
}

// Shipped lists the keyrings by the names a spec's sources use.
var Shipped = map[string]Keyring{
	"debian-archive": {Name: "debian-archive", File: "debian-archive.pgp", Fingerprints: []string{
		"4D64FEC119C2029067D6E791F8D2585B8783D481", // Debian Stable Release Key (12/bookworm)
		"B8B80B5B623EAB6AD8775C45B7C5D7D6350947F8", // Debian Archive Automatic Signing Key (12/bookworm)
		"05AB90340C0C5E797F44A8C8254CF3B5AEC0A8F0", // Debian Security Archive Automatic Signing Key (12/bookworm)
		"04B54C3CDCA79751B16BC6B5225629DF75B188BD", // Debian Archive Automatic Signing Key (13/trixie)
		"5E04A1E3223A19A20706E20F9904613D4CCE68C6", // Debian Security Archive Automatic Signing Key (13/trixie)
		"41587F7DB8C774BCCF131416762F67A0B2C39DE4", // Debian Stable Release Key (13/trixie)
	}},
	"raspberrypi": {Name: "raspberrypi", File: "raspberrypi.asc", Fingerprints: []string{"CF8A1AF502A2AA2D763BAE7E82B129927FA3303E"}},
	"influxdata":  {Name: "influxdata", File: "influxdata.asc", Fingerprints: []string{"24C975CBA61A024EE1B631787C3D57159FC2F927"}},
	"grafana":     {Name: "grafana", File: "grafana.asc", Fingerprints: []string{"B53AE77BADB630A683046005963FA27710458545"}},
}

// Read returns the bytes of a shipped keyring.
func Read(name string) ([]byte, error) {
	k, ok := Shipped[name]
	if !ok {
		return nil, fmt.Errorf("appliance ships no keyring named %q", name)
	}
	return files.ReadFile(k.File)
}
