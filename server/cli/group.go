package cli

import (
	"context"
	"errors"
	"fmt"
	"github.com/palisade-im/palisade/modules/archive"
	"slices"
	"strings"

	"github.com/palisade-im/palisade/server/config"
	"github.com/palisade-im/palisade/storage"
	"go.uber.org/zap"
	"mellium.im/xmpp/jid"
)

const groupUsage = "usage: palisade user group add JID GROUP | remove JID GROUP | list [JID|GROUP]"

// userGroup runs `palisade user group add|remove|list`: the memberships
// of internal accounts in [groups] groups. The running server sees a
// change within a second (modules/groups).
func (e *env) userGroup(args []string) error {
	if len(args) == 0 {
		return usageErr(groupUsage)
	}
	sub, args := args[0], args[1:]
	switch {
	case (sub == "add" || sub == "remove") && len(args) != 2,
		sub == "list" && len(args) > 1:
		return usageErr(groupUsage)
	case sub != "add" && sub != "remove" && sub != "list":
		return usageErr("unknown user group command %q (%s)", sub, groupUsage)
	}
	cfg, err := e.loadConfig()
	if err != nil {
		return err
	}
	ctx := context.Background()
	if sub == "list" {
		return e.groupList(ctx, cfg, args)
	}
	j, err := e.bareJID(cfg, args[0])
	if err != nil {
		return err
	}
	group := args[1]
	_, declared := cfg.Groups[group]
	if !declared && sub == "add" {
		return undeclared(cfg, group)
	}
	st, err := openStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	audit, err := e.auditLogger(cfg)
	if err != nil {
		return err
	}
	audit = audit.With(zap.String("actor", "cli"))
	if sub == "add" {
		switch err := st.AddMember(ctx, group, j.String()); {
		case errors.Is(err, storage.ErrNotFound):
			return fmt.Errorf("user %s does not exist (only internal accounts are put in groups; directory accounts get theirs from the directory)", j)
		case errors.Is(err, storage.ErrExists):
			return fmt.Errorf("%s is already in group %s", j, group)
		case err != nil:
			return err
		}
		if err := recordAct(ctx, cfg, archive.AdminAct{Act: archive.ActGroupAdd, Actor: cliActor(), Target: j.String(),
			Details: map[string]string{"group": group}}); err != nil {
			return fmt.Errorf("%s: added to group %s, but %w", j, group, err)
		}
		audit.Info("user_group_add", zap.String("jid", j.String()), zap.String("group", group))
		fmt.Fprintf(e.stdout, "%s: added to group %s\n", j, group)
		return nil
	}
	// remove: a membership left over from a group since taken out of
	// [groups] may still be removed.
	switch err := st.RemoveMember(ctx, group, j.String()); {
	case errors.Is(err, storage.ErrNotFound) && !declared:
		return undeclared(cfg, group)
	case errors.Is(err, storage.ErrNotFound):
		return fmt.Errorf("%s is not in group %s", j, group)
	case err != nil:
		return err
	}
	if err := recordAct(ctx, cfg, archive.AdminAct{Act: archive.ActGroupRemove, Actor: cliActor(), Target: j.String(),
		Details: map[string]string{"group": group}}); err != nil {
		return fmt.Errorf("%s: removed from group %s, but %w", j, group, err)
	}
	audit.Info("user_group_remove", zap.String("jid", j.String()), zap.String("group", group))
	fmt.Fprintf(e.stdout, "%s: removed from group %s\n", j, group)
	return nil
}

// groupList prints every declared group with its internal members, the
// members of one group, or the groups of one account.
func (e *env) groupList(ctx context.Context, cfg *config.Config, args []string) error {
	var group string
	var account jid.JID
	if len(args) == 1 {
		if _, ok := cfg.Groups[args[0]]; ok {
			group = args[0]
		} else if j, err := jid.Parse(args[0]); err == nil && j.Localpart() != "" && j.Resourcepart() == "" && strings.Contains(args[0], "@") {
			account = j
			if !isServed(cfg, j.Domainpart()) {
				return usageErr("domain %q is not served (server.domains)", j.Domainpart())
			}
		} else {
			return usageErr("%q is neither a group declared in [groups]%s nor a bare JID like alice@%s",
				args[0], declaredList(cfg), cfg.Server.Domains[0])
		}
	}
	st, err := openStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	switch {
	case group != "":
		members, err := st.Members(ctx, group)
		if err != nil {
			return err
		}
		for _, m := range members {
			fmt.Fprintln(e.stdout, m)
		}
	case account.String() != "":
		groups, err := st.GroupsOf(ctx, account.String())
		if err != nil {
			return err
		}
		for _, g := range groups {
			if _, ok := cfg.Groups[g]; ok {
				fmt.Fprintln(e.stdout, g)
			} else {
				fmt.Fprintf(e.stdout, "%s (not in [groups]: no effect)\n", g)
			}
		}
	default:
		names := make([]string, 0, len(cfg.Groups))
		for g := range cfg.Groups {
			names = append(names, g)
		}
		slices.Sort(names)
		for _, g := range names {
			kind := "internal only"
			if dn := cfg.Groups[g]; dn != "" {
				kind = "directory group " + dn
			}
			members, err := st.Members(ctx, g)
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "%s (%s): %d internal member(s)\n", g, kind, len(members))
			for _, m := range members {
				fmt.Fprintln(e.stdout, "  "+m)
			}
		}
	}
	return nil
}

// bareJID parses a bare JID of a served domain.
func (e *env) bareJID(cfg *config.Config, arg string) (jid.JID, error) {
	j, err := jid.Parse(arg)
	if err != nil || j.Localpart() == "" || j.Resourcepart() != "" {
		return jid.JID{}, usageErr("%q is not a bare JID like alice@%s", arg, cfg.Server.Domains[0])
	}
	if !isServed(cfg, j.Domainpart()) {
		return jid.JID{}, usageErr("domain %q is not served (server.domains)", j.Domainpart())
	}
	return j, nil
}

func undeclared(cfg *config.Config, group string) error {
	file := cfg.Path
	if file == "" {
		file = "the embedded default"
	}
	return usageErr("group %q is not declared in [groups] of %s%s; add %s = \"\" there for a group of internal accounts",
		group, file, declaredList(cfg), quoteKey(group))
}

// declaredList is " (declared: a, b)" or " (none declared)".
func declaredList(cfg *config.Config) string {
	if len(cfg.Groups) == 0 {
		return " (none declared)"
	}
	names := make([]string, 0, len(cfg.Groups))
	for g := range cfg.Groups {
		names = append(names, g)
	}
	slices.Sort(names)
	return " (declared: " + strings.Join(names, ", ") + ")"
}

// quoteKey writes a group name as a TOML key.
func quoteKey(k string) string {
	for _, r := range k {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return fmt.Sprintf("%q", k)
		}
	}
	return k
}
