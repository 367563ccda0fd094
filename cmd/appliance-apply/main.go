// Command appliance-apply switches a gateway from one generation to the
// next, rolls back, and recovers an interrupted apply. appliance push
// runs it over SSH; a unit runs "appliance-apply recover --boot" at
// boot. See package apply.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/appliance/appliance/apply"
)

func main() {
	// A lost SSH connection must not stop an apply halfway: it finishes
	// or rolls back, and push reads the outcome with list.
	signal.Ignore(syscall.SIGHUP, syscall.SIGPIPE)
	os.Exit(apply.Main(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}
