package s2s

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/palisade-im/palisade/server/config"
	"github.com/palisade-im/palisade/server/element"
	"github.com/palisade-im/palisade/server/stanza"
	"go.uber.org/zap"
	"mellium.im/xmpp/jid"
)

// inStream is one inbound server stream: the peer sends, we only answer
// negotiation and dialback.
type inStream struct {
	s      *Server
	conn   net.Conn
	f      *frame
	remote string
	id     string
	local  string // the stream's to
	claim  string // the stream's from ("" when the peer gave none)

	tls  bool
	cs   tls.ConnectionState
	leaf *x509.Certificate // the peer's certificate, verified or not

	mu          sync.Mutex
	authed      map[string]string // peer domain -> authentication method
	established time.Time
	stanzas     atomic.Int64
	shutOnce    sync.Once
	// deliveries are the admitted stanzas waiting for the journal, in
	// order (bounded: a full queue stops reading).
	deliveries chan func()
}

func (in *inStream) domains() []string {
	in.mu.Lock()
	defer in.mu.Unlock()
	out := make([]string, 0, len(in.authed))
	for d := range in.authed {
		out = append(out, d)
	}
	sort.Strings(out)
	return out
}

func (in *inStream) authOf(domain string) string {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.authed[domain]
}

func (in *inStream) status() []StreamStatus {
	in.mu.Lock()
	defer in.mu.Unlock()
	var out []StreamStatus
	for d, a := range in.authed {
		st := StreamStatus{Peer: d, Direction: "in", Auth: a, Local: in.local, RemoteAddr: in.remote,
			CertNotAfter: notAfter(in.leaf), Established: in.established, StanzasIn: in.stanzas.Load()}
		if p := in.s.Partner(d); p != nil {
			st.Partner = p.Name
		}
		if in.tls {
			st.TLS = tlsName(in.cs.Version)
		}
		out = append(out, st)
	}
	return out
}

// shut sends a stream error and closes the connection (once).
func (in *inStream) shut(se *StreamError, why string) {
	in.shutOnce.Do(func() {
		_ = in.f.writeError(se)
		_ = in.conn.Close()
		in.s.audit.Info("s2s_stream_closed", zap.String("direction", "in"), zap.Strings("peers", in.domains()),
			zap.String("remote_addr", in.remote), zap.String("condition", se.Condition), zap.String("reason", why))
	})
}

func (s *Server) serveInbound(ctx context.Context, c net.Conn, directTLS bool) {
	fed := s.fed()
	in := &inStream{s: s, conn: c, remote: c.RemoteAddr().String(), authed: map[string]string{}}
	in.f = newFrame(c, s.cfg.MaxStanza, s.cfg.Limits, 30*time.Second)
	defer c.Close()
	s.mu.Lock()
	s.in[in] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.in, in)
		s.mu.Unlock()
	}()
	deadline := time.Now().Add(time.Duration(fed.ConnectTimeout))
	_ = c.SetDeadline(deadline)
	if directTLS {
		if err := in.handshake(ctx, c, deadline); err != nil {
			s.log.Debug("s2s inbound TLS handshake failed", zap.String("remote_addr", in.remote), zap.Error(err))
			return
		}
	}
	err := in.negotiate(ctx, deadline)
	if err == nil {
		in.deliveries = make(chan func(), 256)
		done := make(chan struct{})
		go in.deliverLoop(done)
		err = in.readLoop(ctx)
		close(in.deliveries)
		<-done
	}
	var se *StreamError
	switch {
	case errors.As(err, &se):
		in.shut(se, se.Text)
	case err == nil || errors.Is(err, io.EOF):
		_ = in.f.writeClose()
		if len(in.domains()) > 0 {
			s.audit.Info("s2s_stream_closed", zap.String("direction", "in"), zap.Strings("peers", in.domains()),
				zap.String("remote_addr", in.remote), zap.String("reason", "closed by the peer"))
		}
	default:
		s.log.Debug("s2s inbound stream ended", zap.String("remote_addr", in.remote), zap.Error(err))
	}
}

// handshake runs the TLS server handshake on c (direct TLS or STARTTLS).
func (in *inStream) handshake(ctx context.Context, c net.Conn, deadline time.Time) error {
	tc := tls.Server(c, in.s.serverTLS())
	hctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		return err
	}
	in.conn = tc
	in.tls = true
	in.cs = tc.ConnectionState()
	if len(in.cs.PeerCertificates) > 0 {
		in.leaf = in.cs.PeerCertificates[0]
	}
	in.f.reset(tc)
	return nil
}

// refuse audits a stream refused before any stanza and returns its error.
func (in *inStream) refuse(domain, cond, reason string) error {
	in.s.audit.Info("s2s_stream_refused", zap.String("direction", "in"), zap.String("peer", domain),
		zap.String("remote_addr", in.remote), zap.String("condition", cond), zap.String("reason", reason))
	return streamErr(cond, reason)
}

// negotiate runs the stream up to authentication: stream headers,
// STARTTLS (required), then SASL EXTERNAL or dialback. Dialback requests
// and verifications are also served later by readLoop.
func (in *inStream) negotiate(ctx context.Context, deadline time.Time) error {
	s := in.s
	for {
		h, err := in.f.readHeader(deadline)
		if err != nil {
			return err
		}
		if in.id == "" {
			// First header: RFC 6120 4.7.
			if !s.local[h.to] {
				return streamErr("host-unknown", "this server does not serve "+h.to)
			}
			in.local = h.to
			if h.from != "" {
				d, err := jid.Parse(h.from)
				if err != nil || d.Localpart() != "" || d.Resourcepart() != "" {
					return streamErr("invalid-from", "the stream's from is not a domain")
				}
				in.claim = d.Domainpart()
				if s.Partner(in.claim) == nil {
					return in.refuse(in.claim, "policy-violation", in.claim+" is not a federation partner of this server")
				}
			}
		} else if h.to != in.local || (h.from != "" && h.from != in.claim) {
			return streamErr("invalid-from", "the restarted stream names other domains")
		}
		if !strings.HasPrefix(h.version, "1.") {
			return streamErr("unsupported-version", "this server needs XMPP streams of version 1.0 (with TLS)")
		}
		in.id = streamID()
		if err := in.f.writeHeader(in.local, in.claim, in.id); err != nil {
			return err
		}
		if !in.tls {
			if err := in.f.write([]byte("<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls></stream:features>")); err != nil {
				return err
			}
			el, err := in.f.next()
			if err != nil {
				return err
			}
			if el.Space != nsTLS || el.Local != "starttls" {
				return streamErr("policy-violation", "TLS is required: send <starttls/> first")
			}
			if err := in.f.write([]byte("<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")); err != nil {
				return err
			}
			if err := in.handshake(ctx, in.conn, deadline); err != nil {
				return err
			}
			continue
		}
		if len(in.authed) > 0 {
			// The restart after SASL: nothing more to negotiate.
			if err := in.f.write([]byte("<stream:features/>")); err != nil {
				return err
			}
			in.established = time.Now()
			return nil
		}
		// Under TLS, not yet authenticated: offer what the claimed
		// domain's partner entry allows.
		var feats []byte
		external := false
		p := s.Partner(in.claim)
		if in.claim != "" && p != nil {
			if _, err := verifyPeer(in.cs, in.claim, s.trustOf(p), s.cfg.Now()); err == nil {
				external = true
			} else if !p.Dialback {
				// Nothing can authenticate this peer: say why.
				return in.refuse(in.claim, "not-authorized", err.Error()+"; dialback is not allowed for partner "+p.Name)
			}
		}
		feats = append(feats, "<stream:features>"...)
		if external {
			feats = append(feats, "<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>EXTERNAL</mechanism></mechanisms>"...)
		}
		feats = append(feats, "<dialback xmlns='urn:xmpp:features:dialback'><errors/></dialback></stream:features>"...)
		if err := in.f.write(feats); err != nil {
			return err
		}
		// Wait for SASL or dialback.
		for {
			el, err := in.f.next()
			if err != nil {
				return err
			}
			switch {
			case el.Space == nsSASL && el.Local == "auth":
				ok, err := in.external(el, external)
				if err != nil {
					return err
				}
				if !ok {
					continue
				}
				in.f.reset(in.conn) // stream restart (RFC 6120 6.4.6)
			case el.Space == nsDialback:
				if err := in.dialback(ctx, el); err != nil {
					return err
				}
				if len(in.domains()) > 0 {
					in.established = time.Now()
					return nil
				}
				continue
			default:
				return in.refuse(in.claim, "not-authorized", "authenticate first (SASL EXTERNAL or dialback)")
			}
			break
		}
	}
}

// external answers a SASL EXTERNAL attempt (XEP-0178); ok when it
// succeeded and the stream restarts.
func (in *inStream) external(auth *element.Element, offered bool) (ok bool, err error) {
	fail := func(cond, text string) (bool, error) {
		b := []byte("<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><" + cond + "/>")
		if text != "" {
			b = append(b, "<text xml:lang='en'>"...)
			b = element.EscapeText(b, text)
			b = append(b, "</text>"...)
		}
		b = append(b, "</failure>"...)
		in.s.audit.Info("s2s_auth_failed", zap.String("peer", in.claim), zap.String("remote_addr", in.remote),
			zap.String("mechanism", "EXTERNAL"), zap.String("condition", cond), zap.String("reason", text))
		return false, in.f.write(b)
	}
	if auth.Attr("mechanism") != "EXTERNAL" || !offered {
		return fail("invalid-mechanism", "only EXTERNAL is offered, on a verified certificate")
	}
	authzid := in.claim
	if v := strings.TrimSpace(auth.Text()); v != "" && v != "=" {
		b, err := base64.StdEncoding.DecodeString(v)
		if err != nil {
			return fail("incorrect-encoding", "")
		}
		authzid = string(b)
	}
	if authzid == "" || authzid != in.claim {
		return fail("invalid-authzid", "the authorization identity must be the stream's from domain")
	}
	if err := in.f.write([]byte("<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>")); err != nil {
		return false, err
	}
	in.authenticated(in.claim, AuthExternal)
	return true, nil
}

// authenticated records domain as authenticated on the stream.
func (in *inStream) authenticated(domain, method string) {
	in.mu.Lock()
	in.authed[domain] = method
	in.mu.Unlock()
	p := in.s.Partner(domain)
	name := ""
	if p != nil {
		name = p.Name
	}
	in.s.audit.Info("s2s_stream_established", zap.String("direction", "in"), zap.String("peer", domain),
		zap.String("partner", name), zap.String("auth", method), zap.String("remote_addr", in.remote),
		zap.Time("cert_not_after", notAfter(in.leaf)), zap.String("tls", tlsName(in.cs.Version)))
}

// dialback serves a dialback element on an inbound stream: a db:result
// asks us to authenticate the originating domain (we verify with its
// authoritative server), a db:verify asks whether we issued a key.
func (in *inStream) dialback(ctx context.Context, el *element.Element) error {
	s := in.s
	from, to := el.Attr("from"), el.Attr("to")
	switch el.Local {
	case "verify":
		// We are the authoritative server of to: did we issue this key
		// for our stream to from with this id?
		typ := "invalid"
		if s.local[to] && s.validKey(from, to, el.Attr("id"), strings.TrimSpace(el.Text())) {
			typ = "valid"
		}
		return in.f.writeElement(dbElement("verify", to, from, el.Attr("id"), typ, ""))
	case "result":
		if el.Attr("type") != "" {
			return nil // not a request
		}
		deny := func(cond, reason string) error {
			s.audit.Info("s2s_stream_refused", zap.String("direction", "in"), zap.String("peer", from),
				zap.String("remote_addr", in.remote), zap.String("condition", cond), zap.String("reason", reason))
			r := dbElement("result", to, from, "", "error", "")
			r.Append(element.New(stanza.NSStanzas, "error").SetAttr("type", "cancel").Append(
				element.New(stanza.NSStanzas, cond)))
			return in.f.writeElement(r)
		}
		if !s.local[to] {
			return deny("item-not-found", "dialback for a domain not served here: "+to)
		}
		d, err := jid.Parse(from)
		if err != nil || d.Localpart() != "" || d.Resourcepart() != "" {
			return streamErr("invalid-from", "dialback from is not a domain")
		}
		p := s.Partner(from)
		if p == nil {
			return deny("not-authorized", from+" is not a federation partner of this server")
		}
		// XEP-0344: a certificate that verifies for the domain is enough.
		if in.tls {
			if _, err := verifyPeer(in.cs, from, s.trustOf(p), s.cfg.Now()); err == nil {
				in.authenticated(from, AuthDialbackPKIX)
				return in.f.writeElement(dbElement("result", to, from, "", "valid", ""))
			} else if !p.Dialback {
				return deny("not-authorized", err.Error()+"; dialback is not allowed for partner "+p.Name)
			}
		} else {
			return deny("not-authorized", "dialback only under TLS")
		}
		ok, err := s.verifyDialback(ctx, to, from, in.id, strings.TrimSpace(el.Text()))
		if err != nil {
			s.log.Info("s2s dialback verification failed", zap.String("peer", from), zap.Error(err))
			return deny("remote-server-not-found", "could not verify the dialback key: "+err.Error())
		}
		if !ok {
			s.audit.Info("s2s_stream_refused", zap.String("direction", "in"), zap.String("peer", from),
				zap.String("remote_addr", in.remote), zap.String("condition", "not-authorized"), zap.String("reason", "dialback key invalid"))
			_ = in.f.writeElement(dbElement("result", to, from, "", "invalid", ""))
			return streamErr("not-authorized", "the dialback key did not verify")
		}
		in.authenticated(from, AuthDialback)
		return in.f.writeElement(dbElement("result", to, from, "", "valid", ""))
	}
	return nil
}

// readLoop reads the stanzas of an authenticated stream and hands them on.
func (in *inStream) readLoop(ctx context.Context) error {
	s := in.s
	for {
		idle := time.Duration(s.fed().IdleTimeout)
		_ = in.conn.SetDeadline(time.Now().Add(idle))
		el, err := in.f.next()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return streamErr("connection-timeout", "idle for "+idle.String())
			}
			return err
		}
		if el.Space == nsDialback {
			if err := in.dialback(ctx, el); err != nil {
				return err
			}
			continue
		}
		if el.Space == nsStream && el.Local == "error" {
			s.log.Info("s2s peer sent a stream error", zap.Strings("peers", in.domains()), zap.String("error", describeStreamError(el)))
			return io.EOF
		}
		if el.Space != nsServer || stanza.KindOf(el.Local) == 0 {
			return streamErr("unsupported-stanza-type", "")
		}
		if err := in.stanza(ctx, el); err != nil {
			return err
		}
	}
}

// stanza checks one stanza's addresses against the stream and hands it on.
func (in *inStream) stanza(ctx context.Context, el *element.Element) error {
	s := in.s
	toClientNS(el)
	st, err := stanza.Parse(el)
	if err != nil {
		return streamErr("invalid-xml", err.Error())
	}
	fromDomain := st.From.Domainpart()
	auth := in.authOf(fromDomain)
	if st.From.Equal(jid.JID{}) || auth == "" {
		s.audit.Info("s2s_invalid_from", zap.Strings("peers", in.domains()), zap.String("from", st.From.String()),
			zap.String("remote_addr", in.remote))
		return streamErr("invalid-from", "this stream is not authenticated for "+fromDomain)
	}
	if !s.local[st.To.Domainpart()] {
		return streamErr("host-unknown", "this server does not serve "+st.To.Domainpart())
	}
	p := s.Partner(fromDomain)
	if p == nil {
		return streamErr("policy-violation", fromDomain+" is no longer a federation partner of this server")
	}
	if l := s.limiter(p); l != nil {
		if err := l.Wait(ctx); err != nil {
			return err
		}
	}
	in.stanzas.Add(1)
	st.Peer = &stanza.Peer{Domain: fromDomain, Partner: p.Name, Auth: auth}
	in.deliveries <- s.h.Receive(ctx, st)
	return nil
}

// deliverLoop calls the deliver functions of the stream's stanzas in
// order until the channel closes.
func (in *inStream) deliverLoop(done chan<- struct{}) {
	defer close(done)
	for d := range in.deliveries {
		d()
	}
}

// partnerOf is a nil-safe partner name.
func partnerOf(p *config.Partner) string {
	if p == nil {
		return ""
	}
	return p.Name
}
