package moduletest

import (
	"strconv"
	"sync"

	"github.com/palisade-im/palisade/server/module"
	"github.com/palisade-im/palisade/server/stanza"
	"mellium.im/xmpp/jid"
)

// Session is a bound client resource that records what it is sent and the
// state modules set on it. Create one with Router.Login.
type Session struct {
	mu        sync.Mutex
	jid       jid.JID
	sent      []*stanza.Stanza
	pres      *stanza.Stanza
	prio      int
	avail     bool
	rosterReq bool
	carbons   bool
	closed    string
}

var _ module.Session = (*Session)(nil)

// JID is the session's full JID.
func (s *Session) JID() jid.JID { return s.jid }

// Send records a copy of st.
func (s *Session) Send(st *stanza.Stanza) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sent = append(s.sent, st.Copy())
}

// Presence is the presence last recorded by UpdatePresence.
func (s *Session) Presence() *stanza.Stanza {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pres
}

// Priority is the current priority.
func (s *Session) Priority() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.prio
}

// Available reports whether the session has broadcast available presence.
func (s *Session) Available() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.avail
}

// RosterRequested reports whether SetRosterRequested was called.
func (s *Session) RosterRequested() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rosterReq
}

// SetRosterRequested marks the session as interested in roster pushes.
func (s *Session) SetRosterRequested() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rosterReq = true
}

// Carbons reports whether carbons are enabled.
func (s *Session) Carbons() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.carbons
}

// SetCarbons enables or disables carbons.
func (s *Session) SetCarbons(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.carbons = on
}

// RemoteAddr is a fixed documentation address (RFC 5737).
func (s *Session) RemoteAddr() string { return "192.0.2.1:1234" }

// Close records the stream error condition; see Closed.
func (s *Session) Close(condition, _ string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = condition
}

// Closed is the condition the session was closed with, or "".
func (s *Session) Closed() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// SetPriority sets the priority without changing availability.
func (s *Session) SetPriority(p int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.prio = p
}

// UpdatePresence does the core's bookkeeping for presence broadcast by the
// client: available presence makes the session available with its
// priority, unavailable presence clears both. Other types change nothing.
func (s *Session) UpdatePresence(st *stanza.Stanza) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch st.Type {
	case "":
		s.avail = true
		s.pres = st
		s.prio, _ = strconv.Atoi(st.El.ChildText(stanza.NSClient, "priority"))
	case "unavailable":
		s.avail, s.pres, s.prio = false, nil, 0
	}
}

// Take returns the stanzas the session was sent and forgets them.
func (s *Session) Take() []*stanza.Stanza {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.sent
	s.sent = nil
	return out
}

// TakeXML is Take with each stanza serialized.
func (s *Session) TakeXML() []string { return XML(s.Take()) }

// unavailable clears the presence state as the core does when a session
// is unbound.
func (s *Session) unavailable() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.avail, s.pres = false, nil
}
