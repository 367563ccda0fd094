// Package rootfs builds a gateway's root file system from apt
// repositories, on any host and without root, chroot or emulation — what
// debootstrap's first stage or mmdebstrap --variant=extract do, verified
// end to end and reproducible. A build is four steps:
//
//	lock, err := rootfs.Plan(ctx, client, req)          // indexes → resolved, locked package set
//	err = rootfs.Fetch(ctx, client, lock, cache, prog)  // .debs into the cache, hash-checked
//	t, err := rootfs.Unpack(ctx, lock, cache, opts)     // cache → file tree with the dpkg database
//	err = sbom.Write(w, …rootfs.SBOM(lock)…)            // what is in it
//
// Plan is skipped when an appliance.lock fits the request (Lock.Fits).
// Unpack keeps every package's unpacked form in the cache (content blobs
// and a manifest), so a warm build never decompresses anything; the
// manifest is used only when it has the SHA-256 recorded outside the
// cache, in the site's state (Lock.LoadUnpacked, Lock.SaveUnpacked), so
// that an altered cache is unpacked again rather than believed.
//
// What a package may hold is what dpkg would unpack, less what an image
// must not get: paths that leave the tree (absolute, "..", through a
// symlink, hard links likewise), names with a newline or longer than a
// file system takes, device nodes and FIFOs (Debian Policy 10.6 forbids
// them; appliance makes /dev/console itself), a control file that names
// another package or sets dpkg's own status fields, and a data archive
// that decompresses past twice its Installed-Size. Modes are the
// package's, setuid and setgid included, as with dpkg; symlink targets
// are kept as written and are never followed on the build host.
// Maintainer scripts never run on the build host: the tree is left as
// dpkg --unpack leaves a system — every package "install ok unpacked",
// conffiles beside their place as NAME.dpkg-new and marked newconffile,
// the info files, trigger interests, arch and available — except that
// dpkg --unpack runs each package's "preinst install" before unpacking
// it, and nothing has run here. So the gateway's first boot must, in
// dependency order (Pre-Depends, then Depends; Essential first), run
// each /var/lib/dpkg/info/PKG.preinst install with the environment dpkg
// gives maintainer scripts (DPKG_MAINTSCRIPT_PACKAGE, _NAME=preinst,
// _ARCH; dpkg-maintscript-helper needs them), then
// DEBIAN_FRONTEND=noninteractive dpkg --configure -a --force-confdef
// --force-confold, which moves the conffiles into place (keeping
// appliance's own configuration where a module wrote one), runs the
// postinsts and the triggers.
//
// Reproducibility: the tree depends only on the lock and the packages.
// Modification times are the packages' own; what appliance makes (the
// dpkg database, the merged-/usr links, folders no package names) is
// dated at the newest package time, or at SOURCE_DATE_EPOCH when set,
// which also clamps every later time.
package rootfs

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"slices"
	"sort"
	"strings"

	"github.com/appliance/appliance/images/apt"
)

// Request is what a root file system is built from.
type Request struct {
	Suite   string
	Arch    string
	Sources []*apt.Source
	// Packages are the packages asked for on top of the base set.
	Packages []string
}

// Base set: every package the suite marks Essential or Priority
// required, as debootstrap's and mmdebstrap's "required" variants
// install (in trixie that includes apt). Recommends are never followed.
const baseRule = "essential+required, no recommends"

// Source priorities (see apt.Source.Priority). Every source gets apt's
// default, so the highest version wins as it does with apt on Raspberry
// Pi OS; the Raspberry Pi archive gets more, so that its builds of a
// package (kernel, firmware, patched libraries) win over Debian's
// whatever their version numbers say.
const (
	DefaultPriority     = 500
	RaspberryPiPriority = 600
)

// inputs is everything that decides a lock's content besides the
// archive's state: its checksum is the lock's Inputs.
type inputs struct {
	Format   int          `json:"format"`
	Suite    string       `json:"suite"`
	Arch     string       `json:"arch"`
	Base     string       `json:"base"`
	Sources  []LockSource `json:"sources"`
	Packages []string     `json:"packages"`
}

func (r *Request) lockSources() []LockSource {
	var out []LockSource
	for _, s := range r.Sources {
		var fps []string
		if s.Keyring != nil {
			fps = s.Keyring.Fingerprints()
			sort.Strings(fps)
		}
		out = append(out, LockSource{Name: s.Name, URL: strings.TrimSuffix(s.URL, "/"), Suite: s.Suite, Components: s.Components, Keys: fps, Priority: s.Priority})
	}
	return out
}

// Inputs is the SHA-256 of the request's canonical form: suite,
// architecture, base rule, sources with their keys' fingerprints and
// priorities, and the requested packages. A lock whose Inputs differ was
// made for another request.
func (r *Request) Inputs() string {
	pkgs := append([]string{}, r.Packages...)
	sort.Strings(pkgs)
	in := inputs{Format: lockFormat, Suite: r.Suite, Arch: r.Arch, Base: baseRule, Sources: r.lockSources(), Packages: slices.Compact(pkgs)}
	b, _ := json.Marshal(in)
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}
