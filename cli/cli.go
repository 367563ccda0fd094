// Package cli is the appliance command line. Each verb lives in a file of
// its own as a function of (ctx, env, args), so the whole CLI runs
// in-process in tests, with its input, output and environment given.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/spf13/pflag"
)

// Env is what a verb may touch of the world outside its arguments.
type Env struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	// Environ is the environment; nil means os.Environ().
	Environ []string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

func (e *Env) now() time.Time {
	if e.Now == nil {
		return time.Now()
	}
	return e.Now()
}

func (e *Env) environ() []string {
	if e.Environ == nil {
		return os.Environ()
	}
	return e.Environ
}

type verb struct {
	name    string
	summary string
	// usage is the synopsis line(s) after "appliance"; examples follow the
	// flags in --help.
	usage    string
	examples string
	run      func(ctx context.Context, e *Env, args []string) error
}

var verbs = map[string]*verb{}

func register(v *verb) { verbs[v.name] = v }

// errSilent ends a verb with exit status 1 when it has already said why
// (validate's diagnostics, fmt -check's file list).
var errSilent = errors.New("failed")

// exitStatus ends a verb with a status of its own once it has said why
// (lock --check: 3 while security updates wait).
type exitStatus int

func (e exitStatus) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// usageError is a mistake in the command line itself.
type usageError struct {
	verb string
	msg  string
}

func (u usageError) Error() string { return u.msg }

func usagef(v, format string, args ...any) error {
	return usageError{verb: v, msg: fmt.Sprintf(format, args...)}
}

// Main runs the command line and returns the process's exit status:
// 0 on success, 1 on any error, or a verb's own status (exitStatus).
func Main(ctx context.Context, args []string, env Env) int {
	if env.Stdin == nil {
		env.Stdin = strings.NewReader("")
	}
	if len(args) == 0 {
		writeOverview(env.Stderr)
		return 1
	}
	name := args[0]
	switch name {
	case "-h", "--help", "help":
		if len(args) > 1 {
			if v, ok := verbs[args[1]]; ok {
				writeUsage(env.Stdout, v, newFlags(v))
				return 0
			}
		}
		writeOverview(env.Stdout)
		return 0
	case "-v", "--version":
		name = "version"
	}
	v, ok := verbs[name]
	if !ok {
		fmt.Fprintf(env.Stderr, "appliance: unknown command %q; run appliance --help for the list\n", name)
		return 1
	}
	err := v.run(ctx, &env, args[1:])
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errSilent):
		return 1
	case errors.Is(err, pflag.ErrHelp):
		return 0
	}
	var status exitStatus
	if errors.As(err, &status) {
		return int(status)
	}
	var u usageError
	if errors.As(err, &u) {
		fmt.Fprintf(env.Stderr, "appliance %s: %s\nRun appliance %s --help for usage.\n", u.verb, u.msg, u.verb)
		return 1
	}
	fmt.Fprintf(env.Stderr, "appliance %s: %s\n", name, err)
	return 1
}

// flagSet returns the verb's flag set; parse handles --help.
func newFlags(v *verb) *pflag.FlagSet {
	fs := pflag.NewFlagSet(v.name, pflag.ContinueOnError)
	fs.SortFlags = false
	fs.SetOutput(io.Discard)
	fs.BoolP("help", "h", false, "show this help")
	return fs
}

// parse parses args; on --help it writes the usage and returns
// pflag.ErrHelp, which Main turns into exit status 0.
func parse(e *Env, v *verb, fs *pflag.FlagSet, args []string) error {
	if err := fs.Parse(goStyle(fs, args)); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			writeUsage(e.Stdout, v, fs)
			return pflag.ErrHelp
		}
		return usagef(v.name, "%s", err)
	}
	if h, _ := fs.GetBool("help"); h {
		writeUsage(e.Stdout, v, fs)
		return pflag.ErrHelp
	}
	return nil
}

// goStyle accepts long flags with one dash, as Go and Terraform users
// write them (fmt -check): "-check" becomes "--check" when check is a
// long flag of the command and not a run of one-letter flags.
func goStyle(fs *pflag.FlagSet, args []string) []string {
	out := make([]string, 0, len(args))
	for i, a := range args {
		if a == "--" {
			return append(out, args[i:]...)
		}
		if len(a) > 2 && a[0] == '-' && a[1] != '-' {
			name, _, _ := strings.Cut(a[1:], "=")
			if fs.Lookup(name) != nil {
				a = "-" + a
			}
		}
		out = append(out, a)
	}
	return out
}

func writeUsage(w io.Writer, v *verb, fs *pflag.FlagSet) {
	fmt.Fprintf(w, "%s\n\nUsage:\n", v.summary)
	for _, l := range strings.Split(v.usage, "\n") {
		fmt.Fprintf(w, "  appliance %s\n", l)
	}
	if fs != nil && fs.HasFlags() {
		fmt.Fprintf(w, "\nFlags:\n%s", fs.FlagUsages())
	}
	if v.examples != "" {
		fmt.Fprintf(w, "\nExamples:\n")
		for _, l := range strings.Split(strings.TrimSpace(v.examples), "\n") {
			fmt.Fprintf(w, "  %s\n", l)
		}
	}
}

func writeOverview(w io.Writer) {
	fmt.Fprintf(w, "appliance turns one HCL file into a secure sensor site: a gateway image,\nsigned firmware for every node, and updates over SSH.\n\nUsage:\n  appliance COMMAND [flags] [args]\n\nCommands:\n")
	names := make([]string, 0, len(verbs))
	for n := range verbs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, verbs[n].summary)
	}
	fmt.Fprintf(w, "\nRun appliance COMMAND --help for a command's flags and examples.\n")
}
