package ldap

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	goldap "github.com/go-ldap/ldap/v3"
	"github.com/palisade-im/palisade/conformance/ldaptest"
	"go.uber.org/zap/zaptest"
)

func TestNamingContext(t *testing.T) {
	for in, want := range map[string]string{
		"OU=People,DC=corp,DC=example":      "DC=corp,DC=example",
		"ou=people,dc=corp,dc=example":      "DC=corp,DC=example",
		"DC=example":                        "DC=example",
		"CN=x,OU=y":                         "CN=x,OU=y",
		"OU=a,DC=corp,OU=odd,DC=example":    "DC=example",
		"CN=Doe\\, J,OU=P,DC=co\\+x,DC=org": "DC=co\\+x,DC=org",
	} {
		if got := namingContext(in); got != want {
			t.Errorf("namingContext(%q) = %q, want %q", in, got, want)
		}
	}
}

// fakeDirSync answers DirSync searches from a script of rounds.
type fakeDirSync struct {
	t       *testing.T
	replies []fakeReply
	cookies [][]byte // the cookie of each request
}

type fakeReply struct {
	entries int
	cookie  string
	more    bool
	err     error
}

func (f *fakeDirSync) Search(r *goldap.SearchRequest) (*goldap.SearchResult, error) {
	c, _ := goldap.FindControl(r.Controls, goldap.ControlTypeDirSync).(*goldap.ControlDirSync)
	if c == nil || !c.Criticality || c.Flags != dirSyncObjectSecurity {
		f.t.Fatalf("request without a critical DirSync control: %+v", r.Controls)
	}
	f.cookies = append(f.cookies, c.Cookie)
	if len(f.replies) == 0 {
		return nil, goldap.NewError(goldap.ErrorNetwork, errors.New("script done"))
	}
	rep := f.replies[0]
	f.replies = f.replies[1:]
	if rep.err != nil {
		return nil, rep.err
	}
	res := &goldap.SearchResult{}
	for range rep.entries {
		res.Entries = append(res.Entries, &goldap.Entry{DN: "CN=x,DC=corp,DC=example"})
	}
	var flags int64
	if rep.more {
		flags = dirSyncMoreData
	}
	res.Controls = []goldap.Control{goldap.NewRequestControlDirSync(flags, 0, []byte(rep.cookie))}
	return res, nil
}

// The first round (all objects, in two parts) asks for no sync; later
// rounds with changes do, each from the cookie the last answer gave.
func TestDirSyncPolling(t *testing.T) {
	m := &Module{log: zaptest.NewLogger(t)}
	f := &fakeDirSync{t: t, replies: []fakeReply{
		{entries: 500, cookie: "c1", more: true},
		{entries: 20, cookie: "c2"},
		{entries: 0, cookie: "c3"},
		{entries: 1, cookie: "c4"},
	}}
	var kicks atomic.Int32
	supported, err := m.dirSync(context.Background(), f, "DC=corp,DC=example", time.Millisecond, func() { kicks.Add(1) })
	if !supported || err == nil {
		t.Fatalf("end of script: supported %v, err %v", supported, err)
	}
	if kicks.Load() != 1 {
		t.Fatalf("kicks = %d, want 1 (only the change after the first round)", kicks.Load())
	}
	want := []string{"", "c1", "c2", "c3", "c4"}
	for i, c := range f.cookies {
		if string(c) != want[i] {
			t.Fatalf("cookies %q, want %q", f.cookies, want)
		}
	}
	// A directory that refuses the control is not one to poll.
	f = &fakeDirSync{t: t, replies: []fakeReply{{err: goldap.NewError(goldap.LDAPResultUnavailableCriticalExtension, errors.New("no"))}}}
	if supported, _ := m.dirSync(context.Background(), f, "DC=x", time.Millisecond, func() {}); supported {
		t.Fatal("a refused control counted as supported")
	}
}

// Against the real slapd, which has no DirSync: the critical control is
// refused and the watcher falls back to the sync interval.
func TestDirSyncRefusedBySlapd(t *testing.T) {
	srv := ldaptest.Start(t)
	secret := filepath.Join(t.TempDir(), "s")
	if err := os.WriteFile(secret, []byte(ldaptest.ServicePassword), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.URL, cfg.BindDN, cfg.BindPasswordFile, cfg.BaseDN = srv.URL, ldaptest.ServiceDN, secret, ldaptest.PeopleDN
	d, err := newDirectory(cfg.Effective())
	if err != nil {
		t.Fatal(err)
	}
	c, err := d.dial()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := d.ensureService(&pooled{c: c}); err != nil {
		t.Fatal(err)
	}
	m := &Module{log: zaptest.NewLogger(t)}
	supported, err := m.dirSync(context.Background(), dirSyncConn{c}, namingContext(ldaptest.PeopleDN), time.Millisecond, func() {})
	if supported || err == nil {
		t.Fatalf("slapd: supported %v, err %v; want the control refused", supported, err)
	}
}
