package c2s

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/palisade-im/palisade/server/element"
	"github.com/palisade-im/palisade/server/metrics"
	"github.com/palisade-im/palisade/server/module"
	"github.com/palisade-im/palisade/server/stanza"
	"go.uber.org/zap"
	"mellium.im/xmpp/jid"
)

// Session is a bound client resource. It outlives its connection while an
// XEP-0198 resumption is possible. Every stanza to the client goes through
// its queue and one on-demand writer goroutine, which owns the XEP-0198
// outbound counter; no goroutine is parked while the session is idle.
type Session struct {
	srv    *Server
	id     string // stream id, also the XEP-0198 resumption id
	jid    jid.JID
	mech   string
	remote string

	mu sync.Mutex
	tr transport // nil while detached
	// q holds stanzas not yet acknowledged (with XEP-0198) or not yet
	// written (without). q[:wpos] have been written.
	q    [][]byte
	wpos int
	// nonzas are stream-level elements written before the next stanzas.
	// nzAt[k] is 1 + the index in nonzas of the unwritten answer of kind
	// k, 0 when none is queued (see nzKind).
	nonzas [][]byte
	nzAt   [nzKinds]int
	// Byte accounting against Config.SendQueueBytes (and, through acct,
	// AccountQueueBytes). bytes is everything held for the client: q
	// (qBytes), nonzas (nzBytes, which also carries the weight of
	// coalesced answers), held presence (heldBytes), and what the writer
	// took and has not written yet. Kept incrementally: added on enqueue,
	// subtracted on ack, write without XEP-0198, rerouting or drop.
	bytes, qBytes, nzBytes, heldBytes int
	acct                              *account
	// full is set when the session passed a bound after it was already
	// cut or while detached: it is not resumable any more, reports itself
	// unavailable, and every stanza routed to it is rerouted at once.
	full bool
	// writer is the transport the running writer goroutine serves, nil
	// when none runs.
	writer transport
	// closing is set once the session is being shut; closeErr is the
	// stream error to write last.
	closing  bool
	closeErr *streamError
	ended    bool

	smOn      bool
	smResume  bool
	outAcked  uint32 // h the client last acknowledged
	inHandled uint32 // stanzas handled from the client since <enable/>
	// pending are the last steps of messages admitted but not yet
	// delivered, guarded by pmu (not mu: the steps route stanzas, which
	// may come back to this session's Send). While delivering is set one
	// deliverer goroutine runs them in order (see deliverPending); idle
	// (on pmu) is signalled when it stops.
	pmu        sync.Mutex
	pending    []func()
	spare      []func()
	delivering bool
	idle       sync.Cond
	rRequested bool
	detach     *time.Timer
	// expiry ends the session at the access rule's maximum duration
	// (nil: no limit).
	expiry *time.Timer

	avail     bool
	prio      int
	pres      *stanza.Stanza
	initial   bool
	rosterReq bool
	carbons   bool
	inactive  bool
	held      map[string][]byte // latest presence per sender while inactive (XEP-0352)
	// open is the session's place in palisade_sessions_open.
	open metrics.Session
}

var _ module.Session = (*Session)(nil)

// JID returns the full JID.
func (s *Session) JID() jid.JID { return s.jid }

// ID returns the stream id.
func (s *Session) ID() string { return s.id }

// Mechanism returns the SASL mechanism used to log in.
func (s *Session) Mechanism() string { return s.mech }

// RemoteAddr returns the client's address.
func (s *Session) RemoteAddr() string {
	s.mu.Lock() // resume changes it
	defer s.mu.Unlock()
	return s.remote
}

// Presence returns the last available presence, or nil.
func (s *Session) Presence() *stanza.Stanza {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pres
}

// Priority returns the current priority.
func (s *Session) Priority() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.prio
}

// Available reports whether the client is available. A session past its
// queue bound that is being ended is not: messages to the account then go
// to its other resources or offline instead of coming back to it.
func (s *Session) Available() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.avail && !s.full
}

// RosterRequested reports whether the client fetched its roster.
func (s *Session) RosterRequested() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rosterReq
}

// SetRosterRequested marks the session as interested in roster pushes.
func (s *Session) SetRosterRequested() {
	s.mu.Lock()
	s.rosterReq = true
	s.mu.Unlock()
}

// Carbons reports whether carbons are enabled.
func (s *Session) Carbons() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.carbons
}

// SetCarbons switches carbons.
func (s *Session) SetCarbons(on bool) {
	s.mu.Lock()
	s.carbons = on
	s.mu.Unlock()
}

// UpdatePresence records a broadcast presence (no 'to') from the client and
// reports whether it is the session's initial available presence.
func (s *Session) UpdatePresence(st *stanza.Stanza) (initial bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch st.Type {
	case "":
		s.prio = parsePriority(st.El.ChildText(stanza.NSClient, "priority"))
		s.pres = st
		if !s.avail {
			s.avail = true
			if !s.initial {
				s.initial = true
				return true
			}
		}
	case "unavailable":
		s.avail = false
		s.pres = nil
		s.prio = 0
	}
	return false
}

func parsePriority(v string) int {
	if v == "" {
		return 0
	}
	p, err := strconv.Atoi(v)
	if err != nil || p < -128 || p > 127 {
		return 0
	}
	return p
}

// Send queues st's wire bytes (stanza.Wire) for the client: the caller may
// change st afterwards through its setters, which leave the queued bytes
// as they were. It never blocks: a session over its queue bound (stanzas,
// bytes, or its account's bytes) is closed, and one that cannot hold more
// hands the stanzas back for rerouting.
func (s *Session) Send(st *stanza.Stanza) {
	b := st.Wire() // shared, read-only: the bytes the journal recorded
	s.mu.Lock()
	if s.ended || s.full {
		// Routed here as the session ended, or past its bound: reroute,
		// never drop.
		s.mu.Unlock()
		s.srv.h.Reroute(context.Background(), s, [][]byte{b})
		return
	}
	s.srv.cfg.Metrics.StanzaOut(st.Kind)
	var spill [][]byte
	switch {
	case s.closing:
		spill = s.enqueueLocked(b, false) // kept for resumption or rerouting
	case s.inactive && st.Kind == stanza.Presence && isPlainPresence(st.Type):
		// XEP-0352: hold presence updates while the client is inactive;
		// only the latest from each sender matters.
		spill = s.holdLocked(st.From.String(), b)
	default:
		if s.inactive && len(s.held) > 0 && st.Kind != stanza.Presence {
			s.flushHeldLocked()
		}
		spill = s.enqueueLocked(b, true)
	}
	s.mu.Unlock()
	if len(spill) > 0 {
		s.srv.h.Reroute(context.Background(), s, spill)
	}
}

func isPlainPresence(t string) bool { return t == "" || t == "unavailable" }

// addLocked counts n more bytes held for the client and reports whether
// the session or its account is now past its bound.
func (s *Session) addLocked(n int) (over bool) {
	s.bytes += n
	cfg := &s.srv.cfg
	over = cfg.SendQueueBytes > 0 && s.bytes > cfg.SendQueueBytes
	if s.acct != nil {
		if t := s.acct.bytes.Add(int64(n)); cfg.AccountQueueBytes > 0 && t > int64(cfg.AccountQueueBytes) {
			over = true
		}
	}
	return over
}

// releaseLocked subtracts n bytes no longer held for the client.
func (s *Session) releaseLocked(n int) {
	if n == 0 {
		return
	}
	s.bytes -= n
	if s.acct != nil {
		s.acct.bytes.Add(-int64(n))
	}
}

// holdLocked keeps b as the latest presence from sender (XEP-0352).
func (s *Session) holdLocked(sender string, b []byte) (spill [][]byte) {
	if s.held == nil {
		s.held = make(map[string][]byte)
	}
	n := len(b)
	if old, ok := s.held[sender]; ok {
		n -= len(old)
	} else {
		n += len(sender)
	}
	s.held[sender] = b
	s.heldBytes += n
	if n < 0 {
		s.releaseLocked(-n)
		return nil
	}
	if s.addLocked(n) {
		return s.overflowLocked()
	}
	return nil
}

func (s *Session) flushHeldLocked() {
	for k, b := range s.held {
		s.q = append(s.q, b)
		s.qBytes += len(b)
		s.heldBytes -= len(b) + len(k)
		s.releaseLocked(len(k))
		delete(s.held, k)
	}
}

// enqueueLocked queues b, and starts the writer if kick is set. Past a
// bound it returns what is to be rerouted (see overflowLocked).
func (s *Session) enqueueLocked(b []byte, kick bool) (spill [][]byte) {
	s.q = append(s.q, b)
	s.qBytes += len(b)
	if over := s.addLocked(len(b)); over || len(s.q) > s.srv.cfg.SendQueue {
		return s.overflowLocked()
	}
	if kick {
		s.kickLocked()
	}
	return nil
}

// overflowLocked handles a session past one of its bounds. An attached
// session is cut (a slow or stalled client): what it did not acknowledge
// stays in q for resumption or rerouting. A session already cut, or
// detached, gives up resumption: what it holds is returned to be rerouted,
// later stanzas are rerouted as they come, and the session ends.
func (s *Session) overflowLocked() (spill [][]byte) {
	if s.tr != nil && !s.closing {
		s.srv.log.Info("send queue full, closing session", logJID(s.jid),
			zap.Int("bytes", s.bytes), zap.Int("stanzas", len(s.q)))
		s.closeLocked(errStream("policy-violation", "send queue full"), false)
		return nil
	}
	s.srv.log.Info("send queue full, session not resumable", logJID(s.jid), zap.Int("bytes", s.bytes), zap.Int("stanzas", len(s.q)))
	s.smResume = false
	s.full = true
	spill = s.takeLeftoversLocked()
	if s.tr == nil {
		// Detached: end it now (without a detach timer yet, the reader's
		// teardown sees smResume unset and ends it).
		if s.detach != nil && s.detach.Stop() {
			go s.end(context.Background())
		}
	} else {
		// Cut already, and not reading: do not wait for closeGrace.
		tr := s.tr
		go func() { _ = tr.close() }()
	}
	return spill
}

// nzKind names the stream-level answers that a client can make the server
// queue without end. While one of a kind is still unwritten, no second one
// is queued: the pending one stands for both (an <a/> is rewritten with the
// latest h). The client is still owed the answers it asked for, so their
// bytes count against the bound until the one answer standing for them is
// written: a client that asks and never reads is cut, and the memory held
// stays that of one answer per kind.
type nzKind uint8

const (
	nzOther        nzKind = iota // never coalesced: <enabled/>, <resumed/>
	nzAck                        // <a/> answering <r/>
	nzFailedResume               // <failed/> answering <resume/> after bind
	nzFailedEnable               // <failed/> answering a second <enable/>
	nzPing                       // the server's <r/> or ping to an idle client
	nzKinds
)

// sendNonza queues a stream-level element (not counted by XEP-0198).
func (s *Session) sendNonza(kind nzKind, el *element.Element) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tr == nil || s.ended || s.closing {
		return
	}
	if i := s.nzAt[kind]; kind != nzOther && i > 0 {
		if kind == nzPing {
			return // our own: one outstanding is enough
		}
		// The same answer again: owed, not queued twice.
		s.nzBytes += len(s.nonzas[i-1])
		if s.addLocked(len(s.nonzas[i-1])) {
			s.overflowLocked()
		}
		return
	}
	s.queueNonzaLocked(kind, el.AppendTo(nil, stanza.NSClient))
}

// answerR answers the client's <r/> with the number of stanzas handled.
func (s *Session) answerR() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.smOn || s.tr == nil || s.ended || s.closing {
		return
	}
	if i := s.nzAt[nzAck]; i > 0 {
		// Unwritten yet: it now carries the latest h. Its bytes are not
		// shared with a writer's batch (the writer takes nonzas whole),
		// so it is rewritten in place.
		b := appendAck(s.nonzas[i-1][:0], s.inHandled)
		s.nonzas[i-1] = b
		s.nzBytes += len(b)
		if s.addLocked(len(b)) {
			s.overflowLocked()
		}
		return
	}
	s.queueNonzaLocked(nzAck, appendAck(make([]byte, 0, 40), s.inHandled))
}

func appendAck(b []byte, h uint32) []byte {
	b = append(b, `<a xmlns="urn:xmpp:sm:3" h="`...)
	b = strconv.AppendUint(b, uint64(h), 10)
	return append(b, `"/>`...)
}

func (s *Session) queueNonzaLocked(kind nzKind, b []byte) {
	s.nonzas = append(s.nonzas, b)
	if kind != nzOther {
		s.nzAt[kind] = len(s.nonzas)
	}
	s.nzBytes += len(b)
	if s.addLocked(len(b)) {
		s.overflowLocked() // attached and not closing: a cut, nothing to reroute
		return
	}
	s.kickLocked()
}

// dropNonzasLocked forgets the unwritten stream-level elements.
func (s *Session) dropNonzasLocked() {
	clear(s.nonzas)
	s.nonzas = s.nonzas[:0]
	s.nzAt = [nzKinds]int{}
	s.releaseLocked(s.nzBytes)
	s.nzBytes = 0
}

// kickLocked starts the writer if there is work and a connection.
func (s *Session) kickLocked() {
	if s.tr == nil || s.writer == s.tr {
		return
	}
	if len(s.nonzas) == 0 && s.wpos == len(s.q) && !s.closing {
		return
	}
	s.writer = s.tr
	go s.writeLoop(s.tr)
}

// writerDoneLocked marks the writer for tr as gone.
func (s *Session) writerDoneLocked(tr transport) {
	if s.writer == tr {
		s.writer = nil
	}
}

// writeLoop drains the queue to the connection in batches, then exits.
func (s *Session) writeLoop(tr transport) {
	var batch [][]byte
	// inflight: bytes of the batch that left nonzas and q (without
	// XEP-0198) and still count until they are written.
	inflight := 0
	for {
		s.mu.Lock()
		s.releaseLocked(inflight)
		inflight = 0
		if s.tr != tr {
			s.writerDoneLocked(tr)
			s.mu.Unlock()
			return
		}
		batch = append(batch[:0], s.nonzas...)
		clear(s.nonzas)
		s.nonzas = s.nonzas[:0]
		s.nzAt = [nzKinds]int{}
		inflight, s.nzBytes = s.nzBytes, 0
		batch = append(batch, s.q[s.wpos:]...)
		s.wpos = len(s.q)
		if !s.smOn {
			// Without XEP-0198 a written stanza is gone from our hands.
			clear(s.q)
			s.q = s.q[:0]
			s.wpos = 0
			inflight += s.qBytes
			s.qBytes = 0
		} else if s.wpos > 0 && !s.rRequested && len(batch) > 0 {
			batch = append(batch, []byte("<r xmlns='urn:xmpp:sm:3'/>"))
			s.rRequested = true
		}
		closing, closeErr := s.closing, s.closeErr
		if len(batch) == 0 && !closing {
			s.writerDoneLocked(tr)
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()

		var err error
		if len(batch) > 0 {
			err = tr.write(batch)
		}
		if err == nil && closing {
			if closeErr != nil {
				_ = tr.writeError(closeErr)
			} else {
				_ = tr.writeClose()
			}
		}
		if err != nil || closing {
			_ = tr.close()
			s.mu.Lock()
			s.releaseLocked(inflight)
			s.writerDoneLocked(tr)
			s.mu.Unlock()
			return
		}
	}
}

// expire ends a session that reached the maximum session duration d of
// its access rule: attached, with a stream error; detached, at once. It is
// final: no XEP-0198 resumption, the client has to log in again.
//
// The condition is policy-violation (RFC 6120 4.9.3.12: the entity
// violated a local service policy, which the server may name in <text/>).
// connection-timeout would say the client went idle, and the server keeps
// such sessions resumable; reset (4.9.3.16) is for renegotiating the
// stream's security (expired keys or certificates), which is not the case.
func (s *Session) expire(d time.Duration) {
	s.mu.Lock()
	if s.ended || s.expiry == nil {
		s.mu.Unlock()
		return
	}
	s.expiry = nil
	s.mu.Unlock()
	s.srv.log.Info("maximum session duration reached, closing session", logJID(s.jid), zap.Duration("max", d))
	s.srv.audit.Info("session_expired", logJID(s.jid), zap.String("reason", "max_session_duration"),
		zap.Duration("max", d), zap.String("remote", s.RemoteAddr()))
	s.Close("policy-violation", "maximum session duration reached")
}

// Close ends the session with a stream error; no resumption is offered.
func (s *Session) Close(condition, text string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closeLocked(errStream(condition, text), true)
}

// closeLocked shuts the connection after the queue is written. final
// forbids resumption (conflict, kick, shutdown).
func (s *Session) closeLocked(se *streamError, final bool) {
	if final {
		s.smResume = false
	}
	if s.closing {
		return
	}
	s.closing = true
	s.closeErr = se
	if s.tr == nil {
		// Detached: end it now if it may not be resumed.
		if final && s.detach != nil && s.detach.Stop() {
			go s.end(context.Background())
		}
		return
	}
	s.kickLocked() // the writer closes after its batch
	// A peer that does not read keeps the writer blocked until the write
	// timeout; do not wait that long to cut it.
	tr := s.tr
	time.AfterFunc(closeGrace, func() { _ = tr.close() })
}

// closeGrace is how long a closing session's writer gets to write what is
// queued and the stream error before the connection is cut.
const closeGrace = 5 * time.Second

// endDetached ends the session now if it is detached (server shutdown).
func (s *Session) endDetached(ctx context.Context) {
	s.mu.Lock()
	s.smResume = false
	if s.tr == nil && s.detach != nil && s.detach.Stop() {
		s.mu.Unlock()
		s.end(ctx)
		return
	}
	s.mu.Unlock()
}

// ack handles <a h=.../> from the client.
func (s *Session) ack(h uint32) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.full {
		return nil // its queue was handed over for rerouting
	}
	s.rRequested = false
	n := h - s.outAcked // wraps correctly at 2^32
	if int64(n) > int64(s.wpos) {
		return errStream("undefined-condition", "h acknowledges stanzas never sent")
	}
	s.dropAckedLocked(n)
	return nil
}

func (s *Session) dropAckedLocked(n uint32) {
	if n == 0 {
		return
	}
	freed := 0
	for _, b := range s.q[:n] {
		freed += len(b)
	}
	s.qBytes -= freed
	s.releaseLocked(freed)
	clear(s.q[:n])
	s.q = s.q[n:]
	s.wpos -= int(n)
	s.outAcked += n
	if len(s.q) == 0 {
		s.q = nil // release the backing array of a burst
	}
}

// handled increments the inbound XEP-0198 counter.
func (s *Session) handled() {
	s.mu.Lock()
	s.inHandled++
	s.mu.Unlock()
}

// setInactive switches XEP-0352 client state.
func (s *Session) setInactive(v bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inactive = v
	if !v && len(s.held) > 0 {
		s.flushHeldLocked()
		s.kickLocked()
	}
}

// takeLeftovers empties the queue for rerouting when the session ends.
func (s *Session) takeLeftovers() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.takeLeftoversLocked()
}

// takeLeftoversLocked empties the queue for rerouting; held presence and
// unwritten stream-level elements are dropped.
func (s *Session) takeLeftoversLocked() [][]byte {
	out := s.q
	s.q, s.wpos = nil, 0
	s.held = nil
	s.releaseLocked(s.qBytes + s.heldBytes)
	s.qBytes, s.heldBytes = 0, 0
	s.dropNonzasLocked()
	return out
}
