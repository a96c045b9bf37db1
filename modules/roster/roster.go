// Package roster implements RFC 6121: the roster (section 2, with XEP-0237
// roster versioning), presence subscriptions with the state tables of
// Appendix A and subscription pre-approval (section 3), and presence
// broadcast, probes and directed presence (section 4).
//
// It registers the module "roster", which is the server's
// module.PresenceHandler.
package roster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"sync"
	"time"

	"github.com/palisade-im/palisade/server/config"
	"github.com/palisade-im/palisade/server/element"
	"github.com/palisade-im/palisade/server/module"
	"github.com/palisade-im/palisade/server/stanza"
	"github.com/palisade-im/palisade/storage"
	"go.uber.org/zap"
	"mellium.im/xmpp/jid"
)

// Namespaces.
const (
	// NSRoster is the roster namespace (RFC 6121 section 2).
	NSRoster = "jabber:iq:roster"
	// NSRosterVer is the roster versioning stream feature (RFC 6121 2.6, XEP-0237).
	NSRosterVer = "urn:xmpp:features:rosterver"
	// NSPreApproval is the subscription pre-approval stream feature (RFC 6121 3.4).
	NSPreApproval = "urn:xmpp:features:pre-approval"
)

// Config is the [modules.roster] section.
type Config struct {
	// MaxItems is the largest roster a user may build (0: no limit).
	MaxItems int `toml:"max_items"`
	// MaxPending is how many subscription requests from entities not in
	// the roster may wait for an answer; more are dropped (0: no limit).
	MaxPending int `toml:"max_pending"`
	// MaxNameLength is the longest item name accepted, in bytes.
	MaxNameLength int `toml:"max_name_length"`
	// MaxGroupLength is the longest group name accepted, in bytes.
	MaxGroupLength int `toml:"max_group_length"`
	// MaxGroups is how many groups one item may have.
	MaxGroups int `toml:"max_groups"`
	// SharedGroups are [groups] names whose members all see each other
	// (shared roster), kept in step every SharedInterval.
	SharedGroups []string `toml:"shared_groups"`
	// SharedInterval is how often shared rosters follow the groups.
	SharedInterval config.Duration `toml:"shared_interval"`
	// MaxSharedMembers bounds a shared group: every member gets an item
	// for every other, so a larger group is refused (logged) rather than
	// filling rosters with its square.
	MaxSharedMembers int `toml:"max_shared_members"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() *Config {
	return &Config{MaxItems: 1000, MaxPending: 100, MaxNameLength: 1023, MaxGroupLength: 1023, MaxGroups: 64,
		SharedGroups: []string{}, SharedInterval: config.Duration(time.Minute), MaxSharedMembers: 500}
}

// ValidateGroups checks that shared_groups names groups of [groups].
func (c *Config) ValidateGroups(groups map[string]string) error {
	for _, g := range c.SharedGroups {
		if _, ok := groups[g]; !ok {
			return &config.FieldError{Key: "shared_groups", Msg: fmt.Sprintf("group %q is not defined in [groups]", g)}
		}
	}
	return nil
}

// Validate checks the limits.
func (c *Config) Validate() error {
	switch {
	case c.MaxItems < 0:
		return errors.New("max_items must not be negative")
	case c.MaxPending < 0:
		return errors.New("max_pending must not be negative")
	case c.MaxNameLength < 1:
		return errors.New("max_name_length must be at least 1")
	case c.MaxGroupLength < 1:
		return errors.New("max_group_length must be at least 1")
	case c.MaxGroups < 1:
		return errors.New("max_groups must be at least 1")
	case time.Duration(c.SharedInterval) < time.Second:
		return errors.New("shared_interval must be at least 1s")
	case c.MaxSharedMembers < 2:
		return errors.New("max_shared_members must be at least 2")
	}
	return nil
}

func init() {
	module.RegisterConfigured("roster", DefaultConfig, func(h *module.Host, c Config) (any, error) {
		return New(h, c)
	})
}

// Module is the roster, subscription and presence module.
type Module struct {
	router module.Router
	store  storage.Rosters
	log    *zap.Logger
	audit  *zap.Logger
	cfg    Config

	// locks serialize read-modify-write of one user's roster. A lock is
	// never held while a stanza is routed.
	locks [64]sync.Mutex

	mu       sync.Mutex
	sessions map[string]*sessState // by full JID

	// modules lists the host's modules, for SubscriptionObservers.
	modules func() []any

	sharedStop, sharedDone chan struct{} // the shared-roster loop; nil without shared_groups
	stopOnce               sync.Once
}

// sessState is what the module remembers of one session: whether its
// available presence was broadcast, and the entities it sent directed
// available presence to (RFC 6121 4.6).
type sessState struct {
	sess      module.Session
	available bool
	directed  map[string]jid.JID
}

var (
	_ module.IQHandlers      = (*Module)(nil)
	_ module.PresenceHandler = (*Module)(nil)
	_ module.SessionObserver = (*Module)(nil)
	_ module.StreamFeatures  = (*Module)(nil)
	_ module.Features        = (*Module)(nil)
)

// New builds the module on the host's router and store.
func New(h *module.Host, cfg Config) (*Module, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("roster: %w", err)
	}
	if h == nil || h.Router == nil || h.Store == nil {
		return nil, errors.New("roster: the host needs a router and a store")
	}
	if h.Config != nil {
		if err := cfg.ValidateGroups(h.Config.Groups); err != nil {
			return nil, fmt.Errorf("roster: %w", err)
		}
	}
	m := newModule(h.Router, h.Store, h.Log, h.Audit, cfg)
	m.modules = h.Modules
	return m, nil
}

// approved tells the SubscriptionObservers that owner granted subscriber
// a subscription to its presence.
func (m *Module) approved(ctx context.Context, owner, subscriber jid.JID) {
	if m.modules == nil {
		return
	}
	for _, mod := range m.modules() {
		if o, ok := mod.(module.SubscriptionObserver); ok {
			o.SubscriptionApproved(ctx, owner, subscriber)
		}
	}
}

func newModule(r module.Router, st storage.Rosters, log, audit *zap.Logger, cfg Config) *Module {
	if log == nil {
		log = zap.NewNop()
	}
	if audit == nil {
		audit = zap.NewNop()
	}
	return &Module{router: r, store: st, log: log, audit: audit, cfg: cfg, sessions: make(map[string]*sessState)}
}

// IQRoutes serves jabber:iq:roster on behalf of accounts.
func (m *Module) IQRoutes() []module.IQRoute {
	return []module.IQRoute{{Space: NSRoster, Local: "query", Scope: module.ScopeAccount, Handle: m.handleIQ}}
}

// SharedGroups returns the [groups] names of shared_groups, whose members
// all see each other. modules/filetransfer counts their members as
// contacts for file_transfer = "contacts" (filetransfer.SharedRoster).
func (m *Module) SharedGroups() []string { return m.cfg.SharedGroups }

// ServerFeatures advertises the roster protocol (registered disco feature
// "jabber:iq:roster"). Versioning and pre-approval are stream features.
func (m *Module) ServerFeatures() []string { return []string{NSRoster} }

// AccountFeatures returns none: the roster is served by the server.
func (m *Module) AccountFeatures() []string { return nil }

// StreamFeatures announces roster versioning (RFC 6121 2.6.1) and
// subscription pre-approval (RFC 6121 3.4.1) after authentication.
func (m *Module) StreamFeatures(authenticated bool) []*element.Element {
	if !authenticated {
		return nil
	}
	return []*element.Element{element.New(NSRosterVer, "ver"), element.New(NSPreApproval, "sub")}
}

// SessionStarted starts tracking a session.
func (m *Module) SessionStarted(_ context.Context, sess module.Session) {
	m.mu.Lock()
	m.sessions[sess.JID().String()] = &sessState{sess: sess}
	m.mu.Unlock()
}

// SessionEnded broadcasts unavailable presence for a session that was
// available (RFC 6121 4.5.2) and to the entities it sent directed presence
// to (4.6.3), then forgets it.
func (m *Module) SessionEnded(ctx context.Context, sess module.Session) {
	key := sess.JID().String()
	m.mu.Lock()
	ss := m.sessions[key]
	if ss == nil || ss.sess != sess {
		// Never tracked, or replaced by a newer session on the same
		// resource: that one's presence stands.
		m.mu.Unlock()
		return
	}
	delete(m.sessions, key)
	avail, directed := ss.available, ss.directed
	m.mu.Unlock()
	st := stanza.New(stanza.Presence, sess.JID(), jid.JID{}, "unavailable", "")
	m.broadcastUnavailable(ctx, sess, st, avail, directed)
}

// lock takes the roster lock of a user and returns its release.
func (m *Module) lock(user string) func() {
	h := fnv.New32a()
	h.Write([]byte(user))
	l := &m.locks[h.Sum32()%uint32(len(m.locks))]
	l.Lock()
	return l.Unlock
}

// op is what a modification does to the stored item.
type op uint8

const (
	opKeep op = iota
	opPut
	opDelete
)

// change is the outcome of modify.
type change struct {
	old, new storage.RosterItem
	existed  bool
	op       op
	ver      string
}

// errRosterFull is returned by modify when a new item would exceed MaxItems.
var errRosterFull = errors.New("roster: roster size limit reached")

// modify runs f on the user's item for contact under the user's roster lock
// and stores what f decides. f gets a copy of the item (a new one with
// only JID set when it does not exist) and may change it. The write is
// durable when modify returns.
func (m *Module) modify(ctx context.Context, user, contact string, f func(it *storage.RosterItem, existed bool) op) (change, error) {
	unlock := m.lock(user)
	defer unlock()
	var c change
	it, err := m.store.Item(ctx, user, contact)
	switch {
	case err == nil:
		c.existed = true
	case errors.Is(err, storage.ErrNotFound):
		it = storage.RosterItem{JID: contact, Subscription: storage.SubNone}
	default:
		return c, fmt.Errorf("roster: read item %s of %s: %w", contact, user, err)
	}
	c.old = it
	n := it
	n.Groups = append([]string(nil), it.Groups...)
	c.op = f(&n, c.existed)
	c.new = n
	switch c.op {
	case opPut:
		// Shared-roster items are the server's, bounded by
		// max_shared_members: they do not count against max_items.
		if !c.existed && n.Shared == "" {
			if err := m.checkSize(ctx, user, hidden(n)); err != nil {
				return c, err
			}
		}
		c.ver, err = m.store.PutItem(ctx, user, n)
		if err != nil {
			return c, fmt.Errorf("roster: store item %s of %s: %w", contact, user, err)
		}
	case opDelete:
		if !c.existed {
			c.op = opKeep
			return c, nil
		}
		c.ver, err = m.store.DeleteItem(ctx, user, contact)
		if err != nil {
			return c, fmt.Errorf("roster: delete item %s of %s: %w", contact, user, err)
		}
	}
	return c, nil
}

// checkSize returns errRosterFull when the user may not get one more item
// of the kind (listed, or hidden pending request).
func (m *Module) checkSize(ctx context.Context, user string, isHidden bool) error {
	limit := m.cfg.MaxItems
	if isHidden {
		limit = m.cfg.MaxPending
	}
	if limit <= 0 {
		return nil
	}
	items, _, err := m.store.Roster(ctx, user)
	if err != nil {
		return fmt.Errorf("roster: read roster of %s: %w", user, err)
	}
	n := 0
	for _, it := range items {
		if hidden(it) == isHidden && it.Shared == "" {
			n++
		}
	}
	if n >= limit {
		return errRosterFull
	}
	return nil
}

// hidden reports whether an item is one the server created to hold a subscription
// request from an entity the user never added (storage.RosterItem.Hidden).
// Such items are left out of roster results and pushes (the "None + Pending
// In" state is not shown, RFC 6121 3.1.3; the request itself is delivered
// as presence). The first action of the user on the item (roster set,
// subscribe, subscribed) lists it.
func hidden(it storage.RosterItem) bool { return it.Hidden }

// unhide lists an item.
func unhide(it *storage.RosterItem) { it.Hidden = false }

// unused reports whether an item holds no subscription state at all.
func unused(it storage.RosterItem) bool {
	return it.Subscription == storage.SubNone && !it.Ask && !it.PendingIn && !it.Approved
}

// view is the item as the user's clients see it ("" when not shown).
func view(it storage.RosterItem, exists bool) string {
	if !exists || hidden(it) {
		return ""
	}
	return itemElement(it).String()
}

// pushChange sends a roster push for c when what the user's clients see
// changed, or always when force is set (a roster set).
func (m *Module) pushChange(user jid.JID, c change, force bool) {
	if c.op == opKeep {
		return
	}
	before := view(c.old, c.existed)
	after := view(c.new, c.op == opPut)
	if before == after && !force {
		return
	}
	if after == "" && c.op == opDelete {
		m.push(user, c.ver, removedElement(c.old.JID))
		return
	}
	if after == "" && !force {
		return
	}
	m.push(user, c.ver, itemElement(c.new))
}

// push sends a roster push (RFC 6121 2.1.6) to every interested resource.
func (m *Module) push(user jid.JID, ver string, item *element.Element) {
	for _, s := range m.router.Sessions(user) {
		if !s.RosterRequested() {
			continue
		}
		iq := stanza.New(stanza.IQ, jid.JID{}, s.JID(), "set", newID())
		q := element.New(NSRoster, "query", element.A("ver", ver))
		q.Append(item)
		iq.El.Append(q)
		s.Send(iq)
	}
}

// itemElement renders a roster item (RFC 6121 2.1.2).
func itemElement(it storage.RosterItem) *element.Element {
	sub := it.Subscription
	if sub == "" {
		sub = storage.SubNone
	}
	el := element.New(NSRoster, "item", element.A("jid", it.JID))
	if it.Name != "" {
		el.SetAttr("name", it.Name)
	}
	el.SetAttr("subscription", string(sub))
	if it.Ask {
		el.SetAttr("ask", "subscribe")
	}
	if it.Approved {
		el.SetAttr("approved", "true")
	}
	for _, g := range it.Groups {
		el.Append(element.New(NSRoster, "group").SetText(g))
	}
	return el
}

// removedElement is the item of a push for a deleted item (RFC 6121 2.5.2).
func removedElement(contact string) *element.Element {
	return element.New(NSRoster, "item", element.A("jid", contact), element.A("subscription", string(storage.SubRemove)))
}

// newID returns a random stanza id.
func newID() string {
	var b [9]byte
	_, _ = rand.Read(b[:])
	return "r" + hex.EncodeToString(b[:])
}

// serialize renders a stanza for storage.
func serialize(st *stanza.Stanza) []byte {
	return st.El.AppendTo(nil, stanza.NSClient)
}

// deserialize parses a stored stanza.
func deserialize(b []byte) (*stanza.Stanza, error) {
	el, err := element.Parse(b, stanza.NSClient)
	if err != nil {
		return nil, fmt.Errorf("roster: parse stored stanza: %w", err)
	}
	return stanza.Parse(el)
}
