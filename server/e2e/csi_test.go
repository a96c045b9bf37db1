package e2e

import (
	"testing"
)

func TestClientStateIndication(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	alice := login(t, e, modeStartTLS, "alice", "a")
	bob := login(t, e, modeStartTLS, "bob", "b")
	carol := login(t, e, modeStartTLS, "carol", "c")
	alice.available(0)
	alice.send("<inactive xmlns='urn:xmpp:csi:0'/>")
	alice.sync()

	// Presence updates are held while inactive; only the latest per sender is kept.
	bob.send("<presence to='alice@localhost/a'><status>one</status></presence>")
	bob.send("<presence to='alice@localhost/a'><status>two</status></presence>")
	carol.send("<presence to='alice@localhost/a'><show>away</show></presence>")
	bob.sync()
	carol.sync()
	alice.nothing(quiet)

	// A message flushes the held presence before itself.
	bob.send("<message to='alice@localhost/a' id='m1'><body>hi</body></message>")
	got := map[string]string{}
	for i := 0; i < 2; i++ {
		p := alice.expect(nsClient, "presence")
		got[p.A("from")] = p.String()
		if p.A("from") == "bob@localhost/b" && p.Child(nsClient, "status").Text != "two" {
			t.Errorf("held presence is not the latest: %s", p)
		}
	}
	if len(got) != 2 {
		t.Errorf("flushed presences: %v", got)
	}
	if m := alice.expect(nsClient, "message"); m.A("id") != "m1" {
		t.Fatalf("got %s", m)
	}
	alice.nothing(quiet)

	// Still inactive: held again, then <active/> flushes.
	bob.send("<presence to='alice@localhost/a' type='unavailable'/>")
	bob.sync()
	alice.nothing(quiet)
	alice.send("<active xmlns='urn:xmpp:csi:0'/>")
	if p := alice.expect(nsClient, "presence"); p.A("type") != "unavailable" || p.A("from") != "bob@localhost/b" {
		t.Fatalf("got %s", p)
	}
	// Active again: presence flows at once.
	carol.send("<presence to='alice@localhost/a'/>")
	if p := alice.expect(nsClient, "presence"); p.A("from") != "carol@localhost/c" {
		t.Fatalf("got %s", p)
	}
	// Presence with other types (subscription requests) is never held.
	alice.send("<inactive xmlns='urn:xmpp:csi:0'/>")
	alice.sync()
	bob.send("<presence to='alice@localhost/a' type='subscribe'/>")
	if p := alice.expect(nsClient, "presence"); p.A("type") != "subscribe" {
		t.Fatalf("got %s", p)
	}
}
