// Package private implements XEP-0049 Private XML Storage
// (jabber:iq:private): an account's owner stores and retrieves XML
// fragments, each keyed by its root element's namespace and name. Each
// account may store limits.max_private_items namespaces holding
// limits.max_private_bytes bytes together; past either a set is refused
// with not-acceptable and a text naming the quota, and stores nothing.
//
// It registers the module "private". Fragments are kept in
// storage.Private under the key "NAMESPACE NAME" (a space between).
package private

import (
	"context"
	"errors"
	"fmt"

	"github.com/palisade-im/palisade/modules/vcard"
	"github.com/palisade-im/palisade/server/config"
	"github.com/palisade-im/palisade/server/element"
	"github.com/palisade-im/palisade/server/module"
	"github.com/palisade-im/palisade/server/stanza"
	"github.com/palisade-im/palisade/storage"
	"go.uber.org/zap"
)

// NS is the jabber:iq:private namespace.
const NS = "jabber:iq:private"

// Config is the [modules.private] section.
type Config struct {
	// MaxBytes is the largest serialized fragment accepted.
	MaxBytes int `toml:"max_bytes"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() *Config { return &Config{MaxBytes: 65536} }

// Validate checks the limits.
func (c *Config) Validate() error {
	if c.MaxBytes < 1 {
		return errors.New("max_bytes must be at least 1")
	}
	return nil
}

func init() {
	module.RegisterConfigured("private", DefaultConfig, func(h *module.Host, c Config) (any, error) {
		lim := config.Default().Limits
		if h.Config != nil {
			lim = h.Config.Limits
		}
		m, err := New(h.Store, h.Log, c, Quota{MaxItems: lim.MaxPrivateItems, MaxBytes: lim.MaxPrivateBytes})
		if err != nil {
			return nil, err
		}
		m.peers = h.Modules // for BookmarkSync (bookmarks.go)
		return m, nil
	})
}

// Quota is the per-account bound of private storage ([limits]
// max_private_items and max_private_bytes; 0: no limit): how many
// namespaces an account may store and how many bytes they may hold
// together, serialized. The vCard, kept in the same store, does not
// count (limits.max_vcard_bytes bounds it).
type Quota struct {
	MaxItems int
	MaxBytes int
}

// Module stores private XML.
type Module struct {
	store storage.Private
	log   *zap.Logger
	cfg   Config
	quota Quota
	peers func() []any // the host's modules; nil: no bookmark conversion
}

var (
	_ module.IQHandlers = (*Module)(nil)
	_ module.Features   = (*Module)(nil)
)

// New builds the module.
func New(store storage.Private, log *zap.Logger, cfg Config, q Quota) (*Module, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("private: %w", err)
	}
	return &Module{store: store, log: log, cfg: cfg, quota: q}, nil
}

// IQRoutes implements module.IQHandlers.
func (m *Module) IQRoutes() []module.IQRoute {
	return []module.IQRoute{{Space: NS, Local: "query", Scope: module.ScopeAccount, Handle: m.handle}}
}

// ServerFeatures implements module.Features.
func (m *Module) ServerFeatures() []string { return []string{NS} }

// AccountFeatures implements module.Features.
func (m *Module) AccountFeatures() []string { return nil }

// Key returns the storage key of a fragment.
func Key(el *element.Element) string { return el.Space + " " + el.Local }

func (m *Module) handle(ctx context.Context, _ module.Session, iq *stanza.Stanza) (*element.Element, error) {
	if !iq.From.Bare().Equal(iq.To.Bare()) {
		// XEP-0049 section 2.3: another user's data.
		return nil, stanza.Err(stanza.Auth, stanza.Forbidden, "private data belongs to its owner only")
	}
	user := iq.To.Bare().String()
	children := iq.Payload().Elements()
	if len(children) == 0 {
		return nil, stanza.Err(stanza.Modify, stanza.NotAcceptable, "the query must contain a namespaced child element")
	}
	for _, c := range children {
		if reserved(c.Space) {
			return nil, stanza.Err(stanza.Modify, stanza.NotAcceptable, fmt.Sprintf("namespace %q cannot be stored", c.Space))
		}
	}
	switch iq.Type {
	case "get":
		if len(children) != 1 {
			return nil, stanza.Err(stanza.Modify, stanza.BadRequest, "query one element at a time")
		}
		return m.get(ctx, user, children[0])
	case "set":
		return nil, m.set(ctx, user, children)
	}
	return nil, stanza.Err(stanza.Modify, stanza.BadRequest, "")
}

// reserved reports namespaces a fragment may not have: none (it would
// inherit jabber:iq:private) and the stanza namespaces.
func reserved(space string) bool {
	switch space {
	case "", NS, stanza.NSClient, stanza.NSServer:
		return true
	}
	return false
}

// get returns the stored fragment, or the requested element empty.
func (m *Module) get(ctx context.Context, user string, want *element.Element) (*element.Element, error) {
	q := element.New(NS, "query")
	data, err := m.store.GetPrivate(ctx, user, Key(want))
	if errors.Is(err, storage.ErrNotFound) {
		return q.Append(element.New(want.Space, want.Local)), nil
	}
	if err != nil {
		return nil, fmt.Errorf("private: load %s: %w", user, err)
	}
	el, err := parseElement(data)
	if err != nil || Key(el) != Key(want) {
		m.log.Error("stored private data is unreadable", zap.String("user", user), zap.String("key", Key(want)), zap.Error(err))
		return nil, fmt.Errorf("private: stored data of %s is unreadable: %v", user, err)
	}
	return q.Append(el), nil
}

// set stores every fragment, or none: an empty element deletes its key,
// and a request that would take the account past its quota is refused
// with not-acceptable (a fragment replacing its namespace's counts with
// its new size only).
func (m *Module) set(ctx context.Context, user string, children []*element.Element) error {
	entries := make([]storage.PrivateEntry, len(children))
	for i, c := range children {
		entries[i].Key = Key(c)
		if len(c.Nodes) == 0 && len(c.Attrs) == 0 {
			continue
		}
		entries[i].Data = []byte(c.String())
		if len(entries[i].Data) > m.cfg.MaxBytes {
			return stanza.Err(stanza.Modify, stanza.NotAcceptable,
				fmt.Sprintf("the element is larger than %d bytes", m.cfg.MaxBytes))
		}
	}
	q := storage.PrivateQuota{MaxItems: m.quota.MaxItems, MaxBytes: m.quota.MaxBytes, Exempt: []string{vcard.StorageKey}}
	err := m.store.PutPrivate(ctx, user, entries, q)
	var qe *storage.QuotaError
	if errors.As(err, &qe) {
		m.log.Debug("private storage full", zap.String("user", user), zap.String("quota", qe.Quota), zap.Int("limit", qe.Limit))
		text := fmt.Sprintf("private storage is full: an account may store %d bytes (limits.max_private_bytes)", qe.Limit)
		if qe.Quota == storage.QuotaCount {
			text = fmt.Sprintf("private storage is full: an account may store %d namespaces (limits.max_private_items)", qe.Limit)
		}
		return stanza.Err(stanza.Modify, stanza.NotAcceptable, text)
	}
	if err != nil {
		return fmt.Errorf("private: store %s: %w", user, err)
	}
	m.log.Debug("private data stored", zap.String("user", user), zap.Int("elements", len(children)))
	m.bookmarksStored(ctx, user, children)
	return nil
}

// parseElement reads one serialized element.
func parseElement(b []byte) (*element.Element, error) {
	return element.Parse(b, "")
}
