// Package c2s serves client-to-server XMPP streams (RFC 6120): STARTTLS,
// direct TLS (XEP-0368) and WebSocket (RFC 7395) listeners, SASL, resource
// binding, and the per-session reader and writer that own XEP-0198 stream
// management and XEP-0352 client state.
package c2s

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/palisade-im/palisade/server/element"
	"github.com/palisade-im/palisade/server/metrics"
	"github.com/palisade-im/palisade/server/router"
	"github.com/palisade-im/palisade/server/sasl"
	"github.com/palisade-im/palisade/server/stanza"
	"go.uber.org/zap"
	"golang.org/x/net/websocket"
	"mellium.im/xmpp/jid"
)

// Handler is the rest of the server as the c2s layer sees it.
type Handler interface {
	// Mechanisms lists the SASL mechanisms offered for a domain.
	Mechanisms(domain string, b sasl.Binding) []sasl.Mechanism
	// StreamFeatures returns module stream features.
	StreamFeatures(authenticated bool) []*element.Element
	// PreAuthIQ answers an IQ before authentication, or returns nil.
	PreAuthIQ(ctx context.Context, domain string, iq *stanza.Stanza) *stanza.Stanza
	// AuthorizeLogin applies the access rules to an authenticated account
	// connecting from remote (host:port) before SASL success is sent. It
	// returns what the login is granted, or a *sasl.Failure to refuse the
	// login with.
	AuthorizeLogin(ctx context.Context, bare jid.JID, remote string) (Grant, error)
	// LoginLocked returns a *sasl.Failure when the account (zero JID: not
	// known yet) or the client address is locked out after failed logins.
	LoginLocked(bare jid.JID, remote string) error
	// LoginFailed records a failed login (wrong credentials) and returns
	// the pause to impose before answering.
	LoginFailed(bare jid.JID, remote string) time.Duration
	// LoginSucceeded records a login with the right credentials that the
	// access rules admitted, from remote (host:port): the address becomes
	// trusted for the account and its failures there are forgotten.
	LoginSucceeded(bare jid.JID, remote string)
	// SessionStarted runs after bind.
	SessionStarted(ctx context.Context, s *Session)
	// HandleStanza processes a stanza from a bound session ('from'
	// stamped). It may return a last step (a message's delivery after
	// its journal commit), which the session runs in order, after it has
	// handed over the stanzas that arrived together with st.
	HandleStanza(ctx context.Context, s *Session, st *stanza.Stanza) (then func())
	// SessionEnded runs when the session is gone for good.
	SessionEnded(ctx context.Context, s *Session)
	// Reroute takes stanzas a session could not deliver (serialized).
	Reroute(ctx context.Context, s *Session, stanzas [][]byte)
}

// Grant is what the access rules grant one login.
type Grant struct {
	// MaxSessions caps the account's sessions (0: Config.MaxSessions).
	MaxSessions int
	// MaxDuration ends the session bound on this login once it is that
	// old (0: no limit). A resumption keeps the session's first deadline.
	MaxDuration time.Duration
}

// Config holds the c2s settings.
type Config struct {
	Domains   []string
	TLS       *tls.Config
	Leaf      func() []byte // tls-server-end-point data of the current certificate
	MaxStanza int64
	// PreauthStanza is the largest element before authentication (0:
	// MaxStanza); MaxElements bounds the elements and attributes of one
	// stanza after it (0: no bound).
	PreauthStanza int64
	MaxElements   int
	AuthTimeout   time.Duration
	IdleTimeout   time.Duration
	PingTimeout   time.Duration
	WriteTimeout  time.Duration
	SendQueue     int
	ResumeTimeout time.Duration
	MaxSessions   int
	// RegistrationTimeout is the login deadline of a stream from the
	// moment it is handed an XEP-0077 registration form, once per stream
	// (0: AuthTimeout only).
	RegistrationTimeout time.Duration
	// SendQueueBytes bounds the bytes held for one session: stanzas not
	// yet acknowledged (or, without XEP-0198, not yet written),
	// stream-level answers and held XEP-0352 presence (0: no bound).
	SendQueueBytes int
	// AccountQueueBytes bounds the same over all sessions of one account,
	// attached and detached (0: no bound).
	AccountQueueBytes int
	// MaxConns caps the client connections open at once: STARTTLS, direct
	// TLS, and WebSocket through Listener. Past it a new connection is
	// closed at once, so that established sessions, the admin listener and
	// the storage keep file descriptors. 0 derives it from the open-file
	// limit (RLIMIT_NOFILE) minus a reserve of 5%, at least 64; negative
	// means no cap.
	MaxConns int
	// MaxUnauthenticated and MaxUnauthenticatedPerIP cap the connections
	// that have not finished SASL, in total and per source address;
	// ConnectionRatePerIP (per second, ConnectionBurstPerIP at once)
	// limits new connections per address. Past any of them a connection
	// is closed before TLS. 0: no limit.
	MaxUnauthenticated      int
	MaxUnauthenticatedPerIP int
	ConnectionRatePerIP     float64
	ConnectionBurstPerIP    int
	// ReadBytesPerSecond and ReadBurstBytes are the token bucket on a
	// bound session's reader: past it reading pauses (0: no limit).
	ReadBytesPerSecond int
	ReadBurstBytes     int
	// Metrics counts sessions, stanzas queued to clients and logins
	// (nil: nothing is counted).
	Metrics *metrics.Metrics
}

// account is the state one bare JID's sessions share: the bytes queued
// for all of them (Config.AccountQueueBytes). A session adds and
// subtracts with one atomic operation; the map that holds the accounts is
// touched only when a session starts or ends.
type account struct {
	bytes atomic.Int64
	refs  int // sessions holding it; guarded by Server.mu
}

// Server accepts client connections.
type Server struct {
	cfg   Config
	h     Handler
	table *router.Table
	log   *zap.Logger
	audit *zap.Logger

	mu        sync.Mutex
	resumable map[string]*Session
	listeners []io.Closer
	conns     sync.WaitGroup
	pingSeq   uint64
	direct    *tls.Config
	closed    bool // set by Shutdown: no new connections are counted
	accounts  map[string]*account

	// open counts client connections against cfg.MaxConns; capHit is set
	// while connections are refused (one log line per episode).
	open   atomic.Int64
	capHit atomic.Bool

	// gate admits connections by source address; wsSlots holds the gate
	// slots of WebSocket connections by remote address, for the handler.
	gate    *gate
	wsSlots sync.Map
}

// acquireAccount returns the shared state of bare's sessions.
func (srv *Server) acquireAccount(bare string) *account {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	a := srv.accounts[bare]
	if a == nil {
		a = &account{}
		srv.accounts[bare] = a
	}
	a.refs++
	return a
}

// releaseAccount drops one session's hold on a.
func (srv *Server) releaseAccount(bare string, a *account) {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	a.refs--
	if a.refs <= 0 && srv.accounts[bare] == a {
		delete(srv.accounts, bare)
	}
}

// addConn counts a new connection unless the server is shutting down, so
// that conns.Add never races with Shutdown's conns.Wait.
func (srv *Server) addConn() bool {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if srv.closed {
		return false
	}
	srv.conns.Add(1)
	return true
}

// New returns a c2s server.
func New(cfg Config, h Handler, table *router.Table, log, audit *zap.Logger) *Server {
	if cfg.WriteTimeout == 0 {
		cfg.WriteTimeout = 30 * time.Second
	}
	if cfg.MaxConns == 0 {
		limit, ok := openFileLimit()
		cfg.MaxConns = connCap(limit, ok)
		log.Info("client connection cap", zap.Int("max_connections", cfg.MaxConns), zap.Uint64("open_file_limit", limit))
	}
	return &Server{cfg: cfg, h: h, table: table, log: log, audit: audit,
		resumable: make(map[string]*Session), accounts: make(map[string]*account),
		gate: newGate(cfg, log, audit)}
}

func (srv *Server) isLocal(domain string) bool {
	for _, d := range srv.cfg.Domains {
		if d == domain {
			return true
		}
	}
	return false
}

// ServeTCP accepts STARTTLS (directTLS=false) or direct TLS connections
// until ctx ends or the listener is closed. An accept error (EMFILE,
// ENFILE, ECONNABORTED, ...) never stops it: it backs off and retries.
// Connections past Config.MaxConns are refused at once.
func (srv *Server) ServeTCP(ctx context.Context, ln net.Listener, directTLS bool) error {
	srv.track(ln)
	var bo acceptBackoff
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			if !bo.wait(ctx, srv.log, ln.Addr(), err) {
				return nil
			}
			continue
		}
		bo.reset(srv.log, ln.Addr())
		if !srv.admit() {
			srv.refuse(c, !directTLS)
			continue
		}
		sl, reason := srv.gate.enter(hostOf(c.RemoteAddr().String()), true)
		if reason != "" {
			srv.release()
			srv.refuseEarly(c, !directTLS, reason)
			continue
		}
		if !srv.addConn() {
			_ = c.Close()
			sl.free()
			srv.release()
			return nil
		}
		go func() {
			defer srv.conns.Done()
			srv.serveTCPConn(ctx, c, directTLS, sl)
		}()
	}
}

// serveTCPConn serves an admitted connection; it (or the read loop it
// starts) releases its place under Config.MaxConns when done.
func (srv *Server) serveTCPConn(ctx context.Context, c net.Conn, directTLS bool, sl *slot) {
	handedOver := false
	defer func() {
		sl.free()
		if !handedOver {
			srv.release()
		}
	}()
	var cb sasl.Binding
	var rec *recordConn
	if directTLS {
		rec = newRecordConn(c)
		tc := tls.Server(rec, srv.directTLS())
		// The login deadline runs from accept, the handshake included.
		hctx, cancel := context.WithDeadline(ctx, sl.since.Add(srv.cfg.AuthTimeout))
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			srv.log.Debug("TLS handshake failed", zap.String("remote", c.RemoteAddr().String()), zap.Error(err))
			_ = c.Close()
			return
		}
		c = tc
		cb = bindingOf(tc.ConnectionState(), srv.cfg.Leaf)
	}
	tt := newTCPTransport(c, rec, srv.cfg.preauthBounds(), srv.cfg.WriteTimeout)
	cn := &conn{srv: srv, tr: tt, tcp: tt, cb: cb, slot: sl}
	loop := cn.negotiated(ctx)
	if loop == nil {
		return
	}
	// The caller still holds its count, so this Add cannot race Shutdown's Wait.
	srv.conns.Add(1)
	handedOver = true
	go func() {
		defer srv.conns.Done()
		defer srv.release()
		loop()
	}()
}

// WebSocketHandler serves RFC 7395 at the path it is mounted on. secure
// says whether the HTTP server runs TLS (or a trusted TLS proxy sits on
// loopback in front of it).
func (srv *Server) WebSocketHandler(ctx context.Context, secure bool) http.Handler {
	return websocket.Server{
		Handshake: func(cfg *websocket.Config, r *http.Request) error {
			for _, p := range cfg.Protocol {
				if p == "xmpp" {
					cfg.Protocol = []string{"xmpp"}
					return nil
				}
			}
			return errors.New("c2s: websocket subprotocol xmpp required")
		},
		Handler: func(ws *websocket.Conn) {
			r := ws.Request()
			// No channel binding on WebSocket: a web client cannot read
			// the TLS exporter or the server certificate of the browser's
			// connection (and behind a TLS proxy the server's TLS is not
			// the client's). With an empty Binding no -PLUS mechanism and
			// no XEP-0440 list is offered, and a SCRAM client that says
			// 'y' (it could bind, the server offers none) is right.
			// stanza 12 picked SCRAM-SHA-256-PLUS, sent "n,," and was
			// refused.
			var cb sasl.Binding
			if !srv.addConn() {
				_ = ws.Close()
				return
			}
			defer srv.conns.Done()
			tr := newWSTransport(ws, r.RemoteAddr, secure, srv.cfg.preauthBounds(), srv.cfg.WriteTimeout)
			cn := &conn{srv: srv, tr: tr, cb: cb, slot: srv.wsSlot(r.RemoteAddr)}
			cn.serve(ctx)
		},
	}
}

// directTLS is the TLS config for XEP-0368 direct TLS, with its ALPN id.
func (srv *Server) directTLS() *tls.Config {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if srv.direct == nil {
		srv.direct = srv.cfg.TLS.Clone()
		srv.direct.NextProtos = []string{"xmpp-client"}
	}
	return srv.direct
}

// track registers a listener for Shutdown to close. ServeTCP calls it from
// its own goroutine, which may start after Shutdown ran: then the listener
// is closed at once, so that its Accept returns.
func (srv *Server) track(c io.Closer) {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if srv.closed {
		_ = c.Close()
		return
	}
	srv.listeners = append(srv.listeners, c)
}

// Shutdown stops accepting, closes every session with system-shutdown and
// waits for connections to finish or ctx to end.
func (srv *Server) Shutdown(ctx context.Context) {
	srv.mu.Lock()
	srv.closed = true
	for _, l := range srv.listeners {
		_ = l.Close()
	}
	srv.listeners = nil
	detached := make([]*Session, 0)
	for _, s := range srv.resumable {
		detached = append(detached, s)
	}
	srv.mu.Unlock()
	// End detached sessions here, not in goroutines of their own, so that
	// nothing outlives Shutdown; attached ones are closed below.
	for _, s := range detached {
		s.endDetached(ctx)
	}
	for _, s := range srv.table.All() {
		s.Close("system-shutdown", "")
	}
	done := make(chan struct{})
	go func() { srv.conns.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

func randomID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func logJID(j jid.JID) zap.Field { return zap.String("jid", j.String()) }

// bindResource binds a resource for an authenticated stream (RFC 6120 7).
// It returns the session and the reply; a nil session means the reply is
// an error and the client may try again.
func (srv *Server) bindResource(ctx context.Context, c *conn, bare jid.JID, iq *stanza.Stanza) (*Session, *stanza.Stanza) {
	res := iq.Payload().ChildText(nsBind, "resource")
	if res == "" {
		res = randomID()[:12]
	}
	full, err := jid.New(bare.Localpart(), bare.Domainpart(), res)
	if err != nil {
		return nil, iq.ErrorReply(stanza.Err(stanza.Modify, stanza.BadRequest, "invalid resource"))
	}
	limit := srv.cfg.MaxSessions
	if c.grant.MaxSessions > 0 {
		limit = c.grant.MaxSessions
	}
	if limit > 0 && srv.table.Count(bare) >= limit && srv.table.Session(full) == nil {
		return nil, iq.ErrorReply(stanza.Err(stanza.Cancel, stanza.ResourceConstraint, "too many sessions"))
	}
	s := &Session{srv: srv, id: c.id, jid: full, mech: c.mech, remote: c.tr.remoteAddr(), tr: c.tr,
		acct: srv.acquireAccount(bare.String())}
	transport := "websocket"
	if c.tcp != nil {
		transport = "tcp" // STARTTLS
		if c.tcp.direct {
			transport = "tls"
		}
	}
	s.open = srv.cfg.Metrics.SessionOpened(transport, c.mech)
	if old := srv.table.Bind(s); old != nil {
		// Resource conflict: the new session wins (RFC 6120 7.7.2.2).
		old.Close("conflict", "replaced by a new session")
	}
	if d := c.grant.MaxDuration; d > 0 {
		// One timer, no goroutine: it fires once, or end stops it.
		s.mu.Lock()
		s.expiry = time.AfterFunc(d, func() { s.expire(d) })
		s.mu.Unlock()
	}
	srv.log.Info("session started", logJID(full), zap.String("stream", c.id), zap.String("remote", s.remote), zap.String("mechanism", c.mech))
	srv.audit.Info("session_start", logJID(full), zap.String("remote", s.remote), zap.String("mechanism", c.mech))
	srv.h.SessionStarted(ctx, s)
	res2 := element.New(nsBind, "bind").Append(element.New(nsBind, "jid").SetText(full.String()))
	r := iq.Result(res2)
	r.SetFrom(jid.JID{})
	r.SetTo(jid.JID{})
	return s, r
}

// readLoop reads the client's stanzas until the connection ends.
func (srv *Server) readLoop(ctx context.Context, s *Session, tr transport) {
	tr.setIdle(srv.cfg.IdleTimeout, srv.cfg.PingTimeout, func() { srv.pingClient(s) })
	var err error
	for {
		if err = tr.wait(); err != nil {
			break
		}
		var ev event
		ev, err = tr.next()
		if err != nil {
			break
		}
		if ev.kind == evClose {
			err = errClientClosed
			break
		}
		if ev.kind == evOpen {
			err = errStream("bad-format", "unexpected stream header")
			break
		}
		if err = srv.handleElement(ctx, s, ev.el); err != nil {
			break
		}
	}
	s.runPending() // what was admitted is delivered even if the client left
	srv.readLoopEnded(ctx, s, tr, err)
}

// pingClient checks an idle client: an XEP-0198 request or an XEP-0199 ping.
func (srv *Server) pingClient(s *Session) {
	s.mu.Lock()
	sm := s.smOn
	s.mu.Unlock()
	if sm {
		s.sendNonza(nzPing, element.New(nsSM, "r"))
		return
	}
	srv.mu.Lock()
	srv.pingSeq++
	id := "ping-" + itoa(srv.pingSeq)
	srv.mu.Unlock()
	d, _ := jid.New("", s.jid.Domainpart(), "")
	p := stanza.New(stanza.IQ, d, s.jid, "get", id)
	p.El.Append(element.New(nsPing, "ping"))
	s.sendNonza(nzPing, p.El) // not counted by XEP-0198: it is ours, not a routed stanza
}

func itoa(n uint64) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			break
		}
	}
	return string(b[i:])
}

// handleElement processes one top-level element from a bound session.
func (srv *Server) handleElement(ctx context.Context, s *Session, el *element.Element) error {
	switch el.Space {
	case nsSM:
		return srv.handleSM(s, el)
	case nsCSI:
		switch el.Local {
		case "active":
			s.setInactive(false)
		case "inactive":
			s.setInactive(true)
		}
		return nil
	case nsStream:
		if el.Local == "error" {
			// The client ends the stream with an error of its own (RFC
			// 6120 4.9.1.2): close ours, answering no error to an error.
			srv.log.Debug("client stream error", logJID(s.jid), zap.String("error", el.String()))
			return errClientClosed
		}
		return errStream("unsupported-stanza-type", "")
	case stanza.NSClient:
	default:
		return errStream("unsupported-stanza-type", "")
	}
	// Whatever 'from' the client wrote is replaced below; never parse it.
	// Every one of them: a parser that let duplicates through must not
	// leave a second 'from' behind the stamped one.
	el.RemoveAttr("from") // removes every match
	st, perr := stanza.Parse(el)
	if errors.Is(perr, stanza.ErrNotStanza) {
		return errStream("unsupported-stanza-type", "")
	}
	if perr != nil || st.Kind != stanza.Message {
		// Only messages are pipelined; anything else waits for the
		// messages before it, so the client's order is kept (RFC 6120 10.1).
		s.runPending()
	}
	if perr != nil {
		defer s.handled()
		var se *stanza.Error
		if errors.As(perr, &se) && st.Type != "error" {
			st.From = jid.JID{}
			r := st.ErrorReply(se)
			r.SetTo(s.jid)
			s.Send(r)
		}
		return nil
	}
	// Stamp 'from' (RFC 6120 8.1.2.1): a client can never speak as another.
	st.SetFrom(s.jid)
	if isLegacySession(st) && (st.To.Equal(jid.JID{}) || srv.isLocal(st.To.Domainpart())) {
		// RFC 3921 session establishment comes after bind; it is a no-op
		// that must be answered (RFC 6121 appendix E).
		r := st.Result(nil)
		r.SetFrom(jid.JID{})
		s.Send(r)
		s.handled()
		return nil
	}
	then := srv.h.HandleStanza(ctx, s, st)
	if then == nil {
		s.handled()
		return nil
	}
	s.pmu.Lock()
	s.pending = append(s.pending, then)
	full := len(s.pending) >= maxPending
	start := !s.delivering
	s.delivering = true
	s.pmu.Unlock()
	if start {
		go s.deliverPending()
	}
	if full {
		s.runPending()
	}
	return nil
}

// maxPending bounds how many admitted messages a session's reader gets
// ahead of their delivery before it waits for them.
const maxPending = 64

// deliverPending runs the admitted messages' steps in order, counting each
// stanza as handled (XEP-0198) only then, until none is left. It runs on
// its own goroutine, one at a time per session (delivering), so that the
// reader goes on reading and admitting while the journal commits what it
// admitted before: a session's messages then share commits instead of
// waiting for one each. An idle session has no deliverer.
func (s *Session) deliverPending() {
	s.pmu.Lock()
	for len(s.pending) > 0 {
		batch := s.pending
		s.pending = s.spare[:0]
		s.spare = nil
		s.pmu.Unlock()
		for i, then := range batch {
			then()
			batch[i] = nil
			s.handled()
		}
		s.pmu.Lock()
		if cap(batch) <= maxPending {
			s.spare = batch[:0]
		}
	}
	s.delivering = false
	if s.idle.L != nil {
		s.idle.Broadcast()
	}
	s.pmu.Unlock()
}

// runPending waits until every admitted message has been delivered: the
// reader's barrier before a stanza that must come after them (RFC 6120
// 10.1 order), an XEP-0198 answer, or the end of the connection.
func (s *Session) runPending() {
	s.pmu.Lock()
	if s.idle.L == nil {
		s.idle.L = &s.pmu
	}
	for s.delivering {
		s.idle.Wait()
	}
	s.pmu.Unlock()
}

// isLegacySession reports an RFC 3921 session request to the server.
func isLegacySession(st *stanza.Stanza) bool {
	if st.Kind != stanza.IQ || st.Type != "set" || (st.To.Localpart() != "" || st.To.Resourcepart() != "") {
		return false
	}
	p := st.Payload()
	return p != nil && p.Space == nsSession && p.Local == "session"
}

func (srv *Server) handleSM(s *Session, el *element.Element) error {
	switch el.Local {
	case "r":
		s.runPending() // h counts only what is delivered
		s.answerR()
	case "a":
		h, ok := parseH(el.Attr("h"))
		if !ok {
			return errStream("bad-format", "invalid h")
		}
		return s.ack(h)
	case "enable":
		s.runPending()
		s.mu.Lock()
		if s.smOn {
			s.mu.Unlock()
			s.sendNonza(nzFailedEnable, element.New(nsSM, "failed").Append(element.New(stanza.NSStanzas, "unexpected-request")))
			return nil
		}
		s.smOn = true
		s.inHandled = 0 // h counts from <enable/> (XEP-0198 section 4)
		resume := el.Attr("resume") == "true" || el.Attr("resume") == "1"
		if resume && srv.cfg.ResumeTimeout > 0 {
			s.smResume = true
		}
		s.mu.Unlock()
		en := element.New(nsSM, "enabled")
		if resume && srv.cfg.ResumeTimeout > 0 {
			srv.mu.Lock()
			srv.resumable[s.id] = s
			srv.mu.Unlock()
			en.SetAttr("id", s.id).SetAttr("resume", "true").SetAttr("max", itoa(uint64(srv.cfg.ResumeTimeout/time.Second)))
		}
		s.sendNonza(nzOther, en)
	case "resume":
		s.sendNonza(nzFailedResume, element.New(nsSM, "failed").Append(element.New(stanza.NSStanzas, "unexpected-request")))
	}
	return nil
}

// readLoopEnded tears down after the connection of s ended. The reader
// finishes the stream on its own connection (stream error or closing tag),
// closes it, then detaches a resumable session or ends it. A protocol
// violation or a clean close by the client ends the session for good; a
// lost connection or a slow-client cut keeps it resumable (XEP-0198).
func (srv *Server) readLoopEnded(ctx context.Context, s *Session, tr transport, err error) {
	var se *streamError
	isErr := errors.As(err, &se)
	clean := errors.Is(err, errClientClosed)
	s.mu.Lock()
	if s.tr != tr {
		s.mu.Unlock() // resumed on another connection meanwhile
		_ = tr.close()
		return
	}
	s.tr = nil // the writer for tr stops after its current batch
	// A protocol violation or a clean close ends the session; an idle
	// timeout is a lost network, which resumption exists for.
	if (isErr && se.cond != "connection-timeout") || clean {
		s.smResume = false
	}
	s.mu.Unlock()
	switch {
	case isErr:
		srv.log.Debug("stream error", logJID(s.jid), zap.String("condition", se.cond), zap.String("text", se.text))
		_ = tr.writeError(se)
		_ = tr.lingerClose() // the peer may still be sending (an oversized stanza)
	case clean:
		_ = tr.writeClose()
		_ = tr.close()
	default:
		_ = tr.close()
	}

	s.mu.Lock()
	if s.smResume && !s.ended {
		s.closing, s.closeErr = false, nil
		s.detach = time.AfterFunc(srv.cfg.ResumeTimeout, func() { s.end(context.Background()) })
		s.mu.Unlock()
		srv.log.Info("session detached, awaiting resumption", logJID(s.jid))
		return
	}
	s.mu.Unlock()
	s.end(ctx)
}

// end finishes a session for good.
func (s *Session) end(ctx context.Context) {
	srv := s.srv
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return
	}
	s.ended = true
	s.avail, s.pres = false, nil
	if s.expiry != nil {
		s.expiry.Stop()
		s.expiry = nil
	}
	s.mu.Unlock()
	srv.mu.Lock()
	if srv.resumable[s.id] == s {
		delete(srv.resumable, s.id)
	}
	srv.mu.Unlock()
	srv.table.Unbind(s)
	s.open.Close()
	srv.h.SessionEnded(ctx, s)
	if left := s.takeLeftovers(); len(left) > 0 {
		srv.h.Reroute(ctx, s, left)
	}
	if s.acct != nil {
		// What a writer still holds is released on s.acct, which outlives
		// the map entry harmlessly.
		srv.releaseAccount(s.jid.Bare().String(), s.acct)
	}
	srv.log.Info("session ended", logJID(s.jid), zap.String("stream", s.id))
	srv.audit.Info("session_end", logJID(s.jid), zap.String("remote", s.RemoteAddr()))
}

// resume handles <resume/> (XEP-0198 section 5): it moves a detached or
// stale session onto this connection. It returns nil after answering
// <failed/>, and the client may bind instead.
func (srv *Server) resume(ctx context.Context, c *conn, bare jid.JID, el *element.Element) *Session {
	h, ok := parseH(el.Attr("h"))
	srv.mu.Lock()
	s := srv.resumable[el.Attr("previd")]
	srv.mu.Unlock()
	if !ok || s == nil || !s.jid.Bare().Equal(bare) {
		_ = c.tr.write([][]byte{smFailed("item-not-found")})
		return nil
	}
	s.mu.Lock()
	if s.ended || !s.smResume || (s.detach != nil && s.tr == nil && !s.detach.Stop()) {
		s.mu.Unlock()
		_ = c.tr.write([][]byte{smFailed("item-not-found")})
		return nil
	}
	old := s.tr
	n := h - s.outAcked // wraps below outAcked, so it is also caught here
	if int64(n) > int64(s.wpos) {
		// h acknowledges stanzas never sent or goes back before an
		// earlier ack: refuse rather than drop what is unacknowledged.
		if s.tr == nil {
			// The detach timer was stopped above: arm it again.
			s.detach = time.AfterFunc(srv.cfg.ResumeTimeout, func() { s.end(context.Background()) })
		}
		s.mu.Unlock()
		_ = c.tr.write([][]byte{smFailed("unexpected-request")})
		return nil
	}
	s.dropAckedLocked(n)
	s.tr = c.tr
	s.wpos = 0 // resend everything not acknowledged
	s.closing, s.closeErr, s.rRequested = false, nil, false
	s.detach = nil
	s.remote = c.tr.remoteAddr()
	resumed := element.New(nsSM, "resumed", element.A("h", itoa(uint64(s.inHandled))), element.A("previd", s.id))
	// Answers queued for the old connection are not for this one.
	s.dropNonzasLocked()
	s.queueNonzaLocked(nzOther, resumed.AppendTo(nil, stanza.NSClient))
	s.mu.Unlock()
	if old != nil {
		_ = old.close()
	}
	srv.log.Info("session resumed", logJID(s.jid), zap.Uint32("acked", h))
	srv.audit.Info("session_resume", logJID(s.jid), zap.String("remote", s.RemoteAddr()))
	return s
}
