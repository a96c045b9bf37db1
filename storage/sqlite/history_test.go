package sqlite

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/palisade-im/palisade/storage"
)

// addHistory stores n items for owner, one second apart from base, with
// ids owner-0..n-1; item i is with bob when i is even, carol/phone else.
func addHistory(t *testing.T, s *Store, owner string, n int, base time.Time) {
	t.Helper()
	var items []storage.HistoryItem
	for i := 0; i < n; i++ {
		with := "bob@example.com/b"
		if i%2 == 1 {
			with = "carol@example.com/phone"
		}
		items = append(items, storage.HistoryItem{Owner: owner, ID: fmt.Sprintf("%s-%d", owner, i),
			Time: base.Add(time.Duration(i) * time.Second), With: with, Stanza: []byte(fmt.Sprintf("<message><body>%d</body></message>", i))})
	}
	if err := s.AppendHistory(context.Background(), items); err != nil {
		t.Fatal(err)
	}
}

func ids(p storage.HistoryPage) string {
	var out []string
	for _, it := range p.Items {
		out = append(out, it.ID[strings.LastIndexByte(it.ID, '-')+1:])
	}
	return strings.Join(out, ",")
}

func TestHistoryQuery(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	addHistory(t, s, "alice@example.com", 10, base)
	addHistory(t, s, "dave@example.com", 3, base)
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
		{"after", storage.HistoryQuery{Limit: 3, PageAfter: a + "-2"}, "3,4,5", 10, 3, false},
		{"last page", storage.HistoryQuery{Limit: 3, Last: true}, "7,8,9", 10, 7, false},
		{"before", storage.HistoryQuery{Limit: 3, PageBefore: a + "-3"}, "0,1,2", 10, 0, true},
		{"offset", storage.HistoryQuery{Limit: 2, Offset: 8}, "8,9", 10, 8, true},
		{"with bare", storage.HistoryQuery{Limit: 100, With: "bob@example.com"}, "0,2,4,6,8", 5, 0, true},
		{"with full", storage.HistoryQuery{Limit: 100, With: "carol@example.com/phone"}, "1,3,5,7,9", 5, 0, true},
		{"with other resource", storage.HistoryQuery{Limit: 100, With: "carol@example.com/desk"}, "", 0, 0, true},
		{"time", storage.HistoryQuery{Limit: 100, Start: base.Add(2 * time.Second), End: base.Add(4 * time.Second)}, "2,3,4", 3, 0, true},
		{"ids", storage.HistoryQuery{Limit: 100, IDs: []string{a + "-7", a + "-1"}}, "1,7", 2, 0, true},
		{"between", storage.HistoryQuery{Limit: 100, AfterID: a + "-1", BeforeID: a + "-5"}, "2,3,4", 3, 0, true},
		{"between, paged from the end", storage.HistoryQuery{Limit: 2, AfterID: a + "-1", BeforeID: a + "-5", Last: true}, "3,4", 3, 1, false},
		{"count only", storage.HistoryQuery{Limit: 0}, "", 10, 0, false},
	} {
		c.q.Owner = a
		p, err := s.QueryHistory(ctx, c.q)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if got := ids(p); got != c.want || p.Count != c.count || (len(p.Items) > 0 && p.FirstIndex != c.index) || p.Complete != c.complete {
			t.Errorf("%s: items %q count %d index %d complete %v; want %q %d %d %v", c.name, got, p.Count, p.FirstIndex, p.Complete, c.want, c.count, c.index, c.complete)
		}
	}
	for _, q := range []storage.HistoryQuery{
		{Owner: a, Limit: 5, PageAfter: "dave@example.com-1"}, // another owner's id
		{Owner: a, Limit: 5, PageBefore: "nope"},
		{Owner: a, Limit: 5, AfterID: "nope"},
		{Owner: a, Limit: 5, IDs: []string{a + "-1", "nope"}},
	} {
		if _, err := s.QueryHistory(ctx, q); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("%+v: %v, want ErrNotFound", q, err)
		}
	}
	first, last, ok, err := s.HistoryBounds(ctx, a)
	if err != nil || !ok || first.ID != a+"-0" || last.ID != a+"-9" || !last.Time.Equal(base.Add(9*time.Second)) {
		t.Fatalf("bounds %+v %+v %v %v", first, last, ok, err)
	}
	// An id is unique in its owner's history.
	if err := s.AppendHistory(ctx, []storage.HistoryItem{{Owner: a, ID: a + "-3", Time: base, With: "x@y", Stanza: []byte("<message/>")}}); err == nil {
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
	if ids(p) != "1,3,4,5,6,7,8,9" {
		t.Fatalf("alice after purge: %s", ids(p))
	}
	p, _ = s.QueryHistory(ctx, storage.HistoryQuery{Owner: "dave@example.com", Limit: 100})
	if ids(p) != "5,6,7,8,9" {
		t.Fatalf("dave after purge: %s", ids(p))
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
