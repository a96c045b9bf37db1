package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/palisade-im/palisade/certs"
	"github.com/palisade-im/palisade/s2s"
	"github.com/palisade-im/palisade/server/config"
	"github.com/palisade-im/palisade/server/element"
	"github.com/palisade-im/palisade/server/module"
	"github.com/palisade-im/palisade/server/stanza"
	"go.uber.org/zap"
)

// DialbackSecretFile is the file under data_dir that keeps the generated
// dialback secret when [federation] dialback_secret is empty.
const DialbackSecretFile = "dialback.secret"

// federationListeners are the s2s listeners, opened once a partner is
// configured (at Run, or by the reload that adds the first one).
type federationListeners struct {
	mu     sync.Mutex
	opened bool
	run    context.Context
	listen func(what, addr string, serve func(net.Listener) error) error
}

// partnerFor returns the partner entry of the live (reloadable) partner
// list that names domain, nil when none does.
func (s *Server) partnerFor(domain string) *config.Partner {
	f := s.federation.Load()
	if f == nil {
		return nil
	}
	return f.Partner(domain)
}

// Partner returns the live partner entry that names domain (module.PartnerOf).
func (s *Server) Partner(domain string) *config.Partner { return s.partnerFor(domain) }

// newFederation builds the s2s side.
func (s *Server) newFederation() error {
	secret, err := dialbackSecret(s.cfg)
	if err != nil {
		return err
	}
	fs, err := s2s.New(s2s.Config{
		Domains:        s.cfg.Server.Domains,
		TLS:            certs.ServerConfig(s.kp),
		Certificate:    s.kp.Certificate,
		MaxStanza:      int64(s.cfg.Limits.MaxStanzaBytes),
		Limits:         element.Limits{MaxNodes: s.cfg.Limits.MaxStanzaElements},
		DialbackSecret: secret,
		Federation:     s.cfg.Federation,
	}, fedHandler{s}, s.log.Named("s2s"), s.audit)
	if err != nil {
		return err
	}
	s.s2s = fs
	return nil
}

// dialbackSecret is [federation] dialback_secret, or the secret kept in
// data_dir/dialback.secret (created, 0600, when missing).
func dialbackSecret(cfg *config.Config) ([]byte, error) {
	if cfg.Federation.DialbackSecret != "" {
		return []byte(cfg.Federation.DialbackSecret), nil
	}
	path := filepath.Join(cfg.Server.DataDir, DialbackSecretFile)
	b, err := os.ReadFile(path)
	if err == nil && len(strings.TrimSpace(string(b))) >= 32 {
		return []byte(strings.TrimSpace(string(b))), nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("server: dialback secret: %w", err)
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return nil, fmt.Errorf("server: dialback secret: %w", err)
	}
	sec := hex.EncodeToString(raw[:])
	if err := os.MkdirAll(cfg.Server.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("server: dialback secret: %w", err)
	}
	if err := os.WriteFile(path, []byte(sec+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("server: dialback secret: %w", err)
	}
	return []byte(sec), nil
}

// openFederation opens the s2s listeners if a partner is configured and
// they are not open yet.
func (s *Server) openFederation() error {
	fl := &s.fedListen
	fl.mu.Lock()
	defer fl.mu.Unlock()
	if fl.opened || fl.listen == nil || !s.s2s.Partners() {
		return nil
	}
	l := s.cfg.Listen
	if l.S2S == "" && l.S2SDirectTLS == "" {
		return nil
	}
	ctx := fl.run
	err := errors.Join(
		fl.listen("s2s", l.S2S, func(ln net.Listener) error { return s.s2s.ServeTCP(ctx, ln, false) }),
		fl.listen("s2s_direct_tls", l.S2SDirectTLS, func(ln net.Listener) error { return s.s2s.ServeTCP(ctx, ln, true) }),
	)
	if err != nil {
		return err
	}
	fl.opened = true
	return nil
}

// ReloadFederation replaces the partner list (SIGHUP): streams of
// domains no longer allowed are closed with the stream error
// policy-violation, and the s2s listeners open if this adds the first
// partner.
func (s *Server) ReloadFederation(ctx context.Context, f config.Federation) error {
	if err := s.s2s.Reload(f); err != nil {
		return fmt.Errorf("server: reload federation: %w", err)
	}
	nf := f
	s.federation.Store(&nf)
	names := make([]string, len(f.Partners))
	for i, p := range f.Partners {
		names[i] = p.Name
	}
	s.audit.Info("federation_reloaded", zap.Strings("partners", names))
	s.recordAct(ctx, "federation_reload", "sighup", "", map[string]string{"partners": strings.Join(names, ",")})
	return s.openFederation()
}

// checkFederation is the federation gate of the policy chain: a stanza to
// or from another domain passes only when a partner entry names that
// domain and allows the stanza's kind, and, when the partner requires
// it, a message is end-to-end encrypted.
func (s *Server) checkFederation(st *stanza.Stanza) *module.Denial {
	var remote string
	switch {
	case st.Peer != nil:
		remote = st.Peer.Domain
	case st.To.Domainpart() != "" && !s.IsLocal(st.To.Domainpart()):
		remote = st.To.Domainpart()
	default:
		return nil
	}
	p := s.partnerFor(remote)
	if p == nil {
		return &module.Denial{
			Err:    stanza.Err(stanza.Cancel, stanza.PolicyViolation, remote+" is not a federation partner of this server"),
			Reason: "not a partner: " + remote,
		}
	}
	if !p.Allows(st.Kind.String()) {
		return &module.Denial{
			Err:    stanza.Err(stanza.Cancel, stanza.PolicyViolation, "federation with "+remote+" does not carry "+st.Kind.String()+" stanzas"),
			Reason: "partner " + p.Name + ": kind " + st.Kind.String() + " not allowed",
		}
	}
	if !p.Rooms && roomTraffic(st) {
		return &module.Denial{
			Err:    stanza.Err(stanza.Cancel, stanza.PolicyViolation, "federation with "+remote+" does not share rooms"),
			Reason: "partner " + p.Name + ": rooms = false",
		}
	}
	if p.EncryptionRequired && st.Kind == stanza.Message && st.Type != "error" {
		if err := encryptedOnly(st.El); err != nil {
			return &module.Denial{
				Err:    stanza.Err(stanza.Modify, stanza.PolicyViolation, "messages with "+remote+" must be end-to-end encrypted: "+err.Error()),
				Reason: "partner " + p.Name + ": encryption_required: " + err.Error(),
			}
		}
	}
	if st.Peer == nil {
		st.Peer = &stanza.Peer{Domain: remote, Partner: p.Name, Auth: s.s2s.AuthOf(st.From.Domainpart(), remote)}
	}
	return nil
}

// roomTraffic reports whether st belongs to a multi-user chat (XEP-0045):
// a groupchat message, a join or occupant presence, a room
// administration IQ, a mediated (muc#user) or direct (XEP-0249)
// invitation.
func roomTraffic(st *stanza.Stanza) bool {
	if st.Kind == stanza.Message && st.Type == "groupchat" {
		return true
	}
	for _, n := range st.El.Nodes {
		if c := n.El; c != nil && (strings.HasPrefix(c.Space, "http://jabber.org/protocol/muc") || c.Space == "jabber:x:conference") {
			return true
		}
	}
	return false
}

// routeRemote sends a stanza for another domain to its partner stream.
// Stanzas that did not cross the policy chain (the copies of a presence
// broadcast, presence the server sends on a user's behalf) meet the
// partner gate here and are journaled first: every stanza that crosses a
// partner stream is recorded.
func (s *Server) routeRemote(ctx context.Context, st *stanza.Stanza) {
	if st.Peer == nil {
		d := s.checkFederate(st) // the account's federate right (access.go)
		if d == nil {
			d = s.checkFederation(st)
		}
		if d != nil {
			if st.Kind != stanza.Presence {
				s.denied(ctx, st, "federation", d)
			}
			return
		}
		if st.Journaled {
			if err := s.submit(ctx, st)(); err != nil {
				s.journalFailed(st, err)
				return
			}
			s.journalOK()
		}
	}
	s.s2s.Send(ctx, st)
}

// fedHandler is the server as the s2s package sees it.
type fedHandler struct{ s *Server }

// Receive runs a stanza from a partner down the client stanzas' road:
// policy chain (the federation gate included), journal, router. It
// returns once the stanza is admitted; deliver waits for the journal and
// routes it, so that a stream's stanzas share group commits.
func (h fedHandler) Receive(ctx context.Context, st *stanza.Stanza) (deliver func()) {
	s := h.s
	if !s.peerHygiene(ctx, st) {
		return func() {}
	}
	wait, err := s.admit(ctx, st)
	if err != nil {
		return func() {}
	}
	return func() { _ = s.deliver(ctx, st, wait()) }
}

// peerHygiene is clientHygiene (hygiene.go) for a stanza from a partner:
// RFC 6120 8.1.3 and 8.2.3 for IQs, the defined presence and message
// types, and nothing only this server may say: a stanza-id or delay
// claiming to be this server's is removed, a carbon or an archive result
// (which only a user's own server sends) is refused with bad-request.
func (s *Server) peerHygiene(ctx context.Context, st *stanza.Stanza) bool {
	bad := func(text string) bool {
		s.bounce(ctx, st, stanza.Err(stanza.Modify, stanza.BadRequest, text))
		return false
	}
	switch st.Kind {
	case stanza.IQ:
		switch st.Type {
		case "get", "set":
			if st.ID == "" || elementCount(st.El) != 1 {
				return bad("an iq request needs an 'id' and exactly one payload")
			}
		case "result", "error":
			return st.ID != ""
		default:
			return bad("an iq's type is get, set, result or error")
		}
		return true
	case stanza.Presence:
		switch st.Type {
		case "", "unavailable", "subscribe", "subscribed", "unsubscribe", "unsubscribed", "probe", "error":
		default:
			return bad("a presence's type is unavailable, subscribe, subscribed, unsubscribe, unsubscribed, probe or error")
		}
	case stanza.Message:
		switch st.Type {
		case "", "normal", "chat", "groupchat", "headline", "error":
		default:
			st.SetType("normal")
		}
	}
	r, stripped := serverClaims(st.El, s.IsLocal, st.From)
	if stripped {
		st.Changed()
	}
	if r != "" {
		s.audit.Info("stanza_refused", zap.String("reason", string(r)), zap.String("from", st.From.String()),
			zap.String("to", st.To.String()), zap.String("kind", st.Kind.String()), zap.String("peer", st.Peer.Domain))
		return bad(r.text())
	}
	return true
}

// Bounce answers a stanza the federation could not send.
func (h fedHandler) Bounce(ctx context.Context, st *stanza.Stanza, e *stanza.Error) {
	if st.Kind == stanza.Presence && st.Type != "subscribe" {
		return // RFC 6121: presence errors are not worth a bounce storm
	}
	h.s.bounce(ctx, st, e)
}

// FederationStatus lists the live server-to-server streams.
func (s *Server) FederationStatus() []s2s.StreamStatus { return s.s2s.Status() }

// adminFederation answers GET /admin/federation: the live streams, as
// `palisade federation status` shows them.
func (s *Server) adminFederation(w http.ResponseWriter, r *http.Request) {
	if !s.adminAuthorized(w, r, http.MethodGet) {
		return
	}
	res := struct {
		Streams []s2s.StreamStatus `json:"streams"`
	}{Streams: s.FederationStatus()}
	if res.Streams == nil {
		res.Streams = []s2s.StreamStatus{}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(res)
}
