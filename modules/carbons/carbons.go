// Package carbons implements XEP-0280 Message Carbons (urn:xmpp:carbons:2):
// a client enables carbons for its session, and then gets a copy of the
// messages its account's other resources send and receive, wrapped as
// XEP-0297 forwarded messages.
//
// It registers the module "carbons". Which messages are copied follows
// XEP-0280 section 6 (see Eligible).
package carbons

import (
	"context"
	"slices"

	"github.com/palisade-im/palisade/server/element"
	"github.com/palisade-im/palisade/server/module"
	"github.com/palisade-im/palisade/server/stanza"
	"go.uber.org/zap"
	"mellium.im/xmpp/jid"
)

// Namespaces.
const (
	// NS is the XEP-0280 namespace.
	NS = "urn:xmpp:carbons:2"
	// NSForward is the XEP-0297 Stanza Forwarding namespace.
	NSForward = "urn:xmpp:forward:0"
	// NSHints is the XEP-0334 Message Processing Hints namespace.
	NSHints = "urn:xmpp:hints"
	// NSChatStates is the XEP-0085 Chat State Notifications namespace.
	NSChatStates = "http://jabber.org/protocol/chatstates"
	// NSReceipts is the XEP-0184 Message Delivery Receipts namespace.
	NSReceipts = "urn:xmpp:receipts"
	// NSMarkers is the XEP-0333 Chat Markers namespace.
	NSMarkers = "urn:xmpp:chat-markers:0"
	// NSStanzaID is the XEP-0359 namespace.
	NSStanzaID = "urn:xmpp:sid:0"
	// NSMUCUser marks messages from a multi-user chat room (XEP-0045).
	NSMUCUser = "http://jabber.org/protocol/muc#user"
)

func init() {
	module.Register(module.Info{
		Name: "carbons",
		New: func(h *module.Host, _ any) (any, error) {
			return New(h.Router, h.Log), nil
		},
	})
}

// Module enables carbons and sends the copies.
type Module struct {
	router module.Router
	log    *zap.Logger
}

var (
	_ module.IQHandlers      = (*Module)(nil)
	_ module.Features        = (*Module)(nil)
	_ module.MessageObserver = (*Module)(nil)
)

// New builds the module.
func New(r module.Router, log *zap.Logger) *Module {
	return &Module{router: r, log: log}
}

// IQRoutes implements module.IQHandlers. Clients send <enable/> and
// <disable/> with no 'to' (the account) or to their server.
func (m *Module) IQRoutes() []module.IQRoute {
	scope := module.ScopeAccount | module.ScopeServer
	return []module.IQRoute{
		{Space: NS, Local: "enable", Scope: scope, Handle: m.toggle(true)},
		{Space: NS, Local: "disable", Scope: scope, Handle: m.toggle(false)},
	}
}

// ServerFeatures implements module.Features.
func (m *Module) ServerFeatures() []string { return []string{NS} }

// AccountFeatures implements module.Features.
func (m *Module) AccountFeatures() []string { return []string{NS} }

// toggle handles <enable/> or <disable/> (XEP-0280 sections 4 and 5).
// Enabling twice, or disabling while disabled, is not an error.
func (m *Module) toggle(on bool) module.IQFunc {
	return func(_ context.Context, sess module.Session, iq *stanza.Stanza) (*element.Element, error) {
		if sess == nil || !sess.JID().Equal(iq.From) {
			// Section 4.1: a client not hosted here.
			return nil, stanza.Err(stanza.Cancel, stanza.NotAllowed, "carbons are enabled by the server's own clients")
		}
		if iq.To.Localpart() != "" && !iq.To.Bare().Equal(iq.From.Bare()) {
			// Section 5: another user's carbons.
			return nil, stanza.Err(stanza.Cancel, stanza.NotAllowed, "")
		}
		if iq.Type != "set" {
			return nil, stanza.Err(stanza.Modify, stanza.BadRequest, "carbons are enabled and disabled with an iq set")
		}
		sess.SetCarbons(on)
		return nil, nil
	}
}

// Eligible reports whether a message is copied (XEP-0280 section 6): it
// is of type chat, or normal with a <body/>, or carries a chat state,
// a delivery receipt or a chat marker; it is not of type groupchat,
// headline or error, not marked <private/> or <no-copy/> (XEP-0334), and
// not itself a carbon copy.
func Eligible(st *stanza.Stanza) bool {
	if st.Kind != stanza.Message {
		return false
	}
	el := st.El
	switch st.Type {
	case "groupchat", "headline", "error":
		return false
	}
	if el.Child(NS, "private") != nil || el.Child(NSHints, "no-copy") != nil ||
		el.Child(NS, "sent") != nil || el.Child(NS, "received") != nil {
		return false
	}
	if st.Type == "chat" {
		return true
	}
	if el.Child(stanza.NSClient, "body") != nil {
		return true // type normal (or none)
	}
	for _, c := range el.Elements() {
		switch c.Space {
		case NSChatStates, NSReceipts, NSMarkers:
			return true
		}
	}
	return false
}

// MessageSent implements module.MessageObserver: the sender's other
// carbon-enabled sessions get a <sent/> copy (XEP-0280 section 7).
// Messages to the user's own account are copied by MessageDelivered.
func (m *Module) MessageSent(_ context.Context, from module.Session, st *stanza.Stanza) {
	user := from.JID().Bare()
	if st.To.Bare().Equal(user) || !Eligible(st) {
		return
	}
	var fwd *stanza.Stanza
	for _, s := range m.router.Sessions(user) {
		if s.JID().Equal(from.JID()) || !s.Carbons() {
			continue
		}
		if fwd == nil {
			fwd = withoutOthersIDs(st, user)
		}
		s.Send(wrap("sent", user, s.JID(), fwd))
	}
}

// withoutOthersIDs returns st, or a copy without the XEP-0359 stanza-ids
// of other archives (the recipient's): XEP-0313 section 3.3 keeps an
// archive's ids from those who cannot read it.
func withoutOthersIDs(st *stanza.Stanza, user jid.JID) *stanza.Stanza {
	others := func(c *element.Element) bool {
		return c.Space == NSStanzaID && c.Local == "stanza-id" && c.Attr("by") != user.String()
	}
	if !slices.ContainsFunc(st.El.Elements(), others) {
		return st
	}
	c := st.ShallowCopy()
	c.El.Nodes = nil
	for _, n := range st.El.Nodes {
		if n.El != nil && others(n.El) {
			continue
		}
		c.El.Nodes = append(c.El.Nodes, n)
	}
	return c
}

// MessageDelivered implements module.MessageObserver: the recipient's
// carbon-enabled sessions that did not get the message get a <received/>
// copy (XEP-0280 section 6). Private messages from a chat room are not
// copied.
func (m *Module) MessageDelivered(_ context.Context, st *stanza.Stanza, to []module.Session, _ bool) {
	if !Eligible(st) || st.El.Child(NSMUCUser, "x") != nil {
		return
	}
	user := st.To.Bare()
	var sessions []module.Session
	for _, s := range m.router.Sessions(user) {
		if !s.Carbons() || s.JID().Equal(st.From) || delivered(s, to) {
			continue
		}
		sessions = append(sessions, s)
	}
	for _, s := range sessions {
		s.Send(wrap("received", user, s.JID(), st))
	}
	if len(sessions) > 0 {
		m.log.Debug("carbons sent", zap.String("user", user.String()), zap.Int("copies", len(sessions)))
	}
}

func delivered(s module.Session, to []module.Session) bool {
	for _, t := range to {
		if t == s || t.JID().Equal(s.JID()) {
			return true
		}
	}
	return false
}

// wrap builds the carbon copy of st for the session at to: from the
// user's bare JID, same type, <sent/> or <received/> around a
// <forwarded/> holding the original message.
func wrap(kind string, user, to jid.JID, st *stanza.Stanza) *stanza.Stanza {
	c := stanza.New(stanza.Message, user, to, st.Type, "")
	c.El.Append(element.New(NS, kind).Append(element.New(NSForward, "forwarded").Append(st.El)))
	return c
}
