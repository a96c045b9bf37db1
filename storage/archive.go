package storage

import (
	"context"
	"time"

	"golang.org/x/mod/sumdb/tlog"
)

// Direction tells which way a journaled stanza crossed the server.
type Direction string

// Directions of journal records.
const (
	// DirLocal: between two parties served here (or from the server to a
	// local user).
	DirLocal Direction = "local"
	// DirInbound: from a federated peer to a local user.
	DirInbound Direction = "inbound"
	// DirOutbound: from a local user to a federated peer.
	DirOutbound Direction = "outbound"
)

// RecordKind says what a journal record is about.
type RecordKind string

// Record kinds. Later kinds (policy, disposition, export, file) are added
// here as the archive grows.
const (
	// KindMessage is a message stanza, including errors bounced to users.
	KindMessage RecordKind = "message"
	// KindSubscription is a presence subscription change (RFC 6121 section 3).
	KindSubscription RecordKind = "subscription"
	// KindExport records an export for regulators (chain of custody); its
	// content is a JSON description of the export.
	KindExport RecordKind = "export"
)

// JournalRecord is one entry of the compliance journal. Data is the record
// exactly as stored: its RFC 6962 leaf hash (tlog.RecordHash) is the record's
// leaf in the journal's Merkle tree. The other fields are searchable copies
// of what Data says.
type JournalRecord struct {
	// Seq is the record's index in the tree (from 0), assigned by Append.
	Seq       int64
	Time      time.Time
	Direction Direction
	Kind      RecordKind
	From, To  string
	// StanzaType is the stanza's type attribute ("chat", "subscribe", ...).
	StanzaType string
	// StanzaSize is the size of the stanza's XML in bytes.
	StanzaSize int
	// Data is the encoded record (see the archive module's record format).
	Data []byte
}

// TreeHead is the size and root hash of the journal's Merkle tree.
type TreeHead struct {
	Size int64
	Hash tlog.Hash
}

// Checkpoint is a signed tree head as issued: a C2SP tlog-checkpoint in a
// signed note.
type Checkpoint struct {
	Size int64
	Time time.Time
	// Note is the signed note text, exactly as issued.
	Note []byte
}

// Journal is the append-only compliance journal: records, the stored hashes
// of their RFC 6962 Merkle tree (golang.org/x/mod/sumdb/tlog), and every
// checkpoint issued over it. Nothing in it is ever updated in place.
type Journal interface {
	// Append adds records in order, setting their Seq, and stores their tree
	// hashes in the same transaction. It returns once the records are
	// durable (fsynced). Concurrent calls are committed together.
	Append(ctx context.Context, recs []JournalRecord) error
	// Submit queues recs for the next commit and returns without waiting
	// for it (it blocks only while the queue is full); wait returns once
	// they are durable, with Append's error. Stanzas that arrive together
	// thus share one fsync even when each sender waits for its own. recs
	// must not change until wait returns; wait must be called once.
	Submit(ctx context.Context, recs []JournalRecord) (wait func() error)
	// Records calls fn for the records with start <= Seq < end, in order.
	Records(ctx context.Context, start, end int64, fn func(JournalRecord) error) error
	// TreeHead returns the current size and root hash of the tree.
	TreeHead(ctx context.Context) (TreeHead, error)
	// ReadHashes returns stored hashes by tlog stored-hash index; it makes
	// the journal a tlog.HashReader for proofs.
	ReadHashes(ctx context.Context, indexes []int64) ([]tlog.Hash, error)
	// AddCheckpoint keeps an issued checkpoint.
	AddCheckpoint(ctx context.Context, c Checkpoint) error
	// Checkpoints returns every checkpoint kept, by increasing size.
	Checkpoints(ctx context.Context) ([]Checkpoint, error)
	Close() error
}
