// Command appliance-health is the gateway's watch on itself, installed
// as /usr/bin/appliance-health. See package health.
//
//	appliance-health [-config FILE]     run: write the site's health every interval
//	appliance-health status [-config FILE]   print the last snapshot as JSON
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"encoding/json"

	"github.com/appliance/appliance/ingest/health"
)

func main() {
	args := os.Args[1:]
	status := len(args) > 0 && args[0] == "status"
	if status {
		args = args[1:]
	}
	fs := flag.NewFlagSet("appliance-health", flag.ExitOnError)
	config := fs.String("config", health.ConfigPath, "the program's configuration `file`")
	fs.Parse(args)
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			return slog.Attr{} // the journal stamps each line
		}
		return a
	}}))
	var err error
	if status {
		err = printStatus(*config)
	} else {
		err = run(*config, log)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "appliance-health:", err)
		os.Exit(1)
	}
}

func printStatus(config string) error {
	cfg, err := health.LoadConfig(config)
	if err != nil {
		return err
	}
	st, err := health.ReadStatus(cfg.StateDir)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(st)
}

func run(config string, log *slog.Logger) error {
	cfg, err := health.LoadConfig(config)
	if err != nil {
		return err
	}
	m, err := health.New(cfg, log)
	if err != nil {
		return fmt.Errorf("starting: %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	log.Info("watching the site's health", "site", cfg.Site, "every", cfg.Interval, "nodes", len(cfg.Nodes), "certificates", len(cfg.Certificates))
	return m.Run(ctx)
}
