package conformance

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestProfanityEncryptionRequired: alice's [[access.rule]] has
// encryption_required. Profanity's plain message from alice, and bob's
// to her, come back as policy-violation errors and reach no one; once
// alice starts OMEMO, profanity's encrypted message (payload beside its
// fallback body) is delivered and decrypted.
func TestProfanityEncryptionRequired(t *testing.T) {
	s := StartServerWith(t, `
[[access.rule]]
jid = "alice@`+Domain+`"
encryption_required = true
`)
	for name, pw := range accounts {
		s.AddUser(t, name+"@"+Domain, pw)
	}
	alice := startProfanity(t, s, "alice")
	bob := startProfanity(t, s, "bob")
	a, b := "alice@"+Domain, "bob@"+Domain

	omemoContacts(t, alice, bob, a, b)
	alice.waitLog(`RECV: <message[^>]*from="`+regexp.QuoteMeta(b)+`"[^>]*>(<[^>]*>)*?<items node="eu.siacs.conversations.axolotl.devicelist"`, 30*time.Second)

	// Plain text from alice, and to her, is refused.
	alice.cmd("/msg " + b + " plain from alice")
	alice.waitLog(`RECV: <message[^>]*type="error"[^\n]*plain from alice[^\n]*policy-violation`, 20*time.Second)
	bob.cmd("/msg " + a + " plain to alice")
	bob.waitLog(`RECV: <message[^>]*type="error"[^\n]*plain to alice[^\n]*policy-violation`, 20*time.Second)

	// OMEMO passes.
	alice.cmd("/win 2")
	alice.cmd("/omemo start " + b)
	alice.waitScreen(`\[OMEMO\]`, 20*time.Second)
	alice.trust(b)
	bob.cmd("/win 2")
	// Under load profanity may not have bob's key bundle yet when alice
	// types: it then sends nothing and says so ("the key bundle of the
	// recipient(s) have not been received"). Type again, at most thrice.
	got := regexp.MustCompile(`~ ` + regexp.QuoteMeta(a) + `/\S+: omemo secret 4711`)
	for try := 0; ; try++ {
		alice.cmd("omemo secret 4711")
		deadline := time.Now().Add(15 * time.Second)
		for !got.MatchString(bob.screen()) && time.Now().Before(deadline) {
			time.Sleep(200 * time.Millisecond)
		}
		if got.MatchString(bob.screen()) {
			break
		}
		if try == 2 {
			t.Fatalf("bob: no /%s/ on screen within 15s (try %d):\n%s\nalice:\n%s", got, try+1, bob.screen(), alice.screen())
		}
	}
	if strings.Contains(bob.screen(), "plain from alice") {
		t.Error("bob saw alice's refused plain message")
	}
	if log, err := os.ReadFile(alice.log); err != nil {
		t.Fatal(err)
	} else if strings.Contains(string(log), "plain to alice") {
		t.Error("alice received bob's refused plain message")
	}

	journal := journalText(t, s)
	if !strings.Contains(journal, "eu.siacs.conversations.axolotl") {
		t.Error("no OMEMO-encrypted message in the journal")
	}
}

// TestSlixmppMaxSessionDuration: alice's rule has max_session_duration =
// "3s". slixmpp's session ends with a policy-violation stream error, the
// end is audited as session_expired, its XEP-0198 resumption is refused
// and a fresh login binds again.
func TestSlixmppMaxSessionDuration(t *testing.T) {
	s := StartServerWith(t, `
[[access.rule]]
jid = "alice@`+Domain+`"
max_session_duration = "3s"
`)
	for name, pw := range accounts {
		s.AddUser(t, name+"@"+Domain, pw)
	}
	_, port := HostPort(s.C2S)
	goFile := filepath.Join(t.TempDir(), "go")
	p := s.StartPeer(t, 90*time.Second, "slixmpp revoke alice", nil, PythonBin, "testdata/slix.py",
		"--port", port, "--ca", s.CAFile, "--timeout", "85", "--step-timeout", "20",
		"--wait-file", goFile, "revoke", acct("alice"))
	p.WaitLine(t, `READY alice@localhost/\S+`, 30*time.Second)
	p.WaitLine(t, `STREAM ERROR alice policy-violation`, 20*time.Second)
	p.WaitLine(t, `DISCONNECTED`, 10*time.Second)
	s.WaitLog(t, `"msg":"session_expired".*"jid":"alice@localhost/[^"]+","reason":"max_session_duration"`, 5*time.Second)
	if err := os.WriteFile(goFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	p.WaitLine(t, `RESUME REFUSED`, 20*time.Second)
	p.WaitLine(t, `BOUND AGAIN alice@localhost/\S+`, 20*time.Second)
	if err := p.Wait(); err != nil {
		t.Fatalf("slixmpp: %v\n%s", err, p.Output())
	}
}
