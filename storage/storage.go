// Package storage declares the narrow persistence interfaces Palisade uses,
// one per concern. Implementations live in sub-packages (storage/sqlite);
// nothing backend-specific leaks through these types.
package storage

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ErrNotFound is returned when the requested record does not exist.
var ErrNotFound = errors.New("storage: not found")

// ErrExists is returned when creating a record that already exists.
var ErrExists = errors.New("storage: already exists")

// Credentials are the SCRAM verifiers for one hash function (RFC 5802).
// The salted password itself is never stored.
type Credentials struct {
	Salt       []byte
	Iterations int
	StoredKey  []byte
	ServerKey  []byte
}

// User is an account in the internal user store.
type User struct {
	Localpart string
	Domain    string
	// SCRAM credentials keyed by hash name: "SHA-1", "SHA-256".
	SCRAM   map[string]Credentials
	Created time.Time
}

// Users is the internal account store.
type Users interface {
	// CreateUser adds an account; ErrExists if it is already there.
	CreateUser(ctx context.Context, u User) error
	// SetCredentials replaces an existing account's credentials; ErrNotFound if absent.
	SetCredentials(ctx context.Context, localpart, domain string, scram map[string]Credentials) error
	// GetUser returns an account or ErrNotFound.
	GetUser(ctx context.Context, localpart, domain string) (User, error)
	// DeleteUser removes an account and everything stored for it (roster, offline,
	// private, vcard, blocklist, PEP nodes, message history, group
	// memberships); ErrNotFound if absent.
	DeleteUser(ctx context.Context, localpart, domain string) error
	// ListUsers returns the localparts of a domain, sorted.
	ListUsers(ctx context.Context, domain string) ([]string, error)
}

// Subscription is the RFC 6121 subscription state of a roster item.
type Subscription string

// Subscription states (RFC 6121 section 2.1.2.5).
const (
	SubNone   Subscription = "none"
	SubTo     Subscription = "to"
	SubFrom   Subscription = "from"
	SubBoth   Subscription = "both"
	SubRemove Subscription = "remove" // only in pushes, never stored
)

// RosterItem is one contact in a user's roster.
type RosterItem struct {
	JID          string // bare JID of the contact
	Name         string
	Subscription Subscription
	// Ask is true while an outbound subscription request is pending ("subscribe").
	Ask bool
	// PendingIn is true while an inbound subscription request awaits approval;
	// PendingInStanza keeps the request's serialized stanza for redelivery.
	PendingIn       bool
	PendingInStanza []byte
	// Approved is true for a pre-approved inbound subscription (RFC 6121 3.4).
	Approved bool
	// Hidden marks an item the server created only to hold a stranger's
	// pending subscription request: it is not shown to clients (RFC 6121
	// 3.1.3, "None + Pending In") until the user acts on the contact.
	Hidden bool
	Groups []string
	// Shared names the shared-roster group ([groups] name) that put the
	// item there; the server keeps such items in step with the group, and
	// the user cannot remove them. Empty for items the user made.
	Shared string
}

// Rosters stores rosters with a per-user version counter (XEP-0237).
type Rosters interface {
	// Roster returns all items and the current version string.
	Roster(ctx context.Context, user string) ([]RosterItem, string, error)
	// Item returns one item or ErrNotFound.
	Item(ctx context.Context, user, contact string) (RosterItem, error)
	// PutItem creates or replaces an item, bumps the version and returns it.
	// The write is durable when it returns.
	PutItem(ctx context.Context, user string, item RosterItem) (version string, err error)
	// DeleteItem removes an item (ErrNotFound if absent), bumps and returns the version.
	DeleteItem(ctx context.Context, user, contact string) (version string, err error)
	// SharedItems lists the items a shared-roster group put in rosters,
	// as [user, contact] pairs.
	SharedItems(ctx context.Context, group string) ([][2]string, error)
}

// OfflineMessage is a stored message awaiting delivery (XEP-0160).
type OfflineMessage struct {
	ID     int64
	Stamp  time.Time
	Stanza []byte // serialized stanza, with 'from' stamped
}

// Offline stores messages for users without an available resource.
type Offline interface {
	// Store appends a message for a bare JID; durable when it returns.
	// It fails with a *QuotaError (errors.Is ErrQuota), storing nothing,
	// when the user already holds max messages (QuotaCount) or when the
	// message would take the user's stored messages past maxBytes bytes
	// (QuotaBytes); 0 means no limit.
	Store(ctx context.Context, user string, stanza []byte, stamp time.Time, max, maxBytes int) error
	// Pending lists a user's stored messages in arrival order.
	Pending(ctx context.Context, user string) ([]OfflineMessage, error)
	// Delete removes delivered messages by ID.
	Delete(ctx context.Context, user string, ids []int64) error
	// Count returns how many messages a user has stored.
	Count(ctx context.Context, user string) (int, error)
}

// ErrQuota is returned when a per-user limit would be exceeded.
var ErrQuota = errors.New("storage: quota exceeded")

// What a QuotaError says is bounded.
const (
	// QuotaCount: how many entries an account holds (nodes, private
	// namespaces, offline messages).
	QuotaCount = "count"
	// QuotaBytes: the bytes of all of an account's entries of one kind.
	QuotaBytes = "bytes"
	// QuotaNodeBytes: the bytes of the items of one pubsub node.
	QuotaNodeBytes = "node-bytes"
)

// QuotaError is the ErrQuota of one named per-account limit; errors.Is(err,
// ErrQuota) holds for it. A write that fails with it changes nothing.
type QuotaError struct {
	// Quota is QuotaCount, QuotaBytes or QuotaNodeBytes.
	Quota string
	// Limit is the bound the write would have exceeded.
	Limit int
}

func (e *QuotaError) Error() string {
	return fmt.Sprintf("storage: quota exceeded: %s limit %d", e.Quota, e.Limit)
}

// Is makes errors.Is(err, ErrQuota) hold.
func (e *QuotaError) Is(target error) bool { return target == ErrQuota }

// PrivateEntry is one key of private storage and its data; empty data
// deletes the key.
type PrivateEntry struct {
	Key  string
	Data []byte
}

// PrivateQuota bounds a user's private storage as PutPrivate leaves it:
// at most MaxItems keys holding at most MaxBytes bytes of data together
// (0: no limit), not counting the keys in Exempt (kept there by other
// features with their own bounds, such as the vCard).
type PrivateQuota struct {
	MaxItems int
	MaxBytes int
	Exempt   []string
}

// Private stores XEP-0049 private XML and XEP-0054 vCards, keyed by user and
// (namespace, element name) or by kind.
type Private interface {
	// GetPrivate returns the stored XML for (user, key) or ErrNotFound.
	GetPrivate(ctx context.Context, user, key string) ([]byte, error)
	// SetPrivate stores XML for (user, key); empty data deletes it.
	SetPrivate(ctx context.Context, user, key string, data []byte) error
	// PutPrivate stores several entries for user in one transaction. When
	// the result would exceed q it fails with a *QuotaError (QuotaCount or
	// QuotaBytes) and stores nothing; an entry replacing a key counts
	// with its new size only.
	PutPrivate(ctx context.Context, user string, entries []PrivateEntry, q PrivateQuota) error
}

// Blocklists stores XEP-0191 block lists.
type Blocklists interface {
	// Blocked returns a user's blocked JIDs, sorted.
	Blocked(ctx context.Context, user string) ([]string, error)
	// Block adds JIDs; Unblock removes them; Unblock with none clears the list.
	Block(ctx context.Context, user string, jids []string) error
	Unblock(ctx context.Context, user string, jids []string) error
}

// Store bundles every concern; a backend implements all of them.
type Store interface {
	Users
	Rosters
	Offline
	Private
	Blocklists
	PubSub
	History
	Groups
	Lockouts
	Close() error
}
