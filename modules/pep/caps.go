package pep

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/palisade-im/palisade/modules/disco"
	"github.com/palisade-im/palisade/server/element"
	"github.com/palisade-im/palisade/server/module"
	"github.com/palisade-im/palisade/server/stanza"
	"go.uber.org/zap"
	"mellium.im/xmpp/jid"
)

const (
	// capsCacheSize bounds the verified 'ver' strings remembered.
	capsCacheSize = 4096
	// maxCapsQueries bounds the disco#info queries in flight.
	maxCapsQueries = 16
	// capsTimeout is how long a client has to answer a query.
	capsTimeout = 20 * time.Second
	// notifySuffix marks interest in a node (XEP-0163 section 4.2).
	notifySuffix = "+notify"
)

// caps is a parsed XEP-0115 <c/> element.
type caps struct {
	hash, node, ver string
}

func (c caps) key() string { return c.hash + "\x00" + c.node + "\x00" + c.ver }

// interests is the set of nodes a client wants notifications for.
type interests map[string]bool

// maxInterestBytes bounds the node names remembered for one 'ver' or
// session, so that the cache stays small whatever clients announce.
const maxInterestBytes = 8192

func interestsOf(features []string) interests {
	out := interests{}
	size := 0
	for _, f := range features {
		if n, ok := strings.CutSuffix(f, notifySuffix); ok && n != "" && !out[n] {
			if size += len(n); size > maxInterestBytes {
				break
			}
			out[n] = true
		}
	}
	return out
}

// capsCache maps verified hash and ver to interests, bounded, oldest out
// first. Only answers whose ver checks out are cached (XEP-0115 section
// 5.4), so one client cannot poison what other clients are taken to want.
type capsCache struct {
	mu       sync.Mutex
	max      int
	m        map[string]interests
	order    []string
	inflight map[string]chan struct{}
}

func newCapsCache(max int) *capsCache {
	return &capsCache{max: max, m: map[string]interests{}, inflight: map[string]chan struct{}{}}
}

func cacheKey(hash, ver string) string { return hash + "\x00" + ver }

func (c *capsCache) get(hash, ver string) (interests, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	i, ok := c.m[cacheKey(hash, ver)]
	return i, ok
}

func (c *capsCache) put(hash, ver string, i interests) {
	k := cacheKey(hash, ver)
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[k]; ok {
		return
	}
	if len(c.order) >= c.max {
		delete(c.m, c.order[0])
		c.order = c.order[1:]
	}
	c.m[k] = i
	c.order = append(c.order, k)
}

// claim returns nil when the caller should query for (hash, ver) and must
// call done after, or a channel closed when another query ends.
func (c *capsCache) claim(hash, ver string) (wait <-chan struct{}, done func()) {
	k := cacheKey(hash, ver)
	c.mu.Lock()
	defer c.mu.Unlock()
	if ch, ok := c.inflight[k]; ok {
		return ch, nil
	}
	ch := make(chan struct{})
	c.inflight[k] = ch
	return nil, func() {
		c.mu.Lock()
		delete(c.inflight, k)
		c.mu.Unlock()
		close(ch)
	}
}

// sessState is what the module knows of one local session.
type sessState struct {
	sess      module.Session
	available bool
	caps      caps
	hasCaps   bool
	notify    interests // nil while unknown
	querying  bool      // a capabilities query for this session is running
}

// SessionStarted implements module.SessionObserver: the account's
// bookmark views are completed (bookmarks.go).
func (m *Module) SessionStarted(ctx context.Context, sess module.Session) {
	m.migrateBookmarks(ctx, sess.JID().Bare())
}

// SessionEnded forgets the session.
func (m *Module) SessionEnded(_ context.Context, sess module.Session) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := sess.JID().String()
	if ss := m.sessions[k]; ss != nil && ss.sess == sess {
		delete(m.sessions, k)
	}
}

// interested reports whether sess asked for notifications of node.
func (m *Module) interested(sess module.Session, node string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	ss := m.sessions[sess.JID().String()]
	return ss != nil && ss.sess == sess && ss.available && ss.notify[node]
}

// wantsAny reports whether sess asked for notifications of any node.
func (m *Module) wantsAny(sess module.Session) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	ss := m.sessions[sess.JID().String()]
	return ss != nil && ss.sess == sess && ss.available && len(ss.notify) > 0
}

func parseCaps(st *stanza.Stanza) (caps, bool) {
	c := st.El.Child(NSCaps, "c")
	if c == nil || c.Attr("ver") == "" {
		return caps{}, false
	}
	return caps{hash: c.Attr("hash"), node: c.Attr("node"), ver: c.Attr("ver")}, true
}

// PresenceBroadcast follows a session's presence: on its first available
// presence, or when its capabilities change, it learns what the client
// wants and sends it the last published items (XEP-0163 section 4.3.3).
func (m *Module) PresenceBroadcast(ctx context.Context, sess module.Session, st *stanza.Stanza) {
	k := sess.JID().String()
	c, has := parseCaps(st)
	m.mu.Lock()
	ss := m.sessions[k]
	if ss == nil || ss.sess != sess {
		ss = &sessState{sess: sess}
		m.sessions[k] = ss
	}
	if st.Type == "unavailable" {
		*ss = sessState{sess: sess, querying: ss.querying}
		m.mu.Unlock()
		return
	}
	first := !ss.available
	changed := has != ss.hasCaps || c != ss.caps
	ss.available = true
	if changed {
		ss.caps, ss.hasCaps = c, has
		ss.notify = nil
		if !has {
			ss.notify = interests{}
		}
	}
	needQuery := false
	if changed && has {
		known := false
		if c.hash != "" {
			if i, ok := m.caps.get(c.hash, c.ver); ok {
				ss.notify, known = i, true
			}
		}
		needQuery = !known
	}
	m.mu.Unlock()
	if !has || (!first && !changed) {
		return
	}
	if needQuery {
		m.startQuery(sess)
		return
	}
	m.sendLastItems(ctx, sess)
}

// setInterests records what a query found, if the session still has the
// capabilities it was asked about. It reports whether it did.
func (m *Module) setInterests(sess module.Session, c caps, i interests) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	ss := m.sessions[sess.JID().String()]
	if ss == nil || ss.sess != sess || !ss.available || !ss.hasCaps || ss.caps != c {
		return false
	}
	ss.notify = i
	return true
}

// startQuery starts the capabilities query of a session unless one is
// running: that one picks up the newest capabilities when it ends, so a
// client changing them in a loop holds one goroutine, not one per change.
func (m *Module) startQuery(sess module.Session) {
	if m.req == nil {
		return
	}
	m.mu.Lock()
	ss := m.sessions[sess.JID().String()]
	if ss == nil || ss.sess != sess || ss.querying {
		m.mu.Unlock()
		return
	}
	ss.querying = true
	m.mu.Unlock()
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		for {
			c, ok := m.pendingCaps(sess)
			if !ok {
				return
			}
			m.resolveCaps(sess, c)
		}
	}()
}

// pendingCaps returns the capabilities of sess that still need a query,
// or clears the querying mark and returns false.
func (m *Module) pendingCaps(sess module.Session) (caps, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ss := m.sessions[sess.JID().String()]
	if ss == nil || ss.sess != sess {
		return caps{}, false
	}
	if m.ctx.Err() != nil || !ss.available || !ss.hasCaps || ss.notify != nil {
		ss.querying = false
		return caps{}, false
	}
	return ss.caps, true
}

// resolveCaps learns what sess wants for caps c: from the cache, from a
// query another session runs for the same ver, or by asking the client
// (its answer arrives on its own stream, which is busy running the
// presence that started this, hence the background). A verified answer
// is cached. Then the last items are sent.
func (m *Module) resolveCaps(sess module.Session, c caps) {
	var done func()
	if c.hash != "" {
		var wait <-chan struct{}
		wait, done = m.caps.claim(c.hash, c.ver)
		if wait != nil {
			select {
			case <-wait:
			case <-m.ctx.Done():
				return
			}
			if i, ok := m.caps.get(c.hash, c.ver); ok {
				if m.setInterests(sess, c, i) {
					m.sendLastItems(m.ctx, sess)
				}
				return
			}
			// The other answer did not verify: ask this client itself.
		}
	}
	if done != nil {
		defer done()
	}
	select {
	case m.sem <- struct{}{}:
	case <-m.ctx.Done():
		return
	}
	i, verified := m.discoInfo(sess.JID(), c)
	<-m.sem
	if i == nil {
		i = interests{} // no answer: nothing is sent to it
	}
	if verified {
		m.caps.put(c.hash, c.ver, i)
	}
	if m.setInterests(sess, c, i) {
		m.sendLastItems(m.ctx, sess)
	}
}

// discoInfo queries full for node#ver and returns the interests it
// announces and whether they verify against ver (nil when it gave none).
func (m *Module) discoInfo(full jid.JID, c caps) (interests, bool) {
	ctx, cancel := context.WithTimeout(m.ctx, capsTimeout)
	defer cancel()
	iq := stanza.New(stanza.IQ, jid.JID{}, full, "get", "")
	q := element.New(disco.NSInfo, "query")
	if c.node != "" {
		q.SetAttr("node", c.node+"#"+c.ver)
	}
	iq.El.Append(q)
	reply, err := m.req.Request(ctx, iq)
	if err != nil {
		m.log.Debug("caps query failed", zap.String("jid", full.String()), zap.Error(err))
		return nil, false
	}
	if reply.Type != "result" {
		m.log.Debug("caps query refused", zap.String("jid", full.String()))
		return interests{}, false
	}
	info, err := disco.ParseInfo(reply.Payload())
	if err != nil {
		m.log.Info("caps: unusable disco#info", zap.String("jid", full.String()), zap.Error(err))
		return interests{}, false
	}
	ok := c.hash != "" && disco.VerifyVer(info, c.hash, c.ver)
	if !ok && c.hash != "" {
		m.log.Info("caps: ver does not match the disco#info, not cached",
			zap.String("jid", full.String()), zap.String("hash", c.hash), zap.String("ver", c.ver))
	}
	return interestsOf(info.Features), ok
}
