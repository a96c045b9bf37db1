package pep

import (
	"context"
	"slices"
	"time"

	"github.com/palisade-im/palisade/server/element"
	"github.com/palisade-im/palisade/server/module"
	"github.com/palisade-im/palisade/server/stanza"
	"github.com/palisade-im/palisade/storage"
	"go.uber.org/zap"
	"mellium.im/xmpp/jid"
)

// eventMessage builds a notification (XEP-0060 section 7.1.2.1) from the
// owner's bare JID (XEP-0163 section 4.3.1) carrying child inside <event/>.
func eventMessage(owner jid.JID, child *element.Element) *stanza.Stanza {
	st := stanza.New(stanza.Message, owner, jid.JID{}, "headline", newID())
	st.El.Append(element.New(NSEvent, "event").Append(child))
	return st
}

// deliverable reports whether sess should get notifications at all: an
// available resource with non-negative priority (XEP-0163 section 4.3.2).
func deliverable(sess module.Session) bool {
	return sess.Available() && sess.Priority() >= 0
}

// recipients are the sessions to notify of an event on an owner's node:
// the owner's resources and those of the contacts that may read the node
// and share presence with the owner, each only where the client asked for
// the node's notifications (filtered notifications, XEP-0060 section 9.2).
func (m *Module) recipients(ctx context.Context, owner jid.JID, node string, cfg storage.NodeConfig) []module.Session {
	var out []module.Session
	for _, s := range m.router.Sessions(owner) {
		if deliverable(s) && m.interested(s, node) {
			out = append(out, s)
		}
	}
	out = append(out, m.subscribed(ctx, owner, node, cfg, out)...)
	if cfg.AccessModel == storage.AccessWhitelist {
		return out
	}
	have := map[module.Session]bool{}
	for _, s := range out {
		have[s] = true
	}
	items, _, err := m.store.Roster(ctx, owner.String())
	if err != nil {
		m.log.Error("notify: read roster", zap.String("owner", owner.String()), zap.Error(err))
		return out
	}
	var block []string
	for _, it := range items {
		if !subscribed(it) {
			continue
		}
		contact, err := jid.Parse(it.JID)
		if err != nil || !m.router.IsLocal(contact.Domainpart()) || contact.Bare().Equal(owner) {
			continue
		}
		sessions := m.router.Sessions(contact.Bare())
		if len(sessions) == 0 {
			continue
		}
		if contactAccess(cfg, it, true) != nil {
			continue
		}
		if block == nil {
			if block, err = m.store.Blocked(ctx, owner.String()); err != nil {
				m.log.Error("notify: read block list", zap.String("owner", owner.String()), zap.Error(err))
				return out
			}
			if block == nil {
				block = []string{}
			}
		}
		for _, s := range sessions {
			if deliverable(s) && m.interested(s, node) && !blocked(block, s.JID()) && !have[s] {
				out = append(out, s)
			}
		}
	}
	return out
}

// subscribed returns the sessions of the node's explicit subscribers
// that may read it, except those in already (XEP-0060 section 6.1).
func (m *Module) subscribed(ctx context.Context, owner jid.JID, node string, cfg storage.NodeConfig, already []module.Session) []module.Session {
	subs, err := m.store.Subscribers(ctx, owner.String(), node)
	if err != nil {
		m.log.Error("notify: read subscribers", zap.String("owner", owner.String()), zap.Error(err))
		return nil
	}
	if len(subs) == 0 {
		return nil
	}
	block, err := m.store.Blocked(ctx, owner.String())
	if err != nil {
		m.log.Error("notify: read block list", zap.String("owner", owner.String()), zap.Error(err))
		return nil
	}
	have := map[module.Session]bool{}
	for _, s := range already {
		have[s] = true
	}
	var out []module.Session
	for _, v := range subs {
		j, err := jid.Parse(v)
		if err != nil {
			continue
		}
		if denied, err := m.mayRead(ctx, owner, j.Bare(), cfg); err != nil || denied != nil {
			continue
		}
		for _, s := range m.sessionsOf(j) {
			if !have[s] && !blocked(block, s.JID()) {
				have[s] = true
				out = append(out, s)
			}
		}
	}
	return out
}

// sessionsOf returns the local sessions a notification for j goes to:
// the session of a full JID, or the available resources with
// non-negative priority of a bare JID (XEP-0163 section 4.3.2).
func (m *Module) sessionsOf(j jid.JID) []module.Session {
	if !m.router.IsLocal(j.Domainpart()) {
		return nil
	}
	if j.Resourcepart() != "" {
		if s := m.router.Session(j); s != nil && s.Available() {
			return []module.Session{s}
		}
		return nil
	}
	var out []module.Session
	for _, s := range m.router.Sessions(j) {
		if deliverable(s) {
			out = append(out, s)
		}
	}
	return out
}

// broadcast sends an event on an owner's node to its recipients.
func (m *Module) broadcast(ctx context.Context, owner jid.JID, node string, cfg storage.NodeConfig, child *element.Element) {
	m.send(ctx, owner, m.recipients(ctx, owner, node, cfg), child)
}

// send sends an event to the sessions in to.
func (m *Module) send(ctx context.Context, owner jid.JID, to []module.Session, child *element.Element) {
	if len(to) == 0 {
		return
	}
	msg := eventMessage(owner, child)
	for _, s := range to {
		c := msg.ShallowCopy()
		c.SetTo(s.JID())
		c.El.SetAttr("id", newID())
		if !m.fits(c) {
			continue
		}
		m.router.Route(ctx, c)
	}
}

// fits reports whether a notification stays within the stanza limit,
// logging the one that does not (publishes are bounded so that their
// notifications fit; only an item stored under a larger limit, or an
// extraordinarily long address, can be refused here).
func (m *Module) fits(msg *stanza.Stanza) bool {
	n := len(msg.Wire())
	if n <= m.stanzaLimit() {
		return true
	}
	m.log.Warn("notification larger than the stanza limit not sent", zap.String("from", msg.From.String()),
		zap.String("to", msg.To.String()), zap.Int("bytes", n), zap.Int("limit", m.lim.MaxStanzaBytes))
	return false
}

// itemElement renders a stored item inside <items/> of ns.
func (m *Module) itemElement(ns string, it storage.PubSubItem) *element.Element {
	el := element.New(ns, "item", element.A("id", it.ID))
	if len(it.Payload) > 0 {
		p, err := element.Parse(it.Payload, "")
		if err != nil {
			m.log.Error("stored item unreadable", zap.String("id", it.ID), zap.Error(err))
		} else {
			el.Append(p)
		}
	}
	return el
}

// sendLastItems sends sess the last published item of every node it may
// read and asked for: its own account's and those of the local accounts
// whose presence its account is subscribed to (XEP-0163 section 4.3.3).
func (m *Module) sendLastItems(ctx context.Context, sess module.Session) {
	if !deliverable(sess) || !m.wantsAny(sess) {
		return
	}
	user := sess.JID().Bare()
	owners := []jid.JID{user}
	items, _, err := m.store.Roster(ctx, user.String())
	if err != nil {
		m.log.Error("last items: read roster", zap.String("user", user.String()), zap.Error(err))
		return
	}
	for _, it := range items {
		if it.Hidden || (it.Subscription != storage.SubTo && it.Subscription != storage.SubBoth) {
			continue
		}
		o, err := jid.Parse(it.JID)
		if err != nil || !m.router.IsLocal(o.Domainpart()) || o.Localpart() == "" || o.Bare().Equal(user) {
			continue
		}
		owners = append(owners, o.Bare())
	}
	for _, owner := range owners {
		m.sendLastOf(ctx, owner, sess)
	}
}

// SubscriptionApproved sends a new subscriber's available resources the
// last items of the owner's nodes they may see and asked for (XEP-0163
// section 4.3.3), without waiting for their next presence.
func (m *Module) SubscriptionApproved(ctx context.Context, owner, subscriber jid.JID) {
	if !m.router.IsLocal(subscriber.Domainpart()) || !m.router.IsLocal(owner.Domainpart()) {
		return
	}
	for _, sess := range m.router.Sessions(subscriber.Bare()) {
		if deliverable(sess) {
			m.sendLastOf(ctx, owner.Bare(), sess)
		}
	}
}

// sendLastOf sends sess the last items of owner's nodes that it may see.
func (m *Module) sendLastOf(ctx context.Context, owner jid.JID, sess module.Session) {
	user := sess.JID().Bare()
	nodes, err := m.store.Nodes(ctx, owner.String())
	if err != nil {
		m.log.Error("last items: list nodes", zap.String("owner", owner.String()), zap.Error(err))
		return
	}
	nodes = slices.DeleteFunc(nodes, func(n storage.PubSubNode) bool {
		return n.Config.SendLastPublished != storage.SendLastOnSubAndPresence || !m.interested(sess, n.Name)
	})
	if len(nodes) == 0 {
		return
	}
	var it storage.RosterItem
	if !owner.Equal(user) {
		// The owner's roster is the authority on the subscription.
		it, err = m.store.Item(ctx, owner.String(), user.String())
		if err != nil || !subscribed(it) {
			return
		}
		block, err := m.store.Blocked(ctx, owner.String())
		if err != nil || blocked(block, sess.JID()) {
			return
		}
	}
	for _, n := range nodes {
		if !owner.Equal(user) && contactAccess(n.Config, it, true) != nil {
			continue
		}
		last, err := m.store.Items(ctx, owner.String(), n.Name, 1, nil)
		if err != nil || len(last) == 0 {
			continue
		}
		m.sendLast(ctx, owner, n.Name, last[0], sess)
	}
}

// sendLast sends one stored item to sess with a delay stamp (XEP-0060
// section 12.7).
func (m *Module) sendLast(ctx context.Context, owner jid.JID, node string, it storage.PubSubItem, sess module.Session) {
	items := element.New(NSEvent, "items", element.A("node", node))
	items.Append(m.itemElement(NSEvent, it))
	msg := eventMessage(owner, items)
	msg.SetTo(sess.JID())
	msg.El.Append(element.New(stanza.NSDelay, "delay",
		element.A("from", owner.String()), element.A("stamp", it.Published.UTC().Format(time.RFC3339Nano))))
	if !m.fits(msg) {
		return
	}
	m.router.Route(ctx, msg)
}
