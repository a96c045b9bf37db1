package server

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/palisade-im/palisade/server/config"
	"github.com/palisade-im/palisade/storage"
	"go.uber.org/zap"
)

// lockout counts failed logins per account and per client IP. Failures
// are forgotten after auth.lockout_duration without a new one; reaching a
// threshold locks the account (or address) for that long. The counts are
// in memory; the locks in force are also kept in the store, so that a
// restart (or a crash an attacker provoked) does not lift them.
type lockout struct {
	cfg   config.Auth
	audit *zap.Logger
	now   func() time.Time
	store storage.Lockouts // nil: locks are in memory only
	log   *zap.Logger

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
	return &lockout{cfg: cfg, audit: audit, log: zap.NewNop(), now: time.Now, accounts: map[string]*failures{}, addrs: map[string]*failures{}}
}

// persist keeps locks in st and takes up those in force there now.
func (l *lockout) persist(ctx context.Context, st storage.Lockouts, log *zap.Logger) error {
	locks, err := st.Lockouts(ctx, l.now())
	if err != nil {
		return fmt.Errorf("login lockouts: %w", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.store, l.log = st, log
	for _, k := range locks {
		m, threshold := l.accounts, l.cfg.LockoutThreshold
		if k.Kind == "address" {
			m, threshold = l.addrs, l.cfg.AddressThreshold
		}
		m[k.Key] = &failures{n: threshold, last: k.Until.Add(-time.Duration(l.cfg.LockoutDuration)), locked: k.Until}
	}
	return nil
}

// save records new locks in the store (outside the mutex; a lock is rare).
func (l *lockout) save(locks []storage.Lockout) {
	if l.store == nil {
		return
	}
	for _, k := range locks {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := l.store.SaveLockout(ctx, k); err != nil {
			l.log.Error("login lockout not stored: a restart would lift it", zap.String("kind", k.Kind), zap.String("key", k.Key), zap.Error(err))
		}
		cancel()
	}
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
	d, locks := l.count(account, ip)
	l.save(locks)
	return d
}

// count is failed under the mutex; it returns the locks it set.
func (l *lockout) count(account, ip string) (time.Duration, []storage.Lockout) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	var locks []storage.Lockout
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
			locks = append(locks, storage.Lockout{Kind: kind, Key: key, Until: f.locked})
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
		return 0, locks
	}
	d := time.Duration(l.cfg.FailureDelay)
	for i := 1; i < n && d < time.Duration(l.cfg.MaxFailureDelay); i++ {
		d *= 2
	}
	return min(d, time.Duration(l.cfg.MaxFailureDelay)), locks
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
	_, ok := l.accounts[account]
	delete(l.accounts, account)
	st := l.store
	l.mu.Unlock()
	if st != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		// The locks the store held at start are in memory too, so ok
		// already counts them.
		if err := st.ClearLockout(ctx, "account", account); err != nil {
			l.log.Error("login lockout not cleared in the store: a restart would restore it", zap.String("jid", account), zap.Error(err))
		}
	}
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
