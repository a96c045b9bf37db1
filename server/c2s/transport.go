package c2s

import (
	"bytes"
	"crypto/tls"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/palisade-im/palisade/server/element"
	"github.com/palisade-im/palisade/server/stanza"
)

// Namespaces of the stream layer.
const (
	nsStream  = "http://etherx.jabber.org/streams"
	nsStreams = "urn:ietf:params:xml:ns:xmpp-streams"
	nsFraming = "urn:ietf:params:xml:ns:xmpp-framing"
	nsTLS     = "urn:ietf:params:xml:ns:xmpp-tls"
	nsSASL    = "urn:ietf:params:xml:ns:xmpp-sasl"
	nsBind    = "urn:ietf:params:xml:ns:xmpp-bind"
	nsSession = "urn:ietf:params:xml:ns:xmpp-session"
	nsSM      = "urn:xmpp:sm:3"
	nsCSI     = "urn:xmpp:csi:0"
	nsSASLCB  = "urn:xmpp:sasl-cb:0"
	nsPing    = "urn:xmpp:ping"
	// nsRegister is XEP-0077's namespace: a registration form handed out
	// before login extends the login deadline (registrationStarted).
	nsRegister = "jabber:iq:register"
)

// eventKind is what a transport read produced.
type eventKind uint8

const (
	evOpen eventKind = iota + 1
	evElement
	evClose
)

// event is one unit read from a client stream.
type event struct {
	kind eventKind
	el   *element.Element // evElement
	// evOpen attributes
	to, version, lang, ns string
}

// streamError is a stream-level error to send before closing (RFC 6120 4.9).
type streamError struct {
	cond, text string
}

func (e *streamError) Error() string {
	if e.text != "" {
		return "stream error " + e.cond + ": " + e.text
	}
	return "stream error " + e.cond
}

func errStream(cond, text string) *streamError { return &streamError{cond: cond, text: text} }

// transport is one client connection's framing: TCP stream or WebSocket.
type transport interface {
	// next returns the next stream event. Errors are *streamError for
	// protocol violations, or I/O errors.
	next() (event, error)
	// restart prepares for a new stream header on the same connection
	// (after SASL success).
	restart()
	// writeOpen writes the server's stream header.
	writeOpen(from, id string) error
	// frame appends one serialized top-level element (written with
	// parent namespace jabber:client) to buf in the transport's framing.
	// For WebSocket every element is a message on its own; buf is then
	// written as is by write.
	write(elems [][]byte) error
	// writeFeatures writes <stream:features/>.
	writeFeatures(children []*element.Element) error
	// writeError writes a stream error and the closing tag.
	writeError(se *streamError) error
	// writeClose writes the closing tag.
	writeClose() error
	// close closes the connection.
	close() error
	// lingerClose closes after a stream error caused by the peer: it ends
	// our side and discards what the peer still sends for a moment, so the
	// error is not lost to a TCP reset (unread data on close).
	lingerClose() error
	// setBounds sets what one element read from now on may cost: smaller
	// before authentication than after.
	setBounds(b bounds)
	// setDeadline bounds how long reads may wait: the idle reader pings
	// first, then fails.
	setIdle(idle, ping time.Duration, onIdle func())
	// wait blocks, with the idle timeouts, until next has something to
	// read, in a shallow stack where it can tell (see recordConn); else it
	// returns at once and next waits.
	wait() error
	// ready reports whether next can return without waiting for the
	// client: bytes are buffered, or the socket has some (checked without
	// blocking). False when it cannot tell.
	ready() bool
	remoteAddr() string
	secure() bool
	// limitRead puts reads from now on under b (the session's byte rate).
	limitRead(b *readBucket)
}

// idleConn wraps a net.Conn so that read timeouts never reach the XML
// decoder (whose errors are sticky): after idle it calls onIdle once, then
// waits ping more before failing with a connection-timeout stream error.
type idleConn struct {
	net.Conn
	mu     sync.Mutex
	idle   time.Duration
	ping   time.Duration
	onIdle func()
	// limit: bytes that may still be read before the current stanza is
	// too large (reset by the reader at stanza boundaries); <0 means none.
	limit int64
	// bucket paces reads (nil: no byte rate); set before the read loop
	// starts, read by the reader only.
	bucket *readBucket
}

var errTimeout = errStream("connection-timeout", "no traffic")

func (c *idleConn) Read(p []byte) (int, error) {
	if c.bucket != nil && len(p) > c.bucket.burst {
		p = p[:c.bucket.burst]
	}
	c.mu.Lock()
	idle, ping, onIdle := c.idle, c.ping, c.onIdle
	c.mu.Unlock()
	var n int
	var err error
	if werr := idleWait(c.Conn.SetReadDeadline, idle, ping, onIdle, func() bool {
		n, err = c.Conn.Read(p)
		var ne net.Error
		return n == 0 && err != nil && errors.As(err, &ne) && ne.Timeout()
	}); werr != nil {
		return 0, werr
	}
	if n > 0 {
		if c.bucket != nil {
			if berr := c.bucket.take(n); berr != nil {
				return 0, berr
			}
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.limit >= 0 {
			c.limit -= int64(n)
			if c.limit < 0 {
				return n, errTooBig
			}
		}
		return n, nil
	}
	return n, err
}

// idleWait applies the idle policy to a read attempt: each attempt gets a
// read deadline of idle; after the first timeout onIdle is called once
// (the client is pinged) and the next attempt gets ping; a timeout after
// that is errTimeout. attempt reports whether it timed out. Without an
// idle time there is no deadline and one attempt.
func idleWait(setDeadline func(time.Time) error, idle, ping time.Duration, onIdle func(), attempt func() (timedOut bool)) error {
	pinged := false
	for {
		if idle > 0 {
			d := idle
			if pinged {
				d = ping
			}
			_ = setDeadline(time.Now().Add(d))
		}
		if !attempt() || idle <= 0 {
			return nil
		}
		if pinged || onIdle == nil {
			return errTimeout
		}
		pinged = true
		onIdle()
	}
}

func (c *idleConn) setIdle(idle, ping time.Duration, onIdle func()) {
	c.mu.Lock()
	c.idle, c.ping, c.onIdle = idle, ping, onIdle
	c.mu.Unlock()
}

func (c *idleConn) settings() (idle, ping time.Duration, onIdle func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.idle, c.ping, c.onIdle
}

func (c *idleConn) setLimit(n int64) {
	c.mu.Lock()
	c.limit = n
	c.mu.Unlock()
}

var errTooBig = errStream("policy-violation", "stanza too large")

// bounds are what one element read from a client may cost: its bytes, and
// its depth and nodes (elements and attributes), which bound the memory
// the tree takes to a small multiple of the bytes read.
type bounds struct {
	bytes  int64
	limits element.Limits
}

// Bounds before authentication: a stream that has not logged in may only
// send small, shallow elements (SASL, STARTTLS, a registration form).
const (
	preauthDepth = 10
	preauthNodes = 256
)

// preauthBounds and authBounds are the bounds before and after SASL.
func (cfg *Config) preauthBounds() bounds {
	b := cfg.PreauthStanza
	if b <= 0 || b > cfg.MaxStanza {
		b = cfg.MaxStanza
	}
	return bounds{bytes: b, limits: element.Limits{MaxDepth: preauthDepth, MaxNodes: preauthNodes}}
}

func (cfg *Config) authBounds() bounds {
	return bounds{bytes: cfg.MaxStanza, limits: element.Limits{MaxNodes: cfg.MaxElements}}
}

// tcpTransport is an RFC 6120 XML stream over TCP (plain until STARTTLS,
// or direct TLS).
type tcpTransport struct {
	conn    *idleConn
	rmu     sync.Mutex  // guards raw: timers and writers read it during STARTTLS
	raw     net.Conn    // the TCP or TLS connection
	rec     *recordConn // under TLS; nil before it
	lazy    *lazyReader
	dec     *element.Decoder
	max     int64
	limits  element.Limits
	tls     bool
	direct  bool // direct TLS (XEP-0368), not STARTTLS
	wmu     sync.Mutex
	wtime   time.Duration
	started bool
	// bucket is the session's byte rate, closed with the transport so
	// that a reader sleeping in it wakes.
	bucket atomic.Pointer[readBucket]
}

// newTCPTransport frames a connection; rec is the recordConn under c when
// c is a direct TLS connection, else nil.
func newTCPTransport(c net.Conn, rec *recordConn, b bounds, writeTimeout time.Duration) *tcpTransport {
	t := &tcpTransport{raw: c, rec: rec, tls: rec != nil, direct: rec != nil, wtime: writeTimeout}
	t.conn = &idleConn{Conn: c, limit: -1}
	t.newDecoder()
	t.setBounds(b)
	return t
}

func (t *tcpTransport) newDecoder() {
	t.lazy = &lazyReader{r: t.conn}
	t.dec = element.NewDecoder(t.lazy, "")
	t.dec.SetLimits(t.limits)
}

func (t *tcpTransport) setBounds(b bounds) {
	t.max, t.limits = b.bytes, b.limits
	t.dec.SetLimits(b.limits)
}

// writeBuffers lend the buffers that join a batch into one write, so an
// idle session keeps none.
var writeBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// burstBuffers lend read buffers to sessions that are receiving a burst.
var burstBuffers = sync.Pool{New: func() any { return new([4096]byte) }}

// lazyReader is the XML decoder's buffered reader (io.ByteReader, so the
// decoder adds no bufio of its own). A session waiting for its client
// holds only the small inline buffer; a read that fills it borrows a 4 KiB
// buffer from burstBuffers for the following reads and gives it back once
// a read no longer fills it. bufio would keep 4 KiB for every idle session.
type lazyReader struct {
	r     io.Reader
	small [256]byte
	burst *[4096]byte
	buf   []byte // unread bytes of the last read
	full  bool   // the last read filled its buffer: more is likely queued
	err   error
	// head holds the connection's first bytes, to tell a UTF-16 or
	// UTF-32 stream from bad XML (RFC 6120 11.6).
	head    [4]byte
	started bool
}

// drained reports that every byte read so far was consumed and the last
// read did not fill its buffer, so the layer below holds nothing more.
func (l *lazyReader) drained() bool { return len(l.buf) == 0 && !l.full && l.err == nil }

// notUTF8 reports a stream that starts like UTF-16 or UTF-32: a byte
// order mark, or '<' next to a zero byte.
func (l *lazyReader) notUTF8() bool {
	h := l.head
	return h[0] == 0xFE && h[1] == 0xFF || h[0] == 0xFF && h[1] == 0xFE || h[0] == 0 || h[0] == '<' && h[1] == 0
}

func (l *lazyReader) ReadByte() (byte, error) {
	for len(l.buf) == 0 {
		if l.err != nil {
			return 0, l.err
		}
		l.fill()
	}
	b := l.buf[0]
	l.buf = l.buf[1:]
	return b, nil
}

func (l *lazyReader) Read(p []byte) (int, error) {
	for len(l.buf) == 0 {
		if l.err != nil {
			return 0, l.err
		}
		l.fill()
	}
	n := copy(p, l.buf)
	l.buf = l.buf[n:]
	return n, nil
}

func (l *lazyReader) fill() {
	var dst []byte
	if l.full {
		if l.burst == nil {
			l.burst = burstBuffers.Get().(*[4096]byte)
		}
		dst = l.burst[:]
	} else {
		if l.burst != nil {
			burstBuffers.Put(l.burst)
			l.burst = nil
		}
		dst = l.small[:]
	}
	n, err := l.r.Read(dst)
	if !l.started && n > 0 {
		l.started = true
		copy(l.head[:], dst[:n])
	}
	l.buf = dst[:n]
	l.full = n == len(dst)
	l.err = err
}

// restart forgets the stream the client opened before SASL: the new
// header follows on the same connection (RFC 6120 6.4.6).
func (t *tcpTransport) restart() { t.dec.Reset() }

// upgrade replaces the connection after STARTTLS; rec is under c.
func (t *tcpTransport) upgrade(c net.Conn, rec *recordConn) {
	t.wmu.Lock()
	defer t.wmu.Unlock()
	t.rmu.Lock()
	t.raw = c
	t.rmu.Unlock()
	t.rec = rec
	t.tls = true
	t.conn = &idleConn{Conn: c, limit: -1, idle: t.conn.idle, ping: t.conn.ping, onIdle: t.conn.onIdle}
	t.newDecoder()
}

func (t *tcpTransport) next() (event, error) {
	for {
		// Bound what one stanza may read; the decoder buffers up to 4 KiB
		// ahead, so the precise check is below after the element.
		t.conn.setLimit(t.max + 8192)
		start := t.dec.InputOffset()
		tok, err := t.dec.Token()
		if err != nil {
			if t.lazy.notUTF8() {
				return event{}, errStream("unsupported-encoding", "only UTF-8 is supported")
			}
			return event{}, classifyTCP(err)
		}
		switch tk := tok.(type) {
		case xml.StartElement:
			if t.dec.Depth() == 1 && (tk.Name.Space != nsStream || tk.Name.Local != "stream") {
				// Outside a stream only its header may come.
				if tk.Name.Local == "stream" {
					return event{}, errStream("invalid-namespace", "the stream namespace is "+nsStream)
				}
				return event{}, errStream("bad-format", "expected a stream header")
			}
			if tk.Name.Space == nsStream && tk.Name.Local == "stream" {
				ev := event{kind: evOpen}
				for _, a := range tk.Attr {
					switch {
					case a.Name.Space == "" && a.Name.Local == "to":
						ev.to = a.Value
					case a.Name.Space == "" && a.Name.Local == "version":
						ev.version = a.Value
					case a.Name.Space == "" && a.Name.Local == "xmlns":
						ev.ns = a.Value
					case a.Name.Local == "lang":
						ev.lang = a.Value
					}
				}
				return ev, nil
			}
			el, err := t.dec.ReadElement(tk)
			if err != nil {
				return event{}, classifyTCP(err)
			}
			if t.dec.InputOffset()-start > t.max {
				return event{}, errTooBig
			}
			return event{kind: evElement, el: el}, nil
		case xml.EndElement:
			return event{kind: evClose}, nil
		case xml.CharData:
			if len(bytes.TrimSpace(tk)) > 0 {
				return event{}, errStream("bad-format", "text outside stanzas")
			}
		case xml.ProcInst:
			continue // the XML declaration, also sent again on restarts
		}
	}
}

// classifyTCP is classify for a TCP stream, where the peer going away
// mid-stream (or mid-stanza) is a lost connection, which may be resumed
// (XEP-0198), not a not-well-formed stream.
func classifyTCP(err error) error {
	var syn *xml.SyntaxError
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.As(err, &syn) && strings.HasPrefix(syn.Msg, "unexpected EOF") {
		return io.EOF
	}
	return classify(err)
}

// classify maps decoder and I/O errors to stream errors where the peer
// broke the protocol (RFC 6120 4.9.3).
func classify(err error) error {
	var se *streamError
	if errors.As(err, &se) {
		return se
	}
	if cond, text, ok := element.StreamCondition(err); ok {
		return errStream(cond, text)
	}
	return err
}

// rawConn returns the current TCP or TLS connection.
func (t *tcpTransport) rawConn() net.Conn {
	t.rmu.Lock()
	defer t.rmu.Unlock()
	return t.raw
}

func (t *tcpTransport) send(b []byte) error {
	raw := t.rawConn()
	if t.wtime > 0 {
		_ = raw.SetWriteDeadline(time.Now().Add(t.wtime))
	}
	_, err := raw.Write(b)
	return err
}

func (t *tcpTransport) writeOpen(from, id string) error {
	t.wmu.Lock()
	defer t.wmu.Unlock()
	t.started = true
	b := []byte(`<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0' xml:lang='en' from='`)
	b = element.EscapeText(b, from)
	b = append(b, "' id='"...)
	b = append(b, id...)
	b = append(b, "'>"...)
	return t.send(b)
}

func (t *tcpTransport) write(elems [][]byte) error {
	t.wmu.Lock()
	defer t.wmu.Unlock()
	if len(elems) == 1 {
		return t.send(elems[0])
	}
	bp := writeBuffers.Get().(*[]byte)
	buf := (*bp)[:0]
	for _, e := range elems {
		buf = append(buf, e...)
	}
	err := t.send(buf)
	if cap(buf) <= 64<<10 {
		*bp = buf[:0]
		writeBuffers.Put(bp)
	}
	return err
}

func (t *tcpTransport) writeFeatures(children []*element.Element) error {
	b := []byte("<stream:features>")
	for _, c := range children {
		b = c.AppendTo(b, stanza.NSClient)
	}
	b = append(b, "</stream:features>"...)
	return t.write([][]byte{b})
}

func streamErrorBytes(b []byte, se *streamError) []byte {
	b = append(b, "<stream:error>"...)
	b = append(b, '<')
	b = append(b, se.cond...)
	b = append(b, ` xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>`...)
	if se.text != "" {
		b = append(b, `<text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>`...)
		b = element.EscapeText(b, se.text)
		b = append(b, "</text>"...)
	}
	return append(b, "</stream:error>"...)
}

func (t *tcpTransport) writeError(se *streamError) error {
	t.wmu.Lock()
	started := t.started
	t.wmu.Unlock()
	var b []byte
	if !started {
		// RFC 6120 4.9.1.1: open the stream before the error.
		b = append(b, `<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>`...)
	}
	b = streamErrorBytes(b, se)
	b = append(b, "</stream:stream>"...)
	return t.write([][]byte{b})
}

func (t *tcpTransport) writeClose() error {
	return t.write([][]byte{[]byte("</stream:stream>")})
}

func (t *tcpTransport) close() error {
	t.bucket.Load().close()
	return t.rawConn().Close()
}

func (t *tcpTransport) limitRead(b *readBucket) {
	t.conn.bucket = b
	t.bucket.Store(b)
}

// Bounds of lingerClose.
const (
	lingerTime  = time.Second
	lingerBytes = 1 << 20
)

func (t *tcpTransport) lingerClose() error {
	t.bucket.Load().close()
	raw := t.rawConn()
	base := raw
	if tc, ok := raw.(*tls.Conn); ok {
		base = tc.NetConn()
	}
	if rc, ok := base.(*recordConn); ok {
		base = rc.Conn
	}
	if tcp, ok := base.(*net.TCPConn); ok {
		_ = tcp.CloseWrite()
		_ = tcp.SetReadDeadline(time.Now().Add(lingerTime))
		_, _ = io.CopyN(io.Discard, tcp, lingerBytes)
	}
	return raw.Close()
}

func (t *tcpTransport) setIdle(idle, ping time.Duration, onIdle func()) {
	t.conn.setIdle(idle, ping, onIdle)
}

func (t *tcpTransport) ready() bool {
	if !t.lazy.drained() {
		return true
	}
	return t.rec != nil && t.rec.poll()
}

func (t *tcpTransport) wait() error {
	if t.rec == nil || !t.lazy.drained() {
		return nil
	}
	return t.rec.waitIdle(t.conn.settings())
}

func (t *tcpTransport) remoteAddr() string { return t.rawConn().RemoteAddr().String() }
func (t *tcpTransport) secure() bool       { return t.tls }

// withClientNS returns a top-level element serialized for jabber:client
// with the xmlns attribute made explicit (WebSocket framing, RFC 7395 3.3.3).
func withClientNS(b []byte) []byte {
	if len(b) < 2 || b[0] != '<' || bytes.HasPrefix(b[1:], []byte("stream:")) {
		return b
	}
	end := bytes.IndexAny(b, " />")
	if end < 0 {
		return b
	}
	// Elements outside jabber:client already carry their xmlns first.
	if bytes.HasPrefix(b[end:], []byte(` xmlns="`)) || bytes.HasPrefix(b[end:], []byte(` xmlns='`)) {
		return b
	}
	out := make([]byte, 0, len(b)+24)
	out = append(out, b[:end]...)
	out = append(out, ` xmlns="jabber:client"`...)
	return append(out, b[end:]...)
}

// frameError is returned for a WebSocket message that is not one element.
var frameError = fmt.Errorf("c2s: websocket message is not a single XML element")
