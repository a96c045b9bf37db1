package roster

import (
	"context"
	"errors"
	"sort"

	"github.com/palisade-im/palisade/server/module"
	"github.com/palisade-im/palisade/server/stanza"
	"github.com/palisade-im/palisade/storage"
	"go.uber.org/zap"
	"mellium.im/xmpp/jid"
)

// maxDirected bounds the directed-presence recipients tracked per session.
const maxDirected = 1000

// OutboundPresence handles presence from a local client: broadcasts
// (RFC 6121 4.2, 4.4, 4.5), directed presence (4.6), subscription stanzas
// (section 3) and probes.
func (m *Module) OutboundPresence(ctx context.Context, sess module.Session, st *stanza.Stanza) {
	noTo := st.To.Equal(jid.JID{})
	switch st.Type {
	case "", "unavailable":
		if noTo {
			m.broadcast(ctx, sess, st)
		} else {
			m.directed(ctx, sess, st)
		}
	case typeSubscribe, typeSubscribed, typeUnsubscribe, typeUnsubscribed:
		if noTo {
			sess.Send(st.ErrorReply(stanza.Err(stanza.Modify, stanza.BadRequest, "presence of this type needs a 'to'")))
			return
		}
		m.outboundSubscription(ctx, sess, st)
	case "probe":
		if noTo {
			sess.Send(st.ErrorReply(stanza.Err(stanza.Modify, stanza.BadRequest, "presence of this type needs a 'to'")))
			return
		}
		m.process(ctx, st)
	case "error":
		if !noTo {
			m.process(ctx, st)
		}
	default:
		sess.Send(st.ErrorReply(stanza.Err(stanza.Modify, stanza.BadRequest, "unknown presence type")))
	}
}

// InboundPresence handles presence addressed to a local account.
func (m *Module) InboundPresence(ctx context.Context, st *stanza.Stanza) {
	if st.From.Equal(jid.JID{}) || st.To.Localpart() == "" {
		return
	}
	switch st.Type {
	case "", "unavailable", "error":
		m.deliver(st)
	case "probe":
		m.inboundProbe(ctx, st)
	case typeSubscribe, typeSubscribed, typeUnsubscribe, typeUnsubscribed:
		m.inboundSubscription(ctx, st)
	}
	// Anything else is not presence this server understands: dropped.
}

// sessionState returns the tracked state of sess, creating it if needed. A
// session replaced by a newer one on the same resource gets a detached state.
func (m *Module) sessionState(sess module.Session) *sessState {
	key := sess.JID().String()
	m.mu.Lock()
	defer m.mu.Unlock()
	ss := m.sessions[key]
	switch {
	case ss == nil:
		ss = &sessState{sess: sess}
		m.sessions[key] = ss
	case ss.sess != sess:
		ss = &sessState{sess: sess}
	}
	return ss
}

// broadcast handles available or unavailable presence with no 'to'.
func (m *Module) broadcast(ctx context.Context, sess module.Session, st *stanza.Stanza) {
	st.Journaled = true // the core journaled the broadcast once: its copies are no new records
	ss := m.sessionState(sess)
	m.mu.Lock()
	wasAvail := ss.available
	var directed map[string]jid.JID
	if st.Type == "" {
		ss.available = true
	} else {
		ss.available = false
		directed, ss.directed = ss.directed, nil
	}
	m.mu.Unlock()
	if st.Type == "unavailable" {
		m.broadcastUnavailable(ctx, sess, st, wasAvail, directed)
		return
	}

	user := sess.JID().Bare()
	items := m.roster(ctx, user)
	// RFC 6121 4.2.2 / 4.4.2: to every contact subscribed to the user and
	// to the user's available resources (the sender included).
	for _, it := range items {
		if stateOf(it).from {
			m.sendCopy(ctx, st, it.JID)
		}
	}
	c := st.Copy()
	c.SetTo(user)
	m.process(ctx, c)
	if wasAvail {
		return
	}

	// Initial presence: the presence of the user's other resources...
	for _, s := range m.router.Sessions(user) {
		if s == sess || !s.Available() {
			continue
		}
		if p := s.Presence(); p != nil {
			c := p.Copy()
			c.SetFrom(s.JID())
			c.SetTo(sess.JID())
			sess.Send(c)
		}
	}
	// ...probes to the contacts the user is subscribed to (4.2.2)...
	for _, it := range items {
		if stateOf(it).to {
			if to, err := jid.Parse(it.JID); err == nil {
				m.process(ctx, stanza.New(stanza.Presence, user, to, "probe", ""))
			}
		}
	}
	// ...and the subscription requests still awaiting an answer (3.1.3).
	for _, it := range items {
		if it.PendingIn {
			if p := m.pendingRequest(user, it); p != nil {
				sess.Send(p)
			}
		}
	}
}

// broadcastUnavailable sends unavailable presence from a resource to its
// contacts and the user's resources when it had been available, and to the
// entities it sent directed presence to (RFC 6121 4.5.2, 4.6.3).
func (m *Module) broadcastUnavailable(ctx context.Context, sess module.Session, st *stanza.Stanza, wasAvail bool, directed map[string]jid.JID) {
	st.Journaled = true // journaled by the core, or made by the server (SessionEnded)
	user := sess.JID().Bare()
	sent := map[string]bool{}
	if wasAvail {
		for _, it := range m.roster(ctx, user) {
			if stateOf(it).from {
				m.sendCopy(ctx, st, it.JID)
				sent[it.JID] = true
			}
		}
		c := st.Copy()
		c.SetTo(user)
		m.process(ctx, c)
	}
	keys := make([]string, 0, len(directed))
	for k := range directed {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		to := directed[k]
		if sent[to.Bare().String()] {
			continue
		}
		c := st.Copy()
		c.SetTo(to)
		m.process(ctx, c)
	}
}

// directed routes directed presence and tracks its recipient (RFC 6121 4.6).
func (m *Module) directed(ctx context.Context, sess module.Session, st *stanza.Stanza) {
	if m.router.Process(ctx, st) != nil {
		return // denied: the recipient got nothing
	}
	user := sess.JID().Bare()
	to := st.To
	if to.Bare().Equal(user) {
		return
	}
	key := to.String()
	if st.Type == "unavailable" {
		ss := m.sessionState(sess)
		m.mu.Lock()
		delete(ss.directed, key)
		m.mu.Unlock()
		return
	}
	// A contact subscribed to the user gets the broadcast anyway.
	if it, err := m.store.Item(ctx, user.String(), to.Bare().String()); err == nil && stateOf(it).from {
		return
	}
	ss := m.sessionState(sess)
	m.mu.Lock()
	defer m.mu.Unlock()
	if ss.directed == nil {
		ss.directed = make(map[string]jid.JID)
	}
	if len(ss.directed) < maxDirected {
		ss.directed[key] = to
	}
}

// outboundSubscription applies RFC 6121 Appendix A.2 to a subscription
// stanza from a local client (sections 3.1.2, 3.1.5, 3.2.2, 3.3.2, 3.4.1).
func (m *Module) outboundSubscription(ctx context.Context, sess module.Session, st *stanza.Stanza) {
	user := sess.JID().Bare()
	contact := st.To.Bare()
	if contact.Equal(user) {
		return // the account's own presence needs no subscription
	}
	// Stamped with the user's bare JID (3.1.2), and recorded (policy
	// chain, journal) before the roster changes: a request that is refused
	// or cannot be recorded changes nothing.
	out := st.ShallowCopy() // st keeps the full JID for error replies
	out.SetFrom(user)
	out.SetTo(contact)
	if m.router.Admit(ctx, out) != nil {
		return
	}
	var route, sendPresence, sendUnavailable bool
	c, err := m.modify(ctx, user.String(), contact.String(), func(it *storage.RosterItem, existed bool) op {
		s := stateOf(*it)
		r, next := outbound(st.Type, s)
		route = r
		switch st.Type {
		case typeSubscribed:
			if !r && !s.from {
				// Pre-approval (3.4.1), creating the item if needed.
				if it.Approved {
					return opKeep
				}
				it.Approved = true
				return opPut
			}
			sendPresence = r
		case typeUnsubscribed:
			if !r && it.Approved {
				// Cancels a pre-approval; nothing is routed (3.2.2).
				it.Approved = false
				return opPut
			}
			sendUnavailable = r && s.from
		}
		if next == s {
			return opKeep
		}
		next.apply(it)
		if existed && hidden(*it) {
			if unused(*it) {
				return opDelete // a refused request leaves nothing behind
			}
			unhide(it) // the user acted on the contact: it is listed now
		}
		return opPut
	})
	if err != nil {
		e := stanza.Err(stanza.Wait, stanza.InternalServerError, "")
		if errors.Is(err, errRosterFull) {
			e = stanza.Err(stanza.Cancel, stanza.NotAllowed, "the roster is full")
		} else {
			m.log.Error("outbound subscription", zap.String("user", user.String()), zap.Error(err))
		}
		sess.Send(st.ErrorReply(e))
		return
	}
	m.pushChange(user, c, false)
	if !route {
		return
	}
	if sendUnavailable {
		// While the contact is still subscribed (3.2.2).
		m.sendUnavailableFrom(ctx, user, contact)
	}
	m.router.Route(ctx, out)
	if sendPresence {
		// The new subscriber gets the user's current presence (3.1.5).
		m.sendPresenceFrom(ctx, user, contact)
		m.approved(ctx, user, contact)
	}
}

// inboundSubscription applies RFC 6121 Appendix A.3 to a subscription
// stanza addressed to a local account (sections 3.1.3, 3.1.6, 3.2.3, 3.3.3,
// 3.4.2).
func (m *Module) inboundSubscription(ctx context.Context, in *stanza.Stanza) {
	user := in.To.Bare()
	from := in.From.Bare()
	if from.Equal(user) {
		return
	}
	ok, err := m.exists(ctx, user)
	if err != nil {
		m.log.Error("inbound subscription: user lookup", zap.String("user", user.String()), zap.Error(err))
		return
	}
	if !ok {
		// RFC 6121 8.5.1: subscribe, subscribed, unsubscribe and
		// unsubscribed to no account are silently ignored. (For subscribe
		// the RFC also allows answering unsubscribed; an answer that only
		// an account that does not exist draws would let a stranger
		// enumerate the accounts.)
		return
	}
	st := in.ShallowCopy()
	st.SetFrom(from)
	st.SetTo(user)

	var deliver, autoReply, lostFrom bool
	c, err := m.modify(ctx, user.String(), from.String(), func(it *storage.RosterItem, existed bool) op {
		s := stateOf(*it)
		if st.Type == typeSubscribe {
			if s.from {
				autoReply = true // already subscribed (A.3.1 note)
				return opKeep
			}
			if it.Approved && !s.pendIn {
				// Pre-approved (3.4.2): accepted without asking the user.
				autoReply = true
				s.from = true
				s.apply(it)
				return opPut
			}
		}
		d, next := inbound(st.Type, s)
		deliver = d
		if next == s {
			return opKeep
		}
		lostFrom = s.from && !next.from
		next.apply(it)
		if st.Type == typeSubscribe {
			it.PendingInStanza = serialize(st)
			if !existed {
				it.Hidden = true
			}
		}
		if existed && hidden(*it) && unused(*it) {
			return opDelete // a retracted request leaves nothing behind
		}
		return opPut
	})
	if err != nil {
		if errors.Is(err, errRosterFull) {
			m.log.Info("inbound subscription dropped: roster full", zap.String("user", user.String()), zap.String("from", from.String()))
			return
		}
		m.log.Error("inbound subscription", zap.String("user", user.String()), zap.Error(err))
		m.router.Route(ctx, in.ErrorReply(stanza.Err(stanza.Wait, stanza.InternalServerError, "")))
		return
	}
	m.pushChange(user, c, false)
	if autoReply {
		// Through the policy chain and the journal: an approval the server
		// gives on the user's behalf is a subscription change too.
		m.process(ctx, stanza.New(stanza.Presence, user, from, typeSubscribed, ""))
		m.sendPresenceFrom(ctx, user, from)
		m.approved(ctx, user, from)
		return
	}
	if deliver {
		// To the available resources; a request for a user with none
		// waits in the roster for the next initial presence (3.1.3).
		for _, s := range m.router.Sessions(user) {
			if s.Available() {
				s.Send(st)
			}
		}
	}
	if lostFrom {
		m.sendUnavailableFrom(ctx, user, from)
	}
}

// inboundProbe answers a presence probe (RFC 6121 4.3.2).
func (m *Module) inboundProbe(ctx context.Context, st *stanza.Stanza) {
	user := st.To.Bare()
	prober := st.From
	ok, err := m.exists(ctx, user)
	if err != nil {
		m.log.Error("probe: user lookup", zap.String("user", user.String()), zap.Error(err))
		return
	}
	if !ok {
		// RFC 6121 8.5.1: a probe to no account is silently ignored (the
		// RFC's other choice, unsubscribed, would tell a stranger which
		// accounts exist).
		return
	}
	unsubscribed := stanza.New(stanza.Presence, user, prober.Bare(), typeUnsubscribed, "")
	if !prober.Bare().Equal(user) {
		it, err := m.store.Item(ctx, user.String(), prober.Bare().String())
		switch {
		case errors.Is(err, storage.ErrNotFound) || (err == nil && hidden(it)):
			// Not in the user's roster (a hidden item is only a stranger's
			// request the user has not acted on): ignored like a probe to
			// no account (8.5.1), so a stranger cannot tell the two
			// apart. The unsubscribed answer of 4.3.2 is for the contacts
			// the roster lists, whose server then corrects its state.
			return
		case err != nil:
			m.log.Error("probe: read roster item", zap.String("user", user.String()), zap.Error(err))
			return
		case !stateOf(it).from:
			// Not subscribed: presence is not revealed.
			m.router.Route(ctx, unsubscribed)
			return
		}
	}
	sent := false
	for _, s := range m.router.Sessions(user) {
		if !s.Available() {
			continue
		}
		if p := s.Presence(); p != nil {
			c := p.Copy()
			c.SetFrom(s.JID())
			c.SetTo(prober)
			m.router.Route(ctx, c)
			sent = true
		}
	}
	if !sent {
		m.router.Route(ctx, stanza.New(stanza.Presence, user, prober, "unavailable", ""))
	}
}

// deliver hands available, unavailable and error presence to the account:
// to the addressed resource if it exists (RFC 6121 8.5.3), or to every
// available resource for a bare JID (8.5.2.1.2).
func (m *Module) deliver(st *stanza.Stanza) {
	if st.To.Resourcepart() != "" {
		if s := m.router.Session(st.To); s != nil {
			s.Send(st)
		}
		return
	}
	for _, s := range m.router.Sessions(st.To) {
		if s.Available() {
			s.Send(st)
		}
	}
}

// pendingRequest rebuilds the stored subscription request of an item.
func (m *Module) pendingRequest(user jid.JID, it storage.RosterItem) *stanza.Stanza {
	if len(it.PendingInStanza) > 0 {
		st, err := deserialize(it.PendingInStanza)
		if err == nil && st.Kind == stanza.Presence && st.Type == typeSubscribe {
			return st
		}
		m.log.Warn("stored subscription request unreadable", zap.String("user", user.String()), zap.String("from", it.JID), zap.Error(err))
	}
	from, err := jid.Parse(it.JID)
	if err != nil {
		return nil
	}
	return stanza.New(stanza.Presence, from, user, typeSubscribe, "")
}

// sendPresenceFrom sends the current presence of each of the user's
// available resources to contact.
func (m *Module) sendPresenceFrom(ctx context.Context, user, contact jid.JID) {
	for _, s := range m.router.Sessions(user) {
		if !s.Available() {
			continue
		}
		if p := s.Presence(); p != nil {
			c := p.Copy()
			c.SetFrom(s.JID())
			c.SetTo(contact)
			c.Journaled = true // a copy of a broadcast the core journaled
			m.process(ctx, c)
		}
	}
}

// sendUnavailableFrom sends unavailable presence from each of the user's
// available resources to contact.
func (m *Module) sendUnavailableFrom(ctx context.Context, user, contact jid.JID) {
	for _, s := range m.router.Sessions(user) {
		if s.Available() {
			u := stanza.New(stanza.Presence, s.JID(), contact, "unavailable", "")
			u.Journaled = true // the server's, on the user's behalf: no record
			m.process(ctx, u)
		}
	}
}

// sendCopy routes a copy of st addressed to a roster item's JID.
func (m *Module) sendCopy(ctx context.Context, st *stanza.Stanza, to string) {
	j, err := jid.Parse(to)
	if err != nil {
		return
	}
	c := st.Copy()
	c.SetTo(j)
	m.process(ctx, c)
}

// process runs a stanza through the policy chain, journal and router. A
// denial has already been answered.
func (m *Module) process(ctx context.Context, st *stanza.Stanza) {
	_ = m.router.Process(ctx, st)
}

// roster loads a user's roster, logging a failure.
func (m *Module) roster(ctx context.Context, user jid.JID) []storage.RosterItem {
	items, _, err := m.store.Roster(ctx, user.String())
	if err != nil {
		m.log.Error("read roster", zap.String("user", user.String()), zap.Error(err))
	}
	return items
}

// exists reports whether a local account exists.
func (m *Module) exists(ctx context.Context, user jid.JID) (bool, error) {
	if len(m.router.Sessions(user)) > 0 {
		return true, nil
	}
	return m.router.UserExists(ctx, user)
}
