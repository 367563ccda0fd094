package rootfs

import (
	"net/url"
	"strings"

	"github.com/appliance/appliance/images/sbom"
)

// SBOM describes every package of the lock as an SBOM component; the
// purl namespace is "debian" for Debian's archives and the source's
// name otherwise ("raspberrypi").
func SBOM(l *Lock) []sbom.Component {
	ns := map[string]string{}
	for _, s := range l.Sources {
		ns[s.Name] = s.Name
		if u, err := url.Parse(s.URL); err == nil && strings.HasSuffix(u.Hostname(), "debian.org") {
			ns[s.Name] = "debian"
		}
	}
	var out []sbom.Component
	for _, p := range l.Packages {
		n := ns[p.Repo]
		if n == "" {
			n = "debian"
		}
		out = append(out, sbom.Deb(n, p.Name, p.Version, p.Architecture, p.Source, p.SourceVersion, p.SHA256))
	}
	return out
}
