package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/palisade-im/palisade/storage"
)

const rosterColumns = `jid, name, subscription, ask, pending_in, pending_in_stanza, approved, groups_json, hidden, shared`

// Roster returns a user's items sorted by JID and the current version
// ("0" for a user whose roster was never written).
func (s *Store) Roster(ctx context.Context, user string) ([]storage.RosterItem, string, error) {
	var items []storage.RosterItem
	var ver int64
	err := s.read(ctx, "get roster", func(tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx, `SELECT version FROM roster_versions WHERE user_jid = ?`, user).Scan(&ver)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		rows, err := tx.QueryContext(ctx,
			`SELECT `+rosterColumns+` FROM roster_items WHERE user_jid = ? ORDER BY jid`, user)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			it, err := scanItem(rows)
			if err != nil {
				return err
			}
			items = append(items, it)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, "", err
	}
	return items, strconv.FormatInt(ver, 10), nil
}

// Item returns one roster item or storage.ErrNotFound.
func (s *Store) Item(ctx context.Context, user, contact string) (storage.RosterItem, error) {
	var it storage.RosterItem
	err := s.read(ctx, "get roster item", func(tx *sql.Tx) error {
		var err error
		it, err = scanItem(tx.QueryRowContext(ctx,
			`SELECT `+rosterColumns+` FROM roster_items WHERE user_jid = ? AND jid = ?`, user, contact))
		if errors.Is(err, sql.ErrNoRows) {
			return storage.ErrNotFound
		}
		return err
	})
	return it, err
}

// PutItem creates or replaces a roster item and bumps the version in the
// same transaction. An empty Subscription is stored as "none"; "remove" is
// rejected.
func (s *Store) PutItem(ctx context.Context, user string, item storage.RosterItem) (string, error) {
	sub := item.Subscription
	switch sub {
	case "":
		sub = storage.SubNone
	case storage.SubNone, storage.SubTo, storage.SubFrom, storage.SubBoth:
	default:
		return "", fmt.Errorf("sqlite: put roster item: invalid subscription %q", sub)
	}
	groups := item.Groups
	if groups == nil {
		groups = []string{}
	}
	gj, err := json.Marshal(groups)
	if err != nil {
		return "", fmt.Errorf("sqlite: put roster item: %w", err)
	}
	var stanza any // NULL when empty
	if len(item.PendingInStanza) > 0 {
		stanza = item.PendingInStanza
	}
	var ver int64
	err = s.write(ctx, "put roster item", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx,
			`INSERT OR REPLACE INTO roster_items (user_jid, `+rosterColumns+`)
			 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			user, item.JID, item.Name, string(sub), item.Ask, item.PendingIn, stanza, item.Approved, string(gj), item.Hidden, item.Shared)
		if err != nil {
			return err
		}
		v, err := bumpVersion(ctx, tx, user)
		ver = v
		return err
	})
	if err != nil {
		return "", err
	}
	return strconv.FormatInt(ver, 10), nil
}

// DeleteItem removes a roster item (storage.ErrNotFound if absent) and
// bumps the version in the same transaction.
func (s *Store) DeleteItem(ctx context.Context, user, contact string) (string, error) {
	var ver int64
	err := s.write(ctx, "delete roster item", func(tx *sql.Tx) error {
		if err := execOne(ctx, tx, `DELETE FROM roster_items WHERE user_jid = ? AND jid = ?`, user, contact); err != nil {
			return err
		}
		v, err := bumpVersion(ctx, tx, user)
		ver = v
		return err
	})
	if err != nil {
		return "", err
	}
	return strconv.FormatInt(ver, 10), nil
}

// SharedItems implements storage.Rosters.
func (s *Store) SharedItems(ctx context.Context, group string) ([][2]string, error) {
	var out [][2]string
	err := s.read(ctx, "shared roster items", func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT user_jid, jid FROM roster_items WHERE shared = ? AND shared != '' ORDER BY user_jid, jid`, group)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var p [2]string
			if err := rows.Scan(&p[0], &p[1]); err != nil {
				return err
			}
			out = append(out, p)
		}
		return rows.Err()
	})
	return out, err
}

func bumpVersion(ctx context.Context, tx *sql.Tx, user string) (int64, error) {
	var v int64
	err := tx.QueryRowContext(ctx,
		`INSERT INTO roster_versions (user_jid, version) VALUES (?, 1)
		 ON CONFLICT (user_jid) DO UPDATE SET version = version + 1 RETURNING version`, user).Scan(&v)
	return v, err
}

func scanItem(r interface{ Scan(...any) error }) (storage.RosterItem, error) {
	var it storage.RosterItem
	var sub, gj string
	if err := r.Scan(&it.JID, &it.Name, &sub, &it.Ask, &it.PendingIn, &it.PendingInStanza, &it.Approved, &gj, &it.Hidden, &it.Shared); err != nil {
		return storage.RosterItem{}, err
	}
	it.Subscription = storage.Subscription(sub)
	if err := json.Unmarshal([]byte(gj), &it.Groups); err != nil {
		return storage.RosterItem{}, fmt.Errorf("decode groups of %s: %w", it.JID, err)
	}
	if len(it.Groups) == 0 {
		it.Groups = nil
	}
	return it, nil
}
