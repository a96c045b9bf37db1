// Package moduletest is the fake core for module unit tests: a Router and
// Sessions that record what modules send, over a real SQLite store, and
// helpers to hand modules stanzas as the core does.
package moduletest

import (
	"context"
	"errors"
	"path/filepath"
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

// Domain is the one domain the fake core serves.
const Domain = "example.com"

// NewHost returns a host over a fresh SQLite store in t.TempDir() holding
// the accounts alice, bob, carol and juliet at Domain, with zaptest loggers
// and the default config serving Domain, and the Router it uses. modules
// is what Host.Modules returns (nil for none).
func NewHost(t testing.TB, modules func() []any) (*module.Host, *Router) {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "palisade.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	for _, u := range []string{"alice", "bob", "carol", "juliet"} {
		if err := st.CreateUser(ctx, storage.User{Localpart: u, Domain: Domain}); err != nil {
			t.Fatal(err)
		}
	}
	r := NewRouter(st)
	cfg := config.Default()
	cfg.Server.Domains = []string{Domain}
	return module.NewHost(r, st, zaptest.NewLogger(t), zaptest.NewLogger(t), cfg, modules), r
}

// JID parses s or fails the test.
func JID(t testing.TB, s string) jid.JID {
	t.Helper()
	j, err := jid.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

// Parse reads one stanza in jabber:client or fails the test.
func Parse(t testing.TB, s string) *stanza.Stanza {
	t.Helper()
	el, err := element.Parse([]byte(s), stanza.NSClient)
	if err != nil {
		t.Fatalf("parse %s: %v", s, err)
	}
	st, err := stanza.Parse(el)
	if err != nil {
		t.Fatalf("parse %s: %v", s, err)
	}
	return st
}

// Request stamps an IQ as the core does (from the sender; no 'to' means
// the sender's bare JID) and runs it through m's route for its payload and
// scope, without a local session. With no such route it returns
// service-unavailable, as the core answers.
func Request(t testing.TB, m module.IQHandlers, from string, scope module.Scope, iq string) (*element.Element, error) {
	t.Helper()
	return dispatch(t, m, nil, JID(t, from), scope, iq)
}

// RequestSession is Request from the bound session sess.
func RequestSession(t testing.TB, m module.IQHandlers, sess *Session, scope module.Scope, iq string) (*element.Element, error) {
	t.Helper()
	return dispatch(t, m, sess, sess.JID(), scope, iq)
}

func dispatch(t testing.TB, m module.IQHandlers, sess *Session, from jid.JID, scope module.Scope, iq string) (*element.Element, error) {
	t.Helper()
	st := Parse(t, iq)
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

// Condition returns the stanza error condition of err, or "".
func Condition(err error) stanza.Condition {
	var se *stanza.Error
	if errors.As(err, &se) {
		return se.Condition
	}
	return ""
}

// String serializes el ("" for nil).
func String(el *element.Element) string {
	if el == nil {
		return ""
	}
	return el.String()
}

// XML serializes each stanza.
func XML(list []*stanza.Stanza) []string {
	var out []string
	for _, st := range list {
		out = append(out, st.El.String())
	}
	return out
}
