package apply

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/appliance/appliance/generation"
)

// accounts are the gateway's users and groups as its /etc/passwd and
// /etc/group list them (under the root): files are chowned by number,
// and the numbers are the gateway's, not this process's.
type accounts struct {
	uid     map[string]int
	gid     map[string]int
	members map[string][]string
}

func (a *applier) readAccounts() (*accounts, error) {
	acc := &accounts{uid: map[string]int{}, gid: map[string]int{}, members: map[string][]string{}}
	for _, f := range []struct {
		path string
		ids  map[string]int
	}{{"/etc/passwd", acc.uid}, {"/etc/group", acc.gid}} {
		b, err := a.readFile(f.path)
		if err != nil {
			return nil, fmt.Errorf("reading the gateway's accounts: %w", err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			fields := strings.Split(line, ":")
			if len(fields) < 4 || strings.HasPrefix(line, "#") {
				continue
			}
			id, err := strconv.Atoi(fields[2])
			if err != nil {
				continue
			}
			f.ids[fields[0]] = id
			if f.path == "/etc/group" && fields[3] != "" {
				acc.members[fields[0]] = strings.Split(fields[3], ",")
			}
		}
	}
	return acc, nil
}

// checkAccounts refuses a generation whose accounts clash with the
// gateway's, or whose files belong to an account nobody makes.
func (acc *accounts) check(m *generation.Manifest) error {
	gids, uids := map[string]bool{}, map[string]bool{}
	for _, g := range m.Groups {
		if id, ok := acc.gid[g.Name]; ok && id != g.GID {
			return fmt.Errorf("group %s has GID %d on the gateway; generation %d wants %d: change the gateway's group or the module's", g.Name, id, m.Generation, g.GID)
		}
		gids[g.Name] = true
	}
	for _, u := range m.Users {
		if id, ok := acc.uid[u.Name]; ok && id != u.UID {
			return fmt.Errorf("user %s has UID %d on the gateway; generation %d wants %d: change the gateway's user or the module's", u.Name, id, m.Generation, u.UID)
		}
		uids[u.Name] = true
		for _, g := range append([]string{u.Group}, u.Groups...) {
			if _, ok := acc.gid[g]; !ok && !gids[g] {
				return fmt.Errorf("user %s: group %s is neither on the gateway nor in generation %d", u.Name, g, m.Generation)
			}
		}
	}
	for _, e := range m.Entries {
		if e.Type == generation.Symlink {
			continue
		}
		if _, ok := acc.uid[e.Owner]; !ok && !uids[e.Owner] {
			return fmt.Errorf("%s belongs to user %s, who is neither on the gateway nor in generation %d", e.Path, e.Owner, m.Generation)
		}
		if _, ok := acc.gid[e.Group]; !ok && !gids[e.Group] {
			return fmt.Errorf("%s belongs to group %s, which is neither on the gateway nor in generation %d", e.Path, e.Group, m.Generation)
		}
	}
	return nil
}

// ensureAccounts makes the generation's missing groups and users with
// their fixed IDs, with shadow's own tools (--prefix when the root is
// not /). Accounts are added, never removed: a rollback leaves them.
func (a *applier) ensureAccounts(ctx context.Context, m *generation.Manifest) error {
	acc, err := a.readAccounts()
	if err != nil {
		return err
	}
	var prefix []string
	if a.fs.root != "/" {
		prefix = []string{"--prefix", a.fs.root}
	}
	for _, g := range m.Groups {
		if _, ok := acc.gid[g.Name]; ok {
			continue
		}
		if err := a.runTool(ctx, a.opt.Groupadd, append(prefix, "-g", strconv.Itoa(g.GID), g.Name)...); err != nil {
			return err
		}
		a.event("install", fmt.Sprintf("made group %s (GID %d)", g.Name, g.GID))
	}
	for _, u := range m.Users {
		if _, ok := acc.uid[u.Name]; ok {
			var missing []string
			for _, g := range u.Groups {
				if !slices.Contains(acc.members[g], u.Name) {
					missing = append(missing, g)
				}
			}
			if len(missing) > 0 {
				if err := a.runTool(ctx, a.opt.Usermod, append(prefix, "-a", "-G", strings.Join(missing, ","), u.Name)...); err != nil {
					return err
				}
				a.event("install", fmt.Sprintf("added user %s to %s", u.Name, strings.Join(missing, ", ")))
			}
			continue
		}
		args := append(prefix, "-r", "-M", "-u", strconv.Itoa(u.UID), "-g", u.Group, "-d", u.Home, "-s", u.Shell)
		if u.Comment != "" {
			args = append(args, "-c", u.Comment)
		}
		if len(u.Groups) > 0 {
			args = append(args, "-G", strings.Join(u.Groups, ","))
		}
		if err := a.runTool(ctx, a.opt.Useradd, append(args, u.Name)...); err != nil {
			return err
		}
		a.event("install", fmt.Sprintf("made user %s (UID %d)", u.Name, u.UID))
	}
	return nil
}

// owners resolves an entry's owner and group to the gateway's IDs.
func (acc *accounts) owners(e generation.Entry) (uid, gid int, err error) {
	uid, ok := acc.uid[e.Owner]
	if !ok {
		return 0, 0, fmt.Errorf("%s: user %s does not exist on the gateway", e.Path, e.Owner)
	}
	gid, ok = acc.gid[e.Group]
	if !ok {
		return 0, 0, fmt.Errorf("%s: group %s does not exist on the gateway", e.Path, e.Group)
	}
	return uid, gid, nil
}
