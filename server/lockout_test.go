package server

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/palisade-im/palisade/server/config"
	"github.com/palisade-im/palisade/storage/sqlite"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

func TestLockout(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	cfg := config.Default().Auth
	cfg.LockoutThreshold, cfg.AddressThreshold = 3, 5
	cfg.LockoutDuration = config.Duration(time.Minute)
	cfg.FailureDelay, cfg.MaxFailureDelay = config.Duration(100*time.Millisecond), config.Duration(300*time.Millisecond)
	l := newLockout(cfg, zap.New(core))
	now := time.Unix(1_000_000, 0)
	l.now = func() time.Time { return now }

	var delays []time.Duration
	for i := 0; i < 3; i++ {
		if what, _ := l.locked("a@x", "192.0.2.1"); what != "" {
			t.Fatalf("locked after %d failures: %s", i, what)
		}
		delays = append(delays, l.failed("a@x", "192.0.2.1"))
	}
	if want := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 300 * time.Millisecond}; !equal(delays, want) {
		t.Errorf("delays %v, want %v (doubling, capped)", delays, want)
	}
	if what, until := l.locked("a@x", "198.51.100.7"); what != "account" || !until.Equal(now.Add(time.Minute)) {
		t.Fatalf("after 3 failures: %q until %v", what, until)
	}
	if what, _ := l.locked("b@x", "192.0.2.1"); what != "" {
		t.Fatalf("another account from the same address: %s", what)
	}
	if n := logs.FilterMessage("login_lockout").Len(); n != 1 {
		t.Errorf("%d lockout events, want 1", n)
	}
	// The lock ends after lockout_duration; failures are forgotten.
	now = now.Add(time.Minute + time.Second)
	if what, _ := l.locked("a@x", ""); what != "" {
		t.Fatalf("still locked after the duration: %s", what)
	}
	if d := l.failed("a@x", ""); d != 100*time.Millisecond {
		t.Errorf("first failure after expiry: delay %v", d)
	}
	// unlock clears the account at once.
	l.failed("a@x", "")
	l.failed("a@x", "")
	if what, _ := l.locked("a@x", ""); what != "account" {
		t.Fatal("not locked again")
	}
	if !l.unlock("a@x") {
		t.Error("unlock found nothing")
	}
	if what, _ := l.locked("a@x", ""); what != "" {
		t.Fatal("locked after unlock")
	}
	// Failures of many accounts lock the address.
	for i := 0; i < 5; i++ {
		l.failed(string(rune('c'+i))+"@x", "203.0.113.9")
	}
	if what, _ := l.locked("", "203.0.113.9"); what != "address" {
		t.Fatalf("address after 5 failures: %q", what)
	}
	// A success forgets the account's failures.
	l.failed("z@x", "")
	l.failed("z@x", "")
	l.succeeded("z@x")
	l.failed("z@x", "")
	if what, _ := l.locked("z@x", ""); what != "" {
		t.Fatal("success did not reset the count")
	}
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
	now = now.Add(2 * time.Minute) // the address lock has run out
	l = start()
	if what, _ := l.locked("b@x", "192.0.2.1"); what != "" {
		t.Fatalf("an expired lock came back: %q", what)
	}
	if left, err := st.Lockouts(context.Background(), now); err != nil || len(left) != 0 {
		t.Fatalf("store still holds %v, %v", left, err)
	}
}
