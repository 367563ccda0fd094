package bootinit

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// unpacked lists the packages the dpkg status file shows unpacked but not
// configured, in the file's order, with the name their info files have
// (pkg or pkg:arch for Multi-Arch: same packages).
func unpacked(root string) ([][2]string, error) {
	f, err := os.Open(filepath.Join(root, "var/lib/dpkg/status"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out [][2]string
	var pkg, arch, ma, status string
	flush := func() {
		if pkg != "" && status == "install ok unpacked" {
			name := pkg
			if ma == "same" {
				name = pkg + ":" + arch
			}
			out = append(out, [2]string{pkg, name})
		}
		pkg, arch, ma, status = "", "", "", ""
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			flush()
			continue
		}
		k, v, ok := strings.Cut(line, ": ")
		if !ok {
			continue
		}
		switch k {
		case "Package":
			pkg = v
		case "Architecture":
			arch = v
		case "Multi-Arch":
			ma = v
		case "Status":
			status = v
		}
	}
	flush()
	return out, sc.Err()
}

// PreinstAll runs "preinst install" of every unpacked package, as dpkg
// --unpack would have before it unpacked the files: appliance unpacked
// them on the build host, where no maintainer script may run. Essential
// packages work unconfigured, which is what these scripts rely on.
func PreinstAll(root string, out io.Writer, env []string) error {
	pkgs, err := unpacked(root)
	if err != nil {
		return fmt.Errorf("reading the dpkg status: %w", err)
	}
	for _, p := range pkgs {
		script := filepath.Join(root, "var/lib/dpkg/info", p[1]+".preinst")
		if _, err := os.Stat(script); err != nil {
			continue
		}
		c := exec.Command(script, "install")
		c.Env = append(env, "DPKG_MAINTSCRIPT_PACKAGE="+p[0], "DPKG_MAINTSCRIPT_NAME=preinst", "DPKG_ADMINDIR=/var/lib/dpkg", "DPKG_ROOT=")
		c.Stdout, c.Stderr = out, out
		if err := c.Run(); err != nil {
			return fmt.Errorf("%s preinst install: %w", p[0], err)
		}
	}
	return nil
}
