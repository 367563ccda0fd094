package resolve_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/appliance/appliance/desired"
	"github.com/appliance/appliance/images/apt"
	"github.com/appliance/appliance/images/cache"
	"github.com/appliance/appliance/images/resolve"
	"github.com/appliance/appliance/images/rootfs"
	"github.com/appliance/appliance/spec"
)

// demoIndexes reads what appliance lock reads for examples/demo.hcl:
// trixie and trixie-security for arm64, from the shared cache (the
// network the first time).
func demoIndexes(b *testing.B) (*rootfs.Request, []*apt.Package) {
	b.Helper()
	site, rep := spec.Load("../../examples/demo.hcl", spec.Options{Partial: true, Environ: []string{"HOME=/nonexistent"}})
	if rep.HasErrors() {
		var buf bytes.Buffer
		rep.WriteText(&buf)
		b.Fatalf("examples/demo.hcl: %s", buf.String())
	}
	gw, err := desired.Compute(site)
	if err != nil {
		b.Fatal(err)
	}
	req, err := gw.Request()
	if err != nil {
		b.Fatal(err)
	}
	ca, err := cache.Default()
	if err != nil {
		b.Fatal(err)
	}
	c := &apt.Client{Store: ca, Retries: 3}
	var all []*apt.Package
	for _, s := range req.Sources {
		rel, err := c.Release(context.Background(), s)
		if err != nil {
			b.Fatal(err)
		}
		pkgs, err := c.Packages(context.Background(), s, rel, req.Arch)
		if err != nil {
			b.Fatal(err)
		}
		all = append(all, pkgs...)
	}
	return req, all
}

// BenchmarkUniverse indexes Debian trixie's ~68,000 arm64 packages.
func BenchmarkUniverse(b *testing.B) {
	req, all := demoIndexes(b)
	for b.Loop() {
		if _, err := resolve.NewUniverse(all, req.Arch); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkResolveDemo resolves the demo gateway's packages on top of
// the base set, as appliance lock does, each time on a fresh Universe
// (whose indexing is not timed), so that the dependencies it visits are
// parsed each time as in a real run. The untimed indexing makes the
// default -benchtime slow: use -benchtime=20x.
func BenchmarkResolveDemo(b *testing.B) {
	req, all := demoIndexes(b)
	for b.Loop() {
		b.StopTimer()
		u, err := resolve.NewUniverse(all, req.Arch)
		if err != nil {
			b.Fatal(err)
		}
		want := append(u.Required(), req.Packages...)
		b.StartTimer()
		if _, err := resolve.Resolve(u, want); err != nil {
			b.Fatal(err)
		}
	}
}
