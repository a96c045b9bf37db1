package storage

import (
	"context"
	"time"
)

// Access models of a pubsub node (XEP-0060 section 4.5).
const (
	AccessOpen      = "open"
	AccessPresence  = "presence"
	AccessRoster    = "roster"
	AccessWhitelist = "whitelist"
)

// Values of pubsub#send_last_published_item (XEP-0060 section 16.4.4).
const (
	SendLastNever            = "never"
	SendLastOnSub            = "on_sub"
	SendLastOnSubAndPresence = "on_sub_and_presence"
)

// NodeConfig is the configuration of a personal eventing node (XEP-0163,
// XEP-0060 section 8.2).
type NodeConfig struct {
	// AccessModel is one of the Access* constants.
	AccessModel string
	// RosterGroupsAllowed are the owner's roster groups that may read a
	// node with the roster access model.
	RosterGroupsAllowed []string
	// MaxItems is how many items the node keeps (at least 1).
	MaxItems int
	// PersistItems false keeps no item at all: publishing only notifies.
	PersistItems bool
	// SendLastPublished is one of the SendLast* constants.
	SendLastPublished string
	// NotifyRetract says whether retractions are notified.
	NotifyRetract bool
}

// Keep is how many items a node with this configuration stores.
func (c NodeConfig) Keep() int {
	if !c.PersistItems {
		return 0
	}
	return c.MaxItems
}

// PubSubNode is one node of an account's personal eventing service.
type PubSubNode struct {
	Owner   string // bare JID of the account
	Name    string
	Config  NodeConfig
	Created time.Time
}

// PubSubItem is one published item.
type PubSubItem struct {
	ID        string
	Publisher string // full JID that published it
	Published time.Time
	Payload   []byte // the serialized payload element
}

// PubSubItemRef is what a listing of a node's items says of each: its ID
// and the bytes of its stored payload.
type PubSubItemRef struct {
	ID   string
	Size int
}

// PubSubQuota bounds one account's personal eventing service (0: no
// limit): how many nodes it may have, how many payload bytes one node's
// items may hold, and how many all of its items may hold.
type PubSubQuota struct {
	MaxNodes     int
	MaxNodeBytes int
	MaxBytes     int
}

// PubSub stores the nodes and items of personal eventing services (XEP-0163
// on XEP-0060), keyed by the owner's bare JID. Every write is one
// transaction, durable when it returns.
type PubSub interface {
	// Node returns one node or ErrNotFound.
	Node(ctx context.Context, owner, node string) (PubSubNode, error)
	// Nodes lists an owner's nodes sorted by name.
	Nodes(ctx context.Context, owner string) ([]PubSubNode, error)
	// CreateNode adds a node: ErrExists if it is there, ErrQuota if the
	// owner already has maxNodes nodes (0: no limit).
	CreateNode(ctx context.Context, n PubSubNode, maxNodes int) error
	// ConfigureNode replaces a node's configuration and drops the items
	// beyond what the new one keeps; ErrNotFound if absent.
	ConfigureNode(ctx context.Context, owner, node string, cfg NodeConfig) error
	// DeleteNode removes a node and its items; ErrNotFound if absent.
	DeleteNode(ctx context.Context, owner, node string) error
	// PublishItem stores item as the node's newest, replacing an item with
	// the same ID, then drops the oldest items beyond Config.Keep(). A
	// missing node is created with create or, when create is nil,
	// ErrNotFound is returned. It fails with a *QuotaError and changes
	// nothing when a node would be created past q.MaxNodes (QuotaCount),
	// or when, after the replacement and the trimming, the node's payloads
	// would exceed q.MaxNodeBytes (QuotaNodeBytes) or the owner's
	// q.MaxBytes (QuotaBytes).
	PublishItem(ctx context.Context, owner, node string, item PubSubItem, create *NodeConfig, q PubSubQuota) (created bool, err error)
	// ItemRefs lists a node's items oldest first (publication order), each
	// with its payload's size, without the payloads. ErrNotFound if the
	// node is absent.
	ItemRefs(ctx context.Context, owner, node string) ([]PubSubItemRef, error)
	// PubSubBytes returns the payload bytes of all of an owner's items.
	PubSubBytes(ctx context.Context, owner string) (int, error)
	// Items returns a node's items newest first, at most max (0: all), or,
	// when ids is not empty, only those (in the order of ids, missing ones
	// left out). ErrNotFound if the node is absent.
	Items(ctx context.Context, owner, node string, max int, ids []string) ([]PubSubItem, error)
	// RetractItem deletes an item; ErrNotFound if the node or item is absent.
	RetractItem(ctx context.Context, owner, node, id string) error
	// Subscribe records an explicit subscription of jid (a bare or full
	// JID whose bare JID is subscriber) to a node: ErrNotFound if the node
	// is absent, ErrQuota if subscriber already holds max subscriptions
	// (0: no limit). Subscribing again changes nothing.
	Subscribe(ctx context.Context, owner, node, jid, subscriber string, max int) error
	// Unsubscribe removes a subscription; ErrNotFound if there is none.
	Unsubscribe(ctx context.Context, owner, node, jid string) error
	// Subscribers lists the JIDs explicitly subscribed to a node, sorted.
	Subscribers(ctx context.Context, owner, node string) ([]string, error)
}
