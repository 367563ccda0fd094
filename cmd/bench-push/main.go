// Command bench-push times appliance push against its peer, Ansible,
// side by side on this machine: both update a gateway behind a real
// OpenSSH sshd on loopback (a root folder laid out as appliance build
// leaves a gateway, with stand-ins for systemctl, as the push tests use)
// to the demo site's desired state. Run it with make bench-push, as root.
//
// Three runs each:
//
//   - nothing changed: the gateway already holds the desired state;
//   - one file: a setting (ingest.batch_size) changes one file, whose
//     service restarts;
//   - a node added: its certificate, the broker's ACL, Nginx's node map
//     and ingest's configuration change.
//
// appliance push runs as a user runs it: the spec, the state, the whole
// desired gateway computed, the gateway's generation read, what changed
// uploaded, the apply program's switch with its health checks, and the
// confirmation over a new connection. Ansible (ansible-playbook from
// Debian's ansible-core) runs a playbook that manages the same files
// with the copy module (their content, mode and owner) and restarts the
// same services through handlers, as a hand-written playbook for this
// gateway would; it does less (no checks, no rollback, no generations).
package main

import (
	"bytes"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/appliance/appliance/desired"
	"github.com/appliance/appliance/internal/benchrun"
	"github.com/appliance/appliance/internal/testenv"
	"github.com/appliance/appliance/push/pushtest"
	"github.com/appliance/appliance/spec"
	"github.com/appliance/appliance/state"
)

var (
	rounds   = flag.Int("rounds", 3, "how often to run every measurement; medians are compared")
	specPath = flag.String("spec", "examples/demo.hcl", "the site")
	lockPath = flag.String("lock", "examples/demo.lock", "its lock")
	withPeer = flag.Bool("peer", true, "time Ansible too")
)

func main() {
	flag.Parse()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench-push:", err)
		os.Exit(1)
	}
}

type bench struct {
	work, spec, state string
	bin               string
	env               []string
	apply             []string
	appl, peer        string // the two gateways' roots
	addr              string
	tools             *pushtest.Tools
}

func run() error {
	b := &bench{}
	var err error
	if b.work, err = os.MkdirTemp("/var/tmp", "appliance-bench-push-"); err != nil {
		return err
	}
	defer os.RemoveAll(b.work)
	if err := b.setUp(); err != nil {
		return err
	}
	all := map[string][]benchrun.Result{}
	var order []string
	scenarios := []struct {
		name string
		edit string
	}{
		{"nothing changed", ""},
		{"one file", "\ningest {\n  batch_size = %d\n}\n"},
		// A node of a new name each round: its certificate is new.
		{"a node added", "\nnode \"extra%d\" {\n  firmware = firmware.sensor\n  sensor   = { type = \"dht22\", pin = 5 }\n  interval = \"10s\"\n  wifi     = { ssid = \"demo-sensors\", psk = var.wifi_psk }\n}\n"},
	}
	demo, err := os.ReadFile(*specPath)
	if err != nil {
		return err
	}
	for round := 0; round < *rounds; round++ {
		for _, sc := range scenarios {
			// Each scenario starts from the demo as it is, on both gateways.
			if err := os.WriteFile(b.spec, demo, 0o644); err != nil {
				return err
			}
			if err := b.settle(); err != nil {
				return err
			}
			spec := demo
			if sc.edit != "" {
				spec = append(append([]byte(nil), demo...), fmt.Sprintf(sc.edit, 1000+round)...)
			}
			if err := os.WriteFile(b.spec, spec, 0o644); err != nil {
				return err
			}
			// The node's certificate comes from the state, which push
			// makes; Ansible's playbook is written from the same desired
			// state afterwards, so both get the same bytes.
			r, err := b.push("appliance: " + sc.name)
			if err != nil {
				return err
			}
			add(all, &order, r)
			if *withPeer {
				r, err := b.ansible("Ansible: " + sc.name)
				if err != nil {
					return err
				}
				add(all, &order, r)
			}
		}
	}
	fmt.Printf("appliance push against ansible-playbook, %d rounds, %d cores; a gateway behind sshd on loopback\n\n", *rounds, runtime.NumCPU())
	med := benchrun.Table(os.Stdout, order, all)
	if *withPeer {
		fmt.Println()
		for _, sc := range scenarios {
			a, p := med["appliance: "+sc.name], med["Ansible: "+sc.name]
			if a > 0 {
				fmt.Printf("%-16s appliance %6.2f s, Ansible %6.2f s: %.1f× faster\n", sc.name, a.Seconds(), p.Seconds(), p.Seconds()/a.Seconds())
			}
		}
	}
	return nil
}

func add(all map[string][]benchrun.Result, order *[]string, r benchrun.Result) {
	if _, ok := all[r.What]; !ok {
		*order = append(*order, r.What)
	}
	all[r.What] = append(all[r.What], r)
}

// setUp builds appliance with its gateway programs for this machine,
// makes the site's state and both gateways, and starts sshd.
func (b *bench) setUp() error {
	siteDir := filepath.Join(b.work, "site")
	os.MkdirAll(siteDir, 0o755)
	b.spec = filepath.Join(siteDir, "demo.hcl")
	b.state = filepath.Join(siteDir, ".appliance", "demo")
	for src, dst := range map[string]string{*specPath: b.spec, *lockPath: filepath.Join(siteDir, "demo.lock")} {
		data, err := os.ReadFile(src)
		if err != nil {
			return err
		}
		os.WriteFile(dst, data, 0o644)
	}
	home, _ := os.UserHomeDir()
	b.env = append(os.Environ(), "HOME="+home, "APPLIANCE_VAR_wifi_psk=bench-push-passphrase", "SSH_AUTH_SOCK=")
	// A release binary whose embedded programs are for this machine, as
	// the gateway's are for it: push then builds nothing.
	b.bin = filepath.Join(b.work, "appliance")
	gen := filepath.Join("images", "gobin", "embedded")
	defer exec.Command("go", "generate", "./images/gobin").Run()
	for _, argv := range [][]string{
		{"go", "run", "./images/gobin/internal/gen", "-o", gen, "-arch", runtime.GOARCH},
		{"go", "build", "-tags", "appliance_embed", "-trimpath", "-o", b.bin, "./cmd/appliance"},
	} {
		if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %v\n%s", strings.Join(argv, " "), err, out)
		}
	}
	if out, err := b.cmd("plan", b.spec).CombinedOutput(); err != nil {
		return fmt.Errorf("plan: %v\n%s", err, out)
	}
	var err error
	if b.tools, err = pushtest.FakeTools(filepath.Join(b.work, "tools")); err != nil {
		return err
	}
	for _, a := range b.tools.ApplyArgs {
		b.apply = append(b.apply, "--apply-arg="+a)
	}
	b.appl, b.peer = filepath.Join(b.work, "gw-appliance"), filepath.Join(b.work, "gw-ansible")
	for _, root := range []string{b.appl, b.peer} {
		os.MkdirAll(root, 0o755)
		if err := pushtest.Gateway(root, b.spec, b.state, b.env); err != nil {
			return err
		}
	}
	st, err := state.Open(b.state, state.Options{})
	if err != nil {
		return err
	}
	hostKey, _ := st.ReadFile("ssh/" + state.HostKeyEd25519)
	deployPub, _ := st.ReadFile("ssh/" + state.DeployKey + ".pub")
	st.Close()
	port := freePort()
	argv, err := testenv.SSHDCommand(filepath.Join(b.work, "sshd"), port, hostKey, deployPub)
	if err != nil {
		return err
	}
	sshd := exec.Command(argv[0], argv[1:]...)
	if err := sshd.Start(); err != nil {
		return err
	}
	go func() { sshd.Wait() }()
	b.addr = "127.0.0.1:" + strconv.Itoa(port)
	time.Sleep(500 * time.Millisecond)
	return nil
}

func (b *bench) cmd(args ...string) *exec.Cmd {
	c := exec.Command(b.bin, args...)
	c.Env = b.env
	return c
}

func (b *bench) pushCmd() *exec.Cmd {
	args := append([]string{"push", "--host", b.addr, "--user", "root", "--gateway-root", b.appl, "--gateway-arch", runtime.GOARCH}, b.apply...)
	return b.cmd(append(args, b.spec)...)
}

// settle brings both gateways to the spec, untimed.
func (b *bench) settle() error {
	if out, err := b.pushCmd().CombinedOutput(); err != nil {
		return fmt.Errorf("push: %v\n%s", err, out)
	}
	if *withPeer {
		if _, err := b.ansible("settle"); err != nil {
			return err
		}
	}
	return nil
}

func (b *bench) push(what string) (benchrun.Result, error) {
	r, _, err := benchrun.Timed(what, b.pushCmd())
	return r, err
}

// ansible writes the playbook of the desired state and runs it.
func (b *bench) ansible(what string) (benchrun.Result, error) {
	dir := filepath.Join(b.work, "ansible")
	if err := b.playbook(dir); err != nil {
		return benchrun.Result{}, err
	}
	cmd := exec.Command("ansible-playbook", "-i", filepath.Join(dir, "inventory"), filepath.Join(dir, "playbook.yml"))
	cmd.Env = append(b.env, "ANSIBLE_HOST_KEY_CHECKING=False", "ANSIBLE_PIPELINING=True", "ANSIBLE_NOCOLOR=1", "ANSIBLE_RETRY_FILES_ENABLED=False")
	r, out, err := benchrun.Timed(what, cmd)
	if err != nil {
		return r, fmt.Errorf("%v\n%s", err, out)
	}
	return r, nil
}

// playbook writes what a hand-written playbook for the gateway holds:
// every managed file's content, a copy task per service that restarts
// on its change, and the handlers.
func (b *bench) playbook(dir string) error {
	site, rep := spec.Load(b.spec, spec.Options{Environ: b.env})
	if rep.HasErrors() {
		return fmt.Errorf("spec: %v", rep.Diagnostics)
	}
	g, err := desired.Compute(site)
	if err != nil {
		return err
	}
	st, err := state.Open(b.state, state.Options{})
	if err != nil {
		return err
	}
	defer st.Close()
	r, err := g.Resolve(st, time.Now())
	if err != nil {
		return err
	}
	files := filepath.Join(dir, "files")
	os.RemoveAll(files)
	tasks := map[string][]desired.File{}
	var keys []string
	for _, f := range r.Files {
		p := filepath.Join(files, f.Path)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, f.Data, 0o644); err != nil {
			return err
		}
		handler := ""
		for _, a := range g.Modules.Actions() {
			for _, pre := range a.Paths {
				if f.Path == pre || strings.HasSuffix(pre, "/") && strings.HasPrefix(f.Path, pre) {
					if handler == "" && a.Unit != "" {
						handler = a.Do + " " + a.Unit
					}
				}
			}
		}
		if _, ok := tasks[handler]; !ok {
			keys = append(keys, handler)
		}
		tasks[handler] = append(tasks[handler], f)
	}
	sort.Strings(keys)
	var pb bytes.Buffer
	pb.WriteString("- hosts: gateway\n  gather_facts: false\n  tasks:\n")
	for i, h := range keys {
		fmt.Fprintf(&pb, "    - name: files %d\n      ansible.builtin.copy:\n        src: \"%s{{ item.path }}\"\n        dest: \"%s{{ item.path }}\"\n        mode: \"{{ item.mode }}\"\n        owner: \"{{ item.owner }}\"\n        group: \"{{ item.group }}\"\n", i, files, b.peer)
		if h != "" {
			fmt.Fprintf(&pb, "      notify: %q\n", h)
		}
		pb.WriteString("      loop:\n")
		for _, f := range tasks[h] {
			fmt.Fprintf(&pb, "        - {path: %q, mode: \"%04o\", owner: %q, group: %q}\n", f.Path, f.Mode.Perm(), f.Owner, f.Group)
		}
	}
	pb.WriteString("  handlers:\n")
	for _, h := range keys {
		if h == "" {
			continue
		}
		fmt.Fprintf(&pb, "    - name: %q\n      ansible.builtin.command: %s %s\n", h, filepath.Join(filepath.Dir(b.tools.Calls), "systemctl"), h)
	}
	if err := os.WriteFile(filepath.Join(dir, "playbook.yml"), pb.Bytes(), 0o644); err != nil {
		return err
	}
	host, port, _ := strings.Cut(b.addr, ":")
	inv := fmt.Sprintf("[gateway]\ngw ansible_host=%s ansible_port=%s ansible_user=root ansible_ssh_private_key_file=%s ansible_python_interpreter=/usr/bin/python3\n",
		host, port, filepath.Join(b.state, "ssh", state.DeployKey))
	return os.WriteFile(filepath.Join(dir, "inventory"), []byte(inv), 0o644)
}

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 22022
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
