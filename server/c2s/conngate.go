package c2s

import (
	"net"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/time/rate"
)

// Reasons a new connection is refused by the gate (audit "reason").
const (
	refusedRate     = "connection_rate_per_ip"
	refusedPerIP    = "max_unauthenticated_per_ip"
	refusedTotal    = "max_unauthenticated"
	refusalLogEvery = time.Minute
	gateSweepEvery  = 10 * time.Second
)

// gate admits new client connections by source address before anything
// else is spent on them (no TLS, no buffers): a connection rate per
// address, and caps on connections that have not finished SASL, per
// address and in total. A run of refusals of one address is logged and
// audited once per refusalLogEvery, with how many were refused.
type gate struct {
	maxTotal, maxPerIP int
	rate               rate.Limit
	burst              int
	log, audit         *zap.Logger

	mu    sync.Mutex
	total int
	addrs map[string]*addrState
	swept time.Time
}

// addrState is one source address's share of the gate.
type addrState struct {
	unauth int
	lim    *rate.Limiter // nil without a rate
	// refused counts refusals since the last log line, at logged.
	refused int
	logged  time.Time
}

func newGate(cfg Config, log, audit *zap.Logger) *gate {
	return &gate{maxTotal: cfg.MaxUnauthenticated, maxPerIP: cfg.MaxUnauthenticatedPerIP,
		rate: rate.Limit(cfg.ConnectionRatePerIP), burst: cfg.ConnectionBurstPerIP,
		log: log, audit: audit, addrs: make(map[string]*addrState)}
}

// slot is one connection's place among the unauthenticated ones; free
// gives it back, once (at SASL success or when the connection ends).
type slot struct {
	g     *gate
	ip    string
	since time.Time // accepted: the login deadline runs from here
	done  atomic.Bool
}

func (s *slot) free() {
	if s != nil && s.done.CompareAndSwap(false, true) {
		s.g.leave(s.ip)
	}
}

// hostOf is the address part of a "host:port" remote address.
func hostOf(remote string) string {
	if h, _, err := net.SplitHostPort(remote); err == nil {
		return h
	}
	return remote
}

// enter admits a new connection from ip, or returns the reason (one of
// the refused* constants) it is refused for. Without perAddr (a listener
// behind a reverse proxy, where every connection comes from the proxy)
// only the total cap applies, and ip is not told apart.
func (g *gate) enter(ip string, perAddr bool) (*slot, string) {
	if !perAddr {
		ip = ""
	}
	now := time.Now()
	g.mu.Lock()
	defer g.mu.Unlock()
	g.sweep(now)
	st := g.addrs[ip]
	if st == nil {
		st = &addrState{}
		if g.rate > 0 && perAddr {
			st.lim = rate.NewLimiter(g.rate, g.burst)
		}
		g.addrs[ip] = st
	}
	reason := ""
	switch {
	case st.lim != nil && !st.lim.AllowN(now, 1):
		reason = refusedRate
	case perAddr && g.maxPerIP > 0 && st.unauth >= g.maxPerIP:
		reason = refusedPerIP
	case g.maxTotal > 0 && g.total >= g.maxTotal:
		reason = refusedTotal
	}
	if reason != "" {
		st.refused++
		if now.Sub(st.logged) >= refusalLogEvery {
			fields := []zap.Field{zap.String("address", ip), zap.String("reason", reason),
				zap.Int("refused", st.refused), zap.Int("unauthenticated_from_address", st.unauth),
				zap.Int("unauthenticated", g.total)}
			g.log.Warn("client connections refused", fields...)
			g.audit.Info("connection_refused", fields...)
			st.refused, st.logged = 0, now
		}
		return nil, reason
	}
	st.unauth++
	g.total++
	return &slot{g: g, ip: ip, since: now}, ""
}

func (g *gate) leave(ip string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.total--
	if st := g.addrs[ip]; st != nil {
		st.unauth--
	}
}

// sweep forgets, at most every gateSweepEvery, the addresses that hold
// no connection, whose rate bucket is full again and whose refusals were
// logged: the map stays as large as the addresses recently active.
func (g *gate) sweep(now time.Time) {
	if now.Sub(g.swept) < gateSweepEvery {
		return
	}
	g.swept = now
	for ip, st := range g.addrs {
		if st.refused > 0 && now.Sub(st.logged) >= refusalLogEvery {
			// The end of a run: what was refused since its last line.
			fields := []zap.Field{zap.String("address", ip), zap.Int("refused", st.refused)}
			g.log.Warn("client connections refused", fields...)
			g.audit.Info("connection_refused", fields...)
			st.refused, st.logged = 0, now
		}
		if st.unauth > 0 || st.refused > 0 {
			continue
		}
		if st.lim != nil && st.lim.TokensAt(now) < float64(g.burst) {
			continue
		}
		delete(g.addrs, ip)
	}
}
