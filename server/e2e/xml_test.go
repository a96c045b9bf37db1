package e2e

import (
	"encoding/xml"
	"strings"
	"testing"
)

// TestForgedSenderRefused: XML that is not namespace-well-formed ends the
// stream with not-well-formed on every transport, and nothing of it reaches
// the recipient (issue 13: three 'from' attributes reached xmpp.js, which
// takes the last, as a message from another user).
func TestForgedSenderRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	bob := login(t, e, modeStartTLS, "bob", "b")
	for _, tc := range []struct{ name, input string }{
		{"three from", "<message to='bob@localhost/b' from='alice@localhost' from='carol@localhost/x' from='alice@localhost/y' id='f1'><body>forged</body></message>"},
		{"duplicate to", "<message to='bob@localhost/b' to='carol@localhost' id='f2'><body>forged</body></message>"},
		{"two stanza-id by", "<message to='bob@localhost/b' id='f3'><body>x</body><stanza-id xmlns='urn:xmpp:sid:0' by='localhost' by='bob@localhost' id='s'/></message>"},
		{"xml:lang twice", "<message to='bob@localhost/b' xml:lang='en' xml:lang='de' id='f4'><body>x</body></message>"},
		{"undeclared prefix", "<message to='bob@localhost/b' id='f5'><p:body>x</p:body></message>"},
		{"undeclared attribute prefix", "<message to='bob@localhost/b' p:from='alice@localhost' id='f6'><body>x</body></message>"},
		{"colon name", "<message to='bob@localhost/b' id='f7'><:m/></message>"},
		{"same expanded name", "<message to='bob@localhost/b' id='f8' xmlns:a='urn:x' xmlns:b='urn:x'><x a:k='1' b:k='2' xmlns='urn:e2e'/></message>"},
	} {
		for _, m := range []mode{modeStartTLS, modeDirectTLS, modeWS} {
			t.Run(tc.name+"/"+[]string{"starttls", "directtls", "websocket"}[m], func(t *testing.T) {
				c := login(t, e, m, "alice", "a"+strings.ReplaceAll(tc.name, " ", ""))
				in := tc.input
				if m == modeWS {
					in = strings.Replace(in, "<message ", "<message xmlns='jabber:client' ", 1)
				}
				c.send("%s", in)
				c.expectStreamError("not-well-formed")
			})
		}
	}
	// Nothing reached bob; a clean message still does.
	alice := login(t, e, modeStartTLS, "alice", "clean")
	alice.send("<message to='bob@localhost/b' id='ok'><body>real</body></message>")
	m := bob.expect(nsClient, "message")
	if m.A("id") != "ok" || m.A("from") != "alice@localhost/clean" {
		t.Fatalf("bob got %s", m)
	}
	bob.nothing(quiet)
}

// TestPreauthBounds: before authentication a stream may only send small,
// shallow elements: the probe's unclosed 262 KB element of 65k children is
// cut as soon as it passes the pre-auth bound, not held for the auth
// timeout.
func TestPreauthBounds(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	for _, tc := range []struct{ name, input, cond string }{
		// Within the stanza size limit (10,000 bytes here), over the
		// pre-auth bounds (8,192 bytes, 256 elements and attributes).
		{"many children", "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>" + strings.Repeat("<a/>", 1000) + "</auth>", "policy-violation"},
		{"large text", "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>" + strings.Repeat("A", 9000) + "</auth>", "policy-violation"},
		// The probe's unclosed element, far over every bound.
		{"unclosed", "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>" + strings.Repeat("<a/>", 65000), "policy-violation"},
		{"deep", strings.Repeat("<a xmlns='urn:x'>", 20), "policy-violation"},
	} {
		for _, m := range []mode{modeStartTLS, modeWS} {
			t.Run(tc.name+"/"+[]string{"starttls", "directtls", "websocket"}[m], func(t *testing.T) {
				c := dial(t, e, m)
				c.secure()
				in := tc.input
				if m == modeWS && !strings.HasSuffix(in, "</auth>") {
					in += strings.Repeat("</a>", strings.Count(in, "<a xmlns")) // a whole message
					if strings.HasPrefix(in, "<auth") {
						in += "</auth>"
					}
				}
				// The server may cut the connection before all is written:
				// write on the side and read the stream error here.
				go func() { _ = c.trySend(in) }()
				c.expectStreamError(tc.cond)
			})
		}
	}
	// After authentication the full limits apply: 100 children are fine.
	t.Run("after auth", func(t *testing.T) {
		alice := login(t, e, modeStartTLS, "alice", "big")
		bob := login(t, e, modeStartTLS, "bob", "b")
		alice.send("<message to='bob@localhost/b' id='kids'><x xmlns='urn:e2e'>%s</x></message>", strings.Repeat("<a/>", 100))
		if m := bob.expect(nsClient, "message"); m.A("id") != "kids" {
			t.Fatalf("got %s", m)
		}
	})
}

// TestStreamHeaderErrors: RFC 6120's stream errors for a bad XML
// declaration or stream header, sent at once rather than at the auth
// timeout or as a bare disconnect.
func TestStreamHeaderErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	header := "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>"
	for _, tc := range []struct{ name, input, cond string }{
		{"xml 1.1", "<?xml version='1.1'?>" + header, "unsupported-version"},
		{"utf-16 declared", "<?xml version='1.0' encoding='UTF-16'?>" + header, "unsupported-encoding"},
		{"utf-16 bytes", "\xff\xfe<\x00?\x00x\x00m\x00l\x00", "unsupported-encoding"},
		{"wrong stream namespace", "<stream:stream xmlns='jabber:client' xmlns:stream='urn:wrong' to='localhost' version='1.0'>", "invalid-namespace"},
		{"no stream namespace", "<stream xmlns='jabber:client' to='localhost' version='1.0'>", "invalid-namespace"},
		{"stanza first", "<message to='bob@localhost'/>", "bad-format"},
		{"wrong content namespace", "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>", "invalid-namespace"},
		{"old version", "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='0.9'>", "unsupported-version"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, e, modeStartTLS)
			c.send("%s", tc.input)
			c.readHeaderThenStreamError(tc.cond)
		})
	}
}

// readHeaderThenStreamError reads the server's stream header (sent before
// a stream error when the client's header was not accepted, RFC 6120
// 4.9.1.1) and the stream error with the condition.
func (c *client) readHeaderThenStreamError(cond string) {
	c.t.Helper()
	c.dec = xml.NewDecoder(c.conn)
	if h := c.next(); !h.Is(nsStream, "stream") {
		c.t.Fatalf("got %s, want the server's stream header", h)
	}
	c.expectStreamError(cond)
}

// TestClientStreamError: a client that ends its stream with a stream error
// (slixmpp does on XML it cannot parse) gets the closing tag, not a stream
// error about its stream error.
func TestClientStreamError(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	c := login(t, e, modeStartTLS, "alice", "se")
	c.send("<stream:error><not-well-formed xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>")
	c.expectClosed()
}
