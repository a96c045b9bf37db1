package ldap

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/palisade-im/palisade/conformance/ldaptest"
	"github.com/palisade-im/palisade/server/config"
	"github.com/palisade-im/palisade/server/module"
	"github.com/palisade-im/palisade/server/module/moduletest"
)

const domain = moduletest.Domain

// newModule starts slapd and a module using it as provider "ldap".
func newModule(t *testing.T, edit func(*Config)) (*Module, *moduletest.Router, *ldaptest.Server) {
	t.Helper()
	srv := ldaptest.Start(t)
	secret := filepath.Join(t.TempDir(), "ldap.secret")
	if err := os.WriteFile(secret, []byte(ldaptest.ServicePassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.URL = srv.URL
	cfg.BindDN = ldaptest.ServiceDN
	cfg.BindPasswordFile = secret
	cfg.BaseDN = ldaptest.PeopleDN
	cfg.GroupBaseDN = ldaptest.GroupsDN
	cfg.DisabledFilter = "(employeeType=disabled)"
	cfg.AllowedGroups = []string{ldaptest.StaffDN}
	cfg.ConnectTimeout = config.Duration(2 * time.Second)
	cfg.RequestTimeout = config.Duration(2 * time.Second)
	if edit != nil {
		edit(cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("config: %v", err)
	}
	h, r := moduletest.NewHost(t, nil)
	h.Config.Auth.Providers = []string{"ldap", "internal"}
	m, err := New(h, *cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Stop(context.Background()) })
	return m, r, srv
}

func refusedWith(t *testing.T, err error, cond string) {
	t.Helper()
	var r *module.LoginRefused
	if !errors.As(err, &r) || r.Condition != cond {
		t.Fatalf("err = %v, want a refusal with %s", err, cond)
	}
}

func TestLogin(t *testing.T) {
	m, _, _ := newModule(t, nil)
	ctx := context.Background()
	if !m.ServesDomain(domain) || m.ServesDomain("other.example") {
		t.Fatal("ServesDomain wrong")
	}
	if err := m.CheckPassword(ctx, domain, "alice", "alice-pw"); err != nil {
		t.Fatalf("alice: %v", err)
	}
	// A second login reuses the pooled connection, rebound as the service account.
	if err := m.CheckPassword(ctx, domain, "bob", "bob-pw"); err != nil {
		t.Fatalf("bob: %v", err)
	}
	refusedWith(t, m.CheckPassword(ctx, domain, "alice", "bob-pw"), "not-authorized")
	refusedWith(t, m.CheckPassword(ctx, domain, "alice", ""), "not-authorized")
	// dave's password is right, but he is disabled.
	refusedWith(t, m.CheckPassword(ctx, domain, "dave", "dave-pw"), "account-disabled")
	// carol is only in interns.
	refusedWith(t, m.CheckPassword(ctx, domain, "carol", "carol-pw"), "not-authorized")
	if err := m.CheckPassword(ctx, domain, "nobody", "x"); !errors.Is(err, module.ErrUnknownUser) {
		t.Fatalf("nobody: %v", err)
	}
}

// TestInjection checks that filter metacharacters in a login name are
// escaped: they can neither widen the search nor break it.
func TestInjection(t *testing.T) {
	m, _, _ := newModule(t, func(c *Config) { c.AllowedGroups = nil })
	ctx := context.Background()
	for _, name := range []string{"*", "*)(uid=*", "alice)(uid=*", "*)(|(uid=*", `alice\2a`, "a*"} {
		for _, pw := range []string{"alice-pw", "bob-pw", "x"} {
			if err := m.CheckPassword(ctx, domain, name, pw); !errors.Is(err, module.ErrUnknownUser) {
				t.Errorf("login %q / %q: %v, want unknown user", name, pw, err)
			}
		}
	}
	// A real uid with parentheses is found exactly.
	if err := m.CheckPassword(ctx, domain, "eve(x)", "eve-pw"); err != nil {
		t.Errorf("eve(x): %v", err)
	}
	got := fill(DefaultUserFilter, "{user}", "*)(uid=*")
	if want := `(&(objectClass=inetOrgPerson)(uid=\2a\29\28uid=\2a))`; got != want {
		t.Errorf("filter = %s, want %s", got, want)
	}
}

func TestTLS(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(c *Config, s *ldaptest.Server)
	}{
		{"starttls", func(c *Config, s *ldaptest.Server) { c.StartTLS = true; c.CAFile = s.CAFile }},
		{"ldaps", func(c *Config, s *ldaptest.Server) { c.URL = s.LDAPSURL; c.CAFile = s.CAFile }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, _, srv := newModule(t, nil)
			tc.edit(&m.dir.cfg, srv)
			dir, err := newDirectory(m.dir.cfg)
			if err != nil {
				t.Fatal(err)
			}
			m.dir = dir
			if err := m.CheckPassword(context.Background(), domain, "alice", "alice-pw"); err != nil {
				t.Fatalf("login over %s: %v", tc.name, err)
			}
			// An untrusted certificate is a back-end failure, not a refusal.
			m.dir.cfg.CAFile = ""
			dir, _ = newDirectory(m.dir.cfg)
			m.dir = dir
			err = m.CheckPassword(context.Background(), domain, "alice", "alice-pw")
			var r *module.LoginRefused
			if err == nil || errors.As(err, &r) || errors.Is(err, module.ErrUnknownUser) ||
				!strings.Contains(err.Error(), "certificate") {
				t.Fatalf("untrusted certificate: %v", err)
			}
		})
	}
}

// TestDirectoryDown checks that a stopped directory is a back-end error
// (temporary-auth-failure for the client), and that logins work again
// once it is back, through fresh connections.
func TestDirectoryDown(t *testing.T) {
	m, r, srv := newModule(t, nil)
	ctx := context.Background()
	if err := m.CheckPassword(ctx, domain, "alice", "alice-pw"); err != nil {
		t.Fatal(err)
	}
	sess := r.Login(t, "alice@"+domain+"/phone")
	m.SessionStarted(ctx, sess)
	srv.Stop(t)
	err := m.CheckPassword(ctx, domain, "bob", "bob-pw")
	var ref *module.LoginRefused
	if err == nil || errors.As(err, &ref) || errors.Is(err, module.ErrUnknownUser) {
		t.Fatalf("directory down: %v", err)
	}
	m.Sync(ctx) // must not close anything
	if c := sess.Closed(); c != "" {
		t.Fatalf("session closed with %s while the directory was down", c)
	}
	srv.Restart(t)
	if err := m.CheckPassword(ctx, domain, "bob", "bob-pw"); err != nil {
		t.Fatalf("after restart: %v", err)
	}
}

// TestSyncRevokes checks each revocation reason, and that accounts in
// good standing and accounts that did not log in through the directory
// are left alone.
func TestSyncRevokes(t *testing.T) {
	m, r, srv := newModule(t, nil)
	ctx := context.Background()
	login := func(user, pw, res string) *moduletest.Session {
		t.Helper()
		if err := m.CheckPassword(ctx, domain, user, pw); err != nil {
			t.Fatalf("%s: %v", user, err)
		}
		s := r.Login(t, user+"@"+domain+"/"+res)
		m.SessionStarted(ctx, s)
		return s
	}
	srv.Add(t, "dn: "+ldaptest.UserDN("frank")+"\nobjectClass: inetOrgPerson\nuid: frank\ncn: f\nsn: f\nuserPassword: frank-pw\n\n"+
		"dn: "+ldaptest.UserDN("gina")+"\nobjectClass: inetOrgPerson\nuid: gina\ncn: g\nsn: g\nuserPassword: gina-pw\n")
	srv.Modify(t, "dn: "+ldaptest.StaffDN+"\nchangetype: modify\nadd: member\nmember: "+ldaptest.UserDN("frank")+"\nmember: "+ldaptest.UserDN("gina")+"\n")
	alice1, alice2 := login("alice", "alice-pw", "a"), login("alice", "alice-pw", "b")
	bob := login("bob", "bob-pw", "b")
	frank := login("frank", "frank-pw", "f")
	gina := login("gina", "gina-pw", "g")
	internal := r.Login(t, "juliet@"+domain+"/x") // never authenticated by the directory
	m.SessionStarted(ctx, internal)

	m.Sync(ctx)
	for _, s := range []*moduletest.Session{alice1, alice2, bob, frank, gina, internal} {
		if c := s.Closed(); c != "" {
			t.Fatalf("%s closed (%s) before any change", s.JID(), c)
		}
	}
	srv.Disable(t, "alice")
	srv.RemoveMember(t, ldaptest.StaffDN, "bob")
	srv.Delete(t, ldaptest.UserDN("frank"))
	m.Sync(ctx)
	for _, s := range []*moduletest.Session{alice1, alice2, bob, frank} {
		if c := s.Closed(); c != "not-authorized" {
			t.Errorf("%s: closed %q, want not-authorized", s.JID(), c)
		}
	}
	if gina.Closed() != "" || internal.Closed() != "" {
		t.Errorf("gina %q, juliet %q: closed without cause", gina.Closed(), internal.Closed())
	}
}

// TestPagedGroups checks that group membership is found with paged
// searches smaller than the number of groups.
func TestPagedGroups(t *testing.T) {
	m, _, srv := newModule(t, func(c *Config) { c.PageSize = 1 })
	var b strings.Builder
	for _, g := range []string{"a", "b", "c", "d"} {
		b.WriteString("dn: cn=" + g + "," + ldaptest.GroupsDN + "\nobjectClass: groupOfNames\ncn: " + g + "\nmember: " + ldaptest.UserDN("carol") + "\n\n")
	}
	srv.Add(t, b.String())
	m.dir.cfg.AllowedGroups = []string{"CN=d," + ldaptest.GroupsDN}
	if err := m.CheckPassword(context.Background(), domain, "carol", "carol-pw"); err != nil {
		t.Fatalf("carol in the last group of a paged search: %v", err)
	}
}

// TestGroups checks that the [groups] names of a directory account are
// learned at login and follow the directory at each sync.
func TestGroups(t *testing.T) {
	srv := ldaptest.Start(t)
	secret := filepath.Join(t.TempDir(), "s")
	if err := os.WriteFile(secret, []byte(ldaptest.ServicePassword), 0o600); err != nil {
		t.Fatal(err)
	}
	h, r := moduletest.NewHost(t, nil)
	h.Config.Auth.Providers = []string{"ldap"}
	h.Config.Groups = map[string]string{"staff": "CN=Staff," + ldaptest.GroupsDN, "interns": ldaptest.InternsDN}
	cfg := DefaultConfig()
	cfg.URL, cfg.BindDN, cfg.BindPasswordFile = srv.URL, ldaptest.ServiceDN, secret
	cfg.BaseDN, cfg.GroupBaseDN = ldaptest.PeopleDN, ldaptest.GroupsDN
	m, err := New(h, *cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := m.CheckPassword(ctx, domain, "alice", "alice-pw"); err != nil {
		t.Fatal(err)
	}
	alice := moduletest.JID(t, "alice@"+domain)
	if g := m.Groups(alice); len(g) != 1 || g[0] != "staff" {
		t.Fatalf("groups at login = %v", g)
	}
	m.SessionStarted(ctx, r.Login(t, "alice@"+domain+"/x"))
	srv.Modify(t, "dn: "+ldaptest.InternsDN+"\nchangetype: modify\nadd: member\nmember: "+ldaptest.UserDN("alice")+"\n")
	m.Sync(ctx)
	if g := m.Groups(alice); len(g) != 2 || g[0] != "interns" || g[1] != "staff" {
		t.Fatalf("groups after sync = %v", g)
	}
	srv.RemoveMember(t, ldaptest.StaffDN, "alice")
	srv.RemoveMember(t, ldaptest.InternsDN, "alice")
	m.Sync(ctx)
	if g := m.Groups(alice); len(g) != 0 {
		t.Fatalf("groups after leaving both = %v", g)
	}
}

// TestChangeNotification: with a sync interval of an hour, a disable made
// with ldapmodify still closes the session, through syncrepl.
func TestChangeNotification(t *testing.T) {
	m, r, srv := newModule(t, func(c *Config) {
		c.SyncInterval = config.Duration(time.Hour)
		c.BaseDN = ldaptest.Suffix // one persistent search covers people and groups
	})
	ctx := context.Background()
	if err := m.CheckPassword(ctx, domain, "alice", "alice-pw"); err != nil {
		t.Fatal(err)
	}
	sess := r.Login(t, "alice@"+domain+"/x")
	m.SessionStarted(ctx, sess)
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	// The refresh phase reports every entry: it triggers the first round,
	// before the change. Only the persist phase can report the disable.
	deadline := time.Now().Add(10 * time.Second)
	for m.rounds.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no sync round after the refresh phase")
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // let the refresh phase finish
	if c := sess.Closed(); c != "" {
		t.Fatalf("closed (%s) before the change", c)
	}
	srv.Disable(t, "alice")
	for sess.Closed() == "" {
		if time.Now().After(deadline) {
			t.Fatal("session not closed after the change notification")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if c := sess.Closed(); c != "not-authorized" {
		t.Fatalf("closed with %q", c)
	}
	stopped := make(chan error, 1)
	go func() { stopped <- m.Stop(ctx) }()
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Stop hangs with a persistent search open")
	}
}

// TestMembers lists a group for shared rosters from the real directory:
// the people in it who are not disabled, offline ones too, and it follows
// a membership change at once.
func TestMembers(t *testing.T) {
	srv := ldaptest.Start(t)
	secret := filepath.Join(t.TempDir(), "s")
	if err := os.WriteFile(secret, []byte(ldaptest.ServicePassword), 0o600); err != nil {
		t.Fatal(err)
	}
	h, _ := moduletest.NewHost(t, nil)
	h.Config.Auth.Providers = []string{"ldap"}
	h.Config.Groups = map[string]string{"staff": ldaptest.StaffDN, "interns": ldaptest.InternsDN}
	cfg := DefaultConfig()
	cfg.URL, cfg.BindDN, cfg.BindPasswordFile = srv.URL, ldaptest.ServiceDN, secret
	cfg.BaseDN, cfg.GroupBaseDN = ldaptest.PeopleDN, ldaptest.GroupsDN
	cfg.DisabledFilter = "(employeeType=disabled)"
	m, err := New(h, *cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	names := func(group string) string {
		t.Helper()
		ms, ok, err := m.Members(ctx, group)
		if err != nil || !ok {
			t.Fatalf("members of %s: %v %v", group, ok, err)
		}
		var out []string
		for _, j := range ms {
			out = append(out, j.String())
		}
		return strings.Join(out, " ")
	}
	// staff lists alice, bob and dave; dave is disabled. A nested group
	// and a DN outside the people are not accounts.
	srv.Modify(t, "dn: "+ldaptest.StaffDN+"\nchangetype: modify\nadd: member\nmember: "+ldaptest.InternsDN+"\nmember: "+ldaptest.ServiceDN+"\n")
	if got, want := names("staff"), "alice@"+domain+" bob@"+domain; got != want {
		t.Fatalf("staff = %q, want %q", got, want)
	}
	srv.RemoveMember(t, ldaptest.StaffDN, "bob")
	srv.Modify(t, "dn: "+ldaptest.StaffDN+"\nchangetype: modify\nadd: member\nmember: "+ldaptest.UserDN("carol")+"\n")
	if got, want := names("staff"), "alice@"+domain+" carol@"+domain; got != want {
		t.Fatalf("staff after the change = %q, want %q", got, want)
	}
	if _, ok, err := m.Members(ctx, "nobody"); ok || err != nil {
		t.Fatalf("an unknown group: ok %v, err %v", ok, err)
	}
	srv.Stop(t)
	if _, ok, err := m.Members(ctx, "interns"); !ok || err == nil {
		t.Fatalf("directory down: ok %v, err %v; want an error", ok, err)
	}
}
