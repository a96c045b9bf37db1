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
// policy-violation through the admin listener; its stream cannot be
// resumed, a fresh login works. The endpoint refuses requests without its
// header and other methods.
func TestUserKick(t *testing.T) {
	s := newServer(t)
	_, port := HostPort(s.C2S)
	goFile := filepath.Join(t.TempDir(), "go")
	p := s.StartPeer(t, 90*time.Second, "slixmpp revoke alice", nil, PythonBin, "testdata/slix.py",
		"--port", port, "--ca", s.CAFile, "--timeout", "85", "--step-timeout", "20",
		"--wait-file", goFile, "revoke", acct("alice"))
	p.WaitLine(t, `READY alice@localhost/\S+`, 30*time.Second)

	for _, tc := range []struct {
		method, header string
		want           int
	}{{"GET", "1", http.StatusMethodNotAllowed}, {"POST", "", http.StatusForbidden}} {
		req, _ := http.NewRequest(tc.method, "http://"+s.Admin+"/admin/kick?jid=alice@localhost", nil)
		if tc.header != "" {
			req.Header.Set("X-Palisade-Admin", tc.header)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s header=%q: status %d, want %d", tc.method, tc.header, resp.StatusCode, tc.want)
		}
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
	s.WaitLog(t, `"msg":"session_kicked".*"jid":"alice@localhost","sessions":1,"actor":"admin-http"`, 5*time.Second)
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
