package c2s

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/palisade-im/palisade/server/element"
	"golang.org/x/net/websocket"
)

// wsTransport is RFC 7395 XMPP over WebSocket: one element per message,
// <open/> and <close/> framing instead of the stream tags.
type wsTransport struct {
	ws     *websocket.Conn
	remote string
	isTLS  bool
	max    int64
	limits element.Limits
	wtime  time.Duration
	wmu    sync.Mutex

	mu     sync.Mutex
	idle   time.Duration
	ping   time.Duration
	onIdle func()

	// bucket is the session's byte rate (nil: none): each message is
	// paid for before it is handled, so the next one waits to be read.
	bucket atomic.Pointer[readBucket]
}

func newWSTransport(ws *websocket.Conn, remote string, isTLS bool, b bounds, writeTimeout time.Duration) *wsTransport {
	t := &wsTransport{ws: ws, remote: remote, isTLS: isTLS, wtime: writeTimeout}
	t.setBounds(b)
	return t
}

// setBounds is called by the connection's own reader, between messages.
func (t *wsTransport) setBounds(b bounds) {
	t.max, t.limits = b.bytes, b.limits
	t.ws.MaxPayloadBytes = int(b.bytes)
}

func (t *wsTransport) restart() {}

func (t *wsTransport) next() (event, error) {
	t.mu.Lock()
	idle, ping, onIdle := t.idle, t.ping, t.onIdle
	t.mu.Unlock()
	pinged := false
	var msg []byte
	for {
		if idle > 0 {
			d := idle
			if pinged {
				d = ping
			}
			_ = t.ws.SetReadDeadline(time.Now().Add(d))
		}
		err := websocket.Message.Receive(t.ws, &msg)
		if err == nil {
			break
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() && idle > 0 {
			if pinged || onIdle == nil {
				return event{}, errTimeout
			}
			pinged = true
			onIdle()
			continue
		}
		if errors.Is(err, websocket.ErrFrameTooLarge) {
			return event{}, errTooBig
		}
		return event{}, err
	}
	if b := t.bucket.Load(); b != nil {
		if err := b.take(len(msg)); err != nil {
			return event{}, err
		}
	}
	if len(bytes.TrimSpace(msg)) == 0 {
		return t.next() // keepalive
	}
	// Every message is a document of its own (RFC 7395 3.3.3); elements
	// that declare no namespace are in jabber:client.
	d := element.NewDecoder(bytes.NewReader(msg), "jabber:client")
	d.SetLimits(t.limits)
	var el *element.Element
	for el == nil {
		tok, err := d.Token()
		if err != nil {
			return event{}, classify(err)
		}
		switch tk := tok.(type) {
		case xml.StartElement:
			if el, err = d.ReadElement(tk); err != nil {
				return event{}, classify(err)
			}
		case xml.CharData:
			if len(bytes.TrimSpace(tk)) > 0 {
				return event{}, errStream("not-well-formed", frameError.Error())
			}
		}
	}
	// Nothing but white space may follow the element.
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return event{}, classify(err)
		}
		if cd, ok := tok.(xml.CharData); ok && len(bytes.TrimSpace(cd)) == 0 {
			continue
		}
		return event{}, errStream("not-well-formed", frameError.Error())
	}
	if el.Space == nsFraming {
		switch el.Local {
		case "open":
			return event{kind: evOpen, to: el.Attr("to"), version: el.Attr("version"), lang: el.Lang(), ns: "jabber:client"}, nil
		case "close":
			return event{kind: evClose}, nil
		}
	}
	return event{kind: evElement, el: el}, nil
}

func (t *wsTransport) sendMsg(b []byte) error {
	if t.wtime > 0 {
		_ = t.ws.SetWriteDeadline(time.Now().Add(t.wtime))
	}
	return websocket.Message.Send(t.ws, string(b))
}

func (t *wsTransport) writeOpen(from, id string) error {
	t.wmu.Lock()
	defer t.wmu.Unlock()
	b := []byte(`<open xmlns="urn:ietf:params:xml:ns:xmpp-framing" version="1.0" xml:lang="en" from="`)
	b = element.EscapeText(b, from)
	b = append(b, `" id="`...)
	b = append(b, id...)
	b = append(b, `"/>`...)
	return t.sendMsg(b)
}

func (t *wsTransport) write(elems [][]byte) error {
	t.wmu.Lock()
	defer t.wmu.Unlock()
	for _, e := range elems {
		if err := t.sendMsg(withClientNS(e)); err != nil {
			return err
		}
	}
	return nil
}

func (t *wsTransport) writeFeatures(children []*element.Element) error {
	b := []byte(`<stream:features xmlns:stream="http://etherx.jabber.org/streams">`)
	for _, c := range children {
		b = c.AppendTo(b, "")
	}
	b = append(b, "</stream:features>"...)
	t.wmu.Lock()
	defer t.wmu.Unlock()
	return t.sendMsg(b)
}

func (t *wsTransport) writeError(se *streamError) error {
	b := []byte(`<stream:error xmlns:stream="http://etherx.jabber.org/streams">`)
	b = append(b, '<')
	b = append(b, se.cond...)
	b = append(b, ` xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>`...)
	if se.text != "" {
		b = append(b, `<text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>`...)
		b = element.EscapeText(b, se.text)
		b = append(b, "</text>"...)
	}
	b = append(b, "</stream:error>"...)
	t.wmu.Lock()
	defer t.wmu.Unlock()
	if err := t.sendMsg(b); err != nil {
		return err
	}
	return t.sendMsg([]byte(`<close xmlns="urn:ietf:params:xml:ns:xmpp-framing"/>`))
}

func (t *wsTransport) writeClose() error {
	t.wmu.Lock()
	defer t.wmu.Unlock()
	return t.sendMsg([]byte(`<close xmlns="urn:ietf:params:xml:ns:xmpp-framing"/>`))
}

func (t *wsTransport) close() error {
	t.bucket.Load().close()
	return t.ws.Close()
}

func (t *wsTransport) lingerClose() error { return t.close() }

func (t *wsTransport) limitRead(b *readBucket) { t.bucket.Store(b) }

func (t *wsTransport) setIdle(idle, ping time.Duration, onIdle func()) {
	t.mu.Lock()
	t.idle, t.ping, t.onIdle = idle, ping, onIdle
	t.mu.Unlock()
}

func (t *wsTransport) remoteAddr() string { return t.remote }
func (t *wsTransport) secure() bool       { return t.isTLS }

// wait returns at once: the WebSocket reader waits in next.
func (t *wsTransport) wait() error { return nil }

// ready cannot tell without blocking.
func (t *wsTransport) ready() bool { return false }
