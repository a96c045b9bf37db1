package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/palisade-im/palisade/storage"
)

// addHistory stores n items for owner, one second apart from base, and
// returns their IDs; item i is with bob when i is even, carol/phone else,
// and its body is i.
func addHistory(t *testing.T, s *Store, owner string, n int, base time.Time) []string {
	t.Helper()
	var items []storage.HistoryItem
	var out []string
	for i := 0; i < n; i++ {
		with := "bob@example.com/b"
		if i%2 == 1 {
			with = "carol@example.com/phone"
		}
		id := s.NewHistoryID()
		out = append(out, id)
		items = append(items, storage.HistoryItem{Owner: owner, ID: id,
			Time: base.Add(time.Duration(i) * time.Second), With: with, Stanza: []byte(fmt.Sprintf("<message><body>%d</body></message>", i))})
	}
	if err := s.AppendHistory(context.Background(), items); err != nil {
		t.Fatal(err)
	}
	return out
}

// bodies lists the page's items by their bodies.
func bodies(p storage.HistoryPage) string {
	var out []string
	for _, it := range p.Items {
		b := string(it.Stanza)
		b = strings.TrimSuffix(strings.TrimPrefix(b, "<message><body>"), "</body></message>")
		out = append(out, b)
	}
	return strings.Join(out, ",")
}

func TestHistoryQuery(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	al := addHistory(t, s, "alice@example.com", 10, base)
	dv := addHistory(t, s, "dave@example.com", 3, base)
	const a = "alice@example.com"
	for _, c := range []struct {
		name     string
		q        storage.HistoryQuery
		want     string
		count    int
		index    int
		complete bool
	}{
		{"all", storage.HistoryQuery{Limit: 100}, "0,1,2,3,4,5,6,7,8,9", 10, 0, true},
		{"first page", storage.HistoryQuery{Limit: 3}, "0,1,2", 10, 0, false},
		{"after", storage.HistoryQuery{Limit: 3, PageAfter: al[2]}, "3,4,5", 10, 3, false},
		{"last page", storage.HistoryQuery{Limit: 3, Last: true}, "7,8,9", 10, 7, false},
		{"before", storage.HistoryQuery{Limit: 3, PageBefore: al[3]}, "0,1,2", 10, 0, true},
		{"offset", storage.HistoryQuery{Limit: 2, Offset: 8}, "8,9", 10, 8, true},
		{"with bare", storage.HistoryQuery{Limit: 100, With: "bob@example.com"}, "0,2,4,6,8", 5, 0, true},
		{"with full", storage.HistoryQuery{Limit: 100, With: "carol@example.com/phone"}, "1,3,5,7,9", 5, 0, true},
		{"with other resource", storage.HistoryQuery{Limit: 100, With: "carol@example.com/desk"}, "", 0, 0, true},
		{"time", storage.HistoryQuery{Limit: 100, Start: base.Add(2 * time.Second), End: base.Add(4 * time.Second)}, "2,3,4", 3, 0, true},
		{"ids", storage.HistoryQuery{Limit: 100, IDs: []string{al[7], al[1]}}, "1,7", 2, 0, true},
		{"between", storage.HistoryQuery{Limit: 100, AfterID: al[1], BeforeID: al[5]}, "2,3,4", 3, 0, true},
		{"between, paged from the end", storage.HistoryQuery{Limit: 2, AfterID: al[1], BeforeID: al[5], Last: true}, "3,4", 3, 1, false},
		{"count only", storage.HistoryQuery{Limit: 0}, "", 10, 0, false},
	} {
		c.q.Owner = a
		p, err := s.QueryHistory(ctx, c.q)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if got := bodies(p); got != c.want || p.Count != c.count || (len(p.Items) > 0 && p.FirstIndex != c.index) || p.Complete != c.complete {
			t.Errorf("%s: items %q count %d index %d complete %v; want %q %d %d %v", c.name, got, p.Count, p.FirstIndex, p.Complete, c.want, c.count, c.index, c.complete)
		}
	}
	for _, q := range []storage.HistoryQuery{
		{Owner: a, Limit: 5, PageAfter: dv[1]}, // another owner's id
		{Owner: a, Limit: 5, PageBefore: "nope"},
		{Owner: a, Limit: 5, AfterID: "nope"},
		{Owner: a, Limit: 5, IDs: []string{al[1], "nope"}},
	} {
		if _, err := s.QueryHistory(ctx, q); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("%+v: %v, want ErrNotFound", q, err)
		}
	}
	first, last, ok, err := s.HistoryBounds(ctx, a)
	if err != nil || !ok || first.ID != al[0] || last.ID != al[9] || !last.Time.Equal(base.Add(9*time.Second)) {
		t.Fatalf("bounds %+v %+v %v %v", first, last, ok, err)
	}
	// Pages name their items by the IDs they were stored with.
	p, err := s.QueryHistory(ctx, storage.HistoryQuery{Owner: a, Limit: 2, PageAfter: al[3]})
	if err != nil || len(p.Items) != 2 || p.Items[0].ID != al[4] || p.Items[1].ID != al[5] {
		t.Fatalf("page after %s: %+v %v", al[3], p.Items, err)
	}
	// An ID this store did not issue is refused.
	if err := s.AppendHistory(ctx, []storage.HistoryItem{{Owner: a, ID: "abcdefghijklmnopqrstuvwxyz", Time: base, With: "x@y", Stanza: []byte("<message/>")}}); err == nil {
		t.Fatal("an ID the store never issued was stored")
	}
	// An ID is stored once.
	if err := s.AppendHistory(ctx, []storage.HistoryItem{{Owner: a, ID: al[3], Time: base, With: "x@y", Stanza: []byte("<message/>")}}); err == nil {
		t.Fatal("a duplicate id was stored")
	}
}

func TestHistoryPurgeAndDelete(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	addHistory(t, s, "alice@example.com", 10, base)
	addHistory(t, s, "dave@example.com", 10, base)
	// Retention per conversation: alice keeps bob for 7 s and carol for
	// ever, dave keeps everything 5 s; it is 10 s after the first item.
	keep := func(owner, with string) time.Duration {
		switch {
		case owner == "alice@example.com" && with == "bob@example.com":
			return 7 * time.Second
		case owner == "alice@example.com":
			return 0
		}
		return 5 * time.Second
	}
	if n, err := s.PurgeHistory(ctx, base.Add(10*time.Second), keep); err != nil || n != 2+5 {
		t.Fatalf("purge: %d %v, want 7 removed", n, err)
	}
	p, _ := s.QueryHistory(ctx, storage.HistoryQuery{Owner: "alice@example.com", Limit: 100})
	if bodies(p) != "1,3,4,5,6,7,8,9" {
		t.Fatalf("alice after purge: %s", bodies(p))
	}
	p, _ = s.QueryHistory(ctx, storage.HistoryQuery{Owner: "dave@example.com", Limit: 100})
	if bodies(p) != "5,6,7,8,9" {
		t.Fatalf("dave after purge: %s", bodies(p))
	}
	if err := s.SetHistoryPrefs(ctx, "alice@example.com", storage.HistoryPrefs{Default: "roster", Always: []string{"bob@example.com"}}); err != nil {
		t.Fatal(err)
	}
	pr, err := s.HistoryPrefs(ctx, "alice@example.com")
	if err != nil || pr.Default != "roster" || len(pr.Always) != 1 || len(pr.Never) != 0 {
		t.Fatalf("prefs %+v %v", pr, err)
	}
	if err := s.SetHistoryPrefs(ctx, "alice@example.com", storage.HistoryPrefs{Default: "sometimes"}); err == nil {
		t.Fatal("a bad default was stored")
	}
	if err := s.DeleteHistory(ctx, "alice@example.com"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.HistoryPrefs(ctx, "alice@example.com"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("prefs after delete: %v", err)
	}
	if _, _, ok, _ := s.HistoryBounds(ctx, "alice@example.com"); ok {
		t.Fatal("history left after delete")
	}
	if _, _, ok, _ := s.HistoryBounds(ctx, "dave@example.com"); !ok {
		t.Fatal("another owner's history went too")
	}
}

// DeleteUser removes the account's history and preferences.
func TestDeleteUserRemovesHistory(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	fill(t, s, "alice", "example.com")
	addHistory(t, s, "alice@example.com", 3, time.Now())
	if err := s.SetHistoryPrefs(ctx, "alice@example.com", storage.HistoryPrefs{Default: "never"}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteUser(ctx, "alice", "example.com"); err != nil {
		t.Fatal(err)
	}
	if _, _, ok, _ := s.HistoryBounds(ctx, "alice@example.com"); ok {
		t.Fatal("history left after DeleteUser")
	}
	if _, err := s.HistoryPrefs(ctx, "alice@example.com"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("prefs after DeleteUser: %v", err)
	}
}

// IDs are unique, are not issued again after a restart (not even for
// numbers whose items were deleted, nor when the clock went back), and
// one changed character makes an ID unknown.
func TestHistoryIDs(t *testing.T) {
	ctx := context.Background()
	s, path := openTest(t)
	seen := map[string]bool{}
	for range 1000 {
		id := s.NewHistoryID()
		if seen[id] || len(id) != 26 {
			t.Fatalf("id %q: repeated or malformed", id)
		}
		seen[id] = true
	}
	stored := addHistory(t, s, "alice@example.com", 3, time.Now())
	newest, _ := s.hist.decode(stored[2])
	if err := s.DeleteHistory(ctx, "alice@example.com"); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s2, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	s2.hist.now = func() time.Time { return time.Unix(0, 0) } // the clock went back
	if seq, _ := s2.hist.decode(s2.NewHistoryID()); seq <= newest {
		t.Fatalf("after reopen number %d, not above the newest stored %d", seq, newest)
	}
	id := s2.NewHistoryID()
	if _, ok := s2.hist.decode(id); !ok {
		t.Fatalf("own id %q does not decode", id)
	}
	for i := range id {
		c := byte('a')
		if id[i] == 'a' {
			c = 'b'
		}
		bad := id[:i] + string(c) + id[i+1:]
		if _, ok := s2.hist.decode(bad); ok {
			t.Fatalf("changed id %q decodes", bad)
		}
	}
}

// A database from before version 5 keeps its items and their ids.
func TestHistoryMigrationKeepsIDs(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "palisade.db")
	db, err := sql.Open("sqlite3", "file:"+path+"?_txlock=immediate")
	if err != nil {
		t.Fatal(err)
	}
	if err := migrateDB(ctx, db, migrations[:4]); err != nil {
		t.Fatal(err)
	}
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano()
	for i, id := range []string{"old-a", "old-b", "old-c"} {
		if _, err := db.ExecContext(ctx, `INSERT INTO history (owner, id, stamp, with_bare, with_full, stanza) VALUES (?, ?, ?, ?, ?, ?)`,
			"alice@example.com", id, base+int64(i)*1e9, "bob@example.com", "bob@example.com/b", []byte(fmt.Sprintf("<message><body>%d</body></message>", i))); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	addHistory(t, s, "alice@example.com", 2, time.Unix(0, base).Add(time.Hour))
	p, err := s.QueryHistory(ctx, storage.HistoryQuery{Owner: "alice@example.com", Limit: 10, PageAfter: "old-a"})
	if err != nil {
		t.Fatal(err)
	}
	if got := bodies(p); got != "1,2,0,1" || p.Items[0].ID != "old-b" || p.Items[1].ID != "old-c" || p.Count != 5 || p.FirstIndex != 1 {
		t.Fatalf("after old-a: %s, ids %s %s, count %d, index %d", got, p.Items[0].ID, p.Items[1].ID, p.Count, p.FirstIndex)
	}
	p, err = s.QueryHistory(ctx, storage.HistoryQuery{Owner: "alice@example.com", Limit: 10, IDs: []string{"old-c", p.Items[3].ID}})
	if err != nil || bodies(p) != "2,1" {
		t.Fatalf("ids: %s %v", bodies(p), err)
	}
	if _, err := s.QueryHistory(ctx, storage.HistoryQuery{Owner: "dave@example.com", Limit: 10, PageAfter: "old-a"}); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("another owner's old id: %v", err)
	}
}
