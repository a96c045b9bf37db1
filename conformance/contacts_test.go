package conformance

import (
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestSlixmppContactPolicy: bob has contacts = "roster" and subscriptions =
// "none". Three real slixmpp clients: carol, whom bob subscribed to, reaches
// him with a message and a disco#info IQ to his full JID; alice, a
// stranger, gets for the same message and IQ exactly the errors (the
// stanzas as the client received them, minus id and addressee) that an
// account that does not exist draws, and bob sees neither them nor her
// subscription request. Each refusal is audited as policy "contacts".
func TestSlixmppContactPolicy(t *testing.T) {
	RequireSlixmpp(t)
	s := StartServerWith(t, `
[[access.rule]]
jid = "bob@`+Domain+`"
contacts = "roster"
subscriptions = "none"
`)
	for name, pw := range accounts {
		s.AddUser(t, name+"@"+Domain, pw)
	}
	_, port := HostPort(s.C2S)
	out := s.MustRunPeer(t, 120*time.Second, "slixmpp contact policy", nil, PythonBin,
		"testdata/slix_contacts.py", "--port", port, "--ca", s.CAFile, "--timeout", "100", "--step-timeout", "20",
		"--missing", "nobody@"+Domain, acct("alice"), acct("bob"), acct("carol"))
	for _, want := range []string{"SUBSCRIBED", "CONTACT MESSAGE RECEIVED", "CONTACT IQ RESULT", "PROTECTED SAW NOTHING FROM STRANGER"} {
		if !regexp.MustCompile(`(?m)^` + want + `$`).MatchString(out) {
			t.Errorf("no line %q in:\n%s", want, out)
		}
	}
	for _, what := range []string{"message", "iq"} {
		m := regexp.MustCompile(`(?m)^REFUSED `+what+` (\S+) (.*)$`).FindAllStringSubmatch(out, -1)
		if len(m) != 2 {
			t.Fatalf("%s: %d refusals in:\n%s", what, len(m), out)
		}
		if !strings.HasPrefix(m[0][1], "bob@") || !strings.HasPrefix(m[1][1], "nobody@") {
			t.Fatalf("%s: refusals to %s and %s", what, m[0][1], m[1][1])
		}
		if m[0][2] != m[1][2] {
			t.Errorf("%s: bob's refusal differs from the missing account's:\n bob:    %s\n nobody: %s", what, m[0][2], m[1][2])
		}
		if !strings.Contains(m[0][2], "service-unavailable") || strings.Contains(m[0][2], "<text") {
			t.Errorf("%s: refusal %s, want service-unavailable without text", what, m[0][2])
		}
	}
	s.WaitLog(t, `"msg":"policy_denied".*"policy":"contacts","reason":"access.rule 1: contacts = roster: not a contact","from":"alice@`, 5*time.Second)
	s.WaitLog(t, `"msg":"policy_denied".*"policy":"contacts","reason":"access.rule 1: subscriptions = none: subscription requests refused","from":"alice@`, 5*time.Second)
}
