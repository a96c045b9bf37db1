package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/palisade-im/palisade/server/module"
	"github.com/palisade-im/palisade/server/stanza"
	"mellium.im/xmpp/jid"
)

// requestTimeout bounds how long Request waits for a reply.
const requestTimeout = 30 * time.Second

// ErrSessionGone is returned by Request when the addressed local session
// ended before it replied.
var ErrSessionGone = errors.New("server: the addressed session went away")

var _ module.Requester = (*Server)(nil)

// pending is one request awaiting its reply.
type pending struct {
	to    jid.JID
	sess  module.Session // the addressed local session, if any
	reply chan *stanza.Stanza
	gone  chan struct{}
}

// requests is the table of server-originated IQ requests, keyed by id.
type requests struct {
	mu sync.Mutex
	m  map[string]*pending
}

func (r *requests) add(id string, p *pending) {
	r.mu.Lock()
	if r.m == nil {
		r.m = map[string]*pending{}
	}
	r.m[id] = p
	r.mu.Unlock()
}

func (r *requests) remove(id string) {
	r.mu.Lock()
	delete(r.m, id)
	r.mu.Unlock()
}

// resolve hands a result or error to the request it answers, if any. A
// reply from any other JID than the one addressed is ignored.
func (r *requests) resolve(st *stanza.Stanza) bool {
	r.mu.Lock()
	p := r.m[st.ID]
	if p == nil || !p.to.Equal(st.From) {
		r.mu.Unlock()
		return false
	}
	delete(r.m, st.ID)
	r.mu.Unlock()
	p.reply <- st // buffered: never blocks
	return true
}

// sessionEnded fails the requests addressed to sess.
func (r *requests) sessionEnded(sess module.Session) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, p := range r.m {
		if p.sess == sess {
			delete(r.m, id)
			close(p.gone)
		}
	}
}

// Request sends a server-generated IQ request and waits for its reply
// (module.Requester).
func (s *Server) Request(ctx context.Context, iq *stanza.Stanza) (*stanza.Stanza, error) {
	if !iq.IsRequest() {
		return nil, errors.New("server: Request needs an iq of type get or set")
	}
	if iq.To.Equal(jid.JID{}) {
		return nil, errors.New("server: Request needs a 'to' address")
	}
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("server: request id: %w", err)
	}
	id := "s" + hex.EncodeToString(b[:])
	out := iq.ShallowCopy()
	out.ID = id
	out.El.SetAttr("id", id)
	if out.From.Equal(jid.JID{}) {
		d, err := jid.New("", iq.To.Domainpart(), "")
		if err != nil {
			return nil, fmt.Errorf("server: request from: %w", err)
		}
		out.SetFrom(d)
	}
	p := &pending{to: iq.To, reply: make(chan *stanza.Stanza, 1), gone: make(chan struct{})}
	if iq.To.Resourcepart() != "" && s.IsLocal(iq.To.Domainpart()) {
		p.sess = s.table.Session(iq.To)
	}
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	s.requests.add(id, p)
	defer s.requests.remove(id)
	s.Route(ctx, out)
	select {
	case r := <-p.reply:
		return r, nil
	case <-p.gone:
		return nil, fmt.Errorf("server: iq to %s: %w", iq.To, ErrSessionGone)
	case <-ctx.Done():
		return nil, fmt.Errorf("server: iq to %s: %w", iq.To, ctx.Err())
	}
}
