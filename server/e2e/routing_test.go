package e2e

import (
	"testing"
)

func TestFromStamping(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	alice := login(t, e, modeStartTLS, "alice", "a")
	bob := login(t, e, modeStartTLS, "bob", "b")
	alice.send("<message from='bob@localhost/x' to='bob@localhost/b' type='chat' id='s1'><body>spoof</body></message>")
	m := bob.expect(nsClient, "message")
	if m.A("from") != "alice@localhost/a" || m.A("id") != "s1" || m.Child(nsClient, "body").Text != "spoof" {
		t.Fatalf("got %s, want from alice@localhost/a", m)
	}
	// An IQ with a forged 'from' is answered to the real sender.
	alice.send("<iq type='get' id='s2' from='bob@localhost/b' to='localhost'><query xmlns='urn:e2e:none'/></iq>")
	r := alice.expect(nsClient, "iq")
	if r.A("id") != "s2" || r.A("to") != "alice@localhost/a" || r.stanzaError() != "service-unavailable" {
		t.Fatalf("got %s", r)
	}
	bob.nothing(quiet)
}

func TestMessageRules(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	bob := login(t, e, modeStartTLS, "bob", "b")
	a1 := login(t, e, modeStartTLS, "alice", "a1")
	a2 := login(t, e, modeStartTLS, "alice", "a2")

	t.Run("full JID", func(t *testing.T) {
		bob.send("<message to='alice@localhost/a2' type='chat' id='f1'><body>x</body></message>")
		if m := a2.expect(nsClient, "message"); m.A("id") != "f1" || m.A("to") != "alice@localhost/a2" {
			t.Fatalf("got %s", m)
		}
		a1.nothing(quiet)
	})
	t.Run("bare JID, highest priority", func(t *testing.T) {
		a1.available(5)
		a2.available(1)
		a1.sync()
		a2.sync()
		bob.send("<message to='alice@localhost' type='chat' id='b1'><body>x</body></message>")
		if m := a1.expect(nsClient, "message"); m.A("id") != "b1" {
			t.Fatalf("got %s", m)
		}
		a2.nothing(quiet)
	})
	t.Run("bare JID, negative priority never", func(t *testing.T) {
		a1.available(-1)
		a2.available(0)
		a1.sync()
		a2.sync()
		bob.send("<message to='alice@localhost' type='chat' id='n1'><body>x</body></message>")
		if m := a2.expect(nsClient, "message"); m.A("id") != "n1" {
			t.Fatalf("got %s", m)
		}
		a1.nothing(quiet)
		// Only a negative-priority resource left: it gets nothing, and
		// without offline storage the sender is told.
		a2.send("<presence type='unavailable'/>")
		a2.sync()
		bob.send("<message to='alice@localhost' type='chat' id='n2'><body>x</body></message>")
		if r := bob.expect(nsClient, "message"); r.A("id") != "n2" || r.stanzaError() != "service-unavailable" {
			t.Fatalf("got %s", r)
		}
		a1.nothing(quiet)
		// A message to a full JID still reaches a negative-priority resource.
		bob.send("<message to='alice@localhost/a1' type='chat' id='n3'><body>x</body></message>")
		if m := a1.expect(nsClient, "message"); m.A("id") != "n3" {
			t.Fatalf("got %s", m)
		}
	})
	t.Run("no such user", func(t *testing.T) {
		bob.send("<message to='nobody@localhost' type='chat' id='u1'><body>x</body></message>")
		r := bob.expect(nsClient, "message")
		if r.A("id") != "u1" || r.A("from") != "nobody@localhost" || r.A("to") != "bob@localhost/b" || r.stanzaError() != "service-unavailable" {
			t.Fatalf("got %s", r)
		}
		if r.Child(nsClient, "body") == nil {
			t.Errorf("error reply lost the original payload: %s", r)
		}
	})
	t.Run("iq to missing full JID", func(t *testing.T) {
		bob.send("<iq type='get' to='alice@localhost/gone' id='i1'><ping xmlns='urn:xmpp:ping'/></iq>")
		r := bob.expect(nsClient, "iq")
		if r.A("id") != "i1" || r.A("from") != "alice@localhost/gone" || r.stanzaError() != "service-unavailable" {
			t.Fatalf("got %s", r)
		}
	})
	t.Run("iq to present full JID and back", func(t *testing.T) {
		bob.send("<iq type='get' to='alice@localhost/a1' id='i2'><query xmlns='urn:e2e:q'/></iq>")
		q := a1.expect(nsClient, "iq")
		if q.A("id") != "i2" || q.A("from") != "bob@localhost/b" {
			t.Fatalf("got %s", q)
		}
		a1.send("<iq type='result' to='bob@localhost/b' id='i2'/>")
		if r := bob.expect(nsClient, "iq"); r.A("type") != "result" || r.A("from") != "alice@localhost/a1" {
			t.Fatalf("got %s", r)
		}
	})
	t.Run("unknown namespace to server", func(t *testing.T) {
		bob.send("<iq type='get' to='localhost' id='i3'><query xmlns='urn:e2e:unknown'/></iq>")
		r := bob.expect(nsClient, "iq")
		if r.A("id") != "i3" || r.A("from") != "localhost" || r.stanzaError() != "service-unavailable" {
			t.Fatalf("got %s", r)
		}
		if r.Child("urn:e2e:unknown", "query") == nil {
			t.Errorf("error reply lost the payload: %s", r)
		}
		// Without 'to': handled for the account.
		bob.send("<iq type='get' id='i4'><query xmlns='urn:e2e:unknown'/></iq>")
		if r := bob.expect(nsClient, "iq"); r.A("id") != "i4" || r.stanzaError() != "service-unavailable" {
			t.Fatalf("got %s", r)
		}
	})
	t.Run("two payloads", func(t *testing.T) {
		bob.send("<iq type='get' to='localhost' id='i5'><a xmlns='urn:e2e:a'/><b xmlns='urn:e2e:b'/></iq>")
		if r := bob.expect(nsClient, "iq"); r.A("id") != "i5" || r.stanzaError() != "bad-request" {
			t.Fatalf("got %s", r)
		}
		bob.send("<iq type='get' to='localhost' id='i6'/>")
		if r := bob.expect(nsClient, "iq"); r.A("id") != "i6" || r.stanzaError() != "bad-request" {
			t.Fatalf("no payload: got %s", r)
		}
	})
	t.Run("jid-malformed", func(t *testing.T) {
		bob.send("<message to='@localhost' id='j1'><body>x</body></message>")
		if r := bob.expect(nsClient, "message"); r.A("id") != "j1" || r.stanzaError() != "jid-malformed" {
			t.Fatalf("got %s", r)
		}
		bob.send("<iq type='get' to='a@b@c' id='j2'><ping xmlns='urn:xmpp:ping'/></iq>")
		if r := bob.expect(nsClient, "iq"); r.A("id") != "j2" || r.stanzaError() != "jid-malformed" {
			t.Fatalf("got %s", r)
		}
	})
	t.Run("remote domain", func(t *testing.T) {
		bob.send("<message to='someone@example.org' id='r1'><body>x</body></message>")
		if r := bob.expect(nsClient, "message"); r.A("id") != "r1" || r.stanzaError() != "policy-violation" { // not a partner
			t.Fatalf("got %s", r)
		}
	})
	a1.nothing(quiet)
	a2.nothing(quiet)
	bob.nothing(quiet)
}
