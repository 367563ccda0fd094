package influxsetup

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/appliance/appliance/internal/atomicfile"
)

// runV2 prepares InfluxDB 2.x through its HTTP API: the initial setup
// with the state's operator token, the bucket's retention, and one
// authorization per token, written to its file on the gateway.
func runV2(ctx context.Context, c *Config, hc *http.Client) error {
	if err := wait(ctx, hc, c.URL+"/health", http.StatusOK); err != nil {
		return err
	}
	token, err := ReadSecret(c.AdminToken)
	if err != nil {
		return fmt.Errorf("operator token: %w", err)
	}
	api := &v2api{hc: hc, base: c.URL, token: token}
	retention := int64(time.Duration(c.Retention) / time.Second)

	var setup struct {
		Allowed bool `json:"allowed"`
	}
	if err := api.do(ctx, "GET", "/api/v2/setup", nil, &setup, false); err != nil {
		return err
	}
	if setup.Allowed {
		pass, err := ReadSecret(c.AdminPassword)
		if err != nil {
			return fmt.Errorf("admin password: %w", err)
		}
		body := map[string]any{
			"username": c.AdminUser, "password": pass, "org": c.Org, "bucket": c.Database,
			"retentionPeriodSeconds": retention, "token": token,
		}
		if err := api.do(ctx, "POST", "/api/v2/setup", body, nil, false); err != nil {
			return fmt.Errorf("initial setup: %w", err)
		}
	}

	var orgs struct {
		Orgs []struct{ ID, Name string } `json:"orgs"`
	}
	if err := api.do(ctx, "GET", "/api/v2/orgs?org="+url.QueryEscape(c.Org), nil, &orgs, true); err != nil {
		return fmt.Errorf("InfluxDB refuses the state's operator token, or has no org %q (%v); restore the state's influxdb-admin-token", c.Org, err)
	}
	if len(orgs.Orgs) == 0 {
		return fmt.Errorf("InfluxDB has no org %q", c.Org)
	}
	orgID := orgs.Orgs[0].ID

	type rule struct {
		Type         string `json:"type"`
		EverySeconds int64  `json:"everySeconds"`
	}
	rules := []rule{}
	if retention > 0 {
		rules = append(rules, rule{"expire", retention})
	}
	var buckets struct {
		Buckets []struct{ ID, Name string } `json:"buckets"`
	}
	if err := api.do(ctx, "GET", "/api/v2/buckets?orgID="+orgID+"&name="+url.QueryEscape(c.Database), nil, &buckets, true); err != nil {
		return err
	}
	var bucketID string
	if len(buckets.Buckets) == 0 {
		var b struct{ ID string }
		if err := api.do(ctx, "POST", "/api/v2/buckets", map[string]any{"orgID": orgID, "name": c.Database, "retentionRules": rules}, &b, true); err != nil {
			return err
		}
		bucketID = b.ID
	} else {
		bucketID = buckets.Buckets[0].ID
		if err := api.do(ctx, "PATCH", "/api/v2/buckets/"+bucketID, map[string]any{"retentionRules": rules}, nil, true); err != nil {
			return err
		}
	}

	var auths struct {
		Authorizations []struct {
			ID, Token, Description, Status string
		} `json:"authorizations"`
	}
	if err := api.do(ctx, "GET", "/api/v2/authorizations?orgID="+orgID, nil, &auths, true); err != nil {
		return err
	}
	for _, t := range c.Tokens {
		if t.Action != "read" && t.Action != "write" {
			return fmt.Errorf("token %q: action %q; want read or write", t.Description, t.Action)
		}
		// Keep a token that still works; replace one that was lost.
		have, _ := os.ReadFile(t.File)
		kept := false
		for _, a := range auths.Authorizations {
			if a.Description == t.Description && a.Status == "active" && a.Token != "" && a.Token == strings.TrimSpace(string(have)) {
				kept = true
			}
		}
		if kept {
			continue
		}
		for _, a := range auths.Authorizations {
			if a.Description == t.Description {
				if err := api.do(ctx, "DELETE", "/api/v2/authorizations/"+a.ID, nil, nil, true); err != nil {
					return err
				}
			}
		}
		var created struct{ Token string }
		perm := map[string]any{"action": t.Action, "resource": map[string]any{"type": "buckets", "id": bucketID, "orgID": orgID}}
		if err := api.do(ctx, "POST", "/api/v2/authorizations", map[string]any{"orgID": orgID, "description": t.Description, "permissions": []any{perm}}, &created, true); err != nil {
			return fmt.Errorf("token %q: %w", t.Description, err)
		}
		if err := writePrivate(t.File, created.Token+"\n"); err != nil {
			return err
		}
		if t.EnvFile != "" {
			if err := writePrivate(t.EnvFile, t.EnvVar+"="+created.Token+"\n"); err != nil {
				return err
			}
		}
	}
	return nil
}

type v2api struct {
	hc    *http.Client
	base  string
	token string
}

// do sends a JSON request; out, when not nil, receives the JSON answer.
func (a *v2api) do(ctx context.Context, method, path string, in, out any, auth bool) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if auth {
		req.Header.Set("Authorization", "Token "+a.token)
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 != 2 {
		var e struct{ Message string }
		_ = json.Unmarshal(b, &e)
		what := strings.SplitN(path, "?", 2)[0]
		if resp.StatusCode == http.StatusUnauthorized {
			return fmt.Errorf("%s %s: %w", method, what, errAuth)
		}
		return fmt.Errorf("%s %s: %s %s", method, what, resp.Status, e.Message)
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

// writePrivate replaces a file atomically, readable by its owner only.
func writePrivate(path, content string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return atomicfile.WriteFile(path, []byte(content), 0o600)
}
