package rootfs

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/appliance/appliance/internal/testenv"
)

// aptGet is the host's apt-get with a private configuration: no host
// sources, preferences or state, an empty dpkg status, one
// architecture, Recommends and Suggests off; it reads uncompressed
// indexes by name. It is the reference the resolver is compared with.
type aptGet struct {
	env []string
}

// aptLine is one sources.list line.
type aptLine struct {
	URL, Suite string
	Components []string
	Keyring    []byte // binary OpenPGP keyring for signed-by
}

// newAptGet writes the configuration and runs apt-get update over the
// sources, which apt verifies itself (signature, index hashes).
func newAptGet(t *testing.T, arch string, sources []aptLine) *aptGet {
	t.Helper()
	testenv.Require(t, "apt-get")
	dir := t.TempDir()
	var list strings.Builder
	for i, s := range sources {
		kr := filepath.Join(dir, fmt.Sprintf("key%d.pgp", i))
		if err := os.WriteFile(kr, s.Keyring, 0o644); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&list, "deb [signed-by=%s] %s %s %s\n", kr, s.URL, s.Suite, strings.Join(s.Components, " "))
	}
	for _, d := range []string{"etc/parts", "etc/prefs", "state/lists/partial", "cache/archives/partial", "log"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	conf := fmt.Sprintf(`Dir::Etc::Main "/dev/null";
Dir::Etc::Parts "%[1]s/etc/parts";
Dir::Etc::SourceList "%[1]s/sources.list";
Dir::Etc::SourceParts "%[1]s/etc/parts";
Dir::Etc::Preferences "/dev/null";
Dir::Etc::PreferencesParts "%[1]s/etc/prefs";
Dir::State "%[1]s/state";
Dir::State::status "%[1]s/status";
Dir::Cache "%[1]s/cache";
Dir::Log "%[1]s/log";
APT::Architecture "%[2]s";
APT::Architectures { "%[2]s"; };
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
Debug::NoLocking "true";
APT::Sandbox::User "root";
Acquire::By-Hash "no";
Acquire::CompressionTypes::uncompressed ".";
Acquire::CompressionTypes::Order { "uncompressed"; };
`, dir, arch)
	for name, b := range map[string]string{"sources.list": list.String(), "status": "", "apt.conf": conf} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(b), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	a := &aptGet{env: append(os.Environ(), "APT_CONFIG="+filepath.Join(dir, "apt.conf"))}
	cmd := exec.Command("apt-get", "update", "-qq")
	cmd.Env = a.env
	if out, err := cmd.CombinedOutput(); err != nil || len(out) > 0 {
		t.Fatalf("apt-get update: %v\n%s", err, out)
	}
	return a
}

// install runs apt-get install --simulate and returns the packages apt
// would install, name → version.
func (a *aptGet) install(t *testing.T, want []string) map[string]string {
	t.Helper()
	cmd := exec.Command("apt-get", append([]string{"install", "--simulate", "-qq"}, want...)...)
	cmd.Env = a.env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("apt-get install --simulate %s: %v\n%s", strings.Join(want, " "), err, out)
	}
	got := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		// Inst NAME (VERSION SUITE [ARCH])
		f := strings.Fields(line)
		if len(f) >= 3 && f[0] == "Inst" {
			got[f[1]] = strings.TrimPrefix(f[2], "(")
		}
	}
	if len(got) == 0 {
		t.Fatalf("apt-get install --simulate %s installs nothing:\n%s", strings.Join(want, " "), out)
	}
	return got
}

// aptRequest is what apt-get is asked for the same set: the lock's base
// packages and the requested ones, sorted by name as the resolver takes
// them (apt installs the dependencies of its command line's packages in
// the command line's order).
func aptRequest(req *Request, lock *Lock) []string {
	var want []string
	for _, p := range lock.Packages {
		if p.Base {
			want = append(want, p.Name)
		}
	}
	want = append(want, req.Packages...)
	sort.Strings(want)
	return slices.Compact(want)
}

// diffWithApt lists how the lock and apt's choice differ, sorted.
func diffWithApt(lock *Lock, apt map[string]string) []string {
	ours := map[string]string{}
	for _, p := range lock.Packages {
		ours[p.Name] = p.Version
	}
	var diffs []string
	for n, v := range ours {
		if apt[n] != v {
			diffs = append(diffs, fmt.Sprintf("%s: appliance %s, apt %q", n, v, apt[n]))
		}
	}
	for n, v := range apt {
		if _, ok := ours[n]; !ok {
			diffs = append(diffs, fmt.Sprintf("%s: appliance none, apt %s", n, v))
		}
	}
	sort.Strings(diffs)
	return diffs
}
