package rootfs

import (
	"bytes"
	"fmt"
	"sort"
	"strings"

	"github.com/appliance/appliance/images/deb"
	"github.com/appliance/appliance/images/tree"
)

// dpkgFieldOrder is the order in which dpkg writes the fields it knows
// (lib/dpkg/parse.c's fieldinfos); other fields follow in control-file
// order.
var dpkgFieldOrder = []string{
	"Package", "Essential", "Protected", "Status", "Priority", "Section",
	"Installed-Size", "Origin", "Maintainer", "Bugs", "Architecture",
	"Multi-Arch", "Source", "Version", "Config-Version", "Replaces",
	"Provides", "Depends", "Pre-Depends", "Recommends", "Suggests",
	"Breaks", "Conflicts", "Enhances", "Conffiles", "Filename", "Size",
	"MD5sum", "MSDOS-Filename", "Description", "Triggers-Pending",
	"Triggers-Awaited",
}

var fieldRank = func() map[string]int {
	m := map[string]int{}
	for i, f := range dpkgFieldOrder {
		m[strings.ToLower(f)] = i
	}
	return m
}()

// dpkgParagraph orders a control paragraph as dpkg writes its status,
// with the extra fields given (Status, Conffiles) put in their place.
func dpkgParagraph(ctrl deb.Paragraph, extra ...deb.Field) deb.Paragraph {
	var known, other deb.Paragraph
	for _, f := range append(append(deb.Paragraph{}, ctrl...), extra...) {
		if _, ok := fieldRank[strings.ToLower(f.Name)]; ok {
			known = append(known, f)
		} else {
			other = append(other, f)
		}
	}
	sort.SliceStable(known, func(i, j int) bool {
		return fieldRank[strings.ToLower(known[i].Name)] < fieldRank[strings.ToLower(known[j].Name)]
	})
	return append(known, other...)
}

// infoName is a package's name in dpkg's info folder and trigger files:
// qualified with the architecture for Multi-Arch: same packages.
func (p *unpacked) infoName(arch string) string {
	if p.multiArchSame {
		a := p.ctrl.Get("Architecture")
		if a == "" {
			a = arch
		}
		return p.name + ":" + a
	}
	return p.name
}

// writeDpkgDB writes /var/lib/dpkg as dpkg --unpack leaves it: every
// package "install ok unpacked" in status with its conffiles marked
// newconffile, info/PKG.{list,md5sums,conffiles,preinst,postinst,…},
// the trigger interests registered, arch, and available with the
// packages' control data (as --record-avail would).
func (u *unpacker) writeDpkgDB() error {
	pkgs := append([]*unpacked{}, u.order...)
	sort.Slice(pkgs, func(i, j int) bool { return pkgs[i].name < pkgs[j].name })

	var status, avail bytes.Buffer
	fileTriggers := map[string][]string{}
	named := map[string][]string{}
	files := map[string][]byte{}
	modes := map[string]uint32{}
	for _, p := range pkgs {
		st := []deb.Field{{Name: "Status", Value: "install ok unpacked"}}
		if conf := p.m.Member("conffiles"); conf != nil {
			var b strings.Builder
			for _, line := range strings.Split(string(conf.Data), "\n") {
				f := strings.Fields(line)
				if len(f) == 0 || (len(f) > 1 && f[0] == "remove-on-upgrade") {
					continue
				}
				fmt.Fprintf(&b, "\n %s newconffile", f[len(f)-1])
			}
			if b.Len() > 0 {
				st = append(st, deb.Field{Name: "Conffiles", Value: b.String()})
			}
		}
		dpkgParagraph(p.ctrl, st...).WriteTo(&status)
		status.WriteString("\n")
		dpkgParagraph(p.ctrl).WriteTo(&avail)
		avail.WriteString("\n")

		info := "var/lib/dpkg/info/" + p.infoName(u.arch)
		var list strings.Builder
		for _, l := range p.list {
			if !p.lost[l] {
				list.WriteString(l)
				list.WriteString("\n")
			}
		}
		files[info+".list"] = []byte(list.String())
		for _, m := range p.m.Members {
			if strings.Contains(m.Name, "/") || m.Name == "" {
				continue
			}
			files[info+"."+m.Name] = m.Data
			modes[info+"."+m.Name] = uint32(m.Mode) & 0o7777
		}
		if trig := p.m.Member("triggers"); trig != nil {
			for _, line := range strings.Split(string(trig.Data), "\n") {
				f := strings.Fields(line)
				if len(f) != 2 || !strings.HasPrefix(f[0], "interest") {
					continue
				}
				who := p.infoName(u.arch)
				if strings.HasSuffix(f[0], "-noawait") {
					who += "/noawait"
				}
				if strings.HasPrefix(f[1], "/") {
					fileTriggers[f[1]] = append(fileTriggers[f[1]], who)
				} else {
					named[f[1]] = append(named[f[1]], who)
				}
			}
		}
	}
	files["var/lib/dpkg/status"] = status.Bytes()
	files["var/lib/dpkg/available"] = avail.Bytes()
	files["var/lib/dpkg/arch"] = []byte(u.arch + "\n")
	files["var/lib/dpkg/info/format"] = []byte("1\n")
	files["var/lib/dpkg/diversions"] = nil
	files["var/lib/dpkg/statoverride"] = nil
	files["var/lib/dpkg/triggers/Unincorp"] = nil
	var ft []string
	for path, who := range fileTriggers {
		for _, w := range who {
			ft = append(ft, path+" "+w)
		}
	}
	if len(ft) > 0 {
		sort.Strings(ft)
		files["var/lib/dpkg/triggers/File"] = []byte(strings.Join(ft, "\n") + "\n")
	}
	for name, who := range named {
		if strings.ContainsAny(name, "/\x00") || name == "File" || name == "Unincorp" || name == "Lock" {
			return fmt.Errorf("trigger name %q cannot be a file name", name)
		}
		sort.Strings(who)
		files["var/lib/dpkg/triggers/"+name] = []byte(strings.Join(who, "\n") + "\n")
	}
	for _, d := range []string{"var/lib/dpkg/updates", "var/lib/dpkg/alternatives", "var/lib/dpkg/parts", "var/lib/dpkg/triggers", "var/lib/dpkg/info"} {
		if err := u.t.MkdirAll(d, u.dirTemplate()); err != nil {
			return err
		}
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		mode, ok := modes[n]
		if !ok {
			mode = 0o644
		}
		data := files[n]
		if data == nil {
			data = []byte{}
		}
		if ex := u.t.Get(n); ex != nil && ex.Type != tree.Regular {
			return fmt.Errorf("/%s is a %s in the packages, where dpkg keeps its database", n, ex.Type)
		}
		if err := u.t.Put(&tree.Entry{Path: n, Type: tree.Regular, Mode: mode, MTime: u.epoch, Size: int64(len(data)), Data: data}); err != nil {
			return err
		}
	}
	return nil
}
