package e2e

import (
	"fmt"
	"testing"

	"github.com/palisade-im/palisade/server/config"
)

// TestRFC6121MessageTables sends every message type to every kind of
// local address and checks what RFC 6121 8.5 requires: who receives it,
// whether the sender gets <service-unavailable/>, whether it is stored
// offline. Ordering instead of timing: a sync after the sender's message
// means the server routed it (messages are delivered before a later IQ is
// handled), and a sync on a recipient that arrives before any message
// means nothing was queued for it.
func TestRFC6121MessageTables(t *testing.T) {
	t.Parallel()
	sink := &offlineSink{}
	e := newEnv(t, func(c *config.Config) { withOffline(c, sink) })
	bob := login(t, e, modeStartTLS, "bob", "b")
	a1 := login(t, e, modeStartTLS, "alice", "a1")
	a2 := login(t, e, modeStartTLS, "alice", "a2")
	a1.available(1)
	a2.available(0)
	a1.sync()
	a2.sync()
	// carol exists and is offline; nobody does not exist.

	// outcome of one message.
	const (
		toA1     = "a1"      // delivered to alice/a1 only
		toA2     = "a2"      // delivered to alice/a2 only
		toAll    = "a1+a2"   // delivered to both of alice's resources
		bounced  = "bounced" // sender gets service-unavailable, nobody else anything
		stored   = "stored"  // kept offline, nobody gets anything
		dropped  = "dropped" // nothing at all
		noType   = ""
		tNormal  = "normal"
		tChat    = "chat"
		tGroup   = "groupchat"
		tHead    = "headline"
		tError   = "error"
		fullOn   = "alice@localhost/a2"
		fullOff  = "alice@localhost/gone"
		bareOn   = "alice@localhost"
		bareOff  = "carol@localhost"
		fullOffC = "carol@localhost/gone"
		noneBare = "nobody@localhost"
		noneFull = "nobody@localhost/gone"
	)
	cases := []struct {
		section, to string
		want        map[string]string // type -> outcome
	}{
		// 8.5.3.1: the resource matches: delivered, whatever the type.
		{"8.5.3.1", fullOn, map[string]string{noType: toA2, tNormal: toA2, tChat: toA2, tGroup: toA2, tHead: toA2, tError: toA2}},
		// 8.5.3.2.1: no resource matches: normal and groupchat are
		// answered (never given to another resource), headline and error
		// ignored, chat handled as if to the bare JID.
		{"8.5.3.2.1", fullOff, map[string]string{noType: bounced, tNormal: bounced, tChat: toA1, tGroup: bounced, tHead: dropped, tError: dropped}},
		{"8.5.3.2.1, account offline", fullOffC, map[string]string{noType: bounced, tNormal: bounced, tChat: stored, tGroup: bounced, tHead: dropped, tError: dropped}},
		// 8.5.2.1.1: available resources: normal and chat to the highest
		// priority, headline to every non-negative one, groupchat
		// answered, error ignored.
		{"8.5.2.1.1", bareOn, map[string]string{noType: toA1, tNormal: toA1, tChat: toA1, tGroup: bounced, tHead: toAll, tError: dropped}},
		// 8.5.2.2.1: no available resource: normal and chat stored,
		// groupchat answered, headline and error ignored.
		{"8.5.2.2.1", bareOff, map[string]string{noType: stored, tNormal: stored, tChat: stored, tGroup: bounced, tHead: dropped, tError: dropped}},
		// 8.5.1: no such user: messages answered or ignored (never
		// stored); the answer is the one an existing account's full
		// JID would draw.
		{"8.5.1", noneBare, map[string]string{noType: bounced, tNormal: bounced, tChat: bounced, tGroup: bounced, tHead: dropped, tError: dropped}},
		{"8.5.1, full JID", noneFull, map[string]string{noType: bounced, tNormal: bounced, tChat: bounced, tGroup: bounced, tHead: dropped, tError: dropped}},
	}
	n := 0
	for _, c := range cases {
		for _, typ := range []string{noType, tNormal, tChat, tGroup, tHead, tError} {
			want := c.want[typ]
			n++
			id := fmt.Sprintf("m%d", n)
			name := typ
			if name == "" {
				name = "no type"
			}
			t.Run(c.section+"/"+c.to+"/"+name, func(t *testing.T) {
				attr := ""
				if typ != "" {
					attr = " type='" + typ + "'"
				}
				inner := "<body>x</body>"
				if typ == tError {
					inner = "<error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>"
				}
				bob.send("<message to='%s' id='%s'%s>%s</message>", c.to, id, attr, inner)
				// The sync answer comes after the message was routed, and
				// after an error answer to it.
				b := beforeSync(t, bob, id)
				gotA1, gotA2 := beforeSync(t, a1, id) != nil, beforeSync(t, a2, id) != nil
				gotBounce := b != nil
				if gotBounce {
					if b.stanzaError() != "service-unavailable" || b.A("from") != c.to {
						t.Errorf("answer %s, want service-unavailable from %s", b, c.to)
					}
				}
				isStored := sink.stored()[id] > 0
				got := dropped
				switch {
				case gotA1 && gotA2:
					got = toAll
				case gotA1:
					got = toA1
				case gotA2:
					got = toA2
				}
				if gotBounce {
					got += "+" + bounced
				}
				if isStored {
					got += "+" + stored
				}
				switch got {
				case dropped + "+" + bounced:
					got = bounced
				case dropped + "+" + stored:
					got = stored
				}
				if got != want {
					t.Errorf("RFC 6121 %s: type %q to %s: %s, want %s", c.section, typ, c.to, got, want)
				}
			})
		}
	}
}

// beforeSync returns the message id that c receives before the answer to
// a sync sent now, or nil; anything else (a second copy too) is a failure.
func beforeSync(t *testing.T, c *client, id string) *Node {
	t.Helper()
	c.send("<iq type='get' id='sync-%s' to='%s'><x xmlns='urn:e2e:sync'/></iq>", id, domain)
	var got *Node
	for {
		n := c.next()
		switch {
		case n.Is(nsClient, "message") && n.A("id") == id && got == nil:
			got = n
		case n.Is(nsClient, "iq") && n.A("id") == "sync-"+id:
			return got
		default:
			t.Fatalf("%s: unexpected %s", c.name(), n)
		}
	}
}

// TestRFC6121PresenceToNoAccount runs the real binary (roster module
// included) and sends presence of every type to an account that does not
// exist: RFC 6121 8.5.1 wants each one silently ignored, and nothing may
// tell the sender more than the same presence to an account that exists
// and does not know them. An IQ keeps its answer (service-unavailable).
func TestRFC6121PresenceToNoAccount(t *testing.T) {
	t.Parallel()
	srv := startBinary(t, "")
	alice := login(t, srv.e, modeStartTLS, "alice", "a")
	alice.available(0) // her own presence comes back; answers skips it
	types := []string{"subscribe", "subscribed", "unsubscribe", "unsubscribed", "probe", "", "unavailable"}
	// answers returns what reaches alice from the address of to, for each
	// presence type sent to it, and fails on stanza errors.
	answers := func(to string) []string {
		t.Helper()
		var got []string
		for i, typ := range types {
			attr := ""
			if typ != "" {
				attr = " type='" + typ + "'"
			}
			alice.send("<presence to='%s' id='p%d'%s/>", to, i, attr)
		}
		alice.send("<iq type='get' id='end' to='%s'><query xmlns='%s'/></iq>", domain, nsDiscoI)
		for {
			n := alice.next()
			if n.Is(nsClient, "iq") && n.A("id") == "end" {
				return got
			}
			if n.Is(nsClient, "iq") && n.A("type") == "set" {
				// A roster push for alice's own request: answered, and
				// it tells nothing about the account.
				alice.send("<iq type='result' id='%s'/>", n.A("id"))
				continue
			}
			if bare(n.A("from")) == to || n.stanzaError() != "" {
				got = append(got, n.String())
			}
		}
	}
	if got := answers("nobody@" + domain); len(got) != 0 {
		t.Errorf("presence to an account that does not exist was answered: %q", got)
	}
	// carol exists and alice is a stranger to her: the same silence.
	if got := answers("carol@" + domain); len(got) != 0 {
		t.Errorf("presence to an account that exists drew %q (the two must look alike)", got)
	}
	// An IQ to no account keeps the RFC's answer.
	alice.send("<iq type='get' id='q1' to='nobody@%s/x'><ping xmlns='urn:xmpp:ping'/></iq>", domain)
	if r := alice.expect(nsClient, "iq"); r.A("id") != "q1" || r.stanzaError() != "service-unavailable" {
		t.Errorf("iq to no account: %s", r)
	}
}
