package conformance

import (
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "palisade-conformance-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := BuildPalisade(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// Accounts every test creates.
var accounts = map[string]string{
	"alice": "alice-secret-1",
	"bob":   "bob-secret-22",
	"carol": "carol-secret-333",
}

func acct(name string) string         { return name + "@" + Domain + ":" + accounts[name] }
func acctRes(name, res string) string { return name + "@" + Domain + "/" + res + ":" + accounts[name] }

// newServer starts a server with alice, bob and carol.
func newServer(t *testing.T) *Server {
	t.Helper()
	s := StartServer(t)
	for name, pw := range accounts {
		s.AddUser(t, name+"@"+Domain, pw)
	}
	return s
}

// transport is how a client reaches the server.
type transport struct {
	name   string
	direct bool
}

var tcpTransports = []transport{{"STARTTLS", false}, {"DirectTLS", true}}

func (tr transport) addr(s *Server) string {
	if tr.direct {
		return s.DirectTLS
	}
	return s.C2S
}

// slix runs testdata/slix.py SCENARIO ACCOUNTS... and returns its output and
// whether it exited 0.
func slix(t *testing.T, s *Server, tr transport, timeout time.Duration, extra []string, scenario string, accts ...string) (string, error) {
	t.Helper()
	RequireSlixmpp(t)
	_, port := HostPort(tr.addr(s))
	args := []string{"testdata/slix.py", "--port", port, "--ca", s.CAFile,
		"--timeout", fmt.Sprint(int(timeout.Seconds()) - 5)}
	if tr.direct {
		args = append(args, "--direct-tls")
	}
	args = append(args, extra...)
	args = append(args, scenario)
	args = append(args, accts...)
	return s.RunPeer(t, timeout, "slixmpp "+scenario, nil, PythonBin, args...)
}

func mustSlix(t *testing.T, s *Server, tr transport, timeout time.Duration, extra []string, scenario string, accts ...string) string {
	t.Helper()
	out, err := slix(t, s, tr, timeout, extra, scenario, accts...)
	if err != nil {
		t.Fatalf("slixmpp %s failed: %v\n%s", scenario, err, out)
	}
	return out
}

// wantLine fails unless out has a line matching re.
func wantLine(t *testing.T, out, re string) string {
	t.Helper()
	m := regexp.MustCompile("(?m)^" + re + "$").FindString(out)
	if m == "" {
		t.Errorf("no line /^%s$/ in output:\n%s", re, out)
	}
	return m
}

// --- slixmpp ----------------------------------------------------------------

func TestSlixmppLogin(t *testing.T) {
	s := newServer(t)
	for _, tr := range tcpTransports {
		for _, mech := range []string{"SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"} {
			t.Run(tr.name+"/"+mech, func(t *testing.T) {
				out := mustSlix(t, s, tr, 40*time.Second, []string{"--mech", mech}, "login", acct("alice"))
				wantLine(t, out, `LOGIN OK alice `+mech+` alice@localhost/\S+`)
			})
		}
	}
}

func TestSlixmppWrongPassword(t *testing.T) {
	s := newServer(t)
	for _, tr := range tcpTransports {
		for _, mech := range []string{"SCRAM-SHA-256", "PLAIN"} {
			t.Run(tr.name+"/"+mech, func(t *testing.T) {
				out, err := slix(t, s, tr, 40*time.Second, []string{"--mech", mech}, "login", "alice@localhost:not-the-password")
				if err == nil {
					t.Fatalf("login with a wrong password succeeded:\n%s", out)
				}
				wantLine(t, out, `AUTH FAILURE `+mech+` not-authorized.*`)
				wantLine(t, out, `AUTH FAILED not-authorized`)
				if strings.Contains(out, "LOGIN OK") {
					t.Errorf("LOGIN OK after a wrong password:\n%s", out)
				}
			})
		}
	}
	// The failures are audited.
	s.WaitLog(t, `"msg":"login".*"result":"failure".*"mechanism":"PLAIN".*"reason":"not-authorized"`, 5*time.Second)
}

func TestSlixmppMessagesBothWays(t *testing.T) {
	s := newServer(t)
	for _, tr := range tcpTransports {
		t.Run(tr.name, func(t *testing.T) {
			out := mustSlix(t, s, tr, 40*time.Second, nil, "chat", acct("alice"), acct("bob"))
			wantLine(t, out, `RECEIVED bob alice@localhost hello from a`)
			wantLine(t, out, `RECEIVED alice bob@localhost hello from b`)
		})
	}
}

func TestSlixmppRosterSubscription(t *testing.T) {
	s := newServer(t)
	out := mustSlix(t, s, tcpTransports[0], 45*time.Second, nil, "roster", acct("alice"), acct("bob"))
	wantLine(t, out, `ROSTER alice bob@localhost both`)
	wantLine(t, out, `ROSTER bob alice@localhost both`)
	wantLine(t, out, `PRESENCE alice bob@localhost available`)
	wantLine(t, out, `PRESENCE bob alice@localhost available`)
	wantLine(t, out, `SERVER ROSTER alice bob@localhost both`)
	wantLine(t, out, `SERVER ROSTER bob alice@localhost both`)
}

func TestSlixmppOfflineMessage(t *testing.T) {
	s := newServer(t)
	out := mustSlix(t, s, tcpTransports[0], 45*time.Second, nil, "offline", acct("alice"), acct("bob"))
	line := wantLine(t, out, `RECEIVED bob alice@localhost offline hello DELAY \S+`)
	if line != "" {
		stamp := strings.Fields(line)[len(strings.Fields(line))-1]
		ts, err := time.Parse(time.RFC3339, stamp)
		if err != nil {
			t.Fatalf("delay stamp %q: %v", stamp, err)
		}
		if d := time.Since(ts); d < 0 || d > 2*time.Minute {
			t.Errorf("delay stamp %s is %v from now", stamp, d)
		}
	}
}

func TestSlixmppCarbons(t *testing.T) {
	s := newServer(t)
	out := mustSlix(t, s, tcpTransports[0], 45*time.Second, nil, "carbons",
		acctRes("alice", "r1"), acctRes("alice", "r2"), acct("bob"))
	wantLine(t, out, `CARBON SENT carbon out`)
	wantLine(t, out, `CARBON RECEIVED carbon in`)
	wantLine(t, out, `RECEIVED bob alice@localhost carbon out`)
}

func TestSlixmppBlocking(t *testing.T) {
	s := newServer(t)
	out := mustSlix(t, s, tcpTransports[0], 45*time.Second, nil, "block", acct("alice"), acct("bob"), acct("carol"))
	wantLine(t, out, `BLOCKLIST alice@localhost`)
	wantLine(t, out, `RECEIVED bob carol@localhost control`)
	if strings.Contains(out, "RECEIVED bob alice@localhost") {
		t.Errorf("bob received a message from the contact he blocked:\n%s", out)
	}
}

func TestSlixmppStreamResumption(t *testing.T) {
	s := newServer(t)
	out := mustSlix(t, s, tcpTransports[0], 60*time.Second, nil, "resume", acct("alice"), acct("bob"))
	wantLine(t, out, `SM ENABLED resume=True id=\S+`)
	wantLine(t, out, `ABORTED`)
	wantLine(t, out, `RESUMED alice@localhost/\S+`)
	wantLine(t, out, `COUNT 20 MISSING - DUPLICATES -`)
	// The abort really cut the connection: the server detached the session
	// and later resumed it.
	s.WaitLog(t, `"msg":"session detached, awaiting resumption","jid":"alice@localhost/`, 5*time.Second)
	t.Logf("slixmpp resume output:\n%s", out)
}

// --- go-sendxmpp --------------------------------------------------------------

func gsxArgs(s *Server, tr transport, name string) []string {
	args := []string{"-u", name + "@" + Domain, "-p", accounts[name], "-j", tr.addr(s), "--timeout", "10"}
	if tr.direct {
		args = append(args, "-t")
	}
	return args
}

// TestGoSendxmpp: go-sendxmpp (alice) sends to a slixmpp listener (bob), which
// answers to alice's bare JID, where a listening go-sendxmpp receives it.
func TestGoSendxmpp(t *testing.T) {
	RequirePeer(t, GoSendxmppBin)
	s := newServer(t)
	for _, tr := range tcpTransports {
		t.Run(tr.name, func(t *testing.T) {
			RequireSlixmpp(t)
			body := "ping from go-sendxmpp over " + tr.name
			reply := "pong from slixmpp over " + tr.name
			listener := s.StartPeer(t, 40*time.Second, "go-sendxmpp -l", nil, GoSendxmppBin,
				append(gsxArgs(s, tr, "alice"), "-l")...)
			s.WaitLog(t, `"msg":"session started","jid":"alice@localhost/go-sendxmpp`, 15*time.Second)
			_, port := HostPort(tr.addr(s))
			args := []string{"testdata/slix.py", "--port", port, "--ca", s.CAFile, "--timeout", "30",
				"--reply-to", "alice@localhost", "--reply-body", reply}
			if tr.direct {
				args = append(args, "--direct-tls")
			}
			bob := s.StartPeer(t, 40*time.Second, "slixmpp listen", nil, PythonBin, append(args, "listen", acct("bob"))...)
			bob.WaitLine(t, `^READY `, 20*time.Second)

			sender := s.StartPeerInput(t, 20*time.Second, "go-sendxmpp", nil, body+"\n", GoSendxmppBin, append(gsxArgs(s, tr, "alice"), "bob@localhost")...)
			if err := sender.Wait(); err != nil {
				t.Fatalf("go-sendxmpp send: %v\n%s", err, sender.Output())
			}
			bob.WaitLine(t, `^RECEIVED bob alice@localhost `+regexp.QuoteMeta(body)+`$`, 15*time.Second)
			listener.WaitLine(t, `bob@localhost: `+regexp.QuoteMeta(reply)+`$`, 15*time.Second)
			if err := bob.Wait(); err != nil {
				t.Errorf("slixmpp listener: %v\n%s", err, bob.Output())
			}
		})
	}
}

func TestGoSendxmppWrongPassword(t *testing.T) {
	RequirePeer(t, GoSendxmppBin)
	s := newServer(t)
	for _, tr := range tcpTransports {
		t.Run(tr.name, func(t *testing.T) {
			args := []string{"-u", "alice@" + Domain, "-p", "not-the-password", "-j", tr.addr(s), "--timeout", "10"}
			if tr.direct {
				args = append(args, "-t")
			}
			p := s.StartPeerInput(t, 20*time.Second, "go-sendxmpp", nil, "never sent\n", GoSendxmppBin, append(args, "bob@localhost")...)
			err := p.Wait()
			out := p.Output()
			if err == nil {
				t.Fatalf("go-sendxmpp with a wrong password succeeded:\n%s", out)
			}
			if !strings.Contains(out, "auth failure: not-authorized") {
				t.Errorf("want 'auth failure: not-authorized', got:\n%s", out)
			}
		})
	}
}

// --- xmpp.js ----------------------------------------------------------------

func xmppjsTransports(s *Server) []struct{ name, service string } {
	return []struct{ name, service string }{
		{"STARTTLS", "xmpp://" + s.C2S},
		{"DirectTLS", "xmpps://" + s.DirectTLS},
		{"WebSocket", s.WebSocketURL()},
	}
}

// TestXMPPJS: xmpp.js (alice) sends to a slixmpp listener (bob), which
// answers; over STARTTLS, direct TLS and WebSocket.
func TestXMPPJS(t *testing.T) {
	RequireXMPPJS(t)
	s := newServer(t)
	for _, x := range xmppjsTransports(s) {
		t.Run(x.name, func(t *testing.T) {
			RequireSlixmpp(t)
			body := "ping from xmpp.js over " + x.name
			reply := "pong from slixmpp to xmpp.js over " + x.name
			_, port := HostPort(s.C2S)
			bob := s.StartPeer(t, 40*time.Second, "slixmpp listen", nil, PythonBin,
				"testdata/slix.py", "--port", port, "--ca", s.CAFile, "--timeout", "30",
				"--reply-body", reply, "listen", acct("bob"))
			bob.WaitLine(t, `^READY `, 20*time.Second)
			out, err := s.RunPeer(t, 30*time.Second, "xmpp.js", nil, NodeBin,
				"testdata/xmppjs.mjs", "exchange", x.service, "alice", accounts["alice"], "bob@localhost", body)
			if err != nil {
				t.Fatalf("xmpp.js: %v\n%s", err, out)
			}
			wantLine(t, out, `LOGIN OK alice@localhost/\S+`)
			wantLine(t, out, `RECEIVED bob@localhost `+regexp.QuoteMeta(reply))
			bob.WaitLine(t, `^RECEIVED bob alice@localhost `+regexp.QuoteMeta(body)+`$`, 10*time.Second)
		})
	}
}

func TestXMPPJSWrongPassword(t *testing.T) {
	RequireXMPPJS(t)
	s := newServer(t)
	for _, x := range xmppjsTransports(s) {
		t.Run(x.name, func(t *testing.T) {
			out, err := s.RunPeer(t, 30*time.Second, "xmpp.js", nil, NodeBin,
				"testdata/xmppjs.mjs", "login", x.service, "alice", "not-the-password")
			if err == nil {
				t.Fatalf("xmpp.js login with a wrong password succeeded:\n%s", out)
			}
			wantLine(t, out, `AUTH FAILED not-authorized`)
		})
	}
}
