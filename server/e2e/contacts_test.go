package e2e

import (
	"context"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	_ "github.com/palisade-im/palisade/modules/contacts" // the contact policy link, in every e2e server
	"github.com/palisade-im/palisade/server/config"
	"github.com/palisade-im/palisade/server/module"
	"github.com/palisade-im/palisade/storage"
	"mellium.im/xmpp/jid"
)

// contactsEnv starts a server where bob may be reached by his roster only
// (carol is on it), takes subscription requests from no one, and exempts
// the helpdesk group; alice is a stranger to him. Offline messages go to
// sink.
func contactsEnv(t *testing.T, sink *offlineSink) (*env, func() []map[string]any) {
	e, logs := newEnvObserved(t, func(c *config.Config) {
		c.Groups = map[string]string{"helpdesk": ""}
		c.Access.Rules = []config.Rule{{JID: "bob@localhost", Rights: config.Rights{
			Contacts: config.ContactsRoster, Subscriptions: config.ContactsNone, ContactsExempt: []string{"helpdesk"}}}}
		withOffline(c, sink)
	})
	ctx := context.Background()
	if _, err := e.store.PutItem(ctx, "bob@localhost", storage.RosterItem{JID: "carol@localhost", Subscription: storage.SubTo}); err != nil {
		t.Fatal(err)
	}
	// alice asked bob for a subscription: that makes her no contact.
	if _, err := e.store.PutItem(ctx, "bob@localhost", storage.RosterItem{JID: "alice@localhost", Subscription: storage.SubNone, PendingIn: true, Hidden: true}); err != nil {
		t.Fatal(err)
	}
	audits := func() []map[string]any {
		var out []map[string]any
		for _, ev := range auditEvents(logs, "policy_denied", "policy", "contacts") {
			out = append(out, ev.ContextMap())
		}
		return out
	}
	return e, audits
}

var attrID = regexp.MustCompile(` id=["'][^"']*["']`)

// TestContactsStrangerRefused: alice, a stranger to bob (contacts =
// "roster"), gets for her message and her IQ to his full JID exactly what
// an account that does not exist answers (compared on the raw WebSocket
// frames; a file offer too), her directed presence and subscription request reach nothing;
// carol, on bob's roster, passes; each refusal is one audit event naming
// the rule; bob's disco#info names his policy.
func TestContactsStrangerRefused(t *testing.T) {
	t.Parallel()
	e, audits := contactsEnv(t, &offlineSink{})
	bob := login(t, e, modeStartTLS, "bob", "b")
	bob.available(0)
	bob.sync()
	alice := login(t, e, modeWS, "alice", "a")
	carol := login(t, e, modeStartTLS, "carol", "c")

	refusal := func(stanza, to, id string) string {
		t.Helper()
		alice.send(stanza, to, id)
		n := alice.next()
		if n.A("id") != id || n.stanzaError() != "service-unavailable" || n.Child(nsClient, "error").A("type") != "cancel" {
			t.Fatalf("to %s: got %s, want cancel service-unavailable", to, n)
		}
		if n.Child(nsClient, "error").Child(nsStanzas, "text") != nil {
			t.Errorf("to %s: the refusal has a text: %s", to, n)
		}
		return attrID.ReplaceAllString(strings.ReplaceAll(n.Raw, bare(to), "ADDRESSEE"), "")
	}
	for _, c := range []struct{ what, stanza, bob, nobody string }{
		{"message", "<message to='%s' id='%s' type='chat'><body>hello stranger</body></message>", "bob@localhost", "nobody@localhost"},
		{"message to full JID", "<message to='%s' id='%s'><body>hello again</body></message>", "bob@localhost/b", "nobody@localhost/b"},
		{"iq to full JID", "<iq to='%s' id='%s' type='get'><query xmlns='jabber:iq:version'/></iq>", "bob@localhost/b", "nobody@localhost/b"},
		{"file offer (SI)", ftStanzas[0].xml, "bob@localhost/b", "nobody@localhost/b"},
		{"iq to bare JID", "<iq to='%s' id='%s' type='get'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>", "bob@localhost", "nobody@localhost"},
	} {
		got, want := refusal(c.stanza, c.bob, "x1"), refusal(c.stanza, c.nobody, "x2")
		if got != want {
			t.Errorf("%s: the refusal differs from a missing account's:\n bob:    %s\n nobody: %s", c.what, got, want)
		}
	}
	alice.send("<presence to='bob@localhost/b'><status>look at me</status></presence>")
	alice.send("<presence to='bob@localhost' type='subscribe'/>")
	alice.sync()
	bob.nothing(quiet)
	alice.nothing(quiet)

	// carol is a contact: her message, IQ and presence arrive; her
	// subscription request does not (subscriptions = "none").
	carol.send("<message to='bob@localhost' id='c1' type='chat'><body>hi bob</body></message>")
	if m := bob.expect(nsClient, "message"); m.A("id") != "c1" {
		t.Fatalf("bob got %s, want carol's message", m)
	}
	carol.send("<iq to='bob@localhost/b' id='c2' type='get'><query xmlns='jabber:iq:version'/></iq>")
	if iq := bob.expect(nsClient, "iq"); iq.A("id") != "c2" || iq.A("from") != "carol@localhost/c" {
		t.Fatalf("bob got %s, want carol's iq", iq)
	}
	carol.send("<presence to='bob@localhost/b'/>")
	if p := bob.expect(nsClient, "presence"); p.A("from") != "carol@localhost/c" {
		t.Fatalf("bob got %s, want carol's presence", p)
	}
	carol.send("<presence to='bob@localhost' type='subscribe'/>")
	carol.sync()
	bob.nothing(quiet)

	// One audit event per refusal: 5 stanzas to bob, the directed
	// presence, both subscription requests.
	var got []string
	for _, a := range audits() {
		got = append(got, a["from"].(string)+" "+a["reason"].(string))
	}
	want := []string{}
	for i := 0; i < 5+1; i++ {
		want = append(want, "alice@localhost/a access.rule 1: contacts = roster: not a contact")
	}
	want = append(want, "alice@localhost/a access.rule 1: subscriptions = none: subscription requests refused",
		"carol@localhost/c access.rule 1: subscriptions = none: subscription requests refused")
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("audit events:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// bob's client sees his policy on his account.
	bob.send("<iq to='bob@localhost' id='d1' type='get'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
	info := bob.expect(nsClient, "iq")
	found := false
	for _, f := range info.Child("", "query").Nodes {
		if f.XMLName.Local == "feature" && f.A("var") == "urn:palisade:contacts:roster" {
			found = true
		}
	}
	if !found {
		t.Errorf("bob's disco#info lacks urn:palisade:contacts:roster: %s", info)
	}
}

// TestContactsNothingStored: a stranger's message to bob while he is
// offline is refused like one to a missing account, and is neither
// stored offline nor archived in bob's or alice's history; carol's is
// stored. A member of the exempt group then passes.
func TestContactsNothingStored(t *testing.T) {
	t.Parallel()
	sink := &offlineSink{}
	e, _ := contactsEnv(t, sink)
	alice := login(t, e, modeStartTLS, "alice", "a")
	carol := login(t, e, modeStartTLS, "carol", "c")

	alice.send("<message to='bob@localhost' id='s1' type='chat'><body>buy now</body></message>")
	if n := alice.next(); n.A("id") != "s1" || n.stanzaError() != "service-unavailable" {
		t.Fatalf("alice got %s", n)
	}
	carol.send("<message to='bob@localhost' id='s2' type='chat'><body>lunch?</body></message>")
	carol.sync()
	if got := sink.stored(); got["s1"] != 0 || got["s2"] != 1 {
		t.Fatalf("offline store holds %v, want s2 only", got)
	}
	// History is written behind the journal, in order: once carol's
	// message (sent second) is in bob's history, alice's would be too.
	deadline := time.Now().Add(short)
	for historyCount(t, e, "bob") == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := historyCount(t, e, "bob"); n != 1 {
		t.Errorf("bob's history holds %d messages, want carol's only", n)
	}
	if n := historyCount(t, e, "alice"); n != 0 {
		t.Errorf("alice's history holds %d messages, want none", n)
	}
	for _, r := range journalRows(t, e) {
		if r.typ != "error" && strings.Contains(r.content, "buy now") {
			t.Errorf("the refused message reached the journal: %+v", r)
		}
	}

	// alice joins the helpdesk: she passes from then on.
	if err := e.store.AddMember(context.Background(), "helpdesk", "alice@localhost"); err != nil {
		t.Fatal(err)
	}
	h, _ := hosts.Load(e.cfg)
	deadline = time.Now().Add(short)
	for !slices.Contains(h.(*module.Host).Router.Groups(jid.MustParse("alice@localhost")), "helpdesk") {
		if time.Now().After(deadline) {
			t.Fatal("alice never joined helpdesk")
		}
		time.Sleep(20 * time.Millisecond)
	}
	alice.send("<message to='bob@localhost' id='s3' type='chat'><body>ticket 42</body></message>")
	alice.sync()
	if got := sink.stored(); got["s3"] != 1 {
		t.Fatalf("offline store holds %v, want s3 from the exempt helpdesk", got)
	}
}
