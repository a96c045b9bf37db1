package sqlite

import (
	"context"
	"database/sql"
	"time"

	"github.com/palisade-im/palisade/storage"
)

// Store appends a message for user. When max > 0 and the user already holds
// max messages, or maxBytes > 0 and the message would take the user's
// messages past maxBytes bytes, it returns a *storage.QuotaError and writes
// nothing. A zero stamp is replaced by the current time.
func (s *Store) Store(ctx context.Context, user string, stanza []byte, stamp time.Time, max, maxBytes int) error {
	if stamp.IsZero() {
		stamp = time.Now()
	}
	return s.write(ctx, "store offline message", func(tx *sql.Tx) error {
		if max > 0 || maxBytes > 0 {
			var n, size int
			// length() of a blob reads the record header, not the content.
			if err := tx.QueryRowContext(ctx,
				`SELECT COUNT(*), COALESCE(SUM(length(stanza)), 0) FROM offline_messages WHERE user_jid = ?`, user).Scan(&n, &size); err != nil {
				return err
			}
			if max > 0 && n >= max {
				return &storage.QuotaError{Quota: storage.QuotaCount, Limit: max}
			}
			if maxBytes > 0 && size+len(stanza) > maxBytes {
				return &storage.QuotaError{Quota: storage.QuotaBytes, Limit: maxBytes}
			}
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO offline_messages (user_jid, stamp, stanza) VALUES (?, ?, ?)`,
			user, stamp.UnixNano(), blob(stanza))
		return err
	})
}

// Pending lists a user's stored messages in arrival order.
func (s *Store) Pending(ctx context.Context, user string) ([]storage.OfflineMessage, error) {
	var out []storage.OfflineMessage
	err := s.read(ctx, "list offline messages", func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx,
			`SELECT id, stamp, stanza FROM offline_messages WHERE user_jid = ? ORDER BY id`, user)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var m storage.OfflineMessage
			var stamp int64
			if err := rows.Scan(&m.ID, &stamp, &m.Stanza); err != nil {
				return err
			}
			m.Stamp = time.Unix(0, stamp).UTC()
			out = append(out, m)
		}
		return rows.Err()
	})
	return out, err
}

// Delete removes a user's messages by ID; IDs that do not exist or belong
// to another user are ignored.
func (s *Store) Delete(ctx context.Context, user string, ids []int64) error {
	if len(ids) == 0 {
		return nil
	}
	return s.write(ctx, "delete offline messages", func(tx *sql.Tx) error {
		stmt, err := tx.PrepareContext(ctx, `DELETE FROM offline_messages WHERE user_jid = ? AND id = ?`)
		if err != nil {
			return err
		}
		defer stmt.Close()
		for _, id := range ids {
			if _, err := stmt.ExecContext(ctx, user, id); err != nil {
				return err
			}
		}
		return nil
	})
}

// Count returns how many messages a user has stored.
func (s *Store) Count(ctx context.Context, user string) (int, error) {
	var n int
	err := s.read(ctx, "count offline messages", func(tx *sql.Tx) error {
		return tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM offline_messages WHERE user_jid = ?`, user).Scan(&n)
	})
	return n, err
}
