package mam_test

import (
	"context"
	"testing"
	"time"

	"github.com/palisade-im/palisade/modules/mam"
	"github.com/palisade-im/palisade/server/config"
	"github.com/palisade-im/palisade/server/module/moduletest"
	"github.com/palisade-im/palisade/storage"
)

// TestHistoryFollowsRetention: the user's history keeps each conversation
// for the longest [[archive.retention]] keep that applies to either party,
// and nothing when no policy applies is removed.
func TestHistoryFollowsRetention(t *testing.T) {
	m, _, h := newModule(t, mam.Config{DefaultPref: "always", MaxPage: 250})
	ctx := context.Background()
	for _, to := range []string{"bob@example.com/b", "carol@example.com/c"} {
		admit(m, moduletest.Parse(t, "<message from='alice@example.com/a' to='"+to+"' type='chat'><body>hi</body></message>"))
	}
	count := func(owner, with string) int {
		t.Helper()
		p, err := h.Store.QueryHistory(ctx, storage.HistoryQuery{Owner: owner, With: with, Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		return len(p.Items)
	}
	// The writer stores in batches: wait for all four items.
	for deadline := time.Now().Add(5 * time.Second); count("alice@example.com", "") != 2 || count("carol@example.com", "") != 1 || count("bob@example.com", "") != 1; {
		if time.Now().After(deadline) {
			t.Fatal("messages not archived on both sides")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Without policies nothing is purged, however old.
	if n, err := m.Purge(ctx, time.Now().Add(10*365*24*time.Hour)); err != nil || n != 0 {
		t.Fatalf("purge without policies: %d %v", n, err)
	}
	m.SetRetention(mam.Retention{Policies: []config.Retention{
		{Name: "all", Scope: config.ScopeAll, KeepDays: 7},
		{Name: "carol", Scope: config.ScopeJIDs, JIDs: []string{"carol@example.com"}, KeepDays: 30},
	}})
	if n, err := m.Purge(ctx, time.Now().Add(6*24*time.Hour)); err != nil || n != 0 {
		t.Fatalf("purge within retention: %d %v", n, err)
	}
	if n, err := m.Purge(ctx, time.Now().Add(8*24*time.Hour)); err != nil || n != 2 {
		t.Fatalf("purge after 8 days: %d %v, want alice's and bob's items of their conversation", n, err)
	}
	if count("alice@example.com", "bob@example.com") != 0 || count("bob@example.com", "alice@example.com") != 0 {
		t.Error("the alice-bob conversation outlived its 7 days")
	}
	if count("alice@example.com", "carol@example.com") != 1 || count("carol@example.com", "alice@example.com") != 1 {
		t.Error("the conversation with carol (30 days) was purged after 8")
	}
}
