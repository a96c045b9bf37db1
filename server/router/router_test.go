package router

import (
	"testing"

	"github.com/palisade-im/palisade/server/module"
	"github.com/palisade-im/palisade/server/stanza"
	"mellium.im/xmpp/jid"
)

type fakeSession struct {
	j     jid.JID
	avail bool
	prio  int
}

func (f *fakeSession) JID() jid.JID              { return f.j }
func (f *fakeSession) Send(*stanza.Stanza)       {}
func (f *fakeSession) Presence() *stanza.Stanza  { return nil }
func (f *fakeSession) Priority() int             { return f.prio }
func (f *fakeSession) Available() bool           { return f.avail }
func (f *fakeSession) RosterRequested() bool     { return false }
func (f *fakeSession) SetRosterRequested()       {}
func (f *fakeSession) Carbons() bool             { return false }
func (f *fakeSession) SetCarbons(bool)           {}
func (f *fakeSession) RemoteAddr() string        { return "" }
func (f *fakeSession) Close(condition, _ string) {}

func sess(full string, avail bool, prio int) *fakeSession {
	return &fakeSession{j: jid.MustParse(full), avail: avail, prio: prio}
}

func TestBindConflictAndUnbind(t *testing.T) {
	tb := NewTable()
	a := sess("alice@example.test/phone", true, 0)
	b := sess("alice@example.test/laptop", true, 0)
	if tb.Bind(a) != nil || tb.Bind(b) != nil {
		t.Fatal("unexpected replacement")
	}
	a2 := sess("alice@example.test/phone", true, 0)
	if got := tb.Bind(a2); got != a {
		t.Fatalf("conflict: replaced %v, want the old phone session", got)
	}
	if tb.Session(jid.MustParse("alice@example.test/phone")) != a2 {
		t.Fatal("new session not bound")
	}
	tb.Unbind(a) // stale: must not remove a2
	if tb.Count(jid.MustParse("alice@example.test")) != 2 {
		t.Fatal("unbinding a replaced session removed its successor")
	}
	tb.Unbind(a2)
	tb.Unbind(b)
	if tb.Total() != 0 || tb.Sessions(jid.MustParse("alice@example.test")) != nil {
		t.Fatal("table not empty")
	}
}

func TestMessageTargets(t *testing.T) {
	cases := []struct {
		name string
		in   []module.Session
		want []string
	}{
		{"none available", []module.Session{sess("a@x/1", false, 5)}, nil},
		{"negative priority never", []module.Session{sess("a@x/1", true, -1)}, nil},
		{"highest wins", []module.Session{sess("a@x/1", true, 1), sess("a@x/2", true, 5), sess("a@x/3", true, 5)}, []string{"2", "3"}},
		{"unavailable high ignored", []module.Session{sess("a@x/1", false, 9), sess("a@x/2", true, 0)}, []string{"2"}},
	}
	for _, c := range cases {
		got := MessageTargets(c.in)
		if len(got) != len(c.want) {
			t.Errorf("%s: got %d targets, want %v", c.name, len(got), c.want)
			continue
		}
		for i, s := range got {
			if s.JID().Resourcepart() != c.want[i] {
				t.Errorf("%s: target %d = %s, want %s", c.name, i, s.JID(), c.want[i])
			}
		}
	}
}
