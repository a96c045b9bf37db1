package c2s

import (
	"context"
	"errors"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/palisade-im/palisade/server/element"
	"github.com/palisade-im/palisade/server/router"
	"github.com/palisade-im/palisade/server/stanza"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"mellium.im/xmpp/jid"
)

// flakyListener fails its first errs Accepts with EMFILE, then hands out
// the connections sent on conns until closed.
type flakyListener struct {
	mu     sync.Mutex
	errs   int
	calls  []time.Time
	called chan struct{}
	conns  chan net.Conn
	done   chan struct{}
	once   sync.Once
}

func (l *flakyListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	l.calls = append(l.calls, time.Now())
	fail := l.errs > 0
	if fail {
		l.errs--
	}
	l.mu.Unlock()
	select {
	case l.called <- struct{}{}:
	default:
	}
	if fail {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *flakyListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *flakyListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5222} }

// TestAcceptBackoff: accept errors (here EMFILE) do not end ServeTCP: it
// waits 5 ms, doubling, before each retry, logs the run of failures once,
// and accepts again when the listener recovers.
func TestAcceptBackoff(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	log := zap.New(core)
	srv := New(Config{Domains: []string{"localhost"}, AuthTimeout: time.Second, MaxConns: 10}, nil, router.NewTable(), log, log)
	const fails = 6
	ln := &flakyListener{errs: fails, called: make(chan struct{}, 1), conns: make(chan net.Conn, 1), done: make(chan struct{})}
	ret := make(chan error, 1)
	go func() { ret <- srv.ServeTCP(context.Background(), ln, false) }()

	client, server := net.Pipe()
	ln.conns <- server
	_ = client.Close() // the stream ends at once
	// Wait until ServeTCP is in the Accept after the connection.
	for {
		ln.mu.Lock()
		n := len(ln.calls)
		ln.mu.Unlock()
		if n >= fails+2 {
			break
		}
		select {
		case err := <-ret:
			t.Fatalf("ServeTCP returned during accept errors: %v", err)
		case <-ln.called:
		}
	}
	_ = ln.Close()
	if err := <-ret; err != nil {
		t.Fatalf("ServeTCP = %v, want nil after the listener closed", err)
	}
	srv.Shutdown(context.Background())

	ln.mu.Lock()
	calls := ln.calls
	ln.mu.Unlock()
	want := acceptBackoffMin
	for i := 0; i < fails; i++ {
		if gap := calls[i+1].Sub(calls[i]); gap < want {
			t.Errorf("retry %d after %v, want at least %v", i+1, gap, want)
		}
		want = min(2*want, acceptBackoffMax)
	}
	if n := logs.FilterMessage("accept failed, retrying with back-off").Len(); n != 1 {
		t.Errorf("%d accept-failure log lines for one run of %d failures, want 1", n, fails)
	}
	again := logs.FilterMessage("accepting again").All()
	if len(again) != 1 || again[0].ContextMap()["failed_accepts"] != int64(fails) {
		t.Errorf("accepting again logged as %v", again)
	}
	if n := srv.open.Load(); n != 0 {
		t.Errorf("%d connections still counted after they ended", n)
	}
}

func TestConnCap(t *testing.T) {
	for _, c := range []struct {
		limit uint64
		ok    bool
		want  int
	}{
		{20000, true, 19000}, // 5%
		{1024, true, 960},    // at least 64
		{256, true, 192},
		{100, true, 50}, // a tiny limit: half of it
		{0, false, -1},  // unknown: no cap
		{1 << 62, true, -1},
	} {
		if got := connCap(c.limit, c.ok); got != c.want {
			t.Errorf("connCap(%d, %v) = %d, want %d", c.limit, c.ok, got, c.want)
		}
	}
}

// TestConnCapRefuses: past Config.MaxConns a STARTTLS connection is told
// resource-constraint and closed; a place freed is taken again.
func TestConnCapRefuses(t *testing.T) {
	log := zap.NewNop()
	srv := New(Config{Domains: []string{"localhost"}, AuthTimeout: 10 * time.Second, MaxConns: 1}, nil, router.NewTable(), log, log)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.ServeTCP(context.Background(), ln, false) }()
	defer srv.Shutdown(context.Background())

	first, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	// The first is admitted: it waits for a stream header.
	for srv.open.Load() != 1 {
		time.Sleep(time.Millisecond)
	}
	second, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	_ = second.SetReadDeadline(time.Now().Add(5 * time.Second))
	var b strings.Builder
	buf := make([]byte, 1024)
	for {
		n, err := second.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	if !strings.Contains(b.String(), "<resource-constraint") {
		t.Fatalf("refused connection got %q", b.String())
	}
	_ = first.Close()
	for srv.open.Load() != 0 {
		time.Sleep(time.Millisecond)
	}
	third, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer third.Close()
	for srv.open.Load() != 1 {
		time.Sleep(time.Millisecond)
	}
}

// fakeTransport records writes; block holds writes until closed.
type fakeTransport struct {
	mu     sync.Mutex
	wrote  [][]byte
	block  chan struct{}
	closed bool
}

func (f *fakeTransport) write(elems [][]byte) error {
	if f.block != nil {
		<-f.block
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return net.ErrClosed
	}
	for _, e := range elems {
		f.wrote = append(f.wrote, append([]byte(nil), e...))
	}
	return nil
}

func (f *fakeTransport) close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	return nil
}

func (f *fakeTransport) next() (event, error)                         { return event{}, errors.New("fake") }
func (f *fakeTransport) setBounds(bounds)                             {}
func (f *fakeTransport) restart()                                     {}
func (f *fakeTransport) writeOpen(string, string) error               { return nil }
func (f *fakeTransport) writeFeatures([]*element.Element) error       { return nil }
func (f *fakeTransport) writeError(*streamError) error                { return nil }
func (f *fakeTransport) writeClose() error                            { return nil }
func (f *fakeTransport) lingerClose() error                           { return f.close() }
func (f *fakeTransport) setIdle(time.Duration, time.Duration, func()) {}
func (f *fakeTransport) wait() error                                  { return nil }
func (f *fakeTransport) ready() bool                                  { return false }
func (f *fakeTransport) remoteAddr() string                           { return "127.0.0.1:1" }
func (f *fakeTransport) secure() bool                                 { return true }
func (f *fakeTransport) limitRead(*readBucket)                        {}

// waitWriter waits until the session has no writer running.
func waitWriter(s *Session) {
	for {
		s.mu.Lock()
		idle := s.writer == nil
		s.mu.Unlock()
		if idle {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

func testSession(srv *Server, tr transport) *Session {
	return &Session{srv: srv, id: "s1", jid: jid.MustParse("alice@localhost/a"), tr: tr,
		acct: srv.acquireAccount("alice@localhost")}
}

// TestQueueBytesAccounting: the byte counters follow what is held, through
// writes without XEP-0198, acknowledgements and held presence, and return
// to zero; answers to <r/> are coalesced while unwritten.
func TestQueueBytesAccounting(t *testing.T) {
	log := zap.NewNop()
	srv := New(Config{Domains: []string{"localhost"}, SendQueue: 1000, SendQueueBytes: 1 << 20, AccountQueueBytes: 1 << 20, MaxConns: -1},
		nil, router.NewTable(), log, log)
	from := jid.MustParse("bob@localhost/b")
	to := jid.MustParse("alice@localhost/a")
	msg := func(id string) *stanza.Stanza {
		st := stanza.New(stanza.Message, from, to, "chat", id)
		st.El.Append(element.New(stanza.NSClient, "body").SetText(strings.Repeat("x", 100)))
		return st
	}
	check := func(s *Session, want int) {
		t.Helper()
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.bytes != want || s.qBytes+s.nzBytes+s.heldBytes > s.bytes || s.acct.bytes.Load() != int64(want) {
			t.Fatalf("bytes %d (q %d, nonzas %d, held %d, account %d), want %d",
				s.bytes, s.qBytes, s.nzBytes, s.heldBytes, s.acct.bytes.Load(), want)
		}
	}

	// Without XEP-0198: written is released.
	tr := &fakeTransport{}
	s := testSession(srv, tr)
	s.Send(msg("1"))
	waitWriter(s)
	check(s, 0)

	// With XEP-0198: held until acknowledged.
	s.mu.Lock()
	s.smOn = true
	s.mu.Unlock()
	m2, m3 := msg("2"), msg("3")
	s.Send(m2)
	s.Send(m3)
	waitWriter(s)
	check(s, len(m2.Wire())+len(m3.Wire()))
	if err := s.ack(1); err != nil {
		t.Fatal(err)
	}
	check(s, len(m3.Wire()))
	if err := s.ack(2); err != nil {
		t.Fatal(err)
	}
	check(s, 0)

	// <r/> answers while the writer is blocked: one <a/> queued, with the
	// latest h; the answers owed count until it is written.
	tr.block = make(chan struct{})
	s.mu.Lock()
	s.nonzas = append(s.nonzas, []byte("<x/>")) // a batch for the writer to block on
	s.nzBytes += 4
	s.addLocked(4)
	s.kickLocked()
	s.mu.Unlock()
	for { // until the writer took <x/> and blocks writing it
		s.mu.Lock()
		taken := len(s.nonzas) == 0
		s.mu.Unlock()
		if taken {
			break
		}
		time.Sleep(time.Millisecond)
	}
	for i := 0; i < 100; i++ {
		s.mu.Lock()
		s.inHandled = uint32(i)
		s.mu.Unlock()
		s.answerR()
	}
	s.mu.Lock()
	pending := len(s.nonzas)
	last := string(s.nonzas[len(s.nonzas)-1])
	owed := s.bytes
	s.mu.Unlock()
	if pending != 1 || last != `<a xmlns="urn:xmpp:sm:3" h="99"/>` {
		t.Fatalf("%d nonzas pending, last %s; want one <a/> with h=99", pending, last)
	}
	if owed < 100*len(`<a xmlns="urn:xmpp:sm:3" h="9"/>`) {
		t.Fatalf("%d bytes counted for 100 answers owed", owed)
	}
	close(tr.block) // writes go through from now on
	waitWriter(s)
	check(s, 0)

	// XEP-0352 held presence counts too, and is released when flushed and written.
	s.mu.Lock()
	s.smOn = false
	s.mu.Unlock()
	s.setInactive(true)
	p := stanza.New(stanza.Presence, from, to, "", "")
	s.Send(p)
	s.Send(p) // replaces the held one
	check(s, len(p.Wire())+len(from.String()))
	s.setInactive(false)
	waitWriter(s)
	check(s, 0)

	s.mu.Lock()
	s.ended = true // end() without a handler
	s.mu.Unlock()
	srv.releaseAccount("alice@localhost", s.acct)
	if len(srv.accounts) != 0 {
		t.Fatalf("accounts left: %v", srv.accounts)
	}
}

// TestQueueBytesAccountShared: two sessions of one account share one
// counter; the one whose stanza passes AccountQueueBytes is cut.
func TestQueueBytesAccountShared(t *testing.T) {
	log := zap.NewNop()
	srv := New(Config{Domains: []string{"localhost"}, SendQueue: 1000, SendQueueBytes: 1000, AccountQueueBytes: 1500, MaxConns: -1},
		nil, router.NewTable(), log, log)
	block := make(chan struct{})
	defer close(block)
	s1 := testSession(srv, &fakeTransport{block: block})
	s2 := &Session{srv: srv, id: "s2", jid: jid.MustParse("alice@localhost/b"), tr: &fakeTransport{block: block},
		acct: srv.acquireAccount("alice@localhost")}
	if s1.acct != s2.acct {
		t.Fatal("two sessions of one account do not share its counter")
	}
	st := stanza.New(stanza.Message, jid.MustParse("bob@localhost/b"), s1.jid, "chat", "m")
	st.El.Append(element.New(stanza.NSClient, "body").SetText(strings.Repeat("y", 300)))
	n := len(st.Wire())
	for s1.acct.bytes.Load()+int64(n) <= 900 {
		s1.Send(st)
	}
	for i := 0; ; i++ {
		s2.mu.Lock()
		closing := s2.closing
		s2.mu.Unlock()
		if closing {
			break
		}
		if i > 10 {
			t.Fatal("account bound never cut the second session")
		}
		s2.Send(st)
	}
	s1.mu.Lock()
	defer s1.mu.Unlock()
	if s1.closing {
		t.Fatal("the first session was cut, not the one whose stanza passed the bound")
	}
	if s2.bytes > 1000 {
		t.Fatalf("second session cut at its own bound (%d bytes), not the account's", s2.bytes)
	}
}
