// Package ldap is the directory authentication provider: accounts come
// from an LDAP directory (OpenLDAP, Active Directory) instead of, or
// before, Palisade's internal accounts.
//
// It registers the module "ldap" ([modules.ldap]) and implements
// module.Authenticator for the provider name "ldap" in auth.providers. A
// login searches the directory with the service account (user_filter with
// the escaped name), binds as the person's DN with the SASL PLAIN
// password, and refuses a person the disabled filter matches or who is in
// none of allowed_groups. While an account has a session or a resumable
// stream, it is checked again every sync_interval: deleted, disabled or no
// longer in an allowed group closes its sessions with a not-authorized
// stream error, without resumption, and writes an audit event
// session_revoked. An unreachable directory fails new logins with
// temporary-auth-failure and leaves existing sessions alone.
package ldap

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	goldap "github.com/go-ldap/ldap/v3"
	"github.com/palisade-im/palisade/server/module"
	"go.uber.org/zap"
	"mellium.im/xmpp/jid"
)

// Provider is the name of this provider in auth.providers.
const Provider = "ldap"

func init() {
	module.RegisterConfigured("ldap", DefaultConfig, func(h *module.Host, c Config) (any, error) {
		return New(h, c)
	})
}

// Module is the LDAP provider. Without a url, or when auth.providers does
// not name "ldap", it does nothing.
type Module struct {
	router module.Router
	// authorize applies the core's access rules (nil: none).
	authorize func(ctx context.Context, bare jid.JID, remote string) error
	log       *zap.Logger
	audit     *zap.Logger
	cfg       Config // effective
	dir       *directory
	active    bool

	mu sync.Mutex
	// recent are accounts the directory authenticated lately, by bare
	// JID, until their session starts.
	recent map[string]time.Time
	// sessions counts live (or resumable) sessions of directory accounts.
	sessions map[string]int
	// groups are the [groups] names of directory accounts, by bare JID,
	// from the last login or sync.
	groups map[string][]string
	// groupDNs maps [groups] names to their parsed DNs.
	groupDNs map[string]*goldap.DN

	cancel context.CancelFunc
	done   chan struct{}
	rounds atomic.Int64 // sync rounds run, for tests
}

var (
	_ module.Authenticator   = (*Module)(nil)
	_ module.SessionObserver = (*Module)(nil)
	_ module.Starter         = (*Module)(nil)
	_ module.Stopper         = (*Module)(nil)
	_ module.GroupSource     = (*Module)(nil)
	_ module.GroupLister     = (*Module)(nil)
)

// New builds the module; it reads the service account's password but does
// not connect until the first login.
func New(h *module.Host, cfg Config) (*Module, error) {
	m := &Module{log: zap.NewNop(), audit: zap.NewNop(), recent: map[string]time.Time{}, sessions: map[string]int{},
		groups: map[string][]string{}, groupDNs: map[string]*goldap.DN{}}
	if h != nil {
		m.router = h.Router
		m.authorize = h.AuthorizeLogin
		if h.Log != nil {
			m.log = h.Log.Named("ldap")
		}
		if h.Audit != nil {
			m.audit = h.Audit
		}
		if h.Config != nil {
			m.active = slices.Contains(h.Config.Auth.Providers, Provider)
			if len(cfg.Domains) == 0 {
				cfg.Domains = h.Config.Server.Domains
			}
			for name, dn := range h.Config.Groups {
				parsed, err := goldap.ParseDN(dn)
				if err != nil {
					return nil, fmt.Errorf("groups.%s: %q is not a DN: %w", name, dn, err)
				}
				m.groupDNs[name] = parsed
			}
		}
	}
	m.cfg = cfg.Effective()
	if !m.active || cfg.URL == "" {
		m.active = false
		return m, nil
	}
	dir, err := newDirectory(m.cfg)
	if err != nil {
		return nil, err
	}
	m.dir = dir
	return m, nil
}

// Provider returns "ldap".
func (m *Module) Provider() string { return Provider }

// ServesDomain reports whether the directory provides accounts of domain.
func (m *Module) ServesDomain(domain string) bool {
	return m.active && slices.Contains(m.cfg.Domains, domain)
}

// CheckPassword authenticates a person against the directory.
func (m *Module) CheckPassword(ctx context.Context, domain, username, password string) error {
	if !m.ServesDomain(domain) {
		return module.ErrUnknownUser
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Duration(m.cfg.RequestTimeout)+time.Duration(m.cfg.ConnectTimeout))
	defer cancel()
	pe, err := m.dir.find(ctx, username)
	if errors.Is(err, errNoSuchUser) {
		return module.ErrUnknownUser
	}
	if err != nil {
		m.log.Warn("directory unreachable or failing: login refused with temporary-auth-failure",
			zap.String("user", username), zap.String("url", m.cfg.URL), zap.Error(err))
		return err
	}
	if pe.Localpart != username {
		return &module.LoginRefused{Condition: "not-authorized",
			Reason: "directory entry " + pe.DN + " maps to localpart " + pe.Localpart}
	}
	if err := m.dir.verify(ctx, pe.DN, password); errors.Is(err, errWrongPassword) {
		return &module.LoginRefused{Condition: "not-authorized", Reason: "wrong password"}
	} else if err != nil {
		m.log.Warn("directory bind failed: login refused with temporary-auth-failure",
			zap.String("dn", pe.DN), zap.Error(err))
		return err
	}
	st, err := m.dir.refusal(ctx, pe, len(m.groupDNs) > 0)
	if err != nil {
		m.log.Warn("directory check failed: login refused with temporary-auth-failure",
			zap.String("dn", pe.DN), zap.Error(err))
		return err
	}
	if st.Reason != "" {
		cond := "not-authorized"
		if st.Disabled {
			cond = "account-disabled"
		}
		return &module.LoginRefused{Condition: cond, Reason: st.Reason}
	}
	if bare, err := jid.New(username, domain, ""); err == nil {
		m.mu.Lock()
		m.recent[bare.String()] = time.Now()
		m.groups[bare.String()] = m.groupNames(st.Groups)
		m.mu.Unlock()
	}
	return nil
}

// recentWindow is how long after a directory login a session start is
// counted as that login's (SASL to bind takes at most limits.auth_timeout).
const recentWindow = 5 * time.Minute

// SessionStarted starts watching an account the directory authenticated.
func (m *Module) SessionStarted(_ context.Context, sess module.Session) {
	bare := sess.JID().Bare().String()
	m.mu.Lock()
	defer m.mu.Unlock()
	if t, ok := m.recent[bare]; (ok && time.Since(t) < recentWindow) || m.sessions[bare] > 0 {
		m.sessions[bare]++
	}
}

// SessionEnded stops watching an account with no session left.
func (m *Module) SessionEnded(_ context.Context, sess module.Session) {
	bare := sess.JID().Bare().String()
	m.mu.Lock()
	defer m.mu.Unlock()
	if n, ok := m.sessions[bare]; ok {
		if n <= 1 {
			delete(m.sessions, bare)
		} else {
			m.sessions[bare] = n - 1
		}
	}
}

// Start runs the sync loop.
func (m *Module) Start(ctx context.Context) error {
	if !m.active {
		return nil
	}
	ctx, m.cancel = context.WithCancel(context.WithoutCancel(ctx))
	m.done = make(chan struct{})
	go m.syncLoop(ctx)
	m.log.Info("directory provider on", zap.String("url", m.cfg.URL), zap.Strings("domains", m.cfg.Domains),
		zap.Duration("sync_interval", time.Duration(m.cfg.SyncInterval)))
	return nil
}

// Stop ends the sync loop and closes the pool.
func (m *Module) Stop(context.Context) error {
	if m.cancel == nil {
		return nil
	}
	m.cancel()
	<-m.done
	m.dir.close()
	return nil
}

func (m *Module) syncLoop(ctx context.Context) {
	defer close(m.done)
	t := time.NewTicker(time.Duration(m.cfg.SyncInterval))
	defer t.Stop()
	changed := make(chan struct{}, 1)
	var wg sync.WaitGroup
	defer wg.Wait()
	if m.cfg.ChangeNotification {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.watch(ctx, func() {
				select {
				case changed <- struct{}{}:
				default: // a round is already due
				}
			})
		}()
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-changed:
			// Let a burst of changes (one ldapmodify, the refresh phase)
			// settle into one round.
			select {
			case <-ctx.Done():
				return
			case <-time.After(changeSettle):
			}
			select {
			case <-changed:
			default:
			}
		}
		m.Sync(ctx)
	}
}

// changeSettle is how long a change notification waits for others before
// the sync round it triggers.
const changeSettle = 100 * time.Millisecond

// Sync checks every watched account once and closes the sessions of those
// the directory no longer allows. A failing directory changes nothing.
func (m *Module) Sync(ctx context.Context) {
	defer m.rounds.Add(1)
	m.mu.Lock()
	for k, t := range m.recent {
		if time.Since(t) >= recentWindow {
			delete(m.recent, k)
		}
	}
	for k := range m.groups {
		if _, ok := m.recent[k]; !ok && m.sessions[k] == 0 {
			delete(m.groups, k)
		}
	}
	accounts := make([]string, 0, len(m.sessions))
	for k := range m.sessions {
		accounts = append(accounts, k)
	}
	m.mu.Unlock()
	slices.Sort(accounts)
	for _, a := range accounts {
		if ctx.Err() != nil {
			return
		}
		bare, err := jid.Parse(a)
		if err != nil {
			continue
		}
		reason, err := m.check(ctx, bare)
		if err != nil {
			m.log.Warn("directory sync failed; sessions left as they are", zap.String("url", m.cfg.URL), zap.Error(err))
			return
		}
		if reason != "" {
			m.Revoke(bare, reason)
			continue
		}
		m.applyRules(ctx, bare)
	}
}

// applyRules closes the sessions the access rules no longer admit with
// the account's groups as just read (login = false, or a network no
// longer allowed), so that a group change takes effect without a login.
func (m *Module) applyRules(ctx context.Context, bare jid.JID) {
	if m.authorize == nil {
		return
	}
	for _, s := range m.router.Sessions(bare) {
		err := m.authorize(ctx, bare, s.RemoteAddr())
		if err == nil {
			continue
		}
		s.Close("not-authorized", "access revoked by the access rules")
		m.audit.Info("session_revoked", zap.String("jid", s.JID().String()), zap.String("reason", err.Error()),
			zap.String("source", "ldap sync"), zap.Int("sessions", 1))
	}
}

// check returns why the directory no longer allows login ("" if it does)
// and refreshes the account's groups.
func (m *Module) check(ctx context.Context, bare jid.JID) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Duration(m.cfg.RequestTimeout)+time.Duration(m.cfg.ConnectTimeout))
	defer cancel()
	pe, err := m.dir.find(ctx, bare.Localpart())
	if errors.Is(err, errNoSuchUser) {
		return "deleted from the directory", nil
	}
	if err != nil {
		return "", err
	}
	st, err := m.dir.refusal(ctx, pe, len(m.groupDNs) > 0)
	if err != nil {
		return "", err
	}
	if st.Reason == "" {
		names := m.groupNames(st.Groups)
		m.mu.Lock()
		if old := m.groups[bare.String()]; !slices.Equal(old, names) {
			m.audit.Info("groups_changed", zap.String("jid", bare.String()), zap.Strings("groups", names),
				zap.Strings("before", old), zap.String("source", "ldap sync"))
		}
		m.groups[bare.String()] = names
		m.mu.Unlock()
	}
	return st.Reason, nil
}

// groupNames maps directory group DNs to [groups] names, sorted.
func (m *Module) groupNames(dns []string) []string {
	var out []string
	for _, g := range dns {
		parsed, err := goldap.ParseDN(g)
		if err != nil {
			continue
		}
		for name, want := range m.groupDNs {
			if parsed.EqualFold(want) && !slices.Contains(out, name) {
				out = append(out, name)
			}
		}
	}
	slices.Sort(out)
	return out
}

// Members implements module.GroupLister: the accounts of a [groups] name,
// as the directory lists them now (in every domain the directory serves).
func (m *Module) Members(ctx context.Context, group string) ([]jid.JID, bool, error) {
	m.mu.Lock()
	dn, ok := m.groupDNs[group]
	m.mu.Unlock()
	if !ok || !m.active {
		return nil, false, nil
	}
	lps, err := m.dir.members(ctx, dn.String())
	if err != nil {
		return nil, true, err
	}
	var out []jid.JID
	for _, lp := range lps {
		for _, d := range m.cfg.Domains {
			j, err := jid.New(lp, d, "")
			if err == nil {
				out = append(out, j)
			}
		}
	}
	return out, true, nil
}

// Groups returns the [groups] names the directory last gave an account.
func (m *Module) Groups(bare jid.JID) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.groups[bare.Bare().String()])
}

// Revoke closes every session of bare with a not-authorized stream error
// (no resumption) and writes one audit event.
func (m *Module) Revoke(bare jid.JID, reason string) {
	sessions := m.router.Sessions(bare)
	for _, s := range sessions {
		s.Close("not-authorized", "access revoked: "+reason)
	}
	m.audit.Info("session_revoked", zap.String("jid", bare.String()), zap.String("reason", reason),
		zap.String("source", "ldap sync"), zap.Int("sessions", len(sessions)))
	m.log.Info("directory revoked access", zap.String("jid", bare.String()), zap.String("reason", reason))
}
