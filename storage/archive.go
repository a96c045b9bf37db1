package storage

import (
	"context"
	"errors"
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
	// KindHold records a legal hold placed or released; its content is a
	// JSON description of the change.
	KindHold RecordKind = "hold"
	// KindDisposition records what a purge removed (seq ranges, counts,
	// policies); its content is JSON.
	KindDisposition RecordKind = "disposition"
	// KindSearch records an officer's search of the journal (chain of
	// custody).
	KindSearch RecordKind = "search"
	// KindPolicy records a change of retention policy the journal
	// enforces (a locked policy recorded or lengthened).
	KindPolicy RecordKind = "policy"

	// The channels besides messages (DECISIONS.md "What the journal records"):
	// one record per original stanza a user sent that reaches another party.

	// KindIQ is an IQ between two users' clients (requests, results and
	// errors) that no more specific kind covers.
	KindIQ RecordKind = "iq"
	// KindFileTransfer is a peer-to-peer file transfer stanza: an XEP-0096
	// offer, XEP-0047 in-band data, an XEP-0065 negotiation, an XEP-0234
	// Jingle file offer, an XEP-0066 out-of-band IQ.
	KindFileTransfer RecordKind = "file_transfer"
	// KindJingle is a Jingle (XEP-0166) session stanza that is not a file
	// transfer (calls).
	KindJingle RecordKind = "jingle"
	// KindCommand is an XEP-0050 ad-hoc command sent to another user's
	// client, and its answer.
	KindCommand RecordKind = "command"
	// KindPresence is a directed presence, or a presence broadcast that
	// carries text (once per broadcast, not per contact).
	KindPresence RecordKind = "presence"
	// KindPEP is a personal eventing (XEP-0163) publish, retract or node
	// change: once per request, not per notification.
	KindPEP RecordKind = "pep"
	// KindVCard is a vCard (XEP-0054) change.
	KindVCard RecordKind = "vcard"
	// KindAdmin records an administrative act (account and group changes,
	// kicks, unlocks, the configuration's digest at each start); its
	// content is JSON.
	KindAdmin RecordKind = "admin"
	// KindReview closes a record that content rules flagged for review:
	// who closed it, when and why; its content is JSON.
	KindReview RecordKind = "review"
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
	// Data is the encoded record (see the archive module's record format);
	// empty once purged.
	Data []byte
	// Purged tells that a retention purge removed Data; the record's leaf
	// hash stays stored, so the tree still verifies. PurgedBy is the seq of
	// the disposition record that says so.
	Purged   bool
	PurgedBy int64
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
	// Cosignatures are the witnesses' cosignatures of the checkpoint of
	// this size, in the order received.
	Cosignatures []Cosignature
}

// Cosignature is a witness's cosignature of a checkpoint (C2SP
// tlog-cosignature): a note signature line that, appended to the
// checkpoint's note, verifies with the witness's key.
type Cosignature struct {
	// Size is the tree size of the checkpoint cosigned.
	Size int64
	// Witness is the witness's key name; KeyHash its key ID.
	Witness string
	KeyHash uint32
	// Time is when the witness says it cosigned (seconds).
	Time time.Time
	// Line is the signature line as received ("— name base64\n").
	Line string
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
	// thus share one fsync even when each sender waits for its own. Submit
	// copies the records' Data before it returns, so the caller may reuse
	// those buffers at once; the recs slice itself must not change until
	// wait returns (Seq is set in it). wait must be called once.
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
	// Checkpoints returns every checkpoint kept, by increasing size, with
	// its cosignatures.
	Checkpoints(ctx context.Context) ([]Checkpoint, error)
	// AddCosignature keeps a witness's cosignature of the checkpoint of
	// its size.
	AddCosignature(ctx context.Context, c Cosignature) error
	// CosignedSize returns the largest checkpoint size the witness (name
	// and key hash) cosigned, 0 when none.
	CosignedSize(ctx context.Context, witness string, keyHash uint32) (int64, error)
	Close() error
}

// LockedPolicy is a locked retention policy as the journal recorded it:
// the configuration may lengthen it, never shorten, narrow or remove it.
type LockedPolicy struct {
	Name  string
	Scope string
	// Targets are the domain (scope "domain") or the bare JIDs (scope
	// "jids"), sorted; none for scope "all".
	Targets  []string
	KeepDays int
	// Recorded is when the journal first recorded the policy.
	Recorded time.Time
}

// Hold is a legal hold: records to or from a custodian, accepted within
// [From, To) (a zero bound is open), are not purged while it stands.
type Hold struct {
	Name       string
	Custodians []string
	From, To   time.Time
	Reason     string
	PlacedBy   string
	PlacedAt   time.Time
	// Released is zero while the hold stands.
	Released      time.Time
	ReleasedBy    string
	ReleaseReason string
}

// Active tells whether the hold still stands.
func (h Hold) Active() bool { return h.Released.IsZero() }

// Covers tells whether the hold, while active, covers a record of the bare
// JID bare accepted at t.
func (h Hold) Covers(bare string, t time.Time) bool {
	if !h.Active() || (!h.From.IsZero() && t.Before(h.From)) || (!h.To.IsZero() && !t.Before(h.To)) {
		return false
	}
	for _, c := range h.Custodians {
		if c == bare {
			return true
		}
	}
	return false
}

// ErrHoldExists is returned by AddHold for a name already used.
var ErrHoldExists = errors.New("storage: a legal hold of that name exists")

// ErrNoHold is returned by ReleaseHold for an unknown or released hold.
var ErrNoHold = errors.New("storage: no active legal hold of that name")

// Retention is what the journal keeps for retention and legal hold, apart
// from the records: locked policies, holds, and the purge of content.
type Retention interface {
	// LockedPolicies returns the locked policies recorded, by name.
	LockedPolicies(ctx context.Context) ([]LockedPolicy, error)
	// RecordLockedPolicies records new locked policies and lengthens
	// recorded ones; it never shortens one.
	RecordLockedPolicies(ctx context.Context, ps []LockedPolicy) error
	// Holds returns every hold, active and released, by placement.
	Holds(ctx context.Context) ([]Hold, error)
	// AddHold stores a new hold (ErrHoldExists when the name is taken).
	AddHold(ctx context.Context, h Hold) error
	// ReleaseHold marks an active hold released (ErrNoHold otherwise).
	ReleaseHold(ctx context.Context, name, by, reason string, at time.Time) error
	// Purge removes the content of the records seqs (their leaf hashes
	// stay), marking them purged by the disposition record's seq, in
	// transactions of bounded size (an interrupted purge leaves a prefix
	// done; running it again finishes it under a new disposition record).
	Purge(ctx context.Context, seqs []int64, disposition int64) error
	// RecordMemberships notes, in one transaction, that each account
	// (bare JID) was seen in its groups; a membership once recorded is
	// never forgotten, so that a retention policy of scope "groups" keeps
	// covering a member who left.
	RecordMemberships(ctx context.Context, members map[string][]string, seen time.Time) error
	// Memberships returns every group each account was ever seen in, by
	// bare JID.
	Memberships(ctx context.Context) (map[string][]string, error)
}

// EpochKey is one data key of officer encryption at rest: records of its
// epoch are sealed with AES-256-GCM under it, and it is kept only wrapped
// (OpenPGP-encrypted) to the officer keys, so the server cannot read what
// it wrote.
type EpochKey struct {
	ID      string
	Created time.Time
	// Wrapped is the OpenPGP message holding the 32-byte key.
	Wrapped []byte
}

// EpochKeys stores the wrapped epoch keys of officer encryption.
type EpochKeys interface {
	// AddEpochKey stores a new epoch key durably.
	AddEpochKey(ctx context.Context, k EpochKey) error
	// EpochKeys returns every epoch key, oldest first.
	EpochKeys(ctx context.Context) ([]EpochKey, error)
}
