package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/appliance/appliance/firmware/sim"
)

func init() {
	register(&verb{
		name:    "sim",
		summary: "Run a build's sensor nodes as simulated nodes: readings over MQTT, OTA checks",
		usage:   "sim [--nodes N] [--rate R] [--duration D] [--broker HOST:PORT] [--ota] [--https HOST:PORT] [--json] OUT [NODE...]",
		examples: `
appliance sim out/demo --broker 127.0.0.1:8883       # every node, against appliance vm out/demo; Ctrl-C stops
appliance sim --rate 1 --duration 1m out/demo bench-1 bench-2
appliance sim --ota --duration 0 --https 127.0.0.1:8443 out/demo   # only the OTA check`,
		run: runSim,
	})
}

// simSummary is what sim --json prints.
type simSummary struct {
	Readings *sim.Result      `json:"readings,omitempty"`
	OTA      []*sim.OTAResult `json:"ota,omitempty"`
}

func runSim(ctx context.Context, e *Env, args []string) error {
	v := verbs["sim"]
	fs := newFlags(v)
	count := fs.Int("nodes", 0, "run the first N nodes of the build (default: all, or the NODEs named)")
	rate := fs.Float64("rate", 0, "readings per second per node (default: each node's interval)")
	duration := fs.Duration("duration", 0, "how long to take readings (default: until Ctrl-C; 0 with --ota: none, only the check)")
	drain := fs.Duration("drain", 10*time.Second, "how long after --duration to keep sending what the broker has not acknowledged")
	broker := fs.String("broker", "", "dial the broker at HOST:PORT instead of config.json's mqtt host and port (its certificate must still name the gateway)")
	doOTA := fs.Bool("ota", false, "first check OTA as each node does: fetch and verify the manifest, its signature and the image")
	https := fs.String("https", "", "with --ota: dial the OTA server at HOST:PORT instead of config.json's ota.url host")
	queue := fs.Int("queue", 256, fmt.Sprintf("unacknowledged readings each node keeps, oldest dropped beyond (1…%d)", sim.MaxQueue))
	simDir := fs.String("sim-dir", "", "where the nodes' boot counters are kept (default: OUT/sim)")
	asJSON := fs.Bool("json", false, "print the summary as JSON")
	if err := parse(e, v, fs, args); err != nil {
		return err
	}
	if fs.NArg() < 1 {
		return usagef(v.name, "missing OUT: name a build's output folder, such as out/demo")
	}
	out, names := fs.Arg(0), fs.Args()[1:]
	if *count < 0 || *count > 0 && len(names) > 0 {
		return usagef(v.name, "give --nodes N or node names, not both")
	}
	readings := !fs.Changed("duration") || *duration > 0
	if !readings && !*doOTA {
		return usagef(v.name, "--duration 0 takes no readings; add --ota to check OTA only")
	}
	if *duration < 0 {
		return usagef(v.name, "--duration must not be negative")
	}
	nodes, err := sim.Load(out, names)
	if err != nil {
		return err
	}
	if *count > 0 && *count < len(nodes) {
		nodes = nodes[:*count]
	}
	var sum simSummary
	if *doOTA {
		sum.OTA = checkOTA(ctx, nodes, *https, e.now())
		if !*asJSON {
			for _, r := range sum.OTA {
				fmt.Fprintln(e.Stdout, r)
			}
		}
	}
	if readings && ctx.Err() == nil {
		if *simDir == "" {
			*simDir = filepath.Join(out, "sim")
		}
		res, err := runReadings(ctx, e, nodes, *simDir, sim.Options{Broker: *broker, Rate: *rate, Duration: *duration, Drain: *drain, Queue: *queue})
		if err != nil {
			return err
		}
		sum.Readings = res
	}
	if *asJSON {
		b, _ := json.MarshalIndent(sum, "", "  ")
		fmt.Fprintf(e.Stdout, "%s\n", b)
	} else if sum.Readings != nil {
		writeSimTable(e.Stdout, sum.Readings)
	}
	return simVerdict(e, &sum, *broker)
}

func runReadings(ctx context.Context, e *Env, nodes []*sim.Node, dir string, o sim.Options) (*sim.Result, error) {
	b, err := sim.OpenBoots(dir)
	if err != nil {
		return nil, err
	}
	defer b.Close()
	names := make([]string, len(nodes))
	for i, n := range nodes {
		names[i] = n.Name
	}
	boots, err := b.Next(names)
	if err != nil {
		return nil, err
	}
	cfg := nodes[0].Identity.Config
	addr := fmt.Sprintf("%s:%d", cfg.MQTT.Host, cfg.MQTT.Port)
	if o.Broker != "" {
		addr = o.Broker + " (its certificate checked for " + cfg.MQTT.Host + ")"
	}
	pace := "each at its interval"
	if o.Rate > 0 {
		pace = fmt.Sprintf("%g readings per second each", o.Rate)
	} else if len(nodes) == 1 {
		pace = fmt.Sprintf("a reading every %s", time.Duration(cfg.IntervalMS)*time.Millisecond)
	}
	until := "Ctrl-C stops"
	if o.Duration > 0 {
		until = "for " + o.Duration.String() + "; Ctrl-C stops sooner"
	}
	fmt.Fprintf(e.Stderr, "appliance sim: %d %s, broker %s, %s, %s\n", len(nodes), plural(len(nodes), "node", "nodes"), addr, pace, until)
	var mu sync.Mutex
	o.Event = func(node, what string) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(e.Stderr, "appliance sim: %s: %s\n", node, what)
	}
	o.Now = e.now
	return sim.Run(ctx, nodes, boots, o)
}

// checkOTA checks every node, a few at a time.
func checkOTA(ctx context.Context, nodes []*sim.Node, https string, now time.Time) []*sim.OTAResult {
	out := make([]*sim.OTAResult, len(nodes))
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			out[i] = sim.CheckOTA(ctx, n, https, now)
		}()
	}
	wg.Wait()
	return out
}

func writeSimTable(w io.Writer, res *sim.Result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tBOOT\tREADINGS\tSENT\tACKED\tREFUSED\tRESENT\tDROPPED\tPENDING\tSTATUS")
	row := func(st sim.Stats, boot, status string) {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\n", st.Node, boot, st.Readings, st.Sent, st.Acked, st.Refused, st.Resent, st.Dropped, st.Pending, status)
	}
	for _, st := range res.Nodes {
		row(st, fmt.Sprint(st.Boot), simStatus(st))
	}
	tot := res.Total
	tot.Node = "total"
	row(tot, "", fmt.Sprintf("%.1f s", res.Seconds))
	tw.Flush()
}

// simStatus says how a node fared, in a few words.
func simStatus(st sim.Stats) string {
	switch {
	case st.Refused > 0:
		return fmt.Sprintf("refused %d×: %s", st.Refused, st.Reason)
	case st.Acked == 0 && st.Errors > 0:
		return "not connected: " + st.Reason
	case st.Errors > 0:
		return fmt.Sprintf("ok, after %d connection %s (last: %s)", st.Errors, plural(st.Errors, "error", "errors"), st.Reason)
	}
	return "ok"
}

// simVerdict fails the command when the gateway refused a node, no
// reading got through, or an OTA check failed.
func simVerdict(e *Env, s *simSummary, broker string) error {
	var problems []string
	for _, r := range s.OTA {
		if !r.OK() {
			problems = append(problems, "OTA check of "+r.Node+" "+r.Status)
		}
	}
	if r := s.Readings; r != nil {
		refused := 0
		for _, st := range r.Nodes {
			if st.Refused > 0 {
				refused++
			}
		}
		switch {
		case refused > 0:
			problems = append(problems, fmt.Sprintf("the gateway refused %d %s", refused, plural(refused, "node", "nodes")))
		case r.Total.Readings > 0 && r.Total.Acked == 0:
			hint := "; is the gateway up? appliance vm OUT forwards its broker to 127.0.0.1:8883, which --broker 127.0.0.1:8883 dials"
			if broker != "" {
				hint = "; is the broker at " + broker + " up?"
			}
			problems = append(problems, "the broker acknowledged no reading"+hint)
		}
	}
	if len(problems) == 0 {
		return nil
	}
	for _, p := range problems {
		fmt.Fprintf(e.Stderr, "appliance sim: %s\n", p)
	}
	return errSilent
}
