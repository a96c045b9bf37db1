package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/palisade-im/palisade/server/config"
)

func TestBadInput(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	carol := login(t, e, modeStartTLS, "carol", "c")
	bob := login(t, e, modeStartTLS, "bob", "b")
	stillWorks := func(t *testing.T, id string) {
		t.Helper()
		bob.send("<message to='carol@localhost/c' id='%s'><body>still here</body></message>", id)
		if m := carol.expect(nsClient, "message"); m.A("id") != id {
			t.Fatalf("got %s", m)
		}
	}
	for _, tc := range []struct {
		name, input, cond string
		m                 mode
	}{
		{"oversized far", "<message to='carol@localhost/c'><body>" + strings.Repeat("x", 30000) + "</body></message>", "policy-violation", modeStartTLS},
		{"oversized near", "<message to='carol@localhost/c'><body>" + strings.Repeat("x", 10500) + "</body></message>", "policy-violation", modeStartTLS},
		{"oversized ws", "<message xmlns='jabber:client' to='carol@localhost/c'><body>" + strings.Repeat("x", 12000) + "</body></message>", "policy-violation", modeWS},
		{"malformed", "<message to='carol@localhost/c'><body>x</bdy></message>", "not-well-formed", modeStartTLS},
		{"malformed ws", "<message xmlns='jabber:client'><body>x</bdy></message>", "not-well-formed", modeWS},
		{"bad entity", "<message to='carol@localhost/c'><body>&foo;</body></message>", "not-well-formed", modeStartTLS},
		{"comment", "<!-- hello -->", "restricted-xml", modeStartTLS},
		{"comment inside", "<message to='carol@localhost/c'><!-- hello --><body>x</body></message>", "restricted-xml", modeStartTLS},
		{"doctype", "<!DOCTYPE foo [<!ENTITY a 'b'>]>", "restricted-xml", modeStartTLS},
		{"processing instruction", "<?foo bar?>", "restricted-xml", modeStartTLS},
		{"comment ws", "<!-- hello -->", "restricted-xml", modeWS},
		{"deep", "<message to='carol@localhost/c'>" + strings.Repeat("<x xmlns='urn:e2e'>", 100) + strings.Repeat("</x>", 100) + "</message>", "policy-violation", modeStartTLS},
		{"deep ws", "<message xmlns='jabber:client'>" + strings.Repeat("<x xmlns='urn:e2e'>", 100) + strings.Repeat("</x>", 100) + "</message>", "policy-violation", modeWS},
		{"unknown top-level", "<foo xmlns='urn:e2e'/>", "unsupported-stanza-type", modeStartTLS},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := login(t, e, tc.m, "alice", "bad")
			c.send("%s", tc.input)
			c.expectStreamError(tc.cond)
			stillWorks(t, tc.name)
		})
	}
	// Just under the limit is fine.
	t.Run("at the limit", func(t *testing.T) {
		c := login(t, e, modeStartTLS, "alice", "big")
		body := strings.Repeat("y", 9000)
		c.send("<message to='carol@localhost/c' id='big'><body>%s</body></message>", body)
		if m := carol.expect(nsClient, "message"); m.A("id") != "big" || m.Child(nsClient, "body").Text != body {
			t.Fatalf("got %.200s", m)
		}
		c.sync()
	})
	carol.nothing(quiet)
}

func TestAuthTimeout(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *config.Config) { c.Limits.AuthTimeout = config.Duration(500 * time.Millisecond) })
	start := time.Now()
	c := dial(t, e, modeStartTLS)
	c.openOK()
	c.expectStreamError("connection-timeout")
	if d := time.Since(start); d < 400*time.Millisecond {
		t.Errorf("closed after %v, before auth_timeout", d)
	}
	// After STARTTLS, and while talking: the bound is on the whole log-in.
	c = dial(t, e, modeStartTLS)
	c.starttls()
	c.expectStreamError("connection-timeout")
	c = dial(t, e, modeDirectTLS)
	c.openOK()
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		c.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='NOPE'/>")
		n, err := c.tryNext(short)
		if err != nil {
			t.Fatal(err)
		}
		if n.Is(nsStream, "error") {
			if n.Child(nsStreams, "connection-timeout") == nil {
				t.Fatalf("got %s", n)
			}
			c.expectClosed()
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("a chatty unauthenticated client was not cut at auth_timeout")
}

func TestIdlePing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *config.Config) {
		// Short for a quick test, with room for a loaded machine.
		c.Limits.IdleTimeout = config.Duration(time.Second)
		c.Limits.PingTimeout = config.Duration(1500 * time.Millisecond)
	})
	silent := login(t, e, modeStartTLS, "alice", "silent")

	p := silent.expect(nsClient, "iq")
	if p.A("type") != "get" || p.A("from") != "localhost" || p.A("to") != "alice@localhost/silent" || p.Child(nsPing, "ping") == nil || p.A("id") == "" {
		t.Fatalf("got %s, want a ping", p)
	}
	silent.expectStreamError("connection-timeout")

	// A client that answers stays: three ping rounds. It logs in only now,
	// so that it is not left unanswered while the silent one is checked.
	answers := login(t, e, modeStartTLS, "bob", "answers")
	for i := 0; i < 3; i++ {
		p := answers.expect(nsClient, "iq")
		if p.Child(nsPing, "ping") == nil {
			t.Fatalf("got %s", p)
		}
		answers.send("<iq type='result' id='%s' to='localhost'/>", p.A("id"))
	}
	answers.sync()
}
