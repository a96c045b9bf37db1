package c2s

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/palisade-im/palisade/server/element"
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
	nonzas [][]byte
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

// Available reports whether the client is available.
func (s *Session) Available() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.avail
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
// as they were. It never blocks: a session over its queue bound is closed.
func (s *Session) Send(st *stanza.Stanza) {
	b := st.Wire() // shared, read-only: the bytes the journal recorded
	s.mu.Lock()
	if s.ended {
		// Routed here as the session ended: reroute, never drop.
		s.mu.Unlock()
		s.srv.h.Reroute(context.Background(), s, [][]byte{b})
		return
	}
	defer s.mu.Unlock()
	if s.closing {
		s.q = append(s.q, b) // kept for resumption or rerouting
		return
	}
	if s.inactive && st.Kind == stanza.Presence && isPlainPresence(st.Type) {
		// XEP-0352: hold presence updates while the client is inactive;
		// only the latest from each sender matters.
		if s.held == nil {
			s.held = make(map[string][]byte)
		}
		s.held[st.From.String()] = b
		return
	}
	if s.inactive && len(s.held) > 0 && st.Kind != stanza.Presence {
		s.flushHeldLocked()
	}
	s.enqueueLocked(b)
}

func isPlainPresence(t string) bool { return t == "" || t == "unavailable" }

func (s *Session) flushHeldLocked() {
	for k, b := range s.held {
		s.q = append(s.q, b)
		delete(s.held, k)
	}
}

func (s *Session) enqueueLocked(b []byte) {
	s.q = append(s.q, b)
	if s.tr == nil && len(s.q) > s.srv.cfg.SendQueue {
		// Detached too long with too much pending: give up the resumption.
		if s.detach != nil && s.detach.Stop() {
			go s.end(context.Background())
		}
		return
	}
	if len(s.q) > s.srv.cfg.SendQueue {
		// A slow or stalled client: cut it. What it did not acknowledge
		// stays in q for resumption or offline storage.
		s.srv.log.Info("send queue full, closing session", logJID(s.jid))
		s.closeLocked(errStream("policy-violation", "send queue full"), false)
		return
	}
	s.kickLocked()
}

// sendNonza queues a stream-level element (not counted by XEP-0198).
func (s *Session) sendNonza(el *element.Element) {
	b := el.AppendTo(nil, stanza.NSClient)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tr == nil || s.ended {
		return
	}
	s.nonzas = append(s.nonzas, b)
	s.kickLocked()
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
	for {
		s.mu.Lock()
		if s.tr != tr {
			s.writerDoneLocked(tr)
			s.mu.Unlock()
			return
		}
		batch = append(batch[:0], s.nonzas...)
		s.nonzas = s.nonzas[:0]
		batch = append(batch, s.q[s.wpos:]...)
		s.wpos = len(s.q)
		if !s.smOn {
			// Without XEP-0198 a written stanza is gone from our hands.
			clear(s.q)
			s.q = s.q[:0]
			s.wpos = 0
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
	out := s.q
	s.q, s.wpos = nil, 0
	s.held = nil
	return out
}
