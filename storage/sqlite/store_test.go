package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/palisade-im/palisade/storage"
)

func openTest(t testing.TB) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "db", "palisade.db")
	s, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

func creds(seed byte) map[string]storage.Credentials {
	return map[string]storage.Credentials{
		"SHA-1":   {Salt: []byte{seed, 1}, Iterations: 4096, StoredKey: []byte{seed, 2}, ServerKey: []byte{seed, 3}},
		"SHA-256": {Salt: []byte{seed, 4}, Iterations: 8192, StoredKey: []byte{seed, 5}, ServerKey: []byte{seed, 6}},
	}
}

func TestOpenCreatesPrivateFiles(t *testing.T) {
	_, path := openTest(t)
	for p, want := range map[string]os.FileMode{filepath.Dir(path): 0o700 | os.ModeDir, path: 0o600} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s: mode %v, want %v", p, fi.Mode(), want)
		}
	}
	// Journal mode is persistent in the file; check it from a plain connection.
	db, err := sql.Open("sqlite3", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var mode string
	if err := db.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode = %q, %v; want wal", mode, err)
	}
}

func TestWritePragmas(t *testing.T) {
	s, _ := openTest(t)
	for pragma, want := range map[string]int{"synchronous": 2, "foreign_keys": 1, "busy_timeout": 5000} {
		var got int
		if err := s.wr.QueryRow("PRAGMA " + pragma).Scan(&got); err != nil || got != want {
			t.Errorf("PRAGMA %s = %d, %v; want %d", pragma, got, err, want)
		}
	}
}

func TestCreateUser(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	steps := []struct {
		name    string
		user    storage.User
		wantErr error
	}{
		{"new", storage.User{Localpart: "alice", Domain: "example.com", SCRAM: creds(1)}, nil},
		{"duplicate", storage.User{Localpart: "alice", Domain: "example.com", SCRAM: creds(2)}, storage.ErrExists},
		{"same localpart other domain", storage.User{Localpart: "alice", Domain: "example.org"}, nil},
		{"case is not folded", storage.User{Localpart: "Alice", Domain: "example.com"}, nil},
		{"nil credential fields", storage.User{Localpart: "bob", Domain: "example.com",
			SCRAM: map[string]storage.Credentials{"SHA-1": {Iterations: 1}}}, nil},
	}
	for _, tc := range steps {
		t.Run(tc.name, func(t *testing.T) {
			if err := s.CreateUser(ctx, tc.user); !errors.Is(err, tc.wantErr) {
				t.Fatalf("CreateUser = %v, want %v", err, tc.wantErr)
			}
		})
	}
	// The failed duplicate must not have touched the original credentials.
	u, err := s.GetUser(ctx, "alice", "example.com")
	if err != nil || !reflect.DeepEqual(u.SCRAM, creds(1)) {
		t.Errorf("after duplicate: %+v, %v", u, err)
	}
}

func TestGetUser(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	created := time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)
	if err := s.CreateUser(ctx, storage.User{Localpart: "alice", Domain: "example.com", SCRAM: creds(1), Created: created}); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateUser(ctx, storage.User{Localpart: "nocreds", Domain: "example.com"}); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		local, domain string
		wantErr       error
		wantSCRAM     map[string]storage.Credentials
	}{
		{"alice", "example.com", nil, creds(1)},
		{"nocreds", "example.com", nil, map[string]storage.Credentials{}},
		{"alice", "example.org", storage.ErrNotFound, nil},
		{"ALICE", "example.com", storage.ErrNotFound, nil},
		{"bob", "example.com", storage.ErrNotFound, nil},
	}
	for _, tc := range cases {
		t.Run(tc.local+"@"+tc.domain, func(t *testing.T) {
			u, err := s.GetUser(ctx, tc.local, tc.domain)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("GetUser = %v, want %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			if u.Localpart != tc.local || u.Domain != tc.domain || !reflect.DeepEqual(u.SCRAM, tc.wantSCRAM) {
				t.Errorf("GetUser = %+v", u)
			}
			if tc.local == "alice" && !u.Created.Equal(created) {
				t.Errorf("Created = %v, want %v", u.Created, created)
			}
			if tc.local == "nocreds" && time.Since(u.Created) > time.Minute {
				t.Errorf("zero Created not defaulted to now: %v", u.Created)
			}
		})
	}
}

func TestSetCredentials(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	if err := s.CreateUser(ctx, storage.User{Localpart: "alice", Domain: "example.com", SCRAM: creds(1)}); err != nil {
		t.Fatal(err)
	}
	only256 := map[string]storage.Credentials{"SHA-256": creds(9)["SHA-256"]}
	cases := []struct {
		name          string
		local, domain string
		scram         map[string]storage.Credentials
		wantErr       error
	}{
		{"replace both", "alice", "example.com", creds(7), nil},
		{"drop SHA-1", "alice", "example.com", only256, nil},
		{"absent user", "bob", "example.com", creds(7), storage.ErrNotFound},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := s.SetCredentials(ctx, tc.local, tc.domain, tc.scram)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("SetCredentials = %v, want %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			u, err := s.GetUser(ctx, tc.local, tc.domain)
			if err != nil || !reflect.DeepEqual(u.SCRAM, tc.scram) {
				t.Errorf("GetUser = %+v, %v; want SCRAM %+v", u.SCRAM, err, tc.scram)
			}
		})
	}
}

func TestListUsers(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	for _, j := range []string{"carol@a.example", "alice@a.example", "bob@a.example", "zed@b.example"} {
		l, d, _ := strings.Cut(j, "@")
		if err := s.CreateUser(ctx, storage.User{Localpart: l, Domain: d}); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		domain string
		want   []string
	}{
		{"a.example", []string{"alice", "bob", "carol"}},
		{"b.example", []string{"zed"}},
		{"c.example", nil},
	}
	for _, tc := range cases {
		got, err := s.ListUsers(ctx, tc.domain)
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ListUsers(%q) = %q, %v; want %q", tc.domain, got, err, tc.want)
		}
	}
}

// fill writes one of everything for the bare JID local@domain.
func fill(t *testing.T, s *Store, local, domain string) {
	t.Helper()
	ctx := context.Background()
	bare := local + "@" + domain
	if err := s.CreateUser(ctx, storage.User{Localpart: local, Domain: domain, SCRAM: creds(1)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutItem(ctx, bare, storage.RosterItem{JID: "friend@example.net", Subscription: storage.SubBoth}); err != nil {
		t.Fatal(err)
	}
	if err := s.Store(ctx, bare, []byte("<message/>"), time.Now(), 0, 0); err != nil {
		t.Fatal(err)
	}
	if err := s.SetPrivate(ctx, bare, "storage:bookmarks", []byte("<storage/>")); err != nil {
		t.Fatal(err)
	}
	if err := s.Block(ctx, bare, []string{"spam@example.net"}); err != nil {
		t.Fatal(err)
	}
}

// contents summarises everything stored for a bare JID.
func contents(t *testing.T, s *Store, bare string) string {
	t.Helper()
	ctx := context.Background()
	items, ver, err := s.Roster(ctx, bare)
	if err != nil {
		t.Fatal(err)
	}
	n, err := s.Count(ctx, bare)
	if err != nil {
		t.Fatal(err)
	}
	_, perr := s.GetPrivate(ctx, bare, "storage:bookmarks")
	blocked, err := s.Blocked(ctx, bare)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("roster=%d ver=%s offline=%d private=%v blocked=%d", len(items), ver, n, perr == nil, len(blocked))
}

func TestDeleteUser(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	fill(t, s, "alice", "example.com")
	fill(t, s, "bob", "example.com")
	const full = "roster=1 ver=1 offline=1 private=true blocked=1"
	// The version is bumped, never reset: see TestRosterVersionNotReusedAfterDelete.
	const empty = "roster=0 ver=2 offline=0 private=false blocked=0"
	cases := []struct {
		name          string
		local, domain string
		wantErr       error
		wantAlice     string
	}{
		{"absent user", "carol", "example.com", storage.ErrNotFound, full},
		{"wrong domain", "alice", "example.org", storage.ErrNotFound, full},
		{"alice", "alice", "example.com", nil, empty},
		{"alice again", "alice", "example.com", storage.ErrNotFound, empty},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := s.DeleteUser(ctx, tc.local, tc.domain); !errors.Is(err, tc.wantErr) {
				t.Fatalf("DeleteUser = %v, want %v", err, tc.wantErr)
			}
			if got := contents(t, s, "alice@example.com"); got != tc.wantAlice {
				t.Errorf("alice: %s, want %s", got, tc.wantAlice)
			}
			if got := contents(t, s, "bob@example.com"); got != full {
				t.Errorf("bob: %s, want %s", got, full)
			}
		})
	}
	var n int
	if err := s.rd.QueryRow(`SELECT COUNT(*) FROM scram_credentials`).Scan(&n); err != nil || n != 2 {
		t.Errorf("scram_credentials rows = %d, %v; want 2 (bob's only)", n, err)
	}
}

func TestRoster(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	const u = "alice@example.com"
	full := storage.RosterItem{
		JID: "carol@example.net", Name: "Carol", Subscription: storage.SubFrom, Ask: true,
		PendingIn: true, PendingInStanza: []byte(`<presence type="subscribe"/>`), Approved: true,
		Groups: []string{"Friends", "Work"},
	}
	steps := []struct {
		name    string
		op      func() (string, error)
		wantVer string
		wantErr error
		want    []storage.RosterItem // roster after the step
	}{
		{"empty", func() (string, error) { _, v, err := s.Roster(ctx, u); return v, err }, "0", nil, nil},
		{"put carol", func() (string, error) { return s.PutItem(ctx, u, full) }, "1", nil,
			[]storage.RosterItem{full}},
		{"put bob, zero subscription", func() (string, error) {
			return s.PutItem(ctx, u, storage.RosterItem{JID: "bob@example.net"})
		}, "2", nil, []storage.RosterItem{{JID: "bob@example.net", Subscription: storage.SubNone}, full}},
		{"replace carol", func() (string, error) {
			return s.PutItem(ctx, u, storage.RosterItem{JID: "carol@example.net", Subscription: storage.SubBoth})
		}, "3", nil, []storage.RosterItem{
			{JID: "bob@example.net", Subscription: storage.SubNone},
			{JID: "carol@example.net", Subscription: storage.SubBoth}}},
		{"invalid subscription", func() (string, error) {
			return s.PutItem(ctx, u, storage.RosterItem{JID: "x@example.net", Subscription: storage.SubRemove})
		}, "", errors.New("invalid"), []storage.RosterItem{
			{JID: "bob@example.net", Subscription: storage.SubNone},
			{JID: "carol@example.net", Subscription: storage.SubBoth}}},
		{"delete absent", func() (string, error) { return s.DeleteItem(ctx, u, "nobody@example.net") },
			"", storage.ErrNotFound, []storage.RosterItem{
				{JID: "bob@example.net", Subscription: storage.SubNone},
				{JID: "carol@example.net", Subscription: storage.SubBoth}}},
		{"delete bob", func() (string, error) { return s.DeleteItem(ctx, u, "bob@example.net") }, "4", nil,
			[]storage.RosterItem{{JID: "carol@example.net", Subscription: storage.SubBoth}}},
	}
	for _, tc := range steps {
		t.Run(tc.name, func(t *testing.T) {
			ver, err := tc.op()
			switch {
			case tc.wantErr == nil && err != nil,
				tc.wantErr != nil && err == nil,
				tc.wantErr != nil && !errors.Is(err, tc.wantErr) && !strings.Contains(err.Error(), tc.wantErr.Error()):
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if ver != tc.wantVer {
				t.Errorf("version = %q, want %q", ver, tc.wantVer)
			}
			got, _, err := s.Roster(ctx, u)
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Roster = %+v, %v\nwant %+v", got, err, tc.want)
			}
		})
	}
	if _, v, _ := s.Roster(ctx, u); v != "4" {
		t.Errorf("failed writes bumped the version: %s", v)
	}
	// Other users have their own counter.
	if v, err := s.PutItem(ctx, "bob@example.com", full); err != nil || v != "1" {
		t.Errorf("bob PutItem = %q, %v; want 1", v, err)
	}
}

func TestRosterItem(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	it := storage.RosterItem{JID: "bob@example.net", Name: "Bob", Subscription: storage.SubTo, Groups: []string{"G"}}
	if _, err := s.PutItem(ctx, "alice@example.com", it); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		user, contact string
		wantErr       error
	}{
		{"alice@example.com", "bob@example.net", nil},
		{"alice@example.com", "Bob@example.net", storage.ErrNotFound},
		{"alice@example.com", "carol@example.net", storage.ErrNotFound},
		{"carol@example.com", "bob@example.net", storage.ErrNotFound},
	}
	for _, tc := range cases {
		got, err := s.Item(ctx, tc.user, tc.contact)
		if !errors.Is(err, tc.wantErr) {
			t.Errorf("Item(%s, %s) = %v, want %v", tc.user, tc.contact, err, tc.wantErr)
		} else if err == nil && !reflect.DeepEqual(got, it) {
			t.Errorf("Item = %+v, want %+v", got, it)
		}
	}
}

func TestOffline(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	const u, other = "alice@example.com", "bob@example.com"
	stamp := time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC)
	steps := []struct {
		name    string
		op      func() error
		wantErr error
		want    []string // alice's pending stanzas after the step
	}{
		{"first", func() error { return s.Store(ctx, u, []byte("m1"), stamp, 3, 0) }, nil, []string{"m1"}},
		{"second", func() error { return s.Store(ctx, u, []byte("m2"), stamp, 3, 0) }, nil, []string{"m1", "m2"}},
		{"other user", func() error { return s.Store(ctx, other, []byte("o1"), stamp, 1, 0) }, nil, []string{"m1", "m2"}},
		{"third", func() error { return s.Store(ctx, u, []byte("m3"), stamp, 3, 0) }, nil, []string{"m1", "m2", "m3"}},
		{"over quota", func() error { return s.Store(ctx, u, []byte("m4"), stamp, 3, 0) }, storage.ErrQuota, []string{"m1", "m2", "m3"}},
		{"lower quota", func() error { return s.Store(ctx, u, []byte("m4"), stamp, 1, 0) }, storage.ErrQuota, []string{"m1", "m2", "m3"}},
		{"unlimited", func() error { return s.Store(ctx, u, []byte("m4"), stamp, 0, 0) }, nil, []string{"m1", "m2", "m3", "m4"}},
		{"delete none", func() error { return s.Delete(ctx, u, nil) }, nil, []string{"m1", "m2", "m3", "m4"}},
		{"delete other user's id", func() error {
			p, _ := s.Pending(ctx, other)
			return s.Delete(ctx, u, []int64{p[0].ID})
		}, nil, []string{"m1", "m2", "m3", "m4"}},
		{"delete m1 m3 and a missing id", func() error {
			p, _ := s.Pending(ctx, u)
			return s.Delete(ctx, u, []int64{p[0].ID, p[2].ID, 999999})
		}, nil, []string{"m2", "m4"}},
		{"store after delete keeps order", func() error { return s.Store(ctx, u, []byte("m5"), stamp, 3, 0) }, nil, []string{"m2", "m4", "m5"}},
		{"bytes over quota", func() error { return s.Store(ctx, u, []byte("m6"), stamp, 0, 7) }, storage.ErrQuota, []string{"m2", "m4", "m5"}},
		{"bytes at quota", func() error { return s.Store(ctx, u, []byte("m6"), stamp, 0, 8) }, nil, []string{"m2", "m4", "m5", "m6"}},
	}
	for _, tc := range steps {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.op(); !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			p, err := s.Pending(ctx, u)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for i, m := range p {
				got = append(got, string(m.Stanza))
				if !m.Stamp.Equal(stamp) {
					t.Errorf("stamp = %v, want %v", m.Stamp, stamp)
				}
				if i > 0 && m.ID <= p[i-1].ID {
					t.Errorf("ids not ascending: %d after %d", m.ID, p[i-1].ID)
				}
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Pending = %q, want %q", got, tc.want)
			}
			if n, err := s.Count(ctx, u); err != nil || n != len(tc.want) {
				t.Errorf("Count = %d, %v; want %d", n, err, len(tc.want))
			}
		})
	}
	if n, _ := s.Count(ctx, other); n != 1 {
		t.Errorf("other user's Count = %d, want 1", n)
	}
}

func TestPrivate(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	const u = "alice@example.com"
	steps := []struct {
		name    string
		set     []byte // nil: only read
		key     string
		want    []byte
		wantErr error
	}{
		{"absent", nil, "a", nil, storage.ErrNotFound},
		{"set", []byte("<a/>"), "a", []byte("<a/>"), nil},
		{"overwrite", []byte("<a>2</a>"), "a", []byte("<a>2</a>"), nil},
		{"other key", []byte("<b/>"), "b", []byte("<b/>"), nil},
		{"first key intact", nil, "a", []byte("<a>2</a>"), nil},
		{"empty deletes", []byte{}, "a", nil, storage.ErrNotFound},
		{"delete absent", []byte{}, "zzz", nil, storage.ErrNotFound},
	}
	for _, tc := range steps {
		t.Run(tc.name, func(t *testing.T) {
			if tc.set != nil {
				if err := s.SetPrivate(ctx, u, tc.key, tc.set); err != nil {
					t.Fatal(err)
				}
			}
			got, err := s.GetPrivate(ctx, u, tc.key)
			if !errors.Is(err, tc.wantErr) || !bytes.Equal(got, tc.want) {
				t.Errorf("GetPrivate = %q, %v; want %q, %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
	if _, err := s.GetPrivate(ctx, "bob@example.com", "b"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("other user sees data: %v", err)
	}
}

func TestBlocklist(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	const u = "alice@example.com"
	steps := []struct {
		name string
		op   func() error
		want []string
	}{
		{"empty", func() error { return nil }, nil},
		{"block", func() error { return s.Block(ctx, u, []string{"c@x", "a@x", "b@x"}) }, []string{"a@x", "b@x", "c@x"}},
		{"block duplicates", func() error { return s.Block(ctx, u, []string{"a@x", "a@x", "d@x"}) }, []string{"a@x", "b@x", "c@x", "d@x"}},
		{"block none", func() error { return s.Block(ctx, u, nil) }, []string{"a@x", "b@x", "c@x", "d@x"}},
		{"unblock some", func() error { return s.Unblock(ctx, u, []string{"b@x", "zzz@x"}) }, []string{"a@x", "c@x", "d@x"}},
		{"other user", func() error { return s.Block(ctx, "bob@example.com", []string{"q@x"}) }, []string{"a@x", "c@x", "d@x"}},
		{"unblock all", func() error { return s.Unblock(ctx, u, nil) }, nil},
	}
	for _, tc := range steps {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.op(); err != nil {
				t.Fatal(err)
			}
			got, err := s.Blocked(ctx, u)
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Blocked = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
	if got, _ := s.Blocked(ctx, "bob@example.com"); !reflect.DeepEqual(got, []string{"q@x"}) {
		t.Errorf("bob's list = %q; clearing alice's touched it", got)
	}
}

func TestReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "palisade.db")
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	fill(t, s, "alice", "example.com")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for i := range 2 { // reopening twice also re-runs migrate on a current schema
		s, err = Open(ctx, path)
		if err != nil {
			t.Fatalf("reopen %d: %v", i, err)
		}
		const want = "roster=1 ver=1 offline=1 private=true blocked=1"
		if got := contents(t, s, "alice@example.com"); got != want {
			t.Errorf("after reopen: %s, want %s", got, want)
		}
		if u, err := s.GetUser(ctx, "alice", "example.com"); err != nil || !reflect.DeepEqual(u.SCRAM, creds(1)) {
			t.Errorf("GetUser after reopen = %+v, %v", u, err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestFutureSchemaRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "future.db")
	db, err := sql.Open("sqlite3", path)
	if err != nil {
		t.Fatal(err)
	}
	future := len(migrations) + 1
	if _, err := db.Exec(fmt.Sprintf("PRAGMA user_version = %d", future)); err != nil {
		t.Fatal(err)
	}
	db.Close()

	s, err := Open(context.Background(), path)
	if err == nil {
		s.Close()
		t.Fatal("Open succeeded on a database from the future")
	}
	if !errors.Is(err, ErrSchemaTooNew) || !strings.Contains(err.Error(), fmt.Sprint("version ", future)) {
		t.Errorf("Open error = %q; want ErrSchemaTooNew naming version %d", err, future)
	}
}

func TestConcurrentWrites(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	const workers, each = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, workers*each*2)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				user := fmt.Sprintf("u%d@example.com", w%2)
				errs <- s.Store(ctx, user, []byte("m"), time.Now(), 0, 0)
				_, err := s.PutItem(ctx, user, storage.RosterItem{JID: fmt.Sprintf("c%d-%d@x", w, i)})
				errs <- err
				if _, _, err := s.Roster(ctx, user); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	for u := range 2 {
		user := fmt.Sprintf("u%d@example.com", u)
		items, ver, err := s.Roster(ctx, user)
		want := workers / 2 * each
		if err != nil || len(items) != want || ver != fmt.Sprint(want) {
			t.Errorf("%s: %d items, version %s, %v; want %d", user, len(items), ver, err, want)
		}
	}
}

func TestOpenOddPath(t *testing.T) {
	path := filepath.Join(t.TempDir(), "odd ?dir#%20", "p?d#b%41.db")
	s, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	fill(t, s, "alice", "example.com")
	s.Close()
	if fi, err := os.Stat(path); err != nil || fi.Size() == 0 {
		t.Fatalf("database not at %q: %v", path, err)
	}
}

func TestRosterVersionNotReusedAfterDelete(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "p.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	u := storage.User{Localpart: "alice", Domain: "example.test"}
	if err := s.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	old, err := s.PutItem(ctx, "alice@example.test", storage.RosterItem{JID: "bob@example.test", Subscription: storage.SubNone})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteUser(ctx, "alice", "example.test"); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	items, ver, err := s.Roster(ctx, "alice@example.test")
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 0 || ver == old {
		t.Fatalf("re-created account: %d items, version %q; want empty roster with a version other than %q", len(items), ver, old)
	}
	again, err := s.PutItem(ctx, "alice@example.test", storage.RosterItem{JID: "carol@example.test", Subscription: storage.SubNone})
	if err != nil {
		t.Fatal(err)
	}
	if again == old {
		t.Fatalf("version %q reused after re-creation", again)
	}
}
