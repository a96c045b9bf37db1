package mam_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/palisade-im/palisade/modules/mam"
	"github.com/palisade-im/palisade/modules/offline"
	"github.com/palisade-im/palisade/server/module"
	"github.com/palisade-im/palisade/server/module/moduletest"
	"github.com/palisade-im/palisade/server/stanza"
	"github.com/palisade-im/palisade/storage"
)

func newModule(t *testing.T, cfg mam.Config) (*mam.Module, *moduletest.Router, *module.Host) {
	t.Helper()
	h, r := moduletest.NewHost(t, nil)
	m, err := mam.New(h.Router, h.Store, h.Log, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Stop(context.Background()) })
	return m, r, h
}

// admit runs st through the archiver as the core does around a journal
// that accepted it.
func admit(m *mam.Module, st *stanza.Stanza) {
	if commit := m.ArchiveMessage(context.Background(), st); commit != nil {
		commit()
	}
}

func TestArchivable(t *testing.T) {
	for _, c := range []struct {
		xml  string
		want bool
	}{
		{"<message type='chat'><body>x</body></message>", true},
		{"<message><body>x</body></message>", true},
		{"<message type='headline'><body>x</body></message>", false},
		{"<message type='groupchat'><body>x</body></message>", false},
		{"<message type='error'><body>x</body></message>", false},
		{"<message type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>", false},
		{"<message><received xmlns='urn:xmpp:receipts' id='1'/></message>", false},
		{"<message type='chat'><encrypted xmlns='eu.siacs.conversations.axolotl'/></message>", true},
		{"<message type='chat'><encrypted xmlns='urn:xmpp:omemo:2'/></message>", true},
		{"<message type='chat'><body>x</body><no-store xmlns='urn:xmpp:hints'/></message>", false},
		{"<message type='chat'><body>x</body><no-permanent-store xmlns='urn:xmpp:hints'/></message>", false},
		{"<message type='chat'><store xmlns='urn:xmpp:hints'/><x xmlns='urn:x'/></message>", true},
	} {
		if got := mam.Archivable(moduletest.Parse(t, c.xml)); got != c.want {
			t.Errorf("%s: %v, want %v", c.xml, got, c.want)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []mam.Config{{DefaultPref: "sometimes", MaxPage: 10}, {DefaultPref: "always", MaxPage: 0}} {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
	if err := mam.DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
}

// An offline message is stored with the recipient's stanza-id, and the
// recipient's history holds it under that id; a message to an account
// that does not exist archives nothing for it.
func TestOfflineMessageArchived(t *testing.T) {
	m, r, h := newModule(t, *mam.DefaultConfig())
	off := offline.New(h.Store, h.Log, 100, time.Now)
	ctx := context.Background()
	alice := r.Login(t, "alice@example.com/a")
	st := moduletest.Parse(t, "<message from='alice@example.com/a' to='bob@example.com' type='chat' id='o1'><body>while you were out</body></message>")
	admit(m, st)
	if err := off.StoreOffline(ctx, st); err != nil {
		t.Fatal(err)
	}
	bob := r.Login(t, "bob@example.com/b")
	bob.SetPriority(0)
	off.InitialPresence(ctx, bob)
	got := bob.Take()
	if len(got) != 1 {
		t.Fatalf("offline delivery: %v", moduletest.XML(got))
	}
	sid := got[0].El.Child(mam.NSStanzaID, "stanza-id")
	if sid == nil || sid.Attr("by") != "bob@example.com" || sid.Attr("id") == "" {
		t.Fatalf("offline copy without bob's stanza-id: %s", got[0].El)
	}
	res, err := moduletest.RequestSession(t, m, bob, module.ScopeAccount, "<iq type='set' id='q'><query xmlns='urn:xmpp:mam:2'/></iq>")
	if err != nil {
		t.Fatal(err)
	}
	results := bob.Take()
	if len(results) != 1 || results[0].El.Child(mam.NS, "result").Attr("id") != sid.Attr("id") ||
		!strings.Contains(results[0].El.String(), "while you were out") {
		t.Fatalf("bob's history: %v", moduletest.XML(results))
	}
	if fin := moduletest.String(res); !strings.Contains(fin, "complete=\"true\"") || !strings.Contains(fin, "<count>1</count>") {
		t.Fatalf("fin %s", fin)
	}
	_ = alice

	admit(m, moduletest.Parse(t, "<message from='alice@example.com/a' to='nobody@example.com' type='chat'><body>x</body></message>"))
	if err := m.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	p, err := h.Store.QueryHistory(ctx, storage.HistoryQuery{Owner: "nobody@example.com", Limit: 10})
	if err != nil || p.Count != 0 {
		t.Fatalf("history of a missing account: %+v %v", p, err)
	}
	p, err = h.Store.QueryHistory(ctx, storage.HistoryQuery{Owner: "alice@example.com", Limit: 10})
	if err != nil || p.Count != 2 {
		t.Fatalf("alice's history: %+v %v", p.Count, err)
	}
}

// roster default archives only contacts in the roster; always/never lists
// match bare JIDs with any resource and full JIDs exactly.
func TestPrefsRoster(t *testing.T) {
	m, r, h := newModule(t, mam.Config{DefaultPref: "roster", MaxPage: 50})
	ctx := context.Background()
	if _, err := h.Store.PutItem(ctx, "bob@example.com", storage.RosterItem{JID: "alice@example.com", Subscription: storage.SubBoth}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Store.PutItem(ctx, "bob@example.com", storage.RosterItem{JID: "juliet@example.com", Subscription: storage.SubNone, Hidden: true}); err != nil {
		t.Fatal(err)
	}
	bob := r.Login(t, "bob@example.com/b")
	if _, err := moduletest.RequestSession(t, m, bob, module.ScopeAccount,
		"<iq type='set' id='p'><prefs xmlns='urn:xmpp:mam:2' default='roster'><always><jid>carol@example.com/desk</jid></always></prefs></iq>"); err != nil {
		t.Fatal(err)
	}
	stamp := func(from string) bool {
		st := moduletest.Parse(t, "<message from='"+from+"' to='bob@example.com/b' type='chat'><body>x</body></message>")
		admit(m, st)
		return st.El.Child(mam.NSStanzaID, "stanza-id") != nil
	}
	for from, want := range map[string]bool{
		"alice@example.com/a":     true,  // in the roster
		"juliet@example.com/j":    false, // hidden pending item: not in the roster
		"carol@example.com/desk":  true,  // always, full JID
		"carol@example.com/phone": false,
	} {
		if got := stamp(from); got != want {
			t.Errorf("message from %s archived=%v, want %v", from, got, want)
		}
	}
	// Errors: forbidden for another account, bad-request for a bad form.
	if _, err := moduletest.Request(t, m, "alice@example.com/a", module.ScopeAccount,
		"<iq type='set' id='q' to='bob@example.com'><query xmlns='urn:xmpp:mam:2'/></iq>"); moduletest.Condition(err) != stanza.Forbidden {
		t.Fatalf("alice reading bob's archive: %v", err)
	}
	if _, err := moduletest.RequestSession(t, m, bob, module.ScopeAccount,
		"<iq type='set' id='q'><query xmlns='urn:xmpp:mam:2'><x xmlns='jabber:x:data' type='form'/></query></iq>"); moduletest.Condition(err) != stanza.BadRequest {
		t.Fatalf("form of type form: %v", err)
	}
	if _, err := moduletest.RequestSession(t, m, bob, module.ScopeAccount,
		"<iq type='set' id='q'><query xmlns='urn:xmpp:mam:2'><set xmlns='http://jabber.org/protocol/rsm'><before>x</before><after>y</after></set></query></iq>"); moduletest.Condition(err) != stanza.BadRequest {
		t.Fatalf("before and after: %v", err)
	}
}

// A page never exceeds max_page, whatever the client asks.
func TestMaxPage(t *testing.T) {
	m, r, _ := newModule(t, mam.Config{DefaultPref: "always", MaxPage: 5})
	bob := r.Login(t, "bob@example.com/b")
	for i := 0; i < 8; i++ {
		admit(m, moduletest.Parse(t, "<message from='alice@example.com/a' to='bob@example.com/b' type='chat'><body>x</body></message>"))
	}
	res, err := moduletest.RequestSession(t, m, bob, module.ScopeAccount,
		"<iq type='set' id='q'><query xmlns='urn:xmpp:mam:2'><set xmlns='http://jabber.org/protocol/rsm'><max>100</max></set></query></iq>")
	if err != nil {
		t.Fatal(err)
	}
	if n := len(bob.Take()); n != 5 {
		t.Fatalf("%d results, want 5", n)
	}
	if fin := moduletest.String(res); strings.Contains(fin, "complete") || !strings.Contains(fin, "<count>8</count>") {
		t.Fatalf("fin %s", fin)
	}
}

// A queryid is repeated in every result: one over 256 bytes is refused,
// so that no result grows past the stanza limit by it.
func TestQueryIDBounded(t *testing.T) {
	m, r, _ := newModule(t, mam.Config{DefaultPref: "always", MaxPage: 50})
	bob := r.Login(t, "bob@example.com/b")
	admit(m, moduletest.Parse(t, "<message from='alice@example.com/a' to='bob@example.com/b' type='chat'><body>x</body></message>"))
	_, err := moduletest.RequestSession(t, m, bob, module.ScopeAccount,
		"<iq type='set' id='q'><query xmlns='urn:xmpp:mam:2' queryid='"+strings.Repeat("q", 257)+"'/></iq>")
	var se *stanza.Error
	if !errors.As(err, &se) || se.Condition != stanza.BadRequest {
		t.Fatalf("long queryid: %v, want bad-request", err)
	}
	if n := len(bob.Take()); n != 0 {
		t.Fatalf("%d results sent", n)
	}
	if _, err := moduletest.RequestSession(t, m, bob, module.ScopeAccount,
		"<iq type='set' id='q'><query xmlns='urn:xmpp:mam:2' queryid='"+strings.Repeat("q", 256)+"'/></iq>"); err != nil {
		t.Fatal(err)
	}
	if n := len(bob.Take()); n != 1 {
		t.Fatalf("%d results, want 1", n)
	}
}
