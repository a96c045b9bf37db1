package e2e

import (
	"strings"
	"testing"

	_ "github.com/palisade-im/palisade/modules/vcard" // XEP-0054, linked into every e2e server
	"github.com/palisade-im/palisade/server/config"
)

// TestReadOnlyChannels: carol's rule has send = false. Besides messages
// (TestAccessReadOnly), no user content leaves her account on any
// channel: an IQ set to another user is refused, a disco#info get and
// its answer pass, her presence arrives without <status/> and <nick/>, a
// PEP publish to an open node and a vCard change are refused while a
// publish to a private (whitelist) node passes; each refusal is audited.
func TestReadOnlyChannels(t *testing.T) {
	t.Parallel()
	e, logs := newEnvObserved(t, func(c *config.Config) {
		c.Access.Rules = []config.Rule{{JID: "carol@localhost", Rights: config.Rights{Send: boolp(false)}}}
	})
	alice := &pc{client: login(t, e, modeStartTLS, "alice", "a")}
	carol := &pc{client: login(t, e, modeStartTLS, "carol", "c")}

	// IQs to another user.
	carol.send("<iq type='set' to='alice@localhost/a' id='q1'><query xmlns='urn:example:notes'><note>secret</note></query></iq>")
	wantRefused(t, carol.next(), "q1", "cancel", "carol's iq set to alice")
	carol.send("<iq type='get' to='alice@localhost/a' id='q2'><query xmlns='urn:example:search'><term>secret</term></query></iq>")
	wantRefused(t, carol.next(), "q2", "cancel", "carol's iq get with content to alice")
	carol.send("<iq type='set' to='alice@localhost/a' id='q3'><open xmlns='http://jabber.org/protocol/ibb' sid='s' block-size='4096'/></iq>")
	wantRefused(t, carol.next(), "q3", "cancel", "carol's IBB open to alice")
	alice.nothing(quiet)

	carol.send("<iq type='get' to='alice@localhost/a' id='d1'><query xmlns='" + nsDiscoI + "'/></iq>")
	if n := alice.next(); n.A("id") != "d1" || n.A("type") != "get" {
		t.Fatalf("alice got %s, want carol's disco#info get", n)
	}
	alice.send("<iq type='result' to='carol@localhost/c' id='d1'><query xmlns='" + nsDiscoI + "'><feature var='" + nsDiscoI + "'/></query></iq>")
	if n := carol.next(); n.A("id") != "d1" || n.A("type") != "result" {
		t.Fatalf("carol got %s, want alice's answer", n)
	}
	// carol's client still answers a ping and disco, not with content.
	alice.send("<iq type='get' to='carol@localhost/c' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>")
	if n := carol.next(); n.A("id") != "p1" {
		t.Fatalf("carol got %s, want alice's ping", n)
	}
	carol.send("<iq type='result' to='alice@localhost/a' id='p1'/>")
	if n := alice.next(); n.A("id") != "p1" || n.A("type") != "result" {
		t.Fatalf("alice got %s, want carol's empty result", n)
	}
	alice.send("<iq type='get' to='carol@localhost/c' id='v1'><query xmlns='jabber:iq:version'/></iq>")
	if n := carol.next(); n.A("id") != "v1" {
		t.Fatalf("carol got %s", n)
	}
	carol.send("<iq type='result' to='alice@localhost/a' id='v1'><query xmlns='urn:example:notes'><note>smuggled</note></query></iq>")
	alice.nothing(quiet)
	// Her own account's services are hers: a roster-less IQ to herself passes the rule.
	carol.send("<iq type='get' id='own'><vCard xmlns='vcard-temp'/></iq>")
	if n := carol.next(); n.A("id") != "own" || n.A("type") != "result" {
		t.Fatalf("carol's own vCard get: %s", n)
	}

	// Presence: directed and a subscription request, text removed.
	carol.send("<presence to='alice@localhost/a' id='pr1'><show>away</show><status>in a meeting about X</status>" +
		"<nick xmlns='http://jabber.org/protocol/nick'>Carol C.</nick><priority>1</priority></presence>")
	p := alice.expect(nsClient, "presence")
	if p.A("id") != "pr1" || p.Child(nsClient, "status") != nil || p.Child("http://jabber.org/protocol/nick", "nick") != nil ||
		p.Child(nsClient, "show") == nil || p.Child(nsClient, "priority") == nil {
		t.Fatalf("alice got %s, want carol's presence with show and priority, without status and nick", p)
	}
	carol.send("<presence to='alice@localhost' type='subscribe' id='pr2'><status>let me in</status></presence>")
	p = alice.expect(nsClient, "presence")
	if p.A("id") != "pr2" || p.A("type") != "subscribe" || p.Child(nsClient, "status") != nil {
		t.Fatalf("alice got %s, want carol's subscription request without status", p)
	}
	for _, r := range journalRows(t, e) {
		if containsAny(r.content, "in a meeting", "Carol C.", "let me in", "secret", "smuggled") {
			t.Errorf("carol's content reached the journal: %+v", r)
		}
	}

	// PEP: an open node is refused, a private one (XEP-0223) passes.
	open := "<publish-options>" + publishOptions("http://jabber.org/protocol/pubsub#publish-options", "pubsub#access_model", "open") + "</publish-options>"
	carol.fails("set", "", publish(nodeTune, "t1", "<tune xmlns='"+nodeTune+"'><artist>Me</artist></tune>", ""), "policy-violation", "")
	carol.fails("set", "", publish("urn:example:open", "o1", "<x xmlns='urn:example'>dead drop</x>", open), "policy-violation", "")
	private := "<publish-options>" + publishOptions("http://jabber.org/protocol/pubsub#publish-options",
		"pubsub#persist_items", "true", "pubsub#access_model", "whitelist") + "</publish-options>"
	carol.ok("set", "", publish("urn:xmpp:bookmarks:1", "room@conference.localhost",
		"<conference xmlns='urn:xmpp:bookmarks:1' name='Room'/>", private))
	if r := carol.iq("get", "", "<pubsub xmlns='"+nsPubSub+"'><items node='"+nodeTune+"'/></pubsub>"); r.stanzaError() != "item-not-found" {
		t.Errorf("the refused tune node exists: %s", r)
	}

	// vCard: a change is refused and stores nothing.
	carol.fails("set", "", "<vCard xmlns='vcard-temp'><FN>Carol</FN><DESC>secret</DESC></vCard>", "policy-violation", "")
	if r := carol.ok("get", "", "<vCard xmlns='vcard-temp'/>"); containsAny(r.String(), "Carol") {
		t.Errorf("carol's refused vCard was stored: %s", r)
	}
	// The same changes pass for alice.
	alice.ok("set", "", "<vCard xmlns='vcard-temp'><FN>Alice</FN></vCard>")
	alice.ok("set", "", publish(nodeTune, "t1", "<tune xmlns='"+nodeTune+"'><artist>Her</artist></tune>", ""))
	// Reading stays: a get to another account's bare JID is answered by
	// the server and carries nothing of carol's to anyone.
	if r := carol.ok("get", "alice@"+domain, "<vCard xmlns='vcard-temp'/>"); !containsAny(r.String(), "Alice") {
		t.Errorf("read-only carol cannot read alice's vCard: %s", r)
	}

	for reason, n := range map[string]int{
		"access.rule 1: send = false (iq)":                                 4,
		"access.rule 1: send = false (pep publish, access model presence)": 1,
		"access.rule 1: send = false (pep publish, access model open)":     1,
		"access.rule 1: send = false (vcard)":                              1,
	} {
		if got := len(auditEvents(logs, "policy_denied", "reason", reason)); got != n {
			t.Errorf("%d audit events %q, want %d", got, reason, n)
		}
	}
	if got := len(auditEvents(logs, "policy_denied", "kind", "presence")); got != 0 {
		t.Errorf("%d audit events for presence, want none", got)
	}
}

func containsAny(s string, subs ...string) bool {
	for _, x := range subs {
		if strings.Contains(s, x) {
			return true
		}
	}
	return false
}
