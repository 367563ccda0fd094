package build

import (
	"bufio"
	"bytes"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/appliance/appliance/desired"
)

// accounts is /etc/passwd and /etc/group as base-passwd makes them on a
// fresh system, plus the accounts the modules need with their fixed IDs.
type accounts struct {
	passwd [][]string // fields
	group  [][]string
}

func parseColon(b []byte, n int) [][]string {
	var out [][]string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Split(line, ":")
		if len(f) == n {
			out = append(out, f)
		}
	}
	return out
}

// newAccounts starts from base-passwd's master files.
func newAccounts(passwdMaster, groupMaster []byte) (*accounts, error) {
	a := &accounts{passwd: parseColon(passwdMaster, 7), group: parseColon(groupMaster, 4)}
	if len(a.passwd) == 0 || len(a.group) == 0 {
		return nil, fmt.Errorf("base-passwd's master files are empty or unreadable")
	}
	return a, nil
}

func (a *accounts) add(users []desired.User, groups []desired.Group) error {
	for _, g := range groups {
		if f := a.findGroup(g.Name); f != nil {
			if f[2] != strconv.Itoa(g.GID) {
				return fmt.Errorf("group %s has GID %s in Debian's base-passwd, not %d", g.Name, f[2], g.GID)
			}
			continue
		}
		if n := a.groupByID(g.GID); n != "" {
			return fmt.Errorf("GID %d of group %s is Debian's %s", g.GID, g.Name, n)
		}
		a.group = append(a.group, []string{g.Name, "x", strconv.Itoa(g.GID), ""})
	}
	for _, u := range users {
		if f := a.findUser(u.Name); f != nil {
			return fmt.Errorf("user %s already exists in Debian's base-passwd", u.Name)
		}
		g := a.findGroup(u.Group)
		if g == nil {
			return fmt.Errorf("user %s: no group %s", u.Name, u.Group)
		}
		a.passwd = append(a.passwd, []string{u.Name, "x", strconv.Itoa(u.UID), g[2], u.Comment, u.Home, u.Shell})
		for _, sup := range u.Groups {
			sg := a.findGroup(sup)
			if sg == nil {
				return fmt.Errorf("user %s: no group %s", u.Name, sup)
			}
			members := strings.Split(sg[3], ",")
			if sg[3] == "" {
				members = nil
			}
			sg[3] = strings.Join(append(members, u.Name), ",")
		}
	}
	sort.SliceStable(a.passwd, func(i, j int) bool { return atoi(a.passwd[i][2]) < atoi(a.passwd[j][2]) })
	sort.SliceStable(a.group, func(i, j int) bool { return atoi(a.group[i][2]) < atoi(a.group[j][2]) })
	return nil
}

func atoi(s string) int { n, _ := strconv.Atoi(s); return n }

func (a *accounts) findUser(name string) []string {
	for _, f := range a.passwd {
		if f[0] == name {
			return f
		}
	}
	return nil
}

func (a *accounts) findGroup(name string) []string {
	for _, f := range a.group {
		if f[0] == name {
			return f
		}
	}
	return nil
}

func (a *accounts) groupByID(gid int) string {
	for _, f := range a.group {
		if f[2] == strconv.Itoa(gid) {
			return f[0]
		}
	}
	return ""
}

// uid and gid resolve names for file ownership.
func (a *accounts) uid(name string) (int, error) {
	if f := a.findUser(name); f != nil {
		return atoi(f[2]), nil
	}
	return 0, fmt.Errorf("no user %s", name)
}

func (a *accounts) gid(name string) (int, error) {
	if f := a.findGroup(name); f != nil {
		return atoi(f[2]), nil
	}
	return 0, fmt.Errorf("no group %s", name)
}

// files renders passwd, group, shadow and gshadow. No account has a
// password: "*" never matches one, and unlike "!" it does not lock the
// account against key logins.
func (a *accounts) files(days int64) (passwd, group, shadow, gshadow []byte) {
	var p, g, s, gs bytes.Buffer
	for _, f := range a.passwd {
		p.WriteString(strings.Join(f, ":") + "\n")
		fmt.Fprintf(&s, "%s:*:%d:0:99999:7:::\n", f[0], days)
	}
	for _, f := range a.group {
		g.WriteString(strings.Join(f, ":") + "\n")
		fmt.Fprintf(&gs, "%s:*::%s\n", f[0], f[3])
	}
	return p.Bytes(), g.Bytes(), s.Bytes(), gs.Bytes()
}
