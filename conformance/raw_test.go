package conformance

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// rawConn is a hand-driven client stream over direct TLS, for writing bytes
// no real client would send.
type rawConn struct {
	t    *testing.T
	name string
	conn *tls.Conn
	r    *bufio.Reader
	dec  *xml.Decoder
	JID  string
}

// element is any XML element, kept with its inner XML.
type element struct {
	XMLName xml.Name
	Attrs   []xml.Attr `xml:",any,attr"`
	Inner   string     `xml:",innerxml"`
}

func (e *element) attr(name string) string {
	for _, a := range e.Attrs {
		if a.Name.Local == name {
			return a.Value
		}
	}
	return ""
}

const streamHeader = `<?xml version='1.0'?><stream:stream to='localhost' version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>`

// dialRaw connects to the direct TLS port, logs in with PLAIN and binds a
// resource.
func dialRaw(t *testing.T, s *Server, name, user, password, resource string) *rawConn {
	t.Helper()
	pem, err := os.ReadFile(s.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	d := &net.Dialer{Timeout: 5 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", s.DirectTLS, &tls.Config{RootCAs: pool, ServerName: Domain})
	if err != nil {
		t.Fatalf("%s: dial: %v", name, err)
	}
	c := &rawConn{t: t, name: name, conn: conn, r: bufio.NewReader(conn)}
	t.Cleanup(func() { conn.Close() })

	c.startStream()
	c.expect("features", c.next())
	cred := base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + password))
	c.send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>` + cred + `</auth>`)
	c.expect("success", c.next())
	c.startStream()
	c.expect("features", c.next())
	c.send(`<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>` + resource + `</resource></bind></iq>`)
	res := c.next()
	c.expect("iq", res)
	if res.attr("type") != "result" {
		t.Fatalf("%s: bind failed: %s", name, res.Inner)
	}
	var bind struct {
		JID string `xml:"bind>jid"`
	}
	if err := xml.Unmarshal([]byte("<x>"+res.Inner+"</x>"), &bind); err != nil || bind.JID == "" {
		t.Fatalf("%s: bind result %q: %v", name, res.Inner, err)
	}
	c.JID = bind.JID
	return c
}

func (c *rawConn) startStream() {
	c.t.Helper()
	c.send(streamHeader)
	c.dec = xml.NewDecoder(c.r)
	for {
		tok, err := c.token()
		if err != nil {
			c.t.Fatalf("%s: reading stream header: %v", c.name, err)
		}
		if se, ok := tok.(xml.StartElement); ok {
			if se.Name.Local != "stream" {
				c.t.Fatalf("%s: want stream header, got <%s>", c.name, se.Name.Local)
			}
			return
		}
	}
}

func (c *rawConn) send(s string) {
	c.t.Helper()
	c.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c.conn, s); err != nil {
		c.t.Fatalf("%s: write: %v", c.name, err)
	}
}

func (c *rawConn) token() (xml.Token, error) {
	c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	return c.dec.Token()
}

// nextErr reads the next top-level element. It returns io.EOF when the
// server closes the stream (</stream:stream> or end of the connection).
func (c *rawConn) nextErr() (*element, error) {
	for {
		tok, err := c.token()
		if err != nil {
			return nil, err
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			var e element
			if err := c.dec.DecodeElement(&e, &tok); err != nil {
				return nil, err
			}
			return &e, nil
		case xml.EndElement:
			return nil, io.EOF
		}
	}
}

func (c *rawConn) next() *element {
	c.t.Helper()
	e, err := c.nextErr()
	if err != nil {
		c.t.Fatalf("%s: read: %v", c.name, err)
	}
	return e
}

func (c *rawConn) expect(local string, e *element) {
	c.t.Helper()
	if e.XMLName.Local != local {
		c.t.Fatalf("%s: want <%s>, got <%s xmlns=%q>%s", c.name, local, e.XMLName.Local, e.XMLName.Space, e.Inner)
	}
}

// expectStreamError reads until a stream error arrives, returns its
// condition, and checks that the server then closes the stream and the
// connection.
func (c *rawConn) expectStreamError() string {
	c.t.Helper()
	for {
		e, err := c.nextErr()
		if err != nil {
			c.t.Fatalf("%s: stream ended without a stream error: %v", c.name, err)
		}
		if e.XMLName.Local != "error" || e.XMLName.Space != "http://etherx.jabber.org/streams" {
			continue // stanzas already on the way
		}
		var cond element
		if err := xml.Unmarshal([]byte("<x>"+e.Inner+"</x>"), &struct {
			Children []element `xml:",any"`
		}{}); err != nil {
			c.t.Fatalf("%s: stream error %q: %v", c.name, e.Inner, err)
		}
		d := xml.NewDecoder(strings.NewReader(e.Inner))
		for {
			tok, err := d.Token()
			if err != nil {
				break
			}
			if se, ok := tok.(xml.StartElement); ok && se.Name.Space == "urn:ietf:params:xml:ns:xmpp-streams" && se.Name.Local != "text" {
				cond.XMLName = se.Name
				break
			}
		}
		// The server must close the stream and the connection.
		deadline := time.Now().Add(5 * time.Second)
		for {
			_, err := c.nextErr()
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() || time.Now().After(deadline) {
					c.t.Errorf("%s: connection still open 10s after the stream error", c.name)
				}
				break
			}
		}
		c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.r.ReadByte(); err == nil {
			c.t.Errorf("%s: bytes after the stream error and close", c.name)
		}
		return cond.XMLName.Local
	}
}

// roundTrip sends a message to the connection's own full JID and waits for
// it, failing on anything over the limit seen on the way.
func (c *rawConn) roundTrip(body string) {
	c.t.Helper()
	c.send(fmt.Sprintf(`<message to='%s' type='chat' id='rt'><body>%s</body></message>`, c.JID, body))
	for {
		e := c.next()
		if len(e.Inner) > MaxStanzaBytes {
			c.t.Errorf("%s: received a %d-byte element <%s>", c.name, len(e.Inner), e.XMLName.Local)
		}
		if e.XMLName.Local == "message" && strings.Contains(e.Inner, "<body>"+body+"</body>") {
			return
		}
	}
}

func testBadStream(t *testing.T, offending, wantCond string) {
	s := newServer(t)
	bystander := dialRaw(t, s, "bob (bystander)", "bob", accounts["bob"], "bystander")
	bad := dialRaw(t, s, "alice (offender)", "alice", accounts["alice"], "offender")
	other := dialRaw(t, s, "alice (second session)", "alice", accounts["alice"], "second")
	bystander.roundTrip("before")

	bad.send(offending)
	if cond := bad.expectStreamError(); cond != wantCond {
		t.Errorf("stream error condition %q, want %q", cond, wantCond)
	}
	// Everyone else keeps working, including the offender's own account.
	bystander.roundTrip("after")
	other.roundTrip("after")
	fresh := dialRaw(t, s, "alice (new session)", "alice", accounts["alice"], "fresh")
	fresh.roundTrip("fresh")
}

func TestOversizedStanza(t *testing.T) {
	body := strings.Repeat("x", MaxStanzaBytes+1000)
	testBadStream(t, `<message to='bob@localhost' type='chat'><body>`+body+`</body></message>`, "policy-violation")
}

func TestMalformedXML(t *testing.T) {
	testBadStream(t, `<message to='bob@localhost' type='chat'><body>bad</bod></message>`, "not-well-formed")
}

// TestStreamCloseAnswered: a client's </stream:stream> is answered with the
// server's own and the connection closed promptly (clients wait for it).
func TestStreamCloseAnswered(t *testing.T) {
	s := newServer(t)
	c := dialRaw(t, s, "alice", "alice", accounts["alice"], "closer")
	start := time.Now()
	c.send(`</stream:stream>`)
	for {
		_, err := c.nextErr()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("waiting for </stream:stream>: %v", err)
		}
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("server answered </stream:stream> after %v", d)
	}
	c.conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := c.r.ReadByte(); err != io.EOF {
		t.Errorf("connection not closed within 3s after the closing tags: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("connection closed %v after the client's </stream:stream>", d)
	}
}
