package c2s

import (
	"bytes"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/palisade-im/palisade/server/element"
)

// bytesConn is a net.Conn whose reads return b, then io.EOF.
type bytesConn struct {
	net.Conn
	r *bytes.Reader
}

func (c *bytesConn) Read(p []byte) (int, error)       { return c.r.Read(p) }
func (c *bytesConn) Write(p []byte) (int, error)      { return len(p), nil }
func (c *bytesConn) SetReadDeadline(time.Time) error  { return nil }
func (c *bytesConn) SetWriteDeadline(time.Time) error { return nil }
func (c *bytesConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *bytesConn) Close() error                     { return nil }

const fuzzHeader = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>"

// FuzzStream reads arbitrary bytes as a client stream through the TCP
// transport, with the pre-auth bounds first and the full ones after the
// first element (as after SASL). Every read ends in an event, a stream
// error or the end of input, never a panic; every element it returns
// serializes to XML that parses back to the same bytes, and no element
// carries an attribute twice.
func FuzzStream(f *testing.F) {
	for _, s := range []string{
		fuzzHeader + "<message to='bob@localhost' id='1'><body>hi</body></message></stream:stream>",
		fuzzHeader + "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGFsaWNlAHNlY3JldA==</auth>" + fuzzHeader + "<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>",
		fuzzHeader + "<message from='alice@localhost' from='mallory@localhost/x' from='alice@localhost/y' to='bob@localhost'><body>x</body></message>",
		fuzzHeader + "<message><:m/></message>",
		fuzzHeader + "<r xmlns='urn:xmpp:sm:3'/><r xmlns='urn:xmpp:sm:3'/>",
		"<?xml version='1.1'?>" + fuzzHeader,
		"<?xml version='1.0' encoding='UTF-16'?>" + fuzzHeader,
		"\xff\xfe<\x00?\x00",
		"<stream:stream xmlns:stream='urn:wrong' version='1.0'>",
		fuzzHeader + "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>" + strings.Repeat("<a/>", 300),
		fuzzHeader + "<message><body>a<![CDATA[b]]><![CDATA[c]]></body></message>",
		fuzzHeader + "<!-- c -->",
		fuzzHeader + "</stream:stream>",
	} {
		f.Add([]byte(s))
	}
	cfg := &Config{MaxStanza: 16 << 10, PreauthStanza: 2 << 10, MaxElements: 1024}
	f.Fuzz(func(t *testing.T, in []byte) {
		tr := newTCPTransport(&bytesConn{r: bytes.NewReader(in)}, nil, cfg.preauthBounds(), 0)
		for i := 0; i < 64; i++ {
			ev, err := tr.next()
			if err != nil {
				var se *streamError
				if !errors.As(err, &se) && !errors.Is(err, io.EOF) {
					t.Fatalf("read %d: %v is neither a stream error nor the end", i, err)
				}
				return
			}
			switch ev.kind {
			case evOpen:
				tr.restart()
			case evClose:
				return
			case evElement:
				out := ev.el.AppendTo(nil, "")
				again, err := element.Parse(out, "")
				if err != nil {
					t.Fatalf("element %s does not parse back: %v", out, err)
				}
				if out2 := again.AppendTo(nil, ""); !bytes.Equal(out, out2) {
					t.Fatalf("unstable serialization:\n%s\n%s", out, out2)
				}
				if i == 1 {
					tr.setBounds(cfg.authBounds())
				}
			}
		}
	})
}

// FuzzDecodeSASL: the SASL payload decoder never panics, and what it
// accepts is canonical standard base64 that encodes back to its input,
// line breaks aside ("=" stands for empty data, "" for none).
func FuzzDecodeSASL(f *testing.F) {
	for _, s := range []string{"", "=", "AGFsaWNlAHNlY3JldA==", "bixhPWJvYkBsb2NhbGhvc3Qsbj1hbGljZSxyPXh5eg==", "====", "a", "YQ", "YQ==\n", "YR==", "*"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		data, bad := decodeSASL(s)
		switch {
		case bad:
			if data != nil {
				t.Fatalf("bad input %q returned data", s)
			}
		case s == "":
			if data != nil {
				t.Fatalf("no data returned %q", data)
			}
		case s == "=":
			if data == nil || len(data) != 0 {
				t.Fatalf("\"=\" returned %v", data)
			}
		default:
			if got := base64Std(data); got != strings.NewReplacer("\r", "", "\n", "").Replace(s) {
				t.Fatalf("%q decoded to %q, which encodes to %q", s, data, got)
			}
		}
	})
}

func base64Std(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
