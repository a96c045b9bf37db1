package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/palisade-im/palisade/modules/adhoc"   // XEP-0050, XEP-0133 end-user-session
	_ "github.com/palisade-im/palisade/modules/disco" // the commands node is listed by disco#items
	"github.com/palisade-im/palisade/server/config"
)

const (
	nsCommands = "http://jabber.org/protocol/commands"
	nsData     = "jabber:x:data"
	endSession = "http://jabber.org/protocol/admin#end-user-session"
)

// command sends a <command/> for end-user-session with attrs and inner XML
// and returns the answer.
func (c *client) command(id, attrs, inner string) *Node {
	c.t.Helper()
	c.send("<iq type='set' id='%s' to='%s'><command xmlns='%s' node='%s' %s>%s</command></iq>", id, domain, nsCommands, endSession, attrs, inner)
	n := c.expect(nsClient, "iq")
	if n.A("id") != id {
		c.t.Fatalf("%s: got %s, want the answer to %s", c.name(), n, id)
	}
	return n
}

// wantCommandError checks an error answer's condition and XEP-0050
// application condition ("" for none).
func wantCommandError(t *testing.T, n *Node, cond, app string) {
	t.Helper()
	if got := n.stanzaError(); got != cond {
		t.Fatalf("got %s, want error %s", n, cond)
	}
	if app != "" && n.Child(nsClient, "error").Child(nsCommands, app) == nil {
		t.Fatalf("got %s, want <%s xmlns='%s'/>", n, app, nsCommands)
	}
}

func submitAccounts(jids ...string) string {
	s := "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/admin</value></field><field var='accountjids'>"
	for _, j := range jids {
		s += "<value>" + j + "</value>"
	}
	return s + "</field></x>"
}

// TestAdhocEndUserSession: an administrator ([server] admins) lists the
// commands, runs End User Session in two stages, and bob's session ends
// with a stream error and cannot be resumed; a non-administrator sees no
// command and is refused; cancel and a bad sessionid are answered per
// XEP-0050; a remote JID gets an error note and ends nothing.
func TestAdhocEndUserSession(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *config.Config) { c.Server.Admins = []string{"alice@localhost"} })
	bob := login(t, e, modeStartTLS, "bob", "phone")
	smID := bob.enable()
	carol := login(t, e, modeStartTLS, "carol", "c")
	alice := login(t, e, modeStartTLS, "alice", "desk")

	items := func(c *client) *Node {
		c.send("<iq type='get' id='items' to='%s'><query xmlns='http://jabber.org/protocol/disco#items' node='%s'/></iq>", domain, nsCommands)
		n := c.expect(nsClient, "iq")
		if n.A("type") != "result" {
			t.Fatalf("%s: disco#items: %s", c.name(), n)
		}
		return n.Child("http://jabber.org/protocol/disco#items", "query")
	}

	// carol is not an administrator.
	if q := items(carol); q == nil || len(q.Nodes) != 0 {
		t.Errorf("carol's command list: %v", q)
	}
	wantCommandError(t, carol.command("c1", "action='execute'", ""), "forbidden", "")

	// alice sees the feature and the command.
	alice.send("<iq type='get' id='info' to='%s'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>", domain)
	if n := alice.expect(nsClient, "iq"); !strings.Contains(n.String(), nsCommands) {
		t.Errorf("server disco#info lacks %s: %s", nsCommands, n)
	}
	q := items(alice)
	if q == nil || len(q.Nodes) != 1 || q.Nodes[0].A("node") != endSession || q.Nodes[0].A("jid") != domain {
		t.Fatalf("alice's command list: %v", q)
	}

	// A bad sessionid, then a started and cancelled command.
	wantCommandError(t, alice.command("a1", "sessionid='nosuch' action='complete'", submitAccounts("bob@localhost")), "bad-request", "bad-sessionid")
	n := alice.command("a2", "action='execute'", "")
	cmd := n.Child(nsCommands, "command")
	if n.A("type") != "result" || cmd == nil || cmd.A("status") != "executing" || cmd.A("sessionid") == "" {
		t.Fatalf("execute: %s", n)
	}
	cancelled := cmd.A("sessionid")
	if n := alice.command("a3", "sessionid='"+cancelled+"' action='cancel'", ""); n.Child(nsCommands, "command").A("status") != "canceled" {
		t.Fatalf("cancel: %s", n)
	}
	wantCommandError(t, alice.command("a4", "sessionid='"+cancelled+"'", submitAccounts("bob@localhost")), "bad-request", "bad-sessionid")

	// The two stages: the form, then the submission.
	n = alice.command("a5", "action='execute'", "")
	cmd = n.Child(nsCommands, "command")
	form := cmd.Child(nsData, "x")
	if form == nil || form.A("type") != "form" || !strings.Contains(n.String(), "accountjids") || !strings.Contains(n.String(), "http://jabber.org/protocol/admin") {
		t.Fatalf("form: %s", n)
	}
	sid := cmd.A("sessionid")
	bob.nothing(quiet) // nothing happened to bob yet
	n = alice.command("a6", "sessionid='"+sid+"' action='complete'", submitAccounts("bob@localhost"))
	cmd = n.Child(nsCommands, "command")
	if n.A("type") != "result" || cmd.A("status") != "completed" || cmd.A("sessionid") != sid {
		t.Fatalf("submit: %s", n)
	}
	if note := cmd.Child(nsCommands, "note"); note == nil || note.A("type") != "info" || note.Text != "bob@localhost: 1 session(s) ended" {
		t.Errorf("note: %s", n)
	}
	bob.expectStreamError("policy-violation")
	if _, n := resumeLogin(t, e, modeStartTLS, "bob", smID, 0); !n.Is(nsSM, "failed") {
		t.Fatalf("bob resumed a session ended by an administrator: %s", n)
	}
	// The session is done; bob may log in again.
	login(t, e, modeStartTLS, "bob", "again")

	// A remote JID: an error note, nobody's session ends.
	n = alice.command("a7", "action='execute'", "")
	sid = n.Child(nsCommands, "command").A("sessionid")
	n = alice.command("a8", "sessionid='"+sid+"'", submitAccounts("carol@localhost", "romeo@montague.example"))
	note := n.Child(nsCommands, "command").Child(nsCommands, "note")
	if note == nil || note.A("type") != "error" || !strings.Contains(note.Text, "romeo@montague.example is not an account of this server") {
		t.Fatalf("remote JID: %s", n)
	}
	carol.sync() // carol's session is still up
}

// TestAdhocSessionLimits: [modules.adhoc] max_sessions bounds the started
// commands (resource-constraint), and after session_timeout a started
// command answers session-expired and frees its place.
func TestAdhocSessionLimits(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *config.Config) {
		c.Server.Admins = []string{"alice@localhost"}
		c.Modules["adhoc"] = config.Section{Name: "adhoc", Line: 1,
			Value: &adhoc.Config{SessionTimeout: config.Duration(time.Second), MaxSessions: 2}}
	})
	alice := login(t, e, modeStartTLS, "alice", "desk")
	var ids []string
	for i, id := range []string{"s1", "s2"} {
		n := alice.command(id, "", "")
		if n.A("type") != "result" {
			t.Fatalf("command %d: %s", i, n)
		}
		ids = append(ids, n.Child(nsCommands, "command").A("sessionid"))
	}
	wantCommandError(t, alice.command("s3", "", ""), "resource-constraint", "")
	time.Sleep(1100 * time.Millisecond)
	wantCommandError(t, alice.command("s4", "sessionid='"+ids[0]+"'", submitAccounts("bob@localhost")), "not-allowed", "session-expired")
	if n := alice.command("s5", "", ""); n.A("type") != "result" {
		t.Fatalf("after the timeout: %s", n)
	}
}
