package roster

import (
	"slices"
	"testing"

	"github.com/palisade-im/palisade/server/module/moduletest"
	"github.com/palisade-im/palisade/server/stanza"
	"github.com/palisade-im/palisade/storage"
)

const (
	juliet = "juliet@example.com"
	romeo  = "romeo@example.net" // a remote contact
)

// rosterVer returns a user's current roster version.
func (e *env) rosterVer(user string) string {
	e.t.Helper()
	_, v, err := e.store.Roster(e.ctx, user)
	if err != nil {
		e.t.Fatal(err)
	}
	return v
}

// pushSummary is the summary of a push of romeo's item in state s.
func pushSummary(ver string, s state, approved bool) string {
	var it storage.RosterItem
	s.apply(&it)
	out := "push " + ver + " " + romeo + " " + string(it.Subscription)
	if it.Ask {
		out += " ask=subscribe"
	}
	if approved {
		out += " approved=true"
	}
	return out + " name=Romeo"
}

// julietWithRomeo stores juliet's item for romeo in the state named cur,
// brings juliet/balcony online and forgets what that produced.
func julietWithRomeo(t *testing.T, cur string) (*env, state, *moduletest.Session) {
	t.Helper()
	e := newEnv(t)
	st := parseState(t, cur)
	it := storage.RosterItem{JID: romeo, Name: "Romeo"}
	st.apply(&it)
	e.put(juliet, it)
	s := e.online(juliet + "/balcony")
	take(s)
	e.remote()
	return e, st, s
}

// TestOutboundStates runs every row of RFC 6121 Appendix A.2 through the
// module: juliet's client sends the stanza to a remote contact.
func TestOutboundStates(t *testing.T) {
	for _, r := range outboundTable {
		t.Run(r.typ+"/"+r.cur, func(t *testing.T) {
			e, cur, s := julietWithRomeo(t, r.cur)

			e.presence(s, `<presence to='romeo@example.net/orchard' type='`+r.typ+`'/>`)

			want := parseState(t, r.want())
			preApproval := r.typ == "subscribed" && !r.yes && !cur.from
			var wantRemote []string
			if r.yes {
				if r.typ == "unsubscribed" && cur.from {
					wantRemote = append(wantRemote, "presence unavailable juliet@example.com/balcony > romeo@example.net")
				}
				wantRemote = append(wantRemote, "presence "+r.typ+" juliet@example.com > romeo@example.net")
				if r.typ == "subscribed" {
					wantRemote = append(wantRemote, "presence available juliet@example.com/balcony > romeo@example.net")
				}
			}
			if got := e.remote(); !slices.Equal(got, wantRemote) {
				t.Errorf("routed %q, want %q", got, wantRemote)
			}
			stored, _ := e.item(juliet, romeo)
			if got := stateOf(stored).String(); got != want.String() {
				t.Errorf("state %q, want %q", got, want)
			}
			if stored.Approved != preApproval {
				t.Errorf("approved = %v, want %v", stored.Approved, preApproval)
			}
			var wantPush []string
			visible := func(s state) state { s.pendIn = false; return s } // Pending In is not shown
			if visible(want) != visible(cur) || preApproval {
				wantPush = []string{pushSummary(e.rosterVer(juliet), want, preApproval)}
			}
			if got := take(s); !slices.Equal(got, wantPush) {
				t.Errorf("juliet got %q, want %q", got, wantPush)
			}
		})
	}
}

// TestInboundStates runs every row of RFC 6121 Appendix A.3 through the
// module: the stanza arrives from a remote contact for juliet.
func TestInboundStates(t *testing.T) {
	for _, r := range inboundTable {
		t.Run(r.typ+"/"+r.cur, func(t *testing.T) {
			e, cur, s := julietWithRomeo(t, r.cur)

			e.inbound(`<presence from='romeo@example.net/orchard' to='juliet@example.com' type='` + r.typ + `'/>`)

			want := parseState(t, r.want())
			var wantJuliet []string
			visible := func(s state) state { s.pendIn = false; return s }
			if visible(want) != visible(cur) {
				wantJuliet = append(wantJuliet, pushSummary(e.rosterVer(juliet), want, false))
			}
			if r.yes {
				wantJuliet = append(wantJuliet, "presence "+r.typ+" romeo@example.net > juliet@example.com")
			}
			if got := take(s); !slices.Equal(got, wantJuliet) {
				t.Errorf("juliet got %q, want %q", got, wantJuliet)
			}
			var wantRemote []string
			switch {
			case r.typ == "subscribe" && cur.from:
				// A.3.1 note: the contact's server auto-replies.
				wantRemote = []string{
					"presence subscribed juliet@example.com > romeo@example.net",
					"presence available juliet@example.com/balcony > romeo@example.net",
				}
			case r.typ == "unsubscribe" && cur.from:
				wantRemote = []string{"presence unavailable juliet@example.com/balcony > romeo@example.net"}
			}
			if got := e.remote(); !slices.Equal(got, wantRemote) {
				t.Errorf("routed %q, want %q", got, wantRemote)
			}
			if got := e.stateName(juliet, romeo); got != want.String() {
				t.Errorf("state %q, want %q", got, want)
			}
		})
	}
}

// TestHandshake is the full subscription handshake both ways between two
// local users (RFC 6121 3.1), ending in a mutual subscription.
func TestHandshake(t *testing.T) {
	e := newEnv(t)
	a := e.online("alice@example.com/home")
	b := e.online("bob@example.com/work")
	take(a)
	take(b)

	// 3.1.1: alice asks for bob's presence.
	e.presence(a, `<presence id='xk3h1v69' to='bob@example.com' type='subscribe'/>`)
	v := e.rosterVer("alice@example.com")
	if got, want := take(a), []string{"push " + v + " bob@example.com none ask=subscribe"}; !slices.Equal(got, want) {
		t.Errorf("alice got %q, want %q", got, want)
	}
	if got, want := take(b), []string{"presence subscribe alice@example.com > bob@example.com"}; !slices.Equal(got, want) {
		t.Errorf("bob got %q, want %q", got, want)
	}
	if got := e.stateName("bob@example.com", "alice@example.com"); got != "None + Pending In" {
		t.Errorf("bob's state %q", got)
	}
	// The pending request is not a roster item yet (3.1.3).
	res, err := e.iq(b, `<iq type='get' id='g1'><query xmlns='jabber:iq:roster'/></iq>`)
	if err != nil || len(res.Elements()) != 0 {
		t.Errorf("bob's roster = %v, %v; want empty", res, err)
	}

	// 3.1.5: bob approves.
	e.presence(b, `<presence id='h4v1c4kj' to='alice@example.com' type='subscribed'/>`)
	vb := e.rosterVer("bob@example.com")
	if got, want := take(b), []string{"push " + vb + " alice@example.com from"}; !slices.Equal(got, want) {
		t.Errorf("bob got %q, want %q", got, want)
	}
	v = e.rosterVer("alice@example.com")
	if got, want := take(a), []string{
		"push " + v + " bob@example.com to",
		"presence subscribed bob@example.com > alice@example.com",
		"presence available bob@example.com/work > alice@example.com",
	}; !slices.Equal(got, want) {
		t.Errorf("alice got %q, want %q", got, want)
	}

	// And the other way round.
	e.presence(b, `<presence to='alice@example.com' type='subscribe'/>`)
	take(b)
	if got, want := take(a), []string{"presence subscribe bob@example.com > alice@example.com"}; !slices.Equal(got, want) {
		t.Errorf("alice got %q, want %q", got, want)
	}
	e.presence(a, `<presence to='bob@example.com' type='subscribed'/>`)
	if got, want := take(b), []string{
		"push " + e.rosterVer("bob@example.com") + " alice@example.com both",
		"presence subscribed alice@example.com > bob@example.com",
		"presence available alice@example.com/home > bob@example.com",
	}; !slices.Equal(got, want) {
		t.Errorf("bob got %q, want %q", got, want)
	}
	if got, want := take(a), []string{"push " + e.rosterVer("alice@example.com") + " bob@example.com both"}; !slices.Equal(got, want) {
		t.Errorf("alice got %q, want %q", got, want)
	}
	for _, p := range [][2]string{{"alice@example.com", "bob@example.com"}, {"bob@example.com", "alice@example.com"}} {
		if got := e.stateName(p[0], p[1]); got != "Both" {
			t.Errorf("%s's item for %s is %q, want Both", p[0], p[1], got)
		}
	}

	// Presence now flows both ways.
	e.presence(a, `<presence><show>away</show></presence>`)
	if got, want := take(b), []string{"presence available alice@example.com/home > bob@example.com"}; !slices.Equal(got, want) {
		t.Errorf("bob got %q, want %q", got, want)
	}
}

// TestSubscribeWhileOffline: a request for a user with no available
// resource waits for the next initial presence (RFC 6121 3.1.3).
func TestSubscribeWhileOffline(t *testing.T) {
	e := newEnv(t)
	a := e.online("alice@example.com/home")
	b := e.login("bob@example.com/work") // connected, not available
	e.presence(a, `<presence to='bob@example.com' type='subscribe'><status>it is alice</status></presence>`)
	if got := take(b); len(got) != 0 {
		t.Errorf("unavailable bob got %q", got)
	}
	e.presence(b, `<presence/>`)
	got := take(b)
	if !slices.Contains(got, "presence subscribe alice@example.com > bob@example.com status=it is alice") {
		t.Errorf("bob's initial presence delivered %q, want the stored request", got)
	}
	// A second resource gets it too, until bob answers.
	b2 := e.login("bob@example.com/phone")
	e.presence(b2, `<presence/>`)
	if got := take(b2); !slices.Contains(got, "presence subscribe alice@example.com > bob@example.com status=it is alice") {
		t.Errorf("bob's second resource got %q", got)
	}
	e.presence(b, `<presence to='alice@example.com' type='subscribed'/>`)
	b3 := e.login("bob@example.com/tablet")
	e.presence(b3, `<presence/>`)
	for _, s := range take(b3) {
		if s == "presence subscribe alice@example.com > bob@example.com status=it is alice" {
			t.Error("an answered request was delivered again")
		}
	}
}

// TestPreApproval: RFC 6121 3.4.
func TestPreApproval(t *testing.T) {
	e := newEnv(t)
	a := e.online("alice@example.com/home")
	b := e.online("bob@example.com/work")
	take(a)
	take(b)

	// 3.4.1: bob pre-approves alice; nothing is routed.
	e.presence(b, `<presence to='alice@example.com' type='subscribed'/>`)
	if got, want := take(b), []string{"push " + e.rosterVer("bob@example.com") + " alice@example.com none approved=true"}; !slices.Equal(got, want) {
		t.Errorf("bob got %q, want %q", got, want)
	}
	if got := take(a); len(got) != 0 {
		t.Errorf("alice got %q", got)
	}

	// 3.4.2: alice's request is accepted without asking bob.
	e.presence(a, `<presence to='bob@example.com' type='subscribe'/>`)
	if got, want := take(a), []string{
		"push 1 bob@example.com none ask=subscribe",
		"push 2 bob@example.com to",
		"presence subscribed bob@example.com > alice@example.com",
		"presence available bob@example.com/work > alice@example.com",
	}; !slices.Equal(got, want) {
		t.Errorf("alice got %q, want %q", got, want)
	}
	if got, want := take(b), []string{"push " + e.rosterVer("bob@example.com") + " alice@example.com from"}; !slices.Equal(got, want) {
		t.Errorf("bob got %q, want %q (the request is not delivered)", got, want)
	}
	it, _ := e.item("bob@example.com", "alice@example.com")
	if it.Approved || stateOf(it).String() != "From" {
		t.Errorf("bob's item %+v, want From without approval", it)
	}
}

// TestCancelPreApproval: an unsubscribed with a pre-approval in place
// removes it and routes nothing (RFC 6121 3.2.2 step 2); it is recorded
// (admitted to the journal) as the change it is.
func TestCancelPreApproval(t *testing.T) {
	e := newEnv(t)
	b := e.online("bob@example.com/work")
	e.presence(b, `<presence to='carol@example.com' type='subscribed'/>`)
	take(b)
	e.processed()
	e.presence(b, `<presence to='carol@example.com' type='unsubscribed'/>`)
	if got, want := take(b), []string{"push " + e.rosterVer("bob@example.com") + " carol@example.com none"}; !slices.Equal(got, want) {
		t.Errorf("bob got %q, want %q", got, want)
	}
	if got, want := e.processed(), []string{"presence unsubscribed bob@example.com > carol@example.com"}; !slices.Equal(got, want) {
		t.Errorf("admitted %q, want %q", got, want)
	}
	if got := summaries(e.r.TakeRouted()); len(got) != 0 {
		t.Errorf("routed %q", got)
	}
	// With the approval gone, carol's request is asked for again.
	c := e.online("carol@example.com/pc")
	e.presence(c, `<presence to='bob@example.com' type='subscribe'/>`)
	if got, want := take(b), []string{"presence subscribe carol@example.com > bob@example.com"}; !slices.Equal(got, want) {
		t.Errorf("bob got %q, want %q", got, want)
	}
}

// mutualOnline makes alice and bob subscribed to each other and brings
// alice/home and bob/work online, forgetting what that produced.
func (e *env) mutualOnline() (alice, bob *moduletest.Session) {
	e.t.Helper()
	const a, b = "alice@example.com", "bob@example.com"
	e.put(a, storage.RosterItem{JID: b, Subscription: storage.SubBoth})
	e.put(b, storage.RosterItem{JID: a, Subscription: storage.SubBoth})
	alice = e.online(a + "/home")
	bob = e.online(b + "/work")
	take(alice)
	take(bob)
	return alice, bob
}

// TestCancellation: RFC 6121 3.2, bob cancels alice's subscription.
func TestCancellation(t *testing.T) {
	e := newEnv(t)
	a, b := e.mutualOnline()
	e.presence(b, `<presence to='alice@example.com' type='unsubscribed'/>`)
	// Unavailable first, while alice is still subscribed (3.2.2).
	if got, want := take(a), []string{
		"presence unavailable bob@example.com/work > alice@example.com",
		"push " + e.rosterVer("alice@example.com") + " bob@example.com from",
		"presence unsubscribed bob@example.com > alice@example.com",
	}; !slices.Equal(got, want) {
		t.Errorf("alice got %q, want %q", got, want)
	}
	if got, want := take(b), []string{"push " + e.rosterVer("bob@example.com") + " alice@example.com to"}; !slices.Equal(got, want) {
		t.Errorf("bob got %q, want %q", got, want)
	}
	// Bob's presence no longer reaches alice.
	e.presence(b, `<presence><show>dnd</show></presence>`)
	for _, s := range take(a) {
		if s == "presence available bob@example.com/work > alice@example.com" {
			t.Error("alice still gets bob's presence")
		}
	}
}

// TestUnsubscribe: RFC 6121 3.3, alice unsubscribes from bob.
func TestUnsubscribe(t *testing.T) {
	e := newEnv(t)
	a, b := e.mutualOnline()
	e.presence(a, `<presence to='bob@example.com' type='unsubscribe'/>`)
	if got, want := take(b), []string{
		"push " + e.rosterVer("bob@example.com") + " alice@example.com to",
		"presence unsubscribe alice@example.com > bob@example.com",
	}; !slices.Equal(got, want) {
		t.Errorf("bob got %q, want %q", got, want)
	}
	if got, want := take(a), []string{
		"push " + e.rosterVer("alice@example.com") + " bob@example.com from",
		"presence unavailable bob@example.com/work > alice@example.com",
	}; !slices.Equal(got, want) {
		t.Errorf("alice got %q, want %q", got, want)
	}
}

// TestDenyRequest: refusing a request from a stranger leaves no item.
func TestDenyRequest(t *testing.T) {
	e := newEnv(t)
	b := e.online("bob@example.com/work")
	take(b)
	e.inbound(`<presence from='spam@example.org' to='bob@example.com' type='subscribe'/>`)
	if got := take(b); !slices.Equal(got, []string{"presence subscribe spam@example.org > bob@example.com"}) {
		t.Errorf("bob got %q", got)
	}
	e.presence(b, `<presence to='spam@example.org' type='unsubscribed'/>`)
	if got := take(b); len(got) != 0 {
		t.Errorf("bob got %q (no push for an item never shown)", got)
	}
	if got := e.remote(); !slices.Contains(got, "presence unsubscribed bob@example.com > spam@example.org") {
		t.Errorf("routed %q", got)
	}
	if _, ok := e.item("bob@example.com", "spam@example.org"); ok {
		t.Error("the refused request left an item")
	}
	// A retracted request leaves nothing either.
	e.inbound(`<presence from='spam@example.org' to='bob@example.com' type='subscribe'/>`)
	e.inbound(`<presence from='spam@example.org' to='bob@example.com' type='unsubscribe'/>`)
	if _, ok := e.item("bob@example.com", "spam@example.org"); ok {
		t.Error("the retracted request left an item")
	}
}

// TestNoSuchUser: RFC 6121 8.5.1 for presence to an account that does not
// exist: every type, to the bare and to a full JID, is silently ignored, so
// the sender cannot tell it from an account that exists and does not
// answer; nothing is stored.
func TestNoSuchUser(t *testing.T) {
	e := newEnv(t)
	for _, to := range []string{"nobody@example.com", "nobody@example.com/res"} {
		for _, typ := range []string{"subscribe", "subscribed", "unsubscribe", "unsubscribed", "probe", "", "unavailable", "error"} {
			attr := ""
			if typ != "" {
				attr = " type='" + typ + "'"
			}
			for _, from := range []string{"romeo@example.net/r", "alice@example.com/home"} {
				e.inbound(`<presence from='` + from + `' to='` + to + `'` + attr + `/>`)
				got := append(e.r.TakeRouted(), e.r.TakeProcessed()...)
				if len(got) != 0 {
					t.Errorf("presence%s from %s to %s: answered %q", attr, from, to, summaries(got))
				}
				e.r.TakeRemote()
			}
		}
	}
	if items, _, _ := e.store.Roster(e.ctx, "nobody@example.com"); len(items) != 0 {
		t.Errorf("stored %v for a missing account", items)
	}
	// A stranger's probe to an account that exists is not answered
	// either: the two cannot be told apart.
	e.inbound(`<presence from='romeo@example.net/r' to='bob@example.com' type='subscribe'/>`)
	e.inbound(`<presence from='romeo@example.net/r' to='bob@example.com' type='probe'/>`)
	if got := e.remote(); len(got) != 0 {
		t.Errorf("a stranger's subscribe and probe to an existing account drew %q", got)
	}
}

// TestSubscriptionToSelf is ignored: an account always has its own presence.
func TestSubscriptionToSelf(t *testing.T) {
	e := newEnv(t)
	a := e.online("alice@example.com/home")
	take(a)
	e.presence(a, `<presence to='alice@example.com' type='subscribe'/>`)
	if got := take(a); len(got) != 0 {
		t.Errorf("alice got %q", got)
	}
	if _, ok := e.item("alice@example.com", "alice@example.com"); ok {
		t.Error("self item stored")
	}
}

// TestUnrecordedSubscriptionChangesNothing: a subscription request that the
// core does not admit (a policy denial, or a journal that cannot record it)
// leaves both rosters as they were and reaches nobody.
func TestUnrecordedSubscriptionChangesNothing(t *testing.T) {
	e := newEnv(t)
	a := e.online("alice@example.com/a")
	b := e.online("bob@example.com/b")
	take(a)
	take(b)
	e.r.SetDeny(func(st *stanza.Stanza) bool { return st.Type == "subscribe" || st.Type == "subscribed" })
	e.presence(a, `<presence to='bob@example.com' type='subscribe'/>`)
	e.presence(b, `<presence to='alice@example.com' type='subscribed'/>`) // a pre-approval
	if _, ok := e.item("alice@example.com", "bob@example.com"); ok {
		t.Error("alice's roster changed for a request that was not recorded")
	}
	if it, ok := e.item("bob@example.com", "alice@example.com"); ok {
		t.Errorf("bob's roster changed for a pre-approval that was not recorded: %+v", it)
	}
	if got := take(b); len(got) != 0 {
		t.Errorf("bob got %q", got)
	}
	if got := take(a); len(got) != 0 {
		t.Errorf("alice got %q", got)
	}
}
