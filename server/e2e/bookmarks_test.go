package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/palisade-im/palisade/storage"
)

const (
	nsBookmarks2     = "urn:xmpp:bookmarks:1"
	nsLegacyBookmark = "storage:bookmarks"
	nsPrivate        = "jabber:iq:private"
)

// bookmarkClients logs in alice twice: "poezio" uses private XML only,
// "converse" wants notifications of both PEP bookmark nodes.
func bookmarkClients(t *testing.T) (e *env, poezio, converse *pc) {
	e = pepEnv(t)
	poezio = pepLogin(t, e, "alice", "poezio")
	poezio.available(0)
	converse = pepLogin(t, e, "alice", "converse")
	info := capsInfo(nsBookmarks2+"+notify", nsLegacyBookmark+"+notify")
	converse.answerCaps(info, converse.presenceCaps(info, ""))
	converse.ok("get", domain, "<query xmlns='"+nsDiscoI+"'/>")
	return e, poezio, converse
}

// nativeItems returns alice's XEP-0402 items by id.
func nativeItems(c *pc) map[string]*Node {
	c.t.Helper()
	r := c.ok("get", "", "<pubsub xmlns='"+nsPubSub+"'><items node='"+nsBookmarks2+"'/></pubsub>")
	out := map[string]*Node{}
	for _, it := range r.Child(nsPubSub, "pubsub").Child(nsPubSub, "items").Nodes {
		if it.Is(nsPubSub, "item") {
			out[it.A("id")] = it.Child(nsBookmarks2, "conference")
		}
	}
	return out
}

// legacyConferences returns the conferences of a <storage/> by room JID.
func legacyConferences(st *Node) map[string]*Node {
	out := map[string]*Node{}
	if st == nil {
		return out
	}
	for _, c := range st.Nodes {
		if c.Is(nsLegacyBookmark, "conference") {
			out[c.A("jid")] = c
		}
	}
	return out
}

func privateBookmarks(c *pc) map[string]*Node {
	c.t.Helper()
	r := c.ok("get", "", "<query xmlns='"+nsPrivate+"'><storage xmlns='"+nsLegacyBookmark+"'/></query>")
	return legacyConferences(r.Child(nsPrivate, "query").Child(nsLegacyBookmark, "storage"))
}

func legacyPEPBookmarks(c *pc) map[string]*Node {
	c.t.Helper()
	r := c.ok("get", "", "<pubsub xmlns='"+nsPubSub+"'><items node='"+nsLegacyBookmark+"'/></pubsub>")
	items := r.Child(nsPubSub, "pubsub").Child(nsPubSub, "items")
	it := items.Child(nsPubSub, "item")
	if it == nil || it.A("id") != "current" {
		c.t.Fatalf("storage:bookmarks node without item 'current': %s", r)
	}
	return legacyConferences(it.Child(nsLegacyBookmark, "storage"))
}

const owner = "alice@localhost"

func TestBookmarksPrivateToPEP(t *testing.T) {
	t.Parallel()
	_, poezio, converse := bookmarkClients(t)

	poezio.ok("set", "", "<query xmlns='"+nsPrivate+"'><storage xmlns='"+nsLegacyBookmark+"'>"+
		"<conference jid='coven@chat.localhost' name='The Coven' autojoin='true'><nick>alice</nick><password>pw1</password>"+
		"<state xmlns='urn:example:ext'>kept</state></conference>"+
		"<conference jid='lobby@chat.localhost'/>"+
		"<url name='Site' url='https://example.org/'/></storage></query>")

	// Converse is told of both rooms on the XEP-0402 node, and of the
	// XEP-0048 PEP document.
	converse.await("coven notification", event(owner, nsBookmarks2, "item", "coven@chat.localhost"))
	converse.await("lobby notification", event(owner, nsBookmarks2, "item", "lobby@chat.localhost"))
	converse.await("legacy notification", event(owner, nsLegacyBookmark, "item", "current"))
	// No loop: the converted writes are not converted back (each view
	// was written once).
	converse.none("second notification", anyEvent)

	items := nativeItems(converse)
	if len(items) != 2 {
		t.Fatalf("XEP-0402 items: %v", items)
	}
	c := items["coven@chat.localhost"]
	if c == nil || c.A("name") != "The Coven" || c.A("autojoin") != "true" ||
		c.Child(nsBookmarks2, "nick").Text != "alice" || c.Child(nsBookmarks2, "password").Text != "pw1" {
		t.Fatalf("coven: %s", c)
	}
	if x := c.Child(nsBookmarks2, "extensions"); x == nil || x.Child("urn:example:ext", "state") == nil {
		t.Errorf("coven extensions lost: %s", c)
	}
	if l := items["lobby@chat.localhost"]; l == nil || l.A("autojoin") == "true" {
		t.Errorf("lobby: %s", l)
	}
	legacy := legacyPEPBookmarks(converse)
	if len(legacy) != 2 || legacy["coven@chat.localhost"].Child(nsLegacyBookmark, "nick").Text != "alice" {
		t.Errorf("storage:bookmarks PEP: %v", legacy)
	}
	// The private document is what poezio stored, unchanged (no loop).
	priv := poezio.ok("get", "", "<query xmlns='"+nsPrivate+"'><storage xmlns='"+nsLegacyBookmark+"'/></query>")
	if !strings.Contains(priv.String(), "https://example.org/") || len(privateBookmarks(poezio)) != 2 {
		t.Errorf("private document changed: %s", priv)
	}

	// Deleting a bookmark in private XML retracts it from XEP-0402.
	poezio.ok("set", "", "<query xmlns='"+nsPrivate+"'><storage xmlns='"+nsLegacyBookmark+"'>"+
		"<conference jid='lobby@chat.localhost'/></storage></query>")
	converse.await("coven retraction", event(owner, nsBookmarks2, "retract", "coven@chat.localhost"))
	converse.await("legacy notification", event(owner, nsLegacyBookmark, "item", "current"))
	converse.none("lobby republished", event(owner, nsBookmarks2, "item", ""))
	if items := nativeItems(converse); len(items) != 1 || items["lobby@chat.localhost"] == nil {
		t.Errorf("after deletion: %v", items)
	}
}

func TestBookmarksPEPToPrivate(t *testing.T) {
	t.Parallel()
	_, poezio, converse := bookmarkClients(t)

	converse.ok("set", "", publish(nsBookmarks2, "orchard@chat.localhost",
		"<conference xmlns='"+nsBookmarks2+"' name='Orchard' autojoin='1'><nick>al</nick></conference>",
		"<publish-options>"+publishOptions(nsPubSub+"#publish-options", "pubsub#persist_items", "true", "pubsub#access_model", "whitelist")+"</publish-options>"))
	converse.await("own notification", event(owner, nsBookmarks2, "item", "orchard@chat.localhost"))
	converse.await("legacy notification", event(owner, nsLegacyBookmark, "item", "current"))
	converse.none("converted back", event(owner, nsBookmarks2, "item", ""))

	priv := privateBookmarks(poezio)
	o := priv["orchard@chat.localhost"]
	if len(priv) != 1 || o == nil || o.A("name") != "Orchard" || o.A("autojoin") != "true" || o.Child(nsLegacyBookmark, "nick").Text != "al" {
		t.Fatalf("private bookmarks: %v", priv)
	}

	// A XEP-0048 PEP client (storage:bookmarks) replaces the list: the
	// other two views follow.
	converse.ok("set", "", publish(nsLegacyBookmark, "current",
		"<storage xmlns='"+nsLegacyBookmark+"'><conference jid='garden@chat.localhost' name='Garden'/></storage>",
		"<publish-options>"+publishOptions(nsPubSub+"#publish-options", "pubsub#access_model", "whitelist")+"</publish-options>"))
	converse.await("garden", event(owner, nsBookmarks2, "item", "garden@chat.localhost"))
	converse.await("orchard retraction", event(owner, nsBookmarks2, "retract", "orchard@chat.localhost"))
	priv = privateBookmarks(poezio)
	if len(priv) != 1 || priv["garden@chat.localhost"] == nil {
		t.Fatalf("private after storage:bookmarks publish: %v", priv)
	}

	// Retracting the XEP-0402 item empties the other views.
	converse.ok("set", "", "<pubsub xmlns='"+nsPubSub+"'><retract node='"+nsBookmarks2+"' notify='true'><item id='garden@chat.localhost'/></retract></pubsub>")
	converse.await("retraction", event(owner, nsBookmarks2, "retract", "garden@chat.localhost"))
	converse.await("legacy notification", event(owner, nsLegacyBookmark, "item", "current"))
	if priv := privateBookmarks(poezio); len(priv) != 0 {
		t.Errorf("private after retraction: %v", priv)
	}
	if l := legacyPEPBookmarks(converse); len(l) != 0 {
		t.Errorf("storage:bookmarks after retraction: %v", l)
	}
}

func TestBookmarksCompatAdvertised(t *testing.T) {
	t.Parallel()
	e := pepEnv(t)
	alice := pepLogin(t, e, "alice", "a")
	r := alice.ok("get", owner, "<query xmlns='"+nsDiscoI+"'/>")
	have := map[string]bool{}
	for _, f := range r.Child(nsDiscoI, "query").Nodes {
		if f.Is(nsDiscoI, "feature") {
			have[f.A("var")] = true
		}
	}
	for _, f := range []string{nsBookmarks2 + "#compat", nsBookmarks2 + "#compat-pep"} {
		if !have[f] {
			t.Errorf("account disco#info lacks %s: %s", f, r)
		}
	}
}

// Bookmarks saved before the views were kept in step (only one view
// holds them) appear in the others once the owner logs in.
func TestBookmarksMigratedAtLogin(t *testing.T) {
	t.Parallel()
	e := pepEnv(t)
	ctx := context.Background()
	doc := "<storage xmlns='storage:bookmarks'><conference jid='old@chat.localhost' name='Old' autojoin='true'><nick>a</nick></conference></storage>"
	if err := e.store.SetPrivate(ctx, "alice@localhost", "storage:bookmarks storage", []byte(doc)); err != nil {
		t.Fatal(err)
	}
	item := storage.PubSubItem{ID: "native@chat.localhost", Publisher: "bob@localhost/x", Published: time.Now(),
		Payload: []byte("<conference xmlns='urn:xmpp:bookmarks:1' name='Native'/>")}
	cfg := storage.NodeConfig{AccessModel: storage.AccessWhitelist, MaxItems: 10, PersistItems: true, SendLastPublished: storage.SendLastNever}
	if _, err := e.store.PublishItem(ctx, "bob@localhost", nsBookmarks2, item, &cfg, storage.PubSubQuota{}); err != nil {
		t.Fatal(err)
	}

	alice := pepLogin(t, e, "alice", "a")
	if items := nativeItems(alice); len(items) != 1 || items["old@chat.localhost"].A("name") != "Old" {
		t.Errorf("alice's XEP-0402 items: %v", items)
	}
	if l := legacyPEPBookmarks(alice); len(l) != 1 || l["old@chat.localhost"] == nil {
		t.Errorf("alice's storage:bookmarks: %v", l)
	}
	bob := pepLogin(t, e, "bob", "b")
	if p := privateBookmarks(bob); len(p) != 1 || p["native@chat.localhost"].A("name") != "Native" {
		t.Errorf("bob's private bookmarks: %v", p)
	}
}

// A XEP-0402 node the client made readable by its contacts is not filled
// with bookmarks saved privately (room passwords would leak).
func TestBookmarksNotCopiedIntoReadableNode(t *testing.T) {
	t.Parallel()
	e := pepEnv(t)
	befriend(t, e, "alice", "bob")
	alice := pepLogin(t, e, "alice", "a")
	alice.ok("set", "", publish(nsBookmarks2, "public@chat.localhost", "<conference xmlns='"+nsBookmarks2+"'/>", ""))
	alice.ok("set", "", "<query xmlns='"+nsPrivate+"'><storage xmlns='"+nsLegacyBookmark+"'>"+
		"<conference jid='secret@chat.localhost'><password>hunter2</password></conference></storage></query>")
	bob := pepLogin(t, e, "bob", "b")
	r := bob.ok("get", owner, "<pubsub xmlns='"+nsPubSub+"'><items node='"+nsBookmarks2+"'/></pubsub>")
	if strings.Contains(r.String(), "hunter2") || strings.Contains(r.String(), "secret@chat.localhost") {
		t.Errorf("a private bookmark reached a contact: %s", r)
	}
}
