package cli

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/appliance/appliance/images/flash"
	"golang.org/x/term"
)

func init() {
	register(&verb{
		name:    "flash",
		summary: "Write a gateway image to an SD card, checking it back",
		usage:   "flash [--force] IMAGE DEVICE",
		examples: `
appliance flash out/greenhouse/gateway.img /dev/sdb
appliance flash --force out/demo/gateway.img /dev/loop7    # a disk that is not removable`,
		run: runFlash,
	})
}

func runFlash(ctx context.Context, e *Env, args []string) error {
	v := verbs["flash"]
	fs := newFlags(v)
	force := fs.Bool("force", false, "write to a disk that is mounted or not removable")
	if err := parse(e, v, fs, args); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		return usagef(v.name, "takes IMAGE and DEVICE")
	}
	image, device := fs.Arg(0), fs.Arg(1)
	f, ok := e.Stderr.(*os.File)
	tty := ok && term.IsTerminal(int(f.Fd()))
	start := time.Now()
	last, lastPhase := time.Time{}, ""
	err := flash.Flash(image, device, flash.Options{Force: *force, Progress: func(phase string, done, total int64) {
		switch {
		case tty && (time.Since(last) > 200*time.Millisecond || done == total):
			last = time.Now()
			rate := float64(done) / time.Since(start).Seconds() / (1 << 20)
			fmt.Fprintf(e.Stderr, "\r%-7s %4d / %d MiB  %5.1f MiB/s ", phase, done>>20, total>>20, rate)
			if done == total {
				fmt.Fprintln(e.Stderr)
				start = time.Now()
			}
		case !tty && phase != lastPhase:
			fmt.Fprintf(e.Stderr, "%s: %d MiB\n", phase, total>>20)
		}
		lastPhase = phase
	}})
	if err != nil {
		return err
	}
	fmt.Fprintf(e.Stdout, "%s holds %s, checked back\n", device, image)
	return nil
}
