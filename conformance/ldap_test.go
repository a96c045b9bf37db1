package conformance

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/palisade-im/palisade/conformance/ldaptest"
)

// startLDAPServer starts slapd and palisade with providers ["ldap",
// "internal"] against it, a 1s sync interval, and an internal service
// account svc@localhost.
func startLDAPServer(t *testing.T, extra ...string) (*Server, *ldaptest.Server) {
	t.Helper()
	dir := ldaptest.Start(t)
	secret := filepath.Join(t.TempDir(), "ldap.secret")
	if err := os.WriteFile(secret, []byte(ldaptest.ServicePassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := StartServerWith(t, fmt.Sprintf(`
[auth]
providers = ["ldap", "internal"]

[modules.ldap]
url = %q
start_tls = true
ca_file = %q
bind_dn = %q
bind_password_file = %q
base_dn = %q
user_filter = "(&(objectClass=inetOrgPerson)(uid={user}))"
disabled_filter = "(employeeType=disabled)"
group_filter = "(&(objectClass=groupOfNames)(member={dn}))"
group_base_dn = %q
allowed_groups = [%q]
sync_interval = "1s"
connect_timeout = "2s"
request_timeout = "2s"
`+strings.Join(extra, "\n"), dir.URL, dir.CAFile, ldaptest.ServiceDN, secret, ldaptest.PeopleDN, ldaptest.GroupsDN, ldaptest.StaffDN))
	s.AddUser(t, "svc@"+Domain, "svc-secret-4444")
	return s, dir
}

func dirAcct(uid string) string { return uid + "@" + Domain + ":" + ldaptest.People[uid] }

// TestLDAPLogin: directory people log in with slixmpp over STARTTLS and
// direct TLS (PLAIN, the only mechanism offered); a wrong password, a
// disabled person, a person outside the allowed group and a filter
// injection are refused; the internal service account still logs in.
func TestLDAPLogin(t *testing.T) {
	s, _ := startLDAPServer(t)
	plain := []string{"--mech", "PLAIN"}
	for _, tr := range tcpTransports {
		out := mustSlix(t, s, tr, 30*time.Second, plain, "login", dirAcct("alice"))
		wantLine(t, out, `LOGIN OK alice PLAIN alice@localhost/\S+`)
	}
	mustSlix(t, s, tcpTransports[0], 30*time.Second, plain, "login", "svc@"+Domain+":svc-secret-4444")
	for _, tc := range []struct{ acct, cond string }{
		{"alice@" + Domain + ":bob-pw", "not-authorized"},
		{dirAcct("dave"), "account-disabled"},
		{dirAcct("carol"), "not-authorized"},
		{"*)(uid=*@" + Domain + ":alice-pw", "not-authorized"},
		{"*@" + Domain + ":alice-pw", "not-authorized"},
		{"alice)(uid=*@" + Domain + ":alice-pw", "not-authorized"},
	} {
		out, err := slix(t, s, tcpTransports[0], 30*time.Second, plain, "login", tc.acct)
		if err == nil {
			t.Errorf("%s logged in:\n%s", tc.acct, out)
			continue
		}
		wantLine(t, out, `AUTH FAILURE PLAIN `+tc.cond+` ?`)
	}
	// The audit log names each refusal's reason.
	s.WaitLog(t, `"msg":"login".*"result":"failure","user":"dave".*"reason":"account-disabled","detail":"ldap: disabled in the directory"`, 5*time.Second)
	s.WaitLog(t, `"msg":"login".*"result":"failure","user":"carol".*"detail":"ldap: not a member of an allowed group"`, 5*time.Second)
}

// TestLDAPDown: with slapd stopped, a new directory login fails with
// temporary-auth-failure and a clear log line, while a session opened
// before keeps receiving messages.
func TestLDAPDown(t *testing.T) {
	s, dir := startLDAPServer(t)
	_, port := HostPort(s.C2S)
	listener := s.StartPeer(t, 60*time.Second, "slixmpp listen", nil, PythonBin, "testdata/slix.py",
		"--port", port, "--ca", s.CAFile, "--timeout", "55", "--step-timeout", "50", "listen", dirAcct("alice"))
	listener.WaitLine(t, `READY alice@localhost/\S+`, 30*time.Second)
	dir.Stop(t)
	out, err := slix(t, s, tcpTransports[0], 30*time.Second, []string{"--mech", "PLAIN"}, "login", dirAcct("bob"))
	if err == nil {
		t.Fatalf("bob logged in with the directory down:\n%s", out)
	}
	wantLine(t, out, `AUTH FAILURE PLAIN temporary-auth-failure ?`)
	s.WaitLog(t, `directory unreachable or failing: login refused with temporary-auth-failure`, 5*time.Second)
	// A sync round fails while slapd is down; alice's session stays.
	s.WaitLog(t, `directory sync failed; sessions left as they are`, 10*time.Second)
	mustSlix(t, s, tcpTransports[0], 30*time.Second, []string{"--to", "alice@" + Domain, "--body", "still here"},
		"send", "svc@"+Domain+":svc-secret-4444")
	listener.WaitLine(t, `RECEIVED alice svc@localhost still here`, 20*time.Second)
	if err := listener.Wait(); err != nil {
		t.Fatalf("listener: %v\n%s", err, listener.Output())
	}
}

// TestLDAPRevocation: ldapmodify disables alice; her live slixmpp session
// (with XEP-0198 resumption enabled) ends within the sync interval and she
// cannot come back. bob is taken out of the allowed group: his session
// ends the same way; once he is put back, he can log in again but the old
// stream cannot be resumed.
func TestLDAPRevocation(t *testing.T) {
	s, dir := startLDAPServer(t)
	_, port := HostPort(s.C2S)
	start := func(uid string) (*Peer, string) {
		goFile := filepath.Join(t.TempDir(), "go-"+uid)
		p := s.StartPeer(t, 90*time.Second, "slixmpp revoke "+uid, nil, PythonBin, "testdata/slix.py",
			"--port", port, "--ca", s.CAFile, "--timeout", "85", "--step-timeout", "20",
			"--mech", "PLAIN", "--wait-file", goFile, "revoke", dirAcct(uid))
		p.WaitLine(t, `SM ENABLED resume=True id=\S+`, 30*time.Second)
		p.WaitLine(t, `READY `+uid+`@localhost/\S+`, 30*time.Second)
		return p, goFile
	}
	alice, aliceGo := start("alice")
	bob, bobGo := start("bob")

	dir.Disable(t, "alice")
	alice.WaitLine(t, `STREAM ERROR alice not-authorized`, 20*time.Second)
	alice.WaitLine(t, `DISCONNECTED`, 10*time.Second)
	s.WaitLog(t, `"msg":"session_revoked".*"jid":"alice@localhost","reason":"disabled in the directory"`, 5*time.Second)
	if err := os.WriteFile(aliceGo, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	alice.WaitLine(t, `AUTH FAILURE PLAIN account-disabled`, 20*time.Second)
	if regexp.MustCompile(`STREAM ERROR|DISCONNECTED`).MatchString(bob.Output()) {
		t.Fatalf("bob's session ended with alice's:\n%s", bob.Output())
	}

	dir.RemoveMember(t, ldaptest.StaffDN, "bob")
	bob.WaitLine(t, `STREAM ERROR bob not-authorized`, 20*time.Second)
	bob.WaitLine(t, `DISCONNECTED`, 10*time.Second)
	s.WaitLog(t, `"msg":"session_revoked".*"jid":"bob@localhost","reason":"not a member of an allowed group"`, 5*time.Second)
	dir.Modify(t, "dn: "+ldaptest.StaffDN+"\nchangetype: modify\nadd: member\nmember: "+ldaptest.UserDN("bob")+"\n")
	if err := os.WriteFile(bobGo, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	bob.WaitLine(t, `SM FAILED`, 20*time.Second)
	bob.WaitLine(t, `RESUME REFUSED`, 20*time.Second)
	bob.WaitLine(t, `BOUND AGAIN bob@localhost/\S+`, 20*time.Second)
	if err := bob.Wait(); err != nil {
		t.Fatalf("bob: %v\n%s", err, bob.Output())
	}
}

// TestLDAPAccessNetworks: [[access.rule]] for the directory group staff
// allows logins from 127.0.0.1/32 only; slixmpp connecting from 127.0.0.2
// is refused, from 127.0.0.1 it logs in; carol (interns) matches no rule
// and the default refuses her.
func TestLDAPAccessNetworks(t *testing.T) {
	dir := ldaptest.Start(t)
	secret := filepath.Join(t.TempDir(), "ldap.secret")
	if err := os.WriteFile(secret, []byte(ldaptest.ServicePassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := StartServerWith(t, fmt.Sprintf(`
[auth]
providers = ["ldap"]

[modules.ldap]
url = %q
bind_dn = %q
bind_password_file = %q
base_dn = %q
group_base_dn = %q

[groups]
staff = %q

[access]
default = { login = false }

[[access.rule]]
group = "staff"
networks = ["127.0.0.1/32"]
`, dir.URL, ldaptest.ServiceDN, secret, ldaptest.PeopleDN, ldaptest.GroupsDN, ldaptest.StaffDN))
	from := func(ip string) []string { return []string{"--mech", "PLAIN", "--source", ip} }
	out := mustSlix(t, s, tcpTransports[0], 30*time.Second, from("127.0.0.1"), "login", dirAcct("alice"))
	wantLine(t, out, `LOGIN OK alice PLAIN alice@localhost/\S+`)
	out, err := slix(t, s, tcpTransports[0], 30*time.Second, from("127.0.0.2"), "login", dirAcct("alice"))
	if err == nil {
		t.Fatalf("alice logged in from 127.0.0.2:\n%s", out)
	}
	wantLine(t, out, `AUTH FAILURE PLAIN not-authorized ?`)
	s.WaitLog(t, `"msg":"login".*"result":"failure","user":"alice".*"ip":"127.0.0.2".*"detail":"access.rule 1: login from 127.0.0.2 is outside the allowed networks"`, 5*time.Second)
	out, err = slix(t, s, tcpTransports[0], 30*time.Second, from("127.0.0.1"), "login", dirAcct("carol"))
	if err == nil {
		t.Fatalf("carol logged in:\n%s", out)
	}
	wantLine(t, out, `AUTH FAILURE PLAIN not-authorized ?`)
}

// TestLDAPSharedRoster: alice and bob are in the directory group staff,
// a shared roster group; logged in with slixmpp, neither asks for a
// subscription, yet each gets the other with subscription both in the
// roster group "staff" and sees the other available.
func TestLDAPSharedRoster(t *testing.T) {
	s, _ := startLDAPServer(t, fmt.Sprintf(`
[groups]
staff = %q

[modules.roster]
shared_groups = ["staff"]
shared_interval = "1s"
`, ldaptest.StaffDN))
	out := mustSlix(t, s, tcpTransports[0], 60*time.Second, nil, "shared", dirAcct("alice"), dirAcct("bob"))
	wantLine(t, out, `SHARED alice bob@localhost both staff`)
	wantLine(t, out, `SHARED bob alice@localhost both staff`)
	wantLine(t, out, `SHARED OK`)
}
