package roster

import (
	"slices"
	"sync"
	"testing"

	"github.com/palisade-im/palisade/server/module/moduletest"
	"github.com/palisade-im/palisade/server/stanza"
	"github.com/palisade-im/palisade/storage"
)

// TestInitialPresence is RFC 6121 4.2: broadcast to subscribers, the
// user's resources, probes to the contacts the user is subscribed to.
func TestInitialPresence(t *testing.T) {
	e := newEnv(t)
	const alice = "alice@example.com"
	e.put(alice, storage.RosterItem{JID: "bob@example.com", Subscription: storage.SubBoth})
	e.put(alice, storage.RosterItem{JID: "carol@example.com", Subscription: storage.SubTo})
	e.put(alice, storage.RosterItem{JID: "juliet@example.com", Ask: true})
	e.put(alice, storage.RosterItem{JID: "romeo@example.net", Subscription: storage.SubFrom})
	e.put("bob@example.com", storage.RosterItem{JID: alice, Subscription: storage.SubBoth})
	e.put("carol@example.com", storage.RosterItem{JID: alice, Subscription: storage.SubFrom})
	bob := e.online("bob@example.com/work")
	carol := e.online("carol@example.com/pc")
	juliet := e.online("juliet@example.com/balcony")
	work := e.online("alice@example.com/work")
	for _, s := range []*moduletest.Session{bob, carol, juliet, work} {
		take(s)
	}
	e.processed()
	e.remote()

	home := e.login("alice@example.com/home")
	e.presence(home, `<presence><status>hi</status></presence>`)

	wantProcessed := []string{
		"presence available alice@example.com/home > bob@example.com status=hi",
		"presence available alice@example.com/home > romeo@example.net status=hi",
		"presence available alice@example.com/home > alice@example.com status=hi",
		"presence probe alice@example.com > bob@example.com",
		"presence probe alice@example.com > carol@example.com",
	}
	if got := e.processed(); !slices.Equal(got, wantProcessed) {
		t.Errorf("processed %q, want %q", got, wantProcessed)
	}
	if got := e.remote(); !slices.Equal(got, wantProcessed[1:2]) {
		t.Errorf("remote %q", got)
	}
	wantHome := []string{
		"presence available alice@example.com/home > alice@example.com status=hi",
		"presence available alice@example.com/work > alice@example.com/home",
		"presence available bob@example.com/work > alice@example.com",
		"presence available carol@example.com/pc > alice@example.com",
	}
	if got := take(home); !slices.Equal(got, wantHome) {
		t.Errorf("home got %q, want %q", got, wantHome)
	}
	wantWork := []string{
		"presence available alice@example.com/home > alice@example.com status=hi",
		"presence available bob@example.com/work > alice@example.com",
		"presence available carol@example.com/pc > alice@example.com",
	}
	if got := take(work); !slices.Equal(got, wantWork) {
		t.Errorf("work got %q, want %q", got, wantWork)
	}
	if got := take(bob); !slices.Equal(got, wantProcessed[:1]) {
		t.Errorf("bob got %q", got)
	}
	for _, s := range []*moduletest.Session{carol, juliet} {
		if got := take(s); len(got) != 0 {
			t.Errorf("%s got %q", s.JID(), got)
		}
	}

	// 4.4: a later update goes to the same set, without probes.
	e.presence(home, `<presence><show>away</show></presence>`)
	wantProcessed = []string{
		"presence available alice@example.com/home > bob@example.com",
		"presence available alice@example.com/home > romeo@example.net",
		"presence available alice@example.com/home > alice@example.com",
	}
	if got := e.processed(); !slices.Equal(got, wantProcessed) {
		t.Errorf("processed %q, want %q", got, wantProcessed)
	}
}

// TestDirectedPresence is RFC 6121 4.6 and 4.5.2: directed presence is
// routed and its recipients get unavailable presence when the session ends.
func TestDirectedPresence(t *testing.T) {
	e := newEnv(t)
	const alice = "alice@example.com"
	e.put(alice, storage.RosterItem{JID: "bob@example.com", Subscription: storage.SubBoth})
	e.put("bob@example.com", storage.RosterItem{JID: alice, Subscription: storage.SubBoth})
	bob := e.online("bob@example.com/work")
	carol := e.online("carol@example.com/pc")
	a := e.online("alice@example.com/home")
	take(bob)
	take(carol)
	take(a)
	e.processed()
	e.remote()

	e.presence(a, `<presence to='room@conference.example.net/alice'/>`)
	e.presence(a, `<presence to='carol@example.com'/>`)
	e.presence(a, `<presence to='bob@example.com/work'/>`)       // subscribed: not tracked
	e.presence(a, `<presence to='juliet@example.com/balcony'/>`) // unavailable afterwards: untracked
	e.presence(a, `<presence to='juliet@example.com/balcony' type='unavailable'/>`)
	if got, want := take(carol), []string{"presence available alice@example.com/home > carol@example.com"}; !slices.Equal(got, want) {
		t.Errorf("carol got %q, want %q", got, want)
	}
	if got, want := take(bob), []string{"presence available alice@example.com/home > bob@example.com/work"}; !slices.Equal(got, want) {
		t.Errorf("bob got %q, want %q", got, want)
	}
	e.processed()
	e.remote()

	e.logout(a)
	want := []string{
		"presence unavailable alice@example.com/home > bob@example.com",
		"presence unavailable alice@example.com/home > alice@example.com",
		"presence unavailable alice@example.com/home > carol@example.com",
		"presence unavailable alice@example.com/home > room@conference.example.net/alice",
	}
	if got := e.processed(); !slices.Equal(got, want) {
		t.Errorf("processed %q, want %q", got, want)
	}
	if got := take(carol); !slices.Equal(got, want[2:3]) {
		t.Errorf("carol got %q", got)
	}
	if got := take(bob); !slices.Equal(got, want[:1]) {
		t.Errorf("bob got %q", got)
	}
	e.m.mu.Lock()
	n := len(e.m.sessions)
	e.m.mu.Unlock()
	if n != 2 {
		t.Errorf("%d sessions tracked, want 2 (no leak)", n)
	}
}

// TestExplicitUnavailable is RFC 6121 4.5.1-4.5.2: the client's unavailable
// presence is broadcast, directed recipients included, and the session's
// end then sends nothing more.
func TestExplicitUnavailable(t *testing.T) {
	e := newEnv(t)
	const alice = "alice@example.com"
	e.put(alice, storage.RosterItem{JID: "romeo@example.net", Subscription: storage.SubFrom})
	a := e.online("alice@example.com/home")
	e.presence(a, `<presence to='room@conference.example.net/alice'/>`)
	e.processed()
	e.presence(a, `<presence type='unavailable'><status>bye</status></presence>`)
	want := []string{
		"presence unavailable alice@example.com/home > romeo@example.net status=bye",
		"presence unavailable alice@example.com/home > alice@example.com status=bye",
		"presence unavailable alice@example.com/home > room@conference.example.net/alice status=bye",
	}
	if got := e.processed(); !slices.Equal(got, want) {
		t.Errorf("processed %q, want %q", got, want)
	}
	e.logout(a)
	if got := e.processed(); len(got) != 0 {
		t.Errorf("after unavailable, the end sent %q", got)
	}
	// Available again: a new initial presence, with probes.
	a2 := e.online("alice@example.com/home")
	_ = a2
	e.put(alice, storage.RosterItem{JID: "romeo@example.net", Subscription: storage.SubBoth})
	e.presence(a2, `<presence type='unavailable'/>`)
	e.processed()
	e.presence(a2, `<presence/>`)
	if got := e.processed(); !slices.Contains(got, "presence probe alice@example.com > romeo@example.net") {
		t.Errorf("becoming available again sent %q, want probes", got)
	}
}

// TestDirectedWhileUnavailable: a resource that never became available
// still tells its directed-presence recipients it is gone.
func TestDirectedWhileUnavailable(t *testing.T) {
	e := newEnv(t)
	e.put("alice@example.com", storage.RosterItem{JID: "romeo@example.net", Subscription: storage.SubFrom})
	a := e.login("alice@example.com/home")
	e.presence(a, `<presence to='room@conference.example.net/alice'/>`)
	e.processed()
	e.logout(a)
	want := []string{"presence unavailable alice@example.com/home > room@conference.example.net/alice"}
	if got := e.processed(); !slices.Equal(got, want) {
		t.Errorf("processed %q, want %q", got, want)
	}
}

// TestDeniedDirected: directed presence stopped by a policy is not tracked.
func TestDeniedDirected(t *testing.T) {
	e := newEnv(t)
	a := e.online("alice@example.com/home")
	e.r.SetDeny(func(st *stanza.Stanza) bool { return st.To.String() == "carol@example.com" })
	e.presence(a, `<presence to='carol@example.com'/>`)
	e.processed()
	e.logout(a)
	for _, s := range e.processed() {
		if s == "presence unavailable alice@example.com/home > carol@example.com" {
			t.Error("unavailable sent for a denied directed presence")
		}
	}
}

// TestReplacedSession: when a new session takes over a resource, the old
// one's end broadcasts nothing.
func TestReplacedSession(t *testing.T) {
	e := newEnv(t)
	e.put("alice@example.com", storage.RosterItem{JID: "romeo@example.net", Subscription: storage.SubFrom})
	old := e.online("alice@example.com/home")
	e.r.Unbind(old)
	nu := e.online("alice@example.com/home")
	_ = nu
	e.processed()
	e.m.SessionEnded(e.ctx, old)
	if got := e.processed(); len(got) != 0 {
		t.Errorf("the replaced session's end sent %q", got)
	}
}

// TestProbes is RFC 6121 4.3.2.
func TestProbes(t *testing.T) {
	e := newEnv(t)
	const bob = "bob@example.com"
	e.put(bob, storage.RosterItem{JID: "romeo@example.net", Subscription: storage.SubFrom})
	e.put(bob, storage.RosterItem{JID: "mercutio@example.net", Subscription: storage.SubTo})

	// No available resource: unavailable.
	e.inbound(`<presence from='romeo@example.net' to='bob@example.com' type='probe'/>`)
	// Not subscribed: presence is not revealed; a listed contact learns
	// the state, a stranger (not in the roster) gets nothing, as for an
	// account that does not exist (8.5.1).
	e.inbound(`<presence from='mercutio@example.net' to='bob@example.com' type='probe'/>`)
	e.inbound(`<presence from='tybalt@example.net' to='bob@example.com' type='probe'/>`)
	want := []string{
		"presence unavailable bob@example.com > romeo@example.net",
		"presence unsubscribed bob@example.com > mercutio@example.net",
	}
	if got := e.remote(); !slices.Equal(got, want) {
		t.Errorf("replies %q, want %q", got, want)
	}

	w := e.online("bob@example.com/work")
	e.presence(w, `<presence><show>chat</show></presence>`)
	e.login("bob@example.com/idle") // connected, not available
	p := e.online("bob@example.com/phone")
	_ = p
	e.remote()
	// A probe to a full JID is about the account.
	e.inbound(`<presence from='romeo@example.net' to='bob@example.com/gone' type='probe'/>`)
	want = []string{
		"presence available bob@example.com/work > romeo@example.net",
		"presence available bob@example.com/phone > romeo@example.net",
	}
	if got := e.remote(); !slices.Equal(got, want) {
		t.Errorf("replies %q, want %q", got, want)
	}
	routed := e.r.Routed()
	last := routed[len(routed)-2]
	if last.El.ChildText(stanza.NSClient, "show") != "chat" {
		t.Errorf("probe answer %s lacks the last presence", last.El)
	}
}

// TestInboundDelivery is RFC 6121 8.5.2.1.2 and 8.5.3 for presence.
func TestInboundDelivery(t *testing.T) {
	e := newEnv(t)
	home := e.online("alice@example.com/home")
	idle := e.login("alice@example.com/idle")
	take(home)
	e.inbound(`<presence from='romeo@example.net/orchard' to='alice@example.com'/>`)
	e.inbound(`<presence from='romeo@example.net/orchard' to='alice@example.com/idle'><status>direct</status></presence>`)
	e.inbound(`<presence from='romeo@example.net/orchard' to='alice@example.com/gone'/>`)
	e.inbound(`<presence from='romeo@example.net/orchard' to='alice@example.com' type='unavailable'/>`)
	e.inbound(`<presence from='romeo@example.net/orchard' to='alice@example.com' type='bogus'/>`)
	if got, want := take(home), []string{
		"presence available romeo@example.net/orchard > alice@example.com",
		"presence unavailable romeo@example.net/orchard > alice@example.com",
	}; !slices.Equal(got, want) {
		t.Errorf("home got %q, want %q", got, want)
	}
	if got, want := take(idle), []string{"presence available romeo@example.net/orchard > alice@example.com/idle status=direct"}; !slices.Equal(got, want) {
		t.Errorf("idle got %q, want %q", got, want)
	}
}

// TestMalformedPresence: bad client input gets a stanza error.
func TestMalformedPresence(t *testing.T) {
	e := newEnv(t)
	a := e.online("alice@example.com/home")
	take(a)
	e.processed()
	e.presence(a, `<presence to='bob@example.com' type='bogus'/>`)
	e.presence(a, `<presence type='subscribe'/>`)
	e.presence(a, `<presence type='probe'/>`)
	e.presence(a, `<presence type='error'/>`)
	want := []string{
		"presence error bob@example.com > alice@example.com/home bad-request",
		"presence error  > alice@example.com/home bad-request",
		"presence error  > alice@example.com/home bad-request",
	}
	if got := take(a); !slices.Equal(got, want) {
		t.Errorf("alice got %q, want %q", got, want)
	}
	if got := e.processed(); len(got) != 0 {
		t.Errorf("routed %q", got)
	}
	// A client probe and a presence error with a 'to' are routed.
	e.presence(a, `<presence to='bob@example.com' type='probe'/>`)
	e.presence(a, `<presence to='romeo@example.net' type='error'/>`)
	want = []string{
		"presence probe alice@example.com/home > bob@example.com",
		"presence error alice@example.com/home > romeo@example.net",
	}
	if got := e.processed(); !slices.Equal(got, want) {
		t.Errorf("processed %q, want %q", got, want)
	}
}

// TestConcurrent exercises the locks: many subscriptions and presence
// updates at once end in consistent states.
func TestConcurrent(t *testing.T) {
	e := newEnv(t)
	a := e.online("alice@example.com/home")
	b := e.online("bob@example.com/work")
	contacts := []string{"c0@example.net", "c1@example.net", "c2@example.net", "c3@example.net", "c4@example.net"}
	var wg sync.WaitGroup
	for _, c := range contacts {
		wg.Add(2)
		go func() {
			defer wg.Done()
			e.presence(a, `<presence to='`+c+`' type='subscribe'/>`)
			e.inbound(`<presence from='` + c + `' to='alice@example.com' type='subscribed'/>`)
		}()
		go func() {
			defer wg.Done()
			e.inbound(`<presence from='` + c + `' to='alice@example.com' type='subscribe'/>`)
			e.presence(a, `<presence><status>`+c+`</status></presence>`)
		}()
	}
	wg.Add(2)
	go func() {
		defer wg.Done()
		e.presence(a, `<presence to='bob@example.com' type='subscribe'/>`)
	}()
	go func() {
		defer wg.Done()
		e.presence(b, `<presence to='alice@example.com' type='subscribe'/>`)
	}()
	wg.Wait()
	for _, c := range contacts {
		if got := e.stateName("alice@example.com", c); got != "To + Pending In" {
			t.Errorf("%s: %q, want To + Pending In", c, got)
		}
	}
	if got := e.stateName("alice@example.com", "bob@example.com"); got != "None + Pending Out+In" {
		t.Errorf("alice/bob: %q", got)
	}
	if got := e.stateName("bob@example.com", "alice@example.com"); got != "None + Pending Out+In" {
		t.Errorf("bob/alice: %q", got)
	}
}
