package server

import (
	"strings"

	"github.com/palisade-im/palisade/server/c2s"
	"github.com/palisade-im/palisade/server/element"
	"github.com/palisade-im/palisade/server/stanza"
	"go.uber.org/zap"
	"mellium.im/xmpp/jid"
)

// Protocol hygiene for what a bound client sends, checked before the
// policy chain and the journal, so that what is refused changes nothing
// and what is recorded is what is delivered:
//
//   - RFC 6120 8.1.3 and 8.2.3: an iq has type get, set, result or error
//     and an id; a get or set carries exactly one payload. A request that
//     breaks this, or an iq of another type, is answered bad-request; a
//     response without an id is dropped (nothing may answer a response).
//   - RFC 6121 4.7.1: a presence type outside the defined ones is
//     answered bad-request. RFC 6121 5.2.2: a message of an unknown type
//     is treated as normal, and so delivered and recorded as type normal.
//   - A client may not say what only a server says (serverClaims).
//
// The 'to' address is rewritten in canonical form by stanza.Parse.

// Namespaces of what only a server may add to a stanza.
const (
	nsStanzaID   = "urn:xmpp:sid:0"     // XEP-0359
	nsCarbons    = "urn:xmpp:carbons:2" // XEP-0280
	nsCarbonsOld = "urn:xmpp:carbons:1" // XEP-0280 before 0.9, still understood by some clients
	nsMAMPrefix  = "urn:xmpp:mam:"      // XEP-0313, every version
)

// refusal is why a client's stanza carrying a server's wrapper is refused;
// the value is the audit reason.
type refusal string

const (
	refusedCarbon    refusal = "forged_carbon"
	refusedMAMResult refusal = "forged_mam_result"
)

// text is the sender's error text.
func (r refusal) text() string {
	switch r {
	case refusedCarbon:
		return "carbon copies (XEP-0280) are made by the server; a client may not send one"
	case refusedMAMResult:
		return "archive results (XEP-0313) come only from the user's own server; a client may not send one"
	}
	return string(r)
}

// clientHygiene checks st, from the bound session sess, and removes what
// only a server may say. It reports false when st goes no further: it was
// refused (the sender got bad-request) or dropped.
func (s *Server) clientHygiene(sess *c2s.Session, st *stanza.Stanza) bool {
	switch st.Kind {
	case stanza.IQ:
		switch st.Type {
		case "get", "set":
			if st.ID == "" {
				s.refuse(sess, st, "an iq request needs an 'id'")
				return false
			}
			if elementCount(st.El) != 1 {
				s.refuse(sess, st, "an iq request carries exactly one payload")
				return false
			}
		case "result", "error":
			// A response without an id answers nothing; it gets no reply
			// either (RFC 6120 8.2.3).
			return st.ID != ""
		default:
			s.refuse(sess, st, "an iq's type is get, set, result or error")
			return false
		}
		return true // payloads are the handlers' and the recipient's
	case stanza.Presence:
		switch st.Type {
		case "", "unavailable", "subscribe", "subscribed", "unsubscribe", "unsubscribed", "probe", "error":
		default:
			s.refuse(sess, st, "a presence's type is unavailable, subscribe, subscribed, unsubscribe, unsubscribed, probe or error")
			return false
		}
		s.stripReadOnlyPresence(st) // access.go: send = false
	case stanza.Message:
		switch st.Type {
		case "", "normal", "chat", "groupchat", "headline", "error":
		default:
			st.SetType("normal")
		}
	}
	r, stripped := serverClaims(st.El, s.IsLocal, sess.JID())
	if stripped {
		st.Changed()
	}
	if r != "" {
		s.audit.Info("stanza_refused",
			zap.String("reason", string(r)), zap.String("from", st.From.String()),
			zap.String("to", st.To.String()), zap.String("kind", st.Kind.String()))
		s.refuse(sess, st, r.text())
		return false
	}
	return true
}

// refuse answers st, refused, with bad-request: straight to the sender's
// session, like any answer about the sender's own malformed stanza, and
// not journaled (nothing of st was). An iq's error keeps the request's
// payload (clients match on it); a message's or presence's holds only the
// error, so that what was refused does not come back wrapped as the
// server's. Nothing answers an error.
func (s *Server) refuse(sess *c2s.Session, st *stanza.Stanza, text string) {
	if st.Type == "error" {
		return
	}
	e := stanza.Err(stanza.Modify, stanza.BadRequest, text)
	var r *stanza.Stanza
	if st.Kind == stanza.IQ {
		r = st.ErrorReply(e)
	} else {
		r = stanza.New(st.Kind, st.To, st.From, "error", st.ID)
		r.El.Append(e.Element())
	}
	sess.Send(r)
}

// elementCount counts el's child elements.
func elementCount(el *element.Element) int {
	n := 0
	for _, c := range el.Nodes {
		if c.El != nil {
			n++
		}
	}
	return n
}

// serverClaims removes from el (a client's message or presence) what only
// its server may say, or reports a refusal. It scans el's children once,
// and allocates nothing when none is a server's:
//
//   - a <delay/> (XEP-0203) whose 'from' names one of our domains or an
//     address at one other than the sender's own account is removed: the
//     server stamps what it delayed (offline storage, resent stanzas), and
//     a client's stamp in our name would say the server held the stanza.
//     A client's own delay (from its own JID, or without 'from') stays;
//   - a <stanza-id/> (XEP-0359) whose 'by' is one of our domains or an
//     address at one is removed: only our archives add those (section 4),
//     and the archive adds the real one after this;
//   - a carbons <sent/> or <received/> (XEP-0280) or a MAM <result/>
//     (XEP-0313) refuses the message: these wrappers exist only as the
//     user's own server's copies, no client sends one, and a recipient's
//     client that failed to check their origin would show the forged
//     message inside as real. Refusing, rather than removing them, tells
//     the sender, and leaves no shell of a message delivered and recorded
//     whose content was a forgery. (Prosody and ejabberd leave such
//     wrappers in place and rely on the receiving client's check.)
//
// A top-level <forwarded/> (XEP-0297) is a client's to send (forwarding a
// message it got) and stays. Every 'from' or 'by' attribute is checked,
// should a parser ever let duplicates through.
func serverClaims(el *element.Element, isLocal func(domain string) bool, sender jid.JID) (refused refusal, stripped bool) {
	w := 0
	for _, n := range el.Nodes {
		if c := n.El; c != nil {
			switch c.Local {
			case "delay":
				if c.Space == stanza.NSDelay && anyAttr(c, "from", func(v string) bool { return forgedStamp(v, isLocal, sender) }) {
					stripped = true
					continue
				}
			case "stanza-id":
				if c.Space == nsStanzaID && anyAttr(c, "by", func(v string) bool { return ours(v, isLocal) }) {
					stripped = true
					continue
				}
			case "sent", "received":
				if c.Space == nsCarbons || c.Space == nsCarbonsOld {
					refused = refusedCarbon
				}
			case "result":
				if strings.HasPrefix(c.Space, nsMAMPrefix) {
					refused = refusedMAMResult
				}
			}
		}
		if stripped {
			el.Nodes[w] = n
		}
		w++
	}
	if stripped {
		clear(el.Nodes[w:])
		el.Nodes = el.Nodes[:w]
	}
	return refused, stripped
}

// anyAttr reports whether a plain attribute named local has a value for
// which f holds.
func anyAttr(el *element.Element, local string, f func(string) bool) bool {
	for _, a := range el.Attrs {
		if a.Space == "" && a.Local == local && f(a.Value) {
			return true
		}
	}
	return false
}

// ours reports whether v, a 'by', names one of our domains or an address
// at one. An address that does not parse names no one else either.
func ours(v string, isLocal func(string) bool) bool {
	j, err := jid.Parse(v)
	if err != nil {
		return true
	}
	return isLocal(j.Domainpart())
}

// forgedStamp reports whether v, a client's delay's 'from', speaks for our
// server: one of our domains, or an address at one other than the
// sender's own account.
func forgedStamp(v string, isLocal func(string) bool, sender jid.JID) bool {
	j, err := jid.Parse(v)
	if err != nil {
		return true
	}
	return isLocal(j.Domainpart()) && !j.Bare().Equal(sender.Bare())
}
