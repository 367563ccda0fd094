// Package buildtest prepares builds of a spec for tests: the spec loaded
// with fixed variables, new state in a temporary folder, the shared
// package cache (so the real archive is read once per machine) and a
// fixed SOURCE_DATE_EPOCH.
package buildtest

import (
	"bytes"
	"path/filepath"
	"testing"

	"github.com/appliance/appliance/desired"
	"github.com/appliance/appliance/images/apt"
	"github.com/appliance/appliance/images/build"
	"github.com/appliance/appliance/images/cache"
	"github.com/appliance/appliance/images/gobin"
	"github.com/appliance/appliance/spec"
	"github.com/appliance/appliance/state"
)

// Epoch is the SOURCE_DATE_EPOCH of test builds.
const Epoch = int64(1767225600)

// Options returns the options of a build of specPath (OutDir and Log
// left to the caller) and the state it uses, closed when the test ends.
func Options(t testing.TB, specPath string) (build.Options, *state.Store) {
	t.Helper()
	site, rep := spec.Load(specPath, spec.Options{Environ: []string{"HOME=/nonexistent", "APPLIANCE_VAR_wifi_psk=test-passphrase"}})
	if rep.HasErrors() {
		var b bytes.Buffer
		rep.WriteText(&b)
		t.Fatal(b.String())
	}
	gw, err := desired.Compute(site)
	if err != nil {
		t.Fatal(err)
	}
	st, err := state.Open(filepath.Join(t.TempDir(), "state"), state.Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if _, err := st.Ensure(gw.Wants, false); err != nil {
		t.Fatal(err)
	}
	ca, err := cache.Default()
	if err != nil {
		t.Fatal(err)
	}
	progs, err := gobin.Find()
	if err != nil {
		t.Fatal(err)
	}
	epoch := Epoch
	return build.Options{
		SpecPath: specPath, LockPath: site.Location.Lock, Gateway: gw, State: st, Cache: ca,
		Client: &apt.Client{Store: ca, Retries: 3}, Epoch: &epoch, Programs: progs, Version: "test",
	}, st
}
