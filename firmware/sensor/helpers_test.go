// Package sensor_test holds the C sensor firmware's core against the Go
// side of its contracts (ingest/wire decodes its payloads, firmware/ota
// verifies the same manifests, firmware/identity writes the configs it
// reads) and runs its Linux build against the real gateway services.
// The C programs are built here, under AddressSanitizer and UBSan, with
// the folder's Makefile.
package sensor_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/appliance/appliance/internal/testenv"
)

var built struct {
	sync.Once
	dir string
	err error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

// programs builds sensor-host and sensor-tool once per test binary and
// returns their paths.
func programs(t testing.TB) (host, tool string) {
	t.Helper()
	testenv.Require(t, "make", "gcc")
	built.Do(func() {
		built.dir, built.err = os.MkdirTemp("", "appliance-sensor-fw-")
		if built.err != nil {
			return
		}
		host, tool := filepath.Join(built.dir, "sensor-host"), filepath.Join(built.dir, "sensor-tool")
		cmd := exec.Command("make", "--no-print-directory", "-j2", "SANITIZE=1", "BUILD="+built.dir, host, tool)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			built.err = fmt.Errorf("building the firmware's host programs: %v\n%s\n(missing headers or libraries come from Debian's -dev packages: run scripts/deps as root)", err, out.String())
		}
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return filepath.Join(built.dir, "sensor-host"), filepath.Join(built.dir, "sensor-tool")
}

// run runs the tool with stdin and returns its standard output; the
// sanitizers' reports on standard error fail the test.
func run(t testing.TB, stdin string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil || errOut.Len() > 0 {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, errOut.String())
	}
	return out.String()
}
