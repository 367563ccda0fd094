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
	"syscall"

	"github.com/appliance/appliance/ingest"
)

func main() {
	config := flag.String("config", ingest.ConfigPath, "the service's configuration `file`")
	debug := flag.Bool("debug", false, "log debug messages")
	flag.Parse()
	log := ingest.Logger(os.Stderr, *debug)
	if err := run(*config, log); err != nil {
		log.Error(err.Error())
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
