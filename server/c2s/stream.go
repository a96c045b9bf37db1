package c2s

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/palisade-im/palisade/certs"
	"github.com/palisade-im/palisade/server/element"
	"github.com/palisade-im/palisade/server/metrics"
	"github.com/palisade-im/palisade/server/sasl"
	"github.com/palisade-im/palisade/server/stanza"
	"go.uber.org/zap"
	"mellium.im/xmpp/jid"
)

// maxAuthFailures is how many failed SASL attempts a stream gets (RFC 6120
// 6.4.5 asks for 2 to 5) before it is closed with not-authorized.
const maxAuthFailures = 5

var errClientClosed = errors.New("c2s: client closed the stream")

// conn negotiates one client connection up to a bound session.
type conn struct {
	srv    *Server
	tr     transport
	tcp    *tcpTransport // nil for WebSocket
	id     string
	domain string
	cb     sasl.Binding
	authed bool
	user   string // SASL identity (localpart)
	mech   string
	fails  int
	// grant is what the access rules granted the login.
	grant Grant
	// cbRejected is set when a -PLUS attempt on this stream failed because
	// the client's channel-binding type is not offered (slixmpp 1.8.3
	// tries tls-unique, which TLS 1.3 lacks). Its honest fallback with the
	// gs2 'y' flag is then accepted; a MITM that strips -PLUS from the
	// features never causes a -PLUS attempt, so downgrade detection holds.
	cbRejected bool
	// authTimer ends the stream when login takes too long; authDeadline
	// is when it fires. registering is set once an XEP-0077 registration
	// form was handed out on this stream and the deadline moved for it.
	authTimer    *time.Timer
	authDeadline time.Time
	registering  bool
	// slot is the connection's place among the unauthenticated ones
	// (nil: not counted); SASL success or the end of negotiation frees it.
	slot *slot
}

func (c *conn) log() *zap.Logger {
	return c.srv.log.With(zap.String("stream", c.id), zap.String("remote", c.tr.remoteAddr()))
}

// serve runs the connection until it ends.
func (c *conn) serve(ctx context.Context) {
	if loop := c.negotiated(ctx); loop != nil {
		loop()
	}
}

// negotiated negotiates the stream (TLS, SASL, bind or resume). Once a
// session is bound it returns the read loop, which the caller may run on a
// fresh goroutine: the TLS handshake and SASL grow this goroutine's stack
// to ~16 KiB, which a parked idle reader would keep, while a fresh
// goroutine parks in ~8 KiB (measured at 1,000 sessions).
func (c *conn) negotiated(ctx context.Context) (readLoop func()) {
	c.id = randomID()
	defer c.slot.free()
	// The login deadline runs from accept (the TLS handshake of direct
	// TLS, the WebSocket upgrade included): a client that sends a byte
	// now and then cannot stretch it, whatever each read waits.
	start := time.Now()
	if c.slot != nil && !c.slot.since.IsZero() {
		start = c.slot.since
	}
	c.authDeadline = start.Add(c.srv.cfg.AuthTimeout)
	authTimer := time.AfterFunc(time.Until(c.authDeadline), func() {
		_ = c.tr.writeError(errStream("connection-timeout", "authentication took too long"))
		_ = c.tr.close()
	})
	c.authTimer = authTimer
	c.tr.setIdle(c.srv.cfg.AuthTimeout, 0, nil)
	// Shutdown closes bound sessions; a stream still negotiating is
	// closed here when the server stops.
	stop := context.AfterFunc(ctx, func() {
		_ = c.tr.writeError(errStream("system-shutdown", ""))
		_ = c.tr.close()
	})
	sess, err := c.negotiate(ctx)
	authTimer.Stop()
	if !stop() && err == nil {
		err = errStream("system-shutdown", "")
		c.srv.readLoopEnded(ctx, sess, c.tr, err)
		return nil
	}
	if err != nil {
		c.fail(err)
		return nil
	}
	if r := c.srv.cfg.ReadBytesPerSecond; r > 0 {
		c.tr.limitRead(newReadBucket(r, c.srv.cfg.ReadBurstBytes))
	}
	return func() { c.srv.readLoop(ctx, sess, c.tr) }
}

// fail writes a stream error where the peer broke the protocol, then closes.
func (c *conn) fail(err error) {
	var se *streamError
	if errors.As(err, &se) {
		c.log().Debug("stream error", zap.String("condition", se.cond), zap.String("text", se.text))
		_ = c.tr.writeError(se)
		_ = c.tr.lingerClose()
		return
	} else if errors.Is(err, errClientClosed) {
		_ = c.tr.writeClose()
	} else if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
		c.log().Debug("connection ended", zap.Error(err))
	}
	_ = c.tr.close()
}

func (c *conn) next() (*element.Element, error) {
	ev, err := c.tr.next()
	if err != nil {
		return nil, err
	}
	switch ev.kind {
	case evClose:
		return nil, errClientClosed
	case evOpen:
		return nil, errStream("bad-format", "unexpected stream header")
	}
	return ev.el, nil
}

// open reads the client's stream header and answers it with features.
func (c *conn) open() error {
	ev, err := c.tr.next()
	if err != nil {
		return err
	}
	if ev.kind != evOpen {
		return errStream("bad-format", "expected a stream header")
	}
	if ev.ns != "" && ev.ns != stanza.NSClient {
		return errStream("invalid-namespace", "")
	}
	domain := ev.to
	if domain == "" && len(c.srv.cfg.Domains) == 1 {
		domain = c.srv.cfg.Domains[0]
	}
	if d, err := jid.Parse(domain); err == nil {
		domain = d.Domainpart()
	}
	if !c.srv.isLocal(domain) || (c.domain != "" && domain != c.domain) {
		_ = c.tr.writeOpen(c.srv.cfg.Domains[0], c.id)
		return errStream("host-unknown", "")
	}
	c.domain = domain
	if err := c.tr.writeOpen(domain, c.id); err != nil {
		return err
	}
	if ev.version == "" || ev.version[0] < '1' {
		return errStream("unsupported-version", "")
	}
	return nil
}

func (c *conn) negotiate(ctx context.Context) (*Session, error) {
	for {
		if err := c.open(); err != nil {
			return nil, err
		}
		switch {
		case !c.tr.secure():
			if err := c.startTLS(ctx); err != nil {
				return nil, err
			}
		case !c.authed:
			if err := c.authenticate(ctx); err != nil {
				return nil, err
			}
			c.tr.restart()
			c.tr.setBounds(c.srv.cfg.authBounds())
		default:
			return c.bind(ctx)
		}
	}
}

func (c *conn) startTLS(ctx context.Context) error {
	feat := element.New(nsTLS, "starttls").Append(element.New(nsTLS, "required"))
	if err := c.tr.writeFeatures([]*element.Element{feat}); err != nil {
		return err
	}
	el, err := c.next()
	if err != nil {
		return err
	}
	if el.Space != nsTLS || el.Local != "starttls" || c.tcp == nil {
		return errStream("not-authorized", "STARTTLS is required")
	}
	if err := c.tr.write([][]byte{[]byte("<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")}); err != nil {
		return err
	}
	rec := newRecordConn(c.tcp.raw)
	tc := tls.Server(rec, c.srv.cfg.TLS)
	hctx, cancel := context.WithDeadline(ctx, c.authDeadline)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		return err
	}
	c.tcp.upgrade(tc, rec)
	c.cb = bindingOf(tc.ConnectionState(), c.srv.cfg.Leaf)
	return nil
}

// bindingOf computes channel-binding data for a TLS connection.
func bindingOf(cs tls.ConnectionState, leaf func() []byte) sasl.Binding {
	var b sasl.Binding
	if ex, err := certs.TLSExporter(cs); err == nil {
		b.Exporter = ex
	}
	if leaf != nil {
		b.EndPoint = leaf()
	}
	return b
}

func (c *conn) authenticate(ctx context.Context) error {
	mechs := c.srv.h.Mechanisms(c.domain, c.cb)
	feats := []*element.Element{}
	ml := element.New(nsSASL, "mechanisms")
	for _, m := range mechs {
		ml.Append(element.New(nsSASL, "mechanism").SetText(m.Name()))
	}
	feats = append(feats, ml)
	if c.cb.Exporter != nil || c.cb.EndPoint != nil {
		cb := element.New(nsSASLCB, "sasl-channel-binding")
		if c.cb.Exporter != nil {
			cb.Append(element.New(nsSASLCB, "channel-binding", element.A("type", "tls-exporter")))
		}
		if c.cb.EndPoint != nil {
			cb.Append(element.New(nsSASLCB, "channel-binding", element.A("type", "tls-server-end-point")))
		}
		feats = append(feats, cb)
	}
	feats = append(feats, c.srv.h.StreamFeatures(false)...)
	if err := c.tr.writeFeatures(feats); err != nil {
		return err
	}
	for {
		el, err := c.next()
		if err != nil {
			return err
		}
		switch {
		case el.Space == nsSASL && el.Local == "auth":
			ok, err := c.saslExchange(ctx, mechs, el)
			if err != nil {
				return err
			}
			if ok {
				c.slot.free() // authenticated: no longer counted as unauthenticated
				return nil
			}
			c.fails++
			if c.fails >= maxAuthFailures {
				return errStream("not-authorized", "too many failed authentication attempts")
			}
			// A short, growing pause slows password guessing on one stream.
			time.Sleep(time.Duration(c.fails) * 200 * time.Millisecond)
		case el.Space == stanza.NSClient && el.Local == "iq":
			if err := c.preAuthIQ(ctx, el); err != nil {
				return err
			}
		default:
			return errStream("not-authorized", "authenticate first")
		}
	}
}

func (c *conn) preAuthIQ(ctx context.Context, el *element.Element) error {
	st, err := stanza.Parse(el)
	if err != nil || !st.IsRequest() {
		return errStream("not-authorized", "authenticate first")
	}
	st.From = jid.JID{}
	reply := c.srv.h.PreAuthIQ(ctx, c.domain, st)
	if reply == nil {
		return errStream("not-authorized", "authenticate first")
	}
	if err := c.tr.write([][]byte{reply.El.AppendTo(nil, stanza.NSClient)}); err != nil {
		return err
	}
	if st.Type == "get" && reply.Type == "result" {
		if p := st.Payload(); p != nil && p.Space == nsRegister && p.Local == "query" {
			c.registrationStarted()
		}
	}
	return nil
}

// registrationStarted gives a stream whose client was just handed the
// XEP-0077 registration form time to fill it in: the login deadline moves
// to Config.RegistrationTimeout from now (never earlier than it was), once
// per stream, so the stream stays bounded whatever the client asks.
func (c *conn) registrationStarted() {
	d := c.srv.cfg.RegistrationTimeout
	if c.registering || d <= 0 || c.authTimer == nil {
		return
	}
	c.registering = true
	deadline := time.Now().Add(d)
	if !deadline.After(c.authDeadline) {
		return
	}
	if !c.authTimer.Stop() {
		return // the login deadline passed already: the stream is closing
	}
	c.authDeadline = deadline
	c.authTimer.Reset(d)
	c.tr.setIdle(d, 0, nil)
	c.log().Debug("registration form sent: login deadline extended", zap.Duration("window", d))
}

func saslFailure(cond, text string) []byte {
	f := element.New(nsSASL, "failure").Append(element.New(nsSASL, cond))
	if text != "" {
		f.Append(element.New(nsSASL, "text").SetText(text))
	}
	return f.AppendTo(nil, stanza.NSClient)
}

// failureDetail is the audit detail of a refusal: a *sasl.Failure's cause.
func failureDetail(err error) string {
	var f *sasl.Failure
	if errors.As(err, &f) && f.Err != nil {
		return f.Err.Error()
	}
	return err.Error()
}

// lockedFailure is the <failure/> for a lockout.
func lockedFailure(err error) []byte {
	cond, text := "not-authorized", "temporarily locked after failed logins"
	var f *sasl.Failure
	if errors.As(err, &f) {
		cond, text = f.Condition, f.Text
	}
	return saslFailure(cond, text)
}

// saslExchange runs one SASL attempt; ok reports success. A failure is
// answered here; err is only for stream-level trouble.
func (c *conn) saslExchange(ctx context.Context, mechs []sasl.Mechanism, auth *element.Element) (ok bool, err error) {
	name := auth.Attr("mechanism")
	var mech sasl.Mechanism
	for _, m := range mechs {
		if m.Name() == name {
			mech = m
		}
	}
	detail := ""
	audit := func(result, reason string) {
		ip := c.tr.remoteAddr()
		if h, _, err := net.SplitHostPort(ip); err == nil {
			ip = h
		}
		fields := []zap.Field{zap.String("result", result), zap.String("user", c.user), zap.String("domain", c.domain),
			zap.String("mechanism", name), zap.String("remote", c.tr.remoteAddr()), zap.String("ip", ip), zap.String("reason", reason)}
		if detail != "" {
			fields = append(fields, zap.String("detail", detail))
		}
		c.srv.audit.Info("login", fields...)
		if reason == "locked" {
			result = metrics.LoginLocked
		}
		c.srv.cfg.Metrics.Login(result, name)
	}
	if err := c.srv.h.LoginLocked(jid.JID{}, c.tr.remoteAddr()); err != nil {
		detail = failureDetail(err)
		audit("failure", "locked")
		return false, c.tr.write([][]byte{lockedFailure(err)})
	}
	if mech == nil {
		audit("failure", "invalid-mechanism")
		return false, c.tr.write([][]byte{saslFailure("invalid-mechanism", "")})
	}
	cb := c.cb
	if c.cbRejected && !strings.HasSuffix(name, "-PLUS") {
		cb = sasl.Binding{}
	}
	ex := mech.Start(cb)
	in, bad := decodeSASL(auth.Text())
	for {
		if bad {
			audit("failure", "incorrect-encoding")
			return false, c.tr.write([][]byte{saslFailure("incorrect-encoding", "")})
		}
		var out []byte
		var done bool
		var serr error
		if in == nil {
			// No initial response: ask for it with an empty challenge.
			out, done, serr = nil, false, nil
		} else {
			out, done, serr = ex.Step(ctx, in)
		}
		if serr != nil {
			var f *sasl.Failure
			cond, text := "not-authorized", ""
			if errors.As(serr, &f) {
				cond, text = f.Condition, f.Text
				if f.Err != nil && cond != "temporary-auth-failure" {
					detail = f.Err.Error()
				}
			}
			c.user = ex.Username()
			if strings.HasSuffix(name, "-PLUS") && text == "unsupported channel binding type" {
				c.cbRejected = true
			}
			audit("failure", cond)
			if cond == "temporary-auth-failure" {
				c.log().Warn("authentication backend failed", zap.Error(serr))
			}
			if cond == "not-authorized" && c.user != "" {
				// Wrong credentials: counted per account and address;
				// the answer waits longer with each failure.
				bare, _ := jid.New(c.user, c.domain, "")
				if d := c.srv.h.LoginFailed(bare, c.tr.remoteAddr()); d > 0 {
					time.Sleep(d)
				}
				// While locked, a wrong password gets the answer the right
				// one gets, or the difference would confirm a guess.
				if err := c.srv.h.LoginLocked(bare, c.tr.remoteAddr()); err != nil {
					return false, c.tr.write([][]byte{lockedFailure(err)})
				}
			}
			return false, c.tr.write([][]byte{saslFailure(cond, text)})
		}
		if done {
			c.user = ex.Identity()
			bare, jerr := jid.New(c.user, c.domain, "")
			if jerr != nil {
				audit("failure", "invalid username")
				return false, c.tr.write([][]byte{saslFailure("not-authorized", "")})
			}
			if az := ex.Authzid(); az != "" {
				if aj, err := jid.Parse(az); err != nil || !aj.Equal(bare) {
					audit("failure", "invalid-authzid")
					return false, c.tr.write([][]byte{saslFailure("invalid-authzid", "")})
				}
			}
			if err := c.srv.h.LoginLocked(bare, c.tr.remoteAddr()); err != nil {
				// Even the right password fails while the account is locked.
				detail = failureDetail(err)
				audit("failure", "locked")
				return false, c.tr.write([][]byte{lockedFailure(err)})
			}
			grant, aerr := c.srv.h.AuthorizeLogin(ctx, bare, c.tr.remoteAddr())
			if aerr != nil {
				cond, text := "not-authorized", ""
				detail = aerr.Error()
				var f *sasl.Failure
				if errors.As(aerr, &f) {
					cond, text = f.Condition, f.Text
					if f.Err != nil {
						detail = f.Err.Error()
					}
				}
				audit("failure", cond)
				return false, c.tr.write([][]byte{saslFailure(cond, text)})
			}
			c.grant = grant
			c.srv.h.LoginSucceeded(bare, c.tr.remoteAddr())
			c.user = bare.Localpart()
			c.mech = name
			c.authed = true
			audit("success", "")
			succ := element.New(nsSASL, "success")
			if len(out) > 0 {
				succ.SetText(base64.StdEncoding.EncodeToString(out))
			}
			return true, c.tr.write([][]byte{succ.AppendTo(nil, stanza.NSClient)})
		}
		ch := element.New(nsSASL, "challenge")
		if len(out) > 0 {
			ch.SetText(base64.StdEncoding.EncodeToString(out))
		}
		if err := c.tr.write([][]byte{ch.AppendTo(nil, stanza.NSClient)}); err != nil {
			return false, err
		}
		el, err := c.next()
		if err != nil {
			return false, err
		}
		if el.Space != nsSASL {
			return false, errStream("not-authorized", "authenticate first")
		}
		switch el.Local {
		case "response":
			in, bad = decodeSASL(el.Text())
			if in == nil {
				in = []byte{}
			}
		case "abort":
			audit("failure", "aborted")
			return false, c.tr.write([][]byte{saslFailure("aborted", "")})
		default:
			return false, errStream("bad-format", "unexpected SASL element")
		}
	}
}

// decodeSASL decodes SASL data: "" is no data (nil), "=" is empty data.
func decodeSASL(s string) (data []byte, bad bool) {
	switch s {
	case "":
		return nil, false
	case "=":
		return []byte{}, false
	}
	b, err := base64.StdEncoding.Strict().DecodeString(s) // canonical padding bits (RFC 4648 3.5)
	if err != nil {
		return nil, true
	}
	return b, false
}

// bind offers resource binding and stream resumption (XEP-0198), and
// returns the bound or resumed session.
func (c *conn) bind(ctx context.Context) (*Session, error) {
	feats := []*element.Element{
		element.New(nsBind, "bind"),
		element.New(nsSession, "session").Append(element.New(nsSession, "optional")),
		element.New(nsSM, "sm"),
		element.New(nsCSI, "csi"),
	}
	feats = append(feats, c.srv.h.StreamFeatures(true)...)
	if err := c.tr.writeFeatures(feats); err != nil {
		return nil, err
	}
	bare, _ := jid.New(c.user, c.domain, "")
	for {
		el, err := c.next()
		if err != nil {
			return nil, err
		}
		switch {
		case el.Space == nsSM && el.Local == "resume":
			if s := c.srv.resume(ctx, c, bare, el); s != nil {
				return s, nil
			}
		case el.Space == nsSM && el.Local == "enable":
			f := element.New(nsSM, "failed").Append(element.New(stanza.NSStanzas, "unexpected-request"))
			if err := c.tr.write([][]byte{f.AppendTo(nil, stanza.NSClient)}); err != nil {
				return nil, err
			}
		case el.Space == stanza.NSClient && el.Local == "iq":
			st, perr := stanza.Parse(el)
			if perr != nil || !st.IsRequest() {
				return nil, errStream("not-authorized", "bind a resource first")
			}
			p := st.Payload()
			switch {
			case p != nil && p.Space == nsBind && p.Local == "bind" && st.Type == "set":
				s, reply := c.srv.bindResource(ctx, c, bare, st)
				if err := c.tr.write([][]byte{reply.El.AppendTo(nil, stanza.NSClient)}); err != nil {
					if s != nil {
						c.srv.readLoopEnded(ctx, s, c.tr, err)
					}
					return nil, err
				}
				if s != nil {
					return s, nil
				}
			case p != nil && p.Space == nsSession:
				r := st.Result(nil)
				r.SetFrom(jid.JID{})
				r.SetTo(jid.JID{})
				if err := c.tr.write([][]byte{r.El.AppendTo(nil, stanza.NSClient)}); err != nil {
					return nil, err
				}
			default:
				return nil, errStream("not-authorized", "bind a resource first")
			}
		default:
			return nil, errStream("not-authorized", "bind a resource first")
		}
	}
}

func smFailed(cond string) []byte {
	return element.New(nsSM, "failed").Append(element.New(stanza.NSStanzas, cond)).AppendTo(nil, stanza.NSClient)
}

func parseH(v string) (uint32, bool) {
	h, err := strconv.ParseUint(v, 10, 32)
	return uint32(h), err == nil
}
