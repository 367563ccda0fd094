package apt

import (
	"fmt"
	"strings"
)

// The checks here are Debian Policy's, made before a name read from an
// index is used as anything — a map key, part of a path in the image
// (/var/lib/dpkg/info/NAME.list), of a cache path, of a URL or of the
// SBOM. A name that fails one is refused, not cleaned: an index that
// holds it is damaged or hostile.

// ValidName checks a package name (Policy 5.6.1, 5.6.7): lower-case
// letters, digits, "+", "-" and ".", starting with a letter or digit.
// The policy asks for two characters at least; dpkg and apt, which
// install what an archive holds, take one, and so does appliance.
func ValidName(s string) error {
	if s == "" || !isLowerAlnum(s[0]) {
		return fmt.Errorf("%q is not a package name: Debian's are a-z, 0-9, +, - and ., starting with a letter or digit", clip(s))
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !isLowerAlnum(c) && c != '+' && c != '-' && c != '.' {
			return fmt.Errorf("%q is not a package name: Debian's are a-z, 0-9, +, - and ., starting with a letter or digit", clip(s))
		}
	}
	return nil
}

// ValidVersion checks a version (Policy 5.6.12): [epoch:]upstream
// [-revision], the epoch a number, the upstream version of letters,
// digits and ". + ~ -" (":" too when there is an epoch), the revision of
// letters, digits and ". + ~"; none of the parts empty.
func ValidVersion(s string) error {
	bad := func(why string) error {
		return fmt.Errorf("%q is not a Debian version: %s", clip(s), why)
	}
	rest := s
	epoch, up, hasEpoch := strings.Cut(s, ":")
	if hasEpoch {
		if epoch == "" || strings.Trim(epoch, "0123456789") != "" {
			return bad("the epoch before \":\" is not a number")
		}
		rest = up
	}
	upstream, revision := rest, ""
	if i := strings.LastIndexByte(rest, '-'); i >= 0 {
		upstream, revision = rest[:i], rest[i+1:]
		if revision == "" {
			return bad("the revision after the last \"-\" is empty")
		}
	}
	if upstream == "" {
		return bad("the upstream version is empty")
	}
	for i := 0; i < len(upstream); i++ {
		if c := upstream[i]; !isAlnum(c) && !strings.ContainsRune(".+~-", rune(c)) && (c != ':' || !hasEpoch) {
			return bad(fmt.Sprintf("%q is not allowed in a version", c))
		}
	}
	for i := 0; i < len(revision); i++ {
		if c := revision[i]; !isAlnum(c) && !strings.ContainsRune(".+~", rune(c)) {
			return bad(fmt.Sprintf("%q is not allowed in a revision", c))
		}
	}
	return nil
}

// ValidArch checks an architecture name as dpkg does: lower-case
// letters, digits and "-", starting with a letter or digit ("arm64",
// "all").
func ValidArch(s string) error {
	if s == "" || !isLowerAlnum(s[0]) {
		return fmt.Errorf("%q is not an architecture name", clip(s))
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !isLowerAlnum(c) && c != '-' {
			return fmt.Errorf("%q is not an architecture name", clip(s))
		}
	}
	return nil
}

// CheckPackage checks the name, version and architecture of a package.
func CheckPackage(name, ver, arch string) error {
	if err := ValidName(name); err != nil {
		return err
	}
	if err := ValidVersion(ver); err != nil {
		return fmt.Errorf("package %s: %w", name, err)
	}
	if err := ValidArch(arch); err != nil {
		return fmt.Errorf("package %s %s: %w", name, ver, err)
	}
	return nil
}

// ValidFilename checks an index's Filename: a relative path below the
// repository's root, without empty, "." or ".." components or control
// characters.
func ValidFilename(s string) error {
	if strings.HasPrefix(s, "/") {
		return fmt.Errorf("%q is absolute; an index names files below the repository", clip(s))
	}
	for _, c := range strings.Split(s, "/") {
		if c == "" || c == "." || c == ".." {
			return fmt.Errorf("%q has an empty, \".\" or \"..\" component; an index names files below the repository", clip(s))
		}
	}
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] == 0x7f {
			return fmt.Errorf("%q holds a control character", clip(s))
		}
	}
	return nil
}

// IsSHA256 reports whether s is a SHA-256 in lower-case hex.
func IsSHA256(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func isLowerAlnum(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }
func isAlnum(c byte) bool      { return isLowerAlnum(c) || c >= 'A' && c <= 'Z' }

// clip shortens a hostile value for a message.
func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}
