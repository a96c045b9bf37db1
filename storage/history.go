package storage

import (
	"context"
	"time"
)

// HistoryItem is one message in a user's own history (XEP-0313), kept
// apart from the compliance journal.
type HistoryItem struct {
	// Owner is the bare JID whose history holds the item.
	Owner string
	// ID is the XEP-0359 stanza-id, from the store's NewHistoryID: unique,
	// never reused and unpredictable.
	ID   string
	Time time.Time
	// With is the other party as addressed: the recipient ('to') of an
	// outgoing message, the sender ('from') of an incoming one.
	With string
	// Stanza is the message's XML.
	Stanza []byte
}

// HistoryQuery selects items of one owner's history. The filters define
// the result set; the page fields pick a page of it (XEP-0059).
type HistoryQuery struct {
	Owner string
	// With matches the other party: a bare JID matches it with any
	// resource, a full JID only that one.
	With string
	// Start and End bound the item time (inclusive); zero is open.
	Start, End time.Time
	// AfterID and BeforeID bound the result set (exclusive); an unknown
	// ID fails with ErrNotFound.
	AfterID, BeforeID string
	// IDs keeps only the listed items; any unknown ID fails with ErrNotFound.
	IDs []string

	// PageAfter starts the page after this item; PageBefore ends it before
	// this one (unknown IDs fail with ErrNotFound). Last asks for the last
	// page. With PageBefore or Last the page is taken from the end.
	PageAfter, PageBefore string
	Last                  bool
	// Offset skips items from the start of the result set.
	Offset int
	// Limit is the page size; 0 returns only Count.
	Limit int
}

// HistoryPage is one page of a query, its items in chronological order.
type HistoryPage struct {
	Items []HistoryItem
	// Count is the size of the whole result set.
	Count int
	// FirstIndex is the position of Items[0] in the result set.
	FirstIndex int
	// Complete is true when no more items follow in the paging direction
	// (after the page, or before it when paging from the end).
	Complete bool
}

// HistoryPrefs are a user's XEP-0441 archiving preferences.
type HistoryPrefs struct {
	// Default is "always", "never" or "roster".
	Default       string
	Always, Never []string
}

// History is the users' own message history (XEP-0313 MAM). It is not
// the compliance journal: users' preferences and deletions apply to it.
type History interface {
	// NewHistoryID returns a fresh item ID. IDs are unique across the
	// store, are never issued twice (not after a restart either), and
	// reveal nothing to whoever sees them (XEP-0359 section 5).
	NewHistoryID() string
	// AppendHistory stores items in one transaction; durable when it returns.
	AppendHistory(ctx context.Context, items []HistoryItem) error
	// QueryHistory returns one page of an owner's history.
	QueryHistory(ctx context.Context, q HistoryQuery) (HistoryPage, error)
	// HistoryBounds returns the oldest and newest items of an owner's
	// history; ok is false when it is empty.
	HistoryBounds(ctx context.Context, owner string) (first, last HistoryItem, ok bool, err error)
	// DeleteHistory removes an owner's history and preferences.
	DeleteHistory(ctx context.Context, owner string) error
	// PurgeHistory removes the items past retention: keep(owner, with)
	// is how long the items of owner's conversation with the bare JID
	// with are kept after their time (0: for ever). It returns how many
	// it removed.
	PurgeHistory(ctx context.Context, now time.Time, keep func(owner, with string) time.Duration) (int64, error)
	// HistoryPrefs returns an owner's preferences; ErrNotFound when none
	// were set.
	HistoryPrefs(ctx context.Context, owner string) (HistoryPrefs, error)
	// SetHistoryPrefs replaces an owner's preferences.
	SetHistoryPrefs(ctx context.Context, owner string, p HistoryPrefs) error
}
