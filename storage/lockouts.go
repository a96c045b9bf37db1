package storage

import (
	"context"
	"time"
)

// Lockout is a login lockout in force: of an account (Kind "account", Key
// its bare JID), of a client address (Kind "address", Key the IPv4
// address or IPv6 /64), or of one address on one account (Kind
// "account_address", Key "JID address"). Kind "trusted" (Key "JID
// address") is not a lock: it remembers, until Until, that the address
// logged in to the account.
type Lockout struct {
	Kind, Key string
	Until     time.Time
}

// Lockouts keeps login lockouts across restarts, so that restarting the
// server does not hand an attacker fresh attempts.
type Lockouts interface {
	// SaveLockout records a lockout (replacing one of the same kind and key).
	SaveLockout(ctx context.Context, l Lockout) error
	// ClearLockout removes one; none is not an error.
	ClearLockout(ctx context.Context, kind, key string) error
	// Lockouts returns those still in force at now and forgets the others.
	Lockouts(ctx context.Context, now time.Time) ([]Lockout, error)
}
