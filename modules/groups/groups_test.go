package groups

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/palisade-im/palisade/server/config"
	"github.com/palisade-im/palisade/server/module"
	"github.com/palisade-im/palisade/server/module/moduletest"
	"github.com/palisade-im/palisade/storage"
	"github.com/palisade-im/palisade/storage/sqlite"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"
	"mellium.im/xmpp/jid"
)

// world is a store file opened twice, as by the server and by the CLI.
type world struct {
	server, cli *sqlite.Store
	router      *moduletest.Router
}

func newWorld(t *testing.T) *world {
	t.Helper()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "palisade.db")
	var stores [2]*sqlite.Store
	for i := range stores {
		st, err := sqlite.Open(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		stores[i] = st
	}
	for _, u := range []string{"alice", "bob"} {
		if err := stores[1].CreateUser(ctx, storage.User{Localpart: u, Domain: moduletest.Domain}); err != nil {
			t.Fatal(err)
		}
	}
	return &world{server: stores[0], cli: stores[1], router: moduletest.NewRouter(stores[0])}
}

func (w *world) host(t *testing.T, groups map[string]string) *module.Host {
	cfg := config.Default()
	cfg.Server.Domains = []string{moduletest.Domain}
	cfg.Groups = groups
	return module.NewHost(w.router, w.server, zaptest.NewLogger(t), zaptest.NewLogger(t), cfg, nil)
}

var (
	alice = jid.MustParse("alice@example.com")
	bob   = jid.MustParse("bob@example.com")
)

// eventually polls cond until it holds or ten seconds pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestGroupsFollowTheStore: memberships written by another store (the
// CLI) are seen by the running module without a restart; only declared
// groups count; a changed account's live sessions are checked again and
// closed when the rules no longer admit them.
func TestGroupsFollowTheStore(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	for _, m := range [][2]string{{"ops", "alice@example.com"}, {"retired", "alice@example.com"}} {
		if err := w.cli.AddMember(ctx, m[0], m[1]); err != nil {
			t.Fatal(err)
		}
	}
	h := w.host(t, map[string]string{"ops": "", "staff": "cn=staff,dc=example"})
	core, audit := observer.New(zapcore.InfoLevel)
	h.Audit = zap.New(core)
	var m *Module
	// The rules of this test: members of ops may not log in.
	h.AuthorizeLogin = func(_ context.Context, bare jid.JID, _ string) error {
		if slices.Contains(m.Groups(bare), "ops") {
			return errors.New("access.rule 1: login not allowed")
		}
		return nil
	}
	m, err := New(h, 10*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	// Read at construction; "retired" is not declared in [groups].
	if g := m.Groups(alice); !slices.Equal(g, []string{"ops"}) {
		t.Fatalf("alice's groups = %v, want [ops]", g)
	}
	if g := m.Groups(jid.MustParse("alice@example.com/phone")); !slices.Equal(g, []string{"ops"}) {
		t.Errorf("a full JID's groups = %v", g)
	}
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer m.Stop(ctx)

	phone := w.router.Login(t, "bob@example.com/phone")
	desk := w.router.Login(t, "alice@example.com/desk")
	if err := w.cli.AddMember(ctx, "staff", "bob@example.com"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "bob in staff", func() bool { return slices.Equal(m.Groups(bob), []string{"staff"}) })
	if phone.Closed() != "" || desk.Closed() != "" {
		t.Fatalf("sessions closed by an admitting change: %q %q", phone.Closed(), desk.Closed())
	}
	if err := w.cli.AddMember(ctx, "ops", "bob@example.com"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "bob in ops", func() bool { return slices.Equal(m.Groups(bob), []string{"ops", "staff"}) })
	// Members lists a declared group (for shared rosters), not another.
	if ms, ok, err := m.Members(ctx, "ops"); err != nil || !ok || len(ms) != 2 || !ms[0].Equal(alice) || !ms[1].Equal(bob) {
		t.Errorf("members of ops: %v %v %v", ms, ok, err)
	}
	if _, ok, _ := m.Members(ctx, "retired"); ok {
		t.Error("an undeclared group was listed")
	}
	eventually(t, "bob's session closed", func() bool { return phone.Closed() == "not-authorized" })
	if desk.Closed() != "" {
		t.Errorf("alice's session, whose groups did not change, closed: %q", desk.Closed())
	}
	if l := audit.FilterMessage("session_revoked").All(); len(l) != 1 || l[0].ContextMap()["jid"] != "bob@example.com/phone" ||
		l[0].ContextMap()["source"] != "groups" {
		t.Errorf("audit: %v", audit.All())
	}
	// Removal and account deletion are seen too.
	if err := w.cli.RemoveMember(ctx, "ops", "alice@example.com"); err != nil {
		t.Fatal(err)
	}
	if err := w.cli.DeleteUser(ctx, "bob", moduletest.Domain); err != nil {
		t.Fatal(err)
	}
	eventually(t, "alice out of ops, bob deleted", func() bool { return len(m.Groups(alice)) == 0 && len(m.Groups(bob)) == 0 })
}

// TestNoGroupsDeclared: without [groups] nothing is read and nobody is
// in a group, even with memberships in the store.
func TestNoGroupsDeclared(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	if err := w.cli.AddMember(ctx, "ops", "alice@example.com"); err != nil {
		t.Fatal(err)
	}
	m, err := New(w.host(t, map[string]string{}), time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer m.Stop(ctx)
	if g := m.Groups(alice); len(g) != 0 {
		t.Errorf("alice in %v without [groups]", g)
	}
}

// TestRefreshReportsChanges: Refresh returns the accounts whose groups
// changed, nothing when the version did not move.
func TestRefreshReportsChanges(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	m, err := New(w.host(t, map[string]string{"ops": ""}), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if ch, err := m.Refresh(ctx); err != nil || len(ch) != 0 {
		t.Fatalf("unchanged: %v, %v", ch, err)
	}
	if err := w.cli.AddMember(ctx, "ops", "bob@example.com"); err != nil {
		t.Fatal(err)
	}
	if err := w.cli.AddMember(ctx, "undeclared", "alice@example.com"); err != nil {
		t.Fatal(err)
	}
	ch, err := m.Refresh(ctx)
	if err != nil || len(ch) != 1 || !ch[0].Equal(bob) {
		t.Fatalf("after adding bob: %v, %v", ch, err)
	}
}

// BenchmarkGroups is what a rights check pays for internal groups.
func BenchmarkGroups(b *testing.B) {
	m := &Module{members: map[string][]string{"alice@example.com": {"ops", "staff"}}}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if len(m.Groups(alice)) != 2 {
			b.Fatal("groups lost")
		}
	}
}
