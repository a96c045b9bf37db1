package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/palisade-im/palisade/storage"
)

var (
	_ storage.Retention = (*Journal)(nil)
	_ storage.EpochKeys = (*Journal)(nil)
)

// AddEpochKey implements storage.EpochKeys.
func (j *Journal) AddEpochKey(ctx context.Context, k storage.EpochKey) error {
	if j.readOnly {
		return ErrJournalReadOnly
	}
	return j.writeTx(ctx, "add epoch key", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, "INSERT INTO epoch_keys (id, created, wrapped) VALUES (?, ?, ?)", k.ID, k.Created.UnixNano(), k.Wrapped)
		return err
	})
}

// EpochKeys implements storage.EpochKeys.
func (j *Journal) EpochKeys(ctx context.Context) ([]storage.EpochKey, error) {
	rows, err := j.rd.QueryContext(ctx, "SELECT id, created, wrapped FROM epoch_keys ORDER BY created, id")
	if err != nil {
		return nil, fmt.Errorf("sqlite: journal epoch keys: %w", err)
	}
	defer rows.Close()
	var out []storage.EpochKey
	for rows.Next() {
		var k storage.EpochKey
		var c int64
		if err := rows.Scan(&k.ID, &c, &k.Wrapped); err != nil {
			return nil, fmt.Errorf("sqlite: journal epoch keys: %w", err)
		}
		k.Created = timeOrZero(c)
		out = append(out, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: journal epoch keys: %w", err)
	}
	return out, nil
}

func unixOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func timeOrZero(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// RecordMemberships implements storage.Retention.
func (j *Journal) RecordMemberships(ctx context.Context, members map[string][]string, seen time.Time) error {
	if j.readOnly {
		return ErrJournalReadOnly
	}
	if len(members) == 0 {
		return nil
	}
	return j.writeTx(ctx, "record memberships", func(tx *sql.Tx) error {
		for bare, groups := range members {
			for _, g := range groups {
				if _, err := tx.ExecContext(ctx, `INSERT INTO group_members (grp, jid, first_seen) VALUES (?, ?, ?) ON CONFLICT DO NOTHING`,
					g, bare, seen.UnixNano()); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// Memberships implements storage.Retention.
func (j *Journal) Memberships(ctx context.Context) (map[string][]string, error) {
	rows, err := j.rd.QueryContext(ctx, "SELECT jid, grp FROM group_members ORDER BY jid, grp")
	if err != nil {
		return nil, fmt.Errorf("sqlite: journal memberships: %w", err)
	}
	defer rows.Close()
	out := map[string][]string{}
	for rows.Next() {
		var bare, g string
		if err := rows.Scan(&bare, &g); err != nil {
			return nil, fmt.Errorf("sqlite: journal memberships: %w", err)
		}
		out[bare] = append(out[bare], g)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: journal memberships: %w", err)
	}
	return out, nil
}

// LockedPolicies implements storage.Retention.
func (j *Journal) LockedPolicies(ctx context.Context) ([]storage.LockedPolicy, error) {
	rows, err := j.rd.QueryContext(ctx, "SELECT name, scope, targets, keep_days, recorded FROM retention_locks ORDER BY name")
	if err != nil {
		return nil, fmt.Errorf("sqlite: journal locked policies: %w", err)
	}
	defer rows.Close()
	var out []storage.LockedPolicy
	for rows.Next() {
		var p storage.LockedPolicy
		var targets string
		var rec int64
		if err := rows.Scan(&p.Name, &p.Scope, &targets, &p.KeepDays, &rec); err != nil {
			return nil, fmt.Errorf("sqlite: journal locked policies: %w", err)
		}
		if err := json.Unmarshal([]byte(targets), &p.Targets); err != nil {
			return nil, fmt.Errorf("sqlite: journal locked policy %q: targets: %w", p.Name, err)
		}
		p.Recorded = timeOrZero(rec)
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: journal locked policies: %w", err)
	}
	return out, nil
}

// RecordLockedPolicies implements storage.Retention. keep_days only
// rises; targets are replaced (the caller checked that they only widen).
func (j *Journal) RecordLockedPolicies(ctx context.Context, ps []storage.LockedPolicy) error {
	if j.readOnly {
		return ErrJournalReadOnly
	}
	return j.writeTx(ctx, "record locked policies", func(tx *sql.Tx) error {
		for _, p := range ps {
			t := slices.Clone(p.Targets)
			slices.Sort(t)
			if t == nil {
				t = []string{}
			}
			targets, err := json.Marshal(t)
			if err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO retention_locks (name, scope, targets, keep_days, recorded) VALUES (?, ?, ?, ?, ?)
				ON CONFLICT (name) DO UPDATE SET keep_days = MAX(keep_days, excluded.keep_days), targets = excluded.targets`,
				p.Name, p.Scope, string(targets), p.KeepDays, unixOrZero(p.Recorded)); err != nil {
				return fmt.Errorf("policy %q: %w", p.Name, err)
			}
		}
		return nil
	})
}

// writeTx runs fn in one write transaction.
func (j *Journal) writeTx(ctx context.Context, what string, fn func(*sql.Tx) error) error {
	tx, err := j.wr.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: journal %s: begin: %w", what, err)
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		if errors.Is(err, storage.ErrHoldExists) || errors.Is(err, storage.ErrNoHold) {
			return err
		}
		return fmt.Errorf("sqlite: journal %s: %w", what, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: journal %s: commit: %w", what, err)
	}
	return nil
}

// Holds implements storage.Retention.
func (j *Journal) Holds(ctx context.Context) ([]storage.Hold, error) {
	rows, err := j.rd.QueryContext(ctx, `SELECT name, custodians, from_time, to_time, reason, placed_by, placed_at,
		released_at, released_by, release_reason FROM holds ORDER BY placed_at, name`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: journal holds: %w", err)
	}
	defer rows.Close()
	var out []storage.Hold
	for rows.Next() {
		var h storage.Hold
		var cust string
		var from, to, placed, released int64
		if err := rows.Scan(&h.Name, &cust, &from, &to, &h.Reason, &h.PlacedBy, &placed, &released, &h.ReleasedBy, &h.ReleaseReason); err != nil {
			return nil, fmt.Errorf("sqlite: journal holds: %w", err)
		}
		if err := json.Unmarshal([]byte(cust), &h.Custodians); err != nil {
			return nil, fmt.Errorf("sqlite: journal hold %q: custodians: %w", h.Name, err)
		}
		h.From, h.To, h.PlacedAt, h.Released = timeOrZero(from), timeOrZero(to), timeOrZero(placed), timeOrZero(released)
		out = append(out, h)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: journal holds: %w", err)
	}
	return out, nil
}

// AddHold implements storage.Retention.
func (j *Journal) AddHold(ctx context.Context, h storage.Hold) error {
	if j.readOnly {
		return ErrJournalReadOnly
	}
	cust, err := json.Marshal(h.Custodians)
	if err != nil {
		return err
	}
	return j.writeTx(ctx, "add hold", func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, "SELECT COUNT(*) FROM holds WHERE name = ?", h.Name).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return fmt.Errorf("%w: %q", storage.ErrHoldExists, h.Name)
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO holds (name, custodians, from_time, to_time, reason, placed_by, placed_at)
			VALUES (?, ?, ?, ?, ?, ?, ?)`, h.Name, string(cust), unixOrZero(h.From), unixOrZero(h.To), h.Reason, h.PlacedBy, unixOrZero(h.PlacedAt))
		return err
	})
}

// ReleaseHold implements storage.Retention.
func (j *Journal) ReleaseHold(ctx context.Context, name, by, reason string, at time.Time) error {
	if j.readOnly {
		return ErrJournalReadOnly
	}
	return j.writeTx(ctx, "release hold", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE holds SET released_at = ?, released_by = ?, release_reason = ?
			WHERE name = ? AND released_at = 0`, at.UnixNano(), by, reason, name)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return fmt.Errorf("%w: %q", storage.ErrNoHold, name)
		}
		return nil
	})
}

// purgeChunk bounds the records one purge transaction clears, so that the
// server's appends (busy timeout 2s) never wait long behind a purge run
// by another process.
const purgeChunk = 512

// Purge implements storage.Retention, in transactions of at most
// purgeChunk records.
func (j *Journal) Purge(ctx context.Context, seqs []int64, disposition int64) error {
	if j.readOnly {
		return ErrJournalReadOnly
	}
	var legacy, logged []int64
	for _, s := range seqs {
		if s < j.legacyEnd {
			legacy = append(legacy, s)
		} else {
			logged = append(logged, s)
		}
	}
	for len(legacy) > 0 {
		n := min(len(legacy), purgeChunk)
		if err := j.purge(ctx, legacy[:n], disposition); err != nil {
			return err
		}
		legacy = legacy[n:]
	}
	if err := j.log.Purge(logged, disposition); err != nil {
		return fmt.Errorf("sqlite: journal purge: %w", err)
	}
	return nil
}

func (j *Journal) purge(ctx context.Context, seqs []int64, disposition int64) error {
	return j.writeTx(ctx, "purge", func(tx *sql.Tx) error {
		stmt, err := tx.PrepareContext(ctx, "UPDATE records SET data = X'', purged_by = ? WHERE seq = ? AND purged_by = -1")
		if err != nil {
			return err
		}
		defer stmt.Close()
		for _, s := range seqs {
			if _, err := stmt.ExecContext(ctx, disposition, s); err != nil {
				return fmt.Errorf("record %d: %w", s, err)
			}
		}
		return nil
	})
}
