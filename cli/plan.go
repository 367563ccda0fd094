package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/appliance/appliance/desired"
	"github.com/appliance/appliance/modules"
	"github.com/appliance/appliance/spec"
	"github.com/appliance/appliance/state"
)

func init() {
	register(&verb{
		name:    "plan",
		summary: "Show what a build would produce, and create the site's state",
		usage:   "plan [--json] [--dry-run] [--remote [--host HOST:PORT]] [--state DIR] [--var name=value] [--var-file FILE] PATH",
		examples: `
appliance plan examples/demo.hcl
appliance plan --remote site.hcl            # what a push would change on the running gateway
appliance plan --dry-run greenhouse.hcl     # create nothing, show what would be created
appliance plan --json site/ | jq .firewall`,
		run: runPlan,
	})
}

func runPlan(ctx context.Context, e *Env, args []string) error {
	v := verbs["plan"]
	fs := newFlags(v)
	asJSON := fs.Bool("json", false, "print the plan as JSON")
	dry := fs.Bool("dry-run", false, "create no state; list what would be created")
	remote := fs.Bool("remote", false, "compare with the gateway over SSH, as push --plan does; change nothing")
	stateFlag := addStateFlag(fs)
	sf := addSpecFlags(fs)
	pf := addPushFlags(fs)
	if err := parse(e, v, fs, args); err != nil {
		return err
	}
	path, err := onePath(v.name, fs.Args())
	if err != nil {
		return err
	}
	if *remote {
		r := pushOne(ctx, e, e.Stderr, path, sf, pf, *stateFlag, true, false)
		return reportPushes(e, []*pushResult{r}, *asJSON, true)
	}
	site, gw, err := loadGateway(e, path, sf, true)
	if err != nil {
		return err
	}
	dir := stateDir(*stateFlag, site)
	var res *state.Result
	if *dry {
		res, err = state.Preview(dir, gw.Wants, stateOptions(e, path, false))
	} else {
		var st *state.Store
		st, err = state.Open(dir, stateOptions(e, path, true))
		if err != nil {
			return fmt.Errorf("opening the state: %w", err)
		}
		res, err = st.Ensure(gw.Wants, false)
		st.Close()
	}
	if err != nil {
		return fmt.Errorf("state %s: %w", dir, err)
	}
	p := makePlan(gw, dir, res, *dry)
	if *asJSON {
		enc := json.NewEncoder(e.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(p)
	}
	p.writeText(e.Stdout)
	return nil
}

// planView is the plan as plan --json prints it; the text form is
// written from the same data.
type planView struct {
	Site struct {
		Name         string   `json:"name"`
		Description  string   `json:"description,omitempty"`
		SupportYears int      `json:"support_years"`
		Files        []string `json:"files"`
	} `json:"site"`
	State struct {
		Dir    string `json:"dir"`
		DryRun bool   `json:"dry_run"`
		*state.Result
	} `json:"state"`
	Gateway struct {
		Name     string   `json:"name"`
		Hostname string   `json:"hostname"`
		Address  string   `json:"address"`
		Board    string   `json:"board"`
		Kernel   string   `json:"kernel"`
		Arch     string   `json:"arch"`
		Suite    string   `json:"suite"`
		Sources  []string `json:"sources"`
		Packages []string `json:"packages"`
		Admin    string   `json:"admin"`
		Keys     int      `json:"authorized_keys"`
		Timezone string   `json:"timezone"`
		Locale   string   `json:"locale"`
		Network  string   `json:"network"`
	} `json:"gateway"`
	Modules  []modules.Contribution `json:"modules"`
	Firewall []modules.Opening      `json:"firewall"`
	Nodes    []nodeView             `json:"nodes"`
	Missing  []string               `json:"missing"`

	board *spec.Board
}

type nodeView struct {
	Name      string            `json:"name"`
	Group     string            `json:"group"`
	Firmware  string            `json:"firmware"`
	Version   string            `json:"version"`
	Chip      string            `json:"chip"`
	Sensor    string            `json:"sensor"`
	Pin       int               `json:"pin"`
	Interval  string            `json:"interval"`
	SSID      string            `json:"wifi_ssid"`
	Tags      map[string]string `json:"tags,omitempty"`
	Artifacts []string          `json:"artifacts"`
}

// nodeArtifacts are what a build makes for every node, in
// out/SITE/nodes/NODE/ (package outputs); app.bin only when the
// firmware names an image.
func nodeArtifacts(fw *spec.Firmware) []string {
	a := []string{"littlefs.bin (identity and settings)", "partition_table/partition-table.bin", "ota_data_initial.bin", "flasher_args.json", "flash_args", "merged.bin"}
	if fw != nil && fw.Image != "" {
		a = append([]string{"app.bin (signed, Secure Boot V2)"}, a...)
	}
	return a
}

func makePlan(gw *desired.Gateway, dir string, res *state.Result, dry bool) *planView {
	s := gw.Site
	p := &planView{board: gw.Board}
	p.Site.Name, p.Site.Description, p.Site.SupportYears, p.Site.Files = s.Name, s.Description, s.SupportYears, s.Files
	p.State.Dir, p.State.DryRun, p.State.Result = dir, dry, res

	g := &p.Gateway
	g.Name, g.Hostname, g.Address, g.Board, g.Arch = s.Gateway.Name, s.Gateway.Hostname, s.Gateway.Address, s.Gateway.Board, p.board.Arch
	g.Suite = s.OS.Suite
	for _, src := range s.OS.Sources {
		g.Sources = append(g.Sources, fmt.Sprintf("%s (%s %s %s)", src.Name, src.URL, src.Suite, strings.Join(src.Components, " ")))
	}
	// Exactly what the lock requests on top of the suite's base set.
	g.Packages = gw.Packages
	g.Kernel = p.board.Kernel
	g.Admin, g.Keys = s.Gateway.Admin.User, len(s.Gateway.Admin.AuthorizedKeys)
	g.Timezone, g.Locale = s.Gateway.Timezone, s.Gateway.Locale
	if s.Gateway.Network.DHCP() {
		g.Network = "Ethernet by DHCP"
	} else {
		g.Network = "Ethernet " + s.Gateway.Network.Address.String()
		if s.Gateway.Network.Router.IsValid() {
			g.Network += " via " + s.Gateway.Network.Router.String()
		}
	}
	if w := s.Gateway.Network.WiFi; w != nil {
		g.Network += fmt.Sprintf("; Wi-Fi %q (%s)", w.SSID, w.Country)
	}

	p.Modules = gw.Modules.Contributions
	p.Firewall = gw.Modules.Openings()
	if p.Firewall == nil {
		p.Firewall = []modules.Opening{}
	}
	p.Nodes = []nodeView{}
	for _, n := range s.Nodes {
		nv := nodeView{Name: n.Name, Group: n.Group, Firmware: n.Firmware, Sensor: n.Sensor.Type, Pin: n.Sensor.Pin,
			Interval: spec.FormatDuration(n.Interval), SSID: n.WiFi.SSID, Tags: n.Tags, Artifacts: nodeArtifacts(s.FirmwareByName(n.Firmware))}
		if fw := s.FirmwareByName(n.Firmware); fw != nil {
			nv.Version, nv.Chip = fw.Version, fw.Chip
		}
		p.Nodes = append(p.Nodes, nv)
	}

	p.Missing = []string{}
	byVar := map[string][]string{}
	var vars []string
	for _, pend := range s.Pending {
		for _, v := range pend.Variables {
			if byVar[v] == nil {
				vars = append(vars, v)
			}
			byVar[v] = append(byVar[v], pend.Attr)
		}
	}
	for _, v := range vars {
		name := strings.TrimPrefix(v, "var.")
		p.Missing = append(p.Missing, fmt.Sprintf("%s is not set (used by %s); set it with --var %s=… or %s%s", v, strings.Join(byVar[v], ", "), name, spec.EnvPrefix, name))
	}
	for _, fw := range s.Firmware {
		if fw.Image == "" {
			p.Missing = append(p.Missing, fmt.Sprintf("firmware.%s.image is not set; build the sensor firmware with ESP-IDF and name the app binary, such as image = \"build/sensor.bin\"", fw.Name))
		}
	}
	return p
}

func (p *planView) writeText(w io.Writer) {
	desc := ""
	if p.Site.Description != "" {
		desc = " — " + p.Site.Description
	}
	fmt.Fprintf(w, "Site %s%s\n", p.Site.Name, desc)
	fmt.Fprintf(w, "  spec     %s\n", strings.Join(p.Site.Files, ", "))
	fmt.Fprintf(w, "  state    %s\n", p.State.Dir)
	fmt.Fprintf(w, "  support  %d years: certificates and the CRL are issued for that long\n", p.Site.SupportYears)
	fmt.Fprintln(w)

	g := p.Gateway
	fmt.Fprintf(w, "Gateway %s\n", g.Hostname)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "  board\t%s (%s, %s)\n", g.Board, p.board.Name, g.Arch)
	fmt.Fprintf(tw, "  kernel\t%s\n", g.Kernel)
	fmt.Fprintf(tw, "  address\t%s\n", g.Address)
	fmt.Fprintf(tw, "  network\t%s\n", g.Network)
	fmt.Fprintf(tw, "  os\tDebian %s %s\n", g.Suite, g.Arch)
	for _, src := range g.Sources {
		fmt.Fprintf(tw, "  source\t%s\n", src)
	}
	fmt.Fprintf(tw, "  packages\t%s (and the base system)\n", strings.Join(g.Packages, " "))
	fmt.Fprintf(tw, "  admin\t%s: %d %s and appliance's deploy key; sudo\n", g.Admin, g.Keys, plural(g.Keys, "key", "keys"))
	fmt.Fprintf(tw, "  locale\t%s, %s\n", g.Timezone, g.Locale)
	tw.Flush()
	fmt.Fprintln(w)

	fmt.Fprintln(w, "Services")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, c := range p.Modules {
		fmt.Fprintf(tw, "  %s\t%s\n", c.Module, c.Summary)
		for _, l := range c.Listeners {
			fmt.Fprintf(tw, "  \t  %d/%s %s: %s\n", l.Port, l.Proto, l.Bind, l.Purpose)
		}
		var what []string
		if n := len(c.Files); n > 0 {
			what = append(what, fmt.Sprintf("%d %s", n, plural(n, "file", "files")))
		}
		if len(c.Units) > 0 {
			what = append(what, "units "+strings.Join(c.Units, " "))
		}
		if len(what) > 0 {
			fmt.Fprintf(tw, "  \t  %s\n", strings.Join(what, "; "))
		}
	}
	tw.Flush()
	fmt.Fprintln(w)

	fmt.Fprintln(w, "Firewall (inbound, IPv4 and IPv6: everything else is dropped)")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, o := range p.Firewall {
		extra := ""
		if o.RateLimit {
			extra = ", rate limited"
		}
		fmt.Fprintf(tw, "  %d/%s\t%s\tfrom %s%s\n", o.Port, o.Proto, o.Purpose, prefixes(o.From), extra)
	}
	tw.Flush()
	fmt.Fprintln(w)

	fmt.Fprintf(w, "Nodes (%d)\n", len(p.Nodes))
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, grp := range groupNodes(p.Nodes) {
		n := grp[0]
		names := n.Name
		if len(grp) > 1 {
			names = grp[0].Name + " … " + grp[len(grp)-1].Name
		}
		fmt.Fprintf(tw, "  %s\t%s %s (%s)\t%s on GPIO%d every %s\tWi-Fi %q%s\n", names, n.Firmware, n.Version, n.Chip, strings.ToUpper(n.Sensor), n.Pin, n.Interval, n.SSID, tagText(n.Tags))
	}
	tw.Flush()
	if len(p.Nodes) > 0 {
		fmt.Fprintf(w, "  each node, in out/%s/nodes/NODE/: %s\n", p.Site.Name, strings.Join(p.Nodes[0].Artifacts, ", "))
	}
	fmt.Fprintln(w)

	verb := "created"
	if p.State.DryRun {
		verb = "would create"
	}
	fmt.Fprintf(w, "State %s\n", p.State.Dir)
	if len(p.State.Created) == 0 && len(p.State.Updated) == 0 && len(p.State.Due) == 0 {
		fmt.Fprintln(w, "  up to date")
	}
	for _, c := range p.State.Created {
		fmt.Fprintf(w, "  %s %s\n", verb, c)
	}
	for _, u := range p.State.Updated {
		fmt.Fprintf(w, "  updated %s\n", u)
	}
	// What ends within the support period, a line each: the gateway's
	// (the next build or push renews them), then what needs the user.
	for _, d := range p.State.Due {
		fmt.Fprintf(w, "  warning: %s\n", d)
	}
	for _, pr := range p.State.Problems {
		fmt.Fprintf(w, "  %s: %s: %s\n", severity(pr), pr.Name, pr.Message)
	}
	if len(p.Missing) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "Needed before a build")
		for _, m := range p.Missing {
			fmt.Fprintf(w, "  %s\n", m)
		}
	}
}

// groupNodes puts consecutive nodes of one block that differ only in
// name together, so a fleet of 200 prints as one line.
func groupNodes(ns []nodeView) [][]nodeView {
	var out [][]nodeView
	key := func(n nodeView) string {
		return fmt.Sprintf("%s|%s|%s|%s|%d|%s|%s|%s", n.Group, n.Firmware, n.Chip, n.Sensor, n.Pin, n.Interval, n.SSID, tagText(n.Tags))
	}
	for _, n := range ns {
		if l := len(out); l > 0 && key(out[l-1][0]) == key(n) {
			out[l-1] = append(out[l-1], n)
			continue
		}
		out = append(out, []nodeView{n})
	}
	return out
}

func tagText(tags map[string]string) string {
	if len(tags) == 0 {
		return ""
	}
	keys := make([]string, 0, len(tags))
	for k := range tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, k+"="+tags[k])
	}
	return "\ttags " + strings.Join(parts, " ")
}

func prefixes(ps []netip.Prefix) string {
	var s []string
	for _, p := range ps {
		s = append(s, p.String())
	}
	return strings.Join(s, ", ")
}
