package e2e

import (
	"context"
	"errors"
	"fmt"
	"html"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/palisade-im/palisade/modules/disco"
	"github.com/palisade-im/palisade/modules/pep"
	"github.com/palisade-im/palisade/server/config"
	"github.com/palisade-im/palisade/storage"
)

const (
	nsPubSub  = "http://jabber.org/protocol/pubsub"
	nsPSOwner = "http://jabber.org/protocol/pubsub#owner"
	nsPSEvent = "http://jabber.org/protocol/pubsub#event"
	nsPSErr   = "http://jabber.org/protocol/pubsub#errors"
	nsDiscoI  = "http://jabber.org/protocol/disco#info"
	nsDiscoIt = "http://jabber.org/protocol/disco#items"
	nsCaps    = "http://jabber.org/protocol/caps"

	nodeTune = "http://jabber.org/protocol/tune"
	nodeMood = "http://jabber.org/protocol/mood"
)

// pepEnv starts a server whose PEP accepts payloads up to 2000 bytes.
func pepEnv(t *testing.T) *env {
	return newEnv(t, func(c *config.Config) {
		c.Modules["pep"] = config.Section{Name: "pep", Value: &pep.Config{MaxItems: 50, MaxNodes: 10, MaxPayloadBytes: 2000}}
	})
}

// befriend gives a and b a mutual presence subscription ("both"), groups
// on a's side.
func befriend(t *testing.T, e *env, a, b string, groups ...string) {
	t.Helper()
	ctx := context.Background()
	if _, err := e.store.PutItem(ctx, a+"@"+domain, storage.RosterItem{JID: b + "@" + domain, Subscription: storage.SubBoth, Groups: groups}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.PutItem(ctx, b+"@"+domain, storage.RosterItem{JID: a + "@" + domain, Subscription: storage.SubBoth}); err != nil {
		t.Fatal(err)
	}
}

// pc is a raw client that keeps elements it skipped while waiting.
type pc struct {
	*client
	backlog []*Node
}

func pepLogin(t *testing.T, e *env, user, res string) *pc {
	return &pc{client: login(t, e, modeStartTLS, user, res)}
}

// await returns the first element (backlog first) for which ok holds.
func (c *pc) await(what string, ok func(*Node) bool) *Node {
	c.t.Helper()
	for i, n := range c.backlog {
		if ok(n) {
			c.backlog = append(c.backlog[:i], c.backlog[i+1:]...)
			return n
		}
	}
	deadline := time.Now().Add(short)
	for {
		n, err := c.tryNext(time.Until(deadline))
		if err != nil {
			c.t.Fatalf("%s: waiting for %s: %v (skipped %v)", c.name(), what, err, c.backlog)
		}
		if ok(n) {
			return n
		}
		c.backlog = append(c.backlog, n)
	}
}

// none checks that no element for which ok holds arrives for a while.
func (c *pc) none(what string, ok func(*Node) bool) {
	c.t.Helper()
	for _, n := range c.backlog {
		if ok(n) {
			c.t.Fatalf("%s: got %s: %s", c.name(), what, n)
		}
	}
	deadline := time.Now().Add(quiet)
	for {
		n, err := c.tryNext(time.Until(deadline))
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return
		}
		if err != nil {
			c.t.Fatalf("%s: %v", c.name(), err)
		}
		if ok(n) {
			c.t.Fatalf("%s: got %s: %s", c.name(), what, n)
		}
		c.backlog = append(c.backlog, n)
	}
}

var pepSeq atomic.Int64

// iq sends an iq with payload and returns the reply.
func (c *pc) iq(typ, to, payload string) *Node {
	c.t.Helper()
	id := "pep" + strconv.FormatInt(pepSeq.Add(1), 10)
	toAttr := ""
	if to != "" {
		toAttr = " to='" + to + "'"
	}
	c.send("<iq type='%s' id='%s'%s>%s</iq>", typ, id, toAttr, payload)
	return c.await("iq "+id, func(n *Node) bool { return n.Is(nsClient, "iq") && n.A("id") == id })
}

// ok sends an iq and fails unless it succeeds.
func (c *pc) ok(typ, to, payload string) *Node {
	c.t.Helper()
	r := c.iq(typ, to, payload)
	if r.A("type") != "result" {
		c.t.Fatalf("%s: %s %s: %s", c.name(), typ, payload, r)
	}
	return r
}

// fails sends an iq and checks its error condition and pubsub#errors child.
func (c *pc) fails(typ, to, payload, cond, app string) {
	c.t.Helper()
	r := c.iq(typ, to, payload)
	if got := r.stanzaError(); got != cond {
		c.t.Fatalf("%s: %s: got %q, want %s: %s", c.name(), payload, got, cond, r)
	}
	if app != "" && r.Child(nsClient, "error").Child(nsPSErr, app) == nil {
		c.t.Fatalf("%s: %s: no <%s/> in %s", c.name(), payload, app, r)
	}
}

// capsInfo is the disco#info a test client announces.
func capsInfo(features ...string) disco.Info {
	return disco.Info{
		Identities: []disco.Identity{{Category: "client", Type: "pc", Name: "e2e"}},
		Features:   append([]string{nsDiscoI, nsCaps}, features...),
	}
}

// presenceCaps sends available presence with caps for info (ver given, or
// the right one when ver is "").
func (c *pc) presenceCaps(info disco.Info, ver string) string {
	if ver == "" {
		ver = disco.Ver(info)
	}
	c.send("<presence><c xmlns='%s' hash='sha-1' node='https://e2e.test' ver='%s'/></presence>", nsCaps, ver)
	return ver
}

func isCapsQuery(n *Node) bool {
	return n.Is(nsClient, "iq") && n.A("type") == "get" && n.Child(nsDiscoI, "query") != nil
}

// answerCaps waits for the server's disco#info query and answers it.
func (c *pc) answerCaps(info disco.Info, ver string) {
	c.t.Helper()
	q := c.await("caps query", isCapsQuery)
	if got := q.Child(nsDiscoI, "query").A("node"); got != "https://e2e.test#"+ver {
		c.t.Errorf("%s: caps query for node %q", c.name(), got)
	}
	if q.A("from") != domain {
		c.t.Errorf("%s: caps query from %q", c.name(), q.A("from"))
	}
	var b strings.Builder
	for _, id := range info.Identities {
		fmt.Fprintf(&b, "<identity category='%s' type='%s' name='%s'/>", id.Category, id.Type, id.Name)
	}
	for _, f := range info.Features {
		fmt.Fprintf(&b, "<feature var='%s'/>", html.EscapeString(f))
	}
	c.send("<iq type='result' id='%s' to='%s'><query xmlns='%s' node='https://e2e.test#%s'>%s</query></iq>",
		q.A("id"), q.A("from"), nsDiscoI, ver, b.String())
}

// event matches a pubsub event message from owner on node with an <item/>
// (or <retract/> or <delete/>) of id.
func event(owner, node, kind, id string) func(*Node) bool {
	return func(n *Node) bool {
		if !n.Is(nsClient, "message") || n.A("from") != owner || n.A("type") != "headline" {
			return false
		}
		ev := n.Child(nsPSEvent, "event")
		if ev == nil {
			return false
		}
		if kind == "delete" {
			d := ev.Child(nsPSEvent, "delete")
			return d != nil && d.A("node") == node
		}
		items := ev.Child(nsPSEvent, "items")
		if items == nil || items.A("node") != node {
			return false
		}
		it := items.Child(nsPSEvent, kind)
		return it != nil && (id == "" || it.A("id") == id)
	}
}

func anyEvent(n *Node) bool {
	return n.Is(nsClient, "message") && n.Child(nsPSEvent, "event") != nil
}

func tune(title string) string {
	return "<tune xmlns='" + nodeTune + "'><title>" + title + "</title></tune>"
}

func publish(node, id, payload, options string) string {
	idAttr := ""
	if id != "" {
		idAttr = " id='" + id + "'"
	}
	return "<pubsub xmlns='" + nsPubSub + "'><publish node='" + node + "'><item" + idAttr + ">" + payload + "</item></publish>" + options + "</pubsub>"
}

func publishOptions(formType string, kv ...string) string {
	var b strings.Builder
	b.WriteString("<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>" + formType + "</value></field>")
	for i := 0; i+1 < len(kv); i += 2 {
		b.WriteString("<field var='" + kv[i] + "'><value>" + kv[i+1] + "</value></field>")
	}
	b.WriteString("</x>")
	return b.String()
}

func TestPepNotificationsAndLastItem(t *testing.T) {
	t.Parallel()
	e := pepEnv(t)
	befriend(t, e, "alice", "bob")
	befriend(t, e, "alice", "carol")
	alice := pepLogin(t, e, "alice", "a")
	aInfo := capsInfo(nodeTune + "+notify")
	alice.answerCaps(aInfo, alice.presenceCaps(aInfo, ""))

	// Published before the contacts come online.
	r := alice.ok("set", "", publish(nodeTune, "t1", tune("First"), ""))
	if it := r.Child(nsPubSub, "pubsub").Child(nsPubSub, "publish").Child(nsPubSub, "item"); it == nil || it.A("id") != "t1" {
		t.Fatalf("publish result: %s", r)
	}
	alice.await("own notification", event("alice@localhost", nodeTune, "item", "t1"))
	alice.ok("set", "", publish(nodeMood, "m1", "<mood xmlns='"+nodeMood+"'><happy/></mood>", ""))
	alice.none("mood notification without +notify", event("alice@localhost", nodeMood, "item", ""))

	// bob wants tunes: the last one arrives when he comes online, stamped.
	bob := pepLogin(t, e, "bob", "b")
	bInfo := capsInfo(nodeTune+"+notify", "urn:bob")
	bob.answerCaps(bInfo, bob.presenceCaps(bInfo, ""))
	last := bob.await("last tune", event("alice@localhost", nodeTune, "item", "t1"))
	if last.Child("urn:xmpp:delay", "delay") == nil || last.A("to") != bob.jid {
		t.Errorf("last item: %s", last)
	}
	if !strings.Contains(last.String(), "First") {
		t.Errorf("last item without payload: %s", last)
	}
	bob.none("mood item", event("alice@localhost", nodeMood, "item", ""))

	// carol wants moods only: she gets the mood, never the tunes.
	carol := pepLogin(t, e, "carol", "c")
	cInfo := capsInfo(nodeMood + "+notify")
	carol.answerCaps(cInfo, carol.presenceCaps(cInfo, ""))
	carol.await("last mood", event("alice@localhost", nodeMood, "item", "m1"))

	alice.ok("set", "", publish(nodeTune, "t2", tune("Second"), ""))
	bob.await("tune notification", event("alice@localhost", nodeTune, "item", "t2"))
	carol.none("tune notification", event("alice@localhost", nodeTune, "", ""))

	// A second resource of bob with the same caps: cached, no query.
	bob2 := pepLogin(t, e, "bob", "b2")
	bob2.presenceCaps(bInfo, "")
	bob2.await("last tune (cached caps)", event("alice@localhost", nodeTune, "item", "t2"))
	bob2.none("caps query for a known ver", isCapsQuery)

	// Presence again with the same caps sends nothing; after going
	// unavailable and back, the last item comes again.
	bob.presenceCaps(bInfo, "")
	bob.none("repeat of last item", anyEvent)
	bob.send("<presence type='unavailable'/>")
	bob.presenceCaps(bInfo, "")
	bob.await("last tune after coming back", event("alice@localhost", nodeTune, "item", "t2"))

	// Retract notifies (notify='true'), then delete notifies.
	alice.ok("set", "", "<pubsub xmlns='"+nsPubSub+"'><retract node='"+nodeTune+"' notify='true'><item id='t2'/></retract></pubsub>")
	bob.await("retract", event("alice@localhost", nodeTune, "retract", "t2"))
	alice.fails("get", "", "<pubsub xmlns='"+nsPubSub+"'><items node='"+nodeTune+"'><item id='t2'/></items></pubsub>", "item-not-found", "")
	alice.ok("set", "", "<pubsub xmlns='"+nsPSOwner+"'><delete node='"+nodeTune+"'/></pubsub>")
	bob.await("delete", event("alice@localhost", nodeTune, "delete", ""))
	bob.fails("get", "alice@localhost", "<pubsub xmlns='"+nsPubSub+"'><items node='"+nodeTune+"'/></pubsub>", "item-not-found", "")

	// A blocked contact gets nothing (XEP-0163 section 4.3.3).
	if err := e.store.Block(context.Background(), "alice@localhost", []string{"carol@localhost"}); err != nil {
		t.Fatal(err)
	}
	alice.ok("set", "", publish(nodeMood, "m2", "<mood xmlns='"+nodeMood+"'><sad/></mood>", ""))
	carol.none("mood from a blocker", anyEvent)
}

func TestPepCapsVerification(t *testing.T) {
	t.Parallel()
	e := pepEnv(t)
	befriend(t, e, "alice", "bob")
	befriend(t, e, "alice", "carol")
	alice := pepLogin(t, e, "alice", "a")
	alice.ok("set", "", publish(nodeTune, "t1", tune("One"), ""))

	// bob announces a ver that does not match his disco#info: his own
	// answer is used for him...
	info := capsInfo(nodeTune + "+notify")
	bogus := "AAAAAAAAAAAAAAAAAAAAAAAAAAA="
	bob := pepLogin(t, e, "bob", "b")
	bob.answerCaps(info, bob.presenceCaps(info, bogus))
	bob.await("last tune (per-JID answer)", event("alice@localhost", nodeTune, "item", "t1"))

	// ...but it is not cached: carol with the same ver is asked herself,
	// and her answer (no +notify) is what counts for her.
	carol := pepLogin(t, e, "carol", "c")
	carol.presenceCaps(info, bogus)
	carol.answerCaps(capsInfo(), bogus)
	carol.none("tune for a client without +notify", anyEvent)

	// A client that never answers (or answers with an error) gets nothing.
	bob2 := pepLogin(t, e, "bob", "b2")
	bob2.presenceCaps(capsInfo(nodeTune+"+notify", "urn:other"), "")
	q := bob2.await("caps query", isCapsQuery)
	bob2.send("<iq type='error' id='%s' to='%s'><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>", q.A("id"), q.A("from"))
	bob2.none("event after a refused caps query", anyEvent)

	// A reply from another JID does not count: only bob3 may answer bob3's query.
	bob3 := pepLogin(t, e, "bob", "b3")
	info3 := capsInfo(nodeTune+"+notify", "urn:third")
	ver3 := bob3.presenceCaps(info3, "")
	q3 := bob3.await("caps query", isCapsQuery)
	// bob's first resource answers in bob3's stead: ignored.
	bob.send("<iq type='result' id='%s' to='%s'><query xmlns='%s'><feature var='%s+notify'/></query></iq>", q3.A("id"), q3.A("from"), nsDiscoI, nodeTune)
	bob3.none("event from a spoofed caps answer", anyEvent)
	bob3.backlog = append(bob3.backlog, q3)
	bob3.answerCaps(info3, ver3)
	bob3.await("last tune after the real answer", event("alice@localhost", nodeTune, "item", "t1"))
}

func TestPepAccessModels(t *testing.T) {
	t.Parallel()
	e := pepEnv(t)
	befriend(t, e, "alice", "bob", "Friends")
	alice := pepLogin(t, e, "alice", "a")
	bob := pepLogin(t, e, "bob", "b")
	carol := pepLogin(t, e, "carol", "c")
	get := func(node string) string {
		return "<pubsub xmlns='" + nsPubSub + "'><items node='" + node + "'/></pubsub>"
	}
	alice.ok("set", "", publish("presence-node", "1", "<x xmlns='urn:e2e'/>", ""))
	alice.ok("set", "", publish("open-node", "1", "<x xmlns='urn:e2e'/>", "<publish-options>"+publishOptions("http://jabber.org/protocol/pubsub#publish-options", "pubsub#access_model", "open")+"</publish-options>"))
	alice.ok("set", "", publish("wl-node", "1", "<x xmlns='urn:e2e'/>", "<publish-options>"+publishOptions("http://jabber.org/protocol/pubsub#publish-options", "pubsub#access_model", "whitelist")+"</publish-options>"))
	alice.ok("set", "", publish("roster-node", "1", "<x xmlns='urn:e2e'/>", "<publish-options>"+publishOptions("http://jabber.org/protocol/pubsub#publish-options", "pubsub#access_model", "roster", "pubsub#roster_groups_allowed", "Friends")+"</publish-options>"))

	bob.ok("get", "alice@localhost", get("presence-node"))
	carol.fails("get", "alice@localhost", get("presence-node"), "not-authorized", "presence-subscription-required")
	for _, c := range []*pc{bob, carol} {
		r := c.ok("get", "alice@localhost", get("open-node"))
		if it := r.Child(nsPubSub, "pubsub").Child(nsPubSub, "items").Child(nsPubSub, "item"); it == nil || it.Child("urn:e2e", "x") == nil {
			t.Errorf("%s: open node items: %s", c.name(), r)
		}
	}
	bob.fails("get", "alice@localhost", get("wl-node"), "not-allowed", "closed-node")
	alice.ok("get", "", get("wl-node"))
	bob.ok("get", "alice@localhost", get("roster-node"))
	carol.fails("get", "alice@localhost", get("roster-node"), "not-authorized", "not-in-roster-group")

	// disco#items lists what the requester may read.
	items := func(c *pc) []string {
		r := c.ok("get", "alice@localhost", "<query xmlns='"+nsDiscoIt+"'/>")
		var out []string
		for _, it := range r.Child(nsDiscoIt, "query").Nodes {
			out = append(out, it.A("node"))
		}
		return out
	}
	if got := strings.Join(items(alice), " "); got != "open-node presence-node roster-node wl-node" {
		t.Errorf("alice's disco#items: %s", got)
	}
	if got := strings.Join(items(bob), " "); got != "open-node presence-node roster-node" {
		t.Errorf("bob's disco#items: %s", got)
	}
	if got := strings.Join(items(carol), " "); got != "open-node" {
		t.Errorf("carol's disco#items: %s", got)
	}
	// disco#info of the account: the pep identity and the features.
	r := alice.ok("get", "", "<query xmlns='"+nsDiscoI+"'/>")
	s := r.String()
	for _, want := range []string{`category="pubsub" type="pep"`, nsPubSub + "#publish-options", nsPubSub + "#auto-create", nsPubSub + "#last-published",
		// What Monal requires before it uses PEP at all, and for XEP-0402.
		nsPubSub + "#filtered-notifications", nsPubSub + "#subscribe", nsPubSub + "#delete-items",
		nsPubSub + "#item-ids", nsPubSub + "#multi-items", nsPubSub + "#config-node-max"} {
		if !strings.Contains(s, want) {
			t.Errorf("account disco#info lacks %s: %s", want, s)
		}
	}
}

func TestPepPublishOptionsAndConfig(t *testing.T) {
	t.Parallel()
	e := pepEnv(t)
	alice := pepLogin(t, e, "alice", "a")
	const dl = "eu.siacs.conversations.axolotl.devicelist"
	devices := "<list xmlns='eu.siacs.conversations.axolotl'><device id='123'/></list>"
	open := "<publish-options>" + publishOptions("http://jabber.org/protocol/pubsub#publish-options", "pubsub#access_model", "open") + "</publish-options>"
	// An existing node with the default (presence) access: precondition-not-met.
	alice.ok("set", "", publish(dl, "current", devices, ""))
	alice.fails("set", "", publish(dl, "current", devices, open), "conflict", "precondition-not-met")
	// Conversations then reconfigures the node and publishes again.
	cfg := alice.ok("get", "", "<pubsub xmlns='"+nsPSOwner+"'><configure node='"+dl+"'/></pubsub>")
	if v := formValue(cfg, "pubsub#access_model"); v != "presence" {
		t.Errorf("access_model in the configure form = %q: %s", v, cfg)
	}
	alice.ok("set", "", "<pubsub xmlns='"+nsPSOwner+"'><configure node='"+dl+"'>"+publishOptions("http://jabber.org/protocol/pubsub#node_config", "pubsub#access_model", "open")+"</configure></pubsub>")
	alice.ok("set", "", publish(dl, "current", devices, open))

	// max_items: "max" and trimming.
	bm := "urn:xmpp:bookmarks:1"
	max := "<publish-options>" + publishOptions("http://jabber.org/protocol/pubsub#publish-options",
		"pubsub#persist_items", "true", "pubsub#max_items", "max", "pubsub#send_last_published_item", "never", "pubsub#access_model", "whitelist") + "</publish-options>"
	for i := 0; i < 3; i++ {
		alice.ok("set", "", publish(bm, fmt.Sprintf("room%d@muc", i), "<conference xmlns='urn:xmpp:bookmarks:1'/>", max))
	}
	r := alice.ok("get", "", "<pubsub xmlns='"+nsPubSub+"'><items node='"+bm+"' max_items='2'/></pubsub>")
	its := r.Child(nsPubSub, "pubsub").Child(nsPubSub, "items").Nodes
	if len(its) != 2 || its[0].A("id") != "room1@muc" || its[1].A("id") != "room2@muc" {
		t.Errorf("max_items=2: %s", r)
	}
	r = alice.ok("get", "", "<pubsub xmlns='"+nsPubSub+"'><items node='"+bm+"'><item id='room0@muc'/></items></pubsub>")
	if its := r.Child(nsPubSub, "pubsub").Child(nsPubSub, "items").Nodes; len(its) != 1 || its[0].A("id") != "room0@muc" {
		t.Errorf("by id: %s", r)
	}
	alice.ok("set", "", "<pubsub xmlns='"+nsPSOwner+"'><configure node='"+bm+"'>"+publishOptions("http://jabber.org/protocol/pubsub#node_config", "pubsub#max_items", "1")+"</configure></pubsub>")
	r = alice.ok("get", "", "<pubsub xmlns='"+nsPubSub+"'><items node='"+bm+"'/></pubsub>")
	if its := r.Child(nsPubSub, "pubsub").Child(nsPubSub, "items").Nodes; len(its) != 1 || its[0].A("id") != "room2@muc" {
		t.Errorf("after max_items 1: %s", r)
	}
	// Bad values change nothing.
	alice.fails("set", "", "<pubsub xmlns='"+nsPSOwner+"'><configure node='"+bm+"'>"+publishOptions("http://jabber.org/protocol/pubsub#node_config", "pubsub#max_items", "0")+"</configure></pubsub>", "not-acceptable", "")
	alice.fails("set", "", "<pubsub xmlns='"+nsPSOwner+"'><configure node='"+bm+"'>"+publishOptions("http://jabber.org/protocol/pubsub#node_config", "pubsub#access_model", "authorize")+"</configure></pubsub>", "not-acceptable", "")
	alice.fails("set", "", "<pubsub xmlns='"+nsPSOwner+"'><configure node='"+bm+"'>"+publishOptions("urn:wrong", "pubsub#max_items", "2")+"</configure></pubsub>", "bad-request", "")
	if v := formValue(alice.ok("get", "", "<pubsub xmlns='"+nsPSOwner+"'><configure node='"+bm+"'/></pubsub>"), "pubsub#max_items"); v != "1" {
		t.Errorf("max_items after rejected forms = %q, want 1", v)
	}
}

func TestPepErrors(t *testing.T) {
	t.Parallel()
	e := pepEnv(t)
	befriend(t, e, "alice", "bob")
	alice := pepLogin(t, e, "alice", "a")
	bob := pepLogin(t, e, "bob", "b")
	alice.ok("set", "", publish(nodeTune, "t", tune("x"), ""))
	ps := func(inner string) string { return "<pubsub xmlns='" + nsPubSub + "'>" + inner + "</pubsub>" }
	bob.fails("set", "alice@localhost", publish(nodeTune, "t", tune("mine"), ""), "forbidden", "")
	bob.fails("set", "alice@localhost", ps("<retract node='"+nodeTune+"'><item id='t'/></retract>"), "forbidden", "")
	bob.fails("get", "alice@localhost", "<pubsub xmlns='"+nsPSOwner+"'><configure node='"+nodeTune+"'/></pubsub>", "forbidden", "")
	bob.fails("set", "alice@localhost", "<pubsub xmlns='"+nsPSOwner+"'><delete node='"+nodeTune+"'/></pubsub>", "forbidden", "")
	alice.fails("get", "", ps("<items/>"), "bad-request", "nodeid-required")
	alice.fails("get", "", ps("<items node='nope'/>"), "item-not-found", "")
	alice.fails("get", "", ps("<items node='"+nodeTune+"' max_items='x'/>"), "bad-request", "")
	alice.fails("set", "", ps("<publish node='n'/>"), "bad-request", "item-required")
	alice.fails("set", "", ps("<publish node='n'><item id='1'><a xmlns='urn:a'/></item><item id='2'><a xmlns='urn:a'/></item></publish>"), "bad-request", "invalid-payload")
	alice.fails("set", "", ps("<publish node='n'><item id='1'><a xmlns='urn:a'/><b xmlns='urn:a'/></item></publish>"), "bad-request", "invalid-payload")
	alice.fails("set", "", ps("<publish node='n'><item id='1'/></publish>"), "bad-request", "payload-required")
	alice.fails("set", "", publish("n", "1", "<big xmlns='urn:a'>"+strings.Repeat("x", 2100)+"</big>", ""), "not-acceptable", "payload-too-big")
	alice.fails("set", "", ps("<subscribe node='"+nodeTune+"' jid='alice@localhost'/><options/>"), "feature-not-implemented", "unsupported")
	alice.fails("get", "", ps("<subscriptions/>"), "feature-not-implemented", "unsupported")
	alice.fails("set", "", ps("<retract node='"+nodeTune+"'><item id='nope'/></retract>"), "item-not-found", "")
	alice.fails("set", "", "<pubsub xmlns='"+nsPSOwner+"'><purge node='"+nodeTune+"'/></pubsub>", "feature-not-implemented", "unsupported")
	alice.fails("set", "", ps("<publish node='n2'><item id='1'><a xmlns='urn:a'/></item></publish><publish-options>"+publishOptions("http://jabber.org/protocol/pubsub#publish-options", "pubsub#access_model", "bogus")+"</publish-options>"), "not-acceptable", "")
	// None of the failures created a node.
	r := alice.ok("get", "", "<query xmlns='"+nsDiscoIt+"'/>")
	if n := len(r.Child(nsDiscoIt, "query").Nodes); n != 1 {
		t.Errorf("nodes after failed requests: %s", r)
	}
	// Node quota (max_nodes 10).
	for i := 1; i < 10; i++ {
		alice.ok("set", "", publish(fmt.Sprintf("q%d", i), "1", "<a xmlns='urn:a'/>", ""))
	}
	alice.fails("set", "", publish("q10", "1", "<a xmlns='urn:a'/>", ""), "not-allowed", "max-nodes-exceeded")
}

func TestPepAccountDeletion(t *testing.T) {
	t.Parallel()
	e := pepEnv(t)
	alice := pepLogin(t, e, "alice", "a")
	alice.ok("set", "", publish(nodeTune, "t", tune("x"), ""))
	alice.close()
	ctx := context.Background()
	if err := e.store.DeleteUser(ctx, "alice", domain); err != nil {
		t.Fatal(err)
	}
	if nodes, err := e.store.Nodes(ctx, "alice@localhost"); err != nil || len(nodes) != 0 {
		t.Fatalf("nodes after deletion: %v %v", nodes, err)
	}
	creds, err := e.store.GetUser(ctx, "bob", domain)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.store.CreateUser(ctx, storage.User{Localpart: "alice", Domain: domain, SCRAM: creds.SCRAM, Created: time.Now()}); err != nil {
		t.Fatal(err)
	}
	c := dial(t, e, modeStartTLS)
	c.secure()
	if n := c.authPlain("alice", users["bob"]); !n.Is(nsSASL, "success") {
		t.Fatal(n)
	}
	c.openOK()
	c.bind("again")
	c.startReader()
	a2 := &pc{client: c}
	a2.fails("get", "", "<pubsub xmlns='"+nsPubSub+"'><items node='"+nodeTune+"'/></pubsub>", "item-not-found", "")
}

// formValue returns the first value of a field in the configure form of
// a pubsub#owner result.
func formValue(r *Node, v string) string {
	x := r.Child(nsPSOwner, "pubsub").Child(nsPSOwner, "configure").Child("jabber:x:data", "x")
	if x == nil {
		return "(no form)"
	}
	for _, f := range x.Nodes {
		if f.A("var") == v {
			if val := f.Child("jabber:x:data", "value"); val != nil {
				return val.Text
			}
			return ""
		}
	}
	return "(no field)"
}

// A client changing its capabilities faster than it answers is asked one
// question at a time, and then about its newest capabilities only.
func TestPepCapsOneQueryAtATime(t *testing.T) {
	t.Parallel()
	e := pepEnv(t)
	befriend(t, e, "alice", "bob")
	alice := pepLogin(t, e, "alice", "a")
	alice.ok("set", "", publish(nodeTune, "t1", tune("One"), ""))
	bob := pepLogin(t, e, "bob", "b")
	var infos []disco.Info
	var vers []string
	for i := 0; i < 5; i++ {
		infos = append(infos, capsInfo(nodeTune+"+notify", fmt.Sprintf("urn:v%d", i)))
	}
	vers = append(vers, bob.presenceCaps(infos[0], ""))
	q := bob.await("first caps query", isCapsQuery)
	for i := 1; i < 5; i++ {
		vers = append(vers, bob.presenceCaps(infos[i], ""))
	}
	bob.none("a second query while the first is open", isCapsQuery)
	bob.backlog = append(bob.backlog, q)
	bob.answerCaps(infos[0], vers[0])
	// That answer is for stale caps: the server asks about the newest.
	bob.answerCaps(infos[4], vers[4])
	bob.await("last tune", event("alice@localhost", nodeTune, "item", "t1"))
	bob.none("more caps queries", isCapsQuery)
}

func TestPepExplicitSubscriptions(t *testing.T) {
	t.Parallel()
	e := pepEnv(t)
	befriend(t, e, "alice", "bob")
	alice := pepLogin(t, e, "alice", "a")
	openOpts := "<publish-options>" + publishOptions("http://jabber.org/protocol/pubsub#publish-options", "pubsub#access_model", "open") + "</publish-options>"
	alice.ok("set", "", publish(nodeTune, "t1", tune("One"), openOpts))
	alice.ok("set", "", publish(nodeMood, "m1", "<mood xmlns='"+nodeMood+"'><happy/></mood>", ""))
	ps := func(inner string) string { return "<pubsub xmlns='" + nsPubSub + "'>" + inner + "</pubsub>" }

	// carol shares no presence and announces no caps: an explicit
	// subscription to the open node brings the last item and then events.
	carol := pepLogin(t, e, "carol", "c")
	carol.send("<presence/>")
	r := carol.ok("set", "alice@localhost", ps("<subscribe node='"+nodeTune+"' jid='carol@localhost'/>"))
	if sub := r.Child(nsPubSub, "pubsub").Child(nsPubSub, "subscription"); sub == nil || sub.A("subscription") != "subscribed" || sub.A("jid") != "carol@localhost" {
		t.Fatalf("subscribe result: %s", r)
	}
	carol.await("last item after subscribing", event("alice@localhost", nodeTune, "item", "t1"))
	carol.fails("set", "alice@localhost", ps("<subscribe node='"+nodeMood+"' jid='carol@localhost'/>"), "not-authorized", "presence-subscription-required")
	carol.fails("set", "alice@localhost", ps("<subscribe node='"+nodeTune+"' jid='bob@localhost'/>"), "bad-request", "invalid-jid")
	carol.fails("set", "alice@localhost", ps("<subscribe node='"+nodeTune+"'/>"), "bad-request", "jid-required")
	carol.fails("set", "alice@localhost", ps("<subscribe node='nope' jid='carol@localhost'/>"), "item-not-found", "")

	// bob is a contact with +notify and subscribed too: one notification.
	bob := pepLogin(t, e, "bob", "b")
	bInfo := capsInfo(nodeTune + "+notify")
	bob.answerCaps(bInfo, bob.presenceCaps(bInfo, ""))
	bob.await("last tune", event("alice@localhost", nodeTune, "item", "t1"))
	bob.ok("set", "alice@localhost", ps("<subscribe node='"+nodeTune+"' jid='bob@localhost/b'/>"))
	bob.await("last tune after subscribing", event("alice@localhost", nodeTune, "item", "t1"))

	alice.ok("set", "", publish(nodeTune, "t2", tune("Two"), ""))
	carol.await("notification to an explicit subscriber", event("alice@localhost", nodeTune, "item", "t2"))
	bob.await("notification", event("alice@localhost", nodeTune, "item", "t2"))
	bob.none("a second copy", event("alice@localhost", nodeTune, "item", "t2"))

	// The access model is checked at each notification.
	alice.ok("set", "", "<pubsub xmlns='"+nsPSOwner+"'><configure node='"+nodeTune+"'>"+publishOptions("http://jabber.org/protocol/pubsub#node_config", "pubsub#access_model", "presence")+"</configure></pubsub>")
	alice.ok("set", "", publish(nodeTune, "t3", tune("Three"), ""))
	bob.await("notification", event("alice@localhost", nodeTune, "item", "t3"))
	carol.none("notification after access was narrowed", anyEvent)

	alice.ok("set", "", "<pubsub xmlns='"+nsPSOwner+"'><configure node='"+nodeTune+"'>"+publishOptions("http://jabber.org/protocol/pubsub#node_config", "pubsub#access_model", "open")+"</configure></pubsub>")
	carol.ok("set", "alice@localhost", ps("<unsubscribe node='"+nodeTune+"' jid='carol@localhost'/>"))
	carol.fails("set", "alice@localhost", ps("<unsubscribe node='"+nodeTune+"' jid='carol@localhost'/>"), "unexpected-request", "not-subscribed")
	alice.ok("set", "", publish(nodeTune, "t4", tune("Four"), ""))
	bob.await("notification", event("alice@localhost", nodeTune, "item", "t4"))
	carol.none("notification after unsubscribing", anyEvent)

	// Subscribers hear of the deletion; the subscription goes with the node.
	carol.ok("set", "alice@localhost", ps("<subscribe node='"+nodeTune+"' jid='carol@localhost/c'/>"))
	carol.await("last item", event("alice@localhost", nodeTune, "item", "t4"))
	alice.ok("set", "", "<pubsub xmlns='"+nsPSOwner+"'><delete node='"+nodeTune+"'/></pubsub>")
	carol.await("deletion", event("alice@localhost", nodeTune, "delete", ""))
	alice.ok("set", "", publish(nodeTune, "t5", tune("Five"), openOpts))
	carol.none("event on the re-created node", anyEvent)
}
