package private

import (
	"strings"
	"testing"

	"github.com/palisade-im/palisade/server/module"
	"github.com/palisade-im/palisade/server/module/moduletest"
	"github.com/palisade-im/palisade/server/stanza"
)

func newPrivate(t *testing.T, cfg Config) *Module {
	t.Helper()
	h, _ := moduletest.NewHost(t, nil)
	m, err := New(h.Store, h.Log, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

const hamlet = "hamlet@shakespeare.lit/denmark"

func TestPrivate(t *testing.T) {
	m := newPrivate(t, *DefaultConfig())
	get := `<iq type="get" id="1002"><query xmlns="jabber:iq:private"><exodus xmlns="exodus:prefs"/></query></iq>`

	// Nothing stored: the empty element.
	res, err := moduletest.Request(t, m, hamlet, module.ScopeAccount, get)
	if err != nil || moduletest.String(res) != `<query xmlns="jabber:iq:private"><exodus xmlns="exodus:prefs"/></query>` {
		t.Errorf("empty: %s, %v", moduletest.String(res), err)
	}

	// XEP-0049 Example 1: client stores private data.
	res, err = moduletest.Request(t, m, hamlet, module.ScopeAccount, `<iq type="set" id="1001">
  <query xmlns="jabber:iq:private">
    <exodus xmlns="exodus:prefs">
      <defaultnick>Hamlet</defaultnick>
    </exodus>
  </query>
</iq>`)
	if err != nil || res != nil {
		t.Fatalf("set: %s, %v", moduletest.String(res), err)
	}
	// Example 2: client retrieves private data.
	res, err = moduletest.Request(t, m, hamlet, module.ScopeAccount, get)
	want := "<query xmlns=\"jabber:iq:private\"><exodus xmlns=\"exodus:prefs\">\n      <defaultnick>Hamlet</defaultnick>\n    </exodus></query>"
	if err != nil || moduletest.String(res) != want {
		t.Errorf("get:\n got %q\nwant %q (%v)", moduletest.String(res), want, err)
	}

	// Other namespaces are separate; an empty element deletes.
	if _, err := moduletest.Request(t, m, hamlet, module.ScopeAccount,
		`<iq type="set" id="3"><query xmlns="jabber:iq:private"><storage xmlns="storage:bookmarks"><conference jid="x@y"/></storage></query></iq>`); err != nil {
		t.Fatal(err)
	}
	if _, err := moduletest.Request(t, m, hamlet, module.ScopeAccount,
		`<iq type="set" id="4"><query xmlns="jabber:iq:private"><exodus xmlns="exodus:prefs"/></query></iq>`); err != nil {
		t.Fatal(err)
	}
	res, err = moduletest.Request(t, m, hamlet, module.ScopeAccount, get)
	if err != nil || moduletest.String(res) != `<query xmlns="jabber:iq:private"><exodus xmlns="exodus:prefs"/></query>` {
		t.Errorf("after delete: %s, %v", moduletest.String(res), err)
	}
	res, err = moduletest.Request(t, m, hamlet, module.ScopeAccount,
		`<iq type="get" id="5"><query xmlns="jabber:iq:private"><storage xmlns="storage:bookmarks"/></query></iq>`)
	if err != nil || moduletest.String(res) != `<query xmlns="jabber:iq:private"><storage xmlns="storage:bookmarks"><conference jid="x@y"/></storage></query>` {
		t.Errorf("bookmarks: %s, %v", moduletest.String(res), err)
	}
}

func TestPrivateErrors(t *testing.T) {
	m := newPrivate(t, Config{MaxBytes: 64})
	for _, tc := range []struct {
		from, iq string
		want     stanza.Condition
	}{
		// XEP-0049 Example 3: another user's data (forbidden is preferred).
		{"macbeth@shakespeare.lit/castle", `<iq type="set" to="hamlet@shakespeare.lit" id="1003">
  <query xmlns="jabber:iq:private"><exodus xmlns="exodus:prefs"><defaultnick>Macbeth</defaultnick></exodus></query></iq>`, stanza.Forbidden},
		{"macbeth@shakespeare.lit/castle", `<iq type="get" to="hamlet@shakespeare.lit" id="1003b">
  <query xmlns="jabber:iq:private"><exodus xmlns="exodus:prefs"/></query></iq>`, stanza.Forbidden},
		// Example 4: no child element.
		{hamlet, `<iq type="set" id="1004"><query xmlns="jabber:iq:private"/></iq>`, stanza.NotAcceptable},
		{hamlet, `<iq type="get" id="1004b"><query xmlns="jabber:iq:private"/></iq>`, stanza.NotAcceptable},
		// A child without its own namespace, or in a stanza namespace.
		{hamlet, `<iq type="get" id="1005"><query xmlns="jabber:iq:private"><prefs/></query></iq>`, stanza.NotAcceptable},
		{hamlet, `<iq type="set" id="1006"><query xmlns="jabber:iq:private"><x xmlns="jabber:client">a</x></query></iq>`, stanza.NotAcceptable},
		{hamlet, `<iq type="set" id="1007"><query xmlns="jabber:iq:private"><x xmlns="">a</x></query></iq>`, stanza.NotAcceptable},
		{hamlet, `<iq type="set" id="1008"><query xmlns="jabber:iq:private"><x xmlns="jabber:server">a</x></query></iq>`, stanza.NotAcceptable},
		// Two elements in one get.
		{hamlet, `<iq type="get" id="1009"><query xmlns="jabber:iq:private"><a xmlns="a:a"/><b xmlns="b:b"/></query></iq>`, stanza.BadRequest},
		// Too large.
		{hamlet, `<iq type="set" id="1010"><query xmlns="jabber:iq:private"><a xmlns="a:a">` + strings.Repeat("x", 64) + `</a></query></iq>`, stanza.NotAcceptable},
	} {
		_, err := moduletest.Request(t, m, tc.from, module.ScopeAccount, tc.iq)
		if moduletest.Condition(err) != tc.want {
			t.Errorf("%s: %v, want %s", tc.iq, err, tc.want)
		}
	}
}
