package roster

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/palisade-im/palisade/server/element"
	"github.com/palisade-im/palisade/server/module"
	"github.com/palisade-im/palisade/server/stanza"
	"github.com/palisade-im/palisade/storage"
	"github.com/palisade-im/palisade/storage/sqlite"
	"go.uber.org/zap/zaptest"
	"mellium.im/xmpp/jid"
)

// fakeSession is a bound client resource that records what it is sent.
type fakeSession struct {
	mu        sync.Mutex
	j         jid.JID
	sent      []*stanza.Stanza
	pres      *stanza.Stanza
	prio      int
	avail     bool
	rosterReq bool
}

var _ module.Session = (*fakeSession)(nil)

func (s *fakeSession) JID() jid.JID { return s.j }
func (s *fakeSession) Send(st *stanza.Stanza) {
	s.mu.Lock()
	s.sent = append(s.sent, st.Copy())
	s.mu.Unlock()
}
func (s *fakeSession) Presence() *stanza.Stanza {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pres
}
func (s *fakeSession) Priority() int { s.mu.Lock(); defer s.mu.Unlock(); return s.prio }
func (s *fakeSession) Available() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.avail
}
func (s *fakeSession) RosterRequested() bool { s.mu.Lock(); defer s.mu.Unlock(); return s.rosterReq }
func (s *fakeSession) SetRosterRequested()   { s.mu.Lock(); s.rosterReq = true; s.mu.Unlock() }
func (s *fakeSession) Carbons() bool         { return false }
func (s *fakeSession) SetCarbons(bool)       {}
func (s *fakeSession) RemoteAddr() string    { return "127.0.0.1:1" }
func (s *fakeSession) Close(string, string)  {}

// update mirrors the core's bookkeeping of broadcast presence.
func (s *fakeSession) update(st *stanza.Stanza) {
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

// take returns summaries of what the session was sent and forgets it.
func (s *fakeSession) take() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := summaries(s.sent)
	s.sent = nil
	return out
}

// takeStanzas returns what the session was sent and forgets it.
func (s *fakeSession) takeStanzas() []*stanza.Stanza {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.sent
	s.sent = nil
	return out
}

// fakeRouter stands in for the core: Process and Route deliver presence
// for local accounts to the module's InboundPresence, IQs to full JIDs to
// sessions, and record what leaves the server.
type fakeRouter struct {
	mod   *Module
	store *sqlite.Store

	mu        sync.Mutex
	sessions  map[string][]*fakeSession
	processed []*stanza.Stanza
	routed    []*stanza.Stanza
	remote    []*stanza.Stanza
	deny      func(*stanza.Stanza) bool
}

var _ module.Router = (*fakeRouter)(nil)

func (r *fakeRouter) Process(ctx context.Context, st *stanza.Stanza) error {
	r.mu.Lock()
	r.processed = append(r.processed, st.Copy())
	deny := r.deny
	r.mu.Unlock()
	if deny != nil && deny(st) {
		return errors.New("denied")
	}
	r.deliver(ctx, st)
	return nil
}

func (r *fakeRouter) Route(ctx context.Context, st *stanza.Stanza) {
	r.mu.Lock()
	r.routed = append(r.routed, st.Copy())
	r.mu.Unlock()
	r.deliver(ctx, st)
}

func (r *fakeRouter) deliver(ctx context.Context, st *stanza.Stanza) {
	if !r.IsLocal(st.To.Domainpart()) {
		r.mu.Lock()
		r.remote = append(r.remote, st.Copy())
		r.mu.Unlock()
		return
	}
	if st.To.Localpart() == "" {
		return
	}
	switch st.Kind {
	case stanza.Presence:
		r.mod.InboundPresence(ctx, st)
	case stanza.IQ:
		if s := r.Session(st.To); s != nil {
			s.Send(st)
		}
	}
}

func (r *fakeRouter) Sessions(bare jid.JID) []module.Session {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []module.Session
	for _, s := range r.sessions[bare.Bare().String()] {
		out = append(out, s)
	}
	return out
}

func (r *fakeRouter) Session(full jid.JID) module.Session {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.sessions[full.Bare().String()] {
		if s.j.Equal(full) {
			return s
		}
	}
	return nil
}

func (r *fakeRouter) IsLocal(domain string) bool { return domain == "example.com" }

func (r *fakeRouter) UserExists(ctx context.Context, bare jid.JID) (bool, error) {
	_, err := r.store.GetUser(ctx, bare.Localpart(), bare.Domainpart())
	if errors.Is(err, storage.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// takeRemote returns summaries of the stanzas that left the server.
func (r *fakeRouter) takeRemote() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := summaries(r.remote)
	r.remote = nil
	return out
}

func (r *fakeRouter) takeProcessed() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := summaries(r.processed)
	r.processed = nil
	return out
}

// env is a module on a real SQLite store with local users alice, bob,
// carol and juliet at example.com.
type env struct {
	t     *testing.T
	ctx   context.Context
	r     *fakeRouter
	m     *Module
	store *sqlite.Store
}

func newEnv(t *testing.T) *env {
	return newEnvConfig(t, *DefaultConfig())
}

func newEnvConfig(t *testing.T, cfg Config) *env {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "palisade.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	for _, u := range []string{"alice", "bob", "carol", "juliet"} {
		if err := st.CreateUser(ctx, storage.User{Localpart: u, Domain: "example.com"}); err != nil {
			t.Fatal(err)
		}
	}
	r := &fakeRouter{store: st, sessions: map[string][]*fakeSession{}}
	m := newModule(r, st, zaptest.NewLogger(t), zaptest.NewLogger(t), cfg)
	r.mod = m
	return &env{t: t, ctx: ctx, r: r, m: m, store: st}
}

// login binds a resource.
func (e *env) login(full string) *fakeSession {
	e.t.Helper()
	s := &fakeSession{j: mustJID(e.t, full)}
	e.r.mu.Lock()
	b := s.j.Bare().String()
	e.r.sessions[b] = append(e.r.sessions[b], s)
	e.r.mu.Unlock()
	e.m.SessionStarted(e.ctx, s)
	return s
}

// online binds a resource that fetched the roster and sent initial
// presence, and forgets what that produced.
func (e *env) online(full string) *fakeSession {
	e.t.Helper()
	s := e.login(full)
	if _, err := e.iq(s, `<iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>`); err != nil {
		e.t.Fatal(err)
	}
	e.presence(s, `<presence/>`)
	return s
}

// logout unbinds a resource the way the core does: Available is cleared
// before SessionEnded.
func (e *env) logout(s *fakeSession) {
	e.r.mu.Lock()
	b := s.j.Bare().String()
	list := e.r.sessions[b]
	for i, x := range list {
		if x == s {
			list = append(list[:i], list[i+1:]...)
			break
		}
	}
	e.r.sessions[b] = list
	e.r.mu.Unlock()
	s.mu.Lock()
	s.avail, s.pres = false, nil
	s.mu.Unlock()
	e.m.SessionEnded(e.ctx, s)
}

// presence sends presence from a client as the core does.
func (e *env) presence(s *fakeSession, xml string) {
	e.t.Helper()
	st := parse(e.t, xml)
	st.SetFrom(s.j)
	if st.To.Equal(jid.JID{}) && (st.Type == "" || st.Type == "unavailable") {
		s.update(st)
	}
	e.m.OutboundPresence(e.ctx, s, st)
}

// iq dispatches an IQ from a client to the roster handler as the core does.
func (e *env) iq(s *fakeSession, xml string) (*element.Element, error) {
	e.t.Helper()
	st := parse(e.t, xml)
	var sess module.Session
	if s != nil {
		st.SetFrom(s.j)
		sess = s
		if st.To.Equal(jid.JID{}) {
			st.To = s.j.Bare()
		}
	}
	for _, rt := range e.m.IQRoutes() {
		p := st.Payload()
		if p.Space == rt.Space && p.Local == rt.Local {
			return rt.Handle(e.ctx, sess, st)
		}
	}
	e.t.Fatalf("no handler for %s", xml)
	return nil, nil
}

// inbound delivers presence from elsewhere to a local account.
func (e *env) inbound(xml string) {
	e.t.Helper()
	e.m.InboundPresence(e.ctx, parse(e.t, xml))
}

// item reads a stored item.
func (e *env) item(user, contact string) (storage.RosterItem, bool) {
	e.t.Helper()
	it, err := e.store.Item(e.ctx, user, contact)
	if errors.Is(err, storage.ErrNotFound) {
		return it, false
	}
	if err != nil {
		e.t.Fatal(err)
	}
	return it, true
}

// stateName is the Appendix A name of a stored item's state ("absent" when missing).
func (e *env) stateName(user, contact string) string {
	e.t.Helper()
	it, ok := e.item(user, contact)
	if !ok {
		return "absent"
	}
	return stateOf(it).String()
}

// put stores an item directly.
func (e *env) put(user string, it storage.RosterItem) {
	e.t.Helper()
	if _, err := e.store.PutItem(e.ctx, user, it); err != nil {
		e.t.Fatal(err)
	}
}

func mustJID(t testing.TB, s string) jid.JID {
	t.Helper()
	j, err := jid.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func parse(t testing.TB, xml string) *stanza.Stanza {
	t.Helper()
	st, err := deserialize([]byte(xml))
	if err != nil {
		t.Fatalf("parse %s: %v", xml, err)
	}
	return st
}

// summaries renders stanzas compactly for comparison: presence as
// "presence TYPE FROM > TO" and roster pushes as "push VER ITEM".
func summaries(list []*stanza.Stanza) []string {
	var out []string
	for _, st := range list {
		out = append(out, summary(st))
	}
	return out
}

func summary(st *stanza.Stanza) string {
	switch st.Kind {
	case stanza.Presence:
		typ := st.Type
		if typ == "" {
			typ = "available"
		}
		s := fmt.Sprintf("presence %s %s > %s", typ, st.From, st.To)
		if typ == "error" {
			if e := st.El.Child(stanza.NSClient, "error"); e != nil && e.FirstElement() != nil {
				s += " " + e.FirstElement().Local
			}
		}
		if status := st.El.ChildText(stanza.NSClient, "status"); status != "" {
			s += " status=" + status
		}
		return s
	case stanza.IQ:
		q := st.El.Child(NSRoster, "query")
		if st.Type == "set" && q != nil {
			var items []string
			for _, it := range q.Elements() {
				items = append(items, itemSummary(it))
			}
			return "push " + q.Attr("ver") + " " + strings.Join(items, ", ")
		}
	}
	return st.El.String()
}

func itemSummary(it *element.Element) string {
	s := it.Attr("jid") + " " + it.Attr("subscription")
	if it.Attr("ask") != "" {
		s += " ask=" + it.Attr("ask")
	}
	if it.Attr("approved") != "" {
		s += " approved=" + it.Attr("approved")
	}
	if it.Attr("name") != "" {
		s += " name=" + it.Attr("name")
	}
	for _, g := range it.Elements() {
		s += " group=" + g.Text()
	}
	return s
}
