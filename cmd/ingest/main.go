// Command ingest is appliance's MQTT-to-InfluxDB service, installed on
// the gateway as appliance-ingest. See package ingest.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"syscall"

	"github.com/appliance/appliance/ingest"
)

func main() {
	config := flag.String("config", ingest.ConfigPath, "the service's configuration `file`")
	verbose := flag.Bool("debug", false, "log debug messages")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile to `file` (for benchmarks)")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err == nil && pprof.StartCPUProfile(f) == nil {
			defer pprof.StopCPUProfile()
		}
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		// A soft limit makes the GC work harder before the heap grows
		// past it: the gateway is a Raspberry Pi shared with InfluxDB
		// and Grafana, and ingest's live data is a few MB.
		debug.SetMemoryLimit(28 << 20)
	}
	log := ingest.Logger(os.Stderr, *verbose)
	if err := run(*config, log); err != nil {
		log.Error(err.Error())
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

func run(config string, log *slog.Logger) error {
	cfg, err := ingest.LoadConfig(config)
	if err != nil {
		return err
	}
	svc, err := ingest.New(cfg, log)
	if err != nil {
		return fmt.Errorf("starting: %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	return svc.Run(ctx)
}
