package e2e

import (
	"strings"
	"testing"

	"mellium.im/sasl"
)

func TestWebSocket(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	bob := login(t, e, modeStartTLS, "bob", "b")

	w := dial(t, e, modeWS)
	f := w.openOK()
	if f.Child(nsTLS, "starttls") != nil {
		t.Errorf("starttls offered on wss: %s", f)
	}
	if !strings.Contains(strings.Join(mechanisms(f), " "), "SCRAM-SHA-256") {
		t.Errorf("mechanisms over wss: %v", mechanisms(f))
	}
	if n := w.authSCRAM(sasl.ScramSha256, "SCRAM-SHA-256", "alice", users["alice"]); !n.Is(nsSASL, "success") {
		t.Fatalf("got %s", n)
	}
	w.openOK()
	if j := w.bind("web"); j != "alice@localhost/web" {
		t.Fatalf("bound %s", j)
	}
	w.startReader()

	w.send("<message xmlns='jabber:client' to='bob@localhost/b' id='w1' type='chat'><body>from the web</body></message>")
	m := bob.expect(nsClient, "message")
	if m.A("from") != "alice@localhost/web" || m.A("id") != "w1" || m.Child(nsClient, "body").Text != "from the web" {
		t.Fatalf("got %s", m)
	}
	bob.send("<message to='alice@localhost/web' id='w2' type='chat'><body>back &amp; forth</body></message>")
	r := w.expect(nsClient, "message")
	if r.A("from") != "bob@localhost/b" || r.Child(nsClient, "body").Text != "back & forth" {
		t.Fatalf("got %s", r)
	}
	// RFC 7395 3.3.3: every stanza is framed with its namespace declared.
	if !strings.HasPrefix(r.Raw, `<message xmlns="jabber:client"`) && !strings.HasPrefix(r.Raw, `<message xmlns='jabber:client'`) {
		t.Errorf("stanza not framed with xmlns='jabber:client': %s", r.Raw)
	}

	// Stream management over WebSocket: every nonza is its own well-formed message.
	w.send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
	w.expect(nsSM, "enabled")
	bob.send("<message to='alice@localhost/web' id='w3'><body>x</body></message>")
	w.expect(nsClient, "message")
	if rr := w.expect(nsSM, "r"); strings.Count(rr.Raw, "xmlns=") != 1 {
		t.Errorf("<r/> framed as %s", rr.Raw)
	}
	w.send("<a xmlns='urn:xmpp:sm:3' h='1'/>")
	w.autoAck.Store(true)
	w.sync()

	// Errors are framed too, and the stream ends with <close/>.
	w.send("<iq xmlns='jabber:client' type='get' id='w4' to='localhost'><query xmlns='urn:e2e:none'/></iq>")
	if r := w.expect(nsClient, "iq"); r.stanzaError() != "service-unavailable" {
		t.Fatalf("got %s", r)
	}
	w.send(`<close xmlns="urn:ietf:params:xml:ns:xmpp-framing"/>`)
	if n := w.next(); n.XMLName != streamEnd {
		t.Fatalf("got %s, want <close/>", n)
	}
	bob.nothing(quiet)
}
