package spec

import (
	"bytes"
	"strings"
	"testing"
)

func piSpec(board, sources string) string {
	return `
site "pi" {}

gateway "gw" {
  board = "` + board + `"
}

os {
` + sources + `
}
`
}

const debianOnly = `  source "debian" {
    url        = "http://deb.debian.org/debian"
    suite      = "trixie"
    components = ["main", "non-free-firmware"]
  }`

// A Pi's kernel follows the sources: Raspberry Pi's where the Raspberry
// Pi archive is among them (and by default), Debian's where only Debian
// is, and none for a Pi 5, whose hardware Debian's kernel cannot drive.
func TestBoardFollowsSources(t *testing.T) {
	for _, board := range []string{"rpi3", "rpi4"} {
		s := mustLoad(t, piSpec(board, debianOnly), Options{})
		hw := s.Gateway.Hardware
		if hw.RaspberryPi || hw.Boot != "raspi-firmware" || hw.Packages[0] != "linux-image-arm64" || !strings.Contains(hw.Kernel, "no Raspberry Pi archive") {
			t.Errorf("%s from Debian alone: %+v", board, hw)
		}
		// InfluxDB 2 would need InfluxData's repository.
		if s.InfluxDB.Version != 1 {
			t.Errorf("%s from Debian alone takes InfluxDB %d", board, s.InfluxDB.Version)
		}
		def := mustLoad(t, piSpec(board, ""), Options{})
		if hw := def.Gateway.Hardware; !hw.RaspberryPi || hw.Packages[0] != "linux-image-rpi-v8" || def.InfluxDB.Version != 2 {
			t.Errorf("%s with the default sources: %+v, InfluxDB %d", board, hw, def.InfluxDB.Version)
		}
	}

	for _, c := range []struct{ board, sources, want string }{
		{"rpi5", debianOnly, "RP1"},
		{"rpi4", strings.Replace(debianOnly, `, "non-free-firmware"`, "", 1), "non-free-firmware"},
	} {
		_, rep := loadString(t, piSpec(c.board, c.sources), Options{})
		var b bytes.Buffer
		rep.WriteText(&b)
		if !rep.HasErrors() || !strings.Contains(b.String(), c.want) || !strings.Contains(b.String(), "No kernel for the board") {
			t.Errorf("%s: want one error naming %s, got:\n%s", c.board, c.want, b.String())
		}
	}
}
