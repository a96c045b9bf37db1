package conformance

import (
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestEncryptionRequiredRealPayloads: with encryption_required for every
// account ([access] default), profanity's OMEMO conversation works as in
// TestProfanityOMEMO: device lists and bundles through PEP, subscriptions,
// and alice's OMEMO message (legacy namespace, profanity's fallback body,
// no XEP-0380 hint) delivered to bob and decrypted, as sender's and
// recipient's rules both require. slixmpp, sending raw stanzas as a client
// with a broken OMEMO plugin would, gets a modify policy-violation that
// names the problem for an empty <encrypted/> (OMEMO 2 and legacy) beside a
// plaintext body and for an XHTML-IM-only message; none of them reaches
// bob, and each refusal is audited.
func TestEncryptionRequiredRealPayloads(t *testing.T) {
	RequireSlixmpp(t)
	s := StartServerWith(t, `
[access]
default = { encryption_required = true }
`)
	for name, pw := range accounts {
		s.AddUser(t, name+"@"+Domain, pw)
	}
	alice := startProfanity(t, s, "alice")
	bob := startProfanity(t, s, "bob")
	a, b := "alice@"+Domain, "bob@"+Domain

	omemoContacts(t, alice, bob, a, b)
	alice.waitLog(`RECV: <message[^>]*from="`+regexp.QuoteMeta(b)+`"[^>]*>(<[^>]*>)*?<items node="eu.siacs.conversations.axolotl.devicelist"`, 30*time.Second)
	bob.waitLog(`RECV: <message[^>]*from="`+regexp.QuoteMeta(a)+`"[^>]*>(<[^>]*>)*?<items node="eu.siacs.conversations.axolotl.devicelist"`, 30*time.Second)

	// A real client's OMEMO message passes.
	alice.cmd("/msg " + b)
	alice.cmd("/omemo start " + b)
	alice.waitScreen(`\[OMEMO\]`, 20*time.Second)
	alice.trust(b)
	alice.sendOMEMO("omemo secret 4711")
	bob.cmd("/win 2")
	bob.waitScreen(`~ `+regexp.QuoteMeta(a)+`/\S+: omemo secret 4711`, 30*time.Second)

	// Raw stanzas from slixmpp (carol) to bob are refused.
	raw := []struct{ id, stanza, why string }{
		{"raw-omemo2", `<message to='bob@localhost' type='chat' id='raw-omemo2'><body>raw plain omemo2 secret</body><encrypted xmlns='urn:xmpp:omemo:2'/></message>`,
			"the OMEMO payload has no <header/>"},
		{"raw-legacy", `<message to='bob@localhost' type='chat' id='raw-legacy'><encrypted xmlns='eu.siacs.conversations.axolotl'/><body>raw plain legacy secret</body></message>`,
			"the OMEMO payload has no <header/>"},
		{"raw-xhtml", `<message to='bob@localhost' type='chat' id='raw-xhtml'><html xmlns='http://jabber.org/protocol/xhtml-im'><body xmlns='http://www.w3.org/1999/xhtml'><p>raw xhtml secret</p></body></html></message>`,
			"plaintext and no end-to-end encrypted payload: XHTML-IM"},
	}
	var in strings.Builder
	for _, r := range raw {
		in.WriteString(r.stanza + "\n")
	}
	_, port := HostPort(s.C2S)
	p := s.StartPeerInput(t, 60*time.Second, "slixmpp carol raw", nil, in.String(), PythonBin, "testdata/slix_encryption.py", "raw",
		"--port", port, "--ca", s.CAFile, "--timeout", "55", "--step-timeout", "15", acctRes("carol", "raw"))
	if err := p.Wait(); err != nil {
		t.Fatalf("slixmpp: %v\n%s", err, p.Output())
	}
	out := p.Output()
	for _, r := range raw {
		wantLine(t, out, `REFUSED `+r.id+` modify policy-violation this account must encrypt messages end to end \(OMEMO or OpenPGP\): `+regexp.QuoteMeta(r.why))
		s.WaitLog(t, `"msg":"policy_denied".*"reason":"access.default: encryption_required \(sender\): `+regexp.QuoteMeta(r.why)+`".*"from":"carol@localhost/raw"`, 5*time.Second)
	}

	// bob saw none of it: his client logs every stanza it receives.
	log, err := os.ReadFile(bob.log)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"raw plain omemo2 secret", "raw plain legacy secret", "raw xhtml secret"} {
		if strings.Contains(string(log), secret) {
			t.Errorf("bob received %q", secret)
		}
	}
	journal := journalText(t, s)
	// Records are JSON: the stanza's quotes are escaped.
	if !regexp.MustCompile(`<message [^>]*from=\\"alice@localhost/[^>]*><encrypted xmlns=\\"eu\.siacs\.conversations\.axolotl\\"><header [^\n]*<payload>`).MatchString(journal) {
		t.Error("alice's OMEMO message is not in the journal")
	}
	if strings.Contains(journal, "omemo secret 4711") {
		t.Error("the journal holds the OMEMO plaintext")
	}
}
