package apt

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/clearsign"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/appliance/appliance/images/deb"
)

// Keyring is a parsed OpenPGP keyring.
type Keyring struct {
	entities openpgp.EntityList
}

// ReadKeyring parses a keyring in binary (.gpg, .pgp) or armored (.asc)
// form, as apt accepts both in signed-by.
func ReadKeyring(b []byte) (*Keyring, error) {
	var el openpgp.EntityList
	var err error
	if bytes.Contains(b[:min(len(b), 1024)], []byte("-----BEGIN PGP")) {
		el, err = openpgp.ReadArmoredKeyRing(bytes.NewReader(b))
	} else {
		el, err = openpgp.ReadKeyRing(bytes.NewReader(b))
	}
	if err != nil {
		return nil, fmt.Errorf("reading the OpenPGP keyring: %w", err)
	}
	if len(el) == 0 {
		return nil, errors.New("the keyring holds no key")
	}
	return &Keyring{entities: el}, nil
}

// Fingerprints are the keyring's primary key fingerprints in upper-case
// hex, in file order.
func (k *Keyring) Fingerprints() []string {
	var out []string
	for _, e := range k.entities {
		out = append(out, strings.ToUpper(fmt.Sprintf("%x", e.PrimaryKey.Fingerprint)))
	}
	return out
}

// Release is a verified Release file.
type Release struct {
	Suite, Codename string
	Date            time.Time
	// ValidUntil is zero when the Release does not expire (Debian's
	// stable suites); security and updates suites set it.
	ValidUntil    time.Time
	AcquireByHash bool
	// AllInArch reports No-Support-for-Architecture-all: Packages, that
	// is: architecture all packages are listed in every binary-ARCH
	// index and binary-all need not be read.
	AllInArch     bool
	Architectures []string
	Components    []string
	// Files maps an index's path (main/binary-arm64/Packages.xz) to its
	// SHA-256 and size.
	Files map[string]FileHash
	// Signer is the fingerprint of the key whose signature verified.
	Signer string
	// Raw is the signed document as fetched, kept for offline use.
	Raw []byte
	// Detached reports a Release signed by a Release.gpg.
	Detached bool
}

// where is the Release's URL, for messages.
func (r *Release) where(s *Source) string {
	if r.Detached {
		return s.distURL("Release")
	}
	return s.distURL("InRelease")
}

// FileHash is one line of a Release file's SHA256 field.
type FileHash struct {
	SHA256 string
	Size   int64
}

var dateLayouts = []string{
	"Mon, 02 Jan 2006 15:04:05 MST",
	"Mon, 2 Jan 2006 15:04:05 MST",
	"Mon, 02 Jan 2006 15:04:05 -0700",
	"Mon, 2 Jan 2006 15:04:05 -0700",
}

func parseDate(s string) (time.Time, error) {
	for _, l := range dateLayouts {
		if t, err := time.Parse(l, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("unreadable date %q", s)
}

// verifyInRelease checks a clear-signed InRelease against the keyring at
// time now and returns the signed text. Only the signed text is used:
// anything around the signed block is ignored, as apt does.
func verifyInRelease(data []byte, kr *Keyring, now time.Time) ([]byte, string, error) {
	block, rest := clearsign.Decode(data)
	if block == nil {
		return nil, "", errors.New("not an OpenPGP clear-signed document")
	}
	if b2, _ := clearsign.Decode(rest); b2 != nil {
		return nil, "", errors.New("more than one signed document")
	}
	sigs, err := io.ReadAll(block.ArmoredSignature.Body)
	if err != nil {
		return nil, "", fmt.Errorf("reading the signature: %w", err)
	}
	signer, err := verifyAny(kr, block.Bytes, sigs, now)
	if err != nil {
		return nil, "", err
	}
	return block.Plaintext, signer, nil
}

// verifyDetached checks Release against Release.gpg (armored or binary).
func verifyDetached(signed, sig []byte, kr *Keyring, now time.Time) (string, error) {
	if bytes.HasPrefix(bytes.TrimSpace(sig), []byte("-----BEGIN PGP")) {
		blk, err := armor.Decode(bytes.NewReader(sig))
		if err != nil {
			return "", fmt.Errorf("reading the signature: %w", err)
		}
		if sig, err = io.ReadAll(blk.Body); err != nil {
			return "", fmt.Errorf("reading the signature: %w", err)
		}
	}
	return verifyAny(kr, signed, sig, now)
}

// maxSignatures bounds the signatures of one Release: Debian's carry
// three. Each is a public-key verification; a Release of thousands
// would cost seconds of CPU before it is refused.
const maxSignatures = 16

// verifyAny accepts the document when any one of its signatures is a
// good signature by a valid key of the keyring. Archives sign with
// several keys (Debian: the archive keys of two releases and the release
// key), and a keyring may know only some of them.
func verifyAny(kr *Keyring, signed, sigPackets []byte, now time.Time) (string, error) {
	cfg := &packet.Config{Time: func() time.Time { return now }}
	pr := packet.NewReader(bytes.NewReader(sigPackets))
	var firstErr error
	n := 0
	for {
		p, err := pr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return "", fmt.Errorf("reading the signature: %w", err)
		}
		sig, ok := p.(*packet.Signature)
		if !ok {
			continue
		}
		if n++; n > maxSignatures {
			return "", fmt.Errorf("more than %d signatures; an archive signs with a few keys", maxSignatures)
		}
		var one bytes.Buffer
		if err := sig.Serialize(&one); err != nil {
			continue
		}
		_, signer, err := openpgp.VerifyDetachedSignature(kr.entities, bytes.NewReader(signed), &one, cfg)
		if err == nil {
			return strings.ToUpper(fmt.Sprintf("%x", signer.PrimaryKey.Fingerprint)), nil
		}
		if firstErr == nil || !errors.Is(err, errUnknownIssuer) {
			firstErr = err
		}
	}
	if n == 0 {
		return "", errors.New("no signature")
	}
	if errors.Is(firstErr, errUnknownIssuer) {
		return "", errors.New("signed by no key of the keyring; check the source's keyring")
	}
	return "", fmt.Errorf("bad signature: %w", firstErr)
}

// parseRelease reads the fields appliance uses from a Release text.
func parseRelease(text []byte) (*Release, error) {
	p, err := deb.ParseControl(text)
	if err != nil {
		return nil, fmt.Errorf("reading Release: %w", err)
	}
	v := map[string]string{}
	for _, f := range p {
		v[f.Name] = strings.TrimSpace(f.Value)
	}
	r := &Release{
		Suite:         v["Suite"],
		Codename:      v["Codename"],
		AcquireByHash: v["Acquire-By-Hash"] == "yes",
		AllInArch:     strings.Contains(v["No-Support-for-Architecture-all"], "Packages"),
		Architectures: strings.Fields(v["Architectures"]),
		Components:    strings.Fields(v["Components"]),
		Files:         map[string]FileHash{},
	}
	if s := v["Date"]; s != "" {
		if r.Date, err = parseDate(s); err != nil {
			return nil, fmt.Errorf("Release Date: %w", err)
		}
	}
	if s := v["Valid-Until"]; s != "" {
		if r.ValidUntil, err = parseDate(s); err != nil {
			return nil, fmt.Errorf("Release Valid-Until: %w", err)
		}
	}
	for _, line := range strings.Split(v["SHA256"], "\n") {
		f := strings.Fields(line)
		if len(f) != 3 {
			continue
		}
		size, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil || size < 0 || !IsSHA256(strings.ToLower(f[0])) {
			return nil, fmt.Errorf("Release SHA256 line %q is damaged", line)
		}
		r.Files[f[2]] = FileHash{SHA256: strings.ToLower(f[0]), Size: size}
	}
	if len(r.Files) == 0 {
		return nil, errors.New("Release lists no SHA256 hashes; appliance reads only archives that do")
	}
	return r, nil
}
