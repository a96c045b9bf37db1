package private

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/palisade-im/palisade/modules/vcard"
	"github.com/palisade-im/palisade/server/module"
	"github.com/palisade-im/palisade/server/module/moduletest"
	"github.com/palisade-im/palisade/server/stanza"
)

func newPrivate(t *testing.T, cfg Config) *Module {
	t.Helper()
	m, _ := newPrivateQuota(t, cfg, Quota{})
	return m
}

func newPrivateQuota(t *testing.T, cfg Config, q Quota) (*Module, *module.Host) {
	t.Helper()
	h, _ := moduletest.NewHost(t, nil)
	m, err := New(h.Store, h.Log, cfg, q)
	if err != nil {
		t.Fatal(err)
	}
	return m, h
}

func setNS(t *testing.T, m *Module, ns, text string) error {
	t.Helper()
	_, err := moduletest.Request(t, m, hamlet, module.ScopeAccount,
		`<iq type="set" id="q"><query xmlns="jabber:iq:private"><x xmlns="`+ns+`">`+text+`</x></query></iq>`)
	return err
}

func getNS(t *testing.T, m *Module, ns string) string {
	t.Helper()
	res, err := moduletest.Request(t, m, hamlet, module.ScopeAccount,
		`<iq type="get" id="g"><query xmlns="jabber:iq:private"><x xmlns="`+ns+`"/></query></iq>`)
	if err != nil {
		t.Fatal(err)
	}
	return moduletest.String(res)
}

// limits.max_private_items: namespaces past it are refused with the quota
// named; replacing or deleting a stored one still works; a request with
// several elements is stored whole or not at all; the vCard is not counted.
func TestQuotaItems(t *testing.T) {
	m, h := newPrivateQuota(t, *DefaultConfig(), Quota{MaxItems: 3})
	ctx := context.Background()
	if err := h.Store.SetPrivate(ctx, "hamlet@shakespeare.lit", vcard.StorageKey, []byte(`<vCard xmlns="vcard-temp"/>`)); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := setNS(t, m, fmt.Sprintf("urn:n%d", i), "v"); err != nil {
			t.Fatalf("namespace %d: %v", i, err)
		}
	}
	err := setNS(t, m, "urn:n3", "v")
	if moduletest.Condition(err) != stanza.NotAcceptable || !strings.Contains(err.Error(), "limits.max_private_items") {
		t.Fatalf("fourth namespace: %v, want not-acceptable naming limits.max_private_items", err)
	}
	if got := getNS(t, m, "urn:n3"); got != `<query xmlns="jabber:iq:private"><x xmlns="urn:n3"/></query>` {
		t.Errorf("refused namespace stored: %s", got)
	}
	if err := setNS(t, m, "urn:n0", "replaced"); err != nil {
		t.Errorf("replace at the quota: %v", err)
	}
	// Two elements, the second new: neither is stored.
	_, err = moduletest.Request(t, m, hamlet, module.ScopeAccount, `<iq type="set" id="two"><query xmlns="jabber:iq:private">`+
		`<x xmlns="urn:n1">changed</x><x xmlns="urn:n9">new</x></query></iq>`)
	if moduletest.Condition(err) != stanza.NotAcceptable {
		t.Errorf("two elements past the quota: %v", err)
	}
	if got := getNS(t, m, "urn:n1"); !strings.Contains(got, ">v</x>") {
		t.Errorf("a refused request changed urn:n1: %s", got)
	}
	// Deleting one frees a place, also in the same request.
	_, err = moduletest.Request(t, m, hamlet, module.ScopeAccount, `<iq type="set" id="swap"><query xmlns="jabber:iq:private">`+
		`<x xmlns="urn:n1"/><x xmlns="urn:n9">new</x></query></iq>`)
	if err != nil {
		t.Errorf("delete and add: %v", err)
	}
}

// limits.max_private_bytes bounds the account's fragments together; a
// replaced fragment counts with its new size only.
func TestQuotaBytes(t *testing.T) {
	m, _ := newPrivateQuota(t, *DefaultConfig(), Quota{MaxBytes: 1000})
	big := strings.Repeat("b", 400)
	for _, ns := range []string{"urn:a", "urn:b"} {
		if err := setNS(t, m, ns, big); err != nil {
			t.Fatalf("%s: %v", ns, err)
		}
	}
	err := setNS(t, m, "urn:c", big)
	if moduletest.Condition(err) != stanza.NotAcceptable || !strings.Contains(err.Error(), "limits.max_private_bytes") {
		t.Fatalf("third 400 bytes: %v, want not-acceptable naming limits.max_private_bytes", err)
	}
	// Replacing urn:a with 450 bytes counts 450, not 400 + 450.
	if err := setNS(t, m, "urn:a", strings.Repeat("a", 450)); err != nil {
		t.Errorf("replace: %v", err)
	}
	if err := setNS(t, m, "urn:c", "small"); err != nil {
		t.Errorf("small fragment in what is left: %v", err)
	}
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
