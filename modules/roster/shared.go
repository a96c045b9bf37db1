package roster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/palisade-im/palisade/server/module"
	"github.com/palisade-im/palisade/server/stanza"
	"github.com/palisade-im/palisade/storage"
	"go.uber.org/zap"
	"mellium.im/xmpp/jid"
)

// Shared rosters: the members of each group in shared_groups see each
// other without subscription requests. The module keeps real roster items
// in step with the groups (subscription both, the group's name as roster
// group, storage.RosterItem.Shared naming the group), so that presence,
// probes, pushes and roster versioning work as for any item. Every
// shared_interval it asks the group sources for the members (the
// directory, offline members too) and
//   - gives each member an item for every other member, or turns an item
//     the member already had into a shared one (subscription both);
//   - removes the shared items of pairs the group no longer joins (one
//     another shared group joins is handed to that group instead), with a
//     roster push and unavailable presence.
//
// A group whose members cannot be read this round (the directory is down)
// is left as it is. Users may rename and regroup shared items but not
// remove them; a subscription change on one is undone at the next round.

// errSharedItem refuses the removal of a shared item.
func errSharedItem(group string) error {
	return stanza.Err(stanza.Cancel, stanza.NotAllowed, "this contact comes from the shared group "+group+" and cannot be removed")
}

// sharedLoop reconciles at once, then every SharedInterval, until stop.
func (m *Module) sharedLoop(ctx context.Context) {
	defer close(m.sharedDone)
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-m.sharedStop:
			return
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, time.Duration(m.cfg.SharedInterval))
		m.ReconcileShared(rctx)
		cancel()
		t.Reset(time.Duration(m.cfg.SharedInterval))
	}
}

// Start starts the shared-roster loop when shared_groups are configured.
func (m *Module) Start(ctx context.Context) error {
	if len(m.cfg.SharedGroups) == 0 {
		return nil
	}
	m.sharedStop, m.sharedDone = make(chan struct{}), make(chan struct{})
	go m.sharedLoop(context.WithoutCancel(ctx))
	return nil
}

// Stop ends the shared-roster loop.
func (m *Module) Stop(ctx context.Context) error {
	if m.sharedStop == nil {
		return nil
	}
	m.stopOnce.Do(func() { close(m.sharedStop) })
	select {
	case <-m.sharedDone:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("roster: stop: %w", ctx.Err())
	}
}

var (
	_ module.Starter = (*Module)(nil)
	_ module.Stopper = (*Module)(nil)
)

// ReconcileShared brings the shared items of every shared group in step
// with its members once.
func (m *Module) ReconcileShared(ctx context.Context) {
	members := map[string][]jid.JID{} // by group, only those read this round
	for _, g := range m.cfg.SharedGroups {
		ms, err := m.router.GroupMembers(ctx, g)
		if err != nil {
			m.log.Warn("shared roster: members unknown this round; items left as they are", zap.String("group", g), zap.Error(err))
			continue
		}
		local := ms[:0:0]
		for _, j := range ms {
			if j.Localpart() != "" && m.router.IsLocal(j.Domainpart()) {
				local = append(local, j.Bare())
			}
		}
		if len(local) > m.cfg.MaxSharedMembers {
			m.log.Error("shared roster: group too large; items left as they are", zap.String("group", g),
				zap.Int("members", len(local)), zap.Int("max_shared_members", m.cfg.MaxSharedMembers))
			continue
		}
		members[g] = local
	}
	for _, g := range m.cfg.SharedGroups {
		ms, ok := members[g]
		if !ok {
			continue
		}
		for _, u := range ms {
			// One read of u's roster per round; modify (which reads the
			// item again under the lock) only for what is missing.
			items, _, err := m.store.Roster(ctx, u.String())
			if err != nil {
				m.log.Error("shared roster: roster not read", zap.String("user", u.String()), zap.Error(err))
				continue
			}
			shared := map[string]bool{}
			for _, it := range items {
				shared[it.JID] = it.Shared != "" && it.Subscription == storage.SubBoth
			}
			for _, v := range ms {
				if !u.Equal(v) && !shared[v.String()] && ctx.Err() == nil {
					m.share(ctx, g, u, v)
				}
			}
		}
		m.unshare(ctx, g, members)
	}
}

// joins returns a group other than except whose members (read this round)
// include both u and v, or "".
func joins(members map[string][]jid.JID, order []string, except string, u, v jid.JID) string {
	for _, g := range order {
		ms, ok := members[g]
		if g == except || !ok {
			continue
		}
		if slices.ContainsFunc(ms, u.Equal) && slices.ContainsFunc(ms, v.Equal) {
			return g
		}
	}
	return ""
}

// share makes v a shared contact of u for group g.
func (m *Module) share(ctx context.Context, g string, u, v jid.JID) {
	c, err := m.modify(ctx, u.String(), v.String(), func(it *storage.RosterItem, existed bool) op {
		if existed && it.Shared != "" && it.Subscription == storage.SubBoth {
			return opKeep // already shared, by g or another group
		}
		if it.Shared == "" {
			it.Shared = g
		}
		it.Subscription = storage.SubBoth
		it.Ask, it.PendingIn, it.PendingInStanza, it.Approved, it.Hidden = false, false, nil, false, false
		if !existed && !slices.Contains(it.Groups, g) {
			it.Groups = append(it.Groups, g)
		}
		return opPut
	})
	if errors.Is(err, errRosterFull) {
		m.log.Warn("shared roster: roster full", zap.String("user", u.String()), zap.String("contact", v.String()), zap.String("group", g))
		return
	}
	if err != nil {
		m.log.Error("shared roster: item not stored", zap.String("user", u.String()), zap.String("contact", v.String()), zap.Error(err))
		return
	}
	if c.op == opKeep {
		return
	}
	m.pushChange(u, c, false)
	m.sendPresenceFrom(ctx, v, u) // u sees v at once
	m.audit.Info("shared_roster_item", zap.String("user", u.String()), zap.String("contact", v.String()), zap.String("group", g))
}

// unshare removes g's items of pairs g no longer joins.
func (m *Module) unshare(ctx context.Context, g string, members map[string][]jid.JID) {
	items, err := m.store.SharedItems(ctx, g)
	if err != nil {
		m.log.Error("shared roster: items not listed", zap.String("group", g), zap.Error(err))
		return
	}
	ms := members[g]
	for _, p := range items {
		u, err1 := jid.Parse(p[0])
		v, err2 := jid.Parse(p[1])
		if err1 != nil || err2 != nil {
			continue
		}
		if slices.ContainsFunc(ms, u.Equal) && slices.ContainsFunc(ms, v.Equal) {
			continue
		}
		other := joins(members, m.cfg.SharedGroups, g, u, v)
		if other == "" {
			// While u still has the item, so that the presence passes.
			m.sendUnavailableFrom(ctx, v, u)
		}
		c, err := m.modify(ctx, u.String(), v.String(), func(it *storage.RosterItem, existed bool) op {
			if !existed || it.Shared != g {
				return opKeep
			}
			if other != "" {
				it.Shared = other
				return opPut
			}
			return opDelete
		})
		if err != nil {
			m.log.Error("shared roster: item not removed", zap.String("user", u.String()), zap.String("contact", v.String()), zap.Error(err))
			continue
		}
		if c.op != opDelete {
			continue
		}
		m.pushChange(u, c, false)
		m.audit.Info("shared_roster_item_removed", zap.String("user", u.String()), zap.String("contact", v.String()), zap.String("group", g))
	}
}
