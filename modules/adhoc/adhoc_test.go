package adhoc

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/palisade-im/palisade/modules/disco"
	"github.com/palisade-im/palisade/server/element"
	"github.com/palisade-im/palisade/server/module"
	"github.com/palisade-im/palisade/server/module/moduletest"
	"github.com/palisade-im/palisade/server/stanza"
	"mellium.im/xmpp/jid"
)

type kickCall struct{ j, actor, reason string }

type fixture struct {
	m     *Module
	r     *moduletest.Router
	d     *disco.Module
	kicks []kickCall
	clock time.Time
	admin *moduletest.Session
	user  *moduletest.Session
}

func newFixture(t *testing.T, cfg Config) *fixture {
	t.Helper()
	f := &fixture{clock: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	h, r := moduletest.NewHost(t, func() []any { return []any{f.d, f.m} })
	h.Config.Server.Admins = []string{"alice@example.com"}
	h.Kick = func(j jid.JID, actor, reason string) int {
		f.kicks = append(f.kicks, kickCall{j.String(), actor, reason})
		return len(r.Sessions(j))
	}
	m, err := New(h, cfg)
	if err != nil {
		t.Fatal(err)
	}
	m.now = func() time.Time { return f.clock }
	d, err := disco.New(h, disco.Config{})
	if err != nil {
		t.Fatal(err)
	}
	f.m, f.r, f.d = m, r, d
	f.admin = r.Login(t, "alice@example.com/desk")
	f.user = r.Login(t, "bob@example.com/phone")
	return f
}

// run sends a <command/> set from sess.
func (f *fixture) run(t *testing.T, sess *moduletest.Session, attrs, inner string) (*element.Element, error) {
	t.Helper()
	return moduletest.RequestSession(t, f.m, sess, module.ScopeServer,
		`<iq type='set' to='example.com' id='c'><command xmlns='http://jabber.org/protocol/commands' `+attrs+`>`+inner+`</command></iq>`)
}

// execute starts end-user-session as sess and returns the sessionid.
func (f *fixture) execute(t *testing.T, sess *moduletest.Session) string {
	t.Helper()
	res, err := f.run(t, sess, `node='`+NodeEndUserSession+`' action='execute'`, "")
	if err != nil {
		t.Fatal(err)
	}
	if res.Attr("status") != "executing" || res.Attr("sessionid") == "" {
		t.Fatalf("execute: %s", moduletest.String(res))
	}
	return res.Attr("sessionid")
}

func submitForm(jids ...string) string {
	s := `<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/admin</value></field><field var='accountjids'>`
	for _, j := range jids {
		s += "<value>" + j + "</value>"
	}
	return s + "</field></x>"
}

func wantCmdErr(t *testing.T, err error, cond stanza.Condition, app string) {
	t.Helper()
	se, ok := err.(*stanza.Error)
	if !ok || se.Condition != cond {
		t.Fatalf("got %v, want %s", err, cond)
	}
	got := ""
	if se.App != nil {
		got = se.App.Local
		if se.App.Space != NS {
			t.Errorf("app condition in %s", se.App.Space)
		}
	}
	if got != app {
		t.Fatalf("app condition %q, want %q (%v)", got, app, err)
	}
}

// TestDiscovery: the commands node lists end-user-session to an
// administrator only; the server advertises the commands feature.
func TestDiscovery(t *testing.T) {
	f := newFixture(t, *DefaultConfig())
	items := func(from string) string {
		res, err := moduletest.Request(t, f.d, from, module.ScopeServer,
			`<iq type='get' to='example.com' id='i'><query xmlns='http://jabber.org/protocol/disco#items' node='http://jabber.org/protocol/commands'/></iq>`)
		if err != nil {
			t.Fatal(err)
		}
		return moduletest.String(res)
	}
	want := `<query xmlns="http://jabber.org/protocol/disco#items" node="http://jabber.org/protocol/commands">` +
		`<item jid="example.com" node="http://jabber.org/protocol/admin#end-user-session" name="End User Session"/></query>`
	if got := items("alice@example.com/desk"); got != want {
		t.Errorf("admin's list:\n got %s\nwant %s", got, want)
	}
	if got := items("bob@example.com/phone"); got != `<query xmlns="http://jabber.org/protocol/disco#items" node="http://jabber.org/protocol/commands"/>` {
		t.Errorf("non-admin's list: %s", got)
	}
	info := func(from, node string) (string, error) {
		res, err := moduletest.Request(t, f.d, from, module.ScopeServer,
			`<iq type='get' to='example.com' id='i'><query xmlns='http://jabber.org/protocol/disco#info' node='`+node+`'/></iq>`)
		return moduletest.String(res), err
	}
	got, err := info("alice@example.com/desk", NodeEndUserSession)
	if err != nil || !strings.Contains(got, `<identity category="automation" type="command-node" name="End User Session"/>`) ||
		!strings.Contains(got, `<feature var="http://jabber.org/protocol/commands"/><feature var="jabber:x:data"/>`) {
		t.Errorf("command node info: %s %v", got, err)
	}
	if _, err := info("bob@example.com/phone", NodeEndUserSession); moduletest.Condition(err) != stanza.ItemNotFound {
		t.Errorf("non-admin command node info: %v", err)
	}
	if !strings.Contains(moduletest.String(f.d.ServerInfo().Element("")), `<feature var="http://jabber.org/protocol/commands"/>`) {
		t.Error("server info lacks the commands feature")
	}
}

// TestEndUserSession: execute returns the XEP-0133 form, the submission
// kicks each account with the administrator as actor and completes with a
// note; the session is gone after.
func TestEndUserSession(t *testing.T) {
	f := newFixture(t, *DefaultConfig())
	res, err := f.run(t, f.admin, `node='`+NodeEndUserSession+`'`, "") // action defaults to execute
	if err != nil {
		t.Fatal(err)
	}
	id := res.Attr("sessionid")
	got := moduletest.String(res)
	for _, want := range []string{
		`<command xmlns="http://jabber.org/protocol/commands" node="http://jabber.org/protocol/admin#end-user-session" sessionid="` + id + `" status="executing">`,
		`<actions execute="complete"><complete/></actions>`,
		`<x xmlns="jabber:x:data" type="form">`,
		`<field type="hidden" var="FORM_TYPE"><value>http://jabber.org/protocol/admin</value></field>`,
		`<field type="jid-multi" var="accountjids" label="The Jabber ID(s) for which to end sessions"><required/></field>`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("form lacks %s:\n%s", want, got)
		}
	}
	if f.m.Open() != 1 {
		t.Errorf("open sessions = %d", f.m.Open())
	}
	res, err = f.run(t, f.admin, `node='`+NodeEndUserSession+`' sessionid='`+id+`' action='complete'`,
		submitForm("bob@example.com", "carol@example.com", "bob@example.com"))
	if err != nil {
		t.Fatal(err)
	}
	want := `<command xmlns="http://jabber.org/protocol/commands" node="http://jabber.org/protocol/admin#end-user-session" sessionid="` + id + `" status="completed">` +
		`<note type="info">bob@example.com: 1 session(s) ended; carol@example.com: no session</note></command>`
	if got := moduletest.String(res); got != want {
		t.Errorf("completed:\n got %s\nwant %s", got, want)
	}
	wantKicks := []kickCall{{"bob@example.com", "alice@example.com", ReasonEndUserSession}, {"carol@example.com", "alice@example.com", ReasonEndUserSession}}
	if len(f.kicks) != 2 || f.kicks[0] != wantKicks[0] || f.kicks[1] != wantKicks[1] {
		t.Errorf("kicks = %+v, want %+v", f.kicks, wantKicks)
	}
	if f.m.Open() != 0 {
		t.Errorf("open sessions after completion = %d", f.m.Open())
	}
	_, err = f.run(t, f.admin, `node='`+NodeEndUserSession+`' sessionid='`+id+`'`, submitForm("bob@example.com"))
	wantCmdErr(t, err, stanza.BadRequest, "bad-sessionid")

	// One step: the form submitted with the execute request.
	f.kicks = nil
	res, err = f.run(t, f.admin, `node='`+NodeEndUserSession+`' action='execute'`, submitForm("bob@example.com/phone"))
	if err != nil || res.Attr("status") != "completed" || res.Attr("sessionid") == "" || len(f.kicks) != 1 || f.kicks[0].j != "bob@example.com/phone" {
		t.Errorf("one step: %s %v %+v", moduletest.String(res), err, f.kicks)
	}
	if f.m.Open() != 0 {
		t.Errorf("a one-step command left %d session(s) open", f.m.Open())
	}
}

// TestBadInput: every XEP-0050 error, and nothing kicked by a submission
// naming a remote or invalid JID.
func TestBadInput(t *testing.T) {
	f := newFixture(t, *DefaultConfig())
	node := `node='` + NodeEndUserSession + `'`

	_, err := f.run(t, f.user, node, "")
	wantCmdErr(t, err, stanza.Forbidden, "")
	_, err = moduletest.Request(t, f.m, "alice@example.com/desk", module.ScopeServer, // no local session
		`<iq type='set' to='example.com' id='c'><command xmlns='http://jabber.org/protocol/commands' `+node+`/></iq>`)
	wantCmdErr(t, err, stanza.Forbidden, "")
	_, err = f.run(t, f.admin, `node='http://jabber.org/protocol/admin#delete-user'`, "")
	wantCmdErr(t, err, stanza.ItemNotFound, "")
	_, err = moduletest.RequestSession(t, f.m, f.admin, module.ScopeServer,
		`<iq type='get' to='example.com' id='c'><command xmlns='http://jabber.org/protocol/commands' `+node+`/></iq>`)
	wantCmdErr(t, err, stanza.BadRequest, "")
	_, err = f.run(t, f.admin, node+` action='explode'`, "")
	wantCmdErr(t, err, stanza.BadRequest, "malformed-action")
	_, err = f.run(t, f.admin, node+` action='next'`, "")
	wantCmdErr(t, err, stanza.BadRequest, "bad-action")
	_, err = f.run(t, f.admin, node+` action='cancel'`, "")
	wantCmdErr(t, err, stanza.BadRequest, "bad-sessionid")
	_, err = f.run(t, f.admin, node+` sessionid='nosuch' action='complete'`, submitForm("bob@example.com"))
	wantCmdErr(t, err, stanza.BadRequest, "bad-sessionid")

	id := f.execute(t, f.admin)
	s := node + ` sessionid='` + id + `'`
	_, err = f.run(t, f.admin, s+` action='prev'`, "")
	wantCmdErr(t, err, stanza.BadRequest, "bad-action")
	_, err = f.run(t, f.admin, s+` action='complete'`, "")
	wantCmdErr(t, err, stanza.BadRequest, "bad-payload")
	_, err = f.run(t, f.admin, s, `<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>urn:other</value></field></x>`)
	wantCmdErr(t, err, stanza.BadRequest, "bad-payload")
	_, err = f.run(t, f.admin, s, submitForm())
	wantCmdErr(t, err, stanza.BadRequest, "bad-payload")
	_, err = f.run(t, f.admin, s, `<x xmlns='jabber:x:data' type='form'/>`)
	wantCmdErr(t, err, stanza.BadRequest, "bad-payload")
	// Another resource of the same administrator does not own the session.
	other := f.r.Login(t, "alice@example.com/laptop")
	_, err = f.run(t, other, s, submitForm("bob@example.com"))
	wantCmdErr(t, err, stanza.BadRequest, "bad-sessionid")
	// Nor does another node.
	_, err = f.run(t, f.admin, `node='`+NS+`' sessionid='`+id+`'`, submitForm("bob@example.com"))
	wantCmdErr(t, err, stanza.ItemNotFound, "")
	if len(f.kicks) != 0 || f.m.Open() != 1 {
		t.Fatalf("after refused requests: kicks %+v, open %d", f.kicks, f.m.Open())
	}

	// A remote or invalid JID: an error note, nobody kicked, completed.
	res, err := f.run(t, f.admin, s, submitForm("bob@example.com", "romeo@montague.example", "@bad"))
	if err != nil {
		t.Fatal(err)
	}
	got := moduletest.String(res)
	if res.Attr("status") != "completed" || !strings.Contains(got, `<note type="error">`) ||
		!strings.Contains(got, "romeo@montague.example is not an account of this server") ||
		!strings.Contains(got, `"@bad" is not an account JID`) || !strings.Contains(got, "no session was ended") {
		t.Errorf("remote JID: %s", got)
	}
	if len(f.kicks) != 0 {
		t.Errorf("kicked with a bad JID in the list: %+v", f.kicks)
	}
}

// TestCancel: action cancel and a cancelled form end the session.
func TestCancel(t *testing.T) {
	f := newFixture(t, *DefaultConfig())
	node := `node='` + NodeEndUserSession + `'`
	id := f.execute(t, f.admin)
	res, err := f.run(t, f.admin, node+` sessionid='`+id+`' action='cancel'`, "")
	if err != nil || moduletest.String(res) != `<command xmlns="http://jabber.org/protocol/commands" node="`+NodeEndUserSession+`" sessionid="`+id+`" status="canceled"/>` {
		t.Fatalf("cancel: %s %v", moduletest.String(res), err)
	}
	_, err = f.run(t, f.admin, node+` sessionid='`+id+`'`, submitForm("bob@example.com"))
	wantCmdErr(t, err, stanza.BadRequest, "bad-sessionid")

	id = f.execute(t, f.admin)
	res, err = f.run(t, f.admin, node+` sessionid='`+id+`'`, `<x xmlns='jabber:x:data' type='cancel'/>`)
	if err != nil || res.Attr("status") != "canceled" || f.m.Open() != 0 || len(f.kicks) != 0 {
		t.Fatalf("cancelled form: %s %v open %d", moduletest.String(res), err, f.m.Open())
	}
}

// TestSessionLimits: sessions time out (session-expired), are bounded in
// number overall and per requester, and end with the requester's session.
func TestSessionLimits(t *testing.T) {
	f := newFixture(t, Config{SessionTimeout: DefaultConfig().SessionTimeout, MaxSessions: 10})
	node := `node='` + NodeEndUserSession + `'`
	id := f.execute(t, f.admin)
	f.clock = f.clock.Add(5 * time.Minute)
	_, err := f.run(t, f.admin, node+` sessionid='`+id+`'`, submitForm("bob@example.com"))
	wantCmdErr(t, err, stanza.NotAllowed, "session-expired")
	if f.m.Open() != 0 || len(f.kicks) != 0 {
		t.Fatalf("expired: open %d kicks %+v", f.m.Open(), f.kicks)
	}

	// One requester keeps at most perOwner: the oldest goes.
	var ids []string
	for i := 0; i < perOwner+2; i++ {
		ids = append(ids, f.execute(t, f.admin))
		f.clock = f.clock.Add(time.Second)
	}
	if f.m.Open() != perOwner {
		t.Fatalf("open = %d, want %d", f.m.Open(), perOwner)
	}
	_, err = f.run(t, f.admin, node+` sessionid='`+ids[0]+`' action='cancel'`, "")
	wantCmdErr(t, err, stanza.BadRequest, "bad-sessionid")
	if _, err := f.run(t, f.admin, node+` sessionid='`+ids[len(ids)-1]+`' action='cancel'`, ""); err != nil {
		t.Fatalf("newest: %v", err)
	}

	// The server holds at most max_sessions.
	laptop := f.r.Login(t, "alice@example.com/laptop")
	for f.m.Open() < 10 {
		f.execute(t, laptop)
	}
	_, err = f.run(t, laptop, node, "")
	wantCmdErr(t, err, stanza.ResourceConstraint, "")

	// A requester's sessions end with its session.
	f.m.SessionEnded(context.Background(), laptop)
	if f.m.Open() != perOwner-1 {
		t.Errorf("open after laptop left = %d, want %d", f.m.Open(), perOwner-1)
	}
	// And all of them after the timeout.
	f.clock = f.clock.Add(time.Hour)
	f.execute(t, f.admin)
	if f.m.Open() != 1 {
		t.Errorf("open after the timeout = %d, want 1", f.m.Open())
	}
}

func TestConfig(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	err := (&Config{SessionTimeout: 0, MaxSessions: 0}).Validate()
	if err == nil || !strings.Contains(err.Error(), "session_timeout") || !strings.Contains(err.Error(), "max_sessions") {
		t.Errorf("err = %v", err)
	}
}
