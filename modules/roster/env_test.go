package roster

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/palisade-im/palisade/server/element"
	"github.com/palisade-im/palisade/server/module"
	"github.com/palisade-im/palisade/server/module/moduletest"
	"github.com/palisade-im/palisade/server/stanza"
	"github.com/palisade-im/palisade/storage"
	"mellium.im/xmpp/jid"
)

// env is a module on the fake core (moduletest) with local users alice,
// bob, carol and juliet at example.com. The router hands presence for
// local accounts to the module's InboundPresence.
type env struct {
	t     *testing.T
	ctx   context.Context
	r     *moduletest.Router
	m     *Module
	store storage.Store
}

func newEnv(t *testing.T) *env {
	return newEnvConfig(t, *DefaultConfig())
}

func newEnvConfig(t *testing.T, cfg Config) *env {
	t.Helper()
	h, r := moduletest.NewHost(t, nil)
	m := newModule(h.Router, h.Store, h.Log, h.Audit, cfg)
	r.SetPresenceHandler(m)
	return &env{t: t, ctx: context.Background(), r: r, m: m, store: h.Store}
}

// login binds a resource.
func (e *env) login(full string) *moduletest.Session {
	e.t.Helper()
	s := e.r.Login(e.t, full)
	e.m.SessionStarted(e.ctx, s)
	return s
}

// online binds a resource that fetched the roster and sent initial
// presence, and forgets what that produced.
func (e *env) online(full string) *moduletest.Session {
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
func (e *env) logout(s *moduletest.Session) {
	e.r.Logout(s)
	e.m.SessionEnded(e.ctx, s)
}

// presence sends presence from a client as the core does.
func (e *env) presence(s *moduletest.Session, xml string) {
	e.t.Helper()
	st := moduletest.Parse(e.t, xml)
	st.SetFrom(s.JID())
	if st.To.Equal(jid.JID{}) && (st.Type == "" || st.Type == "unavailable") {
		s.UpdatePresence(st)
	}
	e.m.OutboundPresence(e.ctx, s, st)
}

// iq sends an IQ from a client to the roster handler as the core does.
func (e *env) iq(s *moduletest.Session, xml string) (*element.Element, error) {
	e.t.Helper()
	return moduletest.RequestSession(e.t, e.m, s, module.ScopeAccount, xml)
}

// inbound delivers presence from elsewhere to a local account.
func (e *env) inbound(xml string) {
	e.t.Helper()
	e.m.InboundPresence(e.ctx, moduletest.Parse(e.t, xml))
}

// processed returns summaries of what the module gave Router.Process and
// forgets it.
func (e *env) processed() []string { return summaries(e.r.TakeProcessed()) }

// remote returns summaries of the stanzas that left the server and
// forgets them.
func (e *env) remote() []string { return summaries(e.r.TakeRemote()) }

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

// take returns summaries of what s was sent and forgets it.
func take(s *moduletest.Session) []string { return summaries(s.Take()) }

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
