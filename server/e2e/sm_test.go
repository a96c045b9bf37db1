package e2e

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/palisade-im/palisade/server/config"
)

// enable turns on XEP-0198 with resumption and returns the resumption id.
func (c *client) enable() string {
	c.t.Helper()
	c.send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
	n := c.expect(nsSM, "enabled")
	if n.A("id") == "" || (n.A("resume") != "true" && n.A("resume") != "1") {
		c.t.Fatalf("got %s", n)
	}
	return n.A("id")
}

// resumeLogin connects, authenticates and sends <resume/>; it returns the
// answer (<resumed/> or <failed/>) and starts the reader, which answers
// the server's <r/>.
func resumeLogin(t *testing.T, e *env, m mode, user, previd string, h uint32) (*client, *Node) {
	t.Helper()
	c := dial(t, e, m)
	c.authed(user)
	c.send("<resume xmlns='urn:xmpp:sm:3' previd='%s' h='%d'/>", previd, h)
	n := c.next()
	if n.Is(nsSM, "resumed") {
		// Counting goes on from what the client acknowledged.
		c.smOn.Store(true)
		c.h.Store(h)
	}
	c.autoAck.Store(true)
	c.startReader()
	return c, n
}

func TestStreamManagement(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	bob := login(t, e, modeStartTLS, "bob", "b")
	alice := login(t, e, modeStartTLS, "alice", "a")
	alice.enable()

	// The server asks for an ack after stanzas.
	bob.send("<message to='alice@localhost/a' id='m1'><body>1</body></message>")
	alice.expect(nsClient, "message")
	alice.expect(nsSM, "r")
	alice.send("<a xmlns='urn:xmpp:sm:3' h='1'/>")

	// The server counts what it handled.
	alice.send("<message to='bob@localhost/b' id='o1'><body>1</body></message>")
	alice.send("<message to='bob@localhost/b' id='o2'><body>2</body></message>")
	alice.send("<presence><priority>1</priority></presence>")
	alice.send("<r xmlns='urn:xmpp:sm:3'/>")
	if a := alice.expect(nsSM, "a"); a.A("h") != "3" {
		t.Fatalf("got %s, want h=3", a)
	}
	bob.expect(nsClient, "message")
	bob.expect(nsClient, "message")

	// Acknowledging stanzas never sent is a stream error.
	alice.send("<a xmlns='urn:xmpp:sm:3' h='7'/>")
	alice.expectStreamError("undefined-condition")
}

func TestResumeAfterDrop(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	bob := login(t, e, modeStartTLS, "bob", "b")
	alice := login(t, e, modeStartTLS, "alice", "a")
	alice.autoAck.Store(true)
	id := alice.enable()

	const total = 50
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 1; i <= total; i++ {
			if err := bob.trySend(fmt.Sprintf("<message to='alice@localhost/a' id='m%d'><body>%d</body></message>", i, i)); err != nil {
				return
			}
		}
	}()
	got := map[string]int{}
	var order []int
	record := func(n *Node) {
		if n.Is(nsClient, "message") {
			got[n.A("id")]++
			k, _ := strconv.Atoi(n.A("id")[1:])
			order = append(order, k)
		}
	}
	// Read some, then drop the connection without closing the stream.
	for len(order) < 10 {
		record(alice.expect(nsClient, "message"))
	}
	alice.autoAck.Store(false)
	_ = alice.raw.Close()
	// Whatever the reader got before the drop counts as received.
	for {
		n, err := alice.tryNext(short)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatal("reader did not end")
			}
			break
		}
		record(n)
	}
	<-done
	bob.sync() // bob's 50 messages are all handled by the server
	h := alice.h.Load()
	if int(h) != len(order) {
		t.Fatalf("h=%d but %d messages received", h, len(order))
	}

	a2, n := resumeLogin(t, e, modeStartTLS, "alice", id, h)
	if !n.Is(nsSM, "resumed") || n.A("previd") != id {
		t.Fatalf("got %s", n)
	}
	// The server handled no stanza from alice since enable.
	if n.A("h") != "0" {
		t.Errorf("resumed h=%s, want 0", n.A("h"))
	}
	a2.jid = "alice@localhost/a"
	for len(order) < total {
		n := a2.next()
		record(n)
		if !n.Is(nsClient, "message") {
			t.Fatalf("got %s", n)
		}
	}
	for i := 1; i <= total; i++ {
		if got["m"+strconv.Itoa(i)] != 1 {
			t.Errorf("message m%d received %d times", i, got["m"+strconv.Itoa(i)])
		}
	}
	for i, k := range order {
		if k != i+1 {
			t.Fatalf("out of order: %v", order)
		}
	}
	// The resumed session is the bound one: new messages arrive.
	bob.send("<message to='alice@localhost/a' id='after'><body>x</body></message>")
	if n := a2.next(); n.A("id") != "after" {
		t.Fatalf("got %s", n)
	}
	a2.nothing(quiet)
}

func TestResumeFailures(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	t.Run("wrong previd", func(t *testing.T) {
		_, n := resumeLogin(t, e, modeStartTLS, "alice", "nosuchid", 0)
		if !n.Is(nsSM, "failed") || n.Child("urn:ietf:params:xml:ns:xmpp-stanzas", "item-not-found") == nil {
			t.Fatalf("got %s", n)
		}
	})
	t.Run("bind after failed", func(t *testing.T) {
		c := dial(t, e, modeStartTLS)
		c.authed("alice")
		c.send("<resume xmlns='urn:xmpp:sm:3' previd='nosuchid' h='0'/>")
		c.expect(nsSM, "failed")
		if j := c.bind("again"); j != "alice@localhost/again" {
			t.Fatalf("bound %s", j)
		}
	})
	t.Run("other user's session", func(t *testing.T) {
		a := login(t, e, modeStartTLS, "alice", "mine")
		id := a.enable()
		_ = a.raw.Close()
		_, n := resumeLogin(t, e, modeStartTLS, "bob", id, 0)
		if !n.Is(nsSM, "failed") {
			t.Fatalf("bob resumed alice's session: %s", n)
		}
	})
	t.Run("after clean close", func(t *testing.T) {
		a := login(t, e, modeStartTLS, "alice", "clean")
		id := a.enable()
		a.send("</stream:stream>")
		a.expectClosed()
		_, n := resumeLogin(t, e, modeStartTLS, "alice", id, 0)
		if !n.Is(nsSM, "failed") || n.Child("urn:ietf:params:xml:ns:xmpp-stanzas", "item-not-found") == nil {
			t.Fatalf("got %s", n)
		}
	})
	t.Run("after conflict", func(t *testing.T) {
		a := login(t, e, modeStartTLS, "alice", "taken")
		id := a.enable()
		login(t, e, modeStartTLS, "alice", "taken")
		a.expectStreamError("conflict")
		_, n := resumeLogin(t, e, modeStartTLS, "alice", id, 0)
		if !n.Is(nsSM, "failed") {
			t.Fatalf("got %s", n)
		}
	})
	t.Run("enable twice", func(t *testing.T) {
		a := login(t, e, modeStartTLS, "alice", "twice")
		a.enable()
		a.send("<enable xmlns='urn:xmpp:sm:3'/>")
		a.expect(nsSM, "failed")
	})
	t.Run("impossible h refused, session still resumable", func(t *testing.T) {
		a := login(t, e, modeStartTLS, "alice", "badh")
		id := a.enable()
		_ = a.raw.Close()
		// Nothing was sent to alice: h=7 acknowledges stanzas never sent.
		_, n := resumeLogin(t, e, modeStartTLS, "alice", id, 7)
		if !n.Is(nsSM, "failed") || n.Child("urn:ietf:params:xml:ns:xmpp-stanzas", "unexpected-request") == nil {
			t.Fatalf("got %s", n)
		}
		_, n = resumeLogin(t, e, modeStartTLS, "alice", id, 0)
		if !n.Is(nsSM, "resumed") {
			t.Fatalf("a valid resume after a refused one: %s", n)
		}
	})
	t.Run("resume after bind", func(t *testing.T) {
		a := login(t, e, modeStartTLS, "alice", "late")
		id := a.enable()
		a.send("<resume xmlns='urn:xmpp:sm:3' previd='%s' h='0'/>", id)
		a.expect(nsSM, "failed")
	})
}

func TestSlowConsumer(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *config.Config) { c.Limits.SendQueue = 20 })
	bob := login(t, e, modeStartTLS, "bob", "b")
	alice := login(t, e, modeStartTLS, "alice", "a")
	id := alice.enable()
	// alice reads but never acknowledges: the unacknowledged queue fills.
	const total = 21
	for i := 1; i <= total; i++ {
		bob.send("<message to='alice@localhost/a' id='m%d'><body>%d</body></message>", i, i)
	}
	var got int
	for {
		n := alice.next()
		if n.Is(nsClient, "message") {
			got++
			continue
		}
		if n.Is(nsSM, "r") {
			continue
		}
		if !n.Is(nsStream, "error") || n.Child(nsStreams, "policy-violation") == nil {
			t.Fatalf("got %s", n)
		}
		break
	}
	alice.expectClosed()
	t.Logf("alice read %d messages before the cut", got)
	bob.sync()
	// Resume acknowledging 5: the other 16 come again.
	a2, n := resumeLogin(t, e, modeStartTLS, "alice", id, 5)
	if !n.Is(nsSM, "resumed") {
		t.Fatalf("got %s", n)
	}
	for i := 6; i <= total; i++ {
		m := a2.expect(nsClient, "message")
		if m.A("id") != "m"+strconv.Itoa(i) {
			t.Fatalf("got %s, want m%d", m, i)
		}
	}
	a2.nothing(quiet)
	bob.nothing(quiet) // nothing bounced
}

func TestResumeTimeout(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *config.Config) { c.Limits.ResumeTimeout = config.Duration(time.Second) })
	bob := login(t, e, modeStartTLS, "bob", "b")
	alice := login(t, e, modeStartTLS, "alice", "a")
	id := alice.enable()
	_ = alice.raw.Close()
	bob.send("<message to='alice@localhost/a' type='chat' id='late'><body>x</body></message>")
	bob.sync()
	// After resume_timeout the unacknowledged message is rerouted: no
	// resource, no offline store, so bob learns it was not delivered.
	if r := bob.expect(nsClient, "message"); r.A("id") != "late" || r.stanzaError() != "service-unavailable" {
		t.Fatalf("got %s", r)
	}
	_, n := resumeLogin(t, e, modeStartTLS, "alice", id, 0)
	if !n.Is(nsSM, "failed") {
		t.Fatalf("got %s", n)
	}
}

// TestStalledReader: a client that reads nothing at all blocks the
// server's writer on a full TCP window; it is cut soon after its queue
// overflows, not after the write timeout, and the session is gone.
func TestStalledReader(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *config.Config) { c.Limits.SendQueue = 20 })
	bob := login(t, e, modeStartTLS, "bob", "b")
	// carol floods; the bounces she gets once alice is gone may cut her
	// too (SendQueue is tiny for everyone), which ends the flood. bob only
	// probes, so his stream stays healthy.
	carol := login(t, e, modeStartTLS, "carol", "c")
	alice := dial(t, e, modeStartTLS)
	alice.authed("alice")
	alice.bind("stalled")
	// alice never reads again.
	body := strings.Repeat("z", 9000)
	start := time.Now()
	go func() {
		for i := 0; i < 3000; i++ {
			if carol.trySend(fmt.Sprintf("<message to='alice@localhost/stalled' id='s%d'><body>%s</body></message>", i, body)) != nil {
				return
			}
		}
	}()
	deadline := time.Now().Add(20 * time.Second)
	probe := 0
	for time.Now().Before(deadline) {
		probe++
		bob.send("<message to='alice@localhost/stalled' id='probe%d' type='chat'><body>?</body></message>", probe)
		timeout := time.After(500 * time.Millisecond)
	drain:
		for {
			select {
			case it, ok := <-bob.ch:
				if !ok || it.err != nil {
					t.Fatalf("bob's stream ended: %v", it.err)
				}
				if it.n.A("id") == fmt.Sprintf("probe%d", probe) {
					if it.n.stanzaError() != "service-unavailable" {
						t.Fatalf("got %s", it.n)
					}
					t.Logf("stalled session gone after %v", time.Since(start))
					return
				}
			case <-timeout:
				break drain
			}
		}
	}
	t.Fatal("a client that reads nothing was not cut")
}

// TestResumeTakeover: the client resumes before the server noticed that
// the old connection died; the old connection is closed and the session
// moves with its unacknowledged stanzas.
func TestResumeTakeover(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	bob := login(t, e, modeStartTLS, "bob", "b")
	old := login(t, e, modeStartTLS, "alice", "a")
	id := old.enable()
	bob.send("<message to='alice@localhost/a' id='t1'><body>1</body></message>")
	old.expect(nsClient, "message")
	old.expect(nsSM, "r")
	// No ack: t1 stays unacknowledged. Resume on a new connection while
	// the old one is still open.
	nw, n := resumeLogin(t, e, modeStartTLS, "alice", id, 0)
	if !n.Is(nsSM, "resumed") || n.A("h") != "0" {
		t.Fatalf("got %s", n)
	}
	nw.jid = "alice@localhost/a"
	if m := nw.expect(nsClient, "message"); m.A("id") != "t1" {
		t.Fatalf("got %s", m)
	}
	old.expectClosed()
	bob.send("<message to='alice@localhost/a' id='t2'><body>2</body></message>")
	if m := nw.expect(nsClient, "message"); m.A("id") != "t2" {
		t.Fatalf("got %s", m)
	}
	nw.nothing(quiet)
}
