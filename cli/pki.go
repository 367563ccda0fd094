package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/appliance/appliance/desired"
	"github.com/appliance/appliance/pki"
	"github.com/appliance/appliance/state"
	"github.com/spf13/pflag"
)

func init() {
	register(&verb{
		name:    "pki",
		summary: "List, renew and revoke the site's certificates",
		usage:   "pki list [--all] [--json] [--state DIR] PATH\npki renew [--state DIR] PATH NAME...\npki revoke [--reason REASON] [--state DIR] PATH NAME",
		examples: `
appliance pki list examples/demo.hcl
appliance pki renew examples/demo.hcl mosquitto nginx
appliance pki renew examples/demo.hcl ca      # extend the site CA with its own key
appliance pki revoke --reason keyCompromise examples/demo.hcl bench-2`,
		run: runPKI,
	})
}

// pkiOpts are the flags of the pki subcommands.
type pkiOpts struct {
	all, json bool
	reason    string
	state     *string
	spec      *specFlags
}

// pkiFlags returns the flag set of one pki subcommand.
func pkiFlags(sub string) (*pflag.FlagSet, *pkiOpts) {
	fs := newFlags(verbs["pki"])
	o := &pkiOpts{}
	switch sub {
	case "list":
		fs.BoolVar(&o.all, "all", false, "list: also list superseded certificates")
		fs.BoolVar(&o.json, "json", false, "list: print the list as JSON")
	case "revoke":
		fs.StringVar(&o.reason, "reason", "unspecified", "revoke: RFC 5280 reason: unspecified, keyCompromise, affiliationChanged, superseded, cessationOfOperation")
	}
	o.state = addStateFlag(fs)
	o.spec = addSpecFlags(fs)
	return fs, o
}

func runPKI(ctx context.Context, e *Env, args []string) error {
	v := verbs["pki"]
	if len(args) == 0 {
		return usagef(v.name, "missing subcommand: list, renew or revoke")
	}
	switch args[0] {
	case "list":
		return pkiList(e, v, args[1:])
	case "renew":
		return pkiRenew(e, v, args[1:])
	case "revoke":
		return pkiRevoke(e, v, args[1:])
	case "-h", "--help", "help":
		// One help for the three: every flag says which subcommand takes it.
		all := newFlags(v)
		for _, sub := range []string{"list", "revoke", "renew"} {
			fs, _ := pkiFlags(sub)
			fs.VisitAll(func(f *pflag.Flag) {
				if all.Lookup(f.Name) == nil {
					all.AddFlag(f)
				}
			})
		}
		writeUsage(e.Stdout, v, all)
		return nil
	}
	return usagef(v.name, "unknown subcommand %q: use list, renew or revoke", args[0])
}

// openSiteState reads the spec and opens its existing state.
func openSiteState(e *Env, path string, sf *specFlags, stateFlag string) (*desired.Gateway, *state.Store, error) {
	site, gw, err := loadGateway(e, path, sf, true)
	if err != nil {
		return nil, nil, err
	}
	st, err := state.Open(stateDir(stateFlag, site), stateOptions(e, path, false))
	if err != nil {
		return nil, nil, err
	}
	return gw, st, nil
}

func pkiList(e *Env, v *verb, args []string) error {
	fs, o := pkiFlags("list")
	all, asJSON, stateFlag, sf := &o.all, &o.json, o.state, o.spec
	if err := parse(e, v, fs, args); err != nil {
		return err
	}
	path, err := onePath(v.name, fs.Args())
	if err != nil {
		return err
	}
	gw, st, err := openSiteState(e, path, sf, *stateFlag)
	if err != nil {
		return err
	}
	defer st.Close()
	certs, err := st.Certificates()
	if err != nil {
		return err
	}
	next, err := st.CRLNextUpdate()
	if err != nil {
		return fmt.Errorf("reading the CRL: %w", err)
	}
	now := e.now()
	due, problems, err := st.Review(gw.Wants, now)
	if err != nil {
		return err
	}
	var shown []state.CertInfo
	for _, c := range certs {
		if *all || c.Status != state.StatusSuperseded {
			shown = append(shown, c)
		}
	}
	if *asJSON {
		enc := json.NewEncoder(e.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			Certificates  []state.CertInfo `json:"certificates"`
			CRLNextUpdate time.Time        `json:"crl_next_update"`
			SupportYears  int              `json:"support_years"`
			Due           []state.Renewal  `json:"due"`
			Problems      []state.Problem  `json:"problems"`
		}{shown, next, gw.Site.SupportYears, due, problems})
	}
	isDue := map[string]bool{}
	for _, d := range due {
		isDue[d.Name] = true
	}
	tw := tabwriter.NewWriter(e.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tKIND\tSERIAL\tEXPIRES\tSTATUS")
	revoked := 0
	for _, c := range shown {
		status := c.Status
		switch {
		case c.Status == state.StatusRevoked:
			revoked++
			status = fmt.Sprintf("revoked %s (%s)", c.RevokedAt.Format(time.DateOnly), c.Reason)
		case c.NotAfter.Before(now):
			status = "expired"
		case c.Status == state.StatusValid:
			// Rounded up, as the warnings below count.
			status = fmt.Sprintf("valid, %d days left", int((c.NotAfter.Sub(now)+24*time.Hour-1)/(24*time.Hour)))
		}
		if c.Current && isDue[c.Name] {
			status += "; the next build or push renews it"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", c.Name, c.Kind, c.Serial, c.NotAfter.Format(time.DateOnly), status)
	}
	tw.Flush()
	fmt.Fprintf(e.Stdout, "\nCRL: %d revoked, next update due %s\n", revoked, next.Format(time.DateOnly))
	writeLifetimes(e.Stdout, gw.Site.SupportYears, due, problems)
	return nil
}

// renewState renews what the gateway holds that ends too soon, for
// build and push, and says what it renewed.
func renewState(e *Env, st *state.Store, w state.Wants) error {
	renewed, err := st.Renew(w, e.now())
	if err != nil {
		return fmt.Errorf("state: %w", err)
	}
	for _, r := range renewed {
		fmt.Fprintf(e.Stderr, "state      renewed %s\n", r)
	}
	return nil
}

// writeLifetimes says, a line each, what on the gateway ends within the
// site's support period or has ended, and what else about the state's
// lifetimes needs the user.
func writeLifetimes(w io.Writer, years int, due []state.Renewal, problems []state.Problem) {
	fmt.Fprintf(w, "Support period: %d years (site.support_years): certificates and the CRL are issued for that long; build and push renew the gateway's %d days before they end.\n", years, int(state.RenewBefore.Hours()/24))
	for _, d := range due {
		fmt.Fprintf(w, "warning: %s\n", d)
	}
	for _, p := range problems {
		fmt.Fprintf(w, "%s: %s: %s\n", severity(p), p.Name, p.Message)
	}
}

func severity(p state.Problem) string {
	if p.Error {
		return "error"
	}
	return "warning"
}

func pkiRenew(e *Env, v *verb, args []string) error {
	fs, o := pkiFlags("renew")
	stateFlag, sf := o.state, o.spec
	if err := parse(e, v, fs, args); err != nil {
		return err
	}
	if fs.NArg() < 2 {
		return usagef(v.name, "renew takes PATH and at least one NAME (appliance pki list shows the names)")
	}
	gw, st, err := openSiteState(e, fs.Arg(0), sf, *stateFlag)
	if err != nil {
		return err
	}
	defer st.Close()
	certs := false
	for _, name := range fs.Args()[1:] {
		if name == "ca" {
			cert, old, err := st.ExtendCA(gw.Wants)
			if err != nil {
				return fmt.Errorf("extending the site CA: %w", err)
			}
			fmt.Fprintf(e.Stdout, "extended the site CA with its own key: serial %s, valid until %s; everything it issued stays valid.\n", pki.SerialHex(cert.SerialNumber), cert.NotAfter.Format(time.DateOnly))
			fmt.Fprintf(e.Stdout, "The gateway gets it with the next build or push; flash every node with a new build before %s, when the old one ends.\n", old.NotAfter.Format(time.DateOnly))
			continue
		}
		cert, err := st.RenewCert(name, gw.Wants)
		if err != nil {
			return fmt.Errorf("renewing %s: %w", name, err)
		}
		certs = true
		fmt.Fprintf(e.Stdout, "renewed %s: new key, serial %s, valid until %s\n", name, pki.SerialHex(cert.SerialNumber), cert.NotAfter.Format(time.DateOnly))
	}
	if certs {
		fmt.Fprintln(e.Stdout, "The old certificates keep working until they expire; revoke one with appliance pki revoke when it must stop.")
	}
	return nil
}

func pkiRevoke(e *Env, v *verb, args []string) error {
	fs, o := pkiFlags("revoke")
	reason, stateFlag, sf := &o.reason, o.state, o.spec
	if err := parse(e, v, fs, args); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		return usagef(v.name, "revoke takes PATH and one NAME (appliance pki list shows the names)")
	}
	gw, st, err := openSiteState(e, fs.Arg(0), sf, *stateFlag)
	if err != nil {
		return err
	}
	defer st.Close()
	entry, err := st.Revoke(fs.Arg(1), *reason, gw.Wants)
	if err != nil {
		return fmt.Errorf("revoking %s: %w", fs.Arg(1), err)
	}
	fmt.Fprintf(e.Stdout, "revoked %s (serial %s, %s); the CRL is re-signed.\n", entry.Name, entry.Serial, entry.Reason)
	fmt.Fprintf(e.Stdout, "The broker and Nginx refuse it once the new CRL is on the gateway (the next build or push).\n")
	if entry.Kind != pki.Node {
		fmt.Fprintf(e.Stdout, "%s is a gateway certificate: run appliance pki renew %s %s to issue its replacement.\n", entry.Name, fs.Arg(0), entry.Name)
	}
	return nil
}
