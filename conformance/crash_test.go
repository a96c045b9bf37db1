package conformance

import (
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Crash tests: the server is SIGKILLed (no shutdown path runs) while a
// client has XEP-0198 acknowledgements for its roster change and messages;
// after a restart on the same data directory nothing acknowledged may be
// missing and nothing may be delivered twice.

// crash kills the running palisade process with SIGKILL and waits until it
// is gone.
func (s *Server) crash(t *testing.T) {
	t.Helper()
	select {
	case <-s.done:
		t.Fatalf("palisade already exited before the kill: %v\n%s", s.cmd.ProcessState, s.Log())
	default:
	}
	pid := s.cmd.Process.Pid
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 %d: %v", pid, err)
	}
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("palisade pid %d still running 10s after SIGKILL", pid)
	}
	if ws, ok := s.cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("palisade pid %d did not die of SIGKILL: %v", pid, s.cmd.ProcessState)
	}
	t.Logf("palisade pid %d killed with SIGKILL", pid)
}

// restart starts palisade again with the same config and data directory
// (and the same ports) and waits until it is ready, looking only at what
// the new process logs. The test's cleanup then stops the new process.
func (s *Server) restart(t *testing.T) {
	t.Helper()
	offset := len(s.Log())
	fmt.Fprintf(s.stderr, "\n===== restart after SIGKILL =====\n")
	s.cmd = exec.Command(binPath, "--config", s.ConfigPath, "serve")
	s.cmd.Dir = s.Dir
	s.cmd.Stderr = s.stderr
	s.cmd.Stdout = s.stderr
	done := make(chan struct{})
	s.done = done
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("restart palisade: %v", err)
	}
	cmd := s.cmd
	go func() { cmd.Wait(); close(done) }()

	names := []string{"c2s", "c2s_direct_tls", "websocket", "admin"}
	deadline := time.Now().Add(20 * time.Second)
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		select {
		case <-done:
			t.Fatalf("palisade exited during restart on the old data dir: %v\n%s", cmd.ProcessState, s.Log()[offset:])
		default:
		}
		log := s.Log()[offset:]
		up := 0
		for _, name := range names {
			if strings.Contains(log, `"msg":"listening","listener":"`+name+`"`) {
				up++
			}
		}
		if up == len(names) {
			resp, err := client.Get("http://" + s.Admin + "/healthz")
			if err == nil {
				ready := healthyButWitnesses(resp)
				resp.Body.Close()
				if ready {
					t.Logf("palisade restarted as pid %d", cmd.Process.Pid)
					return
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("palisade not ready 20s after restart:\n%s", log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// smClient wraps a rawConn with XEP-0198: a reader goroutine records the
// server's acknowledgements (<a h='N'/>) and answers the server's <r/>.
type smClient struct {
	*rawConn
	wmu     sync.Mutex
	mu      sync.Mutex
	acked   int // highest h the server acknowledged
	inbound int // stanzas received from the server (for our <a/>)
	log     []string
	iqs     map[string]string // iq id -> type of the answer
	errors  []string          // error stanzas received
	changed chan struct{}     // closed and replaced on every ack
	done    chan struct{}     // closed when the reader stops
	readErr error
}

// enableSM sends <enable/> and waits for <enabled/>, then starts the reader.
func enableSM(c *rawConn) *smClient {
	c.t.Helper()
	c.send(`<enable xmlns='urn:xmpp:sm:3'/>`)
	for {
		e := c.next()
		if e.XMLName.Space == "urn:xmpp:sm:3" && e.XMLName.Local == "enabled" {
			break
		}
		if e.XMLName.Space == "urn:xmpp:sm:3" && e.XMLName.Local == "failed" {
			c.t.Fatalf("%s: <enable/> failed: %s", c.name, e.Inner)
		}
	}
	sc := &smClient{rawConn: c, iqs: map[string]string{}, changed: make(chan struct{}), done: make(chan struct{})}
	go sc.read()
	return sc
}

func (c *smClient) write(s string) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, err := io.WriteString(c.conn, s)
	return err
}

// read runs until the connection ends. It never calls t.Fatal.
func (c *smClient) read() {
	defer close(c.done)
	for {
		c.conn.SetReadDeadline(time.Now().Add(2 * time.Minute))
		tok, err := c.dec.Token()
		if err != nil {
			c.readErr = err
			return
		}
		start, isStart := tok.(xml.StartElement)
		if !isStart {
			if _, isEnd := tok.(xml.EndElement); isEnd {
				c.readErr = io.EOF // </stream:stream>
				return
			}
			continue
		}
		var e element
		if err := c.dec.DecodeElement(&e, &start); err != nil {
			c.readErr = err
			return
		}
		c.mu.Lock()
		c.log = append(c.log, fmt.Sprintf("<%s xmlns=%q %v>%s", e.XMLName.Local, e.XMLName.Space, e.Attrs, e.Inner))
		switch {
		case e.XMLName.Space == "urn:xmpp:sm:3" && e.XMLName.Local == "a":
			h, err := strconv.Atoi(e.attr("h"))
			if err == nil && h > c.acked {
				c.acked = h
			}
			close(c.changed)
			c.changed = make(chan struct{})
			c.mu.Unlock()
		case e.XMLName.Space == "urn:xmpp:sm:3" && e.XMLName.Local == "r":
			n := c.inbound
			c.mu.Unlock()
			_ = c.write(fmt.Sprintf(`<a xmlns='urn:xmpp:sm:3' h='%d'/>`, n))
		case e.XMLName.Local == "message" || e.XMLName.Local == "iq" || e.XMLName.Local == "presence":
			c.inbound++
			if e.XMLName.Local == "iq" {
				c.iqs[e.attr("id")] = e.attr("type")
			}
			if e.attr("type") == "error" {
				c.errors = append(c.errors, c.log[len(c.log)-1])
			}
			c.mu.Unlock()
		default:
			c.mu.Unlock()
		}
	}
}

// ackState returns the highest acknowledged h and a channel closed on the
// next acknowledgement.
func (c *smClient) ackState() (int, <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.acked, c.changed
}

// waitAck waits until the server acknowledged at least h stanzas.
func (c *smClient) waitAck(h int, timeout time.Duration) error {
	deadline := time.After(timeout)
	for {
		got, ch := c.ackState()
		if got >= h {
			return nil
		}
		select {
		case <-ch:
		case <-c.done:
			if got, _ := c.ackState(); got >= h {
				return nil
			}
			return fmt.Errorf("connection ended (%v) with h=%d, want %d", c.readErr, got, h)
		case <-deadline:
			return fmt.Errorf("no <a h='%d'/> within %v (have h=%d)", h, timeout, got)
		}
	}
}

// iq returns the type of the answer to the iq with this id ("" if none yet).
func (c *smClient) iq(id string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.iqs[id]
}

func (c *smClient) errorStanzas() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.errors...)
}

func (c *smClient) received() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.Join(c.log, "\n")
}

// --- after the restart -------------------------------------------------------

var bodyRx = regexp.MustCompile(`<body>([^<]*)</body>`)
var delayRx = regexp.MustCompile(`<delay[^>]*xmlns="urn:xmpp:delay"[^>]*|<delay[^>]*xmlns='urn:xmpp:delay'[^>]*`)
var stampRx = regexp.MustCompile(`stamp=["']([^"']+)["']`)

// collectOffline logs bob in, sends initial presence and collects chat
// bodies from alice until every body in want arrived; then it puts a ping
// and a message to itself through the server as a barrier so that
// duplicates queued behind the last wanted message show up too. It returns
// how often each body arrived and each body's delay stamp.
func collectOffline(t *testing.T, s *Server, want []string) (map[string]int, map[string]string) {
	t.Helper()
	bob := dialRaw(t, s, "bob", "bob", accounts["bob"], "after-crash")
	bob.send(`<presence/>`)
	count := map[string]int{}
	stamps := map[string]string{}
	missing := func() []string {
		var m []string
		for _, w := range want {
			if count[w] == 0 {
				m = append(m, w)
			}
		}
		return m
	}
	record := func(e *element) {
		if e.XMLName.Local != "message" || !strings.HasPrefix(e.attr("from"), "alice@localhost") {
			return
		}
		m := bodyRx.FindStringSubmatch(e.Inner)
		if m == nil {
			return
		}
		count[m[1]]++
		if d := delayRx.FindString(e.Inner); d != "" {
			if st := stampRx.FindStringSubmatch(d); st != nil {
				stamps[m[1]] = st[1]
			}
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for len(missing()) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("bob: after 20s still missing %d acknowledged messages: %v (got %v)", len(missing()), missing(), count)
		}
		bob.conn.SetReadDeadline(deadline)
		e, err := bob.nextRaw()
		if err != nil {
			t.Fatalf("bob: read: %v; missing %v (got %v)", err, missing(), count)
		}
		record(e)
	}
	// Barrier: ping the server, then a message to our own full JID.
	bob.send(`<iq type='get' id='barrier-ping' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>`)
	bob.send(fmt.Sprintf(`<message to='%s' type='chat' id='barrier'><body>barrier</body></message>`, bob.JID))
	for {
		bob.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		e, err := bob.nextRaw()
		if err != nil {
			t.Fatalf("bob: waiting for the barrier: %v", err)
		}
		if e.XMLName.Local == "message" && strings.Contains(e.Inner, "<body>barrier</body>") {
			break
		}
		record(e)
	}
	return count, stamps
}

// nextRaw is nextErr honouring a read deadline already set by the caller.
func (c *rawConn) nextRaw() (*element, error) {
	for {
		tok, err := c.dec.Token()
		if err != nil {
			return nil, err
		}
		if start, ok := tok.(xml.StartElement); ok {
			var e element
			if err := c.dec.DecodeElement(&e, &start); err != nil {
				return nil, err
			}
			return &e, nil
		}
		if _, ok := tok.(xml.EndElement); ok {
			return nil, io.EOF
		}
	}
}

// checkDelay fails unless a body's delay stamp is present and recent.
func checkDelay(t *testing.T, body, stamp string, since time.Time) {
	t.Helper()
	if stamp == "" {
		t.Errorf("offline message %q has no urn:xmpp:delay stamp", body)
		return
	}
	ts, err := time.Parse(time.RFC3339Nano, stamp)
	if err != nil {
		t.Errorf("offline message %q: delay stamp %q: %v", body, stamp, err)
		return
	}
	if ts.Before(since.Add(-2*time.Second)) || ts.After(time.Now().Add(2*time.Second)) {
		t.Errorf("offline message %q: delay stamp %s not between %s and now", body, stamp, since.Format(time.RFC3339))
	}
}

// rosterHas fetches alice's roster (without a version) and reports whether
// jid is in it.
func rosterHas(t *testing.T, s *Server, jid string) (bool, string) {
	t.Helper()
	alice := dialRaw(t, s, "alice (after restart)", "alice", accounts["alice"], "after-crash")
	alice.send(`<iq type='get' id='roster-after'><query xmlns='jabber:iq:roster'/></iq>`)
	for {
		e := alice.next()
		if e.XMLName.Local == "iq" && e.attr("id") == "roster-after" {
			if e.attr("type") != "result" {
				t.Fatalf("roster get after restart: type=%s %s", e.attr("type"), e.Inner)
			}
			return regexp.MustCompile(`jid=["']` + regexp.QuoteMeta(jid) + `["']`).MatchString(e.Inner), e.Inner
		}
	}
}

// --- tests -------------------------------------------------------------------

// TestCrashKeepsAcknowledged: alice's roster set is answered, her 20
// messages to offline bob are covered by <a h/>; kill -9; restart; bob gets
// all 20 exactly once with delay stamps, carol is still on alice's roster.
func TestCrashKeepsAcknowledged(t *testing.T) {
	s := newServer(t)
	start := time.Now()
	alice := enableSM(dialRaw(t, s, "alice", "alice", accounts["alice"], "crash"))

	// Stanza 1: the roster set; wait for its result.
	if err := alice.write(`<iq type='set' id='add-carol'><query xmlns='jabber:iq:roster'><item jid='carol@localhost' name='Carol'/></query></iq><r xmlns='urn:xmpp:sm:3'/>`); err != nil {
		t.Fatal(err)
	}
	if err := alice.waitAck(1, 10*time.Second); err != nil {
		t.Fatalf("roster set: %v\n%s", err, alice.received())
	}
	waitFor(t, 10*time.Second, "answer to the roster set", func() bool {
		return alice.iq("add-carol") != ""
	}, alice.received)
	if typ := alice.iq("add-carol"); typ != "result" {
		t.Fatalf("roster set answered with type=%s:\n%s", typ, alice.received())
	}

	// Stanzas 2..21: the messages.
	const n = 20
	var want []string
	var b strings.Builder
	for i := 1; i <= n; i++ {
		body := fmt.Sprintf("crash message %d", i)
		want = append(want, body)
		fmt.Fprintf(&b, `<message to='bob@localhost' type='chat' id='m%d'><body>%s</body></message>`, i, body)
	}
	b.WriteString(`<r xmlns='urn:xmpp:sm:3'/>`)
	if err := alice.write(b.String()); err != nil {
		t.Fatal(err)
	}
	if err := alice.waitAck(1+n, 15*time.Second); err != nil {
		t.Fatalf("messages: %v\n%s", err, alice.received())
	}
	if errs := alice.errorStanzas(); len(errs) > 0 {
		t.Errorf("error stanzas before the kill:\n%s", strings.Join(errs, "\n"))
	}
	t.Logf("server acknowledged the roster set and %d messages (h=%d)", n, 1+n)

	s.crash(t)
	s.restart(t)

	count, stamps := collectOffline(t, s, want)
	for _, w := range want {
		if count[w] != 1 {
			t.Errorf("bob received %q %d times, want exactly once", w, count[w])
		}
		checkDelay(t, w, stamps[w], start)
	}
	t.Logf("bob got all %d once; delay stamp of %q: %s", n, want[0], stamps[want[0]])
	if ok, roster := rosterHas(t, s, "carol@localhost"); !ok {
		t.Errorf("carol@localhost missing from alice's roster after the restart although the roster set was answered; roster: %s", roster)
	}
}

// TestCrashMidFlood: alice sends 40 messages, at most 5 unacknowledged at a
// time; once message 10 is acknowledged the server is SIGKILLed while
// alice keeps sending. After the restart bob must have every message
// acknowledged before the connection died, none twice.
func TestCrashMidFlood(t *testing.T) {
	s := newServer(t)
	start := time.Now()
	alice := enableSM(dialRaw(t, s, "alice", "alice", accounts["alice"], "flood"))

	const total, window, killAt = 40, 5, 10
	killed := false
	sent := 0
	for k := 1; k <= total; k++ {
		if !killed {
			if h, _ := alice.ackState(); h >= killAt {
				s.crash(t)
				killed = true
			}
		}
		if !killed {
			if err := alice.waitAck(k-window, 10*time.Second); err != nil {
				t.Fatalf("before message %d: %v\n%s", k, err, alice.received())
			}
		}
		msg := fmt.Sprintf(`<message to='bob@localhost' type='chat' id='f%d'><body>flood %d</body></message><r xmlns='urn:xmpp:sm:3'/>`, k, k)
		if err := alice.write(msg); err != nil {
			t.Logf("write of message %d failed after the kill: %v", k, err)
			break
		}
		sent = k
	}
	if !killed {
		t.Fatalf("all %d messages written without h reaching %d", total, killAt)
	}
	select {
	case <-alice.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("alice's connection still open 10s after the kill")
	}
	acked, _ := alice.ackState()
	t.Logf("killed mid-flood: %d messages written, %d acknowledged (reader ended: %v)", sent, acked, alice.readErr)
	if acked < killAt {
		t.Fatalf("acknowledged %d < %d", acked, killAt)
	}
	if acked >= sent {
		t.Logf("note: every written message was acknowledged before the kill (no message in flight)")
	}

	s.restart(t)

	var want []string
	for i := 1; i <= acked; i++ {
		want = append(want, fmt.Sprintf("flood %d", i))
	}
	count, stamps := collectOffline(t, s, want)
	for _, w := range want {
		if count[w] != 1 {
			t.Errorf("bob received acknowledged %q %d times, want exactly once", w, count[w])
		}
		checkDelay(t, w, stamps[w], start)
	}
	extra := 0
	for i := acked + 1; i <= total; i++ {
		w := fmt.Sprintf("flood %d", i)
		if count[w] > 1 {
			t.Errorf("bob received unacknowledged %q %d times", w, count[w])
		}
		if i > sent && count[w] > 0 {
			t.Errorf("bob received %q, which was never written", w)
		}
		extra += count[w]
	}
	t.Logf("bob got %d acknowledged messages and %d unacknowledged ones", len(want), extra)
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool, dump func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %v:\n%s", what, timeout, dump())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
