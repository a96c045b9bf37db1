package conformance

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// palisadeCLI runs the built binary with the server's configuration.
func palisadeCLI(t *testing.T, s *Server, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, binPath, append([]string{"--config", s.ConfigPath}, args...)...).CombinedOutput()
	return string(out), err
}

// TestUserKick: `palisade user kick JID` ends a live slixmpp session with
// policy-violation through the admin listener, authenticated with the
// token the server keeps in data_dir/admin.token (mode 0600); its stream
// cannot be resumed, a fresh login works. The endpoint refuses requests
// without the token (the old constant X-Palisade-Admin header included)
// with 401, and other methods with 405.
func TestUserKick(t *testing.T) {
	s := newServer(t)
	_, port := HostPort(s.C2S)
	goFile := filepath.Join(t.TempDir(), "go")
	p := s.StartPeer(t, 90*time.Second, "slixmpp revoke alice", nil, PythonBin, "testdata/slix.py",
		"--port", port, "--ca", s.CAFile, "--timeout", "85", "--step-timeout", "20",
		"--wait-file", goFile, "revoke", acct("alice"))
	p.WaitLine(t, `READY alice@localhost/\S+`, 30*time.Second)

	tokenFile := filepath.Join(s.DataDir, "admin.token")
	fi, err := os.Stat(tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("%s: mode %v, want 0600", tokenFile, fi.Mode().Perm())
	}
	raw, err := os.ReadFile(tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	token := strings.TrimSpace(string(raw))
	for _, tc := range []struct {
		method, header, value string
		want                  int
	}{
		{"POST", "X-Palisade-Admin", "1", http.StatusUnauthorized},
		{"POST", "", "", http.StatusUnauthorized},
		{"POST", "Authorization", "Bearer not-the-token", http.StatusUnauthorized},
		{"GET", "Authorization", "Bearer " + token, http.StatusMethodNotAllowed},
	} {
		req, _ := http.NewRequest(tc.method, "http://"+s.Admin+"/admin/kick?jid=alice@localhost", nil)
		if tc.header != "" {
			req.Header.Set(tc.header, tc.value)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s %s: status %d, want %d", tc.method, tc.header, resp.StatusCode, tc.want)
		}
	}
	s.WaitLog(t, `"msg":"admin_refused".*"path":"/admin/kick".*"reason":"wrong token"`, 5*time.Second)
	if strings.Contains(s.Log(), token) {
		t.Error("the admin token is in the server's log")
	}
	if strings.Contains(p.Output(), "STREAM ERROR") {
		t.Fatalf("refused requests ended the session:\n%s", p.Output())
	}

	out, err := palisadeCLI(t, s, "user", "kick", "alice@"+Domain)
	if err != nil || !strings.Contains(out, "alice@localhost: 1 session(s) closed") {
		t.Fatalf("user kick: %v\n%s", err, out)
	}
	p.WaitLine(t, `STREAM ERROR alice policy-violation`, 20*time.Second)
	p.WaitLine(t, `DISCONNECTED`, 10*time.Second)
	s.WaitLog(t, `"msg":"session_kicked".*"jid":"alice@localhost","sessions":1,"actor":"cli:[^"]+"`, 5*time.Second)
	out, err = palisadeCLI(t, s, "user", "kick", "alice@"+Domain)
	if err == nil || !strings.Contains(out, "alice@localhost has no session") {
		t.Fatalf("second kick: %v\n%s", err, out)
	}
	if out, err := palisadeCLI(t, s, "user", "kick", "alice@elsewhere.example"); err == nil || !strings.Contains(out, "not served") {
		t.Fatalf("kick on another domain: %v\n%s", err, out)
	}
	if err := os.WriteFile(goFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	p.WaitLine(t, `RESUME REFUSED`, 20*time.Second)
	p.WaitLine(t, `BOUND AGAIN alice@localhost/\S+`, 20*time.Second)
	if err := p.Wait(); err != nil {
		t.Fatalf("slixmpp: %v\n%s", err, p.Output())
	}
}

// TestLockout: three wrong passwords from an address that never logged in
// to alice's account lock her out there; the right password
// then fails too (slixmpp sees not-authorized), the audit log has lines
// fail2ban can match (result failure with the client ip, login_lockout);
// `palisade user unlock` clears it and she logs in.
func TestLockout(t *testing.T) {
	s := StartServerWith(t, `
[auth]
lockout_threshold = 3
failure_delay = "10ms"
max_failure_delay = "50ms"
`)
	for name, pw := range accounts {
		s.AddUser(t, name+"@"+Domain, pw)
	}
	plain := []string{"--mech", "PLAIN"}
	for i := 0; i < 3; i++ {
		out, err := slix(t, s, tcpTransports[0], 30*time.Second, plain, "login", "alice@"+Domain+":wrong-password")
		if err == nil {
			t.Fatalf("wrong password accepted:\n%s", out)
		}
	}
	s.WaitLog(t, `"msg":"login".*"result":"failure","user":"alice".*"ip":"127.0.0.1","reason":"not-authorized"`, 5*time.Second)
	s.WaitLog(t, `"msg":"login_lockout".*"kind":"account".*"ip":"127.0.0.1","jid":"alice@localhost"`, 5*time.Second)
	out, err := slix(t, s, tcpTransports[0], 30*time.Second, plain, "login", acct("alice"))
	if err == nil {
		t.Fatalf("locked account logged in:\n%s", out)
	}
	wantLine(t, out, `AUTH FAILURE PLAIN not-authorized temporarily locked after failed logins`)
	// Other accounts are not affected.
	mustSlix(t, s, tcpTransports[0], 30*time.Second, plain, "login", acct("bob"))

	out, err = palisadeCLI(t, s, "user", "unlock", "alice@"+Domain)
	if err != nil || !strings.Contains(out, "alice@localhost: unlocked") {
		t.Fatalf("user unlock: %v\n%s", err, out)
	}
	s.WaitLog(t, `"msg":"user_unlock".*"jid":"alice@localhost"`, 5*time.Second)
	mustSlix(t, s, tcpTransports[0], 30*time.Second, plain, "login", acct("alice"))
}
