package archive

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/palisade-im/palisade/server/config"
	"github.com/palisade-im/palisade/server/stanza"
	"github.com/palisade-im/palisade/storage"
	"github.com/palisade-im/palisade/storage/sqlite/journaltest"
	"go.uber.org/zap"
	"mellium.im/xmpp/jid"
)

func TestKeepFor(t *testing.T) {
	ps := []config.Retention{
		{Name: "all", Scope: config.ScopeAll, KeepDays: 30},
		{Name: "dom", Scope: config.ScopeDomain, Domain: "example.com", KeepDays: 90},
		{Name: "traders", Scope: config.ScopeJIDs, JIDs: []string{"t@other.net"}, KeepDays: 2555},
		{Name: "desk", Scope: config.ScopeGroups, Groups: []string{"fx", "rates"}, KeepDays: 3650},
	}
	members := map[string][]string{"d@example.com": {"staff", "rates"}}
	for _, c := range []struct {
		parties []string
		days    int
		name    string
	}{
		{[]string{"a@nowhere.org", "b@nowhere.org"}, 30, "all"},
		{[]string{"a@example.com", "b@nowhere.org"}, 90, "dom"},
		{[]string{"a@example.com", "t@other.net"}, 2555, "traders"},
		{[]string{"t@other.net", "d@example.com"}, 3650, "desk"},
	} {
		if d, n := keepFor(ps, members, c.parties...); d != c.days || n != c.name {
			t.Errorf("keepFor(%v) = %d %q, want %d %q", c.parties, d, n, c.days, c.name)
		}
	}
	if d, _ := keepFor(ps[1:], members, "a@nowhere.org"); d != 0 {
		t.Errorf("no policy applies: keep %d, want 0 (forever)", d)
	}
}

func TestLockedPolicyCannotBeWeakened(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	locked := config.Retention{Name: "finra", Scope: config.ScopeJIDs, JIDs: []string{"a@example.com", "b@example.com"}, KeepDays: 2190, Locked: true}
	free := config.Retention{Name: "short", Scope: config.ScopeAll, KeepDays: 7}
	if err := EnforceLocks(ctx, f.j, f.j, []config.Retention{locked, free}, "test", zap.NewNop()); err != nil {
		t.Fatal(err)
	}
	rec, err := f.j.LockedPolicies(ctx)
	if err != nil || len(rec) != 1 || rec[0].Name != "finra" || rec[0].KeepDays != 2190 || len(rec[0].Targets) != 2 {
		t.Fatalf("recorded %+v, %v", rec, err)
	}
	n := len(records(t, f.j))
	if n != 1 || records(t, f.j)[0].Kind != storage.KindPolicy {
		t.Fatalf("journal holds %d records, want one policy record", n)
	}

	weaken := func(p config.Retention, want string, rest ...config.Retention) {
		t.Helper()
		ps := append([]config.Retention{p}, rest...)
		if p.Name == "" {
			ps = rest
		}
		err := EnforceLocks(ctx, f.j, f.j, ps, "test", zap.NewNop())
		var le *LockError
		if !errors.As(err, &le) || le.Policy != "finra" || !strings.Contains(err.Error(), want) {
			t.Errorf("weakened to %+v: err %v, want a LockError on finra saying %q", p, err, want)
		}
	}
	shorter := locked
	shorter.KeepDays = 365
	weaken(shorter, "keep_days shortened from 2190 to 365")
	unlocked := locked
	unlocked.Locked = false
	weaken(unlocked, "no longer locked")
	narrower := locked
	narrower.JIDs = []string{"a@example.com"}
	weaken(narrower, `narrowed: "b@example.com"`)
	rescoped := locked
	rescoped.Scope, rescoped.JIDs, rescoped.Domain = config.ScopeDomain, nil, "example.com"
	weaken(rescoped, `scope changed from "jids" to "domain"`)
	weaken(config.Retention{}, "removed from the configuration", free)

	// Refusals change nothing.
	if got := len(records(t, f.j)); got != n {
		t.Errorf("refused configurations wrote %d records", got-n)
	}
	// Lengthening and widening are allowed and recorded; the longer keep
	// is then the floor.
	longer := locked
	longer.KeepDays = 2555
	longer.JIDs = append(longer.JIDs, "c@example.com")
	if err := EnforceLocks(ctx, f.j, f.j, []config.Retention{longer}, "test", zap.NewNop()); err != nil {
		t.Fatal(err)
	}
	if rec, _ := f.j.LockedPolicies(ctx); rec[0].KeepDays != 2555 || len(rec[0].Targets) != 3 {
		t.Errorf("after lengthening: %+v", rec)
	}
	weaken(locked, "keep_days shortened from 2555 to 2190")
	if got := len(records(t, f.j)); got != n+1 {
		t.Errorf("lengthening wrote %d records, want 1", got-n)
	}
}

func TestPurgeHonoursHoldVerifiesAndExports(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	now := time.Now()
	f.m.now = func() time.Time { return now.Add(-100 * 24 * time.Hour) }
	for _, m := range []*stanza.Stanza{
		msg(t, "alice@example.com/a", "bob@example.com", "chat", "old-alice"),   // 0: held (alice)
		msg(t, "carol@example.com/c", "dave@example.com", "chat", "old-carol"),  // 1: purged
		msg(t, "erin@example.com/e", "alice@example.com", "chat", "old-to-ali"), // 2: held (alice)
		msg(t, "frank@other.net/f", "gina@other.net", "chat", "old-nopolicy"),   // 3: no policy applies
	} {
		if err := f.m.Append(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	f.m.now = time.Now
	if err := f.m.Append(ctx, msg(t, "carol@example.com/c", "dave@example.com", "chat", "recent")); err != nil { // 4: recent
		t.Fatal(err)
	}
	if err := f.m.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	audit := zap.NewNop()
	hold := storage.Hold{Name: "matter-1", Custodians: []string{"alice@example.com"}, Reason: "SEC inquiry", PlacedBy: "legal"}
	if err := PlaceHold(ctx, f.j, f.j, hold, audit); err != nil { // 5: hold record
		t.Fatal(err)
	}
	if err := PlaceHold(ctx, f.j, f.j, hold, audit); !errors.Is(err, storage.ErrHoldExists) {
		t.Fatalf("second hold of the same name: %v", err)
	}
	// A hold whose dates do not cover the old records holds nothing.
	ranged := storage.Hold{Name: "matter-2", Custodians: []string{"carol@example.com"}, Reason: "later matter", PlacedBy: "legal",
		From: now.Add(-10 * 24 * time.Hour)}
	if err := PlaceHold(ctx, f.j, f.j, ranged, audit); err != nil { // 6
		t.Fatal(err)
	}
	ps := []config.Retention{{Name: "dom", Scope: config.ScopeDomain, Domain: "example.com", KeepDays: 30}}

	dry, err := Purge(ctx, f.j, f.j, ps, nil, time.Now(), true, "test", audit)
	if err != nil || len(dry.Purged) != 1 || dry.Purged[0] != 1 || dry.Held != 2 {
		t.Fatalf("dry run: %+v, %v", dry, err)
	}
	if recs := records(t, f.j); len(recs) != 7 || recs[1].Purged {
		t.Fatalf("dry run changed the journal: %d records", len(recs))
	}
	// A hold only in the configuration counts too.
	cfgHold := []config.Hold{{Name: "cfg", Custodians: []string{"carol@example.com"}, Reason: "file"}}
	if res, err := Purge(ctx, f.j, f.j, ps, cfgHold, time.Now(), true, "test", audit); err != nil || len(res.Purged) != 0 || res.Held != 3 {
		t.Fatalf("with a configured hold: %+v, %v", res, err)
	}

	res, err := Purge(ctx, f.j, f.j, ps, nil, time.Now(), false, "test", audit)
	if err != nil || len(res.Purged) != 1 || res.Purged[0] != 1 || res.Disposition != 7 || res.ByPolicy["dom"] != 1 {
		t.Fatalf("purge: %+v, %v", res, err)
	}
	recs := records(t, f.j)
	if !recs[1].Purged || len(recs[1].Data) != 0 || recs[1].PurgedBy != 7 || recs[1].From != "carol@example.com/c" {
		t.Errorf("purged record: %+v", recs[1])
	}
	for _, i := range []int{0, 2, 3, 4} {
		if recs[i].Purged || len(recs[i].Data) == 0 {
			t.Errorf("record %d was purged", i)
		}
	}
	d, err := DecodeRecord(recs[7].Data)
	if err != nil || d.Kind != "disposition" || !strings.Contains(d.Content, `"ranges":[[1,1]]`) || !strings.Contains(d.Content, `"by_policy":{"dom":1}`) {
		t.Errorf("disposition record: %+v, %v", d, err)
	}

	rep, err := Verify(ctx, f.j, f.verifier)
	if err != nil || len(rep.Problems) != 0 || rep.Purged != 1 {
		t.Fatalf("verify after purge: %+v, %v", rep, err)
	}
	if err := f.m.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}

	// Released, the hold no longer keeps alice's old records.
	if err := ReleaseHold(ctx, f.j, f.j, "matter-1", "legal", "inquiry closed", audit); err != nil { // 8
		t.Fatal(err)
	}
	if err := ReleaseHold(ctx, f.j, f.j, "matter-1", "legal", "again", audit); !errors.Is(err, storage.ErrNoHold) {
		t.Fatalf("second release: %v", err)
	}
	res, err = Purge(ctx, f.j, f.j, ps, nil, time.Now(), false, "test", audit)
	if err != nil || len(res.Purged) != 2 || res.Purged[0] != 0 || res.Purged[1] != 2 || res.AlreadyPurged != 1 {
		t.Fatalf("purge after release: %+v, %v", res, err)
	}
	if err := f.m.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	rep, err = Verify(ctx, f.j, f.verifier)
	if err != nil || len(rep.Problems) != 0 || rep.Purged != 3 || rep.Checkpoints != 3 {
		t.Fatalf("verify after the second purge: %+v, %v", rep, err)
	}
	kinds := map[storage.RecordKind]int{}
	for _, r := range records(t, f.j) {
		kinds[r.Kind]++
	}
	if kinds[storage.KindHold] != 3 || kinds[storage.KindDisposition] != 2 {
		t.Errorf("record kinds: %v", kinds)
	}

	// Export marks the purged records, and verifies.
	pgp, err := LoadOrCreateOpenPGP(filepath.Join(t.TempDir(), "pgp.key"), "x")
	if err != nil {
		t.Fatal(err)
	}
	vkey, _ := ReadVerifierKey(f.keyFile)
	out := filepath.Join(t.TempDir(), "bundle")
	sum, err := Export(ctx, f.j, out, ExportOptions{}, vkey, pgp)
	if err != nil || sum.Purged != 3 {
		t.Fatalf("export: %+v, %v", sum, err)
	}
	lines := strings.Split(strings.TrimSpace(readFile(t, out, FileRecords)), "\n")
	if !strings.Contains(lines[1], `"purged":true`) || !strings.Contains(lines[1], `"purged_by":7`) || strings.Contains(lines[3], `"purged"`) {
		t.Errorf("records.jsonl: %s / %s", lines[1], lines[3])
	}
	report, err := VerifyExport(out, VerifyExportOptions{VerifierKey: vkey})
	if err != nil || !strings.Contains(report, "3 of them purged") {
		t.Fatalf("verify-export: %q, %v", report, err)
	}

	// A purged record cannot be passed off: clearing a record's content
	// without a disposition record listing it is found.
	if err := journaltest.ForgePurge(f.path, 4, 7); err != nil {
		t.Fatal(err)
	}
	rep, err = Verify(ctx, f.j, f.verifier)
	if bad, ok := rep.FirstBad(); err != nil || !ok || bad != 4 {
		t.Fatalf("verify with a record cleared outside a purge: %+v, %v", rep.Problems, err)
	}
}

// TestPurgeJob: the module's purge job runs at start and every
// purge interval, honouring holds.
func TestPurgeJob(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	old := time.Now().Add(-10 * 24 * time.Hour)
	f.m.now = func() time.Time { return old }
	for _, m := range []*stanza.Stanza{
		msg(t, "alice@example.com/a", "bob@example.com", "chat", "a"),
		msg(t, "carol@example.com/c", "bob@example.com", "chat", "c"),
	} {
		if err := f.m.Append(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	f.m.now = time.Now
	f.m.retention = []config.Retention{{Name: "week", Scope: config.ScopeAll, KeepDays: 7}}
	f.m.holds, f.m.purgeEvery = f.j, time.Hour
	f.m.cfgHolds = []config.Hold{{Name: "c", Custodians: []string{"carol@example.com"}, Reason: "r"}}
	if err := f.m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		// The disposition record comes first, the purge after it.
		recs := records(t, f.j)
		if len(recs) > 2 && recs[0].Purged {
			if recs[1].Purged || recs[2].Kind != storage.KindDisposition || len(recs) != 3 {
				t.Fatalf("after the job: %+v", recs)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the purge job did not run: %+v", recs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := f.m.Stop(ctx); err != nil {
		t.Fatal(err)
	}
}

// A policy of scope "groups" covers every account the journal saw in the
// group: one who left it keeps the group's retention for what was
// recorded, and the CLI's purge (no directory at hand) agrees.
func TestGroupRetentionCoversFormerMembers(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	var mu sync.Mutex
	groups := map[string][]string{"alice@example.com": {"traders"}}
	f.m.holds = f.j
	f.m.groupsOf = func(b jid.JID) []string {
		mu.Lock()
		defer mu.Unlock()
		return groups[b.String()]
	}
	old := time.Now().Add(-30 * 24 * time.Hour)
	f.m.now = func() time.Time { return old }
	for _, m := range []*stanza.Stanza{
		msg(t, "alice@example.com/a", "bob@other.net", "chat", "trade"), // 0: alice is a trader
		msg(t, "carol@example.com/c", "bob@other.net", "chat", "lunch"), // 1: carol is not
	} {
		if err := f.m.Append(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	f.m.memWG.Wait() // the membership is written off the message path
	mu.Lock()
	delete(groups, "alice@example.com") // alice leaves the desk
	mu.Unlock()
	ps := []config.Retention{
		{Name: "week", Scope: config.ScopeAll, KeepDays: 7},
		{Name: "desk", Scope: config.ScopeGroups, Groups: []string{"traders"}, KeepDays: 2555},
	}
	res, err := Purge(ctx, f.j, f.j, ps, nil, time.Now(), false, "test", zap.NewNop())
	if err != nil || len(res.Purged) != 1 || res.Purged[0] != 1 || res.ByPolicy["week"] != 1 {
		t.Fatalf("purge: %+v, %v; want only carol's record 1 purged", res, err)
	}
	mem, err := f.j.Memberships(ctx)
	if err != nil || !slices.Equal(mem["alice@example.com"], []string{"traders"}) || len(mem) != 1 {
		t.Fatalf("memberships %v, %v", mem, err)
	}

	// Before each purge the job records the groups' members as the
	// directory lists them, offline ones too.
	f.m.retention = ps
	f.m.groupMembers = func(_ context.Context, g string) ([]jid.JID, error) {
		if g != "traders" {
			return nil, errors.New("unknown group")
		}
		return []jid.JID{jid.MustParse("dave@example.com")}, nil
	}
	f.m.recordGroupMembers(ctx)
	if mem, err = f.j.Memberships(ctx); err != nil || !slices.Equal(mem["dave@example.com"], []string{"traders"}) || len(mem) != 2 {
		t.Fatalf("memberships after the listing %v, %v", mem, err)
	}
}
