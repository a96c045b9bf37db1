package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/palisade-im/palisade/storage"
)

// History items are ordered by (stamp, seq): time, then arrival. Both
// indexes end in stamp (and the implicit rowid), so pages are read in
// index order.

// AppendHistory stores items in one transaction.
func (s *Store) AppendHistory(ctx context.Context, items []storage.HistoryItem) error {
	if len(items) == 0 {
		return nil
	}
	return s.write(ctx, "append history", func(tx *sql.Tx) error {
		// Many rows per statement: one cgo round trip for each chunk.
		const chunk = 64
		args := make([]any, 0, 6*chunk)
		for len(items) > 0 {
			n := min(len(items), chunk)
			args = args[:0]
			for _, it := range items[:n] {
				args = append(args, it.Owner, it.ID, it.Time.UnixNano(), bareOf(it.With), it.With, it.Stanza)
			}
			q := `INSERT INTO history (owner, id, stamp, with_bare, with_full, stanza) VALUES ` +
				strings.TrimSuffix(strings.Repeat("(?, ?, ?, ?, ?, ?),", n), ",")
			if _, err := tx.ExecContext(ctx, q, args...); err != nil {
				return err
			}
			items = items[n:]
		}
		return nil
	})
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

func itemPos(ctx context.Context, tx *sql.Tx, owner, id string) (position, error) {
	var p position
	err := tx.QueryRowContext(ctx, `SELECT stamp, seq FROM history WHERE owner = ? AND id = ?`, owner, id).Scan(&p.stamp, &p.seq)
	if errors.Is(err, sql.ErrNoRows) {
		return p, storage.ErrNotFound
	}
	return p, err
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
			p, err := itemPos(ctx, tx, q.Owner, q.AfterID)
			if err != nil {
				return err
			}
			f.add("(stamp, seq) > (?, ?)", p.stamp, p.seq)
		}
		if q.BeforeID != "" {
			p, err := itemPos(ctx, tx, q.Owner, q.BeforeID)
			if err != nil {
				return err
			}
			f.add("(stamp, seq) < (?, ?)", p.stamp, p.seq)
		}
		if len(q.IDs) > 0 {
			uniq := map[string]bool{}
			args := []any{q.Owner}
			for _, id := range q.IDs {
				if !uniq[id] {
					uniq[id] = true
					args = append(args, id)
				}
			}
			marks := strings.TrimSuffix(strings.Repeat("?,", len(uniq)), ",")
			var n int
			if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM history WHERE owner = ? AND id IN (`+marks+`)`, args...).Scan(&n); err != nil {
				return err
			}
			if n != len(uniq) {
				return storage.ErrNotFound
			}
			f.add("id IN ("+marks+")", args[1:]...)
		}
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM history WHERE `+f.sql(), f.args...).Scan(&page.Count); err != nil {
			return err
		}
		if q.Limit <= 0 {
			page.Complete = page.Count == 0
			return nil
		}
		pf := &historyFilter{where: append([]string(nil), f.where...), args: append([]any(nil), f.args...)}
		backward := q.Last || q.PageBefore != ""
		if q.PageAfter != "" {
			p, err := itemPos(ctx, tx, q.Owner, q.PageAfter)
			if err != nil {
				return err
			}
			pf.add("(stamp, seq) > (?, ?)", p.stamp, p.seq)
		}
		if q.PageBefore != "" {
			p, err := itemPos(ctx, tx, q.Owner, q.PageBefore)
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
		rows, err := tx.QueryContext(ctx, `SELECT id, stamp, seq, with_full, stanza FROM history WHERE `+pf.sql()+
			` ORDER BY `+order+` LIMIT ? OFFSET ?`, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		var first position
		for rows.Next() {
			it := storage.HistoryItem{Owner: q.Owner}
			var stamp, seq int64
			if err := rows.Scan(&it.ID, &stamp, &seq, &it.With, &it.Stanza); err != nil {
				return err
			}
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
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM history WHERE `+ff.sql(), ff.args...).Scan(&page.FirstIndex); err != nil {
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
			var stamp int64
			err := tx.QueryRowContext(ctx, `SELECT id, stamp, with_full FROM history WHERE owner = ? ORDER BY `+q.order+` LIMIT 1`, owner).
				Scan(&q.it.ID, &stamp, &q.it.With)
			if errors.Is(err, sql.ErrNoRows) {
				return nil
			}
			if err != nil {
				return err
			}
			q.it.Owner, q.it.Time = owner, time.Unix(0, stamp).UTC()
			ok = true
		}
		return nil
	})
	return first, last, ok, err
}

// DeleteHistory removes an owner's history and preferences.
func (s *Store) DeleteHistory(ctx context.Context, owner string) error {
	return s.write(ctx, "delete history", func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM history WHERE owner = ?`, owner); err != nil {
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
		rows, err := tx.QueryContext(ctx, `SELECT DISTINCT owner, with_bare FROM history`)
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
				res, err := tx.ExecContext(ctx, `DELETE FROM history WHERE owner = ? AND with_bare = ? AND stamp < ?`, c.owner, c.with, c.before)
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
