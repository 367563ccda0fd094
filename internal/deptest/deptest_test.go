package deptest

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestGatewayImportsNoBuild fails when a gateway program depends on any
// package of the build.
func TestGatewayImportsNoBuild(t *testing.T) {
	for _, prog := range Gateway {
		cmd := exec.Command("go", "list", "-deps", prog)
		cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH=arm64", "CGO_ENABLED=0")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", prog, err)
		}
		deps := strings.Fields(string(out))
		for _, d := range deps {
			for _, f := range Forbidden {
				if d == f || strings.HasPrefix(d, f+"/") {
					t.Errorf("%s depends on %s, a package of the build", prog, d)
				}
			}
		}
		t.Logf("%s: %d packages", prog, len(deps))
	}
}
