package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"strings"

	"github.com/palisade-im/palisade/storage"
)

var _ storage.Groups = (*Store)(nil)

// AddMember puts the internal account bare in group;
// storage.ErrNotFound when there is no such account, storage.ErrExists
// when it is a member already.
func (s *Store) AddMember(ctx context.Context, group, bare string) error {
	local, domain, ok := strings.Cut(bare, "@")
	if !ok {
		return storage.ErrNotFound
	}
	return s.write(ctx, "add group member", func(tx *sql.Tx) error {
		if _, err := userID(ctx, tx, local, domain); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx,
			`INSERT INTO group_members (group_name, jid) VALUES (?, ?) ON CONFLICT DO NOTHING`, group, bare)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return storage.ErrExists
		}
		return bumpGroupVersion(ctx, tx)
	})
}

// RemoveMember takes bare out of group; storage.ErrNotFound when it is
// not a member.
func (s *Store) RemoveMember(ctx context.Context, group, bare string) error {
	return s.write(ctx, "remove group member", func(tx *sql.Tx) error {
		if err := execOne(ctx, tx, `DELETE FROM group_members WHERE group_name = ? AND jid = ?`, group, bare); err != nil {
			return err
		}
		return bumpGroupVersion(ctx, tx)
	})
}

// Members returns the members of group, sorted.
func (s *Store) Members(ctx context.Context, group string) ([]string, error) {
	var out []string
	err := s.read(ctx, "group members", func(tx *sql.Tx) error {
		var err error
		out, err = strings1(ctx, tx, `SELECT jid FROM group_members WHERE group_name = ? ORDER BY jid`, group)
		return err
	})
	return out, err
}

// GroupsOf returns the groups of bare, sorted.
func (s *Store) GroupsOf(ctx context.Context, bare string) ([]string, error) {
	var out []string
	err := s.read(ctx, "groups of account", func(tx *sql.Tx) error {
		var err error
		out, err = strings1(ctx, tx, `SELECT group_name FROM group_members WHERE jid = ? ORDER BY group_name`, bare)
		return err
	})
	return out, err
}

// Memberships returns every account's groups, sorted, by bare JID, read in
// one snapshot together with the membership version.
func (s *Store) Memberships(ctx context.Context) (map[string][]string, int64, error) {
	out := map[string][]string{}
	var version int64
	err := s.read(ctx, "memberships", func(tx *sql.Tx) error {
		if err := tx.QueryRowContext(ctx, `SELECT version FROM group_version`).Scan(&version); err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, `SELECT jid, group_name FROM group_members ORDER BY jid, group_name`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var j, g string
			if err := rows.Scan(&j, &g); err != nil {
				return err
			}
			out[j] = append(out[j], g)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, 0, err
	}
	return out, version, nil
}

// MembershipVersion returns the membership version, bumped by every change.
func (s *Store) MembershipVersion(ctx context.Context) (int64, error) {
	var v int64
	err := s.read(ctx, "membership version", func(tx *sql.Tx) error {
		return tx.QueryRowContext(ctx, `SELECT version FROM group_version`).Scan(&v)
	})
	return v, err
}

// removeMemberships deletes every membership of bare (an account being
// deleted), bumping the version when there were any.
func removeMemberships(ctx context.Context, tx *sql.Tx, bare string) error {
	err := execOne(ctx, tx, `DELETE FROM group_members WHERE jid = ?`, bare)
	if errors.Is(err, storage.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	return bumpGroupVersion(ctx, tx)
}

func bumpGroupVersion(ctx context.Context, tx *sql.Tx) error {
	return execOne(ctx, tx, `UPDATE group_version SET version = version + 1`)
}

// strings1 runs a query of one text column and returns its values.
func strings1(ctx context.Context, tx *sql.Tx, query string, args ...any) ([]string, error) {
	rows, err := tx.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}
