package conformance

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"
)

// TestAdhocEndUserSessionSlixmpp: slixmpp as administrator ([server]
// admins) runs XEP-0133 End User Session with its xep_0050/xep_0133
// plugins (testdata/slix_adhoc.py) against bob, logged in with slixmpp
// and XEP-0198 resumption: bob's stream ends with policy-violation, his
// resumption is refused, the audit log names alice and the reason. carol,
// no administrator, sees no command and is refused; cancel and a made-up
// sessionid are answered per XEP-0050.
func TestAdhocEndUserSessionSlixmpp(t *testing.T) {
	RequireSlixmpp(t)
	s := StartServerWithKeys(t, `admins = ["alice@`+Domain+`"]`, "")
	for name, pw := range accounts {
		s.AddUser(t, name+"@"+Domain, pw)
	}
	_, port := HostPort(s.C2S)
	goFile := filepath.Join(t.TempDir(), "go")
	bob := s.StartPeer(t, 90*time.Second, "slixmpp bob", nil, PythonBin, "testdata/slix.py",
		"--port", port, "--ca", s.CAFile, "--timeout", "85", "--step-timeout", "20",
		"--wait-file", goFile, "revoke", acct("bob"))
	bob.WaitLine(t, `READY bob@localhost/\S+`, 30*time.Second)

	out, err := s.RunPeer(t, 60*time.Second, "slixmpp adhoc", nil, PythonBin, "testdata/slix_adhoc.py",
		"--port", port, "--ca", s.CAFile, "--timeout", "50", "--target", "bob@"+Domain, acct("alice"), acct("carol"))
	if err != nil {
		t.Fatalf("slix_adhoc.py failed: %v\n%s", err, out)
	}
	t.Logf("slix_adhoc.py:\n%s", out)
	wantLine(t, out, `OTHER COMMANDS 0`)
	wantLine(t, out, `OTHER EXECUTE error forbidden`)
	wantLine(t, out, `ADMIN COMMAND localhost http://jabber.org/protocol/admin#end-user-session End User Session`)
	wantLine(t, out, `CANCEL result canceled`)
	wantLine(t, out, `FORM executing form http://jabber.org/protocol/admin accountjids jid-multi`)
	wantLine(t, out, `COMPLETED completed info: bob@localhost: 1 session\(s\) ended`)
	wantLine(t, out, `BAD SESSIONID bad-request bad-sessionid`)
	wantLine(t, out, `ADHOC OK`)

	bob.WaitLine(t, `STREAM ERROR bob policy-violation`, 20*time.Second)
	bob.WaitLine(t, `DISCONNECTED`, 10*time.Second)
	s.WaitLog(t, `"msg":"session_kicked".*"jid":"bob@localhost","sessions":1,"actor":"alice@localhost","reason":"ad-hoc end-user-session"`, 5*time.Second)
	s.WaitLog(t, `"msg":"adhoc_forbidden".*"jid":"carol@localhost/`, 5*time.Second)
	if err := os.WriteFile(goFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	bob.WaitLine(t, `RESUME REFUSED`, 20*time.Second)
	bob.WaitLine(t, `BOUND AGAIN bob@localhost/\S+`, 20*time.Second)
	if err := bob.Wait(); err != nil {
		t.Fatalf("slixmpp bob: %v\n%s", err, bob.Output())
	}
	if regexp.MustCompile(`(?m)^FAIL `).MatchString(out) {
		t.Errorf("slix_adhoc.py reported a failure:\n%s", out)
	}
}
