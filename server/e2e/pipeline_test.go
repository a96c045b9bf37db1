package e2e

import (
	"fmt"
	"strings"
	"testing"
)

// TestPipelinedMessages: messages a client sends in one burst share journal
// commits, yet each is delivered only once journaled, in the client's order,
// an IQ sent after them reaches the recipient after them (RFC 6120 10.1),
// and XEP-0198 h counts a message only once it was delivered.
func TestPipelinedMessages(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	alice := login(t, e, modeStartTLS, "alice", "a")
	bob := login(t, e, modeStartTLS, "bob", "b")
	alice.send("<enable xmlns='urn:xmpp:sm:3'/>")
	alice.expect(nsSM, "enabled")

	const n = 100
	var burst strings.Builder
	for i := range n {
		fmt.Fprintf(&burst, "<message to='bob@localhost/b' type='chat' id='m%d'><body>%d</body></message>", i, i)
	}
	burst.WriteString("<iq to='bob@localhost/b' type='get' id='after'><ping xmlns='urn:xmpp:ping'/></iq>")
	burst.WriteString("<r xmlns='urn:xmpp:sm:3'/>")
	alice.send("%s", burst.String()) // one write: the server reads it as one burst

	a := alice.expect(nsSM, "a")
	if h := a.A("h"); h != fmt.Sprint(n+1) {
		t.Errorf("h = %s after %d messages and an iq, want %d", h, n, n+1)
	}
	// Everything h counts is journaled already (the IQ to bob's client too).
	if rows := journalRows(t, e); len(rows) != n+1 {
		t.Errorf("%d journal records when h was answered, want %d", len(rows), n+1)
	}
	for i := range n {
		m := bob.expect(nsClient, "message")
		if m.A("id") != fmt.Sprintf("m%d", i) {
			t.Fatalf("message %d is %s", i, m)
		}
	}
	if iq := bob.expect(nsClient, "iq"); iq.A("id") != "after" {
		t.Fatalf("after the messages bob got %s, want the iq", iq)
	}
}
