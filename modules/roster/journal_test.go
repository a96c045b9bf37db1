package roster

import (
	"testing"

	"github.com/palisade-im/palisade/server/module/moduletest"
	"github.com/palisade-im/palisade/server/stanza"
	"github.com/palisade-im/palisade/storage"
)

// TestPresenceCopiesJournaled: the core journals a broadcast once, as the
// client sent it; every copy the module then processes to a contact or
// the user's resources, and the presence the server sends on a user's
// behalf, is marked Journaled, so the journal does not record it again.
// The client's directed presence is processed unmarked: it is its own
// original.
func TestPresenceCopiesJournaled(t *testing.T) {
	e := newEnv(t)
	const alice = "alice@example.com"
	for _, c := range []string{"bob@example.com", "carol@example.com"} {
		e.put(alice, storage.RosterItem{JID: c, Subscription: storage.SubBoth})
		e.put(c, storage.RosterItem{JID: alice, Subscription: storage.SubBoth})
	}
	e.online("bob@example.com/b")
	e.online("carol@example.com/c")
	home := e.online("alice@example.com/home")
	e.processed()

	check := func(what string, wantMarked bool, min int) {
		t.Helper()
		n := 0
		for _, st := range e.r.TakeProcessed() {
			if st.Kind != stanza.Presence || st.Type == "probe" {
				continue
			}
			n++
			if st.Journaled != wantMarked {
				t.Errorf("%s: %s processed with Journaled = %v", what, summary(st), st.Journaled)
			}
		}
		if n < min {
			t.Errorf("%s: %d presence processed, want at least %d", what, n, min)
		}
	}

	// The core marks the original after journaling it; the copies keep it.
	st := presenceFrom(t, home, `<presence><status>at lunch</status></presence>`)
	st.Journaled = true
	home.UpdatePresence(st)
	e.m.OutboundPresence(e.ctx, home, st)
	check("status broadcast", true, 3) // bob, carol, alice's own resources

	e.presence(home, `<presence to='juliet@example.com/balcony'><status>psst</status></presence>`)
	check("directed presence", false, 1)

	// Unavailable from the server when the session ends: to the
	// contacts and to juliet, who had directed presence.
	e.logout(home)
	check("session end", true, 3)

	// Cancelling carol's subscription sends her unavailable presence
	// from each of alice's available resources (RFC 6121 3.2.2).
	work := e.online("alice@example.com/work")
	e.processed()
	e.presence(work, `<presence type='unsubscribed' to='carol@example.com'/>`)
	n := 0
	for _, st := range e.r.TakeProcessed() {
		if st.Kind == stanza.Presence && st.Type == "unavailable" {
			n++
			if !st.Journaled {
				t.Errorf("cancelled subscription: %s processed unmarked", summary(st))
			}
		}
	}
	if n != 1 {
		t.Errorf("cancelled subscription: %d unavailable presence processed, want 1", n)
	}
}

// presenceFrom parses presence from the client of s, stamped as the core does.
func presenceFrom(t *testing.T, s *moduletest.Session, xml string) *stanza.Stanza {
	t.Helper()
	st := moduletest.Parse(t, xml)
	st.SetFrom(s.JID())
	return st
}
