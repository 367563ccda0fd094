package influxsetup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// runV1 prepares InfluxDB 1.x with InfluxQL over /query.
func runV1(ctx context.Context, c *Config, hc *http.Client) error {
	if err := wait(ctx, hc, c.URL+"/ping", http.StatusNoContent); err != nil {
		return err
	}
	adminPass, err := ReadSecret(c.AdminPassword)
	if err != nil {
		return fmt.Errorf("admin password: %w", err)
	}
	q := &influxQL{hc: hc, base: c.URL, user: c.AdminUser, pass: adminPass}

	if _, err := q.run(ctx, "SHOW USERS"); errors.Is(err, errAuth) {
		// With auth on, InfluxDB 1 lets anyone create the first admin,
		// and nothing else, while it has none.
		anon := &influxQL{hc: hc, base: c.URL}
		if _, err := anon.run(ctx, fmt.Sprintf("CREATE USER %s WITH PASSWORD %s WITH ALL PRIVILEGES", ident(c.AdminUser), str(adminPass))); err != nil {
			return fmt.Errorf("InfluxDB has an admin whose password is not the one in the site's state, or no admin could be created (%v); restore the state's influxdb-admin-password, or reset InfluxDB's meta data", err)
		}
	} else if err != nil {
		return err
	}

	db := ident(c.Database)
	if _, err := q.run(ctx, "CREATE DATABASE "+db); err != nil {
		return err
	}
	dur := "INF"
	if c.Retention > 0 {
		dur = fmt.Sprintf("%dh", time.Duration(c.Retention)/time.Hour)
	}
	rp := c.RetentionPolicy
	if rp == "" {
		rp = "appliance"
	}
	rows, err := q.run(ctx, "SHOW RETENTION POLICIES ON "+db)
	if err != nil {
		return err
	}
	verb := "CREATE"
	if slices.ContainsFunc(rows, func(r []any) bool { return len(r) > 0 && r[0] == rp }) {
		verb = "ALTER"
	}
	stmt := fmt.Sprintf("%s RETENTION POLICY %s ON %s DURATION %s REPLICATION 1 DEFAULT", verb, ident(rp), db, dur)
	if _, err := q.run(ctx, stmt); err != nil {
		return err
	}

	rows, err = q.run(ctx, "SHOW USERS")
	if err != nil {
		return err
	}
	for _, u := range c.Users {
		priv := strings.ToUpper(u.Privilege)
		if priv != "READ" && priv != "WRITE" {
			return fmt.Errorf("user %s: privilege %q; want READ or WRITE", u.Name, u.Privilege)
		}
		pass, err := ReadSecret(u.Password)
		if err != nil {
			return fmt.Errorf("password of %s: %w", u.Name, err)
		}
		exists := slices.ContainsFunc(rows, func(r []any) bool { return len(r) > 0 && r[0] == u.Name })
		stmts := []string{fmt.Sprintf("CREATE USER %s WITH PASSWORD %s", ident(u.Name), str(pass))}
		if exists {
			// Keep the password the state holds, and strip any right
			// granted by hand.
			stmts = []string{
				fmt.Sprintf("SET PASSWORD FOR %s = %s", ident(u.Name), str(pass)),
				fmt.Sprintf("REVOKE ALL PRIVILEGES FROM %s", ident(u.Name)),
				fmt.Sprintf("REVOKE ALL ON %s FROM %s", db, ident(u.Name)),
			}
		}
		stmts = append(stmts, fmt.Sprintf("GRANT %s ON %s TO %s", priv, db, ident(u.Name)))
		for _, s := range stmts {
			if _, err := q.run(ctx, s); err != nil {
				return fmt.Errorf("user %s: %w", u.Name, err)
			}
		}
	}
	return nil
}

// influxQL posts statements to /query; credentials go in the header.
type influxQL struct {
	hc         *http.Client
	base       string
	user, pass string
}

// run executes one statement and returns the first series' rows.
func (q *influxQL) run(ctx context.Context, stmt string) ([][]any, error) {
	form := url.Values{"q": {stmt}}
	req, err := http.NewRequestWithContext(ctx, "POST", q.base+"/query", strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if q.user != "" {
		req.SetBasicAuth(q.user, q.pass)
	}
	resp, err := q.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var out struct {
		Error   string `json:"error"`
		Results []struct {
			Error  string `json:"error"`
			Series []struct {
				Values [][]any `json:"values"`
			} `json:"series"`
		} `json:"results"`
	}
	_ = json.Unmarshal(body, &out)
	verb := strings.Fields(stmt)[0] + " " + strings.Fields(stmt)[1]
	switch {
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return nil, fmt.Errorf("%s: %w", verb, errAuth)
	case out.Error != "":
		return nil, fmt.Errorf("%s: %s", verb, out.Error)
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("%s: %s", verb, resp.Status)
	}
	if len(out.Results) == 0 {
		return nil, nil
	}
	if e := out.Results[0].Error; e != "" {
		// The statement is named, never echoed: it may hold a password.
		return nil, fmt.Errorf("%s: %s", verb, e)
	}
	if len(out.Results[0].Series) == 0 {
		return nil, nil
	}
	return out.Results[0].Series[0].Values, nil
}

// ident quotes an InfluxQL identifier.
func ident(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// str quotes an InfluxQL string literal.
func str(s string) string {
	return `'` + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + `'`
}
