package s2s

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/palisade-im/palisade/server/config"
	"github.com/palisade-im/palisade/server/element"
	"github.com/palisade-im/palisade/server/stanza"
	"go.uber.org/zap"
)

// endpoint is one address to try for a peer domain.
type endpoint struct {
	addr      string
	directTLS bool
}

// endpoints lists where to reach a partner's domain: its pinned
// endpoints, else the _xmpps-server (direct TLS) and _xmpp-server SRV
// records (RFC 6120 3.2.1, XEP-0368), else the domain on port 5269.
func (s *Server) endpoints(ctx context.Context, domain string, p *config.Partner) ([]endpoint, error) {
	if len(p.Endpoints) > 0 {
		out := make([]endpoint, len(p.Endpoints))
		for i, a := range p.Endpoints {
			out[i] = endpoint{addr: a, directTLS: p.DirectTLS}
		}
		return out, nil
	}
	var out []endpoint
	found := false
	for _, svc := range []struct {
		name   string
		direct bool
	}{{"xmpps-server", true}, {"xmpp-server", false}} {
		_, srvs, err := s.cfg.Resolver.LookupSRV(ctx, svc.name, "tcp", domain)
		if err != nil {
			continue
		}
		found = true
		for _, r := range srvs {
			if r.Target == "." {
				continue // RFC 2782: the service is decidedly not offered
			}
			out = append(out, endpoint{addr: net.JoinHostPort(trimDot(r.Target), strconv.Itoa(int(r.Port))), directTLS: svc.direct})
		}
	}
	if !found {
		out = append(out, endpoint{addr: net.JoinHostPort(domain, "5269")})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s offers no server-to-server service (SRV target \".\")", domain)
	}
	return out, nil
}

func trimDot(s string) string {
	if len(s) > 0 && s[len(s)-1] == '.' {
		return s[:len(s)-1]
	}
	return s
}

// outConn is a negotiated outbound connection, under TLS.
type outConn struct {
	f        *frame
	conn     net.Conn
	id       string // the peer's stream id
	cs       tls.ConnectionState
	leaf     *x509.Certificate
	verified bool // the peer's certificate verified for the domain
	verr     error
	feats    *element.Element // features after TLS
	addr     string
}

func (c *outConn) close() { _ = c.conn.Close() }

// errNotFound marks failures to reach any endpoint of a domain (bounced
// as remote-server-not-found); others are remote-server-timeout.
var errNotFound = errors.New("no endpoint answered")

// connect dials the partner's endpoints in turn and negotiates TLS
// (required): it returns the connection with the stream features offered
// under TLS. A peer certificate that does not verify is an error unless
// the partner allows dialback.
func (s *Server) connect(ctx context.Context, r route, p *config.Partner) (*outConn, error) {
	eps, err := s.endpoints(ctx, r.remote, p)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errNotFound, err)
	}
	var errs []error
	for _, ep := range eps {
		c, err := s.connectOne(ctx, r, p, ep)
		if err == nil {
			return c, nil
		}
		var refused *refusal
		if errors.As(err, &refused) {
			return nil, err // the peer is there, and not acceptable
		}
		errs = append(errs, fmt.Errorf("%s: %w", ep.addr, err))
	}
	return nil, fmt.Errorf("%w: %w", errNotFound, errors.Join(errs...))
}

// refusal is a peer that answered but may not be federated with (its
// certificate, its refusal of TLS): trying another endpoint is useless.
type refusal struct{ reason string }

func (r *refusal) Error() string { return r.reason }

func (s *Server) connectOne(ctx context.Context, r route, p *config.Partner, ep endpoint) (*outConn, error) {
	raw, err := s.cfg.Dial(ctx, "tcp", ep.addr)
	if err != nil {
		return nil, err
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(time.Duration(s.fed().ConnectTimeout))
	}
	_ = raw.SetDeadline(deadline)
	c := &outConn{conn: raw, addr: ep.addr}
	c.f = newFrame(raw, s.cfg.MaxStanza, s.cfg.Limits, 30*time.Second)
	fail := func(err error) (*outConn, error) {
		var se *StreamError
		if errors.As(err, &se) {
			_ = c.f.writeError(se)
		}
		_ = c.conn.Close()
		return nil, err
	}
	handshake := func() error {
		tc := tls.Client(c.conn, s.clientTLS(r.remote))
		hctx, cancel := context.WithDeadline(ctx, deadline)
		defer cancel()
		if err := tc.HandshakeContext(hctx); err != nil {
			return fmt.Errorf("TLS handshake: %w", err)
		}
		c.conn = tc
		c.cs = tc.ConnectionState()
		c.f.reset(tc)
		c.leaf, c.verr = verifyPeer(c.cs, r.remote, s.trustOf(p), s.cfg.Now())
		c.verified = c.verr == nil
		if !c.verified && !p.Dialback {
			return &refusal{reason: c.verr.Error() + "; dialback is not allowed for partner " + p.Name}
		}
		return nil
	}
	if ep.directTLS {
		if err := handshake(); err != nil {
			return fail(err)
		}
	}
	for {
		if err := c.f.writeHeader(r.local, r.remote, ""); err != nil {
			return fail(err)
		}
		h, err := c.f.readHeader(deadline)
		if err != nil {
			return fail(err)
		}
		if h.from != "" && h.from != r.remote {
			return fail(&refusal{reason: "the peer answered as " + h.from})
		}
		c.id = h.id
		feats, err := c.f.next()
		if err != nil {
			return fail(err)
		}
		if feats.Space == nsStream && feats.Local == "error" {
			return fail(&refusal{reason: "the peer refused the stream: " + describeStreamError(feats)})
		}
		if feats.Space != nsStream || feats.Local != "features" {
			return fail(streamErr("bad-format", "expected stream features"))
		}
		if c.cs.HandshakeComplete {
			c.feats = feats
			return c, nil
		}
		if feats.Child(nsTLS, "starttls") == nil {
			return fail(&refusal{reason: "the peer does not offer STARTTLS, and this server federates only under TLS"})
		}
		if err := c.f.write([]byte("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")); err != nil {
			return fail(err)
		}
		el, err := c.f.next()
		if err != nil {
			return fail(err)
		}
		if el.Space != nsTLS || el.Local != "proceed" {
			return fail(&refusal{reason: "the peer refused STARTTLS"})
		}
		if err := handshake(); err != nil {
			return fail(err)
		}
	}
}

// authenticate proves our domain to the peer over c: SASL EXTERNAL when
// offered, else dialback (XEP-0220). It returns the method.
func (s *Server) authenticate(ctx context.Context, r route, c *outConn) (string, error) {
	deadline, _ := ctx.Deadline()
	mechs := c.feats.Child(nsSASL, "mechanisms")
	external := false
	if mechs != nil {
		for _, m := range mechs.Elements() {
			if m.Local == "mechanism" && m.Text() == "EXTERNAL" {
				external = true
			}
		}
	}
	if external && c.verified {
		auth := element.New(nsSASL, "auth").SetAttr("mechanism", "EXTERNAL").SetText(base64.StdEncoding.EncodeToString([]byte(r.local)))
		if err := c.f.writeElement(auth); err != nil {
			return "", err
		}
		el, err := c.f.next()
		if err != nil {
			return "", err
		}
		if el.Space == nsSASL && el.Local == "success" {
			c.f.reset(c.conn)
			if err := c.f.writeHeader(r.local, r.remote, ""); err != nil {
				return "", err
			}
			if _, err := c.f.readHeader(deadline); err != nil {
				return "", err
			}
			if _, err := c.f.next(); err != nil { // the (empty) features
				return "", err
			}
			return AuthExternal, nil
		}
		s.log.Info("s2s SASL EXTERNAL refused, trying dialback", zap.String("peer", r.remote), zap.String("answer", el.String()))
	}
	// Dialback: the peer verifies our key with us (validKey).
	if c.feats.Child(nsDBFeature, "dialback") == nil && !external {
		s.log.Debug("s2s peer does not announce dialback; trying it anyway", zap.String("peer", r.remote))
	}
	key := dialbackKey(s.cfg.DialbackSecret, r.remote, r.local, c.id)
	if err := c.f.writeElement(dbElement("result", r.local, r.remote, "", "", key)); err != nil {
		return "", err
	}
	for {
		el, err := c.f.next()
		if err != nil {
			return "", fmt.Errorf("waiting for the dialback result: %w", err)
		}
		if el.Space == nsStream && el.Local == "error" {
			return "", &refusal{reason: "the peer refused us: " + describeStreamError(el)}
		}
		if el.Space != nsDialback || el.Local != "result" {
			continue
		}
		switch el.Attr("type") {
		case "valid":
			if c.verified {
				return AuthDialbackPKIX, nil
			}
			return AuthDialback, nil
		default:
			return "", &refusal{reason: "the peer did not accept our dialback key: " + el.String()}
		}
	}
}

// outStream is the outgoing stream of one route with its queue.
type outStream struct {
	s *Server
	route

	mu       sync.Mutex
	queue    []*stanza.Stanza
	qbytes   int
	running  bool
	ready    bool
	conn     *outConn
	auth     string
	since    time.Time
	retryAt  time.Time // no new attempt before this
	lastErr  error
	backoff  time.Duration
	wake     chan struct{}
	shutErr  *StreamError
	sent     atomic.Int64
	shutOnce sync.Once
	shutCh   chan struct{}
}

func newOutStream(s *Server, r route) *outStream {
	return &outStream{s: s, route: r, wake: make(chan struct{}, 1), shutCh: make(chan struct{})}
}

func (o *outStream) status() (StreamStatus, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.ready || o.conn == nil {
		return StreamStatus{}, false
	}
	st := StreamStatus{Peer: o.remote, Partner: partnerOf(o.s.Partner(o.remote)), Direction: "out", Auth: o.auth,
		Local: o.local, RemoteAddr: o.conn.addr, TLS: tlsName(o.conn.cs.Version), CertNotAfter: notAfter(o.conn.leaf),
		Established: o.since, StanzasOut: o.sent.Load()}
	return st, true
}

// enqueue adds st to the queue, starting the stream when it is not running.
func (o *outStream) enqueue(ctx context.Context, st *stanza.Stanza) {
	fed := o.s.fed()
	size := len(st.Wire())
	o.mu.Lock()
	if !o.running && o.s.cfg.Now().Before(o.retryAt) {
		err := o.lastErr
		o.mu.Unlock()
		o.s.h.Bounce(ctx, st, bounceError(o.remote, err))
		return
	}
	if len(o.queue) >= fed.QueueStanzas || o.qbytes+size > fed.QueueBytes {
		o.mu.Unlock()
		o.s.h.Bounce(ctx, st, stanza.Err(stanza.Wait, stanza.ResourceConstraint, "too much is waiting for "+o.remote))
		return
	}
	o.queue = append(o.queue, st)
	o.qbytes += size
	start := !o.running
	o.running = true
	o.mu.Unlock()
	if start {
		o.s.wg.Add(1)
		go o.run()
	} else {
		select {
		case o.wake <- struct{}{}:
		default:
		}
	}
}

// bounceError is the error a stanza gets when its peer cannot be reached.
func bounceError(remote string, err error) *stanza.Error {
	var r *refusal
	switch {
	case errors.As(err, &r):
		return stanza.Err(stanza.Cancel, stanza.RemoteServerNotFound, remote+" refused: "+r.reason)
	case errors.Is(err, errNotFound):
		return stanza.Err(stanza.Cancel, stanza.RemoteServerNotFound, "could not reach "+remote)
	}
	return stanza.Err(stanza.Wait, stanza.RemoteServerTimeout, "no answer from "+remote)
}

// run establishes the stream and writes the queue until the stream idles
// out or fails.
func (o *outStream) run() {
	defer o.s.wg.Done()
	s := o.s
	err := o.establish()
	if err != nil {
		o.failed(err)
		return
	}
	readerDone := make(chan error, 1)
	go func() { readerDone <- o.read() }()
	idle := time.NewTimer(time.Duration(s.fed().IdleTimeout))
	defer idle.Stop()
	var batch [][]byte
	for {
		o.mu.Lock()
		q := o.queue
		o.queue, o.qbytes = nil, 0
		o.mu.Unlock()
		if len(q) > 0 {
			batch = batch[:0]
			for _, st := range q {
				batch = append(batch, st.Wire())
			}
			if err := o.conn.f.writeElements(batch); err != nil {
				o.mu.Lock()
				o.queue = append(q, o.queue...)
				o.mu.Unlock()
				o.failed(fmt.Errorf("write: %w", err))
				return
			}
			o.sent.Add(int64(len(q)))
			if !idle.Stop() {
				select {
				case <-idle.C:
				default:
				}
			}
			idle.Reset(time.Duration(s.fed().IdleTimeout))
			continue
		}
		select {
		case <-o.wake:
		case <-idle.C:
			o.close("idle", readerDone)
			return
		case err := <-readerDone:
			o.failed(fmt.Errorf("the peer closed the stream: %w", err))
			return
		case <-o.shutCh:
			o.failed(errors.New("stream closed: " + o.shutErr.Condition))
			return
		}
	}
}

// establish connects and authenticates.
func (o *outStream) establish() error {
	s := o.s
	p := s.Partner(o.remote)
	if p == nil {
		return &refusal{reason: o.remote + " is not a federation partner of this server"}
	}
	ctx, cancel := context.WithTimeout(s.ctx, time.Duration(s.fed().ConnectTimeout))
	defer cancel()
	c, err := s.connect(ctx, o.route, p)
	if err != nil {
		s.audit.Info("s2s_stream_failed", zap.String("direction", "out"), zap.String("peer", o.remote), zap.Error(err))
		return err
	}
	method, err := s.authenticate(ctx, o.route, c)
	if err != nil {
		c.close()
		s.audit.Info("s2s_stream_failed", zap.String("direction", "out"), zap.String("peer", o.remote), zap.Error(err))
		return err
	}
	_ = c.conn.SetDeadline(time.Time{})
	o.mu.Lock()
	o.conn, o.auth, o.ready, o.since = c, method, true, time.Now()
	o.backoff = 0
	o.mu.Unlock()
	s.audit.Info("s2s_stream_established", zap.String("direction", "out"), zap.String("peer", o.remote),
		zap.String("partner", p.Name), zap.String("auth", method), zap.String("remote_addr", c.addr),
		zap.Time("cert_not_after", notAfter(c.leaf)), zap.String("tls", tlsName(c.cs.Version)))
	return nil
}

// read reads what the peer sends on our outgoing stream: only stream
// errors and its close are expected.
func (o *outStream) read() error {
	for {
		el, err := o.conn.f.next()
		if err != nil {
			return err
		}
		if el.Space == nsStream && el.Local == "error" {
			o.s.log.Info("s2s peer sent a stream error", zap.String("peer", o.remote), zap.String("error", describeStreamError(el)))
			return errors.New(describeStreamError(el))
		}
		// Stanzas on our stream (bidirectional streams are not
		// negotiated) are dropped.
		o.s.log.Debug("s2s: element on an outgoing stream dropped", zap.String("peer", o.remote), zap.String("element", el.Local))
	}
}

// failed ends the stream after err: what is queued is bounced, and no new
// attempt is made before the backoff elapsed.
func (o *outStream) failed(err error) {
	s := o.s
	o.mu.Lock()
	q := o.queue
	o.queue, o.qbytes = nil, 0
	wasReady := o.ready
	shut := o.shutErr != nil // shut audited the close already
	o.ready, o.running = false, false
	c := o.conn
	o.conn = nil
	if !wasReady {
		fed := s.fed()
		o.backoff *= 2
		if o.backoff < time.Duration(fed.RetryMin) {
			o.backoff = time.Duration(fed.RetryMin)
		}
		if o.backoff > time.Duration(fed.RetryMax) {
			o.backoff = time.Duration(fed.RetryMax)
		}
		o.retryAt = s.cfg.Now().Add(o.backoff)
		o.lastErr = err
	}
	o.mu.Unlock()
	if c != nil {
		c.close()
		if !shut {
			s.audit.Info("s2s_stream_closed", zap.String("direction", "out"), zap.String("peer", o.remote), zap.String("reason", err.Error()))
		}
	}
	if !wasReady {
		s.log.Info("s2s: could not reach peer", zap.String("peer", o.remote), zap.Error(err), zap.Int("bounced", len(q)))
	}
	e := bounceError(o.remote, err)
	for _, st := range q {
		s.h.Bounce(context.Background(), st, e)
	}
	// A stream that was up and failed is replaced from the next stanza on.
	if wasReady {
		s.forget(o)
	}
}

// closeWait bounds how long a closing stream waits for the peer's
// </stream:stream> (RFC 6120 4.4) before the connection is closed.
const closeWait = 2 * time.Second

// close ends an idle stream cleanly: our </stream:stream>, then the
// peer's (readerDone reports it), then the connection.
func (o *outStream) close(why string, readerDone <-chan error) {
	o.mu.Lock()
	c := o.conn
	o.conn, o.ready, o.running = nil, false, false
	q := o.queue
	o.queue = nil
	o.mu.Unlock()
	o.s.forget(o)
	if c != nil {
		_ = c.f.writeClose()
		select {
		case <-readerDone:
		case <-time.After(closeWait):
		}
		_ = c.conn.Close()
		o.s.log.Debug("s2s outgoing stream closed", zap.String("peer", o.remote), zap.String("reason", why))
	}
	for _, st := range q {
		// Arrived between the last drain and the close: send anew.
		o.s.Send(context.Background(), st)
	}
}

// shut closes the stream with a stream error (partner removed, shutdown).
func (o *outStream) shut(se *StreamError, why string) {
	o.shutOnce.Do(func() {
		o.mu.Lock()
		o.shutErr = se
		c := o.conn
		o.mu.Unlock()
		if c != nil {
			_ = c.f.writeError(se)
			o.s.audit.Info("s2s_stream_closed", zap.String("direction", "out"), zap.String("peer", o.remote),
				zap.String("condition", se.Condition), zap.String("reason", why))
		}
		close(o.shutCh)
	})
}
