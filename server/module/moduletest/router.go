package moduletest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/palisade-im/palisade/server/config"
	"github.com/palisade-im/palisade/server/module"
	"github.com/palisade-im/palisade/server/stanza"
	"github.com/palisade-im/palisade/storage"
	"mellium.im/xmpp/jid"
)

// ErrDenied is what Process returns for a stanza the deny function refuses.
var ErrDenied = errors.New("moduletest: denied")

// Router stands in for the core's router. It serves Domain only, keeps a
// table of bound sessions, records every stanza given to Process and Route,
// and delivers them:
//
//   - to another domain: recorded (see TakeRemote), nothing else;
//   - presence to a local account, when a presence handler is set: to its
//     InboundPresence;
//   - otherwise, to a local full JID: to the session bound there, if any.
type Router struct {
	store storage.Store

	mu        sync.Mutex
	sessions  map[string][]*Session
	processed []*stanza.Stanza
	routed    []*stanza.Stanza
	remote    []*stanza.Stanza
	deny      func(*stanza.Stanza) bool
	presence  module.PresenceHandler
	groups    map[string][]string  // by bare JID
	members   map[string][]jid.JID // by group
	rights    map[string]config.Rights
}

var _ module.Router = (*Router)(nil)

// NewRouter returns a router whose UserExists looks accounts up in st.
func NewRouter(st storage.Store) *Router {
	return &Router{store: st, sessions: map[string][]*Session{}}
}

// Store is the store the router looks accounts up in.
func (r *Router) Store() storage.Store { return r.store }

// SetDeny makes Process refuse (with ErrDenied, after recording) the
// stanzas for which deny returns true, as a policy denial would. nil
// refuses nothing.
func (r *Router) SetDeny(deny func(*stanza.Stanza) bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.deny = deny
}

// SetPresenceHandler makes the router deliver presence addressed to local
// accounts to h, as the core does with the presence module.
func (r *Router) SetPresenceHandler(h module.PresenceHandler) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.presence = h
}

// Process records st, applies the deny function and delivers st.
func (r *Router) Process(ctx context.Context, st *stanza.Stanza) error {
	r.mu.Lock()
	r.processed = append(r.processed, st.Copy())
	deny := r.deny
	r.mu.Unlock()
	if deny != nil && deny(st) {
		return ErrDenied
	}
	r.deliver(ctx, st)
	return nil
}

// Admit records st as processed and applies SetDeny, without delivering.
func (r *Router) Admit(ctx context.Context, st *stanza.Stanza) error {
	r.mu.Lock()
	r.processed = append(r.processed, st.Copy())
	deny := r.deny
	r.mu.Unlock()
	if deny != nil && deny(st) {
		return ErrDenied
	}
	return nil
}

// Route records st and delivers it.
func (r *Router) Route(ctx context.Context, st *stanza.Stanza) {
	r.mu.Lock()
	r.routed = append(r.routed, st.Copy())
	r.mu.Unlock()
	r.deliver(ctx, st)
}

func (r *Router) deliver(ctx context.Context, st *stanza.Stanza) {
	if !r.IsLocal(st.To.Domainpart()) {
		r.mu.Lock()
		r.remote = append(r.remote, st.Copy())
		r.mu.Unlock()
		return
	}
	if st.To.Localpart() == "" {
		return
	}
	r.mu.Lock()
	ph := r.presence
	r.mu.Unlock()
	if st.Kind == stanza.Presence && ph != nil {
		ph.InboundPresence(ctx, st)
		return
	}
	if st.To.Resourcepart() != "" {
		if s := r.Session(st.To); s != nil {
			s.Send(st)
		}
	}
}

// Sessions returns the sessions bound for bare, in login order.
func (r *Router) Sessions(bare jid.JID) []module.Session {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []module.Session
	for _, s := range r.sessions[bare.Bare().String()] {
		out = append(out, s)
	}
	return out
}

// Session returns the session bound to full, or nil.
func (r *Router) Session(full jid.JID) module.Session {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.sessions[full.Bare().String()] {
		if s.jid.Equal(full) {
			return s
		}
	}
	return nil
}

// SetGroups makes Groups answer groups for the account bare.
func (r *Router) SetGroups(bare string, groups ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.groups == nil {
		r.groups = map[string][]string{}
	}
	r.groups[bare] = groups
}

// Groups implements module.Router with what SetGroups set.
func (r *Router) Groups(bare jid.JID) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.groups[bare.String()]
}

// SetMembers makes GroupMembers answer members for group.
func (r *Router) SetMembers(group string, members ...jid.JID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.members == nil {
		r.members = map[string][]jid.JID{}
	}
	r.members[group] = members
}

// ClearMembers makes GroupMembers fail for group, as a directory that
// cannot be reached.
func (r *Router) ClearMembers(group string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.members, group)
}

// GroupMembers implements module.Router with what SetMembers set; a group
// never set is an error.
func (r *Router) GroupMembers(_ context.Context, group string) ([]jid.JID, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ms, ok := r.members[group]
	if !ok {
		return nil, fmt.Errorf("moduletest: no members set for group %s", group)
	}
	return slices.Clone(ms), nil
}

// IsLocal reports whether domain is Domain.
func (r *Router) IsLocal(domain string) bool { return domain == Domain }

// UserExists reports whether the store holds the local account bare.
func (r *Router) UserExists(ctx context.Context, bare jid.JID) (bool, error) {
	if !r.IsLocal(bare.Domainpart()) || bare.Localpart() == "" {
		return false, nil
	}
	_, err := r.store.GetUser(ctx, bare.Localpart(), bare.Domainpart())
	if errors.Is(err, storage.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// SetRights makes AccountRights return r for the account bare.
func (r *Router) SetRights(bare jid.JID, rights config.Rights) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.rights == nil {
		r.rights = map[string]config.Rights{}
	}
	r.rights[bare.Bare().String()] = rights
}

// AccountRights returns what SetRights set for the account, else the
// zero Rights (every right at its permissive default).
func (r *Router) AccountRights(bare jid.JID) config.Rights {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rights[bare.Bare().String()]
}

// Login binds a new session for the full JID full. It tells no module;
// callers run SessionStarted themselves where they test it.
func (r *Router) Login(t testing.TB, full string) *Session {
	t.Helper()
	s := &Session{jid: JID(t, full)}
	r.mu.Lock()
	defer r.mu.Unlock()
	b := s.jid.Bare().String()
	r.sessions[b] = append(r.sessions[b], s)
	return s
}

// Unbind removes s from the session table, as when a new session takes
// over its resource.
func (r *Router) Unbind(s *Session) {
	r.mu.Lock()
	defer r.mu.Unlock()
	b := s.jid.Bare().String()
	if i := slices.Index(r.sessions[b], s); i >= 0 {
		r.sessions[b] = slices.Delete(r.sessions[b], i, i+1)
	}
}

// Logout unbinds s and clears its presence, as the core does before
// SessionEnded (which the caller runs where it tests it).
func (r *Router) Logout(s *Session) {
	r.Unbind(s)
	s.unavailable()
}

// Routed returns what was given to Route so far, keeping it.
func (r *Router) Routed() []*stanza.Stanza {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.routed)
}

// TakeRouted returns what was given to Route and forgets it.
func (r *Router) TakeRouted() []*stanza.Stanza {
	return r.take(&r.routed)
}

// TakeProcessed returns what was given to Process and forgets it.
func (r *Router) TakeProcessed() []*stanza.Stanza {
	return r.take(&r.processed)
}

// TakeRemote returns what was delivered to other domains (through Process
// or Route) and forgets it.
func (r *Router) TakeRemote() []*stanza.Stanza {
	return r.take(&r.remote)
}

// take returns a recorded list and forgets it.
func (r *Router) take(list *[]*stanza.Stanza) []*stanza.Stanza {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := *list
	*list = nil
	return out
}
