package blocking

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/palisade-im/palisade/server/module"
	"github.com/palisade-im/palisade/server/module/moduletest"
	"github.com/palisade-im/palisade/server/stanza"
	"github.com/palisade-im/palisade/storage"
)

// countingStore counts block list reads.
type countingStore struct {
	Store
	reads atomic.Int32
}

func (c *countingStore) Blocked(ctx context.Context, user string) ([]string, error) {
	c.reads.Add(1)
	return c.Store.Blocked(ctx, user)
}

type env struct {
	t     *testing.T
	m     *Module
	r     *moduletest.Router
	store *countingStore
}

func newEnv(t *testing.T, cfg Config) *env {
	t.Helper()
	h, r := moduletest.NewHost(t, nil)
	cs := &countingStore{Store: h.Store}
	m, err := New(r, cs, h.Log, h.Audit, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, m: m, r: r, store: cs}
}

// online binds an available session.
func (e *env) online(full string) *moduletest.Session {
	s := e.r.Login(e.t, full)
	s.UpdatePresence(moduletest.Parse(e.t, `<presence><show>away</show></presence>`))
	return s
}

func (e *env) check(xml string) *module.Denial {
	e.t.Helper()
	return e.m.Check(context.Background(), moduletest.Parse(e.t, xml))
}

func TestBlockListAndPushes(t *testing.T) {
	e := newEnv(t, *DefaultConfig())
	chamber := e.online("juliet@example.com/chamber")
	balcony := e.online("juliet@example.com/balcony")
	if _, err := e.r.Store().PutItem(context.Background(), "juliet@example.com",
		storage.RosterItem{JID: "romeo@montague.net", Subscription: storage.SubBoth}); err != nil {
		t.Fatal(err)
	}

	// XEP-0191 section 3.2: the (empty) block list; chamber now wants pushes.
	res, err := moduletest.RequestSession(t, e.m, chamber, module.ScopeAccount,
		`<iq type='get' id='blocklist1'><blocklist xmlns='urn:xmpp:blocking'/></iq>`)
	if err != nil || moduletest.String(res) != `<blocklist xmlns="urn:xmpp:blocking"/>` {
		t.Fatalf("blocklist: %s, %v", moduletest.String(res), err)
	}

	// Section 3.3: block romeo.
	res, err = moduletest.RequestSession(t, e.m, balcony, module.ScopeAccount,
		`<iq from='juliet@example.com/balcony' type='set' id='block1'><block xmlns='urn:xmpp:blocking'><item jid='romeo@montague.net'/></block></iq>`)
	if err != nil || res != nil {
		t.Fatalf("block: %s, %v", moduletest.String(res), err)
	}
	// The push goes only to the session that fetched the list.
	got := chamber.TakeXML()
	if len(got) != 1 {
		t.Fatalf("pushes to chamber: %v", got)
	}
	push := moduletest.Parse(t, got[0])
	if push.Type != "set" || push.From.String() != "juliet@example.com" || push.To.String() != "juliet@example.com/chamber" ||
		moduletest.String(push.Payload()) != `<block xmlns="urn:xmpp:blocking"><item jid="romeo@montague.net"/></block>` {
		t.Errorf("push %s", got[0])
	}
	if got := balcony.TakeXML(); len(got) != 0 {
		t.Errorf("balcony did not fetch the list but got %v", got)
	}
	// Section 3.3: romeo (subscribed) sees both resources go unavailable.
	want := []string{
		`<presence xmlns="jabber:client" type="unavailable" from="juliet@example.com/chamber" to="romeo@montague.net"/>`,
		`<presence xmlns="jabber:client" type="unavailable" from="juliet@example.com/balcony" to="romeo@montague.net"/>`,
	}
	if got := moduletest.XML(e.r.TakeRouted()); !slices.Equal(got, want) {
		t.Errorf("presence:\n got %v\nwant %v", got, want)
	}

	res, err = moduletest.RequestSession(t, e.m, chamber, module.ScopeAccount,
		`<iq type='get' id='blocklist2'><blocklist xmlns='urn:xmpp:blocking'/></iq>`)
	if err != nil || moduletest.String(res) != `<blocklist xmlns="urn:xmpp:blocking"><item jid="romeo@montague.net"/></blocklist>` {
		t.Errorf("blocklist: %s, %v", moduletest.String(res), err)
	}

	// Section 3.4: unblock romeo; he gets the current presence again.
	if _, err := moduletest.RequestSession(t, e.m, balcony, module.ScopeAccount,
		`<iq type='set' id='unblock1'><unblock xmlns='urn:xmpp:blocking'><item jid='romeo@montague.net'/></unblock></iq>`); err != nil {
		t.Fatal(err)
	}
	got = chamber.TakeXML()
	if len(got) != 1 || moduletest.String(moduletest.Parse(t, got[0]).Payload()) != `<unblock xmlns="urn:xmpp:blocking"><item jid="romeo@montague.net"/></unblock>` {
		t.Errorf("unblock push %v", got)
	}
	want = []string{
		`<presence xmlns="jabber:client" from="juliet@example.com/chamber" to="romeo@montague.net"><show>away</show></presence>`,
		`<presence xmlns="jabber:client" from="juliet@example.com/balcony" to="romeo@montague.net"><show>away</show></presence>`,
	}
	if got := moduletest.XML(e.r.TakeRouted()); !slices.Equal(got, want) {
		t.Errorf("presence:\n got %v\nwant %v", got, want)
	}

	// Section 3.5: unblock all.
	for _, j := range []string{"iago@shakespeare.lit", "mercutio@montague.net"} {
		if _, err := moduletest.RequestSession(t, e.m, balcony, module.ScopeAccount,
			`<iq type='set' id='b'><block xmlns='urn:xmpp:blocking'><item jid='`+j+`'/></block></iq>`); err != nil {
			t.Fatal(err)
		}
	}
	chamber.TakeXML()
	if _, err := moduletest.RequestSession(t, e.m, balcony, module.ScopeAccount,
		`<iq type='set' id='unblock2'><unblock xmlns='urn:xmpp:blocking'/></iq>`); err != nil {
		t.Fatal(err)
	}
	got = chamber.TakeXML()
	if len(got) != 1 || moduletest.String(moduletest.Parse(t, got[0]).Payload()) != `<unblock xmlns="urn:xmpp:blocking"/>` {
		t.Errorf("unblock-all push %v", got)
	}
	res, _ = moduletest.RequestSession(t, e.m, chamber, module.ScopeAccount,
		`<iq type='get' id='blocklist3'><blocklist xmlns='urn:xmpp:blocking'/></iq>`)
	if moduletest.String(res) != `<blocklist xmlns="urn:xmpp:blocking"/>` {
		t.Errorf("after unblock all: %s", moduletest.String(res))
	}

	// A session that ended gets no pushes.
	e.r.Logout(chamber)
	e.m.SessionEnded(context.Background(), chamber)
	if _, err := moduletest.RequestSession(t, e.m, balcony, module.ScopeAccount,
		`<iq type='set' id='b2'><block xmlns='urn:xmpp:blocking'><item jid='iago@shakespeare.lit'/></block></iq>`); err != nil {
		t.Fatal(err)
	}
	if got := chamber.TakeXML(); len(got) != 0 {
		t.Errorf("ended session got %v", got)
	}
}

func TestPolicy(t *testing.T) {
	e := newEnv(t, *DefaultConfig())
	juliet := e.online("juliet@example.com/balcony")
	if _, err := moduletest.RequestSession(t, e.m, juliet, module.ScopeAccount, `<iq type='set' id='block1'><block xmlns='urn:xmpp:blocking'>
		<item jid='romeo@montague.net'/>
		<item jid='example.org'/>
		<item jid='tybalt@capulet.lit/sword'/>
		<item jid='chat.example.net/bot'/>
		<item jid='alice@example.com'/>
	</block></iq>`); err != nil {
		t.Fatal(err)
	}

	type want struct {
		blocked bool
		cond    stanza.Condition // "" when dropped silently
		app     bool             // <blocked/> present
	}
	for _, tc := range []struct {
		xml string
		want
	}{
		// Inbound (XEP-0191 section 3.3).
		{`<message from='romeo@montague.net/orchard' to='juliet@example.com' type='chat'><body>Hi</body></message>`, want{true, stanza.ServiceUnavailable, false}},
		{`<message from='romeo@montague.net/orchard' to='juliet@example.com/balcony'><body>Hi</body></message>`, want{true, stanza.ServiceUnavailable, false}},
		{`<message from='romeo@montague.net/orchard' to='juliet@example.com' type='error'/>`, want{true, "", false}},
		{`<presence from='romeo@montague.net/orchard' to='juliet@example.com'/>`, want{true, "", false}},
		{`<presence from='romeo@montague.net' to='juliet@example.com' type='subscribe'/>`, want{true, "", false}},
		{`<presence from='romeo@montague.net/orchard' to='juliet@example.com' type='probe'/>`, want{true, "", false}},
		{`<iq from='romeo@montague.net/orchard' to='juliet@example.com' type='get' id='v1'><vCard xmlns='vcard-temp'/></iq>`, want{true, stanza.ServiceUnavailable, false}},
		{`<iq from='romeo@montague.net/orchard' to='juliet@example.com/balcony' type='result' id='v1'/>`, want{true, "", false}},
		// Domain item: the domain and every JID at it.
		{`<message from='nurse@example.org/home' to='juliet@example.com'><body>x</body></message>`, want{true, stanza.ServiceUnavailable, false}},
		{`<message from='example.org' to='juliet@example.com'><body>x</body></message>`, want{true, stanza.ServiceUnavailable, false}},
		// ... and its subdomains (XEP-0191 section 6).
		{`<message from='muc.example.org/nick' to='juliet@example.com'><body>x</body></message>`, want{true, stanza.ServiceUnavailable, false}},
		{`<message from='a@b.example.org' to='juliet@example.com'><body>x</body></message>`, want{true, stanza.ServiceUnavailable, false}},
		{`<message from='notexample.org' to='juliet@example.com'><body>x</body></message>`, want{}},
		// Full JID item: only that resource.
		{`<message from='tybalt@capulet.lit/sword' to='juliet@example.com'><body>x</body></message>`, want{true, stanza.ServiceUnavailable, false}},
		{`<message from='tybalt@capulet.lit/home' to='juliet@example.com'><body>x</body></message>`, want{}},
		// domain/resource item.
		{`<message from='chat.example.net/bot' to='juliet@example.com'><body>x</body></message>`, want{true, stanza.ServiceUnavailable, false}},
		{`<message from='someone@chat.example.net/bot' to='juliet@example.com'><body>x</body></message>`, want{}},
		// Other senders pass.
		{`<message from='benvolio@montague.net/x' to='juliet@example.com'><body>x</body></message>`, want{}},
		// Outbound (section 3.3).
		{`<message from='juliet@example.com/balcony' to='romeo@montague.net' type='chat'><body>Hi</body></message>`, want{true, stanza.NotAcceptable, true}},
		{`<iq from='juliet@example.com/balcony' to='romeo@montague.net/orchard' type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>`, want{true, stanza.NotAcceptable, true}},
		{`<iq from='juliet@example.com/balcony' to='romeo@montague.net/orchard' type='result' id='p'/>`, want{true, "", false}},
		{`<presence from='juliet@example.com/balcony' to='romeo@montague.net'/>`, want{true, "", false}},
		{`<message from='juliet@example.com/balcony' to='nurse@example.org'><body>x</body></message>`, want{true, stanza.NotAcceptable, true}},
		// A local contact, both ways.
		{`<message from='alice@example.com/home' to='juliet@example.com'><body>x</body></message>`, want{true, stanza.ServiceUnavailable, false}},
		{`<message from='juliet@example.com/balcony' to='alice@example.com'><body>x</body></message>`, want{true, stanza.NotAcceptable, true}},
		// Someone else's list does not apply.
		{`<message from='bob@example.com/home' to='romeo@montague.net'><body>x</body></message>`, want{}},
		// The user's own account and the server.
		{`<iq from='juliet@example.com/balcony' to='juliet@example.com' type='get' id='b'><blocklist xmlns='urn:xmpp:blocking'/></iq>`, want{}},
		{`<iq from='juliet@example.com/balcony' to='example.com' type='get' id='b'><ping xmlns='urn:xmpp:ping'/></iq>`, want{}},
	} {
		d := e.check(tc.xml)
		if (d != nil) != tc.blocked {
			t.Errorf("%s: denial %+v", tc.xml, d)
			continue
		}
		if d == nil {
			continue
		}
		var cond stanza.Condition
		if d.Err != nil {
			cond = d.Err.Condition
		}
		if cond != tc.cond || (d.Err != nil && (d.Err.App != nil) != tc.app) {
			t.Errorf("%s: %+v, want %+v", tc.xml, d.Err, tc.want)
		}
		if d.Err != nil && tc.app {
			want := `<error xmlns="jabber:client" type="cancel"><not-acceptable xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/><blocked xmlns="urn:xmpp:blocking:errors"/></error>`
			if got := d.Err.Element().String(); got != want {
				t.Errorf("error element %s", got)
			}
		}
	}
}

func TestOwnDomainBlocked(t *testing.T) {
	e := newEnv(t, *DefaultConfig())
	juliet := e.online("juliet@example.com/balcony")
	if _, err := moduletest.RequestSession(t, e.m, juliet, module.ScopeAccount,
		`<iq type='set' id='b'><block xmlns='urn:xmpp:blocking'><item jid='example.com'/></block></iq>`); err != nil {
		t.Fatal(err)
	}
	// She can still manage her list and talk to her server ...
	for _, x := range []string{
		`<iq from='juliet@example.com/balcony' to='juliet@example.com' type='set' id='u'><unblock xmlns='urn:xmpp:blocking'/></iq>`,
		`<iq from='juliet@example.com/balcony' to='example.com' type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>`,
		`<iq from='example.com' to='juliet@example.com/balcony' type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>`,
		`<message from='juliet@example.com/balcony' to='juliet@example.com/chamber'><body>note</body></message>`,
	} {
		if d := e.check(x); d != nil {
			t.Errorf("%s: %+v", x, d)
		}
	}
	// ... but not with the other users of the domain.
	if d := e.check(`<message from='bob@example.com/x' to='juliet@example.com'><body>x</body></message>`); d == nil {
		t.Error("bob not blocked")
	}
}

func TestCache(t *testing.T) {
	e := newEnv(t, *DefaultConfig())
	juliet := e.online("juliet@example.com/balcony")
	msg := `<message from='romeo@montague.net/orchard' to='juliet@example.com'><body>Hi</body></message>`
	for range 100 {
		if d := e.check(msg); d != nil {
			t.Fatal(d)
		}
	}
	if n := e.store.reads.Load(); n != 1 {
		t.Errorf("%d reads for 100 checks", n)
	}
	// A change reloads the list once.
	if _, err := moduletest.RequestSession(t, e.m, juliet, module.ScopeAccount,
		`<iq type='set' id='b'><block xmlns='urn:xmpp:blocking'><item jid='romeo@montague.net'/></block></iq>`); err != nil {
		t.Fatal(err)
	}
	for range 100 {
		if d := e.check(msg); d == nil {
			t.Fatal("not blocked")
		}
	}
	if n := e.store.reads.Load(); n != 2 {
		t.Errorf("%d reads after a change", n)
	}
	// The list is dropped with the user's last session and read again.
	e.r.Logout(juliet)
	e.m.SessionEnded(context.Background(), juliet)
	if d := e.check(msg); d == nil {
		t.Fatal("not blocked after reload")
	}
	if n := e.store.reads.Load(); n != 3 {
		t.Errorf("%d reads after the session ended", n)
	}
}

func TestCacheBound(t *testing.T) {
	e := newEnv(t, Config{MaxItems: 10, CacheSize: 2})
	for _, u := range []string{"a", "b", "c", "d"} {
		e.check(`<message from='romeo@montague.net/orchard' to='` + u + `@example.com'><body>Hi</body></message>`)
	}
	e.m.mu.RLock()
	n := len(e.m.cache)
	e.m.mu.RUnlock()
	if n > 2 {
		t.Errorf("cache holds %d lists", n)
	}
}

func TestErrors(t *testing.T) {
	e := newEnv(t, Config{MaxItems: 2, CacheSize: 10})
	juliet := e.online("juliet@example.com/balcony")
	for _, tc := range []struct {
		xml  string
		want stanza.Condition
	}{
		// Section 3.3: block without items.
		{`<iq type='set' id='block1'><block xmlns='urn:xmpp:blocking'/></iq>`, stanza.BadRequest},
		{`<iq type='set' id='block2'><block xmlns='urn:xmpp:blocking'><item jid='a@b@c'/></block></iq>`, stanza.JIDMalformed},
		{`<iq type='set' id='block3'><block xmlns='urn:xmpp:blocking'><item/></block></iq>`, stanza.JIDMalformed},
		{`<iq type='set' id='block4'><unblock xmlns='urn:xmpp:blocking'><item jid='@x'/></unblock></iq>`, stanza.JIDMalformed},
		{`<iq type='get' id='block5'><block xmlns='urn:xmpp:blocking'><item jid='x@y'/></block></iq>`, stanza.BadRequest},
		{`<iq type='set' id='block6'><blocklist xmlns='urn:xmpp:blocking'/></iq>`, stanza.BadRequest},
		{`<iq type='get' to='bob@example.com' id='block7'><blocklist xmlns='urn:xmpp:blocking'/></iq>`, stanza.Forbidden},
		{`<iq type='set' to='bob@example.com' id='block8'><block xmlns='urn:xmpp:blocking'><item jid='x@y'/></block></iq>`, stanza.Forbidden},
		{`<iq type='set' id='block9'><block xmlns='urn:xmpp:blocking'><item jid='a@y'/><item jid='b@y'/><item jid='c@y'/></block></iq>`, stanza.PolicyViolation},
	} {
		_, err := moduletest.RequestSession(t, e.m, juliet, module.ScopeAccount, tc.xml)
		if moduletest.Condition(err) != tc.want {
			t.Errorf("%s: %v, want %s", tc.xml, err, tc.want)
		}
	}
	// Blocking what is already blocked does not count twice.
	for range 2 {
		if _, err := moduletest.RequestSession(t, e.m, juliet, module.ScopeAccount,
			`<iq type='set' id='b'><block xmlns='urn:xmpp:blocking'><item jid='a@y'/><item jid='b@y'/></block></iq>`); err != nil {
			t.Fatal(err)
		}
	}
	if err := (&Config{}).Validate(); err == nil {
		t.Error("zero config accepted")
	}
}
