package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/palisade-im/palisade/server/c2s"
	"github.com/palisade-im/palisade/server/element"
	"github.com/palisade-im/palisade/server/module"
	"github.com/palisade-im/palisade/server/router"
	"github.com/palisade-im/palisade/server/sasl"
	"github.com/palisade-im/palisade/server/stanza"
	"go.uber.org/zap"
	"mellium.im/xmpp/jid"
)

// errDenied is returned by Process when a policy stopped the stanza.
var errDenied = errors.New("server: denied by policy")

// Process runs st through the policy chain and the journal, then routes it.
func (s *Server) Process(ctx context.Context, st *stanza.Stanza) error {
	wait, err := s.admit(ctx, st)
	if err != nil {
		return err
	}
	return s.deliver(ctx, st, wait())
}

// admit runs st through the policy chain and submits it to the journal. A
// denial is answered here; otherwise wait reports the journal's verdict,
// which deliver acts on. Between the two, a session may admit the stanzas
// it sent after st, so that they share one journal commit.
func (s *Server) admit(ctx context.Context, st *stanza.Stanza) (wait func() error, err error) {
	if d := s.checkRights(st); d != nil {
		s.denied(ctx, st, "access", d)
		return nil, errDenied
	}
	if d := s.checkFederation(st); d != nil {
		s.denied(ctx, st, "federation", d)
		return nil, errDenied
	}
	for i, p := range s.policies {
		if d := p.Check(ctx, st); d != nil {
			s.denied(ctx, st, s.policyName[i], d)
			return nil, errDenied
		}
	}
	if s.archiver == nil || st.Kind != stanza.Message {
		return s.submit(ctx, st), nil
	}
	// The user's history (XEP-0313): the archiver may stamp st with a
	// stanza-id before the journal records it; its items are stored only
	// once the journal took st.
	commit := s.archiver.ArchiveMessage(ctx, st)
	jwait := s.submit(ctx, st)
	if commit == nil {
		return jwait, nil
	}
	return func() error {
		err := jwait()
		if err == nil {
			commit()
		}
		return err
	}, nil
}

// denied audits the policy's denial of st and answers the sender.
func (s *Server) denied(ctx context.Context, st *stanza.Stanza, policy string, d *module.Denial) {
	s.audit.Info("policy_denied",
		zap.String("policy", policy), zap.String("reason", d.Reason),
		zap.String("from", st.From.String()), zap.String("to", st.To.String()), zap.String("kind", st.Kind.String()))
	var cond stanza.Condition // "": dropped silently
	if d.Err != nil {
		cond = d.Err.Condition
	}
	s.metrics.Denied(policy, cond)
	if d.Err != nil {
		s.bounce(ctx, st, d.Err)
	}
}

// submit hands st to the journal without waiting for the commit.
func (s *Server) submit(ctx context.Context, st *stanza.Stanza) (wait func() error) {
	if pj, ok := s.journal.(module.PipelinedJournal); ok {
		return pj.Submit(ctx, st)
	}
	err := s.journal.Append(ctx, st)
	return func() error { return err }
}

// Admit runs st through the policy chain and the journal without routing
// it (module.Router): a module that changes state on a stanza records it
// first, then changes state, then calls Route.
func (s *Server) Admit(ctx context.Context, st *stanza.Stanza) error {
	wait, err := s.admit(ctx, st)
	if err != nil {
		return err
	}
	return s.recorded(ctx, st, wait())
}

// deliver routes an admitted stanza once the journal took it (jerr nil),
// or answers the sender with an error.
func (s *Server) deliver(ctx context.Context, st *stanza.Stanza, jerr error) error {
	if err := s.recorded(ctx, st, jerr); err != nil {
		return err
	}
	s.Route(ctx, st)
	return nil
}

// recorded acts on the journal's verdict on st: a failure is answered to
// the sender and marks the health status.
func (s *Server) recorded(ctx context.Context, st *stanza.Stanza, jerr error) error {
	if err := jerr; err != nil {
		// Fail closed: nothing is delivered that is not journaled. The
		// sender's error is the one stanza that is not journaled: it only
		// returns the sender's own stanza, and the journal cannot take it.
		s.journalFailed(st, err)
		if r := errorReply(st, stanza.Err(stanza.Wait, stanza.InternalServerError, "the "+st.Kind.String()+" could not be recorded")); r != nil {
			s.Route(ctx, r)
		}
		return err
	}
	s.journalOK()
	return nil
}

func (s *Server) journalFailed(st *stanza.Stanza, err error) {
	s.log.Error("journal append failed", zap.Error(err))
	s.audit.Error("journal_failed", zap.String("from", st.From.String()), zap.String("to", st.To.String()),
		zap.String("kind", st.Kind.String()), zap.Error(err))
	s.SetHealth("journal", err.Error())
	s.journalBad.Store(true) // after SetHealth: a racing success then clears it
}

// journalOK clears the journal's health problem after a good append.
func (s *Server) journalOK() {
	if s.journalBad.Load() && s.journalBad.Swap(false) {
		s.SetHealth("journal", "")
	}
}

// errorReply is the error answer to st, or nil when st gets none (errors,
// stanzas without a sender, iq results).
func errorReply(st *stanza.Stanza, e *stanza.Error) *stanza.Stanza {
	if st.Type == "error" || st.From.Equal(jid.JID{}) {
		return nil
	}
	if st.Kind == stanza.IQ && !st.IsRequest() {
		return nil
	}
	r := st.ErrorReply(e)
	if st.To.Equal(jid.JID{}) {
		// A presence broadcast: answered on behalf of the sender's
		// account, as the presence handler takes no error without a sender.
		r.SetFrom(st.From.Bare())
	}
	return r
}

// bounce answers st with an error, unless st is itself an error or a
// presence that needs none. A bounced message is journaled first (errors
// bounced to users are communications too); if that fails it is dropped.
func (s *Server) bounce(ctx context.Context, st *stanza.Stanza, e *stanza.Error) {
	r := errorReply(st, e)
	if r == nil {
		return
	}
	if r.Kind == stanza.Message {
		if err := s.submit(ctx, r)(); err != nil {
			s.journalFailed(r, err)
			return
		}
		s.journalOK()
	}
	s.Route(ctx, r)
}

// Route delivers st without policy or journal.
func (s *Server) Route(ctx context.Context, st *stanza.Stanza) {
	to := st.To
	if !s.IsLocal(to.Domainpart()) {
		s.routeRemote(ctx, st) // federation.go
		return
	}
	if to.Localpart() == "" {
		if st.Kind == stanza.IQ {
			s.dispatchIQ(ctx, st, module.ScopeServer)
		}
		return // messages and presence to the server itself are not served
	}
	switch st.Kind {
	case stanza.IQ:
		if to.Resourcepart() == "" {
			s.dispatchIQ(ctx, st, module.ScopeAccount)
			return
		}
		if sess := s.table.Session(to); sess != nil {
			sess.Send(st)
			return
		}
		s.bounce(ctx, st, stanza.Err(stanza.Cancel, stanza.ServiceUnavailable, ""))
	case stanza.Message:
		s.deliverMessage(ctx, st)
	case stanza.Presence:
		if s.presence != nil {
			s.presence.InboundPresence(ctx, st)
		}
	}
}

func (s *Server) dispatchIQ(ctx context.Context, st *stanza.Stanza, scope module.Scope) {
	if !st.IsRequest() {
		// Replies to Request; the rest (answers to our pings) end here.
		s.requests.resolve(st)
		return
	}
	p := st.Payload()
	if p == nil || elementCount(st.El) != 1 {
		s.bounce(ctx, st, stanza.Err(stanza.Modify, stanza.BadRequest, "an iq request carries exactly one payload"))
		return
	}
	h := s.iq[iqKey{p.Space, p.Local, scope}]
	if h == nil {
		s.bounce(ctx, st, stanza.Err(stanza.Cancel, stanza.ServiceUnavailable, ""))
		return
	}
	var sess module.Session
	if s.IsLocal(st.From.Domainpart()) && st.From.Resourcepart() != "" {
		sess = s.table.Session(st.From)
	}
	res, err := h(ctx, sess, st)
	if errors.Is(err, module.ErrHandled) {
		return
	}
	if err != nil {
		var se *stanza.Error
		if !errors.As(err, &se) {
			s.log.Error("iq handler failed", zap.String("ns", p.Space), zap.Error(err))
			se = stanza.Err(stanza.Wait, stanza.InternalServerError, "")
		}
		s.bounce(ctx, st, se)
		return
	}
	s.Route(ctx, st.Result(res))
}

// deliverMessage applies RFC 6121 8.5 to a message for a local account:
// 8.5.1 (no such user), 8.5.2 (to the bare JID) and 8.5.3 (to a full JID).
// The tables, per type:
//
//	to                       normal        chat          groupchat  headline      error
//	full, resource online    deliver       deliver       deliver    deliver       deliver   8.5.3.1
//	full, resource offline   error         as bare JID   error      ignore        ignore    8.5.3.2.1
//	bare, available (>= 0)   deliver       deliver       error      deliver (all) ignore    8.5.2.1.1
//	bare, none available     offline       offline       error      ignore        ignore    8.5.2.2.1
//	no such account          error         error         error      ignore        ignore    8.5.1
//
// "error" is <service-unavailable/> to the sender. Where the RFC leaves the
// choice between ignoring and answering, the answer is the same whether the
// account exists or not, so a stranger learns nothing from it beyond what
// 8.5.1 already tells (a normal or chat message to an account that does not
// exist is answered, one to an offline account is stored).
func (s *Server) deliverMessage(ctx context.Context, st *stanza.Stanza) {
	to := st.To
	typ := st.Type
	if typ == "" {
		typ = "normal" // RFC 6121 5.2.2: no type means normal
	}
	unavailable := stanza.Err(stanza.Cancel, stanza.ServiceUnavailable, "")
	if to.Resourcepart() != "" {
		// 8.5.3.1: a resource that exactly matches gets the message,
		// whatever its type.
		if sess := s.table.Session(to); sess != nil {
			sess.Send(st)
			s.delivered(ctx, st, []module.Session{sess}, false)
			return
		}
		// 8.5.3.2.1: no resource matches.
		switch typ {
		case "error", "headline":
			// "error": MUST silently ignore. "headline": ignore or
			// answer; a headline expects no reply, so it is ignored.
			return
		case "chat":
			// Processed as if addressed to the bare JID (8.5.2), below.
		default:
			// "normal" and "groupchat" (an unknown type counts as normal,
			// RFC 6121 5.2.2): MUST either ignore or answer with an error;
			// never delivered to another resource, never stored.
			s.bounce(ctx, st, unavailable)
			return
		}
	}
	switch typ {
	case "error":
		// 8.5.2.1.1, 8.5.2.2.1 and 8.5.1: an error is silently ignored.
		return
	case "groupchat":
		// 8.5.2.1.1 and 8.5.2.2.1: MUST NOT be delivered to the account's
		// resources; MUST be answered with <service-unavailable/> (8.5.1
		// allows the same answer when the account does not exist).
		s.bounce(ctx, st, unavailable)
		return
	}
	sessions := s.table.Sessions(to.Bare())
	var targets []module.Session
	if typ == "headline" {
		// 8.5.2.1.1: every available resource with non-negative priority.
		for _, t := range router.Available(sessions) {
			if t.Priority() >= 0 {
				targets = append(targets, t)
			}
		}
	} else {
		// 8.5.2.1.1, "normal" and "chat": the most available resources
		// (highest non-negative priority); a negative priority is treated
		// as not available.
		targets = router.MessageTargets(sessions)
	}
	if len(targets) > 0 {
		for _, t := range targets {
			t.Send(st)
		}
		s.delivered(ctx, st, targets, true)
		return
	}
	if typ == "headline" {
		// 8.5.2.2.1: no available resource, MUST silently ignore; 8.5.1
		// allows ignoring it when the account does not exist.
		return
	}
	if len(sessions) == 0 {
		// 8.5.1: a normal or chat message to an account that does not
		// exist is answered with <service-unavailable/>.
		ok, err := s.UserExists(ctx, to.Bare())
		if err != nil {
			s.bounce(ctx, st, stanza.Err(stanza.Wait, stanza.InternalServerError, ""))
			return
		}
		if !ok {
			s.bounce(ctx, st, unavailable)
			return
		}
	}
	// 8.5.2.2.1, "normal" and "chat": stored offline where the server
	// supports it, otherwise answered with <service-unavailable/>.
	if s.offline == nil {
		s.bounce(ctx, st, unavailable)
		return
	}
	if err := s.offline.StoreOffline(ctx, st); err != nil {
		var se *stanza.Error
		if !errors.As(err, &se) {
			s.log.Error("offline store failed", zap.Error(err))
			se = stanza.Err(stanza.Wait, stanza.InternalServerError, "")
		}
		s.bounce(ctx, st, se)
	}
}

func (s *Server) delivered(ctx context.Context, st *stanza.Stanza, to []module.Session, bare bool) {
	for _, o := range s.msgObs {
		o.MessageDelivered(ctx, st, to, bare)
	}
}

// handler adapts Server to c2s.Handler.
type handler struct{ s *Server }

func (h handler) Mechanisms(domain string, b sasl.Binding) []sasl.Mechanism {
	return h.s.mechanisms(domain, b)
}

func (h handler) AuthorizeLogin(ctx context.Context, bare jid.JID, remote string) (c2s.Grant, error) {
	r, err := h.s.authorizeLogin(ctx, bare, remote)
	if err != nil {
		return c2s.Grant{}, err
	}
	return c2s.Grant{MaxSessions: r.MaxSessions, MaxDuration: time.Duration(r.MaxSessionDuration)}, nil
}

func (h handler) LoginLocked(bare jid.JID, remote string) error {
	account := ""
	if bare.Localpart() != "" {
		account = bare.String()
	}
	what, until := h.s.lockout.locked(account, ipOf(remote))
	if what == "" {
		return nil
	}
	return &sasl.Failure{Condition: sasl.NotAuthorized, Text: "temporarily locked after failed logins",
		Err: fmt.Errorf("%s locked until %s", what, until.UTC().Format(time.RFC3339))}
}

func (h handler) LoginFailed(bare jid.JID, remote string) time.Duration {
	return h.s.lockout.failed(bare.String(), ipOf(remote))
}

func (h handler) LoginSucceeded(bare jid.JID, remote string) {
	h.s.lockout.succeeded(bare.String(), ipOf(remote))
}

func (h handler) StreamFeatures(authenticated bool) []*element.Element {
	return h.s.streamFeatures(authenticated)
}

func (h handler) PreAuthIQ(ctx context.Context, domain string, iq *stanza.Stanza) *stanza.Stanza {
	p := iq.Payload()
	if p == nil {
		return nil
	}
	m := h.s.preAuth[p.Space]
	if m == nil {
		return nil
	}
	d, _ := jid.New("", domain, "")
	iq.To = d
	res, err := m.PreAuthIQ(ctx, domain, iq)
	var reply *stanza.Stanza
	if err != nil {
		var se *stanza.Error
		if !errors.As(err, &se) {
			se = stanza.Err(stanza.Wait, stanza.InternalServerError, "")
		}
		reply = iq.ErrorReply(se)
	} else {
		reply = iq.Result(res)
	}
	reply.SetTo(jid.JID{})
	return reply
}

func (h handler) SessionStarted(ctx context.Context, sess *c2s.Session) {
	for _, o := range h.s.sessObs {
		o.SessionStarted(ctx, sess)
	}
}

func (h handler) SessionEnded(ctx context.Context, sess *c2s.Session) {
	h.s.requests.sessionEnded(sess)
	for _, o := range h.s.sessObs {
		o.SessionEnded(ctx, sess)
	}
}

// HandleStanza processes a stanza from a bound client ('from' is stamped),
// after the protocol hygiene checks (hygiene.go).
// For a message it returns the delivery step, which the session runs in
// order once it has admitted what else its client sent together.
func (h handler) HandleStanza(ctx context.Context, sess *c2s.Session, st *stanza.Stanza) (then func()) {
	s := h.s
	s.metrics.StanzaIn(st.Kind)
	if !s.clientHygiene(sess, st) {
		return nil
	}
	switch st.Kind {
	case stanza.Presence:
		initial := false
		if st.To.Equal(jid.JID{}) {
			switch st.Type {
			case "", "unavailable":
				// A broadcast meets the policy chain and the journal once,
				// as sent (one record when it carries status text), before
				// the session's presence changes and before the presence
				// handler routes a copy to anyone: copies are not recorded
				// again. Directed presence is journaled when the presence
				// handler processes it.
				if s.Admit(ctx, st) != nil {
					return nil
				}
				st.Journaled = true
				initial = sess.UpdatePresence(st)
			default:
				// Subscription states, probes and errors need an address.
				if st.Type != "error" {
					s.bounce(ctx, st, stanza.Err(stanza.Modify, stanza.BadRequest, "presence of this type needs a 'to'"))
				}
				return nil
			}
		}
		if s.presence != nil {
			s.presence.OutboundPresence(ctx, sess, st)
		}
		if initial {
			for _, o := range s.presObs {
				o.InitialPresence(ctx, sess)
			}
		}
		if st.To.Equal(jid.JID{}) {
			for _, o := range s.bcastObs {
				o.PresenceBroadcast(ctx, sess, st)
			}
		}
	case stanza.Message:
		if st.To.Equal(jid.JID{}) {
			st.SetTo(sess.JID().Bare())
		}
		wait, err := s.admit(ctx, st)
		if err != nil {
			return nil
		}
		// Delivered later, in order: the session may read and admit the
		// messages its client sent with this one first (one commit for all).
		return func() {
			if s.deliver(ctx, st, wait()) == nil {
				for _, o := range s.msgObs {
					o.MessageSent(ctx, sess, st)
				}
			}
		}
	case stanza.IQ:
		if st.To.Equal(jid.JID{}) {
			// RFC 6120 10.3.3: handled on behalf of the sender's account.
			st.To = sess.JID().Bare()
		}
		_ = s.Process(ctx, st)
	}
	return nil
}

// Reroute redelivers what a session did not deliver (XEP-0198 section 5:
// unacknowledged stanzas): messages go to other resources or offline
// storage with a delay stamp, IQ requests are bounced, the rest dropped.
func (h handler) Reroute(ctx context.Context, sess *c2s.Session, stanzas [][]byte) {
	s := h.s
	stamp := time.Now().UTC().Format(time.RFC3339)
	for _, b := range stanzas {
		el, err := element.Parse(b, stanza.NSClient)
		if err != nil {
			s.log.Error("reroute: cannot parse queued stanza", zap.Error(err))
			continue
		}
		st, err := stanza.Parse(el)
		if err != nil {
			continue
		}
		switch st.Kind {
		case stanza.IQ:
			if st.IsRequest() {
				s.bounce(ctx, st, stanza.Err(stanza.Cancel, stanza.ServiceUnavailable, ""))
			}
		case stanza.Message:
			if st.Type == "error" || st.Type == "groupchat" || st.Type == "headline" ||
				el.Child("urn:xmpp:carbons:2", "received") != nil || el.Child("urn:xmpp:carbons:2", "sent") != nil {
				continue
			}
			if el.Child(stanza.NSDelay, "delay") == nil {
				el.Append(element.New(stanza.NSDelay, "delay", element.A("from", sess.JID().Domainpart()), element.A("stamp", stamp)))
			}
			st.To = st.To.Bare() // the resource is gone: deliver as to the account
			s.deliverMessage(ctx, st)
		}
	}
}
