// Package s2s is Palisade's federation: RFC 6120 server-to-server streams
// with partner organisations only. It listens for partner servers
// (STARTTLS and XEP-0368 direct TLS), dials them (pinned endpoints or DNS
// SRV), authenticates peers by their certificates (PKIX with the system
// roots or the partner's CAs, optional SPKI pins, then SASL EXTERNAL per
// XEP-0178) or, where a partner entry allows it and always under TLS, by
// XEP-0220 dialback, and refuses every domain no partner entry names.
//
// Every stanza an authenticated peer sends is checked against the domains
// its stream authenticated (no piggy-backed domains) and handed to the
// Handler, which runs it down the same road as a client's stanza. Stanzas
// for a peer wait in a bounded queue while its stream is set up; when that
// fails they are bounced through the Handler.
package s2s

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/palisade-im/palisade/server/config"
	"github.com/palisade-im/palisade/server/element"
	"github.com/palisade-im/palisade/server/stanza"
	"go.uber.org/zap"
	"golang.org/x/time/rate"
)

// Authentication methods of a stream, as Status and the journal name them.
const (
	// AuthExternal is SASL EXTERNAL on a verified certificate (XEP-0178).
	AuthExternal = "sasl-external"
	// AuthDialback is XEP-0220 dialback under TLS, the peer's certificate
	// not verified.
	AuthDialback = "dialback"
	// AuthDialbackPKIX is a dialback request accepted because the peer's
	// certificate verified for the domain (XEP-0344).
	AuthDialbackPKIX = "dialback-pkix"
)

// Handler is what the server does with federation traffic.
type Handler interface {
	// Receive handles a stanza an authenticated peer sent: its from
	// domain is one the stream authenticated, its to domain is local, it
	// is in the jabber:client namespace and st.Peer says where it came
	// from. Receive runs the stanza through what must come first (policy,
	// journal submission) and returns deliver, which waits for the
	// journal and delivers: a stream calls the deliver functions in order,
	// off its reader, so that its stanzas share group commits.
	Receive(ctx context.Context, st *stanza.Stanza) (deliver func())
	// Bounce answers a stanza that could not be sent to its peer.
	Bounce(ctx context.Context, st *stanza.Stanza, e *stanza.Error)
}

// Config is what the federation needs from the server.
type Config struct {
	// Domains are the local domains.
	Domains []string
	// TLS is the server's TLS configuration (certs.ServerConfig): it
	// serves inbound streams, and its certificate is presented as the
	// client certificate on outbound ones.
	TLS *tls.Config
	// Certificate returns the server's current certificate.
	Certificate func() *tls.Certificate
	// MaxStanza bounds one stanza in bytes; Limits bounds its elements.
	MaxStanza int64
	Limits    element.Limits
	// DialbackSecret keys dialback (XEP-0220 section 2.4).
	DialbackSecret []byte
	// Federation is the initial [federation] section.
	Federation config.Federation
	// Dial opens TCP connections (nil: net.Dialer).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Resolver looks up SRV and address records (nil: net.DefaultResolver).
	Resolver *net.Resolver
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

// fedState is one version of the partner list with what is derived from it.
type fedState struct {
	cfg    config.Federation
	trusts map[string]trust // by partner name
	errs   map[string]error // partners whose trust could not be loaded
}

// Server runs the federation.
type Server struct {
	cfg   Config
	h     Handler
	log   *zap.Logger
	audit *zap.Logger
	local map[string]bool

	state atomic.Pointer[fedState]

	mu       sync.Mutex
	out      map[route]*outStream
	in       map[*inStream]struct{}
	limiters map[string]*rate.Limiter // by partner name
	closing  bool
	wg       sync.WaitGroup
	inSlots  chan struct{}
	ctx      context.Context
	cancel   context.CancelFunc
}

// route names an outgoing stream: one per local and peer domain.
type route struct{ local, remote string }

// New builds the federation; it neither listens nor dials yet.
func New(cfg Config, h Handler, log, audit *zap.Logger) (*Server, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Dial == nil {
		d := &net.Dialer{}
		cfg.Dial = d.DialContext
	}
	if cfg.Resolver == nil {
		cfg.Resolver = net.DefaultResolver
	}
	s := &Server{cfg: cfg, h: h, log: log, audit: audit, local: map[string]bool{},
		out: map[route]*outStream{}, in: map[*inStream]struct{}{}, limiters: map[string]*rate.Limiter{}}
	for _, d := range cfg.Domains {
		s.local[d] = true
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	st, err := buildState(cfg.Federation)
	if err != nil {
		return nil, err
	}
	s.state.Store(st)
	n := cfg.Federation.MaxInbound
	if n <= 0 {
		n = 256
	}
	s.inSlots = make(chan struct{}, n)
	return s, nil
}

func buildState(f config.Federation) (*fedState, error) {
	st := &fedState{cfg: f, trusts: map[string]trust{}, errs: map[string]error{}}
	for i := range f.Partners {
		p := &f.Partners[i]
		t, err := loadTrust(p)
		if err != nil {
			return nil, fmt.Errorf("s2s: %w", err)
		}
		st.trusts[p.Name] = t
	}
	return st, nil
}

// Partner returns the live partner entry that names domain, nil if none.
func (s *Server) Partner(domain string) *config.Partner {
	return s.state.Load().cfg.Partner(domain)
}

// Partners reports whether any partner is configured.
func (s *Server) Partners() bool { return len(s.state.Load().cfg.Partners) > 0 }

func (s *Server) trustOf(p *config.Partner) trust { return s.state.Load().trusts[p.Name] }

func (s *Server) fed() *config.Federation { return &s.state.Load().cfg }

// Reload replaces the partner list: streams whose peer domain no partner
// names any more are closed with the stream error policy-violation, and
// the others follow the new entries from their next stanza.
func (s *Server) Reload(f config.Federation) error {
	st, err := buildState(f)
	if err != nil {
		return err
	}
	s.state.Store(st)
	s.mu.Lock()
	var outs []*outStream
	for r, o := range s.out {
		if st.cfg.Partner(r.remote) == nil {
			outs = append(outs, o)
			delete(s.out, r)
		}
	}
	var ins []*inStream
	for in := range s.in {
		for _, d := range in.domains() {
			if st.cfg.Partner(d) == nil {
				ins = append(ins, in)
				break
			}
		}
	}
	s.limiters = map[string]*rate.Limiter{}
	s.mu.Unlock()
	for _, o := range outs {
		o.shut(streamErr("policy-violation", o.remote+" is no longer a federation partner of this server"), "partner removed")
	}
	for _, in := range ins {
		in.shut(streamErr("policy-violation", "no longer a federation partner of this server"), "partner removed")
	}
	return nil
}

// limiter returns the inbound rate limiter of a partner, nil when it has
// no limit.
func (s *Server) limiter(p *config.Partner) *rate.Limiter {
	r, b := p.Rate, p.Burst
	if r == 0 {
		r, b = s.fed().Rate, s.fed().Burst
	}
	if r <= 0 {
		return nil
	}
	if b < 1 {
		b = 1
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.limiters[p.Name]
	if l == nil {
		l = rate.NewLimiter(rate.Limit(r), b)
		s.limiters[p.Name] = l
	}
	return l
}

// Send queues st for its peer domain (st.To's), opening the stream when
// none is up. A stanza that cannot be sent is bounced through the
// Handler. The caller has checked that a partner names the domain.
func (s *Server) Send(ctx context.Context, st *stanza.Stanza) {
	r := route{local: st.From.Domainpart(), remote: st.To.Domainpart()}
	if !s.local[r.local] {
		s.h.Bounce(ctx, st, stanza.Err(stanza.Modify, stanza.NotAllowed, "stanzas to other domains must come from a local domain"))
		return
	}
	p := s.Partner(r.remote)
	if p == nil {
		s.h.Bounce(ctx, st, stanza.Err(stanza.Cancel, stanza.PolicyViolation, r.remote+" is not a federation partner of this server"))
		return
	}
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		s.h.Bounce(ctx, st, stanza.Err(stanza.Wait, stanza.RemoteServerTimeout, "the server is shutting down"))
		return
	}
	o := s.out[r]
	if o == nil {
		o = newOutStream(s, r)
		s.out[r] = o
	}
	s.mu.Unlock()
	o.enqueue(ctx, st)
}

// AuthOf returns how the outgoing stream from local to remote was
// authenticated, "" when none is established.
func (s *Server) AuthOf(local, remote string) string {
	s.mu.Lock()
	o := s.out[route{local: local, remote: remote}]
	s.mu.Unlock()
	if o == nil {
		return ""
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.ready {
		return ""
	}
	return o.auth
}

// forget drops o from the table if it is still the stream of its route.
func (s *Server) forget(o *outStream) {
	s.mu.Lock()
	if s.out[o.route] == o {
		delete(s.out, o.route)
	}
	s.mu.Unlock()
}

// StreamStatus describes one live stream (palisade federation status).
type StreamStatus struct {
	Peer         string    `json:"peer"`
	Partner      string    `json:"partner"`
	Direction    string    `json:"direction"`
	Auth         string    `json:"auth"`
	Local        string    `json:"local"`
	RemoteAddr   string    `json:"remote_addr"`
	TLS          string    `json:"tls"`
	CertNotAfter time.Time `json:"cert_not_after"`
	Established  time.Time `json:"established"`
	StanzasIn    int64     `json:"stanzas_in"`
	StanzasOut   int64     `json:"stanzas_out"`
}

// Status lists the established streams, outgoing first, by peer.
func (s *Server) Status() []StreamStatus {
	s.mu.Lock()
	var out []StreamStatus
	for _, o := range s.out {
		if st, ok := o.status(); ok {
			out = append(out, st)
		}
	}
	for in := range s.in {
		out = append(out, in.status()...)
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b StreamStatus) int {
		if a.Direction != b.Direction {
			if a.Direction == "out" {
				return -1
			}
			return 1
		}
		if a.Peer < b.Peer {
			return -1
		}
		if a.Peer > b.Peer {
			return 1
		}
		return 0
	})
	return out
}

// Shutdown closes every stream (</stream:stream>), bouncing what is still
// queued, and waits for them until ctx ends.
func (s *Server) Shutdown(ctx context.Context) {
	s.mu.Lock()
	s.closing = true
	outs := make([]*outStream, 0, len(s.out))
	for _, o := range s.out {
		outs = append(outs, o)
	}
	ins := make([]*inStream, 0, len(s.in))
	for in := range s.in {
		ins = append(ins, in)
	}
	s.mu.Unlock()
	for _, o := range outs {
		o.shut(streamErr("system-shutdown", ""), "shutdown")
	}
	for _, in := range ins {
		in.shut(streamErr("system-shutdown", ""), "shutdown")
	}
	s.cancel()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// ServeTCP accepts inbound server streams on ln until ctx ends; directTLS
// listeners start with TLS (XEP-0368), the others offer STARTTLS.
func (s *Server) ServeTCP(ctx context.Context, ln net.Listener, directTLS bool) error {
	go func() { <-ctx.Done(); _ = ln.Close() }()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			s.log.Warn("s2s accept", zap.Error(err))
			time.Sleep(50 * time.Millisecond)
			continue
		}
		select {
		case s.inSlots <- struct{}{}:
		default:
			s.log.Warn("s2s: too many inbound streams", zap.String("remote_addr", c.RemoteAddr().String()))
			f := newFrame(c, 1024, element.Limits{}, time.Second)
			_ = f.writeError(streamErr("resource-constraint", "too many server streams"))
			_ = c.Close()
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() { <-s.inSlots }()
			s.serveInbound(ctx, c, directTLS)
		}()
	}
}

// clientTLS is the TLS configuration of an outbound stream to domain: the
// server's cipher policy, its certificate as client certificate, and no
// verification by crypto/tls: verifyPeer checks the chain afterwards under
// the partner's rules, so that the refusal can say why.
func (s *Server) clientTLS(domain string) *tls.Config {
	base := s.cfg.TLS
	return &tls.Config{
		MinVersion:         tls.VersionTLS12,
		CipherSuites:       base.CipherSuites,
		CurvePreferences:   base.CurvePreferences,
		ServerName:         domain,
		NextProtos:         []string{"xmpp-server"},
		InsecureSkipVerify: true, // verified by verifyPeer, with the partner's roots and pins
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return s.cfg.Certificate(), nil
		},
	}
}

// serverTLS is the TLS configuration of inbound streams: it asks for the
// peer's certificate without making crypto/tls verify it (verifyPeer does,
// for the domain the peer claims).
func (s *Server) serverTLS() *tls.Config {
	c := s.cfg.TLS.Clone()
	c.ClientAuth = tls.RequestClientCert
	c.NextProtos = []string{"xmpp-server"}
	return c
}

// tlsName describes a TLS version for Status.
func tlsName(v uint16) string {
	switch v {
	case tls.VersionTLS13:
		return "TLS 1.3"
	case tls.VersionTLS12:
		return "TLS 1.2"
	}
	return fmt.Sprintf("TLS 0x%04x", v)
}

func notAfter(c *x509.Certificate) time.Time {
	if c == nil {
		return time.Time{}
	}
	return c.NotAfter.UTC()
}
