package testenv

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// SSHD is Debian's OpenSSH server on a loopback port of its own, with
// the host key and authorized keys a test gives: the gateway's sshd as
// push meets it, logged into as root (the test's own user).
type SSHD struct {
	*Proc
	Addr string
}

// StartSSHD starts sshd with hostKey (an OpenSSH private key) and
// authorizedKeys (authorized_keys lines) for root, keys only.
func StartSSHD(t testing.TB, hostKey, authorizedKeys []byte) *SSHD {
	t.Helper()
	Require(t, "sshd")
	port := FreePort(t)
	argv, err := SSHDCommand(t.TempDir(), port, hostKey, authorizedKeys)
	if err != nil {
		t.Fatal(err)
	}
	p := Start(t, argv[0], argv[1:]...)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	p.WaitPort(t, addr, 10*time.Second)
	return &SSHD{Proc: p, Addr: addr}
}

// SSHDCommand writes sshd's configuration into dir, for a server on the
// loopback port that takes root with the authorized keys only, and
// returns the command that runs it in the foreground.
func SSHDCommand(dir string, port int, hostKey, authorizedKeys []byte) ([]string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	os.Chmod(dir, 0o700)
	hk := filepath.Join(dir, "ssh_host_key")
	ak := filepath.Join(dir, "authorized_keys")
	if err := os.WriteFile(hk, hostKey, 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(ak, authorizedKeys, 0o600); err != nil {
		return nil, err
	}
	conf := filepath.Join(dir, "sshd_config")
	err := os.WriteFile(conf, []byte(fmt.Sprintf(`Port %d
ListenAddress 127.0.0.1
HostKey %s
AuthorizedKeysFile %s
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PidFile %s
AllowTcpForwarding yes
MaxSessions 32
MaxStartups 32
LogLevel VERBOSE
`, port, hk, ak, filepath.Join(dir, "sshd.pid"))), 0o600)
	if err != nil {
		return nil, err
	}
	// sshd insists on its privilege separation folder.
	os.MkdirAll("/run/sshd", 0o755)
	sshd, err := sshdPath()
	if err != nil {
		return nil, err
	}
	return []string{sshd, "-D", "-e", "-f", conf}, nil
}

// sshdPath is sshd by its absolute path, which sshd demands to re-exec
// itself.
func sshdPath() (string, error) {
	for _, p := range []string{"/usr/sbin/sshd", "/sbin/sshd"} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("sshd is needed (Debian's openssh-server; scripts/deps installs it)")
}
