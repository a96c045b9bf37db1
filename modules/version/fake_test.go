package version

// Shared test scaffolding: a fake core (Router, Session) over a real
// SQLite store. The same file is used by each small module package.

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"path/filepath"
	"sync"
	"testing"

	"github.com/palisade-im/palisade/server/config"
	"github.com/palisade-im/palisade/server/element"
	"github.com/palisade-im/palisade/server/module"
	"github.com/palisade-im/palisade/server/stanza"
	"github.com/palisade-im/palisade/storage"
	"github.com/palisade-im/palisade/storage/sqlite"
	"go.uber.org/zap/zaptest"
	"mellium.im/xmpp/jid"
)

const testDomain = "example.com"

type fakeSession struct {
	mu      sync.Mutex
	j       jid.JID
	sent    []*stanza.Stanza
	prio    int
	avail   bool
	pres    *stanza.Stanza
	carbons bool
	closed  string
}

var _ module.Session = (*fakeSession)(nil)

func (s *fakeSession) JID() jid.JID { return s.j }
func (s *fakeSession) Send(st *stanza.Stanza) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sent = append(s.sent, st.Copy())
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
func (s *fakeSession) RosterRequested() bool { return false }
func (s *fakeSession) SetRosterRequested()   {}
func (s *fakeSession) Carbons() bool         { s.mu.Lock(); defer s.mu.Unlock(); return s.carbons }
func (s *fakeSession) SetCarbons(on bool)    { s.mu.Lock(); s.carbons = on; s.mu.Unlock() }
func (s *fakeSession) RemoteAddr() string    { return "192.0.2.1:1234" }
func (s *fakeSession) Close(cond, _ string) {
	s.mu.Lock()
	s.closed = cond
	s.mu.Unlock()
}

// take returns the serialized stanzas the session was sent and forgets them.
func (s *fakeSession) take() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, st := range s.sent {
		out = append(out, st.El.String())
	}
	s.sent = nil
	return out
}

// fakeRouter records what modules route and delivers IQs and messages to
// full JIDs of bound sessions.
type fakeRouter struct {
	store storage.Store

	mu        sync.Mutex
	sessions  map[string][]*fakeSession
	routed    []*stanza.Stanza
	processed []*stanza.Stanza
}

var _ module.Router = (*fakeRouter)(nil)

func (r *fakeRouter) Process(ctx context.Context, st *stanza.Stanza) error {
	r.mu.Lock()
	r.processed = append(r.processed, st.Copy())
	r.mu.Unlock()
	return nil
}

func (r *fakeRouter) Route(_ context.Context, st *stanza.Stanza) {
	r.mu.Lock()
	r.routed = append(r.routed, st.Copy())
	r.mu.Unlock()
	if st.To.Resourcepart() != "" {
		if s := r.Session(st.To); s != nil {
			s.Send(st)
		}
	}
}

func (r *fakeRouter) takeRouted() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, st := range r.routed {
		out = append(out, st.El.String())
	}
	r.routed = nil
	return out
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

func (r *fakeRouter) IsLocal(domain string) bool { return domain == testDomain }

func (r *fakeRouter) UserExists(ctx context.Context, bare jid.JID) (bool, error) {
	if !r.IsLocal(bare.Domainpart()) || bare.Localpart() == "" {
		return false, nil
	}
	_, err := r.store.GetUser(ctx, bare.Localpart(), bare.Domainpart())
	if errors.Is(err, storage.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// login binds a session for full.
func (r *fakeRouter) login(t *testing.T, full string) *fakeSession {
	t.Helper()
	s := &fakeSession{j: mustJID(t, full)}
	r.mu.Lock()
	b := s.j.Bare().String()
	r.sessions[b] = append(r.sessions[b], s)
	r.mu.Unlock()
	return s
}

// logout unbinds s as the core does before SessionEnded.
func (r *fakeRouter) logout(s *fakeSession) {
	r.mu.Lock()
	defer r.mu.Unlock()
	b := s.j.Bare().String()
	list := r.sessions[b]
	for i, x := range list {
		if x == s {
			r.sessions[b] = append(list[:i], list[i+1:]...)
			break
		}
	}
	s.mu.Lock()
	s.avail, s.pres = false, nil
	s.mu.Unlock()
}

// newHost returns a host over a fresh SQLite store holding the accounts
// alice, bob and juliet at example.com. mods lists the modules for
// Host.Modules.
func newHost(t *testing.T, mods func() []any) (*module.Host, *fakeRouter) {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "palisade.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	for _, u := range []string{"alice", "bob", "juliet"} {
		if err := st.CreateUser(ctx, storage.User{Localpart: u, Domain: testDomain}); err != nil {
			t.Fatal(err)
		}
	}
	r := &fakeRouter{store: st, sessions: map[string][]*fakeSession{}}
	cfg := config.Default()
	cfg.Server.Domains = []string{testDomain}
	return module.NewHost(r, st, zaptest.NewLogger(t), zaptest.NewLogger(t), cfg, mods), r
}

func mustJID(t testing.TB, s string) jid.JID {
	t.Helper()
	j, err := jid.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

// parse reads one stanza in jabber:client.
func parse(t testing.TB, s string) *stanza.Stanza {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader([]byte(s)))
	d.DefaultSpace = stanza.NSClient
	for {
		tok, err := d.Token()
		if err != nil {
			t.Fatalf("parse %s: %v", s, err)
		}
		if start, ok := tok.(xml.StartElement); ok {
			el, err := element.Read(d, start)
			if err != nil {
				t.Fatal(err)
			}
			st, err := stanza.Parse(el)
			if err != nil {
				t.Fatal(err)
			}
			return st
		}
	}
}

// request stamps an IQ as the core does (from the sender; no 'to' means
// the sender's bare JID) and runs it through the module's route for scope,
// without a local session.
func request(t testing.TB, m module.IQHandlers, from string, scope module.Scope, s string) (*element.Element, error) {
	t.Helper()
	return dispatch(t, m, nil, mustJID(t, from), scope, s)
}

// requestSess is request from a bound session.
func requestSess(t testing.TB, m module.IQHandlers, sess *fakeSession, scope module.Scope, s string) (*element.Element, error) {
	t.Helper()
	return dispatch(t, m, sess, sess.j, scope, s)
}

func dispatch(t testing.TB, m module.IQHandlers, sess *fakeSession, from jid.JID, scope module.Scope, s string) (*element.Element, error) {
	t.Helper()
	st := parse(t, s)
	st.SetFrom(from)
	if st.To.Equal(jid.JID{}) {
		st.To = st.From.Bare()
	}
	var ms module.Session
	if sess != nil {
		ms = sess
	}
	p := st.Payload()
	for _, rt := range m.IQRoutes() {
		if rt.Space == p.Space && rt.Local == p.Local && rt.Scope&scope != 0 {
			return rt.Handle(context.Background(), ms, st)
		}
	}
	return nil, stanza.Err(stanza.Cancel, stanza.ServiceUnavailable, "no route")
}

// condition returns the stanza error condition of err, or "".
func condition(err error) stanza.Condition {
	var se *stanza.Error
	if errors.As(err, &se) {
		return se.Condition
	}
	return ""
}

func str(el *element.Element) string {
	if el == nil {
		return ""
	}
	return el.String()
}
