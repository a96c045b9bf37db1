package e2e

import (
	"fmt"
	"strings"
	"testing"

	"github.com/palisade-im/palisade/modules/filetransfer" // the file_transfer policy link, in every e2e server
	"github.com/palisade-im/palisade/server/config"
	"go.uber.org/zap/zaptest/observer"
)

// ftStanzas are the transfer stanzas of each protocol a client sends to a
// peer's full JID: %[1]s is the peer, %[2]s the stanza's id.
var ftStanzas = []struct{ name, kind, xml string }{
	{"SI offer", "si", `<iq type='set' to='%[1]s' id='%[2]s'><si xmlns='http://jabber.org/protocol/si' id='s1' mime-type='text/plain'
		profile='http://jabber.org/protocol/si/profile/file-transfer'><file xmlns='http://jabber.org/protocol/si/profile/file-transfer'
		name='report.txt' size='5'/><feature xmlns='http://jabber.org/protocol/feature-neg'><x xmlns='jabber:x:data' type='form'>
		<field var='stream-method' type='list-single'><option><value>http://jabber.org/protocol/ibb</value></option></field></x>
		</feature></si></iq>`},
	{"IBB open", "ibb", `<iq type='set' to='%[1]s' id='%[2]s'><open xmlns='http://jabber.org/protocol/ibb' sid='s1' block-size='4096' stanza='iq'/></iq>`},
	{"IBB data iq", "ibb", `<iq type='set' to='%[1]s' id='%[2]s'><data xmlns='http://jabber.org/protocol/ibb' sid='s1' seq='0'>aGVsbG8=</data></iq>`},
	{"IBB close", "ibb", `<iq type='set' to='%[1]s' id='%[2]s'><close xmlns='http://jabber.org/protocol/ibb' sid='s1'/></iq>`},
	{"IBB data message", "ibb", `<message to='%[1]s' id='%[2]s'><data xmlns='http://jabber.org/protocol/ibb' sid='s1' seq='1'>aGVsbG8=</data></message>`},
	{"bytestreams", "bytestreams", `<iq type='set' to='%[1]s' id='%[2]s'><query xmlns='http://jabber.org/protocol/bytestreams' sid='s1' mode='tcp'>
		<streamhost jid='proxy.localhost' host='127.0.0.1' port='7777'/></query></iq>`},
	{"Jingle file transfer", "jingle", `<iq type='set' to='%[1]s' id='%[2]s'><jingle xmlns='urn:xmpp:jingle:1' action='session-initiate' sid='j1'>
		<content creator='initiator' name='f'><description xmlns='urn:xmpp:jingle:apps:file-transfer:5'><file><name>report.txt</name>
		<size>5</size></file></description><transport xmlns='urn:xmpp:jingle:transports:ibb:1' sid='t1' block-size='4096'/></content>
		</jingle></iq>`},
	{"OOB message", "oob", `<message to='%[1]s' id='%[2]s' type='chat'><body>https://files.example/report.txt</body>
		<x xmlns='jabber:x:oob'><url>https://files.example/report.txt</url></x></message>`},
	{"OOB iq", "oob", `<iq type='set' to='%[1]s' id='%[2]s'><query xmlns='jabber:iq:oob'><url>https://files.example/report.txt</url></query></iq>`},
}

// ftEnv starts a server with rules giving carol file_transfer = none and
// bob "contacts"; alice has the default ("all").
func ftEnv(t *testing.T) (*env, *observer.ObservedLogs) {
	return newEnvObserved(t, func(c *config.Config) {
		c.Access.Rules = []config.Rule{
			{JID: "carol@localhost", Rights: config.Rights{FileTransfer: config.FileTransferNone}},
			{JID: "bob@localhost", Rights: config.Rights{FileTransfer: config.FileTransferContacts}},
		}
	})
}

// wantFTRefused reads the sender's error for a refused transfer stanza.
func wantFTRefused(t *testing.T, from *client, id, what string) {
	t.Helper()
	n := from.next()
	wantRefused(t, n, id, "cancel", what)
	if txt := n.Child(nsClient, "error").Child(nsStanzas, "text"); txt == nil || txt.Text != filetransfer.Text {
		t.Fatalf("%s: error text %v, want %q", what, txt, filetransfer.Text)
	}
}

// sendAll sends every transfer stanza from one client to another and
// reports whether each got through: the recipient got it, or the sender
// got policy-violation.
func ftSend(t *testing.T, from, to *client, toJID, prefix string, wantAllowed bool) {
	t.Helper()
	for i, s := range ftStanzas {
		id := fmt.Sprintf("%s%d", prefix, i)
		from.send(s.xml, toJID, id)
		if wantAllowed {
			n := to.next()
			if !n.isStanza() || n.A("id") != id || n.A("type") == "error" {
				t.Fatalf("%s %s: recipient got %s, want the stanza", prefix, s.name, n)
			}
			continue
		}
		wantFTRefused(t, from, id, prefix+" "+s.name)
	}
	if to != nil {
		to.nothing(quiet)
	}
}

// TestFileTransferNone: carol (file_transfer = none) can neither send nor
// receive any transfer stanza; the refusal is policy-violation with the
// same text whether the peer exists or not, and one audit event per
// stanza names the rule; chat still passes.
func TestFileTransferNone(t *testing.T) {
	t.Parallel()
	e, logs := ftEnv(t)
	alice := login(t, e, modeStartTLS, "alice", "a")
	carol := login(t, e, modeStartTLS, "carol", "c")

	ftSend(t, carol, alice, "alice@localhost/a", "cn", false)
	ftSend(t, alice, carol, "carol@localhost/c", "ac", false)
	// No enumeration: the same answer for an account that does not exist.
	carol.send(ftStanzas[0].xml, "nobody@localhost/x", "ghost")
	wantFTRefused(t, carol, "ghost", "carol's offer to no account")

	carol.send("<message to='alice@localhost/a' type='chat' id='chat1'><body>hello</body></message>")
	if m := alice.expect(nsClient, "message"); m.A("id") != "chat1" {
		t.Fatalf("alice got %s", m)
	}

	denials := auditEvents(logs, "policy_denied", "policy", "filetransfer")
	if len(denials) != 2*len(ftStanzas)+1 {
		t.Fatalf("%d filetransfer audit events, want %d: %v", len(denials), 2*len(ftStanzas)+1, denials)
	}
	for i, s := range ftStanzas {
		f := denials[i].ContextMap()
		want := "access.rule 1: file_transfer = none (sender, " + s.kind + ")"
		if f["reason"] != want || f["from"] != "carol@localhost/c" || f["to"] != "alice@localhost/a" {
			t.Errorf("audit of carol's %s: %v, want reason %q", s.name, f, want)
		}
		f = denials[len(ftStanzas)+i].ContextMap()
		want = "access.rule 1: file_transfer = none (recipient, " + s.kind + ")"
		if f["reason"] != want || f["from"] != "alice@localhost/a" {
			t.Errorf("audit of alice's %s to carol: %v, want reason %q", s.name, f, want)
		}
	}
	// Journaled only as the errors the senders got back.
	for _, r := range journalRows(t, e) {
		if r.typ != "error" && (strings.Contains(r.content, "report.txt") || strings.Contains(r.content, "aGVsbG8=")) {
			t.Errorf("a refused transfer stanza reached the journal: %+v", r)
		}
	}
}

// TestFileTransferContacts: bob (file_transfer = "contacts") is refused
// towards alice while they have no mutual subscription, then allowed
// once they have one (subscription both in bob's roster).
func TestFileTransferContacts(t *testing.T) {
	t.Parallel()
	e, logs := ftEnv(t)
	alice := login(t, e, modeStartTLS, "alice", "a")
	bob := login(t, e, modeStartTLS, "bob", "b")

	ftSend(t, bob, alice, "alice@localhost/a", "bn", false)
	ftSend(t, alice, bob, "bob@localhost/b", "an", false)
	if ev := auditEvents(logs, "policy_denied", "reason", "access.rule 2: file_transfer = contacts (sender, si): not a contact"); len(ev) != 1 {
		t.Errorf("audit of bob's offer: %v", ev)
	}

	befriend(t, e, "bob", "alice")
	ftSend(t, bob, alice, "alice@localhost/a", "by", true)
	ftSend(t, alice, bob, "bob@localhost/b", "ay", true)
}

// TestFileTransferAll: with the default ("all") on both sides every
// transfer stanza is delivered, though a rule restricts someone else.
func TestFileTransferAll(t *testing.T) {
	t.Parallel()
	e, _ := newEnvObserved(t, func(c *config.Config) {
		c.Access.Rules = []config.Rule{{JID: "carol@localhost", Rights: config.Rights{FileTransfer: config.FileTransferNone}}}
	})
	alice := login(t, e, modeStartTLS, "alice", "a")
	bob := login(t, e, modeStartTLS, "bob", "b")
	ftSend(t, alice, bob, "bob@localhost/b", "ab", true)
	ftSend(t, bob, alice, "alice@localhost/a", "ba", true)
}
