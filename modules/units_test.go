package modules_test

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/appliance/appliance/internal/testenv"
)

// maxExposure is the bar for every service appliance runs.
const maxExposure = 2.5

// unsandboxed are units appliance deliberately leaves open, with why.
var unsandboxed = map[string]string{
	"ssh.service":                  "starts the administrator's sessions, which must be able to administer the system",
	"unattended-upgrades.service":  "installs packages, which touches the whole system",
	"systemd-networkd.service":     "systemd's own unit, sandboxed upstream; it must change the kernel's network settings",
	"systemd-timesyncd.service":    "Debian's own unit, already sandboxed by systemd",
	"wpa_supplicant@wlan0.service": "Debian's own unit; it drives the radio",
}

// systemRoot is a root folder with the host's systemd units (the vendor
// units of Debian's packages among them), the units of packages not in
// Debian, and the gateway's files.
func systemRoot(t *testing.T, w *gw, influx2 bool) string {
	t.Helper()
	root := w.root
	unitDir := filepath.Join(root, "usr/lib/systemd/system")
	os.MkdirAll(unitDir, 0o755)
	if out, err := testenv.Run("cp", "-a", "/lib/systemd/system/.", unitDir); err != nil {
		t.Fatal(out)
	}
	copyFile := func(from, to string) {
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(to, b, 0o644)
	}
	copyFile("testdata/vendor-units/grafana-server.service", filepath.Join(unitDir, "grafana-server.service"))
	copyFile("testdata/vendor-units/systemd-resolved.service", filepath.Join(unitDir, "systemd-resolved.service"))
	if influx2 {
		copyFile("testdata/vendor-units/influxdb2.service", filepath.Join(unitDir, "influxdb.service"))
	}
	return root
}

var execLine = regexp.MustCompile(`(?m)^Exec[A-Za-z]*=[-@+!:]*([^ \n]+)`)

// stubExecutables makes sure every program a unit runs exists in the
// root, as systemd-analyze verify checks: programs of packages not
// installed here (Grafana, our own) are stand-ins there.
func stubExecutables(t *testing.T, root string, units ...string) {
	for _, u := range units {
		b, err := os.ReadFile(u)
		if err != nil {
			continue
		}
		for _, m := range execLine.FindAllStringSubmatch(string(b), -1) {
			prog := m[1]
			if !strings.HasPrefix(prog, "/") {
				// A bare name is looked up on PATH, as systemd does.
				prog = "/usr/bin/" + prog
			}
			p := filepath.Join(root, prog)
			if _, err := os.Stat(p); err == nil {
				continue
			}
			if host, err := os.Stat(prog); err == nil && host.Mode().IsRegular() {
				data, _ := os.ReadFile(prog)
				os.MkdirAll(filepath.Dir(p), 0o755)
				os.WriteFile(p, data, 0o755)
				continue
			}
			os.MkdirAll(filepath.Dir(p), 0o755)
			os.WriteFile(p, []byte("#!/bin/sh\nexit 0\n"), 0o755)
		}
	}
}

var exposureRe = regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+)`)

// exposure runs systemd-analyze security offline on a unit in root.
func exposure(t *testing.T, root, unit string) float64 {
	t.Helper()
	out, _ := exec.Command("systemd-analyze", "security", "--offline=true", "--no-pager", "--root="+root, unit).CombinedOutput()
	m := exposureRe.FindSubmatch(out)
	if m == nil {
		t.Errorf("systemd-analyze security %s:\n%s", unit, out)
		return 10
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return v
}

// TestUnits checks every unit the modules run or change: systemd-analyze
// verify accepts it with its drop-ins, and systemd-analyze security
// rates every service appliance runs at 2.5 or lower.
func TestUnits(t *testing.T) {
	testenv.Require(t, "systemd-analyze")
	for _, tc := range []struct {
		name    string
		src     string
		influx2 bool
	}{
		{"influxdb1", siteHCL("mqtt {\n  local_plain_port = 1883\n}\n"), false},
		{"influxdb2+grafana", siteHCL("influxdb {\n  version = 2\n  expose = true\n}\ngrafana {}\n"), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newGW(t, tc.src)
			root := systemRoot(t, w, tc.influx2)
			var units []string
			for _, c := range w.g.Modules.Contributions {
				units = append(units, c.Units...)
			}
			var paths []string
			for _, u := range units {
				paths = append(paths, filepath.Join(root, "usr/lib/systemd/system", u), filepath.Join(root, "etc/systemd/system", u), filepath.Join(root, "etc/systemd/system", u+".d/appliance-sandbox.conf"))
			}
			stubExecutables(t, root, paths...)
			for _, u := range units {
				if strings.Contains(u, "@") {
					continue // an instance of a template the host may lack
				}
				if why, ok := unsandboxed[u]; ok && !unitExists(root, u) {
					t.Logf("%-36s not on this machine (not sandboxed: %s)", u, why)
					continue
				}
				out, err := exec.Command("systemd-analyze", "verify", "--man=no", "--root="+root, u).CombinedOutput()
				if err != nil || hasProblem(string(out)) {
					t.Errorf("systemd-analyze verify %s: %v\n%s", u, err, out)
				}
				score := exposure(t, root, u)
				if why, ok := unsandboxed[u]; ok {
					t.Logf("%-36s exposure %.1f (not sandboxed: %s)", u, score, why)
					continue
				}
				t.Logf("%-36s exposure %.1f", u, score)
				if score > maxExposure {
					t.Errorf("%s: exposure %.1f; want %.1f or lower", u, score, maxExposure)
				}
			}
		})
	}
}

func unitExists(root, u string) bool {
	for _, d := range []string{"usr/lib/systemd/system", "etc/systemd/system"} {
		if _, err := os.Stat(filepath.Join(root, d, u)); err == nil {
			return true
		}
	}
	return false
}

// hasProblem reports whether verify's output names a problem of our
// units (it also chats about units elsewhere on the host).
func hasProblem(out string) bool {
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		l := sc.Text()
		if strings.Contains(l, "Unknown key") || strings.Contains(l, "Failed to") || strings.Contains(l, "is not executable") || strings.Contains(l, "Invalid") || strings.Contains(l, "bad-setting") {
			return true
		}
	}
	return false
}
