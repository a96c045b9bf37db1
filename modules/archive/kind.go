package archive

import (
	"strings"

	"github.com/palisade-im/palisade/server/element"
	"github.com/palisade-im/palisade/server/stanza"
	"github.com/palisade-im/palisade/storage"
	"mellium.im/xmpp/jid"
)

// Payload namespaces the journal classifies IQs by.
const (
	nsSI          = "http://jabber.org/protocol/si"          // XEP-0095/0096 stream initiation
	nsIBB         = "http://jabber.org/protocol/ibb"         // XEP-0047 in-band bytestreams
	nsBytestreams = "http://jabber.org/protocol/bytestreams" // XEP-0065 SOCKS5 bytestreams
	nsIQOOB       = "jabber:iq:oob"                          // XEP-0066 out of band, IQ form
	nsJingle      = "urn:xmpp:jingle:1"                      // XEP-0166
	// nsJingleFT prefixes every version of XEP-0234 Jingle file transfer
	// (description, checksum, received).
	nsJingleFT    = "urn:xmpp:jingle:apps:file-transfer:"
	nsJingleIBB   = "urn:xmpp:jingle:transports:ibb:1" // XEP-0261
	nsJingleS5B   = "urn:xmpp:jingle:transports:s5b:1" // XEP-0260
	nsCommands    = "http://jabber.org/protocol/commands"
	nsPubSub      = "http://jabber.org/protocol/pubsub"
	nsPubSubOwner = "http://jabber.org/protocol/pubsub#owner"
	nsVCardTemp   = "vcard-temp"
)

// recordKinds are every kind of record the journal holds, in the order
// `archive search --kind` and `archive export --kind` list them.
var recordKinds = []storage.RecordKind{
	storage.KindMessage, storage.KindSubscription, storage.KindPresence,
	storage.KindIQ, storage.KindFileTransfer, storage.KindJingle, storage.KindCommand,
	storage.KindPEP, storage.KindVCard,
	storage.KindExport, storage.KindHold, storage.KindDisposition, storage.KindSearch,
	storage.KindPolicy, storage.KindAdmin, storage.KindReview,
}

// RecordKinds returns the names of every record kind the journal knows,
// for the --kind filters of search and export.
func RecordKinds() []string {
	out := make([]string, len(recordKinds))
	for i, k := range recordKinds {
		out[i] = string(k)
	}
	return out
}

// kindOf classifies a presence or IQ stanza (messages are always kind
// message: Submit does not ask). ok is false for a stanza the journal does
// not record: what the server generates or answers itself, and what
// reaches no other party (DECISIONS.md, "What the journal records").
//
//   - Presence: subscription types are kind subscription; a directed
//     available or unavailable presence to another account, and a
//     broadcast (no 'to') with <status/> text, are kind presence, unless
//     the core already journaled the broadcast they copy (st.Journaled).
//     Probes and errors are not recorded.
//   - IQ between two accounts (both addresses have a localpart, the bare
//     JIDs differ) addressed to a client (a full JID): requests, results
//     and errors, kind by payload (iqKind).
//   - IQ set to the sender's own account: a PEP publish, retract, purge or
//     node delete is kind pep, a vcard-temp set kind vcard; the rest
//     (roster, private XML, blocking, MAM, carbons) is not recorded.
func kindOf(st *stanza.Stanza) (kind storage.RecordKind, ok bool) {
	switch st.Kind {
	case stanza.Presence:
		switch st.Type {
		case "subscribe", "subscribed", "unsubscribe", "unsubscribed":
			return storage.KindSubscription, true
		case "", "unavailable":
			if st.Journaled {
				return "", false
			}
			if st.To.Equal(jid.JID{}) {
				return storage.KindPresence, hasStatus(st.El)
			}
			return storage.KindPresence, betweenAccounts(st.From, st.To)
		}
	case stanza.IQ:
		if st.To.Equal(jid.JID{}) || sameAccount(st.From, st.To) {
			if st.Type != "set" || st.From.Localpart() == "" {
				return "", false
			}
			return ownKind(st.Payload())
		}
		if !betweenAccounts(st.From, st.To) || st.To.Resourcepart() == "" {
			return "", false
		}
		return iqKind(st.Payload()), true
	}
	return "", false
}

// crossingKind is the kind of a presence or IQ that crossed a partner
// stream and kindOf would not record (probes, presence without text,
// IQs with a server): every stanza exchanged with another organisation
// is recorded (DECISIONS.md, "What the journal records": s2s traffic both
// ways).
func crossingKind(st *stanza.Stanza) storage.RecordKind {
	if st.Kind == stanza.Presence {
		return storage.KindPresence
	}
	return iqKind(st.Payload())
}

// sameAccount reports whether a and b share a bare JID.
func sameAccount(a, b jid.JID) bool {
	return a.Localpart() == b.Localpart() && a.Domainpart() == b.Domainpart()
}

// betweenAccounts reports whether from and to are two different accounts
// (neither a server nor a component: both have a localpart).
func betweenAccounts(from, to jid.JID) bool {
	return from.Localpart() != "" && to.Localpart() != "" && !sameAccount(from, to)
}

// hasStatus reports whether a presence carries <status/> text.
func hasStatus(p *element.Element) bool {
	for _, n := range p.Nodes {
		if n.El != nil && n.El.Local == "status" && n.El.Space == stanza.NSClient && strings.TrimSpace(n.El.Text()) != "" {
			return true
		}
	}
	return false
}

// iqKind is the kind of an IQ between two clients by its payload
// namespace; a result or error without payload is kind iq.
func iqKind(p *element.Element) storage.RecordKind {
	if p == nil {
		return storage.KindIQ
	}
	switch p.Space {
	case nsSI, nsIBB, nsBytestreams, nsIQOOB:
		return storage.KindFileTransfer
	case nsJingle:
		if jingleFileTransfer(p) {
			return storage.KindFileTransfer
		}
		return storage.KindJingle
	case nsCommands:
		return storage.KindCommand
	}
	return storage.KindIQ
}

// jingleFileTransfer reports whether a <jingle/> element belongs to a file
// transfer: a content with an XEP-0234 description or with an in-band or
// SOCKS5 bytestream transport (transport-info, transport-replace and the
// like carry only the transport), or an XEP-0234 session-info payload
// (checksum, received).
func jingleFileTransfer(j *element.Element) bool {
	for _, n := range j.Nodes {
		c := n.El
		if c == nil {
			continue
		}
		if strings.HasPrefix(c.Space, nsJingleFT) {
			return true
		}
		if c.Local != "content" || c.Space != nsJingle {
			continue
		}
		for _, m := range c.Nodes {
			d := m.El
			if d == nil {
				continue
			}
			switch {
			case d.Local == "description" && strings.HasPrefix(d.Space, nsJingleFT):
				return true
			case d.Local == "transport" && (d.Space == nsJingleIBB || d.Space == nsJingleS5B):
				return true
			}
		}
	}
	return false
}

// ownKind is the kind of an IQ set a user sends to their own account: PEP
// changes (XEP-0163: publish and retract in the pubsub namespace, purge
// and delete in pubsub#owner) and vCard sets (XEP-0054). Avatars
// (XEP-0084) and vCard4 (XEP-0292) are PEP publishes.
func ownKind(p *element.Element) (storage.RecordKind, bool) {
	if p == nil {
		return "", false
	}
	switch p.Space {
	case nsPubSub:
		if p.Child(nsPubSub, "publish") != nil || p.Child(nsPubSub, "retract") != nil {
			return storage.KindPEP, true
		}
	case nsPubSubOwner:
		if p.Child(nsPubSubOwner, "purge") != nil || p.Child(nsPubSubOwner, "delete") != nil {
			return storage.KindPEP, true
		}
	case nsVCardTemp:
		if p.Local == "vCard" {
			return storage.KindVCard, true
		}
	}
	return "", false
}
