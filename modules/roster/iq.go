package roster

import (
	"context"
	"errors"

	"github.com/palisade-im/palisade/server/element"
	"github.com/palisade-im/palisade/server/module"
	"github.com/palisade-im/palisade/server/stanza"
	"github.com/palisade-im/palisade/storage"
	"go.uber.org/zap"
	"mellium.im/xmpp/jid"
)

// handleIQ serves roster get and set (RFC 6121 2.2-2.5).
func (m *Module) handleIQ(ctx context.Context, sess module.Session, iq *stanza.Stanza) (*element.Element, error) {
	// Only the account's own connected resources manage its roster
	// (RFC 6121 2.1.5, 2.3.3).
	if sess == nil || !iq.From.Bare().Equal(iq.To) || iq.To.Localpart() == "" {
		return nil, stanza.Err(stanza.Auth, stanza.Forbidden, "only the account's own resources may use its roster")
	}
	q := iq.Payload()
	user := iq.To
	switch iq.Type {
	case "get":
		return m.rosterGet(ctx, sess, user, q)
	case "set":
		return m.rosterSet(ctx, user, q)
	}
	return nil, stanza.Err(stanza.Modify, stanza.BadRequest, "")
}

// rosterGet returns the roster, or an empty result when the client's cached
// version is current (RFC 6121 2.6.3).
func (m *Module) rosterGet(ctx context.Context, sess module.Session, user jid.JID, q *element.Element) (*element.Element, error) {
	sess.SetRosterRequested()
	items, ver, err := m.store.Roster(ctx, user.String())
	if err != nil {
		return nil, err
	}
	if q.HasAttr("ver") && q.Attr("ver") == ver {
		return nil, nil
	}
	res := element.New(NSRoster, "query", element.A("ver", ver))
	for _, it := range items {
		if !hidden(it) {
			res.Append(itemElement(it))
		}
	}
	return res, nil
}

// rosterSet adds, updates or removes one item (RFC 6121 2.3-2.5).
func (m *Module) rosterSet(ctx context.Context, user jid.JID, q *element.Element) (*element.Element, error) {
	var item *element.Element
	for _, c := range q.Elements() {
		if c.Space != NSRoster || c.Local != "item" {
			continue
		}
		if item != nil {
			return nil, stanza.Err(stanza.Modify, stanza.BadRequest, "a roster set carries exactly one item")
		}
		item = c
	}
	if item == nil {
		return nil, stanza.Err(stanza.Modify, stanza.BadRequest, "a roster set carries exactly one item")
	}
	if !item.HasAttr("jid") {
		return nil, stanza.Err(stanza.Modify, stanza.BadRequest, "the item has no 'jid'")
	}
	contact, err := jid.Parse(item.Attr("jid"))
	if err != nil {
		return nil, stanza.Err(stanza.Modify, stanza.JIDMalformed, "the item's 'jid' is not a valid JID")
	}
	if contact.Resourcepart() != "" {
		return nil, stanza.Err(stanza.Modify, stanza.BadRequest, "roster items are bare JIDs")
	}
	if contact.Equal(user) {
		return nil, stanza.Err(stanza.Cancel, stanza.NotAllowed, "the account's own JID cannot be a roster item")
	}
	if item.Attr("subscription") == string(storage.SubRemove) {
		return nil, m.removeItem(ctx, user, contact)
	}

	name := item.Attr("name")
	if len(name) > m.cfg.MaxNameLength {
		return nil, stanza.Err(stanza.Modify, stanza.NotAcceptable, "the item's name is too long")
	}
	var groups []string
	seen := map[string]bool{}
	for _, g := range item.Elements() {
		if g.Space != NSRoster || g.Local != "group" {
			continue
		}
		t := g.Text()
		switch {
		case t == "":
			return nil, stanza.Err(stanza.Modify, stanza.NotAcceptable, "empty group name")
		case len(t) > m.cfg.MaxGroupLength:
			return nil, stanza.Err(stanza.Modify, stanza.NotAcceptable, "group name too long")
		case seen[t]:
			return nil, stanza.Err(stanza.Modify, stanza.BadRequest, "duplicate group")
		}
		seen[t] = true
		groups = append(groups, t)
	}
	if len(groups) > m.cfg.MaxGroups {
		return nil, stanza.Err(stanza.Modify, stanza.NotAcceptable, "too many groups")
	}

	// The 'subscription' (other than "remove"), 'ask' and 'approved'
	// attributes of a roster set are ignored (RFC 6121 2.1.2).
	c, err := m.modify(ctx, user.String(), contact.String(), func(it *storage.RosterItem, _ bool) op {
		it.Name = name
		it.Groups = groups
		unhide(it) // the user acted on the contact: it is listed now
		return opPut
	})
	if errors.Is(err, errRosterFull) {
		return nil, stanza.Err(stanza.Cancel, stanza.NotAllowed, "the roster is full")
	}
	if err != nil {
		return nil, err
	}
	m.pushChange(user, c, true)
	return nil, nil
}

// removeItem deletes an item and cancels the subscriptions both ways
// (RFC 6121 2.5.2).
func (m *Module) removeItem(ctx context.Context, user, contact jid.JID) error {
	shared := ""
	c, err := m.modify(ctx, user.String(), contact.String(), func(it *storage.RosterItem, existed bool) op {
		if existed && it.Shared != "" {
			shared = it.Shared
			return opKeep
		}
		return opDelete
	})
	if err != nil {
		return err
	}
	if shared != "" {
		return errSharedItem(shared)
	}
	if !c.existed {
		return stanza.Err(stanza.Cancel, stanza.ItemNotFound, "no such roster item")
	}
	m.pushChange(user, c, true)
	m.audit.Info("roster_item_removed", zap.String("who", user.String()), zap.String("what", contact.String()),
		zap.String("why", "roster remove"), zap.String("state", stateOf(c.old).String()))
	s := stateOf(c.old)
	if s.to || s.pendOut {
		m.process(ctx, stanza.New(stanza.Presence, user, contact, typeUnsubscribe, newID()))
	}
	if s.from {
		// While the contact is still subscribed, tell it the user's
		// resources are gone (RFC 6121 3.2.2).
		m.sendUnavailableFrom(ctx, user, contact)
	}
	if s.from || s.pendIn {
		m.process(ctx, stanza.New(stanza.Presence, user, contact, typeUnsubscribed, newID()))
	}
	return nil
}
