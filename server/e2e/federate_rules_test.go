package e2e

import (
	"strings"
	"testing"

	"github.com/palisade-im/palisade/server/config"
)

// federateEnv starts a server with two partners, partner-a (partner-a.test)
// and partner-b (partner-b.test, muc.partner-b.test), whose pinned
// endpoints refuse connections, and the rules: bob may federate with
// partner-a only, carol with no one; alice has the default (every partner).
func federateEnv(t *testing.T) (*env, func(to string) []string) {
	e, logs := newEnvObserved(t, func(c *config.Config) {
		c.Listen.S2S, c.Listen.S2SDirectTLS = "", "" // no inbound streams in these tests
		c.Federation.Partners = []config.Partner{
			{Name: "partner-a", Domains: []string{"partner-a.test"}, Endpoints: []string{freeAddr(t)}},
			{Name: "partner-b", Domains: []string{"partner-b.test", "muc.partner-b.test"}, Endpoints: []string{freeAddr(t)}},
		}
		c.Access.Rules = []config.Rule{
			{JID: "bob@localhost", Rights: config.Rights{Federate: config.FederateWith("partner-a")}},
			{JID: "carol@localhost", Rights: config.Rights{Federate: config.FederateNone()}},
		}
		if err := c.Validate(); err != nil {
			t.Fatal(err)
		}
	})
	// accessDenials returns the reasons of the access policy's denials of
	// stanzas to the JID to.
	accessDenials := func(to string) []string {
		var out []string
		for _, ev := range auditEvents(logs, "policy_denied", "to", to) {
			if m := ev.ContextMap(); m["policy"] == "access" {
				out = append(out, m["reason"].(string))
			}
		}
		return out
	}
	return e, accessDenials
}

// wantRefusedWith is wantRefused with the error's text.
func wantRefusedWith(t *testing.T, n *Node, id, text, what string) {
	t.Helper()
	wantRefused(t, n, id, "cancel", what)
	if got := errorText(n); got != text {
		t.Fatalf("%s: error text %q, want %q", what, got, text)
	}
}

// notRefusedByAccess makes sure the server handled what c sent (an IQ
// round trip) and that nothing it answered meanwhile to id is a
// policy-violation: a stanza to a partner the account may federate with
// may meet remote-server-not-found (the endpoint refuses connections) or
// be queued, never the access refusal.
func notRefusedByAccess(t *testing.T, c *client, id, what string) {
	t.Helper()
	c.send("<iq type='get' id='%s-sync' to='%s'><x xmlns='urn:e2e:sync'/></iq>", id, domain)
	for {
		n := c.next()
		if n.A("id") == id+"-sync" {
			return
		}
		if n.A("id") == id && n.stanzaError() == "policy-violation" {
			t.Fatalf("%s: refused: %s", what, n)
		}
	}
}

// TestFederateRulesPartnerList: an [[access.rule]] federate naming
// partner-a lets bob reach partner-a's domain and refuses partner-b's,
// whatever the stanza kind, with a cancel policy-violation naming the
// domain, one audit event each, nothing journaled.
func TestFederateRulesPartnerList(t *testing.T) {
	t.Parallel()
	e, accessDenials := federateEnv(t)
	bob := login(t, e, modeStartTLS, "bob", "b")

	const refusedB = "this account may not communicate with partner-b.test"
	bob.send("<message to='dana@partner-b.test' type='chat' id='b1'><body>to b</body></message>")
	wantRefusedWith(t, bob.expect(nsClient, "message"), "b1", refusedB, "bob's message to partner-b")
	bob.send("<presence to='dana@partner-b.test' type='subscribe' id='b2'/>")
	wantRefusedWith(t, bob.expect(nsClient, "presence"), "b2", refusedB, "bob's subscription request to partner-b")
	bob.send("<iq type='get' to='partner-b.test' id='b3'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
	wantRefusedWith(t, bob.expect(nsClient, "iq"), "b3", refusedB, "bob's iq to partner-b")
	// Every domain of the partner is the partner.
	bob.send("<message to='room@muc.partner-b.test' type='groupchat' id='b4'><body>to b's rooms</body></message>")
	wantRefusedWith(t, bob.expect(nsClient, "message"), "b4", "this account may not communicate with muc.partner-b.test", "bob's message to partner-b's other domain")

	const reason = `access.rule 1: federate = ["partner-a"] (sender) excludes partner partner-b (partner-b.test)`
	if got := accessDenials("dana@partner-b.test"); len(got) != 2 || got[0] != reason || got[1] != reason {
		t.Errorf("audited denials to dana@partner-b.test: %q, want 2 × %q", got, reason)
	}
	if got := accessDenials("room@muc.partner-b.test"); len(got) != 1 {
		t.Errorf("audited denials to room@muc.partner-b.test: %q", got)
	}
	for _, r := range journaledFrom(t, e, "bob@localhost") {
		if strings.Contains(r.to, "partner-b.test") {
			t.Errorf("bob's refused stanza is journaled: %+v", r)
		}
	}

	// partner-a is his: not refused by access.
	bob.send("<message to='erin@partner-a.test' type='chat' id='a1'><body>to a</body></message>")
	notRefusedByAccess(t, bob, "a1", "bob's message to partner-a")
	if got := accessDenials("erin@partner-a.test"); len(got) != 0 {
		t.Errorf("bob's message to partner-a was denied by access: %q", got)
	}
	// A domain no partner names is not the access rule's to refuse: the
	// federation gate answers it (policy "federation").
	bob.send("<message to='x@stranger.test' type='chat' id='s1'><body>to a stranger</body></message>")
	notAccess := func(n *Node) {
		if n.A("id") == "s1" && errorText(n) == "this account may not communicate with stranger.test" {
			t.Fatalf("the access rule refused a non-partner domain: %s", n)
		}
	}
	bob.send("<iq type='get' id='s1-sync' to='%s'><x xmlns='urn:e2e:sync'/></iq>", domain)
	for n := bob.next(); n.A("id") != "s1-sync"; n = bob.next() {
		notAccess(n)
	}
	if got := accessDenials("x@stranger.test"); len(got) != 0 {
		t.Errorf("the access rule audited a denial to a non-partner domain: %q", got)
	}
}

// TestFederateRulesFalseAndDefault: carol's federate = false refuses
// every partner with the old text; alice's default (federate = true)
// reaches both partners.
func TestFederateRulesFalseAndDefault(t *testing.T) {
	t.Parallel()
	e, accessDenials := federateEnv(t)
	carol := login(t, e, modeStartTLS, "carol", "c")
	alice := login(t, e, modeStartTLS, "alice", "a")

	carol.send("<message to='erin@partner-a.test' type='chat' id='c1'><body>to a</body></message>")
	wantRefusedWith(t, carol.expect(nsClient, "message"), "c1", "this account may not communicate with other domains", "carol's message to partner-a")
	if got := accessDenials("erin@partner-a.test"); len(got) != 1 || got[0] != "access.rule 2: federate = false" {
		t.Errorf("carol's denial audited as %q", got)
	}
	// Local traffic is not federation.
	carol.send("<message to='alice@localhost/a' type='chat' id='c2'><body>inside</body></message>")
	if m := alice.expect(nsClient, "message"); m.A("id") != "c2" {
		t.Fatalf("alice got %s", m)
	}

	alice.send("<message to='dana@partner-b.test' type='chat' id='d1'><body>to b</body></message>")
	notRefusedByAccess(t, alice, "d1", "alice's message to partner-b")
	alice.send("<presence to='erin@partner-a.test' type='subscribe' id='d2'/>")
	notRefusedByAccess(t, alice, "d2", "alice's subscription request to partner-a")
	if b, a := accessDenials("dana@partner-b.test"), accessDenials("erin@partner-a.test"); len(b) != 0 || len(a) != 1 {
		t.Errorf("denials by access to partner-b: %q, to partner-a: %q (carol's only)", b, a)
	}
}
