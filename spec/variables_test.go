package spec

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const varSpec = `
site "vars" {}

variable "host" {
  type    = string
  default = "from-default"
}

variable "count" {
  type    = number
  default = 1
}

variable "rooms" {
  type    = list(string)
  default = []
}

gateway "gw" {
  board    = "qemu-arm64"
  hostname = var.host
}

firmware "fw" {
  chip    = "esp32"
  version = "1.0.0"
}

node "n" {
  count  = var.count
  sensor = { type = "dht11", pin = 4 }
  wifi   = { ssid = "lab", psk = "long enough passphrase" }
  tags   = { rooms = join(",", var.rooms) }
}
`

func loadString(t *testing.T, src string, opts Options) (*Site, *Report) {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "site.hcl")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	if opts.Environ == nil {
		opts.Environ = testEnv
	}
	return Load(path, opts)
}

func mustLoad(t *testing.T, src string, opts Options) *Site {
	t.Helper()
	site, rep := loadString(t, src, opts)
	if rep.HasErrors() {
		var b bytes.Buffer
		rep.WriteText(&b)
		t.Fatalf("Load failed:\n%s", b.String())
	}
	return site
}

// TestVariablePrecedence: default < environment < var-files in order <
// --var in order.
func TestVariablePrecedence(t *testing.T) {
	dir := t.TempDir()
	f1 := filepath.Join(dir, "one.hcl")
	f2 := filepath.Join(dir, "two.hcl")
	os.WriteFile(f1, []byte(`host = "from-file-one"`+"\n"+`count = 2`), 0o644)
	os.WriteFile(f2, []byte(`host = "from-file-two"`), 0o644)

	for _, tc := range []struct {
		name  string
		opts  Options
		host  string
		nodes int
	}{
		{"default", Options{}, "from-default", 1},
		{"env", Options{Environ: append(testEnv, "APPLIANCE_VAR_host=from-env")}, "from-env", 1},
		{"file over env", Options{Environ: append(testEnv, "APPLIANCE_VAR_host=from-env"), VarFiles: []string{f1}}, "from-file-one", 2},
		{"later file", Options{VarFiles: []string{f1, f2}}, "from-file-two", 2},
		{"flag over file", Options{VarFiles: []string{f1, f2}, Vars: []string{"host=from-flag"}}, "from-flag", 2},
		{"later flag", Options{Vars: []string{"host=first", "host=second", "count=3"}}, "second", 3},
		{"env number parsed", Options{Environ: append(testEnv, "APPLIANCE_VAR_count=4")}, "from-default", 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			site := mustLoad(t, varSpec, tc.opts)
			if site.Gateway.Hostname != tc.host || len(site.Nodes) != tc.nodes {
				t.Errorf("hostname = %q, nodes = %d; want %q, %d", site.Gateway.Hostname, len(site.Nodes), tc.host, tc.nodes)
			}
		})
	}
}

func TestVariableListFromFlag(t *testing.T) {
	site := mustLoad(t, varSpec, Options{Vars: []string{`rooms=["north", "south"]`}})
	if got := site.Nodes[0].Tags["rooms"]; got != "north,south" {
		t.Errorf("tags.rooms = %q; want north,south", got)
	}
}

func TestVariableErrors(t *testing.T) {
	for _, tc := range []struct {
		opts Options
		want string
	}{
		{Options{Vars: []string{"nosuch=1"}}, `--var sets "nosuch", which the spec does not declare`},
		{Options{Vars: []string{"host"}}, `--var takes name=value`},
		{Options{Vars: []string{"count=many"}}, `The value of var.count from --var is not a valid number`},
		{Options{Vars: []string{`rooms={a=1}`}}, `does not fit its type list(string)`},
	} {
		_, rep := loadString(t, varSpec, tc.opts)
		var b bytes.Buffer
		rep.WriteText(&b)
		if !rep.HasErrors() || !strings.Contains(b.String(), tc.want) {
			t.Errorf("Load with %v: got\n%s\nwant an error containing %q", tc.opts.Vars, b.String(), tc.want)
		}
	}
}

// TestUnsetVariable: validate and plan (partial) accept an unset
// variable and list what depends on it; a build does not.
func TestUnsetVariable(t *testing.T) {
	src := strings.Replace(varSpec, `default = "from-default"`, "", 1)
	site := mustLoad(t, src, Options{Partial: true})
	if len(site.Pending) != 1 || site.Pending[0].Attr != "gateway.hostname" || fmt.Sprint(site.Pending[0].Variables) != "[var.host]" {
		t.Errorf("Pending = %+v; want gateway.hostname depending on var.host", site.Pending)
	}
	_, rep := loadString(t, src, Options{})
	var b bytes.Buffer
	rep.WriteText(&b)
	if !strings.Contains(b.String(), "No value for variable") || !strings.Contains(b.String(), "APPLIANCE_VAR_host") {
		t.Errorf("full load of a spec with an unset variable: got\n%s", b.String())
	}
}

// TestSensitiveNeverShown renders every output a spec can produce and
// checks that no sensitive value appears in any of them.
func TestSensitiveNeverShown(t *testing.T) {
	const secret = "Sup3r-Secret-Passphrase"
	base := `
site "s" {}
variable "psk" {
  type      = string
  sensitive = true
  validation {
    condition     = length(var.psk) < 10
    error_message = "Too long: ${var.psk}."
  }
}
gateway "gw" {
  board = "rpi5"
  network {
    wifi {
      ssid    = "x"
      psk     = var.psk
      country = "DE"
    }
  }
}
firmware "fw" {
  chip    = "esp32"
  version = "1.0.0"
}
node "n" {
  sensor = { type = "dht11", pin = 4 }
  wifi   = { ssid = "lab", psk = var.psk }
  tags   = { t = var.psk }
}
`
	dir := t.TempDir()
	varFile := filepath.Join(dir, "secrets.hcl")
	os.WriteFile(varFile, []byte(fmt.Sprintf("psk = %q\n", secret)), 0o600)
	for _, opts := range []Options{
		{Vars: []string{"psk=" + secret}},
		{VarFiles: []string{varFile}},
		{Environ: append(testEnv, "APPLIANCE_VAR_psk="+secret)},
	} {
		site, rep := loadString(t, base, opts)
		var b bytes.Buffer
		rep.WriteText(&b)
		js, _ := json.Marshal(rep.JSON())
		b.Write(js)
		if site != nil {
			js, _ := json.Marshal(site)
			b.Write(js)
			fmt.Fprintf(&b, "%v %+v %#v", site, site, site)
		}
		if !rep.HasErrors() {
			t.Errorf("expected the validation and the tag to fail")
		}
		if strings.Contains(b.String(), secret) {
			t.Errorf("the sensitive value appears in the output:\n%s", b.String())
		}
	}
	// And in a site that loads: the value is there for the device, but
	// prints as (sensitive).
	good := strings.Replace(strings.Replace(base, "length(var.psk) < 10", "length(var.psk) > 10", 1), "tags   = { t = var.psk }", "", 1)
	site := mustLoad(t, good, Options{Vars: []string{"psk=" + secret}})
	if site.Nodes[0].WiFi.PSK.Reveal() != secret || site.Gateway.Network.WiFi.PSK.Reveal() != secret {
		t.Fatalf("the passphrase did not reach the site")
	}
	js, _ := json.Marshal(site)
	if out := fmt.Sprintf("%s %v %+v %#v", js, site, *site, site.Nodes[0]); strings.Contains(out, secret) {
		t.Errorf("the sensitive value appears when the site is printed")
	}
}

func TestCountExpansion(t *testing.T) {
	src := `
site "c" {}
gateway "gw" { board = "qemu-arm64" }
firmware "fw" {
  chip    = "esp32s3"
  version = "1.0.0"
}
node "bench" {
  count  = 3
  sensor = { type = "dht11", pin = node.index + 3 }
  wifi   = { ssid = "lab", psk = "long enough passphrase" }
  tags   = { label = upper(node.name) }
}
node "door" {
  sensor = { type = "dht22", pin = 4 }
  wifi   = { ssid = "lab", psk = "long enough passphrase" }
}
node "none" {
  count  = 0
  sensor = { type = "dht22", pin = 4 }
  wifi   = { ssid = "lab", psk = "long enough passphrase" }
}
`
	site := mustLoad(t, src, Options{})
	var got []string
	for _, n := range site.Nodes {
		got = append(got, fmt.Sprintf("%s/%d/pin%d/%s", n.Name, n.Index, n.Sensor.Pin, n.Tags["label"]))
	}
	want := "[bench-1/1/pin4/BENCH-1 bench-2/2/pin5/BENCH-2 bench-3/3/pin6/BENCH-3 door/0/pin4/]"
	if fmt.Sprint(got) != want {
		t.Errorf("nodes = %v; want %v", got, want)
	}
}

func TestFunctions(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "name.txt"), []byte("from-file\n"), 0o644)
	src := `
site "f" {}
gateway "gw" {
  board    = "qemu-arm64"
  hostname = trimspace(file("name.txt"))
  timezone = fileexists("nosuch.txt") ? "UTC" : env("TZ_FOR_TEST", "Europe/Paris")
  locale   = env("LOCALE_FOR_TEST")
}
`
	path := filepath.Join(dir, "site.hcl")
	os.WriteFile(path, []byte(src), 0o644)
	site, rep := Load(path, Options{Environ: []string{"LOCALE_FOR_TEST=en_GB.UTF-8"}})
	if rep.HasErrors() {
		var b bytes.Buffer
		rep.WriteText(&b)
		t.Fatal(b.String())
	}
	if site.Gateway.Hostname != "from-file" || site.Gateway.Timezone != "Europe/Paris" || site.Gateway.Locale != "en_GB.UTF-8" {
		t.Errorf("gateway = %+v", site.Gateway)
	}
	_, rep = Load(path, Options{Environ: []string{}})
	var b bytes.Buffer
	rep.WriteText(&b)
	if !strings.Contains(b.String(), "environment variable LOCALE_FOR_TEST is not set") {
		t.Errorf("env() of an unset variable: got\n%s", b.String())
	}
}

func TestDuplicateAcrossFiles(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a.hcl"), []byte("site \"one\" {}\ngateway \"gw\" { board = \"rpi5\" }\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "b.hcl"), []byte("site \"two\" {}\n"), 0o644)
	_, rep := Load(dir, Options{Environ: testEnv})
	var b bytes.Buffer
	rep.WriteText(&b)
	if !strings.Contains(b.String(), "b.hcl:1:1: error: Duplicate site block") || !strings.Contains(b.String(), "a.hcl:1:1") {
		t.Errorf("got\n%s", b.String())
	}
}
