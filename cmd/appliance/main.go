// Command appliance builds and updates secure sensor sites from one HCL
// spec. The work is in package cli; this is only the process's entry.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/appliance/appliance/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], cli.Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr})
	stop()
	os.Exit(code)
}
