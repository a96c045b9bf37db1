package c2s

import (
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/palisade-im/palisade/server/element"
	"github.com/palisade-im/palisade/server/stanza"
	"go.uber.org/zap"
	"mellium.im/xmpp/jid"
)

// benchMessage is a 200-byte-body chat message as clients send it.
var benchMessage = "<message to='bob@localhost/r' type='chat' id='m1'><body>" + strings.Repeat("x", 200) + "</body></message>"

// loopConn is a net.Conn whose reads return a stream header and then the
// same message forever; writes are discarded.
type loopConn struct {
	net.Conn
	head bool
	msg  []byte
	off  int
}

func (c *loopConn) Read(p []byte) (int, error) {
	if !c.head {
		c.head = true
		return copy(p, "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0' to='localhost'>"), nil
	}
	n := 0
	for n < len(p) {
		k := copy(p[n:], c.msg[c.off:])
		n += k
		c.off = (c.off + k) % len(c.msg)
	}
	return n, nil
}

func (c *loopConn) Write(p []byte) (int, error)      { return len(p), nil }
func (c *loopConn) SetReadDeadline(time.Time) error  { return nil }
func (c *loopConn) SetWriteDeadline(time.Time) error { return nil }
func (c *loopConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }

// BenchmarkReadStanza: decode one message from the stream, parse it as a
// stanza and stamp its 'from' (the reader's share of the hot path).
func BenchmarkReadStanza(b *testing.B) {
	tr := newTCPTransport(&loopConn{msg: []byte(benchMessage)}, nil, bounds{bytes: 1 << 16, limits: element.Limits{MaxNodes: 8192}}, 0)
	if ev, err := tr.next(); err != nil || ev.kind != evOpen {
		b.Fatalf("stream header: %v %v", ev.kind, err)
	}
	from := jid.MustParse("alice@localhost/a")
	b.SetBytes(int64(len(benchMessage)))
	b.ReportAllocs()
	for b.Loop() {
		ev, err := tr.next()
		if err != nil {
			b.Fatal(err)
		}
		ev.el.RemoveAttr("from")
		st, err := stanza.Parse(ev.el)
		if err != nil {
			b.Fatal(err)
		}
		st.SetFrom(from)
	}
}

// countTransport is a transport that counts what the writer hands it.
type countTransport struct {
	tcpTransport
	mu    sync.Mutex
	elems int
	cond  *sync.Cond
}

func (t *countTransport) write(elems [][]byte) error {
	t.mu.Lock()
	t.elems += len(elems)
	t.cond.Broadcast()
	t.mu.Unlock()
	return nil
}

// BenchmarkSendWrite: serialize a routed stanza into a session's queue and
// have its writer take it (the delivery share of the hot path, without the
// network write itself).
func BenchmarkSendWrite(b *testing.B) {
	tr := &countTransport{}
	tr.cond = sync.NewCond(&tr.mu)
	srv := &Server{cfg: Config{SendQueue: 1 << 30}, log: zap.NewNop()}
	s := &Session{srv: srv, jid: jid.MustParse("bob@localhost/r"), tr: tr}
	el, err := element.Parse([]byte(benchMessage), stanza.NSClient)
	if err != nil {
		b.Fatal(err)
	}
	st, err := stanza.Parse(el)
	if err != nil {
		b.Fatal(err)
	}
	st.SetFrom(jid.MustParse("alice@localhost/a"))
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		s.Send(st)
		n++
	}
	tr.mu.Lock()
	for tr.elems < n {
		tr.cond.Wait()
	}
	tr.mu.Unlock()
}
