package archive

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/palisade-im/palisade/server/config"
	"github.com/palisade-im/palisade/storage"
	"go.uber.org/zap"
)

func TestKeepFor(t *testing.T) {
	ps := []config.Retention{
		{Name: "all", Scope: config.ScopeAll, KeepDays: 30},
		{Name: "dom", Scope: config.ScopeDomain, Domain: "example.com", KeepDays: 90},
		{Name: "traders", Scope: config.ScopeJIDs, JIDs: []string{"t@other.net"}, KeepDays: 2555},
	}
	for _, c := range []struct {
		parties []string
		days    int
		name    string
	}{
		{[]string{"a@nowhere.org", "b@nowhere.org"}, 30, "all"},
		{[]string{"a@example.com", "b@nowhere.org"}, 90, "dom"},
		{[]string{"a@example.com", "t@other.net"}, 2555, "traders"},
	} {
		if d, n := keepFor(ps, c.parties...); d != c.days || n != c.name {
			t.Errorf("keepFor(%v) = %d %q, want %d %q", c.parties, d, n, c.days, c.name)
		}
	}
	if d, _ := keepFor(ps[1:], "a@nowhere.org"); d != 0 {
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
