package server

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/palisade-im/palisade/server/config"
	"github.com/palisade-im/palisade/storage"
	"go.uber.org/zap"
)

// Lock kinds, as they appear in login_lockout audit events and in the
// store (storage.Lockout.Kind).
const (
	// lockAccount: an account locked for every address that has not
	// logged in to it successfully within trustWindow.
	lockAccount = "account"
	// lockAddress: an address locked for every account it has not logged
	// in to successfully within trustWindow.
	lockAddress = "address"
	// lockPair: one address locked for one account, trusted or not.
	lockPair = "account_address"
	// kindTrusted is a store record (not a lock) remembering a successful
	// login of an address to an account; Until is when it is forgotten.
	kindTrusted = "trusted"
)

const (
	// trustWindow is how long a successful login of an address to an
	// account keeps that address from being locked out of the account by
	// the failures of other addresses.
	trustWindow = 30 * 24 * time.Hour
	// trustRefresh: a repeated success refreshes the stored record only
	// when the stored one is older than this (one write a day at most).
	trustRefresh = 24 * time.Hour
	// maxTrustedPerAccount bounds the addresses remembered per account
	// (the least recently used one goes).
	maxTrustedPerAccount = 64
	// maxTracked bounds each failure table; beyond it, entries without a
	// lock in force are dropped (pruneAt is when pruning starts).
	maxTracked = 100_000
	pruneAt    = 10_000
)

// lockout decides which failed logins stop further attempts. Failures
// are counted per (account, address), per address and, for addresses not
// trusted for the account, per account; an address is an IPv4 address or
// an IPv6 /64. An address becomes trusted for an account by logging in to
// it successfully, for trustWindow.
//
//   - lockout_threshold failures of one address on one account lock that
//     address out of that account (kind account_address);
//   - address_threshold failures of one address, on any accounts, lock it
//     out of every account it is not trusted for (kind address);
//   - lockout_threshold failures on one account from addresses not trusted
//     for it lock the account for every address not trusted for it (kind
//     account): strangers cannot lock the owner out of her usual places;
//   - every failure delays its answer by failure_delay, doubled for each
//     earlier failure of the same pair or account, up to max_failure_delay.
//
// Failures are forgotten after lockout_duration without a new one; a lock
// lasts lockout_duration. Counts are in memory; locks in force and the
// trusted addresses are also kept in the store, so that a restart (or a
// crash an attacker provoked) neither lifts a lock nor forgets the owner.
type lockout struct {
	cfg   config.Auth
	audit *zap.Logger
	now   func() time.Time
	store storage.Lockouts // nil: in memory only
	log   *zap.Logger

	mu       sync.Mutex
	accounts map[string]*failures // untrusted failures, by bare JID
	addrs    map[string]*failures // by address
	pairs    map[pair]*failures
	trusted  map[string]map[string]*trust // bare JID -> address -> trust
	trustN   map[string]int               // address -> accounts it is trusted for
	pruned   time.Time                    // last sweep of forgotten failures
}

type pair struct{ account, addr string }

func (p pair) key() string { return p.account + " " + p.addr } // a JID has no space

type failures struct {
	n      int
	last   time.Time
	locked time.Time // until
}

type trust struct {
	last  time.Time // last successful login
	saved time.Time // last success written to the store
}

func newLockout(cfg config.Auth, audit *zap.Logger) *lockout {
	return &lockout{cfg: cfg, audit: audit, log: zap.NewNop(), now: time.Now,
		accounts: map[string]*failures{}, addrs: map[string]*failures{}, pairs: map[pair]*failures{},
		trusted: map[string]map[string]*trust{}, trustN: map[string]int{}}
}

// persist keeps locks and trusted addresses in st and takes up those in
// force there now.
func (l *lockout) persist(ctx context.Context, st storage.Lockouts, log *zap.Logger) error {
	locks, err := st.Lockouts(ctx, l.now())
	if err != nil {
		return fmt.Errorf("login lockouts: %w", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.store, l.log = st, log
	d := time.Duration(l.cfg.LockoutDuration)
	for _, k := range locks {
		switch k.Kind {
		case lockAccount:
			l.accounts[k.Key] = &failures{n: l.cfg.LockoutThreshold, last: k.Until.Add(-d), locked: k.Until}
		case lockAddress:
			l.addrs[k.Key] = &failures{n: l.cfg.AddressThreshold, last: k.Until.Add(-d), locked: k.Until}
		case lockPair, kindTrusted:
			account, addr, ok := strings.Cut(k.Key, " ")
			if !ok {
				continue
			}
			if k.Kind == lockPair {
				l.pairs[pair{account, addr}] = &failures{n: l.cfg.LockoutThreshold, last: k.Until.Add(-d), locked: k.Until}
				continue
			}
			last := k.Until.Add(-trustWindow)
			l.trustLocked(account, addr, last).saved = last
		}
	}
	return nil
}

// save records store writes (outside the mutex; they are rare).
func (l *lockout) save(recs []storage.Lockout) {
	if l.store == nil {
		return
	}
	for _, k := range recs {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := l.store.SaveLockout(ctx, k); err != nil {
			what := "login lockout not stored: a restart would lift it"
			if k.Kind == kindTrusted {
				what = "trusted login address not stored: a restart would forget it"
			}
			l.log.Error(what, zap.String("kind", k.Kind), zap.String("key", k.Key), zap.Error(err))
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

// addrOf is the address failures are counted by: the IPv4 address, or the
// IPv6 /64 (one host usually holds a whole /64). "" stays "".
func addrOf(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	a = a.Unmap().WithZone("")
	if a.Is4() {
		return a.String()
	}
	p, _ := a.Prefix(64)
	return p.String()
}

// isTrusted reports whether addr logged in to account within trustWindow
// (called locked).
func (l *lockout) isTrusted(account, addr string, now time.Time) bool {
	if account == "" || addr == "" {
		return false
	}
	t := l.trusted[account][addr]
	return t != nil && now.Sub(t.last) < trustWindow
}

// locked reports whether a login to the account (bare JID, "" while it is
// not known yet) from ip is refused now, by which kind of lock, and until
// when. With no account, only an address lock refuses, and only for an
// address trusted for no account: which account it is comes later.
func (l *lockout) locked(account, ip string) (what string, until time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	addr := addrOf(ip)
	if account == "" {
		if f := l.addrs[addr]; addr != "" && f != nil && now.Before(f.locked) && l.trustN[addr] == 0 {
			return lockAddress, f.locked
		}
		return "", time.Time{}
	}
	if f := l.pairs[pair{account, addr}]; addr != "" && f != nil && now.Before(f.locked) {
		return lockPair, f.locked
	}
	if l.isTrusted(account, addr, now) {
		return "", time.Time{}
	}
	if f := l.addrs[addr]; addr != "" && f != nil && now.Before(f.locked) {
		return lockAddress, f.locked
	}
	if f := l.accounts[account]; f != nil && now.Before(f.locked) {
		return lockAccount, f.locked
	}
	return "", time.Time{}
}

// failed records a failed login (wrong credentials) and returns the pause
// to impose before answering.
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
	addr := addrOf(ip)
	forget := time.Duration(l.cfg.LockoutDuration)
	var locks []storage.Lockout
	bump := func(f *failures, kind, key string, threshold int) int {
		if now.Sub(f.last) > forget {
			*f = failures{locked: f.locked}
		}
		f.n++
		f.last = now
		if threshold > 0 && f.n >= threshold && !now.Before(f.locked) {
			f.locked = now.Add(forget)
			locks = append(locks, storage.Lockout{Kind: kind, Key: key, Until: f.locked})
			fields := []zap.Field{zap.String("kind", kind), zap.Int("failures", f.n),
				zap.Time("until", f.locked), zap.String("ip", ip)}
			if kind != lockAddress {
				fields = append(fields, zap.String("jid", account))
			}
			l.audit.Warn("login_lockout", fields...)
		}
		return f.n
	}
	entry := func(m map[string]*failures, key string) *failures {
		f := m[key]
		if f == nil {
			f = &failures{}
			m[key] = f
		}
		return f
	}
	n := 0
	if account != "" && addr != "" {
		p := pair{account, addr}
		f := l.pairs[p]
		if f == nil {
			f = &failures{}
			l.pairs[p] = f
		}
		n = bump(f, lockPair, p.key(), l.cfg.LockoutThreshold)
	}
	if account != "" && !l.isTrusted(account, addr, now) {
		n = max(n, bump(entry(l.accounts, account), lockAccount, account, l.cfg.LockoutThreshold))
	} else if f := l.accounts[account]; account != "" && f != nil && now.Sub(f.last) <= forget {
		// A trusted address does not add to the account's count, but its
		// answers slow down like everyone's while others are guessing.
		n = max(n, f.n)
	}
	if addr != "" {
		bump(entry(l.addrs, addr), lockAddress, addr, l.cfg.AddressThreshold)
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

// succeeded records a successful login of the account from ip: the pair's
// failures are forgotten and the address is trusted for the account (the
// failures others make cannot lock it out). The account-wide count stays:
// the owner logging in says nothing about the guesses of strangers.
func (l *lockout) succeeded(account, ip string) {
	addr := addrOf(ip)
	if account == "" || addr == "" {
		return
	}
	l.mu.Lock()
	now := l.now()
	delete(l.pairs, pair{account, addr})
	t := l.trustLocked(account, addr, now)
	var recs []storage.Lockout
	if now.Sub(t.saved) >= trustRefresh {
		t.saved = now
		recs = append(recs, storage.Lockout{Kind: kindTrusted, Key: pair{account, addr}.key(), Until: now.Add(trustWindow)})
	}
	l.mu.Unlock()
	l.save(recs)
}

// trustLocked marks addr trusted for account since last (if later than
// what is known) and returns its entry; it keeps at most
// maxTrustedPerAccount addresses per account (called locked).
func (l *lockout) trustLocked(account, addr string, last time.Time) *trust {
	m := l.trusted[account]
	if m == nil {
		m = map[string]*trust{}
		l.trusted[account] = m
	}
	t := m[addr]
	if t == nil {
		for a, x := range m {
			if last.Sub(x.last) >= trustWindow {
				delete(m, a)
				l.untrustN(a)
			}
		}
		if len(m) >= maxTrustedPerAccount {
			oldest := ""
			for a, x := range m {
				if oldest == "" || x.last.Before(m[oldest].last) {
					oldest = a
				}
			}
			delete(m, oldest)
			l.untrustN(oldest)
		}
		t = &trust{}
		m[addr] = t
		l.trustN[addr]++
	}
	if last.After(t.last) {
		t.last = last
	}
	return t
}

func (l *lockout) untrustN(addr string) {
	if l.trustN[addr]--; l.trustN[addr] <= 0 {
		delete(l.trustN, addr)
	}
}

// unlock clears an account's locks and failures (its trusted addresses
// stay); it reports whether there was anything to clear.
func (l *lockout) unlock(account string) bool {
	l.mu.Lock()
	_, ok := l.accounts[account]
	delete(l.accounts, account)
	recs := []storage.Lockout{{Kind: lockAccount, Key: account}}
	for p := range l.pairs {
		if p.account == account {
			ok = true
			delete(l.pairs, p)
			recs = append(recs, storage.Lockout{Kind: lockPair, Key: p.key()})
		}
	}
	st := l.store
	l.mu.Unlock()
	if st != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		// The locks the store held at start are in memory too, so ok
		// already counts them.
		for _, k := range recs {
			if err := st.ClearLockout(ctx, k.Kind, k.Key); err != nil {
				l.log.Error("login lockout not cleared in the store: a restart would restore it", zap.String("jid", account), zap.String("kind", k.Kind), zap.Error(err))
			}
		}
	}
	return ok
}

// prune bounds the failure tables (called locked). Once a table holds
// pruneAt entries, forgotten ones are dropped, at most once per minute;
// a table that still reaches maxTracked loses a quarter of its entries
// without a lock in force, so a flood of addresses costs bounded memory
// (and at worst resets counts of addresses that are not locked).
func (l *lockout) prune(now time.Time) {
	forget := time.Duration(l.cfg.LockoutDuration)
	sweep := now.Sub(l.pruned) >= time.Minute
	if sweep && (len(l.accounts) >= pruneAt || len(l.addrs) >= pruneAt || len(l.pairs) >= pruneAt) {
		l.pruned = now
	} else {
		sweep = false
	}
	pruneTable(l.accounts, now, forget, sweep)
	pruneTable(l.addrs, now, forget, sweep)
	pruneTable(l.pairs, now, forget, sweep)
}

func pruneTable[K comparable](m map[K]*failures, now time.Time, forget time.Duration, sweep bool) {
	if sweep && len(m) >= pruneAt {
		for k, f := range m {
			if now.Sub(f.last) > forget && !now.Before(f.locked) {
				delete(m, k)
			}
		}
	}
	if len(m) < maxTracked {
		return
	}
	for k, f := range m {
		if len(m) < maxTracked*3/4 {
			return
		}
		if !now.Before(f.locked) {
			delete(m, k)
		}
	}
}
