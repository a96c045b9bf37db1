// Package sqlite implements storage.Store on a single SQLite file.
//
// Writes go through one connection (so the process never contends with
// itself for the write lock) in BEGIN IMMEDIATE transactions with
// synchronous=FULL in WAL mode: a write is on disk when the call returns.
// Reads use a separate read-only pool and see every committed write.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	// Registers the "sqlite3" database/sql driver.
	_ "github.com/mattn/go-sqlite3"

	"github.com/palisade-im/palisade/storage"
)

// ErrSchemaTooNew is returned by Open when the database was written by a
// newer build whose schema version this code does not know.
var ErrSchemaTooNew = errors.New("sqlite: database schema is newer than this build supports")

// Store is a storage.Store backed by SQLite. It is safe for concurrent use.
type Store struct {
	wr   *sql.DB // single connection; all writes
	rd   *sql.DB // read-only pool
	hist *historyIDs
}

var _ storage.Store = (*Store)(nil)

// Open opens or creates the database at path, creating its parent directory
// (mode 0700) and the file (mode 0600) if missing, and applies pending
// schema migrations.
func Open(ctx context.Context, path string) (*Store, error) {
	if err := createPrivate(path); err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}

	uri := "file:" + escapePath(path)
	wr, err := sql.Open("sqlite3", uri+"?mode=rw&_journal_mode=WAL&_synchronous=FULL"+
		"&_foreign_keys=on&_busy_timeout=5000&_txlock=immediate&_cache_size=-65536")
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	wr.SetMaxOpenConns(1)
	wr.SetMaxIdleConns(1)
	// A larger page cache (64 MiB, the DSN's _cache_size) and WAL
	// (checkpoints every 10,000 pages, not 1,000) for the message history's
	// batches: index pages dirtied by one batch are often dirtied by the
	// next, and are copied into the database once per checkpoint.
	if _, err := wr.ExecContext(ctx, `PRAGMA wal_autocheckpoint = 10000`); err != nil {
		wr.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	s := &Store{wr: wr}
	if err := s.migrate(ctx); err != nil {
		wr.Close()
		return nil, err
	}
	if s.hist, err = loadHistoryIDs(ctx, wr); err != nil {
		wr.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}

	// Opened after the writer has switched the file to WAL mode.
	rd, err := sql.Open("sqlite3", uri+"?mode=ro&_foreign_keys=on&_busy_timeout=5000")
	if err != nil {
		wr.Close()
		return nil, fmt.Errorf("sqlite: open %s read-only: %w", path, err)
	}
	n := max(4, runtime.NumCPU())
	rd.SetMaxOpenConns(n)
	rd.SetMaxIdleConns(n)
	if err := rd.PingContext(ctx); err != nil {
		rd.Close()
		wr.Close()
		return nil, fmt.Errorf("sqlite: open %s read-only: %w", path, err)
	}
	s.rd = rd
	return s, nil
}

// createPrivate creates path's directory (mode 0700) and the file itself
// (mode 0600) when missing, so that SQLite never creates it with a wider
// mode; the -wal and -shm files inherit the database file's permissions.
func createPrivate(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("create directory: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("create database file: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("create database file: %w", err)
	}
	return nil
}

// escapePath makes path safe inside a file: URI; the driver splits its
// options at the first '?'.
func escapePath(path string) string {
	return strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(path)
}

// Close closes both connection pools.
func (s *Store) Close() error {
	var errs []error
	if s.rd != nil {
		errs = append(errs, s.rd.Close())
	}
	errs = append(errs, s.wr.Close())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("sqlite: close: %w", err)
	}
	return nil
}

// write runs fn in a write transaction and commits it. Errors are wrapped
// with op, except the storage sentinels, which are returned as they are.
func (s *Store) write(ctx context.Context, op string, fn func(*sql.Tx) error) error {
	tx, err := s.wr.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: %s: begin: %w", op, err)
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return wrap(op, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: %s: commit: %w", op, err)
	}
	return nil
}

// read runs fn in a read transaction, giving it a consistent snapshot.
func (s *Store) read(ctx context.Context, op string, fn func(*sql.Tx) error) error {
	tx, err := s.rd.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return fmt.Errorf("sqlite: %s: begin: %w", op, err)
	}
	defer tx.Rollback()
	return wrap(op, fn(tx))
}

func wrap(op string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, storage.ErrNotFound), errors.Is(err, storage.ErrExists), errors.Is(err, storage.ErrQuota):
		return err
	}
	return fmt.Errorf("sqlite: %s: %w", op, err)
}

// execOne runs a statement that must change at least one row; it returns
// storage.ErrNotFound when none matched.
func execOne(ctx context.Context, tx *sql.Tx, query string, args ...any) error {
	res, err := tx.ExecContext(ctx, query, args...)
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return storage.ErrNotFound
	}
	return nil
}

// migrate applies the store's migrations.
func (s *Store) migrate(ctx context.Context) error {
	if err := migrateDB(ctx, s.wr, migrations); err != nil {
		return fmt.Errorf("sqlite: migrate: %w", err)
	}
	return nil
}

// migrateDB applies steps one transaction each, re-reading the version
// (PRAGMA user_version) inside every transaction so that concurrent
// openers cannot apply a step twice.
func migrateDB(ctx context.Context, db *sql.DB, steps []string) error {
	for {
		var v int
		err := func() error {
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				return fmt.Errorf("begin: %w", err)
			}
			defer tx.Rollback()
			if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
				return err
			}
			if v >= len(steps) {
				return nil
			}
			if _, err := tx.ExecContext(ctx, steps[v]); err != nil {
				return fmt.Errorf("step %d: %w", v+1, err)
			}
			if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", v+1)); err != nil {
				return err
			}
			return tx.Commit()
		}()
		switch {
		case err != nil:
			return err
		case v > len(steps):
			return fmt.Errorf("%w (database version %d, supported %d)", ErrSchemaTooNew, v, len(steps))
		case v == len(steps):
			return nil
		}
	}
}

// migrations[i] moves the schema from version i to i+1 (PRAGMA user_version).
// Append only; never edit a released step.
var migrations = []string{
	// 1: initial schema. Per-user tables are keyed by the bare JID "local@domain".
	`
CREATE TABLE users (
	id        INTEGER PRIMARY KEY,
	localpart TEXT NOT NULL,
	domain    TEXT NOT NULL,
	created   INTEGER NOT NULL, -- Unix nanoseconds
	UNIQUE (domain, localpart)
) STRICT;

CREATE TABLE scram_credentials (
	user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	hash       TEXT NOT NULL, -- "SHA-1", "SHA-256", ...
	salt       BLOB NOT NULL,
	iterations INTEGER NOT NULL,
	stored_key BLOB NOT NULL,
	server_key BLOB NOT NULL,
	PRIMARY KEY (user_id, hash)
) STRICT;

CREATE TABLE roster_versions (
	user_jid TEXT PRIMARY KEY,
	version  INTEGER NOT NULL
) STRICT;

CREATE TABLE roster_items (
	user_jid          TEXT NOT NULL,
	jid               TEXT NOT NULL,
	name              TEXT NOT NULL,
	subscription      TEXT NOT NULL CHECK (subscription IN ('none', 'to', 'from', 'both')),
	ask               INTEGER NOT NULL,
	pending_in        INTEGER NOT NULL,
	pending_in_stanza BLOB,
	approved          INTEGER NOT NULL,
	groups_json       TEXT NOT NULL, -- JSON array of group names
	PRIMARY KEY (user_jid, jid)
) STRICT, WITHOUT ROWID;

CREATE TABLE offline_messages (
	id       INTEGER PRIMARY KEY AUTOINCREMENT, -- never reused
	user_jid TEXT NOT NULL,
	stamp    INTEGER NOT NULL, -- Unix nanoseconds
	stanza   BLOB NOT NULL
) STRICT;
CREATE INDEX offline_messages_user ON offline_messages (user_jid, id);

CREATE TABLE private_data (
	user_jid TEXT NOT NULL,
	key      TEXT NOT NULL,
	data     BLOB NOT NULL,
	PRIMARY KEY (user_jid, key)
) STRICT, WITHOUT ROWID;

CREATE TABLE blocklist (
	user_jid TEXT NOT NULL,
	jid      TEXT NOT NULL,
	PRIMARY KEY (user_jid, jid)
) STRICT, WITHOUT ROWID;
`,
	// 2: roster items the server holds for a stranger's pending request.
	`ALTER TABLE roster_items ADD COLUMN hidden INTEGER NOT NULL DEFAULT 0;`,
	// 3: personal eventing (XEP-0163) nodes and items, keyed by the owner's bare JID.
	`
CREATE TABLE pubsub_nodes (
	owner          TEXT NOT NULL,
	node           TEXT NOT NULL,
	access_model   TEXT NOT NULL,
	roster_groups  TEXT NOT NULL, -- JSON array of group names
	max_items      INTEGER NOT NULL,
	persist_items  INTEGER NOT NULL,
	send_last      TEXT NOT NULL,
	notify_retract INTEGER NOT NULL,
	created        INTEGER NOT NULL, -- Unix nanoseconds
	PRIMARY KEY (owner, node)
) STRICT, WITHOUT ROWID;

CREATE TABLE pubsub_items (
	seq       INTEGER PRIMARY KEY AUTOINCREMENT, -- publication order, never reused
	owner     TEXT NOT NULL,
	node      TEXT NOT NULL,
	item_id   TEXT NOT NULL,
	publisher TEXT NOT NULL,
	published INTEGER NOT NULL, -- Unix nanoseconds
	payload   BLOB NOT NULL,
	UNIQUE (owner, node, item_id),
	FOREIGN KEY (owner, node) REFERENCES pubsub_nodes (owner, node) ON DELETE CASCADE
) STRICT;
CREATE INDEX pubsub_items_order ON pubsub_items (owner, node, seq);

CREATE TABLE pubsub_subscriptions (
	owner      TEXT NOT NULL,
	node       TEXT NOT NULL,
	jid        TEXT NOT NULL, -- bare or full JID subscribed
	subscriber TEXT NOT NULL, -- its bare JID
	PRIMARY KEY (owner, node, jid),
	FOREIGN KEY (owner, node) REFERENCES pubsub_nodes (owner, node) ON DELETE CASCADE
) STRICT, WITHOUT ROWID;
CREATE INDEX pubsub_subscriptions_subscriber ON pubsub_subscriptions (subscriber);
`,
	// 4: the users' own message history (XEP-0313) and archiving preferences (XEP-0441).
	`
CREATE TABLE history (
	seq       INTEGER PRIMARY KEY AUTOINCREMENT, -- arrival order, never reused
	owner     TEXT NOT NULL, -- bare JID
	id        TEXT NOT NULL, -- XEP-0359 stanza-id
	stamp     INTEGER NOT NULL, -- Unix nanoseconds
	with_bare TEXT NOT NULL,
	with_full TEXT NOT NULL, -- the other party as addressed
	stanza    BLOB NOT NULL,
	UNIQUE (owner, id)
) STRICT;
CREATE INDEX history_owner_time ON history (owner, stamp);
CREATE INDEX history_owner_with ON history (owner, with_bare, stamp);

CREATE TABLE history_prefs (
	owner       TEXT PRIMARY KEY,
	default_pref TEXT NOT NULL CHECK (default_pref IN ('always', 'never', 'roster')),
	always_json TEXT NOT NULL, -- JSON array of JIDs
	never_json  TEXT NOT NULL
) STRICT, WITHOUT ROWID;
`,
	// 5: history items are keyed by the number their stanza-id encodes
	// (historyid.go), without the index of random ids that made every
	// insert land on a random page. Items stored before keep their ids.
	// New numbers come from the clock in microseconds, far above the old
	// ones, so the old sequence need not be carried over.
	`
CREATE TABLE history_items (
	seq       INTEGER PRIMARY KEY AUTOINCREMENT, -- the number the stanza-id encodes; order within a stamp
	owner     TEXT NOT NULL, -- bare JID
	stamp     INTEGER NOT NULL, -- Unix nanoseconds
	with_bare TEXT NOT NULL,
	with_full TEXT NOT NULL, -- the other party as addressed
	stanza    BLOB NOT NULL,
	legacy_id TEXT -- the random stanza-id of an item stored before version 5
) STRICT;
INSERT INTO history_items (seq, owner, stamp, with_bare, with_full, stanza, legacy_id)
	SELECT seq, owner, stamp, with_bare, with_full, stanza, id FROM history;
DROP TABLE history;
CREATE INDEX history_items_time ON history_items (owner, stamp);
CREATE INDEX history_items_with ON history_items (owner, with_bare, stamp);
CREATE UNIQUE INDEX history_items_legacy ON history_items (owner, legacy_id) WHERE legacy_id IS NOT NULL;

CREATE TABLE history_key (
	one INTEGER PRIMARY KEY CHECK (one = 1),
	key BLOB NOT NULL CHECK (length(key) = 16) -- AES-128 key of the stanza-ids
) STRICT;
`,
	// 6: internal accounts' memberships in Palisade groups ([groups] names),
	// and a version bumped by every change so that the running server
	// notices changes the CLI makes in another process.
	`
CREATE TABLE group_members (
	group_name TEXT NOT NULL,
	jid        TEXT NOT NULL, -- bare JID of an internal account
	PRIMARY KEY (group_name, jid)
) STRICT, WITHOUT ROWID;
CREATE INDEX group_members_jid ON group_members (jid, group_name);

CREATE TABLE group_version (
	one     INTEGER PRIMARY KEY CHECK (one = 1),
	version INTEGER NOT NULL
) STRICT;
INSERT INTO group_version (one, version) VALUES (1, 0);
`,
	// 7: roster items a shared-roster group manages.
	`
ALTER TABLE roster_items ADD COLUMN shared TEXT NOT NULL DEFAULT ''; -- the [groups] name; '' for the user's own items
CREATE INDEX roster_items_shared ON roster_items (shared) WHERE shared != '';
`,
	// 8: login lockouts in force, kept across restarts.
	`
CREATE TABLE lockouts (
	kind  TEXT NOT NULL CHECK (kind IN ('account', 'address')),
	key   TEXT NOT NULL, -- bare JID or IP address
	until INTEGER NOT NULL, -- Unix nanoseconds
	PRIMARY KEY (kind, key)
) STRICT, WITHOUT ROWID;
`,
	// 9: lockouts of one address on one account, and the addresses that
	// logged in to an account (the lockout spares them), kept the same way.
	`
CREATE TABLE lockouts_new (
	kind  TEXT NOT NULL CHECK (kind IN ('account', 'address', 'account_address', 'trusted')),
	key   TEXT NOT NULL, -- bare JID, address, or "JID address"
	until INTEGER NOT NULL, -- Unix nanoseconds
	PRIMARY KEY (kind, key)
) STRICT, WITHOUT ROWID;
INSERT INTO lockouts_new (kind, key, until) SELECT kind, key, until FROM lockouts;
DROP TABLE lockouts;
ALTER TABLE lockouts_new RENAME TO lockouts;
`,
	// 10: each pubsub item's payload size, and each node's sum of them
	// (recomputed through a covering index whenever the node's items
	// change), for the per-node and per-account byte quotas: an account's
	// bytes are then a sum over its nodes, not over all of its items.
	`
ALTER TABLE pubsub_items ADD COLUMN size INTEGER NOT NULL DEFAULT 0; -- length(payload)
UPDATE pubsub_items SET size = length(payload);
CREATE INDEX pubsub_items_refs ON pubsub_items (owner, node, seq, size, item_id); -- covers the sums and ItemRefs
ALTER TABLE pubsub_nodes ADD COLUMN bytes INTEGER NOT NULL DEFAULT 0; -- sum of its items' size
UPDATE pubsub_nodes SET bytes = (SELECT COALESCE(SUM(size), 0) FROM pubsub_items i
	WHERE i.owner = pubsub_nodes.owner AND i.node = pubsub_nodes.node);
`,
}
