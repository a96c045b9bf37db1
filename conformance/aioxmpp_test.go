package conformance

import (
	"context"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// aioxmpp (python3-aioxmpp 0.13.3, Debian) driven by testdata/aiox.py.

// requireAioxmpp fails the test when aioxmpp is not importable.
func requireAioxmpp(t testing.TB) {
	t.Helper()
	RequirePeer(t, PythonBin)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, PythonBin, "-c", "import aioxmpp").CombinedOutput(); err != nil {
		t.Fatalf("aioxmpp not importable from %s: %v\n%s\nrun conformance/install-peers.sh", PythonBin, err, out)
	}
}

func aioxArgs(s *Server, timeout time.Duration, extra ...string) []string {
	_, port := HostPort(s.C2S)
	args := []string{"testdata/aiox.py", "--port", port, "--ca", s.CAFile,
		"--timeout", strconv.Itoa(int(timeout.Seconds()) - 5)}
	return append(args, extra...)
}

// TestAioxmppLogin: aioxmpp logs in over STARTTLS with the test certificate
// trusted as a CA (PKIX verification and host name check stay on).
func TestAioxmppLogin(t *testing.T) {
	requireAioxmpp(t)
	s := newServer(t)
	out := s.MustRunPeer(t, 40*time.Second, "aioxmpp login", nil, PythonBin,
		aioxArgs(s, 40*time.Second, "login", acct("alice"))...)
	wantLine(t, out, `LOGIN OK alice@localhost/\S+`)
}

func TestAioxmppWrongPassword(t *testing.T) {
	requireAioxmpp(t)
	s := newServer(t)
	out, err := s.RunPeer(t, 40*time.Second, "aioxmpp login", nil, PythonBin,
		aioxArgs(s, 40*time.Second, "login", "alice@localhost:not-the-password")...)
	if err == nil {
		t.Fatalf("aioxmpp login with a wrong password succeeded:\n%s", out)
	}
	wantLine(t, out, `AUTH FAILED .*`)
	s.WaitLog(t, `"msg":"login".*"result":"failure","user":"alice".*"reason":"not-authorized"`, 5*time.Second)
	if strings.Contains(out, "LOGIN OK") {
		t.Errorf("LOGIN OK after a wrong password:\n%s", out)
	}
}

// TestAioxmppExchange: aioxmpp (alice) fetches her roster, adds carol, sends
// to a slixmpp listener (bob), which answers to alice's bare JID.
func TestAioxmppExchange(t *testing.T) {
	requireAioxmpp(t)
	RequireSlixmpp(t)
	s := newServer(t)
	body := "ping from aioxmpp"
	reply := "pong from slixmpp to aioxmpp"
	_, port := HostPort(s.C2S)
	bob := s.StartPeer(t, 40*time.Second, "slixmpp listen", nil, PythonBin,
		"testdata/slix.py", "--port", port, "--ca", s.CAFile, "--timeout", "30",
		"--reply-to", "alice@localhost", "--reply-body", reply, "listen", acct("bob"))
	bob.WaitLine(t, `^READY `, 20*time.Second)

	out := s.MustRunPeer(t, 40*time.Second, "aioxmpp exchange", nil, PythonBin,
		aioxArgs(s, 40*time.Second, "--to", "bob@localhost", "--body", body,
			"--add-contact", "carol@localhost", "exchange", acct("alice"))...)
	wantLine(t, out, `LOGIN OK alice@localhost/\S+`)
	wantLine(t, out, `ROSTER RECEIVED 0`)
	wantLine(t, out, `ROSTER SET OK carol@localhost`)
	wantLine(t, out, `SERVER ROSTER carol@localhost none Added by aioxmpp Conformance`)
	wantLine(t, out, `RECEIVED bob@localhost `+regexp.QuoteMeta(reply))
	wantLine(t, out, `EXCHANGE OK`)
	bob.WaitLine(t, `^RECEIVED bob alice@localhost `+regexp.QuoteMeta(body)+`$`, 10*time.Second)
	if err := bob.Wait(); err != nil {
		t.Errorf("slixmpp listener: %v\n%s", err, bob.Output())
	}
	t.Logf("aioxmpp output:\n%s", out)
}
