package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/palisade-im/palisade/storage"
)

// History items are ordered by (stamp, seq): time, then arrival. Every
// index ends in stamp and the implicit rowid seq, so pages are read in
// index order. Each insert appends at the end of its owner's and its
// conversation's part of the indexes, and at the end of the table.

// AppendHistory stores items in one transaction. Their IDs must come
// from NewHistoryID.
func (s *Store) AppendHistory(ctx context.Context, items []storage.HistoryItem) error {
	if len(items) == 0 {
		return nil
	}
	rows := make([]historyRow, len(items))
	for i := range items {
		it := &items[i]
		seq, ok := s.hist.decode(it.ID)
		if !ok {
			return fmt.Errorf("sqlite: append history: item id %q was not issued by this store", it.ID)
		}
		rows[i] = historyRow{seq: seq, stamp: it.Time.UnixNano(), withBare: bareOf(it.With), it: it}
	}
	// In index order: consecutive inserts then land on the same pages
	// (measured: a third more items per second).
	slices.SortFunc(rows, func(a, b historyRow) int {
		return cmp.Or(strings.Compare(a.it.Owner, b.it.Owner), strings.Compare(a.withBare, b.withBare),
			cmp.Compare(a.stamp, b.stamp), cmp.Compare(a.seq, b.seq))
	})
	return s.write(ctx, "append history", func(tx *sql.Tx) error {
		// Many rows per statement: one cgo round trip for each chunk.
		const chunk = 64
		args := make([]any, 0, 6*chunk)
		for len(rows) > 0 {
			n := min(len(rows), chunk)
			args = args[:0]
			for _, r := range rows[:n] {
				args = append(args, r.seq, r.it.Owner, r.stamp, r.withBare, r.it.With, r.it.Stanza)
			}
			q := `INSERT INTO history_items (seq, owner, stamp, with_bare, with_full, stanza) VALUES ` +
				strings.TrimSuffix(strings.Repeat("(?, ?, ?, ?, ?, ?),", n), ",")
			if _, err := tx.ExecContext(ctx, q, args...); err != nil {
				return err
			}
			rows = rows[n:]
		}
		return nil
	})
}

// historyRow is an item as AppendHistory inserts it.
type historyRow struct {
	seq, stamp int64
	withBare   string
	it         *storage.HistoryItem
}

// bareOf strips the resource of a JID string.
func bareOf(j string) string {
	if i := strings.IndexByte(j, '/'); i >= 0 {
		return j[:i]
	}
	return j
}

// position is where an item sits in the order.
type position struct{ stamp, seq int64 }

// itemPos finds an owner's item by ID: one this store issued, or one
// kept from before version 5.
func (s *Store) itemPos(ctx context.Context, tx *sql.Tx, owner, id string) (position, error) {
	var p position
	err := sql.ErrNoRows
	if seq, ok := s.hist.decode(id); ok {
		err = tx.QueryRowContext(ctx, `SELECT stamp, seq FROM history_items WHERE seq = ? AND owner = ? AND legacy_id IS NULL`, seq, owner).Scan(&p.stamp, &p.seq)
	}
	if errors.Is(err, sql.ErrNoRows) {
		err = tx.QueryRowContext(ctx, `SELECT stamp, seq FROM history_items WHERE owner = ? AND legacy_id = ?`, owner, id).Scan(&p.stamp, &p.seq)
	}
	if errors.Is(err, sql.ErrNoRows) {
		return p, storage.ErrNotFound
	}
	return p, err
}

// itemID is the ID of the item at seq.
func (s *Store) itemID(seq int64, legacy sql.NullString) string {
	if legacy.Valid {
		return legacy.String
	}
	return s.hist.encode(seq)
}

// historyFilter builds the WHERE clause of a query's result set.
type historyFilter struct {
	where []string
	args  []any
}

func (f *historyFilter) add(cond string, args ...any) {
	f.where = append(f.where, cond)
	f.args = append(f.args, args...)
}

func (f *historyFilter) sql() string { return strings.Join(f.where, " AND ") }

// QueryHistory returns one page of an owner's history.
func (s *Store) QueryHistory(ctx context.Context, q storage.HistoryQuery) (storage.HistoryPage, error) {
	var page storage.HistoryPage
	err := s.read(ctx, "query history", func(tx *sql.Tx) error {
		f := &historyFilter{}
		f.add("owner = ?", q.Owner)
		switch {
		case q.With == "":
		case strings.Contains(q.With, "/"):
			f.add("with_bare = ? AND with_full = ?", bareOf(q.With), q.With)
		default:
			f.add("with_bare = ?", q.With)
		}
		if !q.Start.IsZero() {
			f.add("stamp >= ?", q.Start.UnixNano())
		}
		if !q.End.IsZero() {
			f.add("stamp <= ?", q.End.UnixNano())
		}
		if q.AfterID != "" {
			p, err := s.itemPos(ctx, tx, q.Owner, q.AfterID)
			if err != nil {
				return err
			}
			f.add("(stamp, seq) > (?, ?)", p.stamp, p.seq)
		}
		if q.BeforeID != "" {
			p, err := s.itemPos(ctx, tx, q.Owner, q.BeforeID)
			if err != nil {
				return err
			}
			f.add("(stamp, seq) < (?, ?)", p.stamp, p.seq)
		}
		if len(q.IDs) > 0 {
			uniq := map[int64]bool{}
			var args []any
			for _, id := range q.IDs {
				p, err := s.itemPos(ctx, tx, q.Owner, id)
				if err != nil {
					return err
				}
				if !uniq[p.seq] {
					uniq[p.seq] = true
					args = append(args, p.seq)
				}
			}
			f.add("seq IN ("+strings.TrimSuffix(strings.Repeat("?,", len(args)), ",")+")", args...)
		}
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM history_items WHERE `+f.sql(), f.args...).Scan(&page.Count); err != nil {
			return err
		}
		if q.Limit <= 0 {
			page.Complete = page.Count == 0
			return nil
		}
		pf := &historyFilter{where: append([]string(nil), f.where...), args: append([]any(nil), f.args...)}
		backward := q.Last || q.PageBefore != ""
		if q.PageAfter != "" {
			p, err := s.itemPos(ctx, tx, q.Owner, q.PageAfter)
			if err != nil {
				return err
			}
			pf.add("(stamp, seq) > (?, ?)", p.stamp, p.seq)
		}
		if q.PageBefore != "" {
			p, err := s.itemPos(ctx, tx, q.Owner, q.PageBefore)
			if err != nil {
				return err
			}
			pf.add("(stamp, seq) < (?, ?)", p.stamp, p.seq)
		}
		order := "stamp, seq"
		if backward {
			order = "stamp DESC, seq DESC"
		}
		args := append(pf.args, q.Limit, max(q.Offset, 0))
		rows, err := tx.QueryContext(ctx, `SELECT stamp, seq, with_full, stanza, legacy_id FROM history_items WHERE `+pf.sql()+
			` ORDER BY `+order+` LIMIT ? OFFSET ?`, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		var first position
		for rows.Next() {
			it := storage.HistoryItem{Owner: q.Owner}
			var stamp, seq int64
			var legacy sql.NullString
			if err := rows.Scan(&stamp, &seq, &it.With, &it.Stanza, &legacy); err != nil {
				return err
			}
			it.ID = s.itemID(seq, legacy)
			it.Time = time.Unix(0, stamp).UTC()
			page.Items = append(page.Items, it)
			if backward || len(page.Items) == 1 {
				first = position{stamp, seq}
			}
		}
		if err := rows.Err(); err != nil {
			return err
		}
		if backward {
			for i, j := 0, len(page.Items)-1; i < j; i, j = i+1, j-1 {
				page.Items[i], page.Items[j] = page.Items[j], page.Items[i]
			}
		}
		if len(page.Items) == 0 {
			page.Complete = true
			if !backward {
				page.FirstIndex = page.Count
			}
			return nil
		}
		ff := &historyFilter{where: append([]string(nil), f.where...), args: append([]any(nil), f.args...)}
		ff.add("(stamp, seq) < (?, ?)", first.stamp, first.seq)
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM history_items WHERE `+ff.sql(), ff.args...).Scan(&page.FirstIndex); err != nil {
			return err
		}
		if backward {
			page.Complete = page.FirstIndex == 0
		} else {
			page.Complete = page.FirstIndex+len(page.Items) == page.Count
		}
		return nil
	})
	return page, err
}

// HistoryBounds returns the oldest and newest items of an owner's history.
func (s *Store) HistoryBounds(ctx context.Context, owner string) (first, last storage.HistoryItem, ok bool, err error) {
	err = s.read(ctx, "history bounds", func(tx *sql.Tx) error {
		for _, q := range []struct {
			order string
			it    *storage.HistoryItem
		}{{"stamp, seq", &first}, {"stamp DESC, seq DESC", &last}} {
			var stamp, seq int64
			var legacy sql.NullString
			err := tx.QueryRowContext(ctx, `SELECT seq, stamp, with_full, legacy_id FROM history_items WHERE owner = ? ORDER BY `+q.order+` LIMIT 1`, owner).
				Scan(&seq, &stamp, &q.it.With, &legacy)
			if errors.Is(err, sql.ErrNoRows) {
				return nil
			}
			if err != nil {
				return err
			}
			q.it.Owner, q.it.ID, q.it.Time = owner, s.itemID(seq, legacy), time.Unix(0, stamp).UTC()
			ok = true
		}
		return nil
	})
	return first, last, ok, err
}

// DeleteHistory removes an owner's history and preferences.
func (s *Store) DeleteHistory(ctx context.Context, owner string) error {
	return s.write(ctx, "delete history", func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM history_items WHERE owner = ?`, owner); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `DELETE FROM history_prefs WHERE owner = ?`, owner)
		return err
	})
}

// PurgeHistory implements storage.History: it lists the conversations,
// then deletes each one's expired items, purgeBatch conversations per
// transaction so that writers never wait long behind it.
func (s *Store) PurgeHistory(ctx context.Context, now time.Time, keep func(owner, with string) time.Duration) (int64, error) {
	type conv struct {
		owner, with string
		before      int64
	}
	var convs []conv
	err := s.read(ctx, "purge history: list", func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT DISTINCT owner, with_bare FROM history_items`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var c conv
			if err := rows.Scan(&c.owner, &c.with); err != nil {
				return err
			}
			if d := keep(c.owner, c.with); d > 0 {
				c.before = now.Add(-d).UnixNano()
				convs = append(convs, c)
			}
		}
		return rows.Err()
	})
	if err != nil {
		return 0, err
	}
	var n int64
	for len(convs) > 0 {
		batch := convs[:min(len(convs), purgeBatch)]
		convs = convs[len(batch):]
		err := s.write(ctx, "purge history", func(tx *sql.Tx) error {
			for _, c := range batch {
				res, err := tx.ExecContext(ctx, `DELETE FROM history_items WHERE owner = ? AND with_bare = ? AND stamp < ?`, c.owner, c.with, c.before)
				if err != nil {
					return err
				}
				k, err := res.RowsAffected()
				if err != nil {
					return err
				}
				n += k
			}
			return nil
		})
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// purgeBatch is how many conversations one purge transaction covers.
const purgeBatch = 256

// HistoryPrefs returns an owner's preferences, or storage.ErrNotFound.
func (s *Store) HistoryPrefs(ctx context.Context, owner string) (storage.HistoryPrefs, error) {
	var p storage.HistoryPrefs
	err := s.read(ctx, "history prefs", func(tx *sql.Tx) error {
		var always, never string
		err := tx.QueryRowContext(ctx, `SELECT default_pref, always_json, never_json FROM history_prefs WHERE owner = ?`, owner).
			Scan(&p.Default, &always, &never)
		if errors.Is(err, sql.ErrNoRows) {
			return storage.ErrNotFound
		}
		if err != nil {
			return err
		}
		if err := json.Unmarshal([]byte(always), &p.Always); err != nil {
			return fmt.Errorf("always list: %w", err)
		}
		if err := json.Unmarshal([]byte(never), &p.Never); err != nil {
			return fmt.Errorf("never list: %w", err)
		}
		return nil
	})
	return p, err
}

// SetHistoryPrefs replaces an owner's preferences.
func (s *Store) SetHistoryPrefs(ctx context.Context, owner string, p storage.HistoryPrefs) error {
	always, err := json.Marshal(nonNil(p.Always))
	if err != nil {
		return fmt.Errorf("sqlite: set history prefs: %w", err)
	}
	never, err := json.Marshal(nonNil(p.Never))
	if err != nil {
		return fmt.Errorf("sqlite: set history prefs: %w", err)
	}
	return s.write(ctx, "set history prefs", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO history_prefs (owner, default_pref, always_json, never_json) VALUES (?, ?, ?, ?)
			ON CONFLICT (owner) DO UPDATE SET default_pref = excluded.default_pref, always_json = excluded.always_json, never_json = excluded.never_json`,
			owner, p.Default, string(always), string(never))
		return err
	})
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
