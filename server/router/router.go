// Package router keeps the table of bound client sessions and decides, by
// the RFC 6121 section 8 rules, which sessions a stanza addressed to a local
// account reaches.
package router

import (
	"sort"
	"sync"

	"github.com/palisade-im/palisade/server/module"
	"mellium.im/xmpp/jid"
)

// Table maps bare JIDs to their bound sessions. It is safe for concurrent use.
type Table struct {
	mu    sync.RWMutex
	users map[string][]module.Session
}

// NewTable returns an empty table.
func NewTable() *Table {
	return &Table{users: make(map[string][]module.Session)}
}

// Bind registers sess under its full JID. A session already bound to the
// same full JID is removed and returned so the caller can close it
// (resource conflict: the newest session wins, RFC 6120 7.7.2.2).
func (t *Table) Bind(sess module.Session) (replaced module.Session) {
	full := sess.JID()
	key := full.Bare().String()
	res := full.Resourcepart()
	t.mu.Lock()
	defer t.mu.Unlock()
	list := t.users[key]
	for i, s := range list {
		if s.JID().Resourcepart() == res {
			replaced = s
			list[i] = sess
			return replaced
		}
	}
	t.users[key] = append(list, sess)
	return nil
}

// Unbind removes sess if it is still the session bound to its JID.
func (t *Table) Unbind(sess module.Session) {
	key := sess.JID().Bare().String()
	t.mu.Lock()
	defer t.mu.Unlock()
	list := t.users[key]
	for i, s := range list {
		if s == sess {
			list = append(list[:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(t.users, key)
		return
	}
	t.users[key] = list
}

// Count returns how many sessions the bare JID has.
func (t *Table) Count(bare jid.JID) int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return len(t.users[bare.String()])
}

// Sessions returns a copy of the sessions of a bare JID.
func (t *Table) Sessions(bare jid.JID) []module.Session {
	t.mu.RLock()
	defer t.mu.RUnlock()
	list := t.users[bare.Bare().String()]
	if len(list) == 0 {
		return nil
	}
	out := make([]module.Session, len(list))
	copy(out, list)
	return out
}

// Session returns the session bound to the full JID, or nil.
func (t *Table) Session(full jid.JID) module.Session {
	res := full.Resourcepart()
	t.mu.RLock()
	defer t.mu.RUnlock()
	for _, s := range t.users[full.Bare().String()] {
		if s.JID().Resourcepart() == res {
			return s
		}
	}
	return nil
}

// Total returns the number of bound sessions.
func (t *Table) Total() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	n := 0
	for _, l := range t.users {
		n += len(l)
	}
	return n
}

// All returns every bound session (for shutdown and admin tools).
func (t *Table) All() []module.Session {
	t.mu.RLock()
	defer t.mu.RUnlock()
	var out []module.Session
	for _, l := range t.users {
		out = append(out, l...)
	}
	return out
}

// MessageTargets picks the sessions a message to a bare JID reaches (RFC
// 6121 8.5.2.1.1): the available resources with the highest non-negative
// priority. It returns nil when no resource qualifies.
func MessageTargets(sessions []module.Session) []module.Session {
	best := -1
	var out []module.Session
	for _, s := range sessions {
		if !s.Available() {
			continue
		}
		p := s.Priority()
		if p < 0 {
			continue
		}
		switch {
		case p > best:
			best = p
			out = append(out[:0], s)
		case p == best:
			out = append(out, s)
		}
	}
	sort.SliceStable(out, func(a, b int) bool { return out[a].JID().Resourcepart() < out[b].JID().Resourcepart() })
	return out
}

// Available returns the available sessions (any priority).
func Available(sessions []module.Session) []module.Session {
	var out []module.Session
	for _, s := range sessions {
		if s.Available() {
			out = append(out, s)
		}
	}
	return out
}
