package sqlite

import (
	"context"
	"database/sql"

	"github.com/palisade-im/palisade/storage"
	"time"
)

// SaveLockout implements storage.Lockouts.
func (s *Store) SaveLockout(ctx context.Context, l storage.Lockout) error {
	return s.write(ctx, "save lockout", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO lockouts (kind, key, until) VALUES (?, ?, ?)
			ON CONFLICT (kind, key) DO UPDATE SET until = excluded.until`, l.Kind, l.Key, l.Until.UnixNano())
		return err
	})
}

// ClearLockout implements storage.Lockouts.
func (s *Store) ClearLockout(ctx context.Context, kind, key string) error {
	return s.write(ctx, "clear lockout", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM lockouts WHERE kind = ? AND key = ?`, kind, key)
		return err
	})
}

// Lockouts implements storage.Lockouts.
func (s *Store) Lockouts(ctx context.Context, now time.Time) ([]storage.Lockout, error) {
	var out []storage.Lockout
	err := s.write(ctx, "lockouts", func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM lockouts WHERE until <= ?`, now.UnixNano()); err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, `SELECT kind, key, until FROM lockouts ORDER BY kind, key`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var l storage.Lockout
			var until int64
			if err := rows.Scan(&l.Kind, &l.Key, &until); err != nil {
				return err
			}
			l.Until = time.Unix(0, until)
			out = append(out, l)
		}
		return rows.Err()
	})
	return out, err
}
