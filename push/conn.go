// Package push is the admin's side of appliance push: it connects to a
// gateway over SSH (the host key pinned from the site's state), reads
// the generation the gateway runs, works out what the desired one
// changes, uploads only what the gateway lacks into its staging folder
// over SFTP, and runs the apply program there, which switches the
// gateway to the new generation or leaves it on the old one (package
// generation describes the contract; package apply the gateway's side).
//
// No agent is installed first and nothing but OpenSSH runs on the
// gateway for push: file transfer goes through OpenSSH's own sftp-server,
// started with sudo so that it may write where the gateway's services
// read.
package push

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	"golang.org/x/crypto/ssh/knownhosts"
)

// SFTPServer is OpenSSH's SFTP server on Debian.
const SFTPServer = "/usr/lib/openssh/sftp-server"

// Target is a gateway to connect to.
type Target struct {
	// Addr is host:port of the gateway's SSH.
	Addr string
	User string
	// HostKey is the gateway's host key from the site's state. With
	// TrustNew and no HostKey, whatever key the gateway shows is taken
	// (trust on first use, for a gateway appliance did not build) and
	// reported in Conn.HostKey.
	HostKey  ssh.PublicKey
	TrustNew bool
	// Keys are private keys to log in with (the deploy key of the state,
	// or one named by flag); the ssh-agent at SSH_AUTH_SOCK is tried
	// first when there is one.
	Keys []ssh.Signer
	// Jump is a bastion, [user@]host[:port], to reach the gateway through
	// (as ssh -J); its host key is checked against the user's
	// ~/.ssh/known_hosts, as ssh does, or trusted with TrustNew.
	Jump string
	// Timeout bounds each connection's set-up; 20 s when zero.
	Timeout time.Duration
}

// Conn is a connection to a gateway, with root's SFTP.
type Conn struct {
	ssh  *ssh.Client
	jump *ssh.Client
	SFTP *sftp.Client
	sftp *ssh.Session
	// HostKey is the key the gateway showed.
	HostKey ssh.PublicKey
	// sudo prefixes commands that need root (none when User is root).
	sudo []string
}

// Dial connects to a gateway and starts root's SFTP on it.
func Dial(ctx context.Context, t Target) (*Conn, error) {
	if t.Timeout == 0 {
		t.Timeout = 20 * time.Second
	}
	auth, closeAgent := authMethods(t.Keys)
	defer closeAgent()
	c := &Conn{}
	cfg := &ssh.ClientConfig{User: t.User, Auth: auth, Timeout: t.Timeout,
		HostKeyCallback: hostKeyCheck(t.Addr, t.HostKey, t.TrustNew, &c.HostKey)}
	if t.HostKey != nil {
		cfg.HostKeyAlgorithms = []string{t.HostKey.Type()}
	}
	var conn net.Conn
	var err error
	if t.Jump != "" {
		if c.jump, err = dialJump(ctx, t, auth); err != nil {
			return nil, err
		}
		conn, err = c.jump.DialContext(ctx, "tcp", t.Addr)
	} else {
		d := net.Dialer{Timeout: t.Timeout}
		conn, err = d.DialContext(ctx, "tcp", t.Addr)
	}
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("connecting to %s: %w", t.Addr, err)
	}
	sc, chans, reqs, err := ssh.NewClientConn(conn, t.Addr, cfg)
	if err != nil {
		conn.Close()
		c.Close()
		return nil, explain(t, err)
	}
	c.ssh = ssh.NewClient(sc, chans, reqs)
	if t.User != "root" {
		c.sudo = []string{"sudo", "-n"}
	}
	if err := c.startSFTP(); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func dialJump(ctx context.Context, t Target, auth []ssh.AuthMethod) (*ssh.Client, error) {
	user, hostport := t.User, t.Jump
	if i := strings.LastIndex(hostport, "@"); i >= 0 {
		user, hostport = hostport[:i], hostport[i+1:]
	}
	if _, _, err := net.SplitHostPort(hostport); err != nil {
		hostport = net.JoinHostPort(hostport, "22")
	}
	check, err := knownHost(t.TrustNew)
	if err != nil {
		return nil, err
	}
	cfg := &ssh.ClientConfig{User: user, Auth: auth, Timeout: t.Timeout, HostKeyCallback: check}
	d := net.Dialer{Timeout: t.Timeout}
	conn, err := d.DialContext(ctx, "tcp", hostport)
	if err != nil {
		return nil, fmt.Errorf("connecting to the bastion %s: %w", hostport, err)
	}
	sc, chans, reqs, err := ssh.NewClientConn(conn, hostport, cfg)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("the bastion %s: %w", hostport, err)
	}
	return ssh.NewClient(sc, chans, reqs), nil
}

// knownHost checks a bastion against the user's known_hosts.
func knownHost(trustNew bool) (ssh.HostKeyCallback, error) {
	home, _ := os.UserHomeDir()
	kh := filepath.Join(home, ".ssh", "known_hosts")
	cb, err := knownhosts.New(kh)
	if err != nil {
		if trustNew {
			return ssh.InsecureIgnoreHostKey(), nil
		}
		return nil, fmt.Errorf("the bastion's host key cannot be checked: %v; add it to %s (ssh to it once), or push with --trust-new-host-key", err, kh)
	}
	return func(host string, remote net.Addr, key ssh.PublicKey) error {
		err := cb(host, remote, key)
		var ke *knownhosts.KeyError
		if errors.As(err, &ke) && len(ke.Want) == 0 && trustNew {
			return nil
		}
		return err
	}, nil
}

// authMethods: the agent first, then the keys given.
func authMethods(keys []ssh.Signer) ([]ssh.AuthMethod, func()) {
	var auth []ssh.AuthMethod
	closeAgent := func() {}
	if sock := os.Getenv("SSH_AUTH_SOCK"); sock != "" {
		if ac, err := net.Dial("unix", sock); err == nil {
			auth = append(auth, ssh.PublicKeysCallback(agent.NewClient(ac).Signers))
			closeAgent = func() { ac.Close() }
		}
	}
	if len(keys) > 0 {
		auth = append(auth, ssh.PublicKeys(keys...))
	}
	return auth, closeAgent
}

// errHostKey is a gateway that showed another host key than the state's.
var errHostKey = errors.New("host key mismatch")

func hostKeyCheck(addr string, want ssh.PublicKey, trustNew bool, seen *ssh.PublicKey) ssh.HostKeyCallback {
	return func(_ string, _ net.Addr, key ssh.PublicKey) error {
		*seen = key
		if want == nil {
			if trustNew {
				return nil
			}
			return fmt.Errorf("no host key is known for %s", addr)
		}
		if !bytes.Equal(key.Marshal(), want.Marshal()) {
			return fmt.Errorf("%w: %s shows %s %s", errHostKey, addr, key.Type(), ssh.FingerprintSHA256(key))
		}
		return nil
	}
}

// explain turns the SSH handshake's errors into what to check.
func explain(t Target, err error) error {
	switch {
	case errors.Is(err, errHostKey):
		return fmt.Errorf("%v, not the host key of the site's state (%s): this is not the gateway appliance built for this site, or it was reinstalled by other means, or someone is in between. Check the address; if the gateway was rebuilt from another state, push with that state (--state)", err, ssh.FingerprintSHA256(t.HostKey))
	case strings.Contains(err.Error(), "no host key is known"):
		return fmt.Errorf("%v: the site's state holds no host key for it; to trust the key the gateway shows, push once with --trust-new-host-key", err)
	case strings.Contains(err.Error(), "unable to authenticate"):
		return fmt.Errorf("%s refuses %s's keys: %v; log in with the site's deploy key (state ssh/deploy_ed25519), an ssh-agent key the gateway authorizes, or --key", t.Addr, t.User, err)
	}
	return fmt.Errorf("SSH to %s: %w", t.Addr, err)
}

// startSFTP runs OpenSSH's sftp-server as root on the gateway and talks
// SFTP to it over the session's pipes.
func (c *Conn) startSFTP() error {
	s, err := c.ssh.NewSession()
	if err != nil {
		return err
	}
	w, err := s.StdinPipe()
	if err != nil {
		return err
	}
	r, err := s.StdoutPipe()
	if err != nil {
		return err
	}
	var stderr bytes.Buffer
	s.Stderr = &stderr
	if err := s.Start(shellJoin(append(append([]string(nil), c.sudo...), SFTPServer))); err != nil {
		return fmt.Errorf("starting %s on the gateway: %w", SFTPServer, err)
	}
	cl, err := sftp.NewClientPipe(r, w, sftp.UseConcurrentWrites(true))
	if err != nil {
		s.Close()
		msg := strings.TrimSpace(stderr.String())
		if strings.Contains(msg, "sudo") {
			return fmt.Errorf("the gateway's sudo refuses to run %s as root for %s (%s); the admin needs passwordless sudo, which appliance's gateways give", SFTPServer, "the admin", msg)
		}
		return fmt.Errorf("SFTP to the gateway: %v %s", err, msg)
	}
	c.SFTP, c.sftp = cl, s
	return nil
}

// Run runs argv on the gateway as root, streaming its stdout to out;
// what it printed on stderr is in the error. When ctx ends first, Run
// stops waiting and drops the session without signalling the program:
// the apply program then finishes or rolls back on its own.
func (c *Conn) Run(ctx context.Context, argv []string, out io.Writer) error {
	s, err := c.ssh.NewSession()
	if err != nil {
		return err
	}
	defer s.Close()
	var stderr bytes.Buffer
	s.Stdout, s.Stderr = out, &stderr
	done := make(chan error, 1)
	go func() { done <- s.Run(shellJoin(append(append([]string(nil), c.sudo...), argv...))) }()
	select {
	case err := <-done:
		if err != nil {
			if msg := strings.TrimSpace(stderr.String()); msg != "" {
				return fmt.Errorf("%w: %s", err, msg)
			}
		}
		return err
	case <-ctx.Done():
		s.Close()
		return ctx.Err()
	}
}

// Close ends the connection.
func (c *Conn) Close() error {
	if c.SFTP != nil {
		c.SFTP.Close()
	}
	if c.sftp != nil {
		c.sftp.Close()
	}
	if c.ssh != nil {
		c.ssh.Close()
	}
	if c.jump != nil {
		c.jump.Close()
	}
	return nil
}

// shellJoin quotes argv for the remote shell that OpenSSH runs commands
// with: every word in single quotes, so nothing in it is expanded.
func shellJoin(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}
