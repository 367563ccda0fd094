package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// runAt runs the CLI in-process on a clock of the test's.
func runAt(t *testing.T, now time.Time, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = Main(context.Background(), args, Env{Stdout: &out, Stderr: &errb, Environ: []string{"HOME=/nonexistent"}, Now: func() time.Time { return now }})
	return code, out.String(), errb.String()
}

// TestLifetimesInPlanAndList: plan and pki list say, a line each, what on
// the gateway ends within the support period and that the next build or
// push renews it, what the user must do about the nodes, and what has
// expired; on a new state they say nothing of the kind.
func TestLifetimesInPlanAndList(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	spec := "../examples/demo.hcl"
	t0 := time.Now().UTC().Truncate(time.Second)
	if code, out, errs := runAt(t, t0, "plan", "--state", dir, spec); code != 0 || !strings.Contains(out, "support  5 years") {
		t.Fatalf("plan: exit %d\n%s%s", code, out, errs)
	}
	_, list, _ := runAt(t, t0, "pki", "list", "--state", dir, spec)
	if strings.Contains(list, "warning") || strings.Contains(list, "error") || !strings.Contains(list, "Support period: 5 years") {
		t.Errorf("pki list of a new state:\n%s", list)
	}
	end := t0.AddDate(5, 0, 0).Format(time.DateOnly)
	gateway := []string{"crl: CRL", "influxdb: server certificate", "ingest: client certificate", "mosquitto: server certificate", "nginx: server certificate"}

	soon := t0.AddDate(5, 0, -30)
	_, plan, _ := runAt(t, soon, "plan", "--state", dir, spec)
	_, list, _ = runAt(t, soon, "pki", "list", "--state", dir, spec)
	for what, out := range map[string]string{"plan": plan, "pki list": list} {
		for _, g := range gateway {
			if want := "warning: " + g + " ends on " + end + ", in 30 days; the next build or push renews it\n"; !strings.Contains(out, want) {
				t.Errorf("%s 30 days before the end lacks %q:\n%s", what, want, out)
			}
		}
		if want := "warning: bench-2: node certificate ends on " + end + ", in 30 days; run appliance pki renew " + spec + " bench-2 and flash the node"; !strings.Contains(out, want) {
			t.Errorf("%s lacks %q:\n%s", what, want, out)
		}
	}
	if !strings.Contains(list, "valid, 30 days left; the next build or push renews it") {
		t.Errorf("pki list does not mark the due certificates:\n%s", list)
	}
	// Plan looks; only build and push renew.
	if _, again, _ := runAt(t, soon, "plan", "--state", dir, spec); !strings.Contains(again, "warning: crl: CRL ends on") {
		t.Errorf("plan renewed the CRL:\n%s", again)
	}

	late := t0.AddDate(5, 0, 2)
	_, plan, _ = runAt(t, late, "plan", "--state", dir, spec)
	code, list, _ := runAt(t, late, "pki", "list", "--state", dir, spec)
	for what, out := range map[string]string{"plan": plan, "pki list": list} {
		if want := "warning: mosquitto: server certificate expired on " + end + "; the next build or push renews it"; !strings.Contains(out, want) {
			t.Errorf("%s after the end lacks %q:\n%s", what, want, out)
		}
		if want := "error: bench-1: node certificate expired on " + end; !strings.Contains(out, want) {
			t.Errorf("%s after the end lacks %q:\n%s", what, want, out)
		}
		if want := "warning: ca: the site CA ends on " + t0.AddDate(10, 0, 0).Format(time.DateOnly) + ", within the site's 5-year support period"; !strings.Contains(out, want) || !strings.Contains(out, "appliance pki renew "+spec+" ca") {
			t.Errorf("%s lacks the CA's warning with its fix:\n%s", what, out)
		}
	}
	if code != 0 || !strings.Contains(list, "expired") {
		t.Errorf("pki list after the end: exit %d\n%s", code, list)
	}

	// pki renew ca extends the CA; the warning goes.
	code, out, errs := runAt(t, late, "pki", "renew", "--state", dir, spec, "ca")
	if code != 0 || !strings.Contains(out, "extended the site CA with its own key") || !strings.Contains(out, "valid until "+late.AddDate(10, 0, 0).Format(time.DateOnly)) {
		t.Fatalf("pki renew ca: exit %d\n%s%s", code, out, errs)
	}
	_, list, _ = runAt(t, late, "pki", "list", "--json", "--state", dir, spec)
	var l struct {
		SupportYears int `json:"support_years"`
		Due          []struct {
			Name string `json:"name"`
		} `json:"due"`
		Problems []struct {
			Name string `json:"name"`
		} `json:"problems"`
	}
	if err := json.Unmarshal([]byte(list), &l); err != nil {
		t.Fatalf("pki list --json: %v\n%s", err, list)
	}
	if l.SupportYears != 5 || len(l.Due) != len(gateway) {
		t.Errorf("pki list --json: support %d years, due %v", l.SupportYears, l.Due)
	}
	for _, p := range l.Problems {
		if p.Name == "ca" {
			t.Errorf("the CA is still reported after pki renew ca:\n%s", list)
		}
	}
}
