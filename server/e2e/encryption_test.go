package e2e

import (
	"bytes"
	"encoding/base64"
	"io"
	"strconv"
	"strings"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/palisade-im/palisade/server/config"
	"go.uber.org/zap/zaptest/observer"
)

// Synthetic but structurally real end-to-end payloads (real sizes, base64
// as clients write it).
const (
	e2eOMEMO2 = "<encrypted xmlns='urn:xmpp:omemo:2'><header sid='27183'>" +
		"<keys jid='bob@localhost'><key rid='31415'>MwohBcJzhALU5ZiBSn8RqMR6SJNe2TB3i9IGypFm</key><key kex='true' rid='12321'>Y29tcGxldGVseSByYW5kb20=</key></keys>" +
		"<keys jid='alice@localhost'><key rid='4223'>MwohBcJzhALU5ZiBSn8RqMR6SJNe2TB3</key></keys>" +
		"</header><payload>5Ro9Hc0DCWBk+Uq7wkCgY9tM4Ecn10njWw==</payload></encrypted>" +
		"<body>This message is encrypted with OMEMO 2.</body><fallback xmlns='urn:xmpp:fallback:0' for='urn:xmpp:omemo:2'/>"
	e2eOMEMOLegacy = "<encrypted xmlns='eu.siacs.conversations.axolotl'><header sid='1797815022'>" +
		"<key rid='697255201'>MwohBcJzhALU5ZiBSn8RqMR6SJNe2TB3i9IGypFm/yhmZztlEAAYACIwScgGuN2u1xeY19JZA3DLoLWlyAj8LyTMRk1uO6IEcUkMoCmpR2H6e83SK62b0dj0Rj1u/AZoWNY=</key>" +
		"<iv>8/pXK3Y8y8gKuVFx</iv></header><payload>5Ro9Hc0DCWBk+Uq7wkCgY9tM4Ecn10njWw==</payload></encrypted>" +
		"<store xmlns='urn:xmpp:hints'/><encryption xmlns='urn:xmpp:eme:0' name='OMEMO' namespace='eu.siacs.conversations.axolotl'/>" +
		"<body>I sent you an OMEMO encrypted message but your client doesn’t seem to support that. Find more information on https://conversations.im/omemo</body>"
	xhtmlOnly = "<html xmlns='http://jabber.org/protocol/xhtml-im'><body xmlns='http://www.w3.org/1999/xhtml'><p>xhtml secret</p></body></html>"
)

// encryptionEnv starts a server whose group "ops" (internal members)
// requires end-to-end encryption, with alice and bob in it; carol is not.
func encryptionEnv(t *testing.T) (*env, *observer.ObservedLogs) {
	t.Helper()
	e, logs := newEnvObserved(t, func(c *config.Config) {
		c.Groups = map[string]string{"ops": ""}
		c.Access.Rules = []config.Rule{{Group: "ops", Rights: config.Rights{EncryptionRequired: true}}}
	})
	for _, u := range []string{"alice", "bob"} {
		groupCLI(t, e, "add", u+"@"+domain, "ops")
		waitRule(t, e, u+"@"+domain, 0)
	}
	return e, logs
}

// wantE2ERefused sends <message id=id>children</message> from c to to and
// checks the modify policy-violation answer: its text must name why.
func wantE2ERefused(t *testing.T, c *client, to, id, children, why string) {
	t.Helper()
	c.send("<message to='%s' type='chat' id='%s'>%s</message>", to, id, children)
	n := c.expect(nsClient, "message")
	wantRefused(t, n, id, "modify", id)
	text := n.Child(nsClient, "error").Child(nsStanzas, "text")
	if text == nil || !strings.Contains(text.Text, why) {
		t.Errorf("%s: the error text %v does not say %q", id, text, why)
	}
}

// wantDelivered sends <message id=id>children</message> from c to to and
// checks that r gets it with the payload child payloadNS intact.
func wantDelivered(t *testing.T, c, r *client, to, id, children, payloadNS, payloadLocal string) {
	t.Helper()
	c.send("<message to='%s' type='chat' id='%s'>%s</message>", to, id, children)
	m := r.expect(nsClient, "message")
	if m.A("id") != id || m.A("type") == "error" {
		t.Fatalf("%s: got %s", id, m)
	}
	if m.Child(payloadNS, payloadLocal) == nil {
		t.Errorf("%s: delivered without its payload: %s", id, m)
	}
}

// TestEncryptionRequiredPayloads: alice and bob are in a group whose rule
// has encryption_required. An empty OMEMO 2 <encrypted/> beside a
// plaintext body, an XHTML-IM-only message, a subject, an OMEMO payload
// without a key and an OMEMO payload beside an arbitrary body are refused
// with a modify policy-violation that says what was wrong, whether alice
// sends them or carol (outside the group) sends them to her; each refusal
// is one audit event and reaches no one. Well-formed OMEMO 2 (with its
// XEP-0428 fallback) and legacy OMEMO (Conversations' fallback text) are
// delivered, and chat states still pass.
func TestEncryptionRequiredPayloads(t *testing.T) {
	t.Parallel()
	e, logs := encryptionEnv(t)
	alice := login(t, e, modeStartTLS, "alice", "a")
	bob := login(t, e, modeStartTLS, "bob", "b")
	carol := login(t, e, modeStartTLS, "carol", "c")

	refused := []struct{ id, children, why string }{
		{"empty-omemo", "<body>empty omemo secret</body><encrypted xmlns='urn:xmpp:omemo:2'/>", "the OMEMO payload has no <header/>"},
		{"xhtml-only", xhtmlOnly, "plaintext and no end-to-end encrypted payload: XHTML-IM"},
		{"subject-only", "<subject>subject secret</subject>", "plaintext and no end-to-end encrypted payload: a subject"},
		{"omemo-no-key", "<encrypted xmlns='urn:xmpp:omemo:2'><header sid='1'/><payload>cGF5bG9hZA==</payload></encrypted><body>no key secret</body>",
			"the OMEMO payload has no key"},
		{"omemo-plaintext", strings.Replace(e2eOMEMOLegacy, "I sent you an OMEMO encrypted message", "beside secret", 1),
			"plaintext beside the encrypted payload: the body is not the payload's fallback text"},
		{"omemo-xhtml", e2eOMEMO2 + xhtmlOnly, "plaintext beside the encrypted payload: XHTML-IM"},
	}
	for _, r := range refused {
		wantE2ERefused(t, alice, "bob@localhost/b", "a-"+r.id, r.children, r.why)
		wantE2ERefused(t, carol, "alice@localhost/a", "c-"+r.id, r.children, r.why)
	}
	alice.sync()
	carol.sync()
	bob.nothing(quiet)
	alice.nothing(quiet)

	wantDelivered(t, alice, bob, "bob@localhost/b", "omemo2", e2eOMEMO2, "urn:xmpp:omemo:2", "encrypted")
	wantDelivered(t, alice, bob, "bob@localhost/b", "omemo-legacy", e2eOMEMOLegacy, "eu.siacs.conversations.axolotl", "encrypted")
	wantDelivered(t, carol, alice, "alice@localhost/a", "omemo2-in", e2eOMEMO2, "urn:xmpp:omemo:2", "encrypted")
	wantDelivered(t, alice, bob, "bob@localhost/b", "state", "<composing xmlns='http://jabber.org/protocol/chatstates'/>",
		"http://jabber.org/protocol/chatstates", "composing")

	rows := journalRows(t, e)
	for _, secret := range []string{"empty omemo secret", "xhtml secret", "subject secret", "no key secret", "beside secret"} {
		for _, r := range rows {
			if strings.Contains(r.rawData, secret) && r.typ != "error" {
				t.Errorf("refused %q is journaled as %s from %s", secret, r.typ, r.from)
			}
		}
	}
	for _, r := range refused {
		for who, id := range map[string]string{"sender": "a-" + r.id, "recipient": "c-" + r.id} {
			if n := len(auditEvents(logs, "policy_denied", "reason", "access.rule 1: encryption_required ("+who+"): "+r.why)); n == 0 {
				t.Errorf("%s: no audit event naming %q", id, r.why)
			}
		}
	}
	if n := len(logs.FilterMessage("policy_denied").All()); n != 2*len(refused) {
		t.Errorf("%d policy_denied events, want %d (one per refusal)", n, 2*len(refused))
	}
}

// TestEncryptionRequiredOpenPGP: under the group's encryption_required, an
// XEP-0373 message encrypted with go-crypto to a freshly generated key
// passes, and so does the same OpenPGP message as an XEP-0027 <x/>
// (armor without its lines, as Dino and profanity cut it); garbage in
// <openpgp/>, an unencrypted (literal data) OpenPGP message and a
// truncated one are refused and reach no one.
func TestEncryptionRequiredOpenPGP(t *testing.T) {
	t.Parallel()
	e, _ := encryptionEnv(t)
	alice := login(t, e, modeStartTLS, "alice", "a")
	bob := login(t, e, modeStartTLS, "bob", "b")

	key, err := openpgp.NewEntity("bob", "", "bob@localhost", &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA})
	if err != nil {
		t.Fatal(err)
	}
	var msg bytes.Buffer
	w, err := openpgp.Encrypt(&msg, []*openpgp.Entity{key}, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(w, "<signcrypt xmlns='urn:xmpp:openpgp:0'><to jid='bob@localhost'/><payload><body>ox secret</body></payload></signcrypt>"); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	var literal bytes.Buffer
	lw, err := packet.SerializeLiteral(nopWriteCloser{&literal}, true, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(lw, "literal secret"); err != nil {
		t.Fatal(err)
	}
	if err := lw.Close(); err != nil {
		t.Fatal(err)
	}
	oxOf := func(b []byte) string {
		return "<openpgp xmlns='urn:xmpp:openpgp:0'>" + base64.StdEncoding.EncodeToString(b) + "</openpgp>" +
			"<encryption xmlns='urn:xmpp:eme:0' namespace='urn:xmpp:openpgp:0'/><body>This message is *encrypted* with OpenPGP</body>"
	}
	var armored bytes.Buffer
	aw, err := armor.Encode(&armored, "PGP MESSAGE", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := aw.Write(msg.Bytes()); err != nil {
		t.Fatal(err)
	}
	if err := aw.Close(); err != nil {
		t.Fatal(err)
	}
	a := armored.String()
	legacy := "<x xmlns='jabber:x:encrypted'>" + a[strings.Index(a, "\n\n")+2:strings.Index(a, "-----END")] + "</x>" +
		"<body>[This message is OpenPGP encrypted (see XEP-0027)]</body>"

	wantDelivered(t, alice, bob, "bob@localhost/b", "ox", oxOf(msg.Bytes()), "urn:xmpp:openpgp:0", "openpgp")
	wantDelivered(t, alice, bob, "bob@localhost/b", "xep27", legacy, "jabber:x:encrypted", "x")
	for i, r := range []struct{ children, why string }{
		{"<openpgp xmlns='urn:xmpp:openpgp:0'>b3BlbnBncA==</openpgp><body>garbage secret</body>", "the OpenPGP message does not parse"},
		{oxOf(literal.Bytes()), "the OpenPGP message is not encrypted"},
		{oxOf(msg.Bytes()[:msg.Len()-8]), "the OpenPGP message is truncated"},
		{"<body>xep27 garbage secret</body><x xmlns='jabber:x:encrypted'>cGdw</x>", "the OpenPGP message does not parse"},
	} {
		wantE2ERefused(t, alice, "bob@localhost/b", "bad"+strconv.Itoa(i), r.children, r.why)
	}
	alice.sync()
	bob.nothing(quiet)
}

type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }
