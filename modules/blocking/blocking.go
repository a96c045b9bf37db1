// Package blocking implements XEP-0191 Blocking Command: users block and
// unblock JIDs, and a policy stops stanzas between a user and the JIDs the
// user blocked, matching JIDs as XEP-0191 section 6 (and XEP-0016) do.
//
// It registers the module "blocking", which is a module.Policy (listed in
// server/chain.go). Block lists are kept in memory once read, so the policy
// does no storage I/O for a user whose list is loaded.
package blocking

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strings"
	"sync"

	"github.com/palisade-im/palisade/server/element"
	"github.com/palisade-im/palisade/server/module"
	"github.com/palisade-im/palisade/server/stanza"
	"github.com/palisade-im/palisade/storage"
	"go.uber.org/zap"
	"mellium.im/xmpp/jid"
)

// Namespaces.
const (
	// NS is the XEP-0191 namespace.
	NS = "urn:xmpp:blocking"
	// NSErrors qualifies the <blocked/> application error condition.
	NSErrors = "urn:xmpp:blocking:errors"
)

// Config is the [modules.blocking] section.
type Config struct {
	// MaxItems is the largest block list a user may have.
	MaxItems int `toml:"max_items"`
	// CacheSize is how many users' block lists are kept in memory; beyond
	// it an arbitrary list is dropped (and read again when needed).
	CacheSize int `toml:"cache_size"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() *Config { return &Config{MaxItems: 1000, CacheSize: 100000} }

// Validate checks the limits.
func (c *Config) Validate() error {
	switch {
	case c.MaxItems < 1:
		return errors.New("max_items must be at least 1")
	case c.CacheSize < 1:
		return errors.New("cache_size must be at least 1")
	}
	return nil
}

func init() {
	module.RegisterConfigured("blocking", DefaultConfig, func(h *module.Host, c Config) (any, error) {
		return New(h.Router, h.Store, h.Log, h.Audit, c)
	})
}

// Store is the storage the module needs: block lists, and rosters to know
// who may receive presence.
type Store interface {
	storage.Blocklists
	storage.Rosters
}

// Module is the blocking command and policy.
type Module struct {
	router module.Router
	store  Store
	log    *zap.Logger
	audit  *zap.Logger
	cfg    Config

	// locks serialize, per user, loading a list into the cache and
	// changing it, so the cache never holds a stale list.
	locks [64]sync.Mutex

	mu    sync.RWMutex
	cache map[string]*list // by bare JID

	imu        sync.Mutex
	interested map[string]module.Session // by full JID: sessions that fetched the list
}

var (
	_ module.IQHandlers      = (*Module)(nil)
	_ module.Features        = (*Module)(nil)
	_ module.Policy          = (*Module)(nil)
	_ module.SessionObserver = (*Module)(nil)
)

// New builds the module.
func New(r module.Router, st Store, log, audit *zap.Logger, cfg Config) (*Module, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("blocking: %w", err)
	}
	return &Module{
		router: r, store: st, log: log, audit: audit, cfg: cfg,
		cache:      map[string]*list{},
		interested: map[string]module.Session{},
	}, nil
}

// list is an immutable block list.
type list struct {
	set   map[string]struct{}
	items []string // sorted
}

var emptyList = &list{}

func newList(items []string) *list {
	if len(items) == 0 {
		return emptyList
	}
	l := &list{set: make(map[string]struct{}, len(items)), items: slices.Clone(items)}
	slices.Sort(l.items)
	l.items = slices.Compact(l.items)
	for _, i := range l.items {
		l.set[i] = struct{}{}
	}
	return l
}

func (l *list) has(s string) bool {
	_, ok := l.set[s]
	return ok
}

// match reports whether j is blocked by an item, with the rules of
// XEP-0191 section 6 (those of XEP-0016 section 2.1): an item
// <user@domain/resource> matches only that JID, <user@domain> any of its
// resources, <domain/resource> only that JID, and <domain> the domain
// itself, every JID at it and every JID at a subdomain of it.
func (l *list) match(j jid.JID) bool {
	if len(l.set) == 0 {
		return false
	}
	d, local, res := j.Domainpart(), j.Localpart(), j.Resourcepart()
	for sub := d; ; {
		if l.has(sub) {
			return true
		}
		i := strings.IndexByte(sub, '.')
		if i < 0 {
			break
		}
		sub = sub[i+1:]
	}
	if local != "" {
		bare := local + "@" + d
		return l.has(bare) || (res != "" && l.has(bare+"/"+res))
	}
	return res != "" && l.has(d+"/"+res)
}

// IQRoutes implements module.IQHandlers.
func (m *Module) IQRoutes() []module.IQRoute {
	return []module.IQRoute{
		{Space: NS, Local: "blocklist", Scope: module.ScopeAccount, Handle: m.handleList},
		{Space: NS, Local: "block", Scope: module.ScopeAccount, Handle: m.handleBlock},
		{Space: NS, Local: "unblock", Scope: module.ScopeAccount, Handle: m.handleUnblock},
	}
}

// ServerFeatures implements module.Features (XEP-0191 section 3.1: clients
// look for the feature on their server's domain).
func (m *Module) ServerFeatures() []string { return []string{NS} }

// AccountFeatures implements module.Features.
func (m *Module) AccountFeatures() []string { return []string{NS} }

// SessionStarted implements module.SessionObserver.
func (m *Module) SessionStarted(context.Context, module.Session) {}

// SessionEnded forgets that the session wanted pushes, and drops the
// user's cached list when no session is left.
func (m *Module) SessionEnded(_ context.Context, sess module.Session) {
	m.imu.Lock()
	delete(m.interested, sess.JID().String())
	m.imu.Unlock()
	bare := sess.JID().Bare()
	for _, s := range m.router.Sessions(bare) {
		if s != sess {
			return
		}
	}
	m.mu.Lock()
	delete(m.cache, bare.String())
	m.mu.Unlock()
}

func (m *Module) lockFor(user string) *sync.Mutex {
	h := fnv.New32a()
	h.Write([]byte(user))
	return &m.locks[h.Sum32()%uint32(len(m.locks))]
}

// get returns a user's block list, from the cache or, once, from storage.
func (m *Module) get(ctx context.Context, user string) (*list, error) {
	m.mu.RLock()
	l := m.cache[user]
	m.mu.RUnlock()
	if l != nil {
		return l, nil
	}
	mu := m.lockFor(user)
	mu.Lock()
	defer mu.Unlock()
	m.mu.RLock()
	l = m.cache[user]
	m.mu.RUnlock()
	if l != nil {
		return l, nil
	}
	return m.reloadLocked(ctx, user)
}

// reloadLocked reads a user's list into the cache; the user's lock is held.
func (m *Module) reloadLocked(ctx context.Context, user string) (*list, error) {
	items, err := m.store.Blocked(ctx, user)
	if err != nil {
		m.mu.Lock()
		delete(m.cache, user)
		m.mu.Unlock()
		return nil, fmt.Errorf("blocking: load block list of %s: %w", user, err)
	}
	l := newList(items)
	m.mu.Lock()
	if _, ok := m.cache[user]; !ok && len(m.cache) >= m.cfg.CacheSize {
		for k := range m.cache {
			delete(m.cache, k)
			break
		}
	}
	m.cache[user] = l
	m.mu.Unlock()
	return l, nil
}

// Check implements module.Policy, with the rules of XEP-0191 section 3.3:
// a stanza from a user to a JID the user blocked is refused (message and
// IQ requests get not-acceptable with <blocked/>); a stanza to a user from
// a JID the user blocked is refused as if the user were offline (message
// and IQ requests get service-unavailable). Presence, IQ results and
// errors are dropped silently. Stanzas between a user's own resources, and to or
// from a served domain itself, are never blocked.
func (m *Module) Check(ctx context.Context, st *stanza.Stanza) *module.Denial {
	from, to := st.From, st.To
	if from.Domainpart() == "" || to.Domainpart() == "" {
		return nil
	}
	if from.Localpart() == to.Localpart() && from.Domainpart() == to.Domainpart() {
		return nil // the user's own account and resources
	}
	if from.Localpart() != "" && m.router.IsLocal(from.Domainpart()) && !m.isServer(to) {
		l, err := m.get(ctx, from.Bare().String())
		if err != nil {
			return m.failed(st, err)
		}
		if l.match(to) {
			var e *stanza.Error
			if replyable(st) {
				e = &stanza.Error{Type: stanza.Cancel, Condition: stanza.NotAcceptable,
					App: element.New(NSErrors, "blocked")}
			}
			return &module.Denial{Err: e, Reason: "recipient blocked by sender (XEP-0191)"}
		}
	}
	if to.Localpart() != "" && m.router.IsLocal(to.Domainpart()) && !m.isServer(from) {
		l, err := m.get(ctx, to.Bare().String())
		if err != nil {
			return m.failed(st, err)
		}
		if l.match(from) {
			var e *stanza.Error
			if replyable(st) {
				e = stanza.Err(stanza.Cancel, stanza.ServiceUnavailable, "")
			}
			return &module.Denial{Err: e, Reason: "sender blocked by recipient (XEP-0191)"}
		}
	}
	return nil
}

// replyable reports whether a refused stanza gets an error: messages other
// than errors, and IQ requests.
func replyable(st *stanza.Stanza) bool {
	switch st.Kind {
	case stanza.Message:
		return st.Type != "error"
	case stanza.IQ:
		return st.IsRequest()
	}
	return false
}

// isServer reports whether j is a served domain itself.
func (m *Module) isServer(j jid.JID) bool {
	return j.Localpart() == "" && j.Resourcepart() == "" && m.router.IsLocal(j.Domainpart())
}

// failed refuses a stanza whose block lists cannot be read: nothing is
// delivered that might have been blocked.
func (m *Module) failed(st *stanza.Stanza, err error) *module.Denial {
	m.log.Error("block list unavailable", zap.Error(err))
	var e *stanza.Error
	if replyable(st) {
		e = stanza.Err(stanza.Wait, stanza.InternalServerError, "")
	}
	return &module.Denial{Err: e, Reason: "block list unavailable"}
}

// owner checks that a request is about the sender's own account.
func owner(iq *stanza.Stanza) error {
	if !iq.From.Bare().Equal(iq.To.Bare()) {
		return stanza.Err(stanza.Auth, stanza.Forbidden, "a block list belongs to its owner only")
	}
	return nil
}

// handleList returns the block list (XEP-0191 section 3.2) and remembers
// that the session wants pushes.
func (m *Module) handleList(ctx context.Context, sess module.Session, iq *stanza.Stanza) (*element.Element, error) {
	if err := owner(iq); err != nil {
		return nil, err
	}
	if iq.Type != "get" {
		return nil, stanza.Err(stanza.Modify, stanza.BadRequest, "the block list is retrieved with an iq get")
	}
	l, err := m.get(ctx, iq.To.Bare().String())
	if err != nil {
		return nil, err
	}
	if sess != nil {
		m.imu.Lock()
		m.interested[sess.JID().String()] = sess
		m.imu.Unlock()
	}
	return itemsElement("blocklist", l.items), nil
}

// handleBlock adds JIDs (XEP-0191 section 3.3).
func (m *Module) handleBlock(ctx context.Context, _ module.Session, iq *stanza.Stanza) (*element.Element, error) {
	if err := owner(iq); err != nil {
		return nil, err
	}
	if iq.Type != "set" {
		return nil, stanza.Err(stanza.Modify, stanza.BadRequest, "block is an iq set")
	}
	jids, err := parseItems(iq.Payload())
	if err != nil {
		return nil, err
	}
	if len(jids) == 0 {
		return nil, stanza.Err(stanza.Modify, stanza.BadRequest, "block needs at least one item")
	}
	user := iq.To.Bare()
	strs := jidStrings(jids)
	mu := m.lockFor(user.String())
	mu.Lock()
	old, err := m.currentLocked(ctx, user.String())
	if err == nil {
		added := 0
		for _, s := range strs {
			if !old.has(s) {
				added++
			}
		}
		if len(old.items)+added > m.cfg.MaxItems {
			err = stanza.Err(stanza.Modify, stanza.PolicyViolation,
				fmt.Sprintf("a block list holds at most %d items", m.cfg.MaxItems))
		}
	}
	if err == nil {
		err = m.store.Block(ctx, user.String(), strs)
		if err != nil {
			err = fmt.Errorf("blocking: block for %s: %w", user, err)
		}
		// Reload even on failure: the store is the truth.
		if _, rerr := m.reloadLocked(ctx, user.String()); err == nil {
			err = rerr
		}
	}
	mu.Unlock()
	if err != nil {
		return nil, err
	}
	m.audit.Info("jid_blocked", zap.String("who", user.String()), zap.String("what", strings.Join(strs, " ")),
		zap.String("why", "block command (XEP-0191)"))
	m.push(user, "block", strs)
	m.presence(ctx, user, jids, false)
	return nil, nil
}

// handleUnblock removes JIDs (XEP-0191 section 3.4), or all of them when
// no item is given (section 3.5).
func (m *Module) handleUnblock(ctx context.Context, _ module.Session, iq *stanza.Stanza) (*element.Element, error) {
	if err := owner(iq); err != nil {
		return nil, err
	}
	if iq.Type != "set" {
		return nil, stanza.Err(stanza.Modify, stanza.BadRequest, "unblock is an iq set")
	}
	jids, err := parseItems(iq.Payload())
	if err != nil {
		return nil, err
	}
	user := iq.To.Bare()
	strs := jidStrings(jids)
	mu := m.lockFor(user.String())
	mu.Lock()
	old, err := m.currentLocked(ctx, user.String())
	if err == nil {
		err = m.store.Unblock(ctx, user.String(), strs)
		if err != nil {
			err = fmt.Errorf("blocking: unblock for %s: %w", user, err)
		}
		if _, rerr := m.reloadLocked(ctx, user.String()); err == nil {
			err = rerr
		}
	}
	mu.Unlock()
	if err != nil {
		return nil, err
	}
	// The JIDs that really were blocked get presence again.
	var freed []jid.JID
	if len(strs) == 0 {
		for _, s := range old.items {
			if j, err := jid.Parse(s); err == nil {
				freed = append(freed, j)
			}
		}
	} else {
		for i, s := range strs {
			if old.has(s) {
				freed = append(freed, jids[i])
			}
		}
	}
	what := strings.Join(strs, " ")
	if len(strs) == 0 {
		what = "all"
	}
	m.audit.Info("jid_unblocked", zap.String("who", user.String()), zap.String("what", what),
		zap.String("why", "unblock command (XEP-0191)"))
	m.push(user, "unblock", strs)
	m.presence(ctx, user, freed, true)
	return nil, nil
}

// currentLocked returns the user's list; the user's lock is held.
func (m *Module) currentLocked(ctx context.Context, user string) (*list, error) {
	m.mu.RLock()
	l := m.cache[user]
	m.mu.RUnlock()
	if l != nil {
		return l, nil
	}
	return m.reloadLocked(ctx, user)
}

// parseItems reads the <item jid='...'/> children.
func parseItems(p *element.Element) ([]jid.JID, error) {
	var out []jid.JID
	for _, c := range p.Elements() {
		if c.Space != NS || c.Local != "item" {
			continue
		}
		j, err := jid.Parse(c.Attr("jid"))
		if err != nil || c.Attr("jid") == "" {
			return nil, stanza.Err(stanza.Modify, stanza.JIDMalformed, fmt.Sprintf("invalid JID %q", c.Attr("jid")))
		}
		out = append(out, j)
	}
	return out, nil
}

func jidStrings(js []jid.JID) []string {
	out := make([]string, len(js))
	for i, j := range js {
		out[i] = j.String()
	}
	return out
}

func itemsElement(local string, items []string) *element.Element {
	el := element.New(NS, local)
	for _, i := range items {
		el.Append(element.New(NS, "item", element.A("jid", i)))
	}
	return el
}

// push sends a block or unblock push to each of the user's sessions that
// fetched the block list (XEP-0191 sections 3.3 and 3.4).
func (m *Module) push(user jid.JID, local string, items []string) {
	prefix := user.String() + "/"
	m.imu.Lock()
	var targets []module.Session
	for full, s := range m.interested {
		if strings.HasPrefix(full, prefix) {
			targets = append(targets, s)
		}
	}
	m.imu.Unlock()
	for _, s := range targets {
		p := stanza.New(stanza.IQ, user, s.JID(), "set", newID())
		p.El.Append(itemsElement(local, items))
		s.Send(p)
	}
}

// presence tells the user's contacts that may see its presence about a
// block or unblock: unavailable presence from each available resource
// after a block, the resources' current presence after an unblock
// (XEP-0191 sections 3.3 and 3.4). Contacts are those in the roster with
// a subscription "from" or "both" that an item matches; an item with a
// resource gets the presence at that full JID.
func (m *Module) presence(ctx context.Context, user jid.JID, items []jid.JID, available bool) {
	if len(items) == 0 {
		return
	}
	var avail []module.Session
	for _, s := range m.router.Sessions(user) {
		if s.Available() {
			avail = append(avail, s)
		}
	}
	if len(avail) == 0 {
		return
	}
	roster, _, err := m.store.Roster(ctx, user.String())
	if err != nil {
		m.log.Error("blocking: roster unavailable for presence", zap.String("user", user.String()), zap.Error(err))
		return
	}
	lists := make([]*list, len(items))
	for i, b := range items {
		lists[i] = newList([]string{b.String()})
	}
	seen := map[string]bool{}
	var targets []jid.JID
	for _, it := range roster {
		if it.Subscription != storage.SubFrom && it.Subscription != storage.SubBoth {
			continue
		}
		c, err := jid.Parse(it.JID)
		if err != nil {
			continue
		}
		for i, b := range items {
			var t jid.JID
			switch {
			case b.Localpart() != "" && b.Resourcepart() != "":
				if !b.Bare().Equal(c) {
					continue
				}
				t = b
			case lists[i].match(c):
				t = c
			default:
				continue
			}
			if k := t.String(); !seen[k] {
				seen[k] = true
				targets = append(targets, t)
			}
		}
	}
	for _, t := range targets {
		for _, s := range avail {
			var p *stanza.Stanza
			if available {
				cur := s.Presence()
				if cur == nil {
					continue
				}
				p = cur.Copy()
				p.SetFrom(s.JID())
				p.SetTo(t)
			} else {
				p = stanza.New(stanza.Presence, s.JID(), t, "unavailable", "")
			}
			m.router.Route(ctx, p)
		}
	}
}

func newID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
