package server

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/palisade-im/palisade/server/config"
	"github.com/palisade-im/palisade/storage/sqlite"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// fakeLockout is a lockout with the test configuration and a clock the
// test moves.
func fakeLockout(t *testing.T, threshold, addrThreshold int) (*lockout, *observer.ObservedLogs, *time.Time) {
	t.Helper()
	core, logs := observer.New(zap.InfoLevel)
	cfg := config.Default().Auth
	cfg.LockoutThreshold, cfg.AddressThreshold = threshold, addrThreshold
	cfg.LockoutDuration = config.Duration(time.Minute)
	cfg.FailureDelay, cfg.MaxFailureDelay = config.Duration(100*time.Millisecond), config.Duration(300*time.Millisecond)
	l := newLockout(cfg, zap.New(core))
	now := time.Unix(1_000_000, 0)
	l.now = func() time.Time { return now }
	return l, logs, &now
}

func wantLocked(t *testing.T, l *lockout, account, ip, want string) {
	t.Helper()
	if what, _ := l.locked(account, ip); what != want {
		t.Fatalf("locked(%q, %q) = %q, want %q", account, ip, what, want)
	}
}

func TestLockout(t *testing.T) {
	l, logs, now := fakeLockout(t, 3, 5)
	var delays []time.Duration
	for i := 0; i < 3; i++ {
		wantLocked(t, l, "a@x", "192.0.2.1", "")
		delays = append(delays, l.failed("a@x", "192.0.2.1"))
	}
	if want := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 300 * time.Millisecond}; !equal(delays, want) {
		t.Errorf("delays %v, want %v (doubling, capped)", delays, want)
	}
	// The guessing address is locked out of the account, and so is every
	// other address that never logged in to it.
	wantLocked(t, l, "a@x", "192.0.2.1", lockPair)
	if what, until := l.locked("a@x", "198.51.100.7"); what != lockAccount || !until.Equal(now.Add(time.Minute)) {
		t.Fatalf("after 3 failures: %q until %v", what, until)
	}
	wantLocked(t, l, "b@x", "192.0.2.1", "")
	wantLocked(t, l, "", "192.0.2.1", "")
	if n := logs.FilterMessage("login_lockout").Len(); n != 2 {
		t.Errorf("%d lockout events, want 2 (account, account_address): %v", n, logs.All())
	}
	for _, e := range logs.FilterMessage("login_lockout").All() {
		m := e.ContextMap()
		if m["jid"] != "a@x" || m["ip"] != "192.0.2.1" || m["failures"] != int64(3) {
			t.Errorf("lockout event %v", m)
		}
	}
	// The lock ends after lockout_duration; failures are forgotten.
	*now = now.Add(time.Minute + time.Second)
	wantLocked(t, l, "a@x", "192.0.2.1", "")
	wantLocked(t, l, "a@x", "198.51.100.7", "")
	if d := l.failed("a@x", "192.0.2.1"); d != 100*time.Millisecond {
		t.Errorf("first failure after expiry: delay %v", d)
	}
	// unlock clears the account at once, for every address.
	l.failed("a@x", "192.0.2.1")
	l.failed("a@x", "192.0.2.1")
	wantLocked(t, l, "a@x", "192.0.2.1", lockPair)
	if !l.unlock("a@x") {
		t.Error("unlock found nothing")
	}
	wantLocked(t, l, "a@x", "192.0.2.1", "")
	wantLocked(t, l, "a@x", "198.51.100.7", "")
	if l.unlock("a@x") {
		t.Error("a second unlock found something")
	}
	// Failures on many accounts lock the address, before the account is
	// even known.
	for i := 0; i < 5; i++ {
		l.failed(string(rune('c'+i))+"@x", "203.0.113.9")
	}
	wantLocked(t, l, "", "203.0.113.9", lockAddress)
	wantLocked(t, l, "a@x", "203.0.113.9", lockAddress)
	// A success forgets the failures of that address on the account.
	l.failed("z@x", "192.0.2.50")
	l.failed("z@x", "192.0.2.50")
	l.succeeded("z@x", "192.0.2.50")
	l.failed("z@x", "192.0.2.50")
	wantLocked(t, l, "z@x", "192.0.2.50", "")
}

// Strangers' failures do not lock the owner out where she logged in
// before; they lock out strangers, and slow everyone's wrong answers.
func TestLockoutStrangersCannotLockOwner(t *testing.T) {
	l, _, now := fakeLockout(t, 3, 5)
	l.succeeded("a@x", "192.0.2.1")
	var delays []time.Duration
	for i := 0; i < 10; i++ {
		delays = append(delays, l.failed("a@x", fmt.Sprintf("198.51.100.%d", i)))
	}
	if want := 300 * time.Millisecond; delays[0] != 100*time.Millisecond || delays[9] != want {
		t.Errorf("delays across addresses %v: want growing from 100ms to %v", delays, want)
	}
	wantLocked(t, l, "a@x", "192.0.2.1", "")
	wantLocked(t, l, "a@x", "198.51.100.0", lockAccount)
	wantLocked(t, l, "a@x", "203.0.113.1", lockAccount) // never logged in: a stranger
	// The owner's wrong password still slows down while others guess, but
	// does not add to the strangers' count.
	if d := l.failed("a@x", "192.0.2.1"); d != 300*time.Millisecond {
		t.Errorf("owner's failure during the attack: delay %v", d)
	}
	wantLocked(t, l, "a@x", "192.0.2.1", "")
	// Her own address guessing does lock it (its own failures).
	l.failed("a@x", "192.0.2.1")
	l.failed("a@x", "192.0.2.1")
	wantLocked(t, l, "a@x", "192.0.2.1", lockPair)
	l.unlock("a@x")
	wantLocked(t, l, "a@x", "192.0.2.1", "")
	wantLocked(t, l, "a@x", "203.0.113.1", "")

	// An address shared with a guesser (NAT): locked out of the accounts
	// it never logged in to, still in to the owner's, and not refused
	// before it names the account.
	for i := 0; i < 5; i++ {
		l.failed(fmt.Sprintf("u%d@x", i), "192.0.2.1")
	}
	wantLocked(t, l, "b@x", "192.0.2.1", lockAddress)
	wantLocked(t, l, "a@x", "192.0.2.1", "")
	wantLocked(t, l, "", "192.0.2.1", "")

	// IPv6 counts by /64: the owner's other address in her /64 is trusted,
	// a neighbouring /64 is not; a guesser's /64 is one address.
	l.succeeded("v@x", "2001:db8:1:2::10")
	for i := 0; i < 3; i++ {
		l.failed("v@x", fmt.Sprintf("2001:db8:9:9::%x", i+1))
	}
	wantLocked(t, l, "v@x", "2001:db8:9:9::ffff", lockPair)
	wantLocked(t, l, "v@x", "2001:db8:1:2::abcd", "")
	wantLocked(t, l, "v@x", "2001:db8:1:3::10", lockAccount)

	// Trust runs out after trustWindow without a login.
	*now = now.Add(trustWindow - time.Hour)
	l.succeeded("a@x", "192.0.2.1") // refreshed
	*now = now.Add(2 * time.Hour)
	for i := 0; i < 3; i++ {
		l.failed("v@x", fmt.Sprintf("198.51.100.%d", i))
		l.failed("a@x", fmt.Sprintf("198.51.100.%d", i))
	}
	wantLocked(t, l, "v@x", "2001:db8:1:2::10", lockAccount)
	wantLocked(t, l, "a@x", "192.0.2.1", "")
}

// A flood of addresses costs bounded memory, and does not drop the locks
// in force.
func TestLockoutBounded(t *testing.T) {
	l, _, now := fakeLockout(t, 0, 2)
	l.failed("a@x", "192.0.2.1")
	l.failed("a@x", "192.0.2.1")
	wantLocked(t, l, "", "192.0.2.1", lockAddress)
	for i := 0; i < maxTracked+maxTracked/2; i++ {
		if i%1000 == 0 {
			*now = now.Add(300 * time.Millisecond) // 45s in all, within the lock
		}
		l.failed("a@x", netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}).String())
	}
	if n := len(l.addrs) + len(l.pairs); n > 2*maxTracked {
		t.Errorf("%d addresses and pairs tracked, want at most %d", n, 2*maxTracked)
	}
	wantLocked(t, l, "", "192.0.2.1", lockAddress)
}
func equal(a, b []time.Duration) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// A lock survives a restart: the next lockout on the same store still
// refuses, until unlock (which clears the store too) or until it expires.
func TestLockoutPersists(t *testing.T) {
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "palisade.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	cfg := config.Default().Auth
	cfg.LockoutThreshold, cfg.AddressThreshold = 2, 3
	cfg.LockoutDuration = config.Duration(time.Minute)
	cfg.FailureDelay = 0
	now := time.Unix(1_000_000, 0)
	start := func() *lockout {
		t.Helper()
		l := newLockout(cfg, zap.NewNop())
		l.now = func() time.Time { return now }
		if err := l.persist(context.Background(), st, zap.NewNop()); err != nil {
			t.Fatal(err)
		}
		return l
	}
	l := start()
	for range 3 {
		l.failed("a@x", "192.0.2.1")
	}
	l = start() // the restart
	if what, until := l.locked("a@x", "198.51.100.7"); what != "account" || !until.Equal(now.Add(time.Minute)) {
		t.Fatalf("after a restart: %q until %v", what, until)
	}
	if what, _ := l.locked("b@x", "192.0.2.1"); what != "address" {
		t.Fatalf("the address lock after a restart: %q", what)
	}
	if !l.unlock("a@x") {
		t.Fatal("unlock found nothing")
	}
	l = start()
	if what, _ := l.locked("a@x", "198.51.100.7"); what != "" {
		t.Fatalf("unlocked, then restarted: %q", what)
	}
	// A trusted address and a pair lock survive a restart too.
	l.succeeded("t@x", "192.0.2.7")
	l.failed("t@x", "198.51.100.8")
	l.failed("t@x", "198.51.100.8")
	l = start()
	if what, _ := l.locked("t@x", "198.51.100.8"); what != lockPair {
		t.Fatalf("the pair lock after a restart: %q", what)
	}
	if what, _ := l.locked("t@x", "192.0.2.7"); what != "" {
		t.Fatalf("the owner's address after a restart: %q", what)
	}
	if !l.unlock("t@x") {
		t.Fatal("unlock found no pair lock")
	}
	l = start()
	if what, _ := l.locked("t@x", "198.51.100.8"); what != "" {
		t.Fatalf("pair lock unlocked, then restarted: %q", what)
	}
	now = now.Add(2 * time.Minute) // the address lock has run out
	l = start()
	if what, _ := l.locked("b@x", "192.0.2.1"); what != "" {
		t.Fatalf("an expired lock came back: %q", what)
	}
	if left, err := st.Lockouts(context.Background(), now); err != nil || len(left) != 1 || left[0].Kind != kindTrusted {
		t.Fatalf("store holds %v, %v; want only the trusted address", left, err)
	}
	now = now.Add(trustWindow)
	if left, err := st.Lockouts(context.Background(), now); err != nil || len(left) != 0 {
		t.Fatalf("store still holds %v, %v after the trust window", left, err)
	}
}
