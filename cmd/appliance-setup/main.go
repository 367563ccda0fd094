// Command appliance-setup runs on the gateway to bring services to the
// state the site's spec asks for, where a config file alone cannot:
//
//	appliance-setup influxdb --config /etc/appliance/influxdb-setup.json
//
// creates InfluxDB's database or bucket, retention and accounts (package
// influxsetup). systemd runs it as a oneshot unit after InfluxDB starts.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/appliance/appliance/influxsetup"
)

func main() {
	if len(os.Args) < 2 || os.Args[1] != "influxdb" {
		fmt.Fprintln(os.Stderr, "usage: appliance-setup influxdb --config FILE")
		os.Exit(2)
	}
	fs := flag.NewFlagSet("influxdb", flag.ExitOnError)
	cfgPath := fs.String("config", "/etc/appliance/influxdb-setup.json", "setup config written by appliance")
	fs.Parse(os.Args[2:])
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg, err := influxsetup.Load(*cfgPath)
	if err == nil {
		err = influxsetup.Run(ctx, cfg)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "appliance-setup influxdb: %v\n", err)
		os.Exit(1)
	}
	fmt.Println("appliance-setup influxdb: InfluxDB is set up")
}
