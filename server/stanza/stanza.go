// Package stanza wraps an element as an XMPP stanza (RFC 6120 section 8):
// its kind, parsed addresses, type and id, and builds standard error replies.
package stanza

import (
	"errors"
	"strings"

	"github.com/palisade-im/palisade/server/element"
	"mellium.im/xmpp/jid"
)

// Namespaces used across the server.
const (
	NSClient  = "jabber:client"
	NSServer  = "jabber:server"
	NSStanzas = "urn:ietf:params:xml:ns:xmpp-stanzas"
	NSDelay   = "urn:xmpp:delay"
)

// Kind is the stanza kind.
type Kind uint8

// Stanza kinds.
const (
	Message Kind = iota + 1
	Presence
	IQ
)

func (k Kind) String() string {
	switch k {
	case Message:
		return "message"
	case Presence:
		return "presence"
	case IQ:
		return "iq"
	}
	return "unknown"
}

// Stanza is a message, presence or iq with parsed routing attributes.
// From and To mirror the element's attributes; change them with SetFrom/SetTo.
type Stanza struct {
	El   *element.Element
	Kind Kind
	From jid.JID
	To   jid.JID
	Type string
	ID   string
	// Journaled marks a presence the journal already decided on: a
	// broadcast the core journaled once (or found nothing to record in),
	// whose copies the presence handler then routes to each contact, and
	// presence the server sends on a user's behalf. The journal does not
	// record such a presence again. Copy and ShallowCopy keep it.
	Journaled bool
	// Peer is the federation peer the stanza came in from (set by s2s on
	// inbound stanzas), nil for stanzas of local origin.
	Peer *Peer
	// Flags are the names of the content rules that flagged the stanza
	// for review (modules/content); the journal records them.
	Flags []string

	wire []byte // Wire's bytes, once computed
}

// Peer names the federation peer of a stanza and how its stream was
// authenticated.
type Peer struct {
	// Domain is the peer domain; Partner the name of its partner entry.
	Domain, Partner string
	// Auth is the stream's authentication method (s2s.AuthExternal, ...).
	Auth string
}

// Wire returns the stanza serialized for a jabber:client stream (the root
// carries no xmlns when it is in jabber:client). The bytes are computed
// once and shared: the journal records and every session delivers the same
// bytes, so they must not be modified. SetFrom, SetTo, SetType and the
// copies forget them; a caller that changes El directly after Wire must
// call Changed.
func (s *Stanza) Wire() []byte {
	if s.wire == nil {
		s.wire = s.El.AppendTo(make([]byte, 0, 256), NSClient)
	}
	return s.wire
}

// AppendStandalone appends the stanza as a document of its own: Wire's
// bytes with the root's namespace declared.
func (s *Stanza) AppendStandalone(buf []byte) []byte {
	w := s.Wire()
	if s.El.Space != NSClient {
		return append(buf, w...) // Wire declared it already
	}
	n := 1 + len(s.El.Local) // "<" + name
	buf = append(buf, w[:n]...)
	buf = append(buf, ` xmlns="`+NSClient+`"`...)
	return append(buf, w[n:]...)
}

// Changed forgets Wire's bytes after El was changed directly.
func (s *Stanza) Changed() { s.wire = nil }

// ErrNotStanza is returned by Parse for an element that is not a stanza.
var ErrNotStanza = errors.New("stanza: not a message, presence or iq")

// KindOf returns the kind for a top-level element name, or 0.
func KindOf(local string) Kind {
	switch local {
	case "message":
		return Message
	case "presence":
		return Presence
	case "iq":
		return IQ
	}
	return 0
}

// Parse wraps el. A malformed 'to' or 'from' returns an *Error with
// condition jid-malformed (the stanza is still returned, for the reply).
// A 'to' or 'from' not written in its canonical form (RFC 7622: case,
// width and normalization rules, no trailing dot) is rewritten in it, so
// that the journal and the recipient see the address the server routes.
func Parse(el *element.Element) (*Stanza, error) {
	k := KindOf(el.Local)
	if k == 0 {
		return nil, ErrNotStanza
	}
	s := &Stanza{El: el, Kind: k, Type: el.Attr("type"), ID: el.Attr("id")}
	if v := el.Attr("to"); v != "" {
		j, err := ParseAddress(v)
		if err != nil {
			return s, &Error{Type: Modify, Condition: JIDMalformed, Text: "invalid 'to' address"}
		}
		s.To = j
		if !IsCanonical(v, j) {
			el.SetAttr("to", j.String())
		}
	}
	if v := el.Attr("from"); v != "" {
		j, err := ParseAddress(v)
		if err != nil {
			return s, &Error{Type: Modify, Condition: JIDMalformed, Text: "invalid 'from' address"}
		}
		s.From = j
		if !IsCanonical(v, j) {
			el.SetAttr("from", j.String())
		}
	}
	return s, nil
}

// ParseAddress parses a stanza address (RFC 7622). mellium's jid.Parse
// strips one trailing dot from the domain and accepts empty labels, so
// "bob@localhost.." would become "bob@localhost.", which parses again to
// another address: a domain with an empty label is refused, so that an
// address's normal form parses to itself.
func ParseAddress(v string) (jid.JID, error) {
	j, err := jid.Parse(v)
	if err != nil {
		return j, err
	}
	if d := j.Domainpart(); d == "" || d[0] == '.' || d[len(d)-1] == '.' || strings.Contains(d, "..") {
		return jid.JID{}, errEmptyLabel
	}
	return j, nil
}

var errEmptyLabel = errors.New("stanza: empty label in the domain")

// IsCanonical reports whether s, which parsed as j, is j's canonical
// string form (j.String()). It compares part by part, without building
// that string.
func IsCanonical(s string, j jid.JID) bool {
	if l := j.Localpart(); l != "" {
		if len(s) <= len(l) || s[len(l)] != '@' || s[:len(l)] != l {
			return false
		}
		s = s[len(l)+1:]
	}
	d := j.Domainpart()
	if len(s) < len(d) || s[:len(d)] != d {
		return false
	}
	s = s[len(d):]
	r := j.Resourcepart()
	if r == "" {
		return s == ""
	}
	return len(s) == len(r)+1 && s[0] == '/' && s[1:] == r
}

// New builds a stanza of the given kind.
func New(k Kind, from, to jid.JID, typ, id string) *Stanza {
	el := element.New(NSClient, k.String())
	s := &Stanza{El: el, Kind: k}
	if typ != "" {
		el.SetAttr("type", typ)
		s.Type = typ
	}
	if id != "" {
		el.SetAttr("id", id)
		s.ID = id
	}
	s.SetFrom(from)
	s.SetTo(to)
	return s
}

// SetFrom sets the from address (zero removes it).
func (s *Stanza) SetFrom(j jid.JID) {
	s.From, s.wire = j, nil
	if j.Equal(jid.JID{}) {
		s.El.RemoveAttr("from")
		return
	}
	s.El.SetAttr("from", j.String())
}

// SetTo sets the to address (zero removes it).
func (s *Stanza) SetTo(j jid.JID) {
	s.To, s.wire = j, nil
	if j.Equal(jid.JID{}) {
		s.El.RemoveAttr("to")
		return
	}
	s.El.SetAttr("to", j.String())
}

// SetType sets the type attribute ("" removes it).
func (s *Stanza) SetType(t string) {
	s.Type, s.wire = t, nil
	if t == "" {
		s.El.RemoveAttr("type")
		return
	}
	s.El.SetAttr("type", t)
}

// Copy returns a deep copy.
func (s *Stanza) Copy() *Stanza {
	c := *s
	c.El, c.wire = s.El.Copy(), nil
	return &c
}

// ShallowCopy copies the top-level element (attributes) but shares the payload.
// Use it to readdress a stanza without copying its children.
func (s *Stanza) ShallowCopy() *Stanza {
	c := *s
	c.El, c.wire = s.El.ShallowCopy(), nil
	return &c
}

// IsRequest reports whether the stanza is an iq get or set.
func (s *Stanza) IsRequest() bool {
	return s.Kind == IQ && (s.Type == "get" || s.Type == "set")
}

// Payload returns the first child element (the IQ payload), or nil.
func (s *Stanza) Payload() *element.Element {
	return s.El.FirstElement()
}

// Body returns the text of the message body, or "".
func (s *Stanza) Body() string {
	return s.El.ChildText(NSClient, "body")
}

// Result builds an iq result for this request with an optional payload.
func (s *Stanza) Result(payload *element.Element) *Stanza {
	r := New(IQ, s.To, s.From, "result", s.ID)
	if s.To.Equal(jid.JID{}) {
		r.El.RemoveAttr("from")
	}
	r.El.Append(payload)
	return r
}

// ErrorReply builds the error response to this stanza (RFC 6120 8.3): the
// addresses swapped, type error, the original payload kept and an <error/>
// appended. Callers must not reply to a stanza of type error.
func (s *Stanza) ErrorReply(e *Error) *Stanza {
	r := s.Copy()
	r.Peer, r.Flags = nil, nil // a new stanza, going back
	to, from := s.From, s.To
	r.SetFrom(from)
	r.SetTo(to)
	r.SetType("error")
	r.El.RemoveChildren(NSStanzas, "")
	r.El.RemoveChildren(NSClient, "error")
	if s.Kind == IQ {
		// Keep only the request payload: clients match on it.
		if p := s.Payload(); p != nil {
			r.El.Nodes = r.El.Nodes[:0]
			r.El.Append(p.Copy())
		}
	}
	r.El.Append(e.Element())
	return r
}
