package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/palisade-im/palisade/server"
	"github.com/palisade-im/palisade/server/config"
	"github.com/palisade-im/palisade/server/module"
	psasl "github.com/palisade-im/palisade/server/sasl"
	"github.com/palisade-im/palisade/server/stanza"
	"github.com/palisade-im/palisade/storage"
	"github.com/palisade-im/palisade/storage/sqlite"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"
	"golang.org/x/net/websocket"
	"mellium.im/sasl"
	"mellium.im/xmpp/jid"
)

const (
	domain    = "localhost"
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
	nsClient  = "jabber:client"
	nsStanzas = "urn:ietf:params:xml:ns:xmpp-stanzas"

	// short is how long a test waits for something that must arrive.
	short = 5 * time.Second
	// quiet is how long a test waits to see that nothing arrives.
	quiet = 300 * time.Millisecond
)

// passwords of the test accounts, created in every env.
var users = map[string]string{"alice": "alice-pw", "bob": "bob-pw", "carol": "carol-pw"}

// directPresence is a test-only presence handler: the core delegates all
// presence routing to a module (roster and subscriptions arrive later), so
// this one delivers directed presence as is, which is all the XEP-0352
// tests need. Broadcasts go nowhere.
type directPresence struct{ r module.Router }

func (p directPresence) OutboundPresence(ctx context.Context, _ module.Session, st *stanza.Stanza) {
	if !st.To.Equal(jid.JID{}) {
		_ = p.r.Process(ctx, st) // policy chain, journal, then InboundPresence
	}
}

func (p directPresence) InboundPresence(_ context.Context, st *stanza.Stanza) {
	if st.To.Resourcepart() != "" {
		if s := p.r.Session(st.To); s != nil {
			s.Send(st)
		}
		return
	}
	for _, s := range p.r.Sessions(st.To) {
		s.Send(st)
	}
}

func init() {
	module.Register(module.Info{Name: "e2e_presence", New: func(h *module.Host, _ any) (any, error) {
		return directPresence{h.Router}, nil
	}})
}

// env is one running server with its store and accounts.
type env struct {
	t      testing.TB
	cfg    *config.Config
	store  *sqlite.Store
	srv    *server.Server
	cancel context.CancelFunc
	done   chan error
	pool   *x509.CertPool
	once   sync.Once
	runErr error
}

func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := ln.Addr().String()
	_ = ln.Close()
	return a
}

// newEnv starts a server; mod may adjust the configuration first.
func newEnv(t testing.TB, mod func(*config.Config)) *env {
	t.Helper()
	return newEnvAttempt(t, mod, nil, 1)
}

// newEnvObserved starts a server like newEnv whose log is also kept in
// the returned observer (audit events included).
func newEnvObserved(t testing.TB, mod func(*config.Config)) (*env, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zapcore.InfoLevel)
	return newEnvAttempt(t, mod, core, 1), logs
}

func newEnvAttempt(t testing.TB, mod func(*config.Config), also zapcore.Core, attempt int) *env {
	t.Helper()
	cfg := config.Default()
	cfg.Server.DataDir = t.TempDir()
	cfg.Listen.C2S = freeAddr(t)
	cfg.Listen.C2SDirectTLS = freeAddr(t)
	cfg.Listen.WebSocket = freeAddr(t)
	cfg.Listen.Admin = ""
	cfg.Listen.S2S = ""
	cfg.Limits.MaxStanzaBytes = 10000
	cfg.Limits.AuthTimeout = config.Duration(20 * time.Second)
	cfg.Limits.IdleTimeout = config.Duration(time.Minute)
	cfg.Limits.PingTimeout = config.Duration(20 * time.Second)
	cfg.Limits.ResumeTimeout = config.Duration(time.Minute)
	if mod != nil {
		mod(cfg)
	}
	ctx := context.Background()
	// The file the CLI opens for this data_dir (palisade user ... --config).
	store, err := sqlite.Open(ctx, filepath.Join(cfg.Server.DataDir, "palisade.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	for name, pw := range users {
		creds, err := psasl.DeriveAll(pw, 4096)
		if err != nil {
			t.Fatal(err)
		}
		if err := store.CreateUser(ctx, storage.User{Localpart: name, Domain: domain, SCRAM: creds, Created: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	log := zaptest.NewLogger(t)
	if also != nil {
		log = zap.New(zapcore.NewTee(log.Core(), also))
	}
	srv, err := server.New(cfg, store, log)
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	e := &env{t: t, cfg: cfg, store: store, srv: srv, cancel: cancel, done: make(chan error, 1)}
	go func() { e.done <- srv.Run(rctx) }()
	t.Cleanup(func() {
		if err := e.stop(); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	certFile := filepath.Join(cfg.Server.DataDir, "certs", "server.pem")
	if cfg.TLS.CertFile != "" {
		certFile = cfg.TLS.CertFile // trusted as it is (a leaf in the pool is an anchor)
	}
	pem, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	e.pool = x509.NewCertPool()
	if !e.pool.AppendCertsFromPEM(pem) {
		t.Fatal("no certificate in server.pem")
	}
	// Wait until every listener accepts.
	addrs := []string{cfg.Listen.C2S, cfg.Listen.C2SDirectTLS, cfg.Listen.WebSocket}
	if len(cfg.Federation.Partners) > 0 {
		// The s2s listeners open once a partner is configured.
		for _, a := range []string{cfg.Listen.S2S, cfg.Listen.S2SDirectTLS} {
			if a != "" {
				addrs = append(addrs, a)
			}
		}
	}
	for _, a := range addrs {
		deadline := time.Now().Add(short)
		for {
			select {
			case rerr := <-e.done:
				// Run ended before its listeners were up. A port picked
				// free can be taken by another process before the server
				// binds it: then try again with new ports.
				e.once.Do(func() {})
				if errors.Is(rerr, syscall.EADDRINUSE) && attempt < 3 {
					return newEnvAttempt(t, mod, also, attempt+1)
				}
				t.Fatalf("Run: %v", rerr)
			default:
			}
			c, err := net.DialTimeout("tcp", a, time.Second)
			if err == nil {
				_ = c.Close()
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("listener %s not up: %v", a, err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return e
}

// stop cancels the server and waits for Run to return.
func (e *env) stop() error {
	e.once.Do(func() {
		e.cancel()
		select {
		case e.runErr = <-e.done:
		case <-time.After(15 * time.Second):
			e.runErr = errors.New("Run did not return within 15s of cancel")
		}
	})
	return e.runErr
}

func (e *env) tlsConfig() *tls.Config {
	return &tls.Config{RootCAs: e.pool, ServerName: "localhost", MinVersion: tls.VersionTLS12}
}

// Node is a decoded XML element.
type Node struct {
	XMLName xml.Name
	Attr    []xml.Attr `xml:",any,attr"`
	Nodes   []*Node    `xml:",any"`
	Text    string     `xml:",chardata"`
	Raw     string     `xml:"-"` // the WebSocket message, when read from one
}

// A returns a plain attribute.
func (n *Node) A(name string) string {
	for _, a := range n.Attr {
		if a.Name.Space == "" && a.Name.Local == name {
			return a.Value
		}
	}
	return ""
}

// Child returns the first child element with the name (and namespace, if given).
func (n *Node) Child(space, local string) *Node {
	for _, c := range n.Nodes {
		if c.XMLName.Local == local && (space == "" || c.XMLName.Space == space) {
			return c
		}
	}
	return nil
}

// Is reports the element's namespace and name.
func (n *Node) Is(space, local string) bool {
	return n != nil && n.XMLName.Space == space && n.XMLName.Local == local
}

func (n *Node) String() string {
	if n == nil {
		return "<nil>"
	}
	if n.Raw != "" {
		return n.Raw
	}
	var b strings.Builder
	b.WriteString("<{" + n.XMLName.Space + "}" + n.XMLName.Local)
	for _, a := range n.Attr {
		fmt.Fprintf(&b, " %s=%q", a.Name.Local, a.Value)
	}
	b.WriteString(">")
	for _, c := range n.Nodes {
		b.WriteString(c.String())
	}
	b.WriteString(strings.TrimSpace(n.Text))
	b.WriteString("</" + n.XMLName.Local + ">")
	return b.String()
}

// stanzaError returns the defined condition of a stanza error, or "".
func (n *Node) stanzaError() string {
	if n.A("type") != "error" {
		return ""
	}
	e := n.Child(nsClient, "error")
	if e == nil {
		return "(no error child)"
	}
	for _, c := range e.Nodes {
		if c.XMLName.Space == nsStanzas && c.XMLName.Local != "text" {
			return c.XMLName.Local
		}
	}
	return "(no condition)"
}

func (n *Node) isStanza() bool {
	if n == nil || n.XMLName.Space != nsClient {
		return false
	}
	switch n.XMLName.Local {
	case "message", "presence", "iq":
		return true
	}
	return false
}

// streamEnd marks the end of the server's stream (</stream:stream> or <close/>).
var streamEnd = xml.Name{Space: nsStream, Local: "/stream"}

type mode int

const (
	modeStartTLS mode = iota
	modeDirectTLS
	modeWS
)

type item struct {
	n   *Node
	err error
}

// client is a raw XMPP client for tests.
type client struct {
	t    testing.TB
	e    *env
	mode mode
	raw  net.Conn // TCP
	conn net.Conn // TCP or TLS on it
	ws   *websocket.Conn
	dec  *xml.Decoder
	wmu  sync.Mutex
	jid  string
	user string

	// Asynchronous reading, started by startReader.
	ch      chan item
	autoAck atomic.Bool
	smOn    atomic.Bool
	h       atomic.Uint32 // stanzas received after <enable/> (XEP-0198)
	pending *item
}

// dial connects without sending anything.
func dial(t testing.TB, e *env, m mode) *client {
	t.Helper()
	return dialFrom(t, e, m, "")
}

// dialFrom is dial from the source IP local ("" lets the system pick);
// TCP modes only.
func dialFrom(t testing.TB, e *env, m mode, local string) *client {
	t.Helper()
	c := &client{t: t, e: e, mode: m}
	switch m {
	case modeStartTLS, modeDirectTLS:
		addr := e.cfg.Listen.C2S
		if m == modeDirectTLS {
			addr = e.cfg.Listen.C2SDirectTLS
		}
		d := net.Dialer{Timeout: short}
		if local != "" {
			d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(local)}
		}
		raw, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.raw, c.conn = raw, raw
		if m == modeDirectTLS {
			cfg := e.tlsConfig()
			cfg.NextProtos = []string{"xmpp-client"}
			tc := tls.Client(raw, cfg)
			_ = tc.SetDeadline(time.Now().Add(short))
			if err := tc.Handshake(); err != nil {
				t.Fatal(err)
			}
			_ = tc.SetDeadline(time.Time{})
			if p := tc.ConnectionState().NegotiatedProtocol; p != "xmpp-client" {
				t.Errorf("direct TLS ALPN = %q, want xmpp-client", p)
			}
			c.conn = tc
		}
	case modeWS:
		cfg, err := websocket.NewConfig("wss://"+e.cfg.Listen.WebSocket+"/xmpp-websocket", "https://localhost/")
		if err != nil {
			t.Fatal(err)
		}
		cfg.Protocol = []string{"xmpp"}
		cfg.TlsConfig = e.tlsConfig()
		ws, err := websocket.DialConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		c.ws = ws
	}
	t.Cleanup(c.close)
	return c
}

func (c *client) close() {
	if c.ws != nil {
		_ = c.ws.Close()
	}
	if c.raw != nil {
		_ = c.raw.Close()
	}
}

// send writes raw XML (one element per call for WebSocket).
func (c *client) send(format string, args ...any) {
	c.t.Helper()
	if err := c.trySend(fmt.Sprintf(format, args...)); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

func (c *client) trySend(s string) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.ws != nil {
		_ = c.ws.SetWriteDeadline(time.Now().Add(short))
		return websocket.Message.Send(c.ws, s)
	}
	_ = c.conn.SetWriteDeadline(time.Now().Add(short))
	_, err := io.WriteString(c.conn, s)
	return err
}

// read reads the next top-level element (blocking, no deadline handling).
func (c *client) read() (*Node, error) {
	if c.ws != nil {
		var msg string
		if err := websocket.Message.Receive(c.ws, &msg); err != nil {
			return nil, err
		}
		d := xml.NewDecoder(strings.NewReader(msg))
		for {
			tok, err := d.Token()
			if err != nil {
				return nil, fmt.Errorf("websocket message %q: %w", msg, err)
			}
			if st, ok := tok.(xml.StartElement); ok {
				n := &Node{}
				if err := d.DecodeElement(n, &st); err != nil {
					return nil, fmt.Errorf("websocket message %q: %w", msg, err)
				}
				n.Raw = msg
				if n.Is(nsFraming, "close") {
					n.XMLName = streamEnd
				}
				// Nothing may follow the element in the message.
				for {
					tok, err := d.Token()
					if err == io.EOF {
						break
					}
					if err != nil {
						return nil, fmt.Errorf("websocket message %q: %w", msg, err)
					}
					if cd, ok := tok.(xml.CharData); ok && strings.TrimSpace(string(cd)) == "" {
						continue
					}
					return nil, fmt.Errorf("websocket message %q holds more than one element", msg)
				}
				return n, nil
			}
		}
	}
	for {
		tok, err := c.dec.Token()
		if err != nil {
			return nil, err
		}
		switch tk := tok.(type) {
		case xml.StartElement:
			if tk.Name.Space == nsStream && tk.Name.Local == "stream" {
				return &Node{XMLName: tk.Name, Attr: tk.Attr}, nil
			}
			n := &Node{}
			if err := c.dec.DecodeElement(n, &tk); err != nil {
				return nil, err
			}
			return n, nil
		case xml.EndElement:
			return &Node{XMLName: streamEnd}, nil
		case xml.CharData:
			if strings.TrimSpace(string(tk)) != "" {
				return nil, fmt.Errorf("text outside elements: %q", tk)
			}
		}
	}
}

// startReader switches to asynchronous reading: a goroutine reads elements
// into a channel, counts stanzas for XEP-0198 and answers <r/> if autoAck.
func (c *client) startReader() {
	c.ch = make(chan item, 1000)
	if c.ws != nil {
		_ = c.ws.SetReadDeadline(time.Time{})
	} else {
		_ = c.conn.SetReadDeadline(time.Time{})
	}
	go func() {
		for {
			n, err := c.read()
			if err != nil {
				c.ch <- item{err: err}
				close(c.ch)
				return
			}
			if n.Is(nsSM, "enabled") {
				c.smOn.Store(true) // the server counts from here too
			}
			if n.isStanza() && c.smOn.Load() {
				c.h.Add(1)
			}
			if n.Is(nsSM, "r") && c.autoAck.Load() {
				_ = c.trySend(fmt.Sprintf("<a xmlns='urn:xmpp:sm:3' h='%d'/>", c.h.Load()))
				continue
			}
			c.ch <- item{n: n}
		}
	}()
}

// tryNext returns the next element, or an error (os.ErrDeadlineExceeded on timeout).
func (c *client) tryNext(timeout time.Duration) (*Node, error) {
	if c.ch == nil {
		if c.ws != nil {
			_ = c.ws.SetReadDeadline(time.Now().Add(timeout))
		} else {
			_ = c.conn.SetReadDeadline(time.Now().Add(timeout))
		}
		return c.read()
	}
	if c.pending != nil {
		it := c.pending
		c.pending = nil
		return it.n, it.err
	}
	select {
	case it, ok := <-c.ch:
		if !ok {
			return nil, io.EOF
		}
		if it.err != nil {
			c.pending = &it // errors stay
		}
		return it.n, it.err
	case <-time.After(timeout):
		return nil, os.ErrDeadlineExceeded
	}
}

// next returns the next element or fails the test.
func (c *client) next() *Node {
	c.t.Helper()
	n, err := c.tryNext(short)
	if err != nil {
		c.t.Fatalf("%s: reading: %v", c.name(), err)
	}
	return n
}

func (c *client) name() string {
	if c.jid != "" {
		return c.jid
	}
	return c.user + "(unbound)"
}

// expect reads the next element and checks its name.
func (c *client) expect(space, local string) *Node {
	c.t.Helper()
	n := c.next()
	if !n.Is(space, local) {
		c.t.Fatalf("%s: got %s, want {%s}%s", c.name(), n, space, local)
	}
	return n
}

// nothing checks that no element arrives for a while.
func (c *client) nothing(d time.Duration) {
	c.t.Helper()
	n, err := c.tryNext(d)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return
	}
	if err != nil {
		c.t.Fatalf("%s: expected silence, got error %v", c.name(), err)
	}
	c.t.Fatalf("%s: expected silence, got %s", c.name(), n)
}

// expectStreamError reads a stream error with the condition, the end of
// the stream, and the closing of the connection.
func (c *client) expectStreamError(cond string) {
	c.t.Helper()
	n := c.next()
	if !n.Is(nsStream, "error") {
		c.t.Fatalf("%s: got %s, want stream error %s", c.name(), n, cond)
	}
	if n.Child(nsStreams, cond) == nil {
		c.t.Fatalf("%s: got stream error %s, want %s", c.name(), n, cond)
	}
	c.expectClosed()
}

// expectClosed reads the end of the stream (optional) and then EOF.
func (c *client) expectClosed() {
	c.t.Helper()
	for i := 0; ; i++ {
		n, err := c.tryNext(short)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			c.t.Fatalf("%s: connection not closed by the server", c.name())
		}
		if err != nil {
			return // EOF, reset, websocket close
		}
		if n.XMLName == streamEnd && i == 0 {
			continue
		}
		c.t.Fatalf("%s: got %s, want the connection closed", c.name(), n)
	}
}

// open sends a stream header and reads the answer and the features.
func (c *client) open(to string) *Node {
	c.t.Helper()
	if c.ws != nil {
		c.send(`<open xmlns="urn:ietf:params:xml:ns:xmpp-framing" to="%s" version="1.0"/>`, to)
		h := c.next()
		if !h.Is(nsFraming, "open") {
			c.t.Fatalf("got %s, want <open/>", h)
		}
		if h.A("id") == "" || h.A("from") != domain {
			c.t.Errorf("bad <open/>: %s", h)
		}
		return c.expect(nsStream, "features")
	}
	c.dec = xml.NewDecoder(c.conn)
	c.send(`<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='%s' version='1.0'>`, to)
	h := c.next()
	if !h.Is(nsStream, "stream") {
		c.t.Fatalf("got %s, want stream header", h)
	}
	return c.next()
}

// openOK opens for the test domain and checks for features.
func (c *client) openOK() *Node {
	c.t.Helper()
	f := c.open(domain)
	if !f.Is(nsStream, "features") {
		c.t.Fatalf("got %s, want features", f)
	}
	return f
}

// starttls negotiates TLS on a STARTTLS stream and returns the new features.
func (c *client) starttls() *Node {
	c.t.Helper()
	f := c.openOK()
	if f.Child(nsTLS, "starttls") == nil {
		c.t.Fatalf("no starttls in %s", f)
	}
	c.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
	c.expect(nsTLS, "proceed")
	tc := tls.Client(c.raw, c.e.tlsConfig())
	_ = tc.SetDeadline(time.Now().Add(short))
	if err := tc.Handshake(); err != nil {
		c.t.Fatal(err)
	}
	_ = tc.SetDeadline(time.Time{})
	c.conn = tc
	return c.openOK()
}

// secure brings the connection to the SASL features.
func (c *client) secure() *Node {
	c.t.Helper()
	if c.mode == modeStartTLS {
		return c.starttls()
	}
	return c.openOK()
}

func mechanisms(f *Node) []string {
	var out []string
	if m := f.Child(nsSASL, "mechanisms"); m != nil {
		for _, x := range m.Nodes {
			out = append(out, strings.TrimSpace(x.Text))
		}
	}
	return out
}

// authPlain runs SASL PLAIN and returns <success/> or <failure/>.
func (c *client) authPlain(user, pw string) *Node {
	c.t.Helper()
	c.user = user
	c.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>%s</auth>",
		base64.StdEncoding.EncodeToString([]byte("\x00"+user+"\x00"+pw)))
	return c.next()
}

// authSCRAM runs a SCRAM mechanism and returns <success/> or <failure/>.
func (c *client) authSCRAM(mech sasl.Mechanism, name, user, pw string) *Node {
	c.t.Helper()
	c.user = user
	opts := []sasl.Option{
		sasl.Credentials(func() ([]byte, []byte, []byte) { return []byte(user), []byte(pw), nil }),
		sasl.RemoteMechanisms(name),
	}
	if tc, ok := c.conn.(*tls.Conn); ok {
		opts = append(opts, sasl.TLSState(tc.ConnectionState()))
	}
	cl := sasl.NewClient(mech, opts...)
	_, resp, err := cl.Step(nil)
	if err != nil {
		c.t.Fatal(err)
	}
	c.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='%s'>%s</auth>", name, b64(resp))
	for {
		n := c.next()
		switch {
		case n.Is(nsSASL, "challenge"):
			data, err := base64.StdEncoding.DecodeString(strings.TrimSpace(n.Text))
			if err != nil {
				c.t.Fatal(err)
			}
			_, resp, err := cl.Step(data)
			if err != nil {
				c.t.Fatalf("SCRAM step: %v", err)
			}
			c.send("<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>%s</response>", b64(resp))
		case n.Is(nsSASL, "success"):
			data, err := base64.StdEncoding.DecodeString(strings.TrimSpace(n.Text))
			if err != nil {
				c.t.Fatal(err)
			}
			if _, _, err := cl.Step(data); err != nil {
				c.t.Fatalf("server signature rejected: %v", err)
			}
			return n
		default:
			return n
		}
	}
}

func b64(b []byte) string {
	if len(b) == 0 {
		return "="
	}
	return base64.StdEncoding.EncodeToString(b)
}

// authed logs in with PLAIN and restarts the stream; it returns the
// post-authentication features.
func (c *client) authed(user string) *Node {
	c.t.Helper()
	c.secure()
	if n := c.authPlain(user, users[user]); !n.Is(nsSASL, "success") {
		c.t.Fatalf("auth %s: %s", user, n)
	}
	return c.openOK()
}

// bind binds a resource ("" lets the server pick) and returns the full JID.
func (c *client) bind(res string) string {
	c.t.Helper()
	r := ""
	if res != "" {
		r = "<resource>" + res + "</resource>"
	}
	c.send("<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>%s</bind></iq>", r)
	n := c.expect(nsClient, "iq")
	if n.A("type") != "result" || n.A("id") != "bind1" {
		c.t.Fatalf("bind: %s", n)
	}
	j := n.Child(nsBind, "bind").Child(nsBind, "jid")
	if j == nil {
		c.t.Fatalf("bind: no jid in %s", n)
	}
	c.jid = strings.TrimSpace(j.Text)
	return c.jid
}

// login connects, authenticates, binds and starts asynchronous reading.
func login(t testing.TB, e *env, m mode, user, res string) *client {
	t.Helper()
	c := dial(t, e, m)
	c.authed(user)
	c.bind(res)
	c.startReader()
	return c
}

// available sends initial presence (the core then counts the session as
// available for messages to the bare JID).
func (c *client) available(prio int) {
	c.send("<presence><priority>%d</priority></presence>", prio)
}

// sync makes sure the server handled everything c sent before: it sends
// an IQ the server answers and waits for the answer, skipping nothing else.
var syncSeq atomic.Int64

func (c *client) sync() {
	c.t.Helper()
	id := "sync" + strconv.FormatInt(syncSeq.Add(1), 10)
	c.send("<iq type='get' id='%s' to='%s'><x xmlns='urn:e2e:sync'/></iq>", id, domain)
	n := c.expect(nsClient, "iq")
	if n.A("id") != id {
		c.t.Fatalf("%s: sync: got %s", c.name(), n)
	}
}

func bare(full string) string {
	if i := strings.IndexByte(full, '/'); i >= 0 {
		return full[:i]
	}
	return full
}
