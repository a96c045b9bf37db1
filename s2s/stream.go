package s2s

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/palisade-im/palisade/server/element"
	"github.com/palisade-im/palisade/server/stanza"
)

// Namespaces of server-to-server streams.
const (
	nsStream     = "http://etherx.jabber.org/streams"
	nsStreams    = "urn:ietf:params:xml:ns:xmpp-streams"
	nsTLS        = "urn:ietf:params:xml:ns:xmpp-tls"
	nsSASL       = "urn:ietf:params:xml:ns:xmpp-sasl"
	nsDialback   = "jabber:server:dialback"
	nsDBFeature  = "urn:xmpp:features:dialback" // XEP-0220 stream feature
	nsServer     = stanza.NSServer
	nsClient     = stanza.NSClient
	streamHeader = `<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' version='1.0'`
)

// StreamError is an RFC 6120 section 4.9 stream error, sent before the
// stream closes.
type StreamError struct {
	Condition, Text string
}

func (e *StreamError) Error() string {
	if e.Text != "" {
		return "stream error " + e.Condition + ": " + e.Text
	}
	return "stream error " + e.Condition
}

func streamErr(cond, text string) *StreamError { return &StreamError{Condition: cond, Text: text} }

// header is a stream header read from the peer.
type header struct {
	from, to, id, version, ns string
	dialbackNS                bool // xmlns:db declared
}

// frame reads and writes one server-to-server stream over a TCP or TLS
// connection: the stream header, top-level elements, stream errors.
type frame struct {
	raw     net.Conn
	lc      *limitedConn
	r       *bufio.Reader
	dec     *element.Decoder
	max     int64
	limits  element.Limits
	wmu     sync.Mutex
	w       *bufio.Writer
	started bool // our header was written
	closed  bool // our </stream:stream> was written
	wtime   time.Duration
}

func newFrame(c net.Conn, max int64, l element.Limits, writeTimeout time.Duration) *frame {
	f := &frame{raw: c, max: max, limits: l, wtime: writeTimeout}
	f.reset(c)
	return f
}

// reset starts reading and writing afresh on c (after STARTTLS, or a
// stream restart after SASL when c is the same connection).
func (f *frame) reset(c net.Conn) {
	f.raw = c
	f.lc = &limitedConn{Conn: c}
	f.r = bufio.NewReaderSize(f.lc, 4096)
	f.dec = element.NewDecoder(f.r, "")
	f.dec.SetLimits(f.limits)
	f.w = bufio.NewWriterSize(c, 4096)
}

// limitedConn bounds what one top-level element may read: the reader
// stops at max plus the decoder's look-ahead, and the size is checked
// precisely after each element.
type limitedConn struct {
	net.Conn
	left int64
}

func (l *limitedConn) Read(p []byte) (int, error) {
	if l.left <= 0 {
		return 0, streamErr("policy-violation", "stanza too large")
	}
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.Conn.Read(p)
	l.left -= int64(n)
	return n, err
}

func (f *frame) setLimit(n int64) { f.lc.left = n }

// readHeader reads the peer's stream header.
func (f *frame) readHeader(deadline time.Time) (header, error) {
	_ = f.raw.SetReadDeadline(deadline)
	f.setLimit(f.max + 8192)
	for {
		tok, err := f.dec.Token()
		if err != nil {
			return header{}, classify(err)
		}
		switch t := tok.(type) {
		case xml.ProcInst:
			continue
		case xml.CharData:
			if len(bytes.TrimSpace(t)) > 0 {
				return header{}, streamErr("bad-format", "text before the stream header")
			}
		case xml.StartElement:
			if t.Name.Local != "stream" {
				return header{}, streamErr("bad-format", "expected a stream header")
			}
			if t.Name.Space != nsStream {
				return header{}, streamErr("invalid-namespace", "the stream namespace is "+nsStream)
			}
			var h header
			for _, a := range t.Attr {
				switch {
				case a.Name.Space == "" && a.Name.Local == "from":
					h.from = a.Value
				case a.Name.Space == "" && a.Name.Local == "to":
					h.to = a.Value
				case a.Name.Space == "" && a.Name.Local == "id":
					h.id = a.Value
				case a.Name.Space == "" && a.Name.Local == "version":
					h.version = a.Value
				case a.Name.Space == "" && a.Name.Local == "xmlns":
					h.ns = a.Value
				case a.Name.Space == "xmlns" && a.Name.Local == "db":
					h.dialbackNS = a.Value == nsDialback
				}
			}
			if h.ns != nsServer {
				return h, streamErr("invalid-namespace", "a server stream's default namespace is jabber:server")
			}
			return h, nil
		default:
			return header{}, streamErr("bad-format", "expected a stream header")
		}
	}
}

// next reads the next top-level element; io.EOF when the peer closed the
// stream (</stream:stream>) or the connection.
func (f *frame) next() (*element.Element, error) {
	for {
		f.setLimit(f.max + 8192)
		start := f.dec.InputOffset()
		tok, err := f.dec.Token()
		if err != nil {
			return nil, classify(err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			el, err := f.dec.ReadElement(t)
			if err != nil {
				return nil, classify(err)
			}
			if f.dec.InputOffset()-start > f.max {
				return nil, streamErr("policy-violation", "stanza too large")
			}
			return el, nil
		case xml.EndElement:
			return nil, io.EOF
		case xml.CharData:
			if len(bytes.TrimSpace(t)) > 0 {
				return nil, streamErr("bad-format", "text outside stanzas")
			}
		case xml.ProcInst:
			continue
		}
	}
}

// classify maps decoder and I/O errors to stream errors where the peer
// broke the protocol (RFC 6120 4.9.3).
func classify(err error) error {
	var se *StreamError
	if errors.As(err, &se) {
		return se
	}
	var syn *xml.SyntaxError
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.As(err, &syn) && strings.HasPrefix(syn.Msg, "unexpected EOF") {
		return io.EOF // the peer went away mid-stream
	}
	if cond, text, ok := element.StreamCondition(err); ok {
		return streamErr(cond, text)
	}
	return err
}

// writeHeader opens our side of the stream.
func (f *frame) writeHeader(from, to, id string) error {
	b := []byte(streamHeader)
	if from != "" {
		b = append(b, " from='"...)
		b = element.EscapeText(b, from)
		b = append(b, '\'')
	}
	if to != "" {
		b = append(b, " to='"...)
		b = element.EscapeText(b, to)
		b = append(b, '\'')
	}
	if id != "" {
		b = append(b, " id='"...)
		b = append(b, id...)
		b = append(b, '\'')
	}
	b = append(b, '>')
	f.wmu.Lock()
	f.started = true
	f.wmu.Unlock()
	return f.write(b)
}

// write writes b and flushes.
func (f *frame) write(b []byte) error { return f.writeElements([][]byte{b}) }

// writeElements writes several serialized elements with one flush.
func (f *frame) writeElements(elems [][]byte) error {
	f.wmu.Lock()
	defer f.wmu.Unlock()
	if f.closed {
		return net.ErrClosed
	}
	if f.wtime > 0 {
		_ = f.raw.SetWriteDeadline(time.Now().Add(f.wtime))
	}
	for _, e := range elems {
		if _, err := f.w.Write(e); err != nil {
			return err
		}
	}
	return f.w.Flush()
}

// writeElement serializes el in the jabber:server stream.
func (f *frame) writeElement(el *element.Element) error {
	return f.write(el.AppendTo(nil, nsServer))
}

// writeError sends a stream error and closes our side (RFC 6120 4.9.1.1:
// a stream is opened first when none was).
func (f *frame) writeError(se *StreamError) error {
	f.wmu.Lock()
	started := f.started
	f.wmu.Unlock()
	var b []byte
	if !started {
		b = append(b, streamHeader...)
		b = append(b, " id='"+streamID()+"'>"...) // RFC 6120 4.7.3: every response header has one
	}
	b = append(b, "<stream:error><"...)
	b = append(b, se.Condition...)
	b = append(b, " xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"...)
	if se.Text != "" {
		b = append(b, "<text xmlns='urn:ietf:params:xml:ns:xmpp-streams' xml:lang='en'>"...)
		b = element.EscapeText(b, se.Text)
		b = append(b, "</text>"...)
	}
	b = append(b, "</stream:error></stream:stream>"...)
	err := f.write(b)
	f.markClosed()
	return err
}

// writeClose closes our side of the stream.
func (f *frame) writeClose() error {
	err := f.write([]byte("</stream:stream>"))
	f.markClosed()
	return err
}

func (f *frame) markClosed() {
	f.wmu.Lock()
	f.closed = true
	f.wmu.Unlock()
}

// streamID returns a new random stream id (RFC 6120 4.7.3: unpredictable,
// as dialback keys depend on it).
func streamID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// toClientNS moves a stanza read from a jabber:server stream into
// jabber:client, the namespace the rest of the server keeps stanzas in
// (RFC 6120 4.8.3: the two are the same stanzas on different streams).
func toClientNS(el *element.Element) {
	if el.Space == nsServer {
		el.Space = nsClient
	}
	for _, n := range el.Nodes {
		if n.El != nil {
			toClientNS(n.El)
		}
	}
}
