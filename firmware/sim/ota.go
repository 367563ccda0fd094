package sim

import (
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/appliance/appliance/firmware/espimage"
	"github.com/appliance/appliance/firmware/identity"
	"github.com/appliance/appliance/firmware/ota"
	"github.com/appliance/appliance/firmware/secureboot"
)

// The outcomes of an OTA check.
const (
	// OTAUpdate: the gateway serves another version, and the node would
	// install it.
	OTAUpdate = "update"
	// OTACurrent: the manifest names the version the node runs, so a
	// node stops there; the check fetches and verifies the image all
	// the same, so that what the gateway serves is checked end to end.
	OTACurrent = "current"
	// OTARefused: the node would refuse what the gateway serves, or the
	// gateway refused the node.
	OTARefused = "refused"
	// OTAFailed: the check could not fetch what it needs.
	OTAFailed = "failed"
)

// OTAResult is what one node's OTA check found.
type OTAResult struct {
	Node     string        `json:"node"`
	Status   string        `json:"status"`
	Reason   string        `json:"reason,omitempty"`
	URL      string        `json:"url"`
	Manifest *ota.Manifest `json:"manifest,omitempty"`
	// SignatureBlock is the image's Secure Boot signature block that a
	// key the node trusts verified, and KeyDigest that key's digest.
	SignatureBlock int    `json:"signature_block"`
	KeyDigest      string `json:"key_digest,omitempty"`
}

// OK reports that the node would accept what the gateway serves.
func (r *OTAResult) OK() bool { return r.Status == OTAUpdate || r.Status == OTACurrent }

// Limits on what a check reads before it has verified it.
const (
	maxSignature = 512
	maxImage     = 16 << 20
)

// CheckOTA does node n's OTA check as its firmware does (docs/ota.md,
// "What a device does"), at time now: fetch manifest.json and its
// signature from config.json's ota.url with the node's client
// certificate, verify them with the manifest keys of the identity image
// and the node's firmware, chip, version and secure version
// (ota.Verify), fetch the image the manifest names, check its size and
// SHA-256, its app descriptor and chip, and its Secure Boot V2
// signature against the keys the node trusts.
//
// The identity image carries no signing key: a node trusts the keys
// whose digests are burnt into its eFuses (Secure Boot V2), or without
// Secure Boot the key of the running app's first signature block. The
// sim takes them from the running app's signature blocks, the keys the
// build signed it with and whose digests `appliance firmware keys`
// gives for the eFuses.
//
// httpsAddr, when not "", is dialled instead of the URL's host and port
// (appliance vm's forward); the server's certificate must still name
// the URL's host. A node's accepted manifest version lives in its NVS,
// which the sim does not keep: every check starts from 0.
func CheckOTA(ctx context.Context, n *Node, httpsAddr string, now time.Time) *OTAResult {
	cfg := n.Identity.Config
	r := &OTAResult{Node: n.Name, URL: cfg.OTA.URL + "/" + cfg.Firmware + "/" + ota.ManifestFile, SignatureBlock: -1}
	fail := func(status, format string, args ...any) *OTAResult {
		r.Status, r.Reason = status, fmt.Sprintf(format, args...)
		return r
	}
	base, err := url.Parse(cfg.OTA.URL)
	if err != nil || base.Scheme != "https" {
		return fail(OTAFailed, "config.json's ota.url %q is not an https URL; run appliance build again", cfg.OTA.URL)
	}
	client, err := otaClient(n, base.Hostname(), httpsAddr)
	if err != nil {
		return fail(OTAFailed, "%v", err)
	}
	defer client.CloseIdleConnections()
	keys, err := manifestKeys(n.Identity)
	if err != nil {
		return fail(OTAFailed, "%v", err)
	}
	manifest, err := fetch(ctx, client, r.URL, ota.MaxManifestSize)
	if err != nil {
		return fetchFailed(r, err)
	}
	sig, err := fetch(ctx, client, r.URL+".sig", maxSignature)
	if err != nil {
		return fetchFailed(r, err)
	}
	dev := ota.Device{Firmware: cfg.Firmware, Chip: n.Chip(), Version: n.Version(), SecureVersion: n.SecureVersion()}
	m, err := ota.Verify(manifest, sig, keys, dev, now)
	switch {
	case errors.Is(err, ota.ErrUnchanged):
		// Verified up to the last rule: the bytes are signed and parse.
		m, _ = ota.Parse(manifest)
		r.Status = OTACurrent
	case err != nil:
		return fail(OTARefused, "%v", err)
	default:
		r.Status = OTAUpdate
	}
	r.Manifest = m
	image, err := fetch(ctx, client, cfg.OTA.URL+"/"+m.Path, maxImage)
	if err != nil {
		return fetchFailed(r, err)
	}
	if err := m.CheckImage(image); err != nil {
		return fail(OTARefused, "the image: %v", err)
	}
	if err := checkApp(image, m, dev.Chip); err != nil {
		return fail(OTARefused, "the image: %v", err)
	}
	b, err := verifySigned(image, n.App)
	if err != nil {
		return fail(OTARefused, "the image: %v", err)
	}
	r.SignatureBlock, r.KeyDigest = b.Index, hex.EncodeToString(b.KeyDigest[:])
	return r
}

func fetchFailed(r *OTAResult, err error) *OTAResult {
	refused, _, reason := classify(err, "OTA server")
	var se *statusError
	var tl *tooLargeError
	if errors.As(err, &se) && (se.code == http.StatusForbidden || se.code == http.StatusBadRequest) || errors.As(err, &tl) {
		refused = true
	}
	r.Status, r.Reason = OTAFailed, reason
	if refused {
		r.Status = OTARefused
	}
	return r
}

// checkApp checks what ESP-IDF checks of a new app before it takes it:
// a well-formed app image for the node's chip, whose descriptor says
// what the manifest says.
func checkApp(image []byte, m *ota.Manifest, chip string) error {
	img, err := espimage.Parse(image)
	if err != nil {
		return err
	}
	if img.Chip.String() != chip {
		return fmt.Errorf("it is an app for the %s, and this node is an %s", img.Chip, chip)
	}
	return img.Check(m.Version, int(m.SecureVersion))
}

// verifySigned checks a new app's Secure Boot V2 signature against the
// keys of the running app's signature blocks.
func verifySigned(image []byte, running *App) (*secureboot.Block, error) {
	if running == nil {
		return nil, errors.New("the node's bundle holds no app, so no signing key is trusted to check the signature with")
	}
	if len(running.Blocks) == 0 {
		return nil, errors.New("the node's running app carries no valid signature block, so no signing key is trusted")
	}
	var last error
	for _, t := range running.Blocks {
		b, err := secureboot.Verify(image, t.Key)
		if err == nil {
			return b, nil
		}
		last = err
	}
	return nil, fmt.Errorf("no key the node trusts signed it: %w", last)
}

// manifestKeys parses the identity image's OTA manifest keys.
func manifestKeys(id *identity.Identity) ([]*ecdsa.PublicKey, error) {
	var keys []*ecdsa.PublicKey
	for i, p := range id.ManifestKeys {
		blk, _ := pem.Decode(p)
		if blk == nil {
			return nil, fmt.Errorf("the identity image's %s is not PEM", identity.ManifestKeyPath(i))
		}
		k, err := x509.ParsePKIXPublicKey(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("the identity image's %s: %w", identity.ManifestKeyPath(i), err)
		}
		ek, ok := k.(*ecdsa.PublicKey)
		if !ok {
			return nil, fmt.Errorf("the identity image's %s is not an ECDSA key", identity.ManifestKeyPath(i))
		}
		keys = append(keys, ek)
	}
	if len(keys) == 0 {
		return nil, errors.New("the identity image trusts no OTA manifest key; run appliance build again")
	}
	return keys, nil
}

// otaClient is an HTTPS client with the node's certificate that
// follows no redirect and uses no proxy, dialling addr when not "".
func otaClient(n *Node, serverName, addr string) (*http.Client, error) {
	tcfg, err := n.TLS(serverName)
	if err != nil {
		return nil, err
	}
	tr := &http.Transport{TLSClientConfig: tcfg, Proxy: nil, ForceAttemptHTTP2: false}
	if addr != "" {
		d := &net.Dialer{Timeout: 10 * time.Second}
		tr.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, addr)
		}
	}
	return &http.Client{
		Transport: tr,
		Timeout:   2 * time.Minute,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return errors.New("the OTA server redirected; a node follows no redirect")
		},
	}, nil
}

// statusError is an HTTP answer other than 200.
type statusError struct {
	url  string
	code int
}

func (e *statusError) Error() string {
	switch e.code {
	case http.StatusNotFound:
		return fmt.Sprintf("%s: 404 Not Found: the gateway serves no such file; build the firmware with its image (firmware.image in the spec) and update the gateway", e.url)
	case http.StatusForbidden:
		return fmt.Sprintf("%s: 403 Forbidden: the gateway does not take this node's certificate for OTA", e.url)
	case http.StatusBadRequest:
		return fmt.Sprintf("%s: 400 Bad Request: the gateway refused the node's certificate (revoked, or not the site CA's)", e.url)
	}
	return fmt.Sprintf("%s: %d %s", e.url, e.code, http.StatusText(e.code))
}

// tooLargeError is an answer larger than a node reads.
type tooLargeError struct {
	url   string
	limit int64
}

func (e *tooLargeError) Error() string {
	return fmt.Sprintf("%s: larger than the %d bytes a node reads", e.url, e.limit)
}

// fetch GETs a URL, refusing a body larger than limit.
func fetch(ctx context.Context, c *http.Client, u string, limit int64) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("%s: %w", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, &statusError{u, resp.StatusCode}
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", u, err)
	}
	if int64(len(b)) > limit {
		return nil, &tooLargeError{u, limit}
	}
	return b, nil
}

// String is the result in one line.
func (r *OTAResult) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: ", r.Node)
	switch r.Status {
	case OTAUpdate:
		fmt.Fprintf(&b, "update to %s %s (manifest %d) would be installed", r.Manifest.Firmware, r.Manifest.Version, r.Manifest.ManifestVersion)
	case OTACurrent:
		fmt.Fprintf(&b, "up to date: the gateway serves %s %s (manifest %d), the version it runs", r.Manifest.Firmware, r.Manifest.Version, r.Manifest.ManifestVersion)
	default:
		fmt.Fprintf(&b, "%s: %s", r.Status, r.Reason)
		return b.String()
	}
	fmt.Fprintf(&b, "; manifest signature, image size and SHA-256, app descriptor and Secure Boot block %d verified", r.SignatureBlock)
	return b.String()
}
