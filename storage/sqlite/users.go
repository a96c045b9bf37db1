package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/palisade-im/palisade/storage"
)

// CreateUser adds an account; storage.ErrExists if it is already there.
// A zero Created is replaced by the current time.
func (s *Store) CreateUser(ctx context.Context, u storage.User) error {
	created := u.Created
	if created.IsZero() {
		created = time.Now()
	}
	return s.write(ctx, "create user", func(tx *sql.Tx) error {
		var id int64
		err := tx.QueryRowContext(ctx,
			`INSERT INTO users (localpart, domain, created) VALUES (?, ?, ?)
			 ON CONFLICT DO NOTHING RETURNING id`,
			u.Localpart, u.Domain, created.UnixNano()).Scan(&id)
		if errors.Is(err, sql.ErrNoRows) {
			return storage.ErrExists
		}
		if err != nil {
			return err
		}
		return putCredentials(ctx, tx, id, u.SCRAM)
	})
}

// SetCredentials replaces an account's SCRAM credentials; storage.ErrNotFound if absent.
func (s *Store) SetCredentials(ctx context.Context, localpart, domain string, scram map[string]storage.Credentials) error {
	return s.write(ctx, "set credentials", func(tx *sql.Tx) error {
		id, err := userID(ctx, tx, localpart, domain)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM scram_credentials WHERE user_id = ?`, id); err != nil {
			return err
		}
		return putCredentials(ctx, tx, id, scram)
	})
}

// GetUser returns an account or storage.ErrNotFound.
func (s *Store) GetUser(ctx context.Context, localpart, domain string) (storage.User, error) {
	u := storage.User{Localpart: localpart, Domain: domain, SCRAM: map[string]storage.Credentials{}}
	err := s.read(ctx, "get user", func(tx *sql.Tx) error {
		var id, created int64
		err := tx.QueryRowContext(ctx, `SELECT id, created FROM users WHERE localpart = ? AND domain = ?`,
			localpart, domain).Scan(&id, &created)
		if errors.Is(err, sql.ErrNoRows) {
			return storage.ErrNotFound
		}
		if err != nil {
			return err
		}
		u.Created = time.Unix(0, created).UTC()
		rows, err := tx.QueryContext(ctx,
			`SELECT hash, salt, iterations, stored_key, server_key FROM scram_credentials WHERE user_id = ?`, id)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var hash string
			var c storage.Credentials
			if err := rows.Scan(&hash, &c.Salt, &c.Iterations, &c.StoredKey, &c.ServerKey); err != nil {
				return err
			}
			u.SCRAM[hash] = c
		}
		return rows.Err()
	})
	if err != nil {
		return storage.User{}, err
	}
	return u, nil
}

// DeleteUser removes an account together with its roster, roster version,
// offline messages, private data, block list, PEP nodes, message history and
// group memberships; storage.ErrNotFound if absent.
func (s *Store) DeleteUser(ctx context.Context, localpart, domain string) error {
	bare := localpart + "@" + domain
	return s.write(ctx, "delete user", func(tx *sql.Tx) error {
		if err := execOne(ctx, tx, `DELETE FROM users WHERE localpart = ? AND domain = ?`, localpart, domain); err != nil {
			return err
		}
		// scram_credentials goes with users through ON DELETE CASCADE.
		// The roster version is bumped, not deleted: a re-created account
		// must never reuse a version a client may have cached (XEP-0237).
		for _, q := range []string{
			`DELETE FROM roster_items WHERE user_jid = ?`,
			`UPDATE roster_versions SET version = version + 1 WHERE user_jid = ?`,
			`DELETE FROM offline_messages WHERE user_jid = ?`,
			`DELETE FROM private_data WHERE user_jid = ?`,
			`DELETE FROM blocklist WHERE user_jid = ?`,
			`DELETE FROM pubsub_subscriptions WHERE owner = ?`,
			`DELETE FROM pubsub_subscriptions WHERE subscriber = ?`,
			`DELETE FROM pubsub_items WHERE owner = ?`,
			`DELETE FROM pubsub_nodes WHERE owner = ?`,
			`DELETE FROM history_items WHERE owner = ?`,
			`DELETE FROM history_prefs WHERE owner = ?`,
		} {
			if _, err := tx.ExecContext(ctx, q, bare); err != nil {
				return err
			}
		}
		return removeMemberships(ctx, tx, bare)
	})
}

// ListUsers returns the localparts of a domain, sorted.
func (s *Store) ListUsers(ctx context.Context, domain string) ([]string, error) {
	var out []string
	err := s.read(ctx, "list users", func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT localpart FROM users WHERE domain = ? ORDER BY localpart`, domain)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var l string
			if err := rows.Scan(&l); err != nil {
				return err
			}
			out = append(out, l)
		}
		return rows.Err()
	})
	return out, err
}

func userID(ctx context.Context, tx *sql.Tx, localpart, domain string) (int64, error) {
	var id int64
	err := tx.QueryRowContext(ctx, `SELECT id FROM users WHERE localpart = ? AND domain = ?`, localpart, domain).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, storage.ErrNotFound
	}
	return id, err
}

func putCredentials(ctx context.Context, tx *sql.Tx, id int64, scram map[string]storage.Credentials) error {
	for hash, c := range scram {
		_, err := tx.ExecContext(ctx,
			`INSERT INTO scram_credentials (user_id, hash, salt, iterations, stored_key, server_key)
			 VALUES (?, ?, ?, ?, ?, ?)`,
			id, hash, blob(c.Salt), c.Iterations, blob(c.StoredKey), blob(c.ServerKey))
		if err != nil {
			return err
		}
	}
	return nil
}

// blob turns a nil slice into an empty one so NOT NULL BLOB columns accept it.
func blob(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}
