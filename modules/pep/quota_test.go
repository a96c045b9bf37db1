package pep_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/palisade-im/palisade/modules/pep"
	"github.com/palisade-im/palisade/server/module"
	"github.com/palisade-im/palisade/server/module/moduletest"
	"github.com/palisade-im/palisade/server/stanza"
)

const alice = "alice@example.com/phone"

// newPEP builds the module over a fresh store with the [limits] that set
// changes.
func newPEP(t *testing.T, set func(h *module.Host)) (*pep.Module, *module.Host, *moduletest.Router) {
	t.Helper()
	h, r := moduletest.NewHost(t, nil)
	if set != nil {
		set(h)
	}
	m, err := pep.New(h, *pep.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Stop(context.Background()) })
	return m, h, r
}

// payload is an item payload of about n bytes, serialized.
func payload(n int) string {
	return `<x xmlns="urn:test">` + strings.Repeat("p", n-len(`<x xmlns="urn:test"></x>`)) + `</x>`
}

func publish(t *testing.T, m *pep.Module, node, id string, size int, opts string) error {
	t.Helper()
	_, err := moduletest.Request(t, m, alice, module.ScopeAccount,
		`<iq type="set" id="pub"><pubsub xmlns="http://jabber.org/protocol/pubsub"><publish node="`+node+`"><item id="`+id+`">`+
			payload(size)+`</item></publish>`+opts+`</pubsub></iq>`)
	return err
}

// maxItems is publish-options asking for a node keeping n items.
func maxItems(n int) string {
	return `<publish-options><x xmlns="jabber:x:data" type="submit"><field var="FORM_TYPE" type="hidden"><value>` +
		`http://jabber.org/protocol/pubsub#publish-options</value></field><field var="pubsub#max_items"><value>` +
		strconv.Itoa(n) + `</value></field></x></publish-options>`
}

// quotaRefused checks that err is condition with the pubsub#errors
// application condition app and a text naming key.
func quotaRefused(t *testing.T, what string, err error, cond stanza.Condition, app, key string) {
	t.Helper()
	var se *stanza.Error
	if !errors.As(err, &se) || se.Condition != cond || !strings.Contains(se.Text, key) {
		t.Errorf("%s: %v, want %s naming %s", what, err, cond, key)
		return
	}
	if el := se.Element(); el.Child(pep.NSErrors, app) == nil {
		t.Errorf("%s: %s lacks <%s/>", what, el, app)
	}
}

// limits.max_pep_node_bytes: a publish that would take a node's items past
// it is payload-too-big naming the quota; replaced, retracted and rotated
// items free their bytes.
func TestNodeByteQuota(t *testing.T) {
	m, h, _ := newPEP(t, func(h *module.Host) { h.Config.Limits.MaxPEPNodeBytes = 3000 })
	ctx := context.Background()
	for _, id := range []string{"1", "2"} {
		if err := publish(t, m, "urn:n", id, 1000, maxItems(10)); err != nil {
			t.Fatalf("item %s: %v", id, err)
		}
	}
	err := publish(t, m, "urn:n", "3", 1001, "")
	quotaRefused(t, "third item", err, stanza.NotAcceptable, "payload-too-big", "limits.max_pep_node_bytes")
	if refs, _ := h.Store.ItemRefs(ctx, "alice@example.com", "urn:n"); len(refs) != 2 {
		t.Errorf("%d items stored after the refusal, want 2", len(refs))
	}
	// Replacing item 2 counts the new size only.
	if err := publish(t, m, "urn:n", "2", 1900, ""); err != nil {
		t.Errorf("replace: %v", err)
	}
	if n, _ := h.Store.PubSubBytes(ctx, "alice@example.com"); n != 2900 {
		t.Errorf("stored bytes %d, want 2900", n)
	}
	if _, err := moduletest.Request(t, m, alice, module.ScopeAccount,
		`<iq type="set" id="r"><pubsub xmlns="http://jabber.org/protocol/pubsub"><retract node="urn:n"><item id="2"/></retract></pubsub></iq>`); err != nil {
		t.Fatal(err)
	}
	if err := publish(t, m, "urn:n", "3", 1500, ""); err != nil {
		t.Errorf("after retracting: %v", err)
	}
	// A node keeping two items rotates: the oldest item's bytes go with it.
	for i := range 6 {
		if err := publish(t, m, "urn:rot", strconv.Itoa(i), 1400, maxItems(2)); err != nil {
			t.Fatalf("rotating item %d: %v", i, err)
		}
	}
}

// limits.max_pep_bytes bounds all of an account's items together.
func TestAccountByteQuota(t *testing.T) {
	m, h, _ := newPEP(t, func(h *module.Host) { h.Config.Limits.MaxPEPBytes = 5000 })
	for i := range 4 {
		if err := publish(t, m, fmt.Sprintf("urn:n%d", i), "1", 1200, ""); err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
	}
	err := publish(t, m, "urn:n4", "1", 1200, "")
	quotaRefused(t, "fifth node's item", err, stanza.NotAcceptable, "payload-too-big", "limits.max_pep_bytes")
	// The refused publish did not create its node either.
	if nodes, _ := h.Store.Nodes(context.Background(), "alice@example.com"); len(nodes) != 4 {
		t.Errorf("%d nodes after the refusal, want 4", len(nodes))
	}
	// Another account has its own quota.
	if _, err := moduletest.Request(t, m, "bob@example.com/pc", module.ScopeAccount,
		`<iq type="set" id="b"><pubsub xmlns="http://jabber.org/protocol/pubsub"><publish node="urn:n0"><item id="1">`+
			payload(1200)+`</item></publish></pubsub></iq>`); err != nil {
		t.Errorf("bob: %v", err)
	}
}

// limits.max_pep_nodes: auto-create and create past it are
// max-nodes-exceeded naming the quota.
func TestNodeCountQuota(t *testing.T) {
	m, _, _ := newPEP(t, func(h *module.Host) { h.Config.Limits.MaxPEPNodes = 2 })
	for i := range 2 {
		if err := publish(t, m, fmt.Sprintf("urn:n%d", i), "1", 100, ""); err != nil {
			t.Fatal(err)
		}
	}
	err := publish(t, m, "urn:n2", "1", 100, "")
	quotaRefused(t, "auto-create", err, stanza.NotAllowed, "max-nodes-exceeded", "limits.max_pep_nodes")
	_, err = moduletest.Request(t, m, alice, module.ScopeAccount,
		`<iq type="set" id="c"><pubsub xmlns="http://jabber.org/protocol/pubsub"><create node="urn:n3"/></pubsub></iq>`)
	quotaRefused(t, "create", err, stanza.NotAllowed, "max-nodes-exceeded", "limits.max_pep_nodes")
}

// A payload whose notification or answer could not fit the stanza limit
// is refused at publish.
func TestPayloadBoundByStanzaLimit(t *testing.T) {
	m, _, _ := newPEP(t, func(h *module.Host) { h.Config.Limits.MaxStanzaBytes = 20000 })
	err := publish(t, m, "urn:n", "1", 20000+pep.WrapperAllowance-500, "")
	quotaRefused(t, "payload near the stanza limit and its allowance", err, stanza.NotAcceptable, "payload-too-big", "bytes")
	// One that fit the inbound limit is deliverable: the server's wrapper
	// has its allowance.
	if err := publish(t, m, "urn:n", "1", 19500, ""); err != nil {
		t.Errorf("payload well within: %v", err)
	}
}

// itemsAnswer sends an items request and returns the answer's items, its
// RSM set and its size as sent.
type itemsAnswer struct {
	ids          []string
	first, last  string
	index, count int // -1 when absent
	size         int
	set          bool
}

func requestItems(t *testing.T, m *pep.Module, from, inner string) (itemsAnswer, error) {
	t.Helper()
	iq := `<iq type="get" id="items" to="alice@example.com"><pubsub xmlns="http://jabber.org/protocol/pubsub">` + inner + `</pubsub></iq>`
	res, err := moduletest.Request(t, m, from, module.ScopeAccount, iq)
	if err != nil {
		return itemsAnswer{}, err
	}
	st := moduletest.Parse(t, iq)
	st.SetFrom(moduletest.JID(t, from))
	a := itemsAnswer{index: -1, count: -1, size: len(st.Result(res).Wire())}
	for _, it := range res.Child(pep.NSPubSub, "items").Elements() {
		a.ids = append(a.ids, it.Attr("id"))
	}
	if set := res.Child(pep.NSRSM, "set"); set != nil {
		a.set = true
		a.first, a.last = set.ChildText(pep.NSRSM, "first"), set.ChildText(pep.NSRSM, "last")
		if f := set.Child(pep.NSRSM, "first"); f != nil {
			a.index, _ = strconv.Atoi(f.Attr("index"))
		}
		if c := set.Child(pep.NSRSM, "count"); c != nil {
			a.count, _ = strconv.Atoi(c.Text())
		}
	}
	return a, nil
}

func ids(from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, fmt.Sprintf("i%02d", i))
	}
	return out
}

func rsm(s string) string { return `<set xmlns="http://jabber.org/protocol/rsm">` + s + `</set>` }

// A node whose items together exceed the stanza limit is answered in
// pages within it, whatever the request, and XEP-0059 RSM pages through
// it: max, after, before, <before/>, index, count.
func TestItemsPaged(t *testing.T) {
	const limit = 20000
	m, _, _ := newPEP(t, func(h *module.Host) { h.Config.Limits.MaxStanzaBytes = limit })
	for i := range 30 {
		if err := publish(t, m, "urn:big", fmt.Sprintf("i%02d", i), 2000, maxItems(100)); err != nil {
			t.Fatal(err)
		}
	}
	check := func(what string, a itemsAnswer, err error, want []string, index, count int) {
		t.Helper()
		if err != nil {
			t.Errorf("%s: %v", what, err)
			return
		}
		if a.size > limit+pep.WrapperAllowance {
			t.Errorf("%s: answer of %d bytes, over the %d-byte limit and its allowance", what, a.size, limit)
		}
		if fmt.Sprint(a.ids) != fmt.Sprint(want) || a.index != index || a.count != count {
			t.Errorf("%s: items %v index %d count %d; want %v index %d count %d", what, a.ids, a.index, a.count, want, index, count)
		}
		if len(want) > 0 && (a.first != want[0] || a.last != want[len(want)-1]) {
			t.Errorf("%s: first %q last %q", what, a.first, a.last)
		}
	}
	// All items asked for, without RSM: the newest that fit (60 KB of
	// items in a 20 KB stanza), and a <set/> to page back from.
	all, err := requestItems(t, m, alice, `<items node="urn:big"/>`)
	n := len(all.ids)
	if err == nil && (n < 5 || n >= 13) {
		t.Fatalf("unpaged answer holds %d items, want a 24 KB page", n)
	}
	check("all", all, err, ids(30-n, 30), 30-n, 30)
	// max_items larger than a page: the newest that fit, counted among 25.
	a, err := requestItems(t, m, alice, `<items node="urn:big" max_items="25"/>`)
	check("max_items 25", a, err, ids(30-n, 30), 25-n, 25)
	a, err = requestItems(t, m, alice, `<items node="urn:big" max_items="2"/>`)
	if err != nil || fmt.Sprint(a.ids) != fmt.Sprint(ids(28, 30)) || a.set {
		t.Errorf("max_items 2: %v set %v, %v", a.ids, a.set, err)
	}
	// RSM: the first page, the next, the previous, the last, by index.
	a, err = requestItems(t, m, alice, `<items node="urn:big"/>`+rsm(`<max>3</max>`))
	check("first page", a, err, ids(0, 3), 0, 30)
	a, err = requestItems(t, m, alice, `<items node="urn:big"/>`+rsm(`<max>3</max><after>i02</after>`))
	check("after", a, err, ids(3, 6), 3, 30)
	a, err = requestItems(t, m, alice, `<items node="urn:big"/>`+rsm(`<max>3</max><before>i10</before>`))
	check("before", a, err, ids(7, 10), 7, 30)
	a, err = requestItems(t, m, alice, `<items node="urn:big"/>`+rsm(`<max>4</max><before/>`))
	check("last page", a, err, ids(26, 30), 26, 30)
	a, err = requestItems(t, m, alice, `<items node="urn:big"/>`+rsm(`<max>2</max><index>12</index>`))
	check("index", a, err, ids(12, 14), 12, 30)
	a, err = requestItems(t, m, alice, `<items node="urn:big"/>`+rsm(`<max>0</max>`))
	check("count only", a, err, nil, -1, 30)
	// A max larger than fits is cut by the stanza limit.
	a, err = requestItems(t, m, alice, `<items node="urn:big"/>`+rsm(`<max>30</max>`))
	check("max 30", a, err, ids(0, n), 0, 30)
	// Paging forward with after reaches every item once, in order.
	var got []string
	after := ""
	for pages := 0; pages < 30; pages++ {
		q := `<max>100</max>`
		if after != "" {
			q += `<after>` + after + `</after>`
		}
		a, err := requestItems(t, m, alice, `<items node="urn:big"/>`+rsm(q))
		if err != nil || a.size > limit+pep.WrapperAllowance {
			t.Fatalf("page after %q: %d bytes, %v", after, a.size, err)
		}
		if len(a.ids) == 0 {
			break
		}
		got = append(got, a.ids...)
		after = a.last
	}
	if fmt.Sprint(got) != fmt.Sprint(ids(0, 30)) {
		t.Errorf("paged through %v", got)
	}
	// Paging backward from the unpaged answer's first item as well.
	got = all.ids
	before := all.first
	for before != "" {
		a, err := requestItems(t, m, alice, `<items node="urn:big"/>`+rsm(`<before>`+before+`</before>`))
		if err != nil || a.size > limit+pep.WrapperAllowance {
			t.Fatalf("page before %q: %d bytes, %v", before, a.size, err)
		}
		got = append(append([]string(nil), a.ids...), got...)
		before = a.first
	}
	if fmt.Sprint(got) != fmt.Sprint(ids(0, 30)) {
		t.Errorf("paged back through %v", got)
	}
	// Items by id are paged as well, in the order asked.
	var req strings.Builder
	for _, id := range ids(0, 30) {
		req.WriteString(`<item id="` + id + `"/>`)
	}
	a, err = requestItems(t, m, alice, `<items node="urn:big">`+req.String()+`</items>`)
	check("by id", a, err, ids(0, n), 0, 30)
	// Errors: an unknown after id, bad RSM values, an element after <set/>.
	if _, err := requestItems(t, m, alice, `<items node="urn:big"/>`+rsm(`<after>nope</after>`)); moduletest.Condition(err) != stanza.ItemNotFound {
		t.Errorf("unknown after: %v", err)
	}
	for _, bad := range []string{rsm(`<max>-1</max>`), rsm(`<index>x</index>`), rsm(`<after>a</after><before>b</before>`), rsm(``) + rsm(``)} {
		if _, err := requestItems(t, m, alice, `<items node="urn:big"/>`+bad); moduletest.Condition(err) != stanza.BadRequest {
			t.Errorf("%s: %v, want bad-request", bad, err)
		}
	}
}

// An item stored under a larger stanza limit is neither answered nor
// notified past the current one.
func TestOversizedStoredItem(t *testing.T) {
	m, h, r := newPEP(t, nil)
	if err := publish(t, m, "urn:n", "big", 100000, ""); err != nil {
		t.Fatal(err)
	}
	h.Config.Limits.MaxStanzaBytes = 50000
	small, err := pep.New(h, *pep.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer small.Stop(context.Background())
	_, err = requestItems(t, small, alice, `<items node="urn:n"><item id="big"/></items>`)
	if moduletest.Condition(err) != stanza.ResourceConstraint {
		t.Errorf("oversized item: %v, want resource-constraint", err)
	}
	// Subscribing sends the last item after the result, if it fits.
	s := r.Login(t, alice)
	s.UpdatePresence(moduletest.Parse(t, `<presence/>`))
	r.TakeRouted()
	_, err = moduletest.RequestSession(t, small, s, module.ScopeAccount,
		`<iq type="set" id="s" to="alice@example.com"><pubsub xmlns="http://jabber.org/protocol/pubsub"><subscribe node="urn:n" jid="`+alice+`"/></pubsub></iq>`)
	if err != module.ErrHandled {
		t.Fatalf("subscribe: %v", err)
	}
	for _, st := range r.TakeRouted() {
		if len(st.Wire()) > 50000 {
			t.Errorf("routed %d bytes past the 50000-byte limit: %.200s", len(st.Wire()), st.Wire())
		}
		if st.El.Child(pep.NSEvent, "event") != nil {
			t.Errorf("oversized last item notified")
		}
	}
}
