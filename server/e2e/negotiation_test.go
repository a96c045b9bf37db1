package e2e

import (
	"slices"
	"strings"
	"testing"

	"mellium.im/sasl"
)

func TestStartTLSRequired(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	c := dial(t, e, modeStartTLS)
	f := c.openOK()
	st := f.Child(nsTLS, "starttls")
	if st == nil || st.Child(nsTLS, "required") == nil {
		t.Fatalf("features before TLS: %s, want <starttls><required/></starttls>", f)
	}
	if f.Child(nsSASL, "mechanisms") != nil {
		t.Errorf("SASL offered before TLS: %s", f)
	}
	c.send("<message to='bob@localhost'><body>plain text</body></message>")
	c.expectStreamError("not-authorized")

	// SASL before TLS is refused the same way.
	c = dial(t, e, modeStartTLS)
	c.openOK()
	c.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGFsaWNlAGFsaWNlLXB3</auth>")
	c.expectStreamError("not-authorized")
}

func TestFeaturesAfterTLS(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	for _, m := range []mode{modeStartTLS, modeDirectTLS} {
		c := dial(t, e, m)
		f := c.secure()
		if f.Child(nsTLS, "starttls") != nil {
			t.Errorf("starttls offered again on TLS: %s", f)
		}
		got := mechanisms(f)
		want := []string{"SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"}
		if !slices.Equal(got, want) {
			t.Errorf("mode %d: mechanisms %v, want %v", m, got, want)
		}
		cb := f.Child(nsSASLCB, "sasl-channel-binding")
		if cb == nil {
			t.Fatalf("no sasl-channel-binding in %s", f)
		}
		var types []string
		for _, n := range cb.Nodes {
			types = append(types, n.A("type"))
		}
		if !slices.Contains(types, "tls-exporter") || !slices.Contains(types, "tls-server-end-point") {
			t.Errorf("channel-binding types %v", types)
		}
	}
}

func TestSASL(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	for _, tc := range []struct {
		name string
		mech sasl.Mechanism
	}{
		{"SCRAM-SHA-256", sasl.ScramSha256},
		{"SCRAM-SHA-1", sasl.ScramSha1},
		{"SCRAM-SHA-256-PLUS", sasl.ScramSha256Plus},
		{"SCRAM-SHA-1-PLUS", sasl.ScramSha1Plus},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, m := range []mode{modeStartTLS, modeDirectTLS} {
				c := dial(t, e, m)
				c.secure()
				if n := c.authSCRAM(tc.mech, tc.name, "alice", users["alice"]); !n.Is(nsSASL, "success") {
					t.Fatalf("mode %d: %s", m, n)
				}
				c.openOK()
				if j := c.bind("scram"); j != "alice@localhost/scram" {
					t.Fatalf("bound %s", j)
				}
			}
		})
	}
	t.Run("PLAIN", func(t *testing.T) {
		c := dial(t, e, modeStartTLS)
		f := c.authed("bob")
		if f.Child(nsBind, "bind") == nil || f.Child(nsSM, "sm") == nil || f.Child(nsCSI, "csi") == nil {
			t.Fatalf("post-auth features: %s", f)
		}
		if f.Child(nsSASL, "mechanisms") != nil {
			t.Errorf("SASL offered after auth: %s", f)
		}
	})
	t.Run("wrong password", func(t *testing.T) {
		c := dial(t, e, modeStartTLS)
		c.secure()
		n := c.authPlain("alice", "nope")
		if !n.Is(nsSASL, "failure") || n.Child(nsSASL, "not-authorized") == nil {
			t.Fatalf("PLAIN wrong password: %s", n)
		}
		n = c.authSCRAM(sasl.ScramSha256, "SCRAM-SHA-256", "alice", "nope")
		if !n.Is(nsSASL, "failure") || n.Child(nsSASL, "not-authorized") == nil {
			t.Fatalf("SCRAM wrong password: %s", n)
		}
		n = c.authPlain("nobody", "x")
		if !n.Is(nsSASL, "failure") || n.Child(nsSASL, "not-authorized") == nil {
			t.Fatalf("PLAIN unknown user: %s", n)
		}
		// The stream survives failures below the limit.
		if n := c.authPlain("alice", users["alice"]); !n.Is(nsSASL, "success") {
			t.Fatalf("retry: %s", n)
		}
	})
	t.Run("unknown mechanism", func(t *testing.T) {
		c := dial(t, e, modeStartTLS)
		c.secure()
		c.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='DIGEST-MD5'/>")
		if n := c.next(); !n.Is(nsSASL, "failure") || n.Child(nsSASL, "invalid-mechanism") == nil {
			t.Fatalf("got %s", n)
		}
	})
	t.Run("five failures", func(t *testing.T) {
		c := dial(t, e, modeStartTLS)
		c.secure()
		for i := 0; i < 4; i++ {
			if n := c.authPlain("alice", "bad"); !n.Is(nsSASL, "failure") {
				t.Fatalf("attempt %d: %s", i+1, n)
			}
		}
		c.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGFsaWNlAGJhZA==</auth>")
		n := c.next()
		if !n.Is(nsSASL, "failure") {
			t.Fatalf("attempt 5: %s", n)
		}
		c.expectStreamError("not-authorized")
	})
}

func TestHostUnknown(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	c := dial(t, e, modeStartTLS)
	n := c.open("example.org")
	if !n.Is(nsStream, "error") || n.Child(nsStreams, "host-unknown") == nil {
		t.Fatalf("got %s, want host-unknown", n)
	}
	c.expectClosed()

	// Also after TLS, and over WebSocket.
	c = dial(t, e, modeStartTLS)
	c.starttls()
	c.authPlain("alice", users["alice"])
	n = c.open("example.org")
	if !n.Is(nsStream, "error") || n.Child(nsStreams, "host-unknown") == nil {
		t.Fatalf("after auth: got %s, want host-unknown", n)
	}
	w := dial(t, e, modeWS)
	w.send(`<open xmlns="urn:ietf:params:xml:ns:xmpp-framing" to="example.org" version="1.0"/>`)
	w.expect(nsFraming, "open")
	w.expectStreamError("host-unknown")
}

func TestBind(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	t.Run("requested", func(t *testing.T) {
		c := dial(t, e, modeStartTLS)
		c.authed("alice")
		if j := c.bind("phone"); j != "alice@localhost/phone" {
			t.Fatalf("bound %s", j)
		}
	})
	t.Run("server generated", func(t *testing.T) {
		c := dial(t, e, modeStartTLS)
		c.authed("alice")
		j := c.bind("")
		if !strings.HasPrefix(j, "alice@localhost/") || len(j) <= len("alice@localhost/") {
			t.Fatalf("bound %s", j)
		}
		c2 := dial(t, e, modeStartTLS)
		c2.authed("alice")
		if j2 := c2.bind(""); j2 == j {
			t.Fatalf("two generated resources are equal: %s", j)
		}
	})
	t.Run("stanza before bind", func(t *testing.T) {
		c := dial(t, e, modeStartTLS)
		c.authed("alice")
		c.send("<message to='bob@localhost'><body>x</body></message>")
		c.expectStreamError("not-authorized")
	})
	t.Run("conflict", func(t *testing.T) {
		old := login(t, e, modeStartTLS, "alice", "dup")
		nw := dial(t, e, modeStartTLS)
		nw.authed("alice")
		if j := nw.bind("dup"); j != "alice@localhost/dup" {
			t.Fatalf("bound %s", j)
		}
		nw.startReader()
		old.expectStreamError("conflict")
		bob := login(t, e, modeStartTLS, "bob", "b")
		bob.send("<message to='alice@localhost/dup' id='c1'><body>to the new one</body></message>")
		m := nw.expect(nsClient, "message")
		if m.A("id") != "c1" || m.A("from") != "bob@localhost/b" {
			t.Fatalf("got %s", m)
		}
	})
	t.Run("legacy session", func(t *testing.T) {
		c := dial(t, e, modeStartTLS)
		f := c.authed("alice")
		if s := f.Child(nsSession, "session"); s == nil || s.Child(nsSession, "optional") == nil {
			t.Errorf("no optional session feature: %s", f)
		}
		// Before bind (lenient) ...
		c.send("<iq type='set' id='sess0'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>")
		if n := c.expect(nsClient, "iq"); n.A("type") != "result" || n.A("id") != "sess0" {
			t.Fatalf("session before bind: %s", n)
		}
		c.bind("legacy")
		c.startReader()
		// ... and after bind, where RFC 3921 clients send it.
		c.send("<iq type='set' id='sess1'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>")
		if n := c.expect(nsClient, "iq"); n.A("type") != "result" || n.A("id") != "sess1" {
			t.Fatalf("session after bind: %s", n)
		}
	})
}
