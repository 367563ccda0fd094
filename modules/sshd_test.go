package modules_test

import (
	"os"
	"strings"
	"testing"

	"github.com/appliance/appliance/internal/testenv"
	"golang.org/x/crypto/ssh"
)

// TestSSHD checks the generated sshd_config with OpenSSH itself: sshd -t
// accepts it, and sshd -T shows the settings in force for the admin.
func TestSSHD(t *testing.T) {
	testenv.Require(t, "sshd")
	w := newGW(t, siteHCL(`
ssh {
  port = 2222
}
`))
	conf := w.path("/etc/ssh/sshd_config")
	testenv.Rewrite(t, conf, "/etc/ssh/ssh_host_", w.path("/etc/ssh/ssh_host_"))
	// sshd insists on its privilege separation folder even to test.
	os.MkdirAll("/run/sshd", 0o755)
	if out, err := testenv.Run("sshd", "-t", "-f", conf); err != nil {
		t.Fatalf("sshd -t refuses the config: %v\n%s", err, out)
	}
	out, err := testenv.Run("sshd", "-T", "-f", conf, "-C", "user=admin,host=client,addr=192.168.1.9")
	if err != nil {
		t.Fatal(err)
	}
	contains(t, "sshd -T", out,
		"port 2222\n", "permitrootlogin no\n", "passwordauthentication no\n", "kbdinteractiveauthentication no\n",
		"authenticationmethods publickey\n", "allowusers admin\n", "x11forwarding no\n", "allowtcpforwarding no\n",
		"kexalgorithms sntrup761x25519-sha512@openssh.com,curve25519-sha256,curve25519-sha256@libssh.org\n",
		"ciphers chacha20-poly1305@openssh.com,aes256-gcm@openssh.com,aes128-gcm@openssh.com\n",
		"macs hmac-sha2-512-etm@openssh.com,hmac-sha2-256-etm@openssh.com\n",
		"authorizedkeysfile /etc/ssh/authorized_keys/%u\n", "maxauthtries 3\n")
	if strings.Contains(out, "ssh-rsa,") || strings.Contains(out, "hmac-sha1") {
		t.Errorf("sshd -T offers SHA-1 algorithms:\n%s", out)
	}

	// The host keys are the state's, and the admin's keys file holds the
	// deploy key whole.
	hostPub, _ := os.ReadFile(w.path("/etc/ssh/ssh_host_ed25519_key.pub"))
	if string(hostPub) != string(w.stateFile(t, "ssh/ssh_host_ed25519_key.pub")) {
		t.Errorf("host key differs from the state's")
	}
	keys, _ := os.ReadFile(w.path("/etc/ssh/authorized_keys/admin"))
	deploy := strings.TrimSpace(string(w.stateFile(t, "ssh/deploy_ed25519.pub")))
	if !strings.Contains(string(keys), deploy+"\n") || strings.Contains(string(keys), "@@") {
		t.Errorf("authorized keys:\n%s", keys)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(keys)), "\n") {
		if strings.HasPrefix(line, "#") {
			continue
		}
		if _, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line)); err != nil {
			t.Errorf("authorized key %q: %v", line, err)
		}
	}
}
