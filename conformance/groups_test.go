package conformance

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestInternalGroupRevocation: an [[access.rule]] for a group of internal
// accounts ([groups] ops = ""). `palisade user group add` run while the
// server runs puts alice in ops: her live slixmpp session (XEP-0198
// resumption enabled) ends with not-authorized and she cannot log in
// again; bob's session is untouched. A group not in [groups] is refused
// by the CLI with exit 2 naming it.
func TestInternalGroupRevocation(t *testing.T) {
	RequireSlixmpp(t)
	s := StartServerWith(t, `
[groups]
ops = ""

[[access.rule]]
group = "ops"
login = false
`)
	for _, name := range []string{"alice", "bob"} {
		s.AddUser(t, name+"@"+Domain, accounts[name])
	}
	_, port := HostPort(s.C2S)
	start := func(name string) (*Peer, string) {
		goFile := filepath.Join(t.TempDir(), "go-"+name)
		p := s.StartPeer(t, 90*time.Second, "slixmpp revoke "+name, nil, PythonBin, "testdata/slix.py",
			"--port", port, "--ca", s.CAFile, "--timeout", "85", "--step-timeout", "20",
			"--wait-file", goFile, "revoke", acct(name))
		p.WaitLine(t, `READY `+name+`@localhost/\S+`, 30*time.Second)
		return p, goFile
	}
	alice, aliceGo := start("alice")
	bob, _ := start("bob")

	out, err := palisadeCLI(t, s, "user", "group", "add", "alice@"+Domain, "ops")
	if err != nil || !strings.Contains(out, "alice@localhost: added to group ops\n") || !strings.Contains(out, `"msg":"user_group_add"`) {
		t.Fatalf("user group add: %v\n%s", err, out)
	}
	alice.WaitLine(t, `STREAM ERROR alice not-authorized`, 20*time.Second)
	alice.WaitLine(t, `DISCONNECTED`, 10*time.Second)
	s.WaitLog(t, `"msg":"session_revoked".*"jid":"alice@localhost/\S+".*"source":"groups"`, 5*time.Second)
	if err := os.WriteFile(aliceGo, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	alice.WaitLine(t, `AUTH FAILURE \S+ not-authorized`, 20*time.Second)
	s.WaitLog(t, `"msg":"login".*"result":"failure","user":"alice".*"detail":"access.rule 1: login not allowed"`, 5*time.Second)
	if regexp.MustCompile(`STREAM ERROR|DISCONNECTED`).MatchString(bob.Output()) {
		t.Fatalf("bob's session ended with alice's:\n%s", bob.Output())
	}

	if out, err := palisadeCLI(t, s, "user", "group", "list", "ops"); err != nil || strings.TrimSpace(out) != "alice@localhost" {
		t.Errorf("user group list ops: %v\n%s", err, out)
	}
	out, err = palisadeCLI(t, s, "user", "group", "add", "bob@"+Domain, "admins")
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(out, `group "admins" is not declared in [groups]`) {
		t.Errorf("undeclared group: %v\n%s", err, out)
	}
}
