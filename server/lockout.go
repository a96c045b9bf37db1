package server

import (
	"net"
	"sync"
	"time"

	"github.com/palisade-im/palisade/server/config"
	"go.uber.org/zap"
)

// lockout counts failed logins per account and per client IP. Failures
// are forgotten after auth.lockout_duration without a new one; reaching a
// threshold locks the account (or address) for that long. The state is in
// memory: a restart clears it.
type lockout struct {
	cfg   config.Auth
	audit *zap.Logger
	now   func() time.Time

	mu       sync.Mutex
	accounts map[string]*failures
	addrs    map[string]*failures
}

type failures struct {
	n      int
	last   time.Time
	locked time.Time // until
}

func newLockout(cfg config.Auth, audit *zap.Logger) *lockout {
	return &lockout{cfg: cfg, audit: audit, now: time.Now, accounts: map[string]*failures{}, addrs: map[string]*failures{}}
}

// ipOf returns the IP of a host:port address (or the address itself).
func ipOf(remote string) string {
	if h, _, err := net.SplitHostPort(remote); err == nil {
		return h
	}
	return remote
}

// locked reports whether the account (bare JID, "" for none) or the IP is
// locked out now, and which.
func (l *lockout) locked(account, ip string) (what string, until time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if f := l.addrs[ip]; ip != "" && f != nil && now.Before(f.locked) {
		return "address", f.locked
	}
	if f := l.accounts[account]; account != "" && f != nil && now.Before(f.locked) {
		return "account", f.locked
	}
	return "", time.Time{}
}

// failed records a failure and returns the pause to impose.
func (l *lockout) failed(account, ip string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	bump := func(m map[string]*failures, key, kind string, threshold int) int {
		f := m[key]
		if f == nil || now.Sub(f.last) > time.Duration(l.cfg.LockoutDuration) {
			f = &failures{}
			m[key] = f
		}
		f.n++
		f.last = now
		if threshold > 0 && f.n >= threshold && !now.Before(f.locked) {
			f.locked = now.Add(time.Duration(l.cfg.LockoutDuration))
			fields := []zap.Field{zap.String("kind", kind), zap.Int("failures", f.n),
				zap.Time("until", f.locked), zap.String("ip", ip)}
			if kind == "account" {
				fields = append(fields, zap.String("jid", key))
			}
			l.audit.Warn("login_lockout", fields...)
		}
		return f.n
	}
	n := 0
	if account != "" {
		n = bump(l.accounts, account, "account", l.cfg.LockoutThreshold)
	}
	if ip != "" {
		bump(l.addrs, ip, "address", l.cfg.AddressThreshold)
	}
	l.prune(now)
	if n == 0 || l.cfg.FailureDelay <= 0 {
		return 0
	}
	d := time.Duration(l.cfg.FailureDelay)
	for i := 1; i < n && d < time.Duration(l.cfg.MaxFailureDelay); i++ {
		d *= 2
	}
	return min(d, time.Duration(l.cfg.MaxFailureDelay))
}

// succeeded forgets the account's failures.
func (l *lockout) succeeded(account string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.accounts, account)
}

// unlock clears an account's lock and failures; it reports whether there
// was anything to clear.
func (l *lockout) unlock(account string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, ok := l.accounts[account]
	delete(l.accounts, account)
	return ok
}

// prune drops forgotten entries once the maps grow (called locked).
func (l *lockout) prune(now time.Time) {
	if len(l.accounts)+len(l.addrs) < 10000 {
		return
	}
	for _, m := range []map[string]*failures{l.accounts, l.addrs} {
		for k, f := range m {
			if now.Sub(f.last) > time.Duration(l.cfg.LockoutDuration) && !now.Before(f.locked) {
				delete(m, k)
			}
		}
	}
}
