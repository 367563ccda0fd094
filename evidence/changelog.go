package evidence

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"
)

// maxChangelog bounds a decompressed changelog.Debian (glibc's is about
// 2 MB).
const maxChangelog = 32 << 20

var cveRe = regexp.MustCompile(`\bCVE-\d{4}-\d{4,7}\b`)

// Fix is a CVE a changelog entry names: the version that fixed it, and
// the suite it was uploaded to.
type Fix struct {
	CVE, Version, Target string
}

// ChangelogFixes reads a changelog.Debian.gz and returns the CVEs its
// entries name for which keep(version, target) holds, each once, with
// the earliest entry that names it.
func ChangelogFixes(gz []byte, keep func(version, target string) bool) ([]Fix, error) {
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		return nil, fmt.Errorf("changelog: %w", err)
	}
	text, err := io.ReadAll(io.LimitReader(zr, maxChangelog+1))
	if err != nil {
		return nil, fmt.Errorf("changelog: %w", err)
	}
	if len(text) > maxChangelog {
		return nil, fmt.Errorf("changelog: over %d MB decompressed", maxChangelog>>20)
	}
	entries := parseChangelog(text)
	seen := map[string]int{}
	var out []Fix
	// Newest first: walk from the oldest so the first entry naming a
	// CVE is the one that fixed it.
	for i := len(entries) - 1; i >= 0; i-- {
		e := entries[i]
		v := e.Version
		if !keep(v, e.Target) {
			continue
		}
		for _, id := range cveRe.FindAllString(e.Text, -1) {
			if _, ok := seen[id]; !ok {
				seen[id] = len(out)
				out = append(out, Fix{CVE: id, Version: v, Target: strings.TrimSpace(e.Target)})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CVE < out[j].CVE })
	return out, nil
}

// entry is one entry of a Debian changelog.
type entry struct {
	Version, Target, Text string
}

// headerRe is an entry's first line: "openssl (3.5.1-1+deb13u1) trixie-security; urgency=medium".
var headerRe = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]* \(([^()\s]+)\) ([^;]*);`)

// parseChangelog splits a changelog into entries. It is lenient, as
// dpkg-parsechangelog is: the oldest entries of long-lived packages
// and the editor footers after them follow no format, and a line that
// is not a header belongs to the entry before it.
func parseChangelog(text []byte) []entry {
	var out []entry
	for _, line := range strings.Split(string(text), "\n") {
		if m := headerRe.FindStringSubmatch(line); m != nil {
			out = append(out, entry{Version: m[1], Target: strings.TrimSpace(m[2])})
			continue
		}
		if len(out) > 0 {
			out[len(out)-1].Text += line + "\n"
		}
	}
	return out
}

// ChangelogPaths are where a binary package keeps its Debian changelog.
func ChangelogPaths(pkg, arch string) []string {
	d := "usr/share/doc/" + pkg + "/"
	return []string{d + "changelog.Debian.gz", d + "changelog.Debian." + arch + ".gz"}
}
