package firmware_test

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/appliance/appliance/internal/testenv"
)

// TestNoReferenceLittlefsInBinary: the reference littlefs (C, through
// cgo) is a test oracle only; the appliance binary must not link it.
func TestNoReferenceLittlefsInBinary(t *testing.T) {
	testenv.Require(t, "go")
	out, err := exec.Command("go", "list", "-deps", "github.com/appliance/appliance/cmd/appliance").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 {
		t.Fatalf("go list -deps lists only %d packages: %s", len(deps), out)
	}
	for _, p := range deps {
		if strings.HasPrefix(p, "tinygo.org/x/tinyfs") || strings.HasSuffix(p, "/firmware/internal/lfsref") || strings.HasSuffix(p, "/firmware/internal/fwtest") {
			t.Errorf("cmd/appliance depends on %s, which only tests may use", p)
		}
	}
}
