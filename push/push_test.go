package push_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/appliance/appliance/generation"
	"github.com/appliance/appliance/internal/testenv"
	"github.com/appliance/appliance/pki"
	"github.com/appliance/appliance/push"
	"golang.org/x/crypto/ssh"
)

type keys struct {
	hostPriv []byte
	host     ssh.PublicKey
	client   ssh.Signer
	authLine []byte
}

func newKeys(t *testing.T) keys {
	t.Helper()
	hp, hpub, err := pki.NewSSHKey(pki.SSHEd25519, "host")
	if err != nil {
		t.Fatal(err)
	}
	cp, cpub, err := pki.NewSSHKey(pki.SSHEd25519, "deploy")
	if err != nil {
		t.Fatal(err)
	}
	host, _, _, _, _ := ssh.ParseAuthorizedKey(hpub)
	client, _ := pki.ParseSSHKey(cp)
	return keys{hostPriv: hp, host: host, client: client, authLine: cpub}
}

// TestDialPinsTheHostKey: push reaches a real sshd only with the host key
// the state holds and a key the gateway authorizes; every refusal says
// what to check.
func TestDialPinsTheHostKey(t *testing.T) {
	t.Setenv("SSH_AUTH_SOCK", "")
	k := newKeys(t)
	srv := testenv.StartSSHD(t, k.hostPriv, k.authLine)
	ctx := context.Background()
	good := push.Target{Addr: srv.Addr, User: "root", HostKey: k.host, Keys: []ssh.Signer{k.client}}
	c, err := push.Dial(ctx, good)
	if err != nil {
		t.Fatalf("dial with the pinned key: %v", err)
	}
	c.Close()

	other := newKeys(t)
	for _, tc := range []struct {
		name string
		t    push.Target
		want []string
	}{
		{"another host key", push.Target{Addr: srv.Addr, User: "root", HostKey: other.host, Keys: []ssh.Signer{k.client}}, []string{"host key mismatch", "not the host key of the site's state", ssh.FingerprintSHA256(k.host)}},
		{"no host key known", push.Target{Addr: srv.Addr, User: "root", Keys: []ssh.Signer{k.client}}, []string{"--trust-new-host-key"}},
		{"unauthorized key", push.Target{Addr: srv.Addr, User: "root", HostKey: k.host, Keys: []ssh.Signer{other.client}}, []string{"refuses root's keys", "deploy key"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := push.Dial(ctx, tc.t)
			if err == nil {
				t.Fatal("dialled")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%v; want it to say %q", err, w)
				}
			}
		})
	}
	// Trust on first use takes the key shown, and says which it was.
	c, err = push.Dial(ctx, push.Target{Addr: srv.Addr, User: "root", TrustNew: true, Keys: []ssh.Signer{k.client}})
	if err != nil {
		t.Fatal(err)
	}
	if string(c.HostKey.Marshal()) != string(k.host.Marshal()) {
		t.Errorf("trust on first use reports another key")
	}
	c.Close()
}

// TestStageResumes: the staging upload writes exactly the blobs the
// gateway lacks, as whole files, and a second stage (a resumed push)
// sends none of them again.
func TestStageResumes(t *testing.T) {
	t.Setenv("SSH_AUTH_SOCK", "")
	k := newKeys(t)
	srv := testenv.StartSSHD(t, k.hostPriv, k.authLine)
	root := t.TempDir()
	c, err := push.Dial(context.Background(), push.Target{Addr: srv.Addr, User: "root", HostKey: k.host, Keys: []ssh.Signer{k.client}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	g := &push.Gateway{Conn: c, Root: root}
	if cur, err := g.Current(); err != nil || cur != nil {
		t.Fatalf("a gateway with no generation: %v %v", cur, err)
	}
	blobs := map[string][]byte{}
	m := &generation.Manifest{Format: generation.Format, Generation: 1, Site: "t"}
	for i, body := range []string{"one", "two", strings.Repeat("big", 1<<20)} {
		sum := sha(body)
		blobs[sum] = []byte(body)
		m.Entries = append(m.Entries, generation.Entry{Path: "/etc/f" + string(rune('a'+i)), Type: generation.File, Mode: 0o644, Owner: "root", Group: "root", SHA256: sum, Size: int64(len(body))})
	}
	apply := sha("apply program")
	blobs[apply] = []byte("apply program")
	d := generation.Compare(nil, m)
	up := push.Upload{Manifest: m, Blobs: blobs, Apply: apply}
	st, err := g.Stage(context.Background(), d, up)
	if err != nil {
		t.Fatal(err)
	}
	if st.Files != 4 || st.Reused != 0 {
		t.Errorf("first stage: %+v; want 4 files sent", st)
	}
	for sum, body := range blobs {
		got, err := os.ReadFile(filepath.Join(root, generation.Root, "staging/blobs", sum))
		if err != nil || string(got) != string(body) {
			t.Errorf("blob %s on the gateway: %v", sum[:8], err)
		}
	}
	if fi, _ := os.Stat(filepath.Join(root, generation.Root, "staging/blobs", apply)); fi == nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("the apply program is not executable by root: %v", fi)
	}
	if got, err := generation.Read(filepath.Join(root, generation.Root, "staging/manifest.json")); err != nil || got.Generation != 1 {
		t.Errorf("the staged manifest: %v %v", got, err)
	}
	st, err = g.Stage(context.Background(), d, up)
	if err != nil || st.Files != 0 || st.Reused != 4 {
		t.Errorf("second stage: %+v %v; want nothing sent", st, err)
	}
	left, _ := filepath.Glob(filepath.Join(root, generation.Root, "staging/blobs/.tmp-*"))
	if len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

func sha(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}
