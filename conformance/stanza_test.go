package conformance

import (
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

// RequireStanzaJS fails the test when the npm stanza client is not installed.
func RequireStanzaJS(t testing.TB) {
	t.Helper()
	RequirePeer(t, NodeBin)
	if _, err := os.Stat("node_modules/stanza"); err != nil {
		t.Fatalf("node_modules/stanza missing: run conformance/install-peers.sh")
	}
}

// TestStanzaJSWebSocket: the npm stanza client (12.x), a browser-style
// client that cannot do channel binding, logs in over wss and exchanges
// chat messages both ways with slixmpp. It picks the strongest mechanism
// offered; when the WebSocket transport offered SCRAM-SHA-256-PLUS it sent
// "n,," with it and was refused, so no -PLUS may be offered there.
func TestStanzaJSWebSocket(t *testing.T) {
	RequireStanzaJS(t)
	RequireSlixmpp(t)
	s := newServer(t)

	body := "ping from stanza over wss"
	reply := "pong from slixmpp to stanza"
	_, port := HostPort(s.C2S)
	bob := s.StartPeer(t, 40*time.Second, "slixmpp listen", nil, PythonBin,
		"testdata/slix.py", "--port", port, "--ca", s.CAFile, "--timeout", "30",
		"--reply-body", reply, "listen", acct("bob"))
	bob.WaitLine(t, `^READY `, 20*time.Second)

	out, err := s.RunPeer(t, 30*time.Second, "stanza", nil, NodeBin,
		"testdata/stanza.mjs", "exchange", s.WebSocketURL(), "alice@"+Domain, accounts["alice"], "bob@"+Domain, body)
	mechs := wantLine(t, out, `MECHANISMS .*`)
	if strings.Contains(mechs, "-PLUS") {
		t.Errorf("WebSocket offers a channel-binding mechanism a web client cannot complete: %s", mechs)
	}
	if cb := regexp.MustCompile(`(?m)^CHANNEL-BINDING.*$`).FindString(out); cb != "" {
		t.Errorf("WebSocket advertises XEP-0440 channel-binding types without -PLUS to use them: %s", cb)
	}
	if !strings.Contains(mechs, " SCRAM-SHA-256") {
		t.Errorf("WebSocket does not offer SCRAM-SHA-256: %s", mechs)
	}
	if err != nil {
		t.Fatalf("stanza: %v\n%s", err, out)
	}
	wantLine(t, out, `LOGIN OK alice@localhost/\S+`)
	wantLine(t, out, `RECEIVED bob@localhost `+regexp.QuoteMeta(reply))
	bob.WaitLine(t, `^RECEIVED bob alice@localhost `+regexp.QuoteMeta(body)+`$`, 10*time.Second)
}

// TestStanzaJSWrongPassword: a wrong password over wss is an
// authentication failure, not a crash or a hang.
func TestStanzaJSWrongPassword(t *testing.T) {
	RequireStanzaJS(t)
	s := newServer(t)
	out, err := s.RunPeer(t, 30*time.Second, "stanza", nil, NodeBin,
		"testdata/stanza.mjs", "login", s.WebSocketURL(), "alice@"+Domain, "not-the-password")
	if err == nil {
		t.Fatalf("stanza login with a wrong password succeeded:\n%s", out)
	}
	wantLine(t, out, `AUTH FAILED`)
}
