package conformance

import (
	"regexp"
	"testing"
	"time"
)

// runSlixTransfer runs slix_filetransfer.py: alice offers bob a file
// (XEP-0096) and sends it over XEP-0047 in-band bytestreams.
func runSlixTransfer(t *testing.T, s *Server, extra ...string) string {
	t.Helper()
	_, port := HostPort(s.C2S)
	args := append([]string{"testdata/slix_filetransfer.py", "--port", port, "--ca", s.CAFile,
		"--timeout", "100", "--step-timeout", "20"}, extra...)
	args = append(args, acct("alice"), acct("bob"))
	return s.MustRunPeer(t, 120*time.Second, "slixmpp file transfer", nil, PythonBin, args...)
}

// ftLine returns the submatches of the first line of out matching re, or
// fails the test.
func ftLine(t *testing.T, out, re string) []string {
	t.Helper()
	m := regexp.MustCompile("(?m)" + re).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no line /%s/ in:\n%s", re, out)
	}
	return m
}

// TestSlixmppFileTransferIBB: with the default rights two slixmpp clients
// complete an XEP-0096 offer and send a 50,000-byte file over XEP-0047
// in-band bytestreams (IQ data, 4096-byte blocks); it arrives intact.
func TestSlixmppFileTransferIBB(t *testing.T) {
	RequireSlixmpp(t)
	s := StartServer(t)
	for name, pw := range accounts {
		s.AddUser(t, name+"@"+Domain, pw)
	}
	out := runSlixTransfer(t, s)
	ftLine(t, out, `^OFFER ACCEPTED http://jabber.org/protocol/ibb$`)
	sent := ftLine(t, out, `^SENT (\w+) (\d+)$`)
	got := ftLine(t, out, `^RECEIVED (\w+) (\d+)$`)
	if sent[1] != got[1] || got[2] != "50000" {
		t.Fatalf("sent %s (%s bytes), received %s (%s bytes)", sent[1], sent[2], got[1], got[2])
	}
}

// TestSlixmppFileTransferRights: with file_transfer = "none" for alice her
// SI offer draws policy-violation and bob sees nothing; with "contacts"
// it is refused while alice and bob are no contacts and the file goes
// through once they have a mutual subscription (made by the clients).
func TestSlixmppFileTransferRights(t *testing.T) {
	RequireSlixmpp(t)
	for _, tc := range []struct{ scope, args, want string }{
		{"none", "", "refused"},
		{"contacts", "", "refused"},
		{"contacts", "--subscribe", "sent"},
	} {
		t.Run(tc.scope+tc.args, func(t *testing.T) {
			s := StartServerWith(t, `
[[access.rule]]
jid = "alice@`+Domain+`"
file_transfer = "`+tc.scope+`"
`)
			for name, pw := range accounts {
				s.AddUser(t, name+"@"+Domain, pw)
			}
			var extra []string
			if tc.args != "" {
				extra = append(extra, tc.args)
			}
			out := runSlixTransfer(t, s, extra...)
			if tc.want == "refused" {
				ftLine(t, out, `^OFFER REFUSED policy-violation file transfer is not allowed between these parties$`)
				if regexp.MustCompile(`(?m)^OFFER RECEIVED`).MatchString(out) {
					t.Fatalf("bob received the refused offer:\n%s", out)
				}
				s.WaitLog(t, `"msg":"policy_denied".*"policy":"filetransfer","reason":"access.rule 1: file_transfer = `+tc.scope+` \(sender, si\)`, 5*time.Second)
				return
			}
			sent := ftLine(t, out, `^SENT (\w+) (\d+)$`)
			got := ftLine(t, out, `^RECEIVED (\w+) (\d+)$`)
			if sent[1] != got[1] {
				t.Fatalf("sent %s, received %s", sent[1], got[1])
			}
		})
	}
}
