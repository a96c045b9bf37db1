package c2s

import (
	"context"
	"errors"
	"math"
	"net"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// Bounds of the accept loops' back-off after an accept error, as in
// net/http: 5 ms, doubling up to 1 s.
const (
	acceptBackoffMin = 5 * time.Millisecond
	acceptBackoffMax = time.Second
)

// acceptBackoff paces an accept loop through a run of accept errors
// (EMFILE, ENFILE, ECONNABORTED, ...) and logs each run once.
type acceptBackoff struct {
	delay    time.Duration
	failures int
	since    time.Time
}

// wait records a failed Accept and sleeps before the next; false means
// ctx ended meanwhile.
func (b *acceptBackoff) wait(ctx context.Context, log *zap.Logger, addr net.Addr, err error) bool {
	if b.failures == 0 {
		b.since = time.Now()
		b.delay = acceptBackoffMin
		log.Warn("accept failed, retrying with back-off", zap.Stringer("listener", addr), zap.Error(err))
	} else {
		b.delay = min(2*b.delay, acceptBackoffMax)
	}
	b.failures++
	t := time.NewTimer(b.delay)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// reset ends a run of accept errors after a successful Accept.
func (b *acceptBackoff) reset(log *zap.Logger, addr net.Addr) {
	if b.failures == 0 {
		return
	}
	log.Info("accepting again", zap.Stringer("listener", addr), zap.Int("failed_accepts", b.failures),
		zap.Duration("after", time.Since(b.since)))
	b.failures, b.delay = 0, 0
}

// connReserve is how many file descriptors the connection cap leaves to
// the rest of the server (journal segments, the database, the admin
// listener, directory and peer connections): 5% of the limit, at least 64.
func connReserve(limit uint64) uint64 { return max(64, limit/20) }

// connCap derives Config.MaxConns from the open-file limit; ok is false
// when the limit is unknown (no cap).
func connCap(limit uint64, ok bool) int {
	if !ok || limit >= math.MaxInt32 {
		return -1
	}
	r := connReserve(limit)
	if limit <= 2*r {
		return max(1, int(limit/2))
	}
	return int(limit - r)
}

// admit takes a place under Config.MaxConns for a new connection.
func (srv *Server) admit() bool {
	n := srv.open.Add(1)
	if srv.cfg.MaxConns > 0 && n > int64(srv.cfg.MaxConns) {
		srv.open.Add(-1)
		return false
	}
	if srv.capHit.Load() && srv.capHit.CompareAndSwap(true, false) {
		srv.log.Info("accepting client connections again", zap.Int("max_connections", srv.cfg.MaxConns))
	}
	return true
}

// release gives an admitted connection's place back.
func (srv *Server) release() { srv.open.Add(-1) }

// refuseEarly closes a connection the gate refused, before TLS: a
// STARTTLS stream is told why first, as in refuse.
func (srv *Server) refuseEarly(c net.Conn, plain bool, reason string) {
	if plain {
		b := []byte(`<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>`)
		b = streamErrorBytes(b, errStream("policy-violation", "too many connections from your address ("+reason+")"))
		b = append(b, "</stream:stream>"...)
		_ = c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
		_, _ = c.Write(b)
	}
	_ = c.Close()
}

// refuse closes a connection over the cap. A STARTTLS stream (plain text
// so far) is told why first, with a short deadline: the write lands in an
// empty socket buffer and never waits for the peer.
func (srv *Server) refuse(c net.Conn, plain bool) {
	if srv.capHit.CompareAndSwap(false, true) {
		srv.log.Warn("client connection cap reached, refusing new connections", zap.Int("max_connections", srv.cfg.MaxConns))
	}
	if plain {
		b := []byte(`<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>`)
		b = streamErrorBytes(b, errStream("resource-constraint", "too many connections"))
		b = append(b, "</stream:stream>"...)
		_ = c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
		_, _ = c.Write(b)
	}
	_ = c.Close()
}

// Listener wraps ln (the WebSocket listener's, served by net/http) so that
// its connections count against Config.MaxConns: one over the cap is
// closed at once, and Accept backs off and retries after an accept error
// instead of returning it. Its Accept returns only net.ErrClosed.
// Its connections also pass the gate: the connection rate and the caps
// on unauthenticated connections.
func (srv *Server) Listener(ctx context.Context, ln net.Listener) net.Listener {
	return &capListener{Listener: ln, srv: srv, ctx: ctx, perAddr: true}
}

// ProxiedListener is Listener for a listener behind a reverse proxy
// (websocket_plain on loopback): every connection comes from the proxy's
// address, so the per-address rate and cap do not apply; the total cap
// on unauthenticated connections and the login deadline do.
func (srv *Server) ProxiedListener(ctx context.Context, ln net.Listener) net.Listener {
	return &capListener{Listener: ln, srv: srv, ctx: ctx}
}

type capListener struct {
	net.Listener
	srv     *Server
	ctx     context.Context
	bo      acceptBackoff
	perAddr bool
}

func (l *capListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || l.ctx.Err() != nil {
				return nil, err
			}
			if !l.bo.wait(l.ctx, l.srv.log, l.Addr(), err) {
				return nil, err
			}
			continue
		}
		l.bo.reset(l.srv.log, l.Addr())
		if !l.srv.admit() {
			l.srv.refuse(c, false)
			continue
		}
		sl, reason := l.srv.gate.enter(hostOf(c.RemoteAddr().String()), l.perAddr)
		if reason != "" {
			l.srv.release()
			l.srv.refuseEarly(c, false, reason)
			continue
		}
		cc := &capConn{Conn: c, srv: l.srv, slot: sl}
		l.srv.wsSlots.Store(c.RemoteAddr().String(), sl)
		return cc, nil
	}
}

// capConn gives its place under the cap back when closed, once, and its
// place among the unauthenticated connections if SASL did not.
type capConn struct {
	net.Conn
	srv    *Server
	slot   *slot
	closed atomic.Bool
}

func (c *capConn) Close() error {
	if c.closed.CompareAndSwap(false, true) {
		c.srv.wsSlots.CompareAndDelete(c.RemoteAddr().String(), c.slot)
		c.slot.free()
		c.srv.release()
	}
	return c.Conn.Close()
}

// wsSlot returns the gate slot of the WebSocket connection from remote
// (http.Request.RemoteAddr), nil when there is none.
func (srv *Server) wsSlot(remote string) *slot {
	if v, ok := srv.wsSlots.Load(remote); ok {
		return v.(*slot)
	}
	return nil
}
