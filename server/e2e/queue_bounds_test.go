package e2e

import (
	"bufio"
	"context"
	"crypto/x509"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/palisade-im/palisade/server/config"
	"github.com/palisade-im/palisade/server/module"
	"github.com/palisade-im/palisade/server/stanza"
	"go.uber.org/zap/zaptest/observer"
	"golang.org/x/net/websocket"
	"mellium.im/xmpp/jid"
)

// offlineSink is a test-only offline store: the server's module.OfflineStore
// when a test puts one in cfg.Modules["e2e_offline"]; other tests get a
// module that implements nothing, so they keep running without offline
// storage.
type offlineSink struct {
	mu  sync.Mutex
	ids map[string]int // message id -> times stored
}

func (o *offlineSink) StoreOffline(_ context.Context, st *stanza.Stanza) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.ids == nil {
		o.ids = map[string]int{}
	}
	o.ids[st.ID]++
	return nil
}

func (o *offlineSink) stored() map[string]int {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make(map[string]int, len(o.ids))
	for k, v := range o.ids {
		out[k] = v
	}
	return out
}

var _ module.OfflineStore = (*offlineSink)(nil)

func init() {
	module.Register(module.Info{Name: "e2e_offline", New: func(_ *module.Host, cfg any) (any, error) {
		if sink, ok := cfg.(*offlineSink); ok {
			return sink, nil
		}
		return struct{}{}, nil
	}})
}

// withOffline installs sink as the offline store.
func withOffline(c *config.Config, sink *offlineSink) {
	if c.Modules == nil {
		c.Modules = map[string]config.Section{}
	}
	c.Modules["e2e_offline"] = config.Section{Name: "e2e_offline", Value: sink}
}

// smallQueues sets byte bounds far below the stanza count bound, so that
// only the bytes can cut a session.
func smallQueues(c *config.Config) {
	c.Limits.SendQueue = 1000
	c.Limits.SendQueueBytes = 64 << 10
	c.Limits.AccountQueueBytes = 96 << 10
}

// waitGone waits until no session is bound to full.
func waitGone(t *testing.T, e *env, full string) {
	t.Helper()
	j := jid.MustParse(full)
	deadline := time.Now().Add(15 * time.Second)
	for e.srv.Session(j) != nil {
		if time.Now().After(deadline) {
			t.Fatalf("session %s still bound", full)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// cutLogged reports whether the server logged a send-queue cut.
func cutLogged(logs *observer.ObservedLogs) bool {
	return logs.FilterMessage("send queue full, closing session").Len() > 0
}

// drain reads what the client was sent until the connection ends and
// returns the ids of the messages in it.
func drain(c *client) map[string]int {
	got := map[string]int{}
	for {
		n, err := c.tryNext(short)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				c.t.Fatalf("%s: connection not closed by the server", c.name())
			}
			return got
		}
		if n.Is(nsClient, "message") {
			got[n.A("id")]++
		}
	}
}

// TestQueueBytesStalledReader: a client that stops reading is cut once the
// bytes queued for it pass limits.send_queue_bytes, long before the stanza
// count bound, and every message it did not get goes to offline storage.
func TestQueueBytesStalledReader(t *testing.T) {
	t.Parallel()
	sink := &offlineSink{}
	e, logs := newEnvObserved(t, func(c *config.Config) { smallQueues(c); withOffline(c, sink) })
	bob := login(t, e, modeStartTLS, "bob", "b")
	alice := dial(t, e, modeStartTLS)
	alice.authed("alice")
	alice.bind("stalled")
	alice.send("<enable xmlns='urn:xmpp:sm:3'/>")
	alice.expect(nsSM, "enabled")
	// alice reads nothing from here on and never acknowledges.

	const total = 150 // 1.4 MB, far below 1000 stanzas
	body := strings.Repeat("z", 9000)
	for i := 0; i < total; i++ {
		bob.send("<message to='alice@localhost/stalled' id='s%d' type='chat'><body>%s</body></message>", i, body)
	}
	bob.sync()
	waitGone(t, e, "alice@localhost/stalled")
	if !cutLogged(logs) {
		t.Fatal("no send-queue cut logged")
	}
	bob.sync() // rerouting is done
	got := drain(alice)
	stored := sink.stored()
	t.Logf("alice got %d messages, %d went offline", len(got), len(stored))
	if len(stored) == 0 {
		t.Fatal("nothing went to offline storage")
	}
	for i := 0; i < total; i++ {
		id := "s" + strconv.Itoa(i)
		if got[id] == 0 && stored[id] == 0 {
			t.Errorf("message %s neither received nor stored offline", id)
		}
	}
}

// flood writes copies of one element in chunks until the server closes
// the connection (or max copies went out).
func flood(c *client, elem string, max int) (sent int) {
	chunk := strings.Repeat(elem, 500)
	for sent < max {
		_ = c.conn.SetWriteDeadline(time.Now().Add(short))
		if _, err := io.WriteString(c.conn, chunk); err != nil {
			return sent
		}
		sent += 500
	}
	return sent
}

// TestQueueBytesRFlood: <r/> after <r/> without reading the answers: the
// unwritten <a/> is coalesced, the answers owed count against the bound,
// and the session is cut with policy-violation instead of the server
// queueing answers without end.
func TestQueueBytesRFlood(t *testing.T) {
	t.Parallel()
	e, logs := newEnvObserved(t, smallQueues)
	alice := dial(t, e, modeStartTLS)
	alice.authed("alice")
	alice.bind("flood")
	alice.send("<enable xmlns='urn:xmpp:sm:3'/>")
	alice.expect(nsSM, "enabled")
	sent := flood(alice, "<r xmlns='urn:xmpp:sm:3'/>", 3_000_000)
	t.Logf("sent %d <r/>", sent)
	waitGone(t, e, "alice@localhost/flood")
	if !cutLogged(logs) {
		t.Fatal("no send-queue cut logged")
	}
	drain(alice) // the connection ends
}

// TestQueueBytesResumeFlood: <resume/> after bind (no <enable/> needed),
// answered with <failed/>, flooded without reading: cut the same way.
func TestQueueBytesResumeFlood(t *testing.T) {
	t.Parallel()
	e, logs := newEnvObserved(t, smallQueues)
	alice := dial(t, e, modeStartTLS)
	alice.authed("alice")
	alice.bind("flood")
	sent := flood(alice, "<resume xmlns='urn:xmpp:sm:3' previd='x' h='0'/>", 1_000_000)
	t.Logf("sent %d <resume/>", sent)
	waitGone(t, e, "alice@localhost/flood")
	if !cutLogged(logs) {
		t.Fatal("no send-queue cut logged")
	}
	drain(alice)
}

// TestQueueBytesDetached: a detached resumable session is held for its
// client, but not past limits.send_queue_bytes: then it gives up
// resumption and ends, and what was queued for it goes to offline storage.
func TestQueueBytesDetached(t *testing.T) {
	t.Parallel()
	sink := &offlineSink{}
	e := newEnv(t, func(c *config.Config) { smallQueues(c); withOffline(c, sink) })
	bob := login(t, e, modeStartTLS, "bob", "b")
	alice := login(t, e, modeStartTLS, "alice", "away")
	id := alice.enable()
	_ = alice.raw.Close()

	const total = 20 // 180 KB
	body := strings.Repeat("d", 9000)
	for i := 0; i < total; i++ {
		bob.send("<message to='alice@localhost/away' id='d%d' type='chat'><body>%s</body></message>", i, body)
	}
	bob.sync()
	waitGone(t, e, "alice@localhost/away")
	bob.sync()
	stored := sink.stored()
	for i := 0; i < total; i++ {
		if id := "d" + strconv.Itoa(i); stored[id] != 1 {
			t.Errorf("message %s stored offline %d times, want 1", id, stored[id])
		}
	}
	_, n := resumeLogin(t, e, modeStartTLS, "alice", id, 0)
	if !n.Is(nsSM, "failed") {
		t.Fatalf("resumed a session past its bound: %s", n)
	}
	bob.nothing(quiet) // nothing bounced
}

// TestQueueBytesAccount: limits.account_queue_bytes bounds one account's
// sessions together: the session whose stanza passes it is cut although
// its own queue is under send_queue_bytes; the account's other session
// goes on.
func TestQueueBytesAccount(t *testing.T) {
	t.Parallel()
	e := newEnv(t, smallQueues) // 64 KiB per session, 96 KiB per account
	bob := login(t, e, modeStartTLS, "bob", "b")
	a1 := login(t, e, modeStartTLS, "alice", "one")
	a1.enable()
	a2 := login(t, e, modeStartTLS, "alice", "two")
	a2.enable()
	// Both read but never acknowledge: what they got stays queued.
	body := strings.Repeat("q", 9000)
	for i := 0; i < 5; i++ { // ~45 KB for a1
		bob.send("<message to='alice@localhost/one' id='o%d'><body>%s</body></message>", i, body)
	}
	for got := 0; got < 5; {
		if n := a1.next(); n.Is(nsClient, "message") {
			got++
		} else if !n.Is(nsSM, "r") {
			t.Fatalf("a1: got %s", n)
		}
	}
	// a2: 6 messages (~55 KB, under the session bound) pass 96 KiB together.
	for i := 0; i < 6; i++ {
		bob.send("<message to='alice@localhost/two' id='t%d'><body>%s</body></message>", i, body)
	}
	for {
		n := a2.next()
		if n.Is(nsClient, "message") || n.Is(nsSM, "r") {
			continue
		}
		if !n.Is(nsStream, "error") || n.Child(nsStreams, "policy-violation") == nil {
			t.Fatalf("got %s, want the send-queue cut", n)
		}
		break
	}
	a2.expectClosed()
	// a1 acknowledges and goes on.
	a1.send("<a xmlns='urn:xmpp:sm:3' h='5'/>")
	bob.send("<message to='alice@localhost/one' id='after'><body>x</body></message>")
	for {
		n := a1.next()
		if n.Is(nsSM, "r") {
			continue
		}
		if !n.Is(nsClient, "message") || n.A("id") != "after" {
			t.Fatalf("a1: got %s", n)
		}
		break
	}
}

// Environment of the server process of TestConnCapNearFileLimit.
const (
	capChildEnv = "PALISADE_E2E_CONNCAP_CHILD"
	capFileMax  = 256 // RLIMIT_NOFILE of the server process
)

// TestConnCapServerProcess is the server process of
// TestConnCapNearFileLimit: it lowers its own open-file limit, runs a
// server on addresses of its own choosing (newEnv picks new ones if one
// is taken before the bind), prints "READY" with its data directory and
// addresses, and stops when stdin closes.
func TestConnCapServerProcess(t *testing.T) {
	if os.Getenv(capChildEnv) == "" {
		t.Skip("the server process of TestConnCapNearFileLimit")
	}
	lim := syscall.Rlimit{Cur: capFileMax, Max: capFileMax}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(c *config.Config) { c.Listen.Admin = freeAddr(t) })
	fmt.Println("READY " + strings.Join([]string{e.cfg.Server.DataDir, e.cfg.Listen.C2S, e.cfg.Listen.C2SDirectTLS, e.cfg.Listen.WebSocket, e.cfg.Listen.Admin}, ","))
	_, _ = io.Copy(io.Discard, os.Stdin)
}

// TestConnCapNearFileLimit: a server with a low open-file limit refuses
// client connections past its cap instead of running out of file
// descriptors (accept4: too many open files used to stop it): established
// sessions still exchange messages, /healthz still answers, and once
// connections close new ones are accepted again.
func TestConnCapNearFileLimit(t *testing.T) {
	t.Parallel()
	cfg := config.Default()
	cmd := exec.Command(os.Args[0], "-test.run=^TestConnCapServerProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), capChildEnv+"=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	ready := make(chan struct{})
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if addrs, ok := strings.CutPrefix(sc.Text(), "READY "); ok {
				if f := strings.Split(addrs, ","); len(f) == 5 {
					cfg.Server.DataDir = f[0]
					cfg.Listen.C2S, cfg.Listen.C2SDirectTLS, cfg.Listen.WebSocket, cfg.Listen.Admin = f[1], f[2], f[3], f[4]
					close(ready)
					continue
				}
			}
			out.WriteString(sc.Text() + "\n")
		}
	}()
	t.Cleanup(func() {
		_ = stdin.Close()
		done := make(chan error, 1)
		go func() { <-readerDone; done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("server process: %v\n%s", err, out.String())
			}
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			t.Errorf("server process did not stop\n%s", out.String())
		}
	})
	select {
	case <-ready:
	case <-readerDone:
		t.Fatal("server process ended before it was ready")
	case <-time.After(30 * time.Second):
		t.Fatal("server process not ready")
	}
	pem, err := os.ReadFile(filepath.Join(cfg.Server.DataDir, "certs", "server.pem"))
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, cfg: cfg, pool: x509.NewCertPool()}
	e.pool.AppendCertsFromPEM(pem)

	alice := login(t, e, modeStartTLS, "alice", "a")
	bob := login(t, e, modeStartTLS, "bob", "b")

	// Open streams until the server refuses one; each gets its features
	// (accepted) or a stream error or the connection closed (refused).
	var held []net.Conn
	defer func() {
		for _, c := range held {
			_ = c.Close()
		}
	}()
	open := func() (accepted bool) {
		c, err := net.DialTimeout("tcp", cfg.Listen.C2S, short)
		if err != nil {
			t.Fatalf("dial after %d streams: %v", len(held), err)
		}
		_ = c.SetDeadline(time.Now().Add(short))
		_, _ = io.WriteString(c, "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>")
		d := xml.NewDecoder(c)
		for {
			tok, err := d.Token()
			if err != nil {
				_ = c.Close()
				return false // closed: refused
			}
			if se, ok := tok.(xml.StartElement); ok {
				switch {
				case se.Name.Space == nsStream && se.Name.Local == "features":
					_ = c.SetDeadline(time.Time{})
					held = append(held, c)
					return true
				case se.Name.Space == nsStream && se.Name.Local == "error":
					_ = c.Close()
					return false
				}
			}
		}
	}
	for open() {
		if len(held) > capFileMax {
			t.Fatalf("%d streams accepted with an open-file limit of %d", len(held), capFileMax)
		}
	}
	t.Logf("%d streams accepted, then refused", len(held))
	for i := 0; i < 20; i++ {
		if open() {
			t.Fatal("a stream past the cap was accepted")
		}
	}
	// WebSocket connections count under the same cap.
	wcfg, err := websocket.NewConfig("wss://"+cfg.Listen.WebSocket+"/xmpp-websocket", "https://localhost/")
	if err != nil {
		t.Fatal(err)
	}
	wcfg.Protocol = []string{"xmpp"}
	wcfg.TlsConfig = e.tlsConfig()
	if ws, err := websocket.DialConfig(wcfg); err == nil {
		_ = ws.Close()
		t.Fatal("a WebSocket connection past the cap was accepted")
	}

	// Established sessions work, and so does the admin listener.
	alice.send("<message to='bob@localhost/b' id='near-limit'><body>hi</body></message>")
	if n := bob.expect(nsClient, "message"); n.A("id") != "near-limit" {
		t.Fatalf("got %s", n)
	}
	hc := &http.Client{Timeout: short}
	resp, err := hc.Get("http://" + cfg.Listen.Admin + "/healthz")
	if err != nil {
		t.Fatalf("healthz at the cap: %v", err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("healthz at the cap: %s", resp.Status)
	}

	// Connections close: new ones are accepted again.
	for _, c := range held {
		_ = c.Close()
	}
	held = nil
	deadline := time.Now().Add(short)
	for !open() {
		if time.Now().After(deadline) {
			t.Fatal("no stream accepted after the others closed")
		}
		time.Sleep(20 * time.Millisecond)
	}
	carol := login(t, e, modeStartTLS, "carol", "c")
	carol.send("<message to='alice@localhost/a' id='again'><body>x</body></message>")
	if n := alice.expect(nsClient, "message"); n.A("id") != "again" {
		t.Fatalf("got %s", n)
	}
}
