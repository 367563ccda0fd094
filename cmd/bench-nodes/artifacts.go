package main

import (
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"time"

	"github.com/appliance/appliance/desired"
	"github.com/appliance/appliance/firmware/bundle"
	"github.com/appliance/appliance/firmware/espimage"
	"github.com/appliance/appliance/firmware/sim/simtest"
	"github.com/appliance/appliance/internal/atomicfile"
	"github.com/appliance/appliance/outputs"
	"github.com/appliance/appliance/spec"
	"github.com/appliance/appliance/state"
)

// fleet is the site of the benchmark, built.
type fleet struct {
	site *simtest.Site
	info *outputs.Info
	// ports the site's gateway serves on
	influx, metrics int
}

func fleetHCL(n, mqtt, https, redirect, influx, metrics int) string {
	return fmt.Sprintf(`
site "fleet" {}
gateway "gw" {
  board    = "qemu-arm64"
  hostname = "fleet-gw"
}
mqtt {
  port = %d
}
https {
  port          = %d
  redirect_port = %d
}
influxdb {
  version = 1
  port    = %d
}
ingest {
  metrics_port = %d
}
firmware "sensor" {
  chip           = "esp32s3"
  version        = "1.4.0"
  secure_version = 1
  image          = "build/sensor.bin"
}
node "bench" {
  count    = %d
  firmware = firmware.sensor
  sensor   = { type = "dht11", pin = 4 }
  interval = "30s"
  wifi     = { ssid = "fleet", psk = "a passphrase of the fleet" }
  tags     = { room = "hall" }
}
`, mqtt, https, redirect, influx, metrics, n)
}

// artifacts is part (a).
func artifacts(t *tb, dir string, n int) (*fleet, error) {
	f := &fleet{influx: simtest.FreePort(t), metrics: simtest.FreePort(t)}
	src := fleetHCL(n, simtest.FreePort(t), simtest.FreePort(t), simtest.FreePort(t), f.influx, f.metrics)
	fmt.Fprintf(os.Stderr, "bench-nodes: (a) the artifacts of %d nodes, in %s…\n", n, dir)
	app := simtest.AppFile{Path: "build/sensor.bin", Chip: espimage.ESP32S3, Version: "1.4.0", SecureVersion: 1, Size: 900000, Bootloader: true}

	var cold steps
	var site *spec.Site
	var g *desired.Gateway
	var specDir string
	cold.time("spec and desired state", func() error {
		site, g, specDir = simtest.Load(t, "", src, app)
		return nil
	})
	st, err := state.Open(filepath.Join(specDir, "state"), state.Options{Create: true})
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { st.Close() })
	if err := cold.time(fmt.Sprintf("state: first Ensure (site CA, %d node certificates and keys, OTA keys)", n), func() error {
		res, err := st.Ensure(g.Wants, false)
		if err == nil && res.Errors() {
			err = fmt.Errorf("%+v", res.Problems)
		}
		return err
	}); err != nil {
		return nil, err
	}
	s := &simtest.Site{Spec: site, Gateway: g, State: st, Dir: specDir, Root: filepath.Join(specDir, "root"), Out: filepath.Join(specDir, "out", site.Name)}
	resolve := func(ss *steps) (*desired.Resolved, error) {
		var r *desired.Resolved
		err := ss.time(fmt.Sprintf("desired.Resolve: the gateway's files; a 1 MB app signed, %d identity images and bundles", n), func() error {
			var err error
			r, err = g.Resolve(st, time.Now())
			return err
		})
		return r, err
	}
	r, err := resolve(&cold)
	if err != nil {
		return nil, err
	}
	// Every node's merged image has the same length: the app's end.
	mergedSize := 0
	if len(r.Nodes) > 0 {
		mergedSize = len(r.Nodes[0].Bundle.Merged())
	}
	if err := cold.time(fmt.Sprintf("write %d bundles, synced (bundle.Write, merged.bin of %.2f MiB each)", n, float64(mergedSize)/(1<<20)), func() error {
		var err error
		f.info, err = simtest.WriteNodes(s.Out, site, r)
		if err == nil {
			syscall.Sync()
		}
		return err
	}); err != nil {
		return nil, err
	}
	for _, fw := range r.Firmware {
		if fw.Release != nil {
			if err := st.SaveRelease(fw.Name, *fw.Release); err != nil {
				return nil, err
			}
		}
	}

	// What the disk costs, and what the bundles cost without merged.bin.
	var disk steps
	if err := disk.time(fmt.Sprintf("write %d bundles without merged.bin (their files, each atomically), synced", n), func() error {
		return writeFiles(filepath.Join(specDir, "out-files"), r.Nodes)
	}); err != nil {
		return nil, err
	}
	if err := disk.time(fmt.Sprintf("peer: dd of as many bytes as the merged images (%d × %.2f MiB, conv=fsync)", n, float64(mergedSize)/(1<<20)), func() error {
		out, err := exec.Command("dd", "if=/dev/zero", "of="+filepath.Join(specDir, "dd.bin"), fmt.Sprint("bs=", mergedSize), fmt.Sprint("count=", n), "conv=fsync").CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return os.Remove(filepath.Join(specDir, "dd.bin"))
	}); err != nil {
		return nil, err
	}

	// An unchanged rebuild: appliance build computes all of it again,
	// hashes it into its key and, the key unchanged, stops.
	var warm steps
	if err := warm.time("state: Ensure of the unchanged fleet (reads and checks every certificate)", func() error {
		_, err := st.Ensure(g.Wants, false)
		return err
	}); err != nil {
		return nil, err
	}
	r2, err := resolve(&warm)
	if err != nil {
		return nil, err
	}
	var key, key1 [32]byte
	warm.time("the build's key over every bundle file (as images/build hashes them)", func() error {
		key = bundleKey(r2.Nodes, false)
		return nil
	})
	same := key == bundleKey(r.Nodes, false)
	var alt steps
	alt.time("the same key with each firmware's signed app hashed once, not per node", func() error {
		key1 = bundleKey(r2.Nodes, true)
		return nil
	})

	fmt.Printf("\nbench-nodes (a): the artifacts of %d nodes (%d CPUs)\n", n, runtime.NumCPU())
	last := cold.times[len(cold.times)-1]
	cold.print("  ",
		row{"cold total, spec to bundles on disk", cold.total(0), "(goal < 10 s)"},
		row{"  of which before writing the bundles", cold.total(0) - last, ""})
	disk.print("  ")
	fmt.Printf("\n  unchanged rebuild (the build's key equal to the last: %v, so nothing is written):\n", same)
	warm.print("  ", row{"unchanged total", warm.total(0), "(goal < 1 s)"})
	alt.print("  ")
	fmt.Printf("  keys %x… / %x…\n", key[:6], key1[:6])
	f.site = s
	return f, nil
}

// writeFiles writes the bundles' files, merged.bin aside, under dir.
func writeFiles(dir string, nodes []desired.Node) error {
	for _, n := range nodes {
		for _, f := range n.Bundle.Files {
			p := filepath.Join(dir, n.Name, filepath.FromSlash(f.Path))
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
			if err := atomicfile.WriteFile(p, f.Data, 0o644); err != nil {
				return err
			}
		}
	}
	syscall.Sync()
	return os.RemoveAll(dir)
}

// bundleKey hashes the nodes' bundles as images/build's key does: the
// SHA-256 of every file of every bundle; appOnce hashes each distinct
// signed app once instead (by identity of its bytes).
func bundleKey(nodes []desired.Node, appOnce bool) [32]byte {
	h := sha256.New()
	apps := map[*byte][32]byte{}
	for _, n := range nodes {
		fmt.Fprintf(h, "node %s\n", n.Name)
		for _, f := range n.Bundle.Files {
			var sum [32]byte
			if appOnce && f.Path == bundle.AppFile && len(f.Data) > 0 {
				var ok bool
				if sum, ok = apps[&f.Data[0]]; !ok {
					sum = sha256.Sum256(f.Data)
					apps[&f.Data[0]] = sum
				}
			} else {
				sum = sha256.Sum256(f.Data)
			}
			fmt.Fprintf(h, "%s %x\n", f.Path, sum)
		}
	}
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out
}
