package modules

import (
	"github.com/appliance/appliance/spec"
	"github.com/appliance/appliance/state"
)

func init() { Register(Info{"ssh", func() Module { return new(SSH) }}) }

var _ Module = (*SSH)(nil)

// SSH is the OpenSSH server: keys only, host keys from the state, so
// push can pin the host from the first connection.
//
// sshd gets no sandbox drop-in: it starts the administrator's sessions,
// which must be able to run sudo and administer the whole system.
type SSH struct{ site *spec.Site }

// ID implements Module.
func (*SSH) ID() string { return "ssh" }

// Decode implements Module.
func (m *SSH) Decode(s *spec.Site) bool { m.site = s; return true }

// Contribute implements Module.
func (m *SSH) Contribute() Contribution {
	s := m.site
	r := s.SSH.Where.Block
	admin := s.Gateway.Admin
	data := map[string]any{"Header": headerLine("#", s.Name), "Site": s.Name, "Port": s.SSH.Port, "User": admin.User}
	keys := header("#", s.Name) + "# appliance's deploy key, for push:\n" + secretRef("ssh/"+state.DeployKey+".pub") + "\n"
	for _, k := range admin.AuthorizedKeys {
		keys += k + "\n"
	}
	return Contribution{
		Summary:  "OpenSSH, keys only, host keys pinned by push",
		Packages: []string{"openssh-server"},
		Files: []File{
			text("/etc/ssh/sshd_config", 0o644, "root", "root", render("sshd_config", data), r),
			fromState("/etc/ssh/ssh_host_ed25519_key", 0o600, "root", "root", "ssh/"+state.HostKeyEd25519, r),
			fromState("/etc/ssh/ssh_host_ed25519_key.pub", 0o644, "root", "root", "ssh/"+state.HostKeyEd25519+".pub", r),
			fromState("/etc/ssh/ssh_host_ecdsa_key", 0o600, "root", "root", "ssh/"+state.HostKeyECDSA, r),
			fromState("/etc/ssh/ssh_host_ecdsa_key.pub", 0o644, "root", "root", "ssh/"+state.HostKeyECDSA+".pub", r),
			// Public keys only: expanded, but not sensitive.
			{Path: "/etc/ssh/authorized_keys/" + admin.User, Mode: 0o644, Owner: "root", Group: "root", Content: []byte(keys), Source: Source{Kind: Expand}, Range: admin.Where.Block},
		},
		Dirs:      []Dir{{Path: "/etc/ssh/authorized_keys", Mode: 0o755, Owner: "root", Group: "root"}},
		Symlinks:  []Symlink{enableVendor("ssh.service", "multi-user.target")},
		Units:     []string{"ssh.service"},
		Listeners: []Listener{{Port: s.SSH.Port, Proto: "tcp", Bind: Network, Purpose: "SSH", Setting: "ssh.port", Range: s.SSH.Where.Attr("port")}},
		Openings:  []Opening{{Port: s.SSH.Port, Proto: "tcp", From: s.Firewall.SSHFrom, RateLimit: true, Purpose: "SSH"}},
		Checks: []Check{
			{Name: "sshd running", Kind: "unit", Unit: "ssh.service"},
			{Name: "SSH answers", Kind: "tcp", Port: s.SSH.Port},
		},
		// A reload keeps the sessions, push's own among them.
		Actions: []Action{reload(StageServices, "ssh.service", "its configuration or host keys changed", "/etc/ssh/")},
	}
}
