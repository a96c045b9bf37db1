package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/palisade-im/palisade/server/config"
)

// lockedFailureText is the <text/> of a login refused by a lockout.
const lockedFailureText = "temporarily locked after failed logins"

func wantLockedOut(t *testing.T, n *Node, what string) {
	t.Helper()
	wantFailure(t, n, "not-authorized", what)
	if txt := n.Child(nsSASL, "text"); txt == nil || txt.Text != lockedFailureText {
		t.Fatalf("%s: got %s, want the lockout text %q", what, n, lockedFailureText)
	}
}

// TestLockoutStrangers: ten wrong passwords for alice from ten other
// addresses (127.0.0.2-11) do not stop her logging in from 127.0.0.1,
// where she logged in before; they do lock out an address that never
// logged in to her account. One address guessing bob's password is locked
// out of his account even with the right password, while bob still logs
// in from his usual address. Each lock is one login_lockout audit event.
func TestLockoutStrangers(t *testing.T) {
	e, logs := newEnvObserved(t, func(c *config.Config) {
		c.Auth.LockoutThreshold, c.Auth.AddressThreshold = 10, 50
		c.Auth.FailureDelay, c.Auth.MaxFailureDelay = config.Duration(time.Millisecond), config.Duration(5*time.Millisecond)
	})
	for _, user := range []string{"alice", "bob"} {
		if n := authFrom(t, e, "127.0.0.1", user, users[user]); !n.Is(nsSASL, "success") {
			t.Fatalf("%s's first login from 127.0.0.1: %s", user, n)
		}
	}
	for i := 2; i <= 11; i++ {
		wantFailure(t, authFrom(t, e, fmt.Sprintf("127.0.0.%d", i), "alice", "guess"), "not-authorized", "a guess")
	}
	if n := authFrom(t, e, "127.0.0.1", "alice", users["alice"]); !n.Is(nsSASL, "success") {
		t.Fatalf("alice from 127.0.0.1 after strangers' failures: %s", n)
	}
	// An address that never logged in to alice's account is locked out.
	wantLockedOut(t, authFrom(t, e, "127.0.0.12", "alice", users["alice"]), "alice from a new address")

	// One address guessing bob's password.
	for i := 0; i < 10; i++ {
		wantFailure(t, authFrom(t, e, "127.0.0.20", "bob", fmt.Sprintf("guess-%d", i)), "not-authorized", "a guess")
	}
	wantLockedOut(t, authFrom(t, e, "127.0.0.20", "bob", users["bob"]), "bob from the guessing address")
	// While locked, a wrong guess gets the same answer as the right
	// password: the refusal confirms nothing.
	wantLockedOut(t, authFrom(t, e, "127.0.0.20", "bob", "guess-again"), "a wrong guess from the locked address")
	if n := authFrom(t, e, "127.0.0.1", "bob", users["bob"]); !n.Is(nsSASL, "success") {
		t.Fatalf("bob from 127.0.0.1: %s", n)
	}
	// carol is not affected by either.
	if n := authFrom(t, e, "127.0.0.20", "carol", users["carol"]); !n.Is(nsSASL, "success") {
		t.Fatalf("carol from 127.0.0.20: %s", n)
	}

	kinds := map[string]int{}
	for _, ev := range logs.FilterMessage("login_lockout").All() {
		m := ev.ContextMap()
		kinds[fmt.Sprint(m["jid"], " ", m["kind"], " ", m["ip"])]++
	}
	want := map[string]int{
		"alice@localhost account 127.0.0.11":       1,
		"bob@localhost account 127.0.0.20":         1,
		"bob@localhost account_address 127.0.0.20": 1,
	}
	if fmt.Sprint(kinds) != fmt.Sprint(want) {
		t.Errorf("login_lockout events %v, want %v", kinds, want)
	}
}
