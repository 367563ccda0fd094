package testenv

import (
	"strings"
	"testing"
)

// TestEsptool runs trixie's esptool and espsecure from the unpacked
// packages: both must start, esptool as version 4.7.
func TestEsptool(t *testing.T) {
	e := RequireEsptool(t)
	if out := e.MustRun(t, "esptool", "version"); !strings.Contains(out, "4.7") {
		t.Errorf("esptool version says %q, want 4.7", out)
	}
	if out := e.MustRun(t, "espsecure", "--help"); !strings.Contains(out, "verify_signature") {
		t.Errorf("espsecure --help lists no verify_signature:\n%s", out)
	}
}
