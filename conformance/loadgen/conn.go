// Package loadgen is an XMPP load generator: a minimal client engine
// (STARTTLS, SASL PLAIN and SCRAM, resource binding, presence, messages)
// built for cheap connections, plus the benchmark scenarios that drive it
// (closed-loop pairs, open-loop rates, logins, idle sessions) and a /proc
// sampler for the server's memory and CPU.
//
// The client speaks real XMPP over crypto/tls but does not decode what it
// receives beyond cutting the stream into top-level elements: negotiation
// looks for the few elements it needs and message bodies carry a sequence
// number and a send timestamp.
package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"mellium.im/sasl"
)

// Mechanism names the client can use.
const (
	PLAIN       = "PLAIN"
	SCRAMSHA256 = "SCRAM-SHA-256"
	SCRAMSHA1   = "SCRAM-SHA-1"
)

// Account is one login.
type Account struct {
	User     string // localpart
	Password string
	Resource string // empty: let the server choose
}

// Dialer holds what every connection to one server shares.
type Dialer struct {
	Addr   string      // host:port of the STARTTLS listener
	Domain string      // XMPP domain
	TLS    *tls.Config // must trust the server's certificate
	// Mechanisms is the preference order; the first one the server offers
	// is used. Empty means PLAIN.
	Mechanisms []string
	// LocalIPs spread connections over these source addresses (round
	// robin); empty uses the kernel's choice.
	LocalIPs []net.IP
	// Timeout bounds one login (TCP, TLS, SASL, bind). Zero means 30s.
	Timeout time.Duration

	mu   sync.Mutex
	next int
}

// Conn is one logged-in client stream.
type Conn struct {
	raw net.Conn
	tc  *tls.Conn
	sp  *splitter
	w   *bufio.Writer
	wmu sync.Mutex

	// JID is the full JID the server bound.
	JID string
	// Info describes what was negotiated.
	Info LoginInfo
}

// LoginInfo is what a login negotiated, for the report's settings column.
type LoginInfo struct {
	TLSVersion string `json:"tls_version"`
	Cipher     string `json:"cipher"`
	Mechanism  string `json:"mechanism"`
	Iterations int    `json:"scram_iterations,omitempty"`
	Offered    string `json:"mechanisms_offered"`
}

// WithMechanisms returns a dialer like d with another mechanism preference.
func (d *Dialer) WithMechanisms(m ...string) *Dialer {
	return &Dialer{Addr: d.Addr, Domain: d.Domain, TLS: d.TLS, Mechanisms: m, LocalIPs: d.LocalIPs, Timeout: d.Timeout}
}

func (d *Dialer) localAddr() *net.TCPAddr {
	if len(d.LocalIPs) == 0 {
		return nil
	}
	d.mu.Lock()
	ip := d.LocalIPs[d.next%len(d.LocalIPs)]
	d.next++
	d.mu.Unlock()
	return &net.TCPAddr{IP: ip}
}

func (d *Dialer) timeout() time.Duration {
	if d.Timeout > 0 {
		return d.Timeout
	}
	return 30 * time.Second
}

// dialTLS connects, opens the stream and completes STARTTLS.
func (d *Dialer) dialTLS(ctx context.Context) (*Conn, error) {
	nd := net.Dialer{Timeout: d.timeout()}
	if la := d.localAddr(); la != nil {
		nd.LocalAddr = la
	}
	raw, err := nd.DialContext(ctx, "tcp", d.Addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", d.Addr, err)
	}
	c := &Conn{raw: raw, sp: newSplitter(raw), w: bufio.NewWriterSize(raw, 512)}
	ok := false
	defer func() {
		if !ok {
			raw.Close()
		}
	}()
	deadline := time.Now().Add(d.timeout())
	if dl, has := ctx.Deadline(); has && dl.Before(deadline) {
		deadline = dl
	}
	_ = raw.SetDeadline(deadline)
	feats, err := c.openStream(d.Domain)
	if err != nil {
		return nil, err
	}
	if !bytes.Contains(feats, []byte("starttls")) {
		return nil, fmt.Errorf("server offers no STARTTLS: %s", feats)
	}
	if err := c.writeString("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"); err != nil {
		return nil, err
	}
	el, err := c.sp.next()
	if err != nil {
		return nil, fmt.Errorf("starttls: %w", err)
	}
	if string(elemName(el)) != "proceed" {
		return nil, fmt.Errorf("starttls refused: %s", el)
	}
	cfg := d.TLS.Clone()
	if cfg.ServerName == "" {
		cfg.ServerName = d.Domain
	}
	c.tc = tls.Client(raw, cfg)
	if err := c.tc.HandshakeContext(ctx); err != nil {
		return nil, fmt.Errorf("TLS handshake: %w", err)
	}
	st := c.tc.ConnectionState()
	c.Info.TLSVersion = tls.VersionName(st.Version)
	c.Info.Cipher = tls.CipherSuiteName(st.CipherSuite)
	c.sp.restart(c.tc)
	c.w = bufio.NewWriterSize(c.tc, 512)
	ok = true
	return c, nil
}

// openStream sends a stream header and returns the features element.
func (c *Conn) openStream(domain string) ([]byte, error) {
	hdr := "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0' to='" + domain + "'>"
	if err := c.writeString(hdr); err != nil {
		return nil, err
	}
	el, err := c.sp.next()
	if err != nil {
		return nil, fmt.Errorf("stream features: %w", err)
	}
	if string(elemName(el)) != "features" {
		return nil, fmt.Errorf("expected stream features, got %s", el)
	}
	return append([]byte(nil), el...), nil
}

// Login connects and completes STARTTLS, SASL and bind; with presence it
// also sends initial presence.
func (d *Dialer) Login(ctx context.Context, a Account, presence bool) (*Conn, error) {
	c, err := d.dialTLS(ctx)
	if err != nil {
		return nil, err
	}
	if err := c.login(d, a, presence); err != nil {
		c.raw.Close()
		return nil, fmt.Errorf("login %s: %w", a.User, err)
	}
	_ = c.raw.SetDeadline(time.Time{})
	return c, nil
}

func (c *Conn) login(d *Dialer, a Account, presence bool) error {
	feats, err := c.openStream(d.Domain)
	if err != nil {
		return err
	}
	offered := mechanisms(feats)
	c.Info.Offered = strings.Join(offered, " ")
	prefs := d.Mechanisms
	if len(prefs) == 0 {
		prefs = []string{PLAIN}
	}
	mech := ""
	for _, p := range prefs {
		for _, o := range offered {
			if p == o && mech == "" {
				mech = p
			}
		}
	}
	if mech == "" {
		return fmt.Errorf("none of %v offered (server offers %v)", prefs, offered)
	}
	c.Info.Mechanism = mech
	if err := c.sasl(mech, a); err != nil {
		return err
	}
	c.sp.restart(nil)
	feats, err = c.openStream(d.Domain)
	if err != nil {
		return err
	}
	if !bytes.Contains(feats, []byte("bind")) {
		return fmt.Errorf("no bind feature: %s", feats)
	}
	res := ""
	if a.Resource != "" {
		res = "<resource>" + a.Resource + "</resource>"
	}
	s := "<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>" + res + "</bind></iq>"
	// RFC 3921 session establishment: ejabberd and Prosody still offer it
	// (optional); sending it costs a round trip only where it is required.
	needSession := bytes.Contains(feats, []byte("xmpp-session")) && !bytes.Contains(feats, []byte("<optional"))
	if needSession {
		s += "<iq type='set' id='s1'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>"
	}
	if err := c.writeString(s); err != nil {
		return err
	}
	for waiting := 1 + btoi(needSession); waiting > 0; {
		el, err := c.sp.next()
		if err != nil {
			return fmt.Errorf("bind: %w", err)
		}
		if string(elemName(el)) != "iq" {
			continue
		}
		id, _ := attr(el, "id")
		typ, _ := attr(el, "type")
		if id != "b1" && id != "s1" {
			continue
		}
		if typ != "result" {
			return fmt.Errorf("%s failed: %s", map[string]string{"b1": "bind", "s1": "session"}[id], el)
		}
		if id == "b1" {
			j, ok := childText(el, "jid")
			if !ok {
				return fmt.Errorf("bind result without jid: %s", el)
			}
			c.JID = string(j)
		}
		waiting--
	}
	if presence {
		return c.writeString("<presence/>")
	}
	return nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// mechanisms lists the SASL mechanisms in a features element.
func mechanisms(feats []byte) []string {
	var out []string
	rest := feats
	for {
		i := bytes.Index(rest, []byte("mechanism>"))
		if i < 0 {
			return out
		}
		rest = rest[i+len("mechanism>"):]
		j := bytes.IndexByte(rest, '<')
		if j < 0 {
			return out
		}
		if v := strings.TrimSpace(string(rest[:j])); v != "" {
			out = append(out, v)
		}
		rest = rest[j:]
	}
}

func (c *Conn) sasl(mech string, a Account) error {
	if mech == PLAIN {
		resp := base64.StdEncoding.EncodeToString([]byte("\x00" + a.User + "\x00" + a.Password))
		if err := c.writeString("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>" + resp + "</auth>"); err != nil {
			return err
		}
		return c.saslResult(nil)
	}
	var m sasl.Mechanism
	switch mech {
	case SCRAMSHA256:
		m = sasl.ScramSha256
	case SCRAMSHA1:
		m = sasl.ScramSha1
	default:
		return fmt.Errorf("mechanism %s not implemented", mech)
	}
	neg := sasl.NewClient(m, sasl.Credentials(func() ([]byte, []byte, []byte) {
		return []byte(a.User), []byte(a.Password), nil
	}))
	_, first, err := neg.Step(nil)
	if err != nil {
		return fmt.Errorf("%s: %w", mech, err)
	}
	if err := c.writeString("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='" + mech + "'>" + base64.StdEncoding.EncodeToString(first) + "</auth>"); err != nil {
		return err
	}
	return c.saslResult(neg)
}

// saslResult reads challenges until success or failure.
func (c *Conn) saslResult(neg *sasl.Negotiator) error {
	for {
		el, err := c.sp.next()
		if err != nil {
			return fmt.Errorf("sasl: %w", err)
		}
		switch string(elemName(el)) {
		case "success":
			if neg != nil {
				if txt, _ := childText(append([]byte(nil), el...), "success"); len(txt) > 0 {
					dec, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(txt)))
					if err != nil {
						return fmt.Errorf("sasl success data: %w", err)
					}
					if _, _, err := neg.Step(dec); err != nil {
						return fmt.Errorf("server signature: %w", err)
					}
				}
			}
			return nil
		case "failure":
			return fmt.Errorf("%w: %s", ErrAuth, el)
		case "challenge":
			if neg == nil {
				return fmt.Errorf("unexpected challenge: %s", el)
			}
			txt, _ := childText(el, "challenge")
			dec, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(txt)))
			if err != nil {
				return fmt.Errorf("sasl challenge: %w", err)
			}
			if c.Info.Iterations == 0 {
				c.Info.Iterations = scramIterations(dec)
			}
			_, resp, err := neg.Step(dec)
			if err != nil {
				return fmt.Errorf("sasl step: %w", err)
			}
			if err := c.writeString("<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>" + base64.StdEncoding.EncodeToString(resp) + "</response>"); err != nil {
				return err
			}
		default:
			return fmt.Errorf("unexpected during SASL: %s", el)
		}
	}
}

// ErrAuth marks a SASL failure reported by the server.
var ErrAuth = errors.New("authentication failed")

// scramIterations reads i= from a SCRAM server-first message.
func scramIterations(serverFirst []byte) int {
	for _, f := range strings.Split(string(serverFirst), ",") {
		if strings.HasPrefix(f, "i=") {
			n, _ := strconv.Atoi(f[2:])
			return n
		}
	}
	return 0
}

func (c *Conn) writeString(s string) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if _, err := c.w.WriteString(s); err != nil {
		return err
	}
	return c.w.Flush()
}

// Write sends raw bytes and flushes.
func (c *Conn) Write(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if _, err := c.w.Write(b); err != nil {
		return err
	}
	return c.w.Flush()
}

// Next returns the next top-level element received; valid until the next call.
func (c *Conn) Next() ([]byte, error) { return c.sp.next() }

// SetDeadline sets the connection's read and write deadline.
func (c *Conn) SetDeadline(t time.Time) error { return c.raw.SetDeadline(t) }

// Close ends the stream politely and closes the connection. It waits a
// moment for the server's closing tag so that the server, not the client,
// holds TIME_WAIT when the server closes first.
func (c *Conn) Close() error {
	_ = c.raw.SetDeadline(time.Now().Add(2 * time.Second))
	if err := c.writeString("</stream:stream>"); err == nil {
		for {
			if _, err := c.sp.next(); err != nil {
				break
			}
		}
	}
	return c.raw.Close()
}

// Abort closes the TCP connection without a closing tag.
func (c *Conn) Abort() error { return c.raw.Close() }

// Register creates accounts with XEP-0077 in-band registration on one
// STARTTLS stream per batch of 50. An account that exists already is an
// error.
func (d *Dialer) Register(ctx context.Context, accounts []Account) error {
	const batch = 50
	for i := 0; i < len(accounts); i += batch {
		end := i + batch
		if end > len(accounts) {
			end = len(accounts)
		}
		if err := d.registerBatch(ctx, accounts[i:end]); err != nil {
			return err
		}
	}
	return nil
}

func (d *Dialer) registerBatch(ctx context.Context, accounts []Account) error {
	c, err := d.dialTLS(ctx)
	if err != nil {
		return err
	}
	defer c.Abort()
	feats, err := c.openStream(d.Domain)
	if err != nil {
		return err
	}
	_ = feats
	// One at a time: servers answer in order, but some close the stream
	// after an error and we want to name the account.
	for k, a := range accounts {
		id := "r" + strconv.Itoa(k)
		q := "<iq type='set' id='" + id + "'><query xmlns='jabber:iq:register'><username>" + a.User + "</username><password>" + a.Password + "</password></query></iq>"
		if err := c.writeString(q); err != nil {
			return fmt.Errorf("register %s: %w", a.User, err)
		}
		for {
			el, err := c.sp.next()
			if err != nil {
				return fmt.Errorf("register %s: %w", a.User, err)
			}
			if string(elemName(el)) != "iq" {
				continue
			}
			if got, _ := attr(el, "id"); got != id {
				continue
			}
			if typ, _ := attr(el, "type"); typ != "result" {
				return fmt.Errorf("register %s: %s", a.User, el)
			}
			break
		}
	}
	_ = c.writeString("</stream:stream>")
	return nil
}
