// Package offline implements XEP-0160 Best Practices for Handling Offline
// Messages: messages for an account without an available resource are
// stored with an XEP-0203 <delay/> stamp and delivered when a resource
// sends initial presence with a non-negative priority.
//
// It registers the module "offline", the server's module.OfflineStore. The
// per-account quota is limits.max_offline_messages messages and
// limits.max_offline_bytes bytes: past either the message is not stored
// and its sender gets service-unavailable with a text naming the quota
// (XEP-0160 section 3, RFC 6121 section 8.5.2.1.1). The refusals are
// logged once a minute per account, with a count of those in between. XEP-0334 hints are
// honoured: <no-store/> keeps a message out of offline storage, <store/>
// keeps one that would otherwise not be stored.
package offline

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"sync"
	"time"

	"github.com/palisade-im/palisade/server/element"
	"github.com/palisade-im/palisade/server/module"
	"github.com/palisade-im/palisade/server/stanza"
	"github.com/palisade-im/palisade/storage"
	"go.uber.org/zap"
)

// Namespaces.
const (
	// NSHints is the XEP-0334 Message Processing Hints namespace.
	NSHints = "urn:xmpp:hints"
	// NSChatStates is the XEP-0085 Chat State Notifications namespace.
	NSChatStates = "http://jabber.org/protocol/chatstates"
	// NSStanzaID is the XEP-0359 Unique and Stable Stanza IDs namespace.
	NSStanzaID = "urn:xmpp:sid:0"
	// Feature is the XEP-0160 service discovery feature.
	Feature = "msgoffline"
)

func init() {
	module.Register(module.Info{
		Name: "offline",
		New: func(h *module.Host, _ any) (any, error) {
			var q Quota
			if h.Config != nil {
				q = Quota{Messages: h.Config.Limits.MaxOfflineMessages, Bytes: h.Config.Limits.MaxOfflineBytes}
			}
			return NewWithQuota(h.Store, h.Log, q, time.Now), nil
		},
	})
}

// Quota bounds one account's offline messages (0: no limit): how many
// (limits.max_offline_messages) and how many bytes, serialized as
// stored (limits.max_offline_bytes).
type Quota struct {
	Messages int
	Bytes    int
}

// fullLogEvery is how often one account's "offline storage full" is
// logged; the refusals between two lines are counted in the second.
const fullLogEvery = time.Minute

// maxFullLogged bounds the accounts whose last "storage full" line is
// remembered.
const maxFullLogged = 4096

// Module stores and delivers offline messages.
type Module struct {
	store storage.Offline
	log   *zap.Logger
	quota Quota
	now   func() time.Time

	fullMu sync.Mutex
	full   map[string]*fullState // by account, for the storage-full log line

	// locks serialize delivery per account, so that two resources coming
	// online together do not both get the same messages.
	locks [64]sync.Mutex
}

var (
	_ module.OfflineStore     = (*Module)(nil)
	_ module.PresenceObserver = (*Module)(nil)
	_ module.Features         = (*Module)(nil)
)

// fullState is when an account's storage-full line was last logged and
// how many refusals have not been logged since.
type fullState struct {
	logged     time.Time
	suppressed int
}

// New builds the module with a quota of max messages per account (0:
// none) and no byte quota; now is the clock for delay stamps.
func New(store storage.Offline, log *zap.Logger, max int, now func() time.Time) *Module {
	return NewWithQuota(store, log, Quota{Messages: max}, now)
}

// NewWithQuota builds the module with the per-account quota q; now is the
// clock for delay stamps.
func NewWithQuota(store storage.Offline, log *zap.Logger, q Quota, now func() time.Time) *Module {
	return &Module{store: store, log: log, quota: q, now: now, full: map[string]*fullState{}}
}

// ServerFeatures implements module.Features.
func (m *Module) ServerFeatures() []string { return []string{Feature} }

// AccountFeatures implements module.Features.
func (m *Module) AccountFeatures() []string { return nil }

// Storable reports whether a message is kept offline (XEP-0160 section 3,
// XEP-0334): of type normal or chat; not hinted <no-store/>; with a body,
// a <store/> hint, or some payload other than a chat state, a thread, a
// stanza ID or a delay (a bare chat state notification is not stored,
// XEP-0085).
func Storable(st *stanza.Stanza) bool {
	if st.Kind != stanza.Message {
		return false
	}
	switch st.Type {
	case "", "normal", "chat":
	default:
		return false
	}
	el := st.El
	if el.Child(NSHints, "no-store") != nil {
		return false
	}
	if el.Child(NSHints, "store") != nil || el.Child(stanza.NSClient, "body") != nil {
		return true
	}
	for _, c := range el.Elements() {
		switch {
		case c.Space == NSChatStates, c.Space == NSHints, c.Space == NSStanzaID, c.Space == stanza.NSDelay:
		case c.Space == stanza.NSClient && c.Local == "thread":
		default:
			return true
		}
	}
	return false
}

// StoreOffline implements module.OfflineStore. Messages that are not
// Storable are dropped silently; over the quota the sender gets
// service-unavailable (XEP-0160 section 3).
func (m *Module) StoreOffline(ctx context.Context, st *stanza.Stanza) error {
	user := st.To.Bare()
	if !Storable(st) {
		m.log.Debug("offline message not stored", zap.String("to", user.String()), zap.String("type", st.Type))
		return nil
	}
	stamp := m.now().UTC()
	c := st.Copy()
	if !hasDelay(c.El, user.Domainpart()) {
		c.El.Append(element.New(stanza.NSDelay, "delay",
			element.A("from", user.Domainpart()),
			element.A("stamp", stamp.Format("2006-01-02T15:04:05Z")),
		).SetText("Offline Storage"))
	}
	err := m.store.Store(ctx, user.String(), []byte(c.El.String()), stamp, m.quota.Messages, m.quota.Bytes)
	if errors.Is(err, storage.ErrQuota) {
		text := "offline storage is full"
		var qe *storage.QuotaError
		if errors.As(err, &qe) {
			if qe.Quota == storage.QuotaBytes {
				text = fmt.Sprintf("offline storage is full: an account may hold %d bytes of offline messages (limits.max_offline_bytes)", qe.Limit)
			} else {
				text = fmt.Sprintf("offline storage is full: an account may hold %d offline messages (limits.max_offline_messages)", qe.Limit)
			}
		}
		m.logFull(user.String(), text, stamp)
		return stanza.Err(stanza.Cancel, stanza.ServiceUnavailable, text)
	}
	if err != nil {
		return fmt.Errorf("offline: store for %s: %w", user, err)
	}
	m.log.Debug("offline message stored", zap.String("to", user.String()))
	return nil
}

// logFull logs a refusal for a full account at most once per
// fullLogEvery, with the number of refusals left unlogged since the
// previous line.
func (m *Module) logFull(user, text string, now time.Time) {
	m.fullMu.Lock()
	st := m.full[user]
	if st != nil && now.Sub(st.logged) < fullLogEvery {
		st.suppressed++
		m.fullMu.Unlock()
		return
	}
	suppressed := 0
	if st != nil {
		suppressed = st.suppressed
		st.logged, st.suppressed = now, 0
	} else {
		if len(m.full) >= maxFullLogged {
			for k, v := range m.full {
				if now.Sub(v.logged) >= fullLogEvery {
					delete(m.full, k)
				}
			}
		}
		if len(m.full) < maxFullLogged {
			m.full[user] = &fullState{logged: now}
		}
	}
	m.fullMu.Unlock()
	m.log.Info("offline storage full", zap.String("to", user), zap.String("reason", text),
		zap.Int("suppressed", suppressed), zap.Duration("every", fullLogEvery))
}

// hasDelay reports whether el already carries a <delay/> from domain (a
// message rerouted after XEP-0198 resumption failed).
func hasDelay(el *element.Element, domain string) bool {
	for _, c := range el.Elements() {
		if c.Space == stanza.NSDelay && c.Local == "delay" && c.Attr("from") == domain {
			return true
		}
	}
	return false
}

// InitialPresence implements module.PresenceObserver: a session that sent
// initial presence with a non-negative priority gets the stored messages,
// in order, and they are deleted once handed to it (XEP-0160 section 3).
func (m *Module) InitialPresence(ctx context.Context, sess module.Session) {
	if sess.Priority() < 0 {
		return
	}
	user := sess.JID().Bare().String()
	mu := m.lockFor(user)
	mu.Lock()
	defer mu.Unlock()
	msgs, err := m.store.Pending(ctx, user)
	if err != nil {
		m.log.Error("offline messages unavailable", zap.String("user", user), zap.Error(err))
		return
	}
	if len(msgs) == 0 {
		return
	}
	ids := make([]int64, 0, len(msgs))
	for _, msg := range msgs {
		st, err := parseStanza(msg.Stanza)
		if err != nil {
			// Unreadable: it could never be delivered; drop it.
			m.log.Error("dropping unreadable offline message", zap.String("user", user), zap.Int64("id", msg.ID), zap.Error(err))
		} else {
			sess.Send(st)
		}
		ids = append(ids, msg.ID)
	}
	if err := m.store.Delete(ctx, user, ids); err != nil {
		m.log.Error("offline messages delivered but not deleted", zap.String("user", user), zap.Int("count", len(ids)), zap.Error(err))
		return
	}
	m.log.Debug("offline messages delivered", zap.String("to", sess.JID().String()), zap.Int("count", len(ids)))
}

func (m *Module) lockFor(user string) *sync.Mutex {
	h := fnv.New32a()
	h.Write([]byte(user))
	return &m.locks[h.Sum32()%uint32(len(m.locks))]
}

// parseStanza reads a stored message.
func parseStanza(b []byte) (*stanza.Stanza, error) {
	el, err := element.Parse(b, stanza.NSClient)
	if err != nil {
		return nil, err
	}
	st, err := stanza.Parse(el)
	if err != nil {
		return nil, err
	}
	if st.Kind != stanza.Message {
		return nil, errors.New("offline: stored stanza is not a message")
	}
	return st, nil
}
