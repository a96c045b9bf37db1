// Package groups is the group source of internal accounts: it tells the
// core (and through module.Router.Groups every module) which Palisade
// groups ([groups] names) an internal account was put in with
// `palisade user group add`.
//
// It registers the module "groups" (no settings) and implements
// module.GroupSource. Memberships live in the store (storage.Groups); the
// module keeps them in memory, so that a rights check never waits on the
// database, and reads them again when their version changes. It looks at
// the version every Refresh (one second): a change made by the CLI in
// another process takes effect within that bound, without a restart, for
// new logins and every later rights check. When an account's groups
// change, each of its live sessions is checked again against the access
// rules, and one they no longer admit is closed with a not-authorized
// stream error (audit session_revoked, source "groups").
//
// Only groups declared in [groups] count: a membership left over from a
// group since removed from the file has no effect.
package groups

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/palisade-im/palisade/server/module"
	"github.com/palisade-im/palisade/storage"
	"go.uber.org/zap"
	"mellium.im/xmpp/jid"
)

// Refresh is how often the module looks for membership changes: the
// longest a change made elsewhere (the CLI) takes to be seen.
const Refresh = time.Second

func init() {
	module.Register(module.Info{
		Name: "groups",
		New:  func(h *module.Host, _ any) (any, error) { return New(h, Refresh) },
	})
}

// Module is the group source of internal accounts.
type Module struct {
	store     storage.Groups
	router    module.Router
	authorize func(ctx context.Context, bare jid.JID, remote string) error
	setHealth func(component, problem string)
	log       *zap.Logger
	audit     *zap.Logger
	declared  map[string]bool
	interval  time.Duration

	mu      sync.RWMutex
	members map[string][]string // declared groups by bare JID
	version int64

	cancel context.CancelFunc
	done   chan struct{}
}

var (
	_ module.GroupSource = (*Module)(nil)
	_ module.Starter     = (*Module)(nil)
	_ module.Stopper     = (*Module)(nil)
)

// New builds the module and reads the memberships once; interval is how
// often Start's loop looks for changes.
func New(h *module.Host, interval time.Duration) (*Module, error) {
	m := &Module{router: h.Router, authorize: h.AuthorizeLogin, setHealth: h.SetHealth,
		log: zap.NewNop(), audit: zap.NewNop(), declared: map[string]bool{}, interval: interval,
		members: map[string][]string{}, version: -1}
	if h.Log != nil {
		m.log = h.Log.Named("groups")
	}
	if h.Audit != nil {
		m.audit = h.Audit
	}
	if h.Config != nil {
		for name := range h.Config.Groups {
			m.declared[name] = true
		}
	}
	if len(m.declared) == 0 {
		return m, nil // nothing can match; no store reads at all
	}
	st, ok := h.Store.(storage.Groups)
	if !ok {
		return nil, fmt.Errorf("groups: the store keeps no group memberships")
	}
	m.store = st
	if _, err := m.Refresh(context.Background()); err != nil {
		return nil, err
	}
	return m, nil
}

// Groups returns the declared groups the account is in.
func (m *Module) Groups(bare jid.JID) []string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return slices.Clone(m.members[bare.Bare().String()])
}

// Members implements module.GroupLister: the internal accounts in a
// declared group, sorted (shared rosters list them with the directory's).
func (m *Module) Members(_ context.Context, group string) ([]jid.JID, bool, error) {
	if !m.declared[group] {
		return nil, false, nil
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	var out []jid.JID
	for bare, gs := range m.members {
		if !slices.Contains(gs, group) {
			continue
		}
		if j, err := jid.Parse(bare); err == nil {
			out = append(out, j)
		}
	}
	slices.SortFunc(out, func(a, b jid.JID) int { return strings.Compare(a.String(), b.String()) })
	return out, true, nil
}

var _ module.GroupLister = (*Module)(nil)

// Start runs the loop that looks for changes every interval.
func (m *Module) Start(ctx context.Context) error {
	if m.store == nil {
		return nil
	}
	ctx, m.cancel = context.WithCancel(context.WithoutCancel(ctx))
	m.done = make(chan struct{})
	go func() {
		defer close(m.done)
		t := time.NewTicker(m.interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			changed, err := m.Refresh(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				m.log.Warn("group memberships unreadable; the last ones read stay in force", zap.Error(err))
				m.health(err.Error())
				continue
			}
			m.health("")
			m.recheck(ctx, changed)
		}
	}()
	return nil
}

// Stop ends the loop.
func (m *Module) Stop(context.Context) error {
	if m.cancel == nil {
		return nil
	}
	m.cancel()
	<-m.done
	return nil
}

func (m *Module) health(problem string) {
	if m.setHealth != nil {
		m.setHealth("groups", problem)
	}
}

// Refresh reads the memberships again if their version changed and
// returns the accounts whose groups changed.
func (m *Module) Refresh(ctx context.Context) ([]jid.JID, error) {
	v, err := m.store.MembershipVersion(ctx)
	if err != nil {
		return nil, fmt.Errorf("groups: %w", err)
	}
	m.mu.RLock()
	same := v == m.version
	m.mu.RUnlock()
	if same {
		return nil, nil
	}
	all, v, err := m.store.Memberships(ctx)
	if err != nil {
		return nil, fmt.Errorf("groups: %w", err)
	}
	next := make(map[string][]string, len(all))
	for j, gs := range all {
		var keep []string
		for _, g := range gs {
			if m.declared[g] {
				keep = append(keep, g)
			}
		}
		if len(keep) > 0 {
			next[j] = keep
		}
	}
	m.mu.Lock()
	prev, first := m.members, m.version == -1
	m.members, m.version = next, v
	m.mu.Unlock()
	if first {
		return nil, nil
	}

	var changed []jid.JID
	for _, k := range sortedUnion(prev, next) {
		if slices.Equal(prev[k], next[k]) {
			continue
		}
		if j, err := jid.Parse(k); err == nil {
			changed = append(changed, j)
			m.log.Info("groups changed", zap.String("jid", k), zap.Strings("groups", next[k]), zap.Strings("before", prev[k]))
		}
	}
	return changed, nil
}

// recheck applies the access rules again to the live sessions of accounts
// whose groups changed, closing those no longer admitted.
func (m *Module) recheck(ctx context.Context, accounts []jid.JID) {
	if m.authorize == nil || m.router == nil {
		return
	}
	for _, bare := range accounts {
		for _, s := range m.router.Sessions(bare) {
			err := m.authorize(ctx, bare, s.RemoteAddr())
			if err == nil {
				continue
			}
			s.Close("not-authorized", "access revoked by the access rules")
			m.audit.Info("session_revoked", zap.String("jid", s.JID().String()), zap.String("reason", err.Error()),
				zap.String("source", "groups"), zap.Int("sessions", 1))
		}
	}
}

func sortedUnion(a, b map[string][]string) []string {
	out := make([]string, 0, len(a)+len(b))
	for k := range a {
		out = append(out, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}
