package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/appliance/appliance/ingest/health"
	"github.com/appliance/appliance/modules"
	"github.com/appliance/appliance/push"
	"github.com/appliance/appliance/state"
)

func init() {
	register(&verb{
		name:    "status",
		summary: "Show a running gateway's health: its nodes, certificates, refused clients",
		usage:   "status [--json] [--host HOST:PORT] [--jump BASTION] [--key FILE] [--trust-new-host-key] [--state DIR] [--var name=value] PATH…",
		examples: `
appliance status site.hcl                        # a table per gateway: each node's last reading, firmware, certificate, refusals
appliance status --json site.hcl                 # the same, for a program
appliance status --host 127.0.0.1:2222 examples/demo.hcl   # the gateway appliance vm runs`,
		run: runStatus,
	})
}

// statusResult is one gateway's health.
type statusResult struct {
	Spec    string         `json:"spec"`
	Gateway string         `json:"gateway"`
	Health  *health.Status `json:"health,omitempty"`
	Error   string         `json:"error,omitempty"`
}

func runStatus(ctx context.Context, e *Env, args []string) error {
	v := verbs["status"]
	fs := newFlags(v)
	asJSON := fs.Bool("json", false, "print the health as JSON")
	stateFlag := addStateFlag(fs)
	sf := addSpecFlags(fs)
	pf := addPushFlags(fs)
	if err := parse(e, v, fs, args); err != nil {
		return err
	}
	paths := fs.Args()
	if len(paths) == 0 {
		return usagef(v.name, "missing PATH: name the spec of each gateway")
	}
	if len(paths) > 1 && (*pf.host != "" || *stateFlag != "") {
		return usagef(v.name, "--host and --state name one gateway; ask several specs without them")
	}
	var results []statusResult
	failed := 0
	for _, p := range paths {
		r := statusOne(ctx, e, p, sf, pf, *stateFlag)
		if r.Error != "" {
			failed++
		}
		results = append(results, r)
	}
	if *asJSON {
		b, _ := json.MarshalIndent(results, "", "  ")
		fmt.Fprintf(e.Stdout, "%s\n", b)
	} else {
		for i, r := range results {
			if i > 0 {
				fmt.Fprintln(e.Stdout)
			}
			writeStatus(e.Stdout, r, e.now())
		}
	}
	if failed > 0 {
		if len(results) == 1 && !*asJSON {
			return fmt.Errorf("%s", results[0].Error)
		}
		return fmt.Errorf("%d of %d gateways did not answer", failed, len(results))
	}
	return nil
}

func statusOne(ctx context.Context, e *Env, specPath string, sf *specFlags, pf *pushFlags, stateFlag string) statusResult {
	r := statusResult{Spec: specPath}
	err := func() error {
		// The nodes' variables (Wi-Fi passphrases) are not needed to
		// reach the gateway.
		site, _, err := loadGateway(e, specPath, sf, true)
		if err != nil {
			return err
		}
		st, err := state.Open(stateDir(stateFlag, site), stateOptions(e, specPath, false))
		if err != nil {
			return fmt.Errorf("opening the state: %w", err)
		}
		defer st.Close()
		t, err := target(site, st, pf)
		if err != nil {
			return err
		}
		r.Gateway = t.Addr
		c, err := push.Dial(ctx, t)
		if err != nil {
			return err
		}
		defer c.Close()
		r.Health, err = fetchStatus(ctx, c, *pf.root)
		return err
	}()
	if err != nil {
		r.Error = err.Error()
	}
	return r
}

// fetchStatus runs the health program's status on the gateway, which
// prints the last snapshot it wrote. root is the gateway's root folder
// in tests.
func fetchStatus(ctx context.Context, c *push.Conn, root string) (*health.Status, error) {
	argv := []string{path.Join("/", root, modules.HealthBinary), "status"}
	if root != "" {
		argv = append(argv, "-config", path.Join(root, health.ConfigPath))
	}
	var out bytes.Buffer
	if err := c.Run(ctx, argv, &limited{w: &out, n: 16 << 20}); err != nil {
		return nil, fmt.Errorf("asking the gateway's health program: %w", err)
	}
	var st health.Status
	if err := json.Unmarshal(out.Bytes(), &st); err != nil {
		return nil, fmt.Errorf("the gateway's health program answered what is not its status: %w", err)
	}
	return &st, nil
}

// limited keeps at most n bytes: a gateway's answer is bounded.
type limited struct {
	w io.Writer
	n int64
}

func (l *limited) Write(b []byte) (int, error) {
	if int64(len(b)) > l.n {
		return 0, fmt.Errorf("the answer is over its limit")
	}
	l.n -= int64(len(b))
	return l.w.Write(b)
}

// writeStatus prints one gateway's health: a line on the gateway, a
// table of its nodes, its certificates and the refusals since the
// health program started.
func writeStatus(w io.Writer, r statusResult, now time.Time) {
	if r.Error != "" {
		fmt.Fprintf(w, "%s (%s): %s\n", r.Spec, r.Gateway, r.Error)
		return
	}
	st := r.Health
	ing := "ingest not answering"
	if st.Ingest.Up {
		ing = fmt.Sprintf("ingest %s, %s, %d readings spooled", map[bool]string{true: "writing", false: "NOT WRITING"}[st.Ingest.InfluxDBUp],
			map[bool]string{true: "broker connected", false: "BROKER NOT CONNECTED"}[st.Ingest.MQTTConnected], st.Ingest.SpoolPending)
	}
	disk := ""
	if st.Disk != nil {
		disk = fmt.Sprintf("; disk %.0f %% used", st.Disk.UsedPercent)
	}
	fmt.Fprintf(w, "%s (%s): site %s, snapshot of %s (%s ago); %s%s\n", r.Spec, r.Gateway, st.Site,
		st.Time.Local().Format(time.DateTime), ago(now.Sub(st.Time)), ing, disk)
	if st.LastWriteError != "" {
		fmt.Fprintf(w, "  the health points are not reaching InfluxDB: %s\n", st.LastWriteError)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tLAST SEEN\tFIRMWARE\tCERTIFICATE ENDS\tREFUSED\tLAST UPDATE")
	for _, n := range st.Nodes {
		seen := "never since " + st.Since.Local().Format(time.DateTime)
		if !n.LastSeen.IsZero() {
			seen = ago(st.Time.Sub(n.LastSeen)) + " ago"
		}
		if n.SilentIntervals > 3 {
			seen += fmt.Sprintf(" (SILENT, %.0f intervals)", n.SilentIntervals)
		}
		cert := "unknown"
		if !n.CertNotAfter.IsZero() {
			cert = fmt.Sprintf("%s (%.0f days)", n.CertNotAfter.Format(time.DateOnly), n.CertDaysLeft)
		}
		update := "-"
		if n.OTA != nil {
			update = n.OTA.Version + " " + strings.ReplaceAll(n.OTA.Outcome, "_", " ")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", n.Name, seen, or(n.Firmware, "-"), cert, n.Refused, update)
	}
	tw.Flush()
	var certs []string
	for _, c := range st.Certificates {
		if c.Kind == "node" {
			continue
		}
		if c.Error != "" {
			certs = append(certs, c.Name+" unreadable")
			continue
		}
		mark := ""
		if c.DaysLeft < 30 {
			mark = " (RENEW)"
		}
		certs = append(certs, fmt.Sprintf("%s %.0f days%s", c.Name, c.DaysLeft, mark))
	}
	if len(certs) > 0 {
		fmt.Fprintf(w, "certificates: %s\n", strings.Join(certs, ", "))
	}
	var refused []string
	for _, rc := range st.Refused {
		refused = append(refused, fmt.Sprintf("%s %s %d", rc.Service, strings.ReplaceAll(rc.Reason, "_", " "), rc.Count))
	}
	sort.Strings(refused)
	if len(refused) == 0 {
		refused = []string{"none"}
	}
	fmt.Fprintf(w, "refused since %s: %s\n", st.Since.Local().Format(time.DateTime), strings.Join(refused, ", "))
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// ago rounds a duration for people.
func ago(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < time.Minute:
		return d.Round(time.Second).String()
	case d < time.Hour:
		return strings.TrimSuffix(d.Round(time.Minute).String(), "0s")
	case d < 48*time.Hour:
		return strings.TrimSuffix(d.Round(time.Hour).String(), "0m0s")
	}
	return fmt.Sprintf("%.0f days", d.Hours()/24)
}
