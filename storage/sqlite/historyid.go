package sqlite

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"database/sql"
	"encoding/base32"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"
)

// History item IDs. Each item's key in the history table is a sequence
// number (its rowid), and its XEP-0359 stanza-id is that number encrypted
// with a key kept in the database: one AES block holding the number and
// eight zero bytes, in base32. The ID is opaque and unpredictable, as
// XEP-0359 asks, yet the store maps it back to its row without an index
// of random strings, whose inserts land on random pages (measured with
// BenchmarkAppendHistory: 9.7k items/s with that index, 17k without it).
// A string that does not decrypt to zero padding is not one of ours.
//
// Numbers are allocated in memory: each is max(previous+1, the clock in
// microseconds), at least the largest ever stored plus one. A number
// handed out for an item lost in a crash is therefore not handed out
// again after the restart, while the clock has moved on. Only the server
// process appends history; other openers of the file (the CLI) read it.

// idEncoding is base32 in lower case, unpadded (26 characters).
var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// historyIDs allocates item numbers and encodes them as IDs.
type historyIDs struct {
	block cipher.Block
	now   func() time.Time

	mu   sync.Mutex
	last int64
}

// loadHistoryIDs reads the ID key (creating it on first use) and the
// highest number ever stored.
func loadHistoryIDs(ctx context.Context, db *sql.DB) (*historyIDs, error) {
	var key []byte
	err := db.QueryRowContext(ctx, `SELECT key FROM history_key`).Scan(&key)
	if errors.Is(err, sql.ErrNoRows) {
		key = make([]byte, 16)
		if _, err := rand.Read(key); err != nil {
			return nil, fmt.Errorf("history id key: %w", err)
		}
		// OR IGNORE and read back: another opener may have won.
		if _, err := db.ExecContext(ctx, `INSERT OR IGNORE INTO history_key (one, key) VALUES (1, ?)`, key); err != nil {
			return nil, fmt.Errorf("history id key: %w", err)
		}
		err = db.QueryRowContext(ctx, `SELECT key FROM history_key`).Scan(&key)
	}
	if err != nil {
		return nil, fmt.Errorf("history id key: %w", err)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("history id key: %w", err)
	}
	// AUTOINCREMENT keeps the highest rowid ever inserted in
	// sqlite_sequence, deleted rows included.
	var last sql.NullInt64
	if err := db.QueryRowContext(ctx, `SELECT max(seq) FROM sqlite_sequence WHERE name = 'history_items'`).Scan(&last); err != nil {
		return nil, fmt.Errorf("history id: highest number: %w", err)
	}
	return &historyIDs{block: block, now: time.Now, last: last.Int64}, nil
}

// next allocates a number.
func (h *historyIDs) next() int64 {
	t := h.now().UnixMicro()
	h.mu.Lock()
	defer h.mu.Unlock()
	h.last = max(h.last+1, t)
	return h.last
}

// encode returns the ID of number seq.
func (h *historyIDs) encode(seq int64) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(seq))
	h.block.Encrypt(b[:], b[:])
	return idEncoding.EncodeToString(b[:])
}

// decode returns the number an ID encodes; ok is false when id is not
// one this store issued.
func (h *historyIDs) decode(id string) (seq int64, ok bool) {
	if len(id) != idEncoding.EncodedLen(16) {
		return 0, false
	}
	var b [16]byte
	if n, err := idEncoding.Decode(b[:], []byte(id)); err != nil || n != 16 || idEncoding.EncodeToString(b[:]) != id {
		// The last character carries two unused bits: only the canonical
		// spelling is an ID.
		return 0, false
	}
	h.block.Decrypt(b[:], b[:])
	if binary.BigEndian.Uint64(b[8:]) != 0 {
		return 0, false
	}
	seq = int64(binary.BigEndian.Uint64(b[:8]))
	return seq, seq > 0
}

// NewHistoryID implements storage.History.
func (s *Store) NewHistoryID() string { return s.hist.encode(s.hist.next()) }
