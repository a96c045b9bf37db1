package sqlite

import (
	"context"
	"database/sql"
	"errors"

	"github.com/palisade-im/palisade/storage"
)

// GetPrivate returns the data stored for (user, key) or storage.ErrNotFound.
func (s *Store) GetPrivate(ctx context.Context, user, key string) ([]byte, error) {
	var data []byte
	err := s.read(ctx, "get private data", func(tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx, `SELECT data FROM private_data WHERE user_jid = ? AND key = ?`,
			user, key).Scan(&data)
		if errors.Is(err, sql.ErrNoRows) {
			return storage.ErrNotFound
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return data, nil
}

// SetPrivate stores data for (user, key); empty data deletes the entry.
func (s *Store) SetPrivate(ctx context.Context, user, key string, data []byte) error {
	return s.write(ctx, "set private data", func(tx *sql.Tx) error {
		var err error
		if len(data) == 0 {
			_, err = tx.ExecContext(ctx, `DELETE FROM private_data WHERE user_jid = ? AND key = ?`, user, key)
		} else {
			_, err = tx.ExecContext(ctx, `INSERT OR REPLACE INTO private_data (user_jid, key, data) VALUES (?, ?, ?)`,
				user, key, data)
		}
		return err
	})
}

// PutPrivate stores entries for user in one transaction and checks q on
// the result; over it, nothing is stored. A write that leaves the count
// or the bytes no higher than they were is allowed even over q (so that
// an account over a lowered quota can still shrink).
func (s *Store) PutPrivate(ctx context.Context, user string, entries []storage.PrivateEntry, q storage.PrivateQuota) error {
	return s.write(ctx, "put private data", func(tx *sql.Tx) error {
		limited := q.MaxItems > 0 || q.MaxBytes > 0
		var n0, size0 int
		if limited {
			var err error
			if n0, size0, err = privateUsage(ctx, tx, user, q.Exempt); err != nil {
				return err
			}
		}
		for _, e := range entries {
			var err error
			if len(e.Data) == 0 {
				_, err = tx.ExecContext(ctx, `DELETE FROM private_data WHERE user_jid = ? AND key = ?`, user, e.Key)
			} else {
				_, err = tx.ExecContext(ctx, `INSERT OR REPLACE INTO private_data (user_jid, key, data) VALUES (?, ?, ?)`,
					user, e.Key, e.Data)
			}
			if err != nil {
				return err
			}
		}
		if !limited {
			return nil
		}
		n, size, err := privateUsage(ctx, tx, user, q.Exempt)
		if err != nil {
			return err
		}
		if q.MaxItems > 0 && n > q.MaxItems && n > n0 {
			return &storage.QuotaError{Quota: storage.QuotaCount, Limit: q.MaxItems}
		}
		if q.MaxBytes > 0 && size > q.MaxBytes && size > size0 {
			return &storage.QuotaError{Quota: storage.QuotaBytes, Limit: q.MaxBytes}
		}
		return nil
	})
}

// privateUsage counts a user's private keys, except those in exempt, and
// the bytes of their data.
func privateUsage(ctx context.Context, tx *sql.Tx, user string, exempt []string) (n, size int, err error) {
	query := `SELECT COUNT(*), COALESCE(SUM(length(data)), 0) FROM private_data WHERE user_jid = ?`
	args := []any{user}
	for _, k := range exempt {
		query += ` AND key != ?`
		args = append(args, k)
	}
	err = tx.QueryRowContext(ctx, query, args...).Scan(&n, &size)
	return n, size, err
}

// Blocked returns a user's blocked JIDs, sorted.
func (s *Store) Blocked(ctx context.Context, user string) ([]string, error) {
	var out []string
	err := s.read(ctx, "get block list", func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT jid FROM blocklist WHERE user_jid = ? ORDER BY jid`, user)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var j string
			if err := rows.Scan(&j); err != nil {
				return err
			}
			out = append(out, j)
		}
		return rows.Err()
	})
	return out, err
}

// Block adds JIDs to a user's block list; ones already there are ignored.
func (s *Store) Block(ctx context.Context, user string, jids []string) error {
	if len(jids) == 0 {
		return nil
	}
	return s.write(ctx, "block", func(tx *sql.Tx) error {
		for _, j := range jids {
			if _, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO blocklist (user_jid, jid) VALUES (?, ?)`,
				user, j); err != nil {
				return err
			}
		}
		return nil
	})
}

// Unblock removes JIDs from a user's block list; with no JIDs it clears the list.
func (s *Store) Unblock(ctx context.Context, user string, jids []string) error {
	return s.write(ctx, "unblock", func(tx *sql.Tx) error {
		if len(jids) == 0 {
			_, err := tx.ExecContext(ctx, `DELETE FROM blocklist WHERE user_jid = ?`, user)
			return err
		}
		for _, j := range jids {
			if _, err := tx.ExecContext(ctx, `DELETE FROM blocklist WHERE user_jid = ? AND jid = ?`,
				user, j); err != nil {
				return err
			}
		}
		return nil
	})
}
