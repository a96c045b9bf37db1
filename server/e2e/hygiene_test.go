package e2e

import (
	"strings"
	"testing"
)

// Protocol hygiene for what a bound client sends (issue 13): stanzas that
// break RFC 6120/6121's rules are answered bad-request and go nowhere;
// what only a server may say is removed or refused before the journal
// and delivery; 'to' is rewritten in canonical form.

// expectError reads the next stanza and checks that it is an error of the
// kind, id and condition, with a text.
func (c *client) expectError(kind, id, cond string) *Node {
	c.t.Helper()
	n := c.expect(nsClient, kind)
	if n.A("id") != id || n.stanzaError() != cond {
		c.t.Fatalf("%s: got %s, want a %s error %s with id %q", c.name(), n, kind, cond, id)
	}
	if e := n.Child(nsClient, "error"); e.A("type") != "modify" || e.Child(nsStanzas, "text") == nil {
		c.t.Fatalf("%s: error without type modify or text: %s", c.name(), n)
	}
	return n
}

// TestHygieneIQ: an iq of an unknown type, a request without an id and a
// request with two payloads are answered bad-request and not forwarded
// (RFC 6120 8.1.3, 8.2.3).
func TestHygieneIQ(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	alice := login(t, e, modeStartTLS, "alice", "a")
	bob := login(t, e, modeStartTLS, "bob", "b")

	// To another user's resource: the server would forward it as it is.
	alice.send("<iq type='bogus' id='t1' to='bob@localhost/b'><query xmlns='urn:e2e:x'/></iq>")
	alice.expectError("iq", "t1", "bad-request")
	// To the server: it used to end unanswered among the replies.
	alice.send("<iq type='bogus' id='t2'><query xmlns='urn:e2e:x'/></iq>")
	alice.expectError("iq", "t2", "bad-request")
	alice.send("<iq type='get' to='localhost'><x xmlns='urn:e2e:sync'/></iq>")
	alice.expectError("iq", "", "bad-request")
	alice.send("<iq type='get' to='bob@localhost/b'><query xmlns='urn:e2e:x'/></iq>")
	alice.expectError("iq", "", "bad-request")
	alice.send("<iq type='set' id='t3' to='bob@localhost/b'><query xmlns='urn:e2e:x'/><query xmlns='urn:e2e:y'/></iq>")
	alice.expectError("iq", "t3", "bad-request")
	alice.send("<iq type='get' id='t4' to='bob@localhost/b'/>")
	alice.expectError("iq", "t4", "bad-request")
	// A response without an id answers nothing: dropped, not forwarded.
	alice.send("<iq type='result' to='bob@localhost/b'/>")
	alice.sync()
	bob.nothing(quiet)

	// A well-formed request still goes through.
	alice.send("<iq type='get' id='t5' to='bob@localhost/b'><query xmlns='urn:e2e:x'/></iq>")
	if n := bob.expect(nsClient, "iq"); n.A("id") != "t5" || n.A("from") != "alice@localhost/a" {
		t.Fatalf("bob got %s", n)
	}
}

// TestHygienePresence: a presence of a type RFC 6121 does not define is
// answered bad-request and not delivered.
func TestHygienePresence(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	alice := login(t, e, modeStartTLS, "alice", "a")
	bob := login(t, e, modeStartTLS, "bob", "b")

	alice.send("<presence type='bogus' id='p1' to='bob@localhost/b'/>")
	alice.expectError("presence", "p1", "bad-request")
	bob.nothing(quiet)
	alice.send("<presence id='p2' to='bob@localhost/b'/>")
	if n := bob.expect(nsClient, "presence"); n.A("id") != "p2" {
		t.Fatalf("bob got %s", n)
	}
}

// TestHygieneMessageType: a message type RFC 6121 does not define is
// treated, delivered and recorded as normal (5.2.2).
func TestHygieneMessageType(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	alice := login(t, e, modeStartTLS, "alice", "a")
	bob := login(t, e, modeStartTLS, "bob", "b")

	alice.send("<message type='bogus' id='mt1' to='bob@localhost/b'><body>typed</body></message>")
	n := bob.expect(nsClient, "message")
	if n.A("id") != "mt1" || n.A("type") != "normal" {
		t.Fatalf("bob got %s", n)
	}
	row := findRow(journalRows(t, e), "typed")
	if row == nil || row.typ != "normal" || strings.Contains(row.content, "bogus") {
		t.Fatalf("journal: %+v", row)
	}
}

// TestHygieneServerClaims: a client's message loses the delay stamps and
// stanza-ids only the server may set, before the journal records it; a
// message carrying a carbon copy or an archive result (which only the
// user's own server makes) is refused with bad-request, neither delivered
// nor recorded.
func TestHygieneServerClaims(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	alice := login(t, e, modeStartTLS, "alice", "a")
	bob := login(t, e, modeStartTLS, "bob", "b")

	alice.send("<message type='chat' id='s1' to='bob@localhost/b'><body>stamped</body>" +
		"<delay xmlns='urn:xmpp:delay' from='localhost' stamp='2001-01-01T00:00:00Z'>Offline Storage</delay>" +
		"<delay xmlns='urn:xmpp:delay' from='carol@localhost' stamp='2001-01-01T00:00:01Z'/>" +
		"<delay xmlns='urn:xmpp:delay' from='alice@localhost/a' stamp='2001-01-01T00:00:02Z'>composed offline</delay>" +
		"<stanza-id xmlns='urn:xmpp:sid:0' by='localhost' id='forged1'/>" +
		"<stanza-id xmlns='urn:xmpp:sid:0' by='localhost' id='forged2'/>" +
		"<stanza-id xmlns='urn:xmpp:sid:0' by='bob@localhost' id='forged3'/>" +
		"<origin-id xmlns='urn:xmpp:sid:0' id='own1'/></message>")
	n := bob.expect(nsClient, "message")
	if n.A("id") != "s1" {
		t.Fatalf("bob got %s", n)
	}
	var delays []string
	for _, c := range n.Nodes {
		switch {
		case c.Is("urn:xmpp:delay", "delay"):
			delays = append(delays, c.A("from"))
		case c.Is("urn:xmpp:sid:0", "stanza-id"):
			if strings.HasPrefix(c.A("id"), "forged") {
				t.Errorf("bob got the forged stanza-id %s", c)
			}
		}
	}
	if len(delays) != 1 || delays[0] != "alice@localhost/a" || n.Child("urn:xmpp:sid:0", "origin-id") == nil {
		t.Errorf("bob got %s: want only alice's own delay, and her origin-id", n)
	}
	row := findRow(journalRows(t, e), "stamped")
	if row == nil {
		t.Fatal("not journaled")
	}
	for _, bad := range []string{`from="localhost"`, "carol@localhost", "Offline Storage", "forged"} {
		if strings.Contains(row.content, bad) {
			t.Errorf("the journal holds %q: %s", bad, row.content)
		}
	}
	if !strings.Contains(row.content, "composed offline") || !strings.Contains(row.content, "own1") {
		t.Errorf("the journal lost what alice may say: %s", row.content)
	}

	forged := map[string]string{
		"carbon received": "<received xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'>" +
			"<message xmlns='jabber:client' from='carol@localhost/c' to='bob@localhost/b' type='chat'><body>forged-received</body></message>" +
			"</forwarded></received>",
		"carbon sent": "<sent xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'>" +
			"<message xmlns='jabber:client' from='bob@localhost/x' to='carol@localhost' type='chat'><body>forged-sent</body></message>" +
			"</forwarded></sent>",
		"mam result": "<result xmlns='urn:xmpp:mam:2' queryid='q1' id='h1'><forwarded xmlns='urn:xmpp:forward:0'>" +
			"<delay xmlns='urn:xmpp:delay' stamp='2001-01-01T00:00:00Z'/>" +
			"<message xmlns='jabber:client' from='carol@localhost/c' to='bob@localhost' type='chat'><body>forged-history</body></message>" +
			"</forwarded></result>",
	}
	i := 0
	for name, payload := range forged {
		i++
		id := "f" + string(rune('0'+i))
		alice.send("<message type='chat' id='%s' to='bob@localhost/b'><body>wrapped</body>%s</message>", id, payload)
		r := alice.expectError("message", id, "bad-request")
		if strings.Contains(r.String(), "forged") {
			t.Errorf("%s: the error returns the forged payload: %s", name, r)
		}
	}
	bob.nothing(quiet)
	if row := findRow(journalRows(t, e), "forged"); row != nil {
		t.Errorf("the journal holds a refused message: %+v", row)
	}

	// A message forwarded the XEP-0297 way is a client's to send.
	alice.send("<message type='chat' id='fw' to='bob@localhost/b'><body>see this</body><forwarded xmlns='urn:xmpp:forward:0'>" +
		"<message xmlns='jabber:client' from='carol@localhost/c' to='alice@localhost' type='chat'><body>quoted</body></message></forwarded></message>")
	if n := bob.expect(nsClient, "message"); n.A("id") != "fw" || n.Child("urn:xmpp:forward:0", "forwarded") == nil {
		t.Fatalf("bob got %s", n)
	}
}

// TestHygieneCanonicalTo: 'to' written with capitals is delivered, and
// recorded, in the address's canonical form.
func TestHygieneCanonicalTo(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	alice := login(t, e, modeStartTLS, "alice", "a")
	bob := login(t, e, modeStartTLS, "bob", "b")

	alice.send("<message type='chat' id='c1' to='BoB@LocalHost./b'><body>capitals</body></message>")
	n := bob.expect(nsClient, "message")
	if n.A("id") != "c1" || n.A("to") != "bob@localhost/b" {
		t.Fatalf("bob got %s", n)
	}
	row := findRow(journalRows(t, e), "capitals")
	if row == nil || row.to != "bob@localhost/b" || !strings.Contains(row.content, `to="bob@localhost/b"`) {
		t.Fatalf("journal: %+v", row)
	}
}
