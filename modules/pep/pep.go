// Package pep implements XEP-0163 Personal Eventing Protocol: every account
// is a virtual pubsub service on its bare JID, built on the part of
// XEP-0060 Publish-Subscribe that PEP clients use (publish with
// auto-create and XEP-0223 publish-options, item retrieval, retraction,
// node configuration and deletion) and on XEP-0115 entity capabilities for
// filtered notifications ("NODE+notify").
//
// It registers the module "pep". Nodes and items live in storage.PubSub.
// Notifications are headline messages from the owner's bare JID to the
// owner's available resources and to the contacts with a presence
// subscription (from or both) whose resources announce interest, sent on
// publish and retract and, for the last published items, when such a
// resource becomes available (XEP-0163 section 4.3).
package pep

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"sync"

	"github.com/palisade-im/palisade/modules/disco"
	"github.com/palisade-im/palisade/server/config"
	"github.com/palisade-im/palisade/server/module"
	"github.com/palisade-im/palisade/server/stanza"
	"github.com/palisade-im/palisade/storage"
	"go.uber.org/zap"
	"mellium.im/xmpp/jid"
)

// Namespaces (XEP-0060 section 16.2).
const (
	NSPubSub        = "http://jabber.org/protocol/pubsub"
	NSOwner         = "http://jabber.org/protocol/pubsub#owner"
	NSEvent         = "http://jabber.org/protocol/pubsub#event"
	NSErrors        = "http://jabber.org/protocol/pubsub#errors"
	NSNodeConfig    = "http://jabber.org/protocol/pubsub#node_config"
	NSPublishOption = "http://jabber.org/protocol/pubsub#publish-options"
	NSData          = "jabber:x:data"
	NSCaps          = "http://jabber.org/protocol/caps"
)

// Config is the [modules.pep] section.
type Config struct {
	// MaxItems is the largest pubsub#max_items a node may have; "max"
	// means this value.
	MaxItems int `toml:"max_items"`
	// MaxNodes is how many nodes one account may have.
	MaxNodes int `toml:"max_nodes"`
	// MaxPayloadBytes is the largest item payload accepted, serialized.
	MaxPayloadBytes int `toml:"max_payload_bytes"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() *Config {
	return &Config{MaxItems: 1000, MaxNodes: 256, MaxPayloadBytes: 196608}
}

// Validate checks the limits.
func (c *Config) Validate() error {
	switch {
	case c.MaxItems < 1:
		return errors.New("max_items must be at least 1")
	case c.MaxNodes < 1:
		return errors.New("max_nodes must be at least 1")
	case c.MaxPayloadBytes < 1:
		return errors.New("max_payload_bytes must be at least 1")
	}
	return nil
}

// Limits are the [limits] bounds the module applies besides its own
// section: answers and notifications stay within MaxStanzaBytes, and
// each account's service within MaxNodes nodes (the smaller of this and
// Config.MaxNodes), MaxNodeBytes payload bytes per node and MaxBytes
// payload bytes in all (0: no limit).
type Limits struct {
	MaxStanzaBytes int
	MaxNodes       int
	MaxNodeBytes   int
	MaxBytes       int
}

// LimitsOf returns the module's bounds from the server configuration.
func LimitsOf(l config.Limits) Limits {
	return Limits{MaxStanzaBytes: l.MaxStanzaBytes, MaxNodes: l.MaxPEPNodes, MaxNodeBytes: l.MaxPEPNodeBytes, MaxBytes: l.MaxPEPBytes}
}

func init() {
	module.RegisterConfigured("pep", DefaultConfig, func(h *module.Host, c Config) (any, error) {
		return New(h, c)
	})
}

// Store is what the module needs from storage.
type Store interface {
	storage.PubSub
	storage.Rosters
	storage.Blocklists
}

// Module is the PEP service of every local account.
type Module struct {
	router module.Router
	req    module.Requester // nil: capabilities are never queried
	store  Store
	log    *zap.Logger
	audit  *zap.Logger // policy denials (readonly.go); nil: none
	cfg    Config
	lim    Limits

	// locks serialize the writes to one owner's service, so that a
	// publish-options precondition holds until the item is stored.
	locks [64]sync.Mutex

	caps *capsCache

	mu       sync.Mutex
	sessions map[string]*sessState // by full JID
	// bookmarksChecked holds the bare JIDs whose bookmark views were
	// checked at a login of this run (migrateBookmarks): after that the
	// write paths keep them in step, so later logins read nothing.
	bookmarksChecked sync.Map

	ctx    context.Context // ends at Stop; background capability queries
	cancel context.CancelFunc
	wg     sync.WaitGroup
	sem    chan struct{} // bounds concurrent capability queries
}

var (
	_ module.IQHandlers           = (*Module)(nil)
	_ module.Features             = (*Module)(nil)
	_ module.BroadcastObserver    = (*Module)(nil)
	_ module.SessionObserver      = (*Module)(nil)
	_ module.SubscriptionObserver = (*Module)(nil)
	_ module.Stopper              = (*Module)(nil)
	_ disco.AccountIdentities     = (*Module)(nil)
	_ disco.AccountItems          = (*Module)(nil)
)

// New builds the module on the host's router and store.
func New(h *module.Host, cfg Config) (*Module, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("pep: %w", err)
	}
	if h == nil || h.Router == nil || h.Store == nil {
		return nil, errors.New("pep: the host needs a router and a store")
	}
	log := h.Log
	if log == nil {
		log = zap.NewNop()
	}
	lim := LimitsOf(config.Default().Limits)
	if h.Config != nil {
		lim = LimitsOf(h.Config.Limits)
	}
	m := newModule(h.Router, h.Store, log.Named("pep"), cfg, lim)
	m.audit = h.Audit
	return m, nil
}

func newModule(r module.Router, st Store, log *zap.Logger, cfg Config, lim Limits) *Module {
	ctx, cancel := context.WithCancel(context.Background())
	m := &Module{
		router: r, store: st, log: log, cfg: cfg, lim: lim,
		caps:     newCapsCache(capsCacheSize),
		sessions: map[string]*sessState{},
		ctx:      ctx, cancel: cancel,
		sem: make(chan struct{}, maxCapsQueries),
	}
	if q, ok := r.(module.Requester); ok {
		m.req = q
	} else {
		log.Warn("the router cannot send requests: entity capabilities are not queried, only owners get notifications")
	}
	return m
}

// Stop ends the background capability queries.
func (m *Module) Stop(context.Context) error {
	m.cancel()
	m.wg.Wait()
	return nil
}

// IQRoutes serves pubsub and pubsub#owner on every account's bare JID.
func (m *Module) IQRoutes() []module.IQRoute {
	return []module.IQRoute{
		{Space: NSPubSub, Local: "pubsub", Scope: module.ScopeAccount, Handle: m.handlePubSub},
		{Space: NSOwner, Local: "pubsub", Scope: module.ScopeAccount, Handle: m.handleOwner},
	}
}

// ServerFeatures returns none: PEP lives on the accounts.
func (m *Module) ServerFeatures() []string { return nil }

// AccountFeatures lists the XEP-0060 features implemented (section 10).
func (m *Module) AccountFeatures() []string {
	var out []string
	for _, f := range []string{
		"access-open", "access-presence", "access-roster", "access-whitelist",
		"auto-create", "auto-subscribe", "config-node", "config-node-max", "create-and-configure",
		"create-nodes", "delete-items", "delete-nodes", "filtered-notifications", "item-ids",
		"last-published", "multi-items", "persistent-items", "presence-notifications", "publish",
		"publish-options", "retract-items", "retrieve-default", "retrieve-items", "subscribe",
	} {
		out = append(out, NSPubSub+"#"+f)
	}
	// Item retrieval pages with XEP-0059 (section 8 of it asks for the
	// feature).
	return append(append(out, NSRSM), bookmarkFeatures...)
}

// AccountIdentities adds pubsub/pep (XEP-0163 section 6.1).
func (m *Module) AccountIdentities() []disco.Identity {
	return []disco.Identity{{Category: "pubsub", Type: "pep"}}
}

// AccountItems lists the nodes of account that requester may read.
func (m *Module) AccountItems(ctx context.Context, account, requester jid.JID) ([]disco.Item, error) {
	nodes, err := m.store.Nodes(ctx, account.String())
	if err != nil {
		return nil, fmt.Errorf("pep: nodes of %s: %w", account, err)
	}
	var out []disco.Item
	for _, n := range nodes {
		denied, err := m.mayRead(ctx, account, requester.Bare(), n.Config)
		if err != nil {
			return nil, err
		}
		if denied == nil {
			out = append(out, disco.Item{JID: account.String(), Node: n.Name})
		}
	}
	return out, nil
}

// quota is the storage quota of one account's service.
func (m *Module) quota() storage.PubSubQuota {
	nodes := m.cfg.MaxNodes
	if m.lim.MaxNodes > 0 {
		nodes = min(nodes, m.lim.MaxNodes)
	}
	return storage.PubSubQuota{MaxNodes: nodes, MaxNodeBytes: m.lim.MaxNodeBytes, MaxBytes: m.lim.MaxBytes}
}

// quotaErr turns a *storage.QuotaError into the XEP-0060 error naming the
// limit: too many nodes is not-allowed with max-nodes-exceeded (section
// 7.1.3 and 8.1.3 leave it to the service; XEP-0060 lists the condition),
// too many bytes is not-acceptable with payload-too-big (7.1.3.4). Any
// other error is nil.
func (m *Module) quotaErr(err error) *stanza.Error {
	var qe *storage.QuotaError
	if !errors.As(err, &qe) {
		if errors.Is(err, storage.ErrQuota) {
			return pubsubErr(stanza.Cancel, stanza.NotAllowed, "max-nodes-exceeded")
		}
		return nil
	}
	var e *stanza.Error
	switch qe.Quota {
	case storage.QuotaCount:
		e = pubsubErr(stanza.Cancel, stanza.NotAllowed, "max-nodes-exceeded")
		key := "modules.pep max_nodes"
		if m.lim.MaxNodes > 0 && m.lim.MaxNodes < m.cfg.MaxNodes {
			key = "limits.max_pep_nodes"
		}
		e.Text = fmt.Sprintf("node quota reached: an account may have %d nodes (%s)", qe.Limit, key)
	case storage.QuotaNodeBytes:
		e = pubsubErr(stanza.Modify, stanza.NotAcceptable, "payload-too-big")
		e.Text = fmt.Sprintf("node quota reached: the items of one node may hold %d bytes (limits.max_pep_node_bytes); retract items or publish less", qe.Limit)
	default:
		e = pubsubErr(stanza.Modify, stanza.NotAcceptable, "payload-too-big")
		e.Text = fmt.Sprintf("PEP storage quota reached: an account's items may hold %d bytes (limits.max_pep_bytes); retract items or publish less", qe.Limit)
	}
	return e
}

// lock takes the write lock of an owner's service.
func (m *Module) lock(owner string) func() {
	h := fnv.New32a()
	h.Write([]byte(owner))
	l := &m.locks[h.Sum32()%uint32(len(m.locks))]
	l.Lock()
	return l.Unlock
}

// newID returns a random id for items and notifications.
func newID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
