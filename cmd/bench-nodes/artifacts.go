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
	"github.com/appliance/appliance/firmware"
	"github.com/appliance/appliance/firmware/identity"
	"github.com/appliance/appliance/firmware/sim/simtest"
	"github.com/appliance/appliance/internal/atomicfile"
	"github.com/appliance/appliance/modules"
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

	var cold steps
	var site *spec.Site
	var g *desired.Gateway
	var specDir string
	cold.time("spec and desired state", func() error {
		site, g, specDir = simtest.Load(t, src)
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
	opt := simtest.BuildOptions{AppSize: 900000, Now: time.Now()}
	var lastOuts []*firmware.Output
	build := func(ss *steps, what string) error {
		var fws []firmware.Firmware
		var ids [][]identity.Identity
		var outs []*firmware.Output
		if err := ss.time("node inputs read from the state", func() error {
			var err error
			fws, ids, err = simtest.Inputs(site, st, opt)
			return err
		}); err != nil {
			return err
		}
		if err := ss.time(fmt.Sprintf("firmware.Build: sign a 1 MB app, %d identity images and bundles", n), func() error {
			out, err := firmware.Build(fws[0], ids[0], opt.Now)
			outs = []*firmware.Output{out}
			lastOuts = outs
			return err
		}); err != nil {
			return err
		}
		return ss.time(fmt.Sprintf("write %d bundles%s (bundle.Write, merged.bin of 4 MiB each)", n, what), func() error {
			var err error
			f.info, err = simtest.Write(s.Out, s.Path(modules.OTADir), site, fws, ids, outs)
			if err == nil {
				syscall.Sync()
			}
			return err
		})
	}
	if err := build(&cold, ", synced"); err != nil {
		return nil, err
	}

	// What the disk costs, and what the bundles cost without merged.bin.
	var disk steps
	if err := disk.time(fmt.Sprintf("write %d bundles without merged.bin (their files, each atomically), synced", n), func() error {
		return writeFiles(filepath.Join(specDir, "out-files"), lastOuts)
	}); err != nil {
		return nil, err
	}
	if err := disk.time(fmt.Sprintf("peer: dd of as many bytes as the merged images (%d × 4 MiB, conv=fsync)", n), func() error {
		out, err := exec.Command("dd", "if=/dev/zero", "of="+filepath.Join(specDir, "dd.bin"), "bs=4M", fmt.Sprint("count=", n), "conv=fsync").CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return os.Remove(filepath.Join(specDir, "dd.bin"))
	}); err != nil {
		return nil, err
	}

	var warm steps
	if err := warm.time("state: Ensure of the unchanged fleet (reads and checks every certificate)", func() error {
		_, err := st.Ensure(g.Wants, false)
		return err
	}); err != nil {
		return nil, err
	}
	if err := build(&warm, " again, synced"); err != nil {
		return nil, err
	}

	var skip steps
	var sum [32]byte
	if err := skip.time(fmt.Sprintf("read every node's inputs from the state and hash them with the app (%d nodes)", n), func() error {
		fws, ids, err := simtest.Inputs(site, st, opt)
		if err != nil {
			return err
		}
		sum = inputsKey(fws, ids)
		return nil
	}); err != nil {
		return nil, err
	}

	fmt.Printf("\nbench-nodes (a): the artifacts of %d nodes (%d CPUs)\n", n, runtime.NumCPU())
	last := cold.times[len(cold.times)-1]
	cold.print("  ",
		row{"cold total, spec to bundles on disk", cold.total(0), "(goal < 10 s)"},
		row{"  of which before writing the bundles", cold.total(0) - last, ""})
	disk.print("  ")
	fmt.Printf("\n  warm rebuild of the unchanged fleet, everything done again:\n")
	warm.print("  ", row{"warm total", warm.total(0), "(goal < 1 s)"})
	fmt.Printf("\n  what finding the fleet unchanged would cost instead (no such check exists yet: firmware.Build and bundle.Write redo everything):\n")
	skip.print("  ")
	fmt.Printf("  inputs key %x…\n", sum[:8])
	f.site = s
	return f, nil
}

// writeFiles writes the bundles' files, merged.bin aside, under dir.
func writeFiles(dir string, outs []*firmware.Output) error {
	for _, o := range outs {
		for i, b := range o.Bundles {
			for _, f := range b.Files {
				p := filepath.Join(dir, fmt.Sprint(i), filepath.FromSlash(f.Path))
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					return err
				}
				if err := atomicfile.WriteFile(p, f.Data, 0o644); err != nil {
					return err
				}
			}
		}
	}
	syscall.Sync()
	return os.RemoveAll(dir)
}

// inputsKey hashes everything that decides the nodes' artifacts: the
// app and each node's identity.
func inputsKey(fws []firmware.Firmware, ids [][]identity.Identity) [32]byte {
	h := sha256.New()
	for i, fw := range fws {
		fmt.Fprintf(h, "%s %s %s %d %d\n", fw.Name, fw.Chip, fw.Version, fw.SecureVersion, len(fw.App))
		h.Write(fw.App)
		h.Write(fw.Bootloader)
		for _, id := range ids[i] {
			b, _ := id.Config.Marshal()
			h.Write(b)
			h.Write(id.CA)
			h.Write(id.Cert)
			h.Write(id.Key)
			for _, k := range id.ManifestKeys {
				h.Write(k)
			}
		}
	}
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out
}
