package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/palisade-im/palisade/storage"
)

func pepConfig(max int) storage.NodeConfig {
	return storage.NodeConfig{AccessModel: storage.AccessPresence, MaxItems: max, PersistItems: true,
		SendLastPublished: storage.SendLastOnSubAndPresence, NotifyRetract: true}
}

func itemIDs(items []storage.PubSubItem) []string {
	var out []string
	for _, it := range items {
		out = append(out, it.ID)
	}
	return out
}

func TestPubSubPublishAutoCreateAndTrim(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	const owner, node = "alice@example.com", "urn:xmpp:tmp"
	cfg := pepConfig(2)
	if _, err := s.PublishItem(ctx, owner, node, storage.PubSubItem{ID: "a"}, nil, storage.PubSubQuota{}); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("publish without create to a missing node: %v, want ErrNotFound", err)
	}
	for i, id := range []string{"a", "b", "c"} {
		created, err := s.PublishItem(ctx, owner, node, storage.PubSubItem{ID: id, Publisher: owner + "/r", Payload: []byte("<x>" + id + "</x>")}, &cfg, storage.PubSubQuota{})
		if err != nil {
			t.Fatal(err)
		}
		if created != (i == 0) {
			t.Errorf("publish %s: created = %v", id, created)
		}
	}
	items, err := s.Items(ctx, owner, node, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := itemIDs(items); !slices.Equal(got, []string{"c", "b"}) {
		t.Fatalf("items after 3 publishes with max_items 2 = %v, want [c b]", got)
	}
	if string(items[0].Payload) != "<x>c</x>" || items[0].Publisher != owner+"/r" || time.Since(items[0].Published) > time.Minute {
		t.Errorf("item c = %+v", items[0])
	}
	// Republishing an ID makes it the newest and replaces its payload.
	if _, err := s.PublishItem(ctx, owner, node, storage.PubSubItem{ID: "b", Payload: []byte("<x>b2</x>")}, &cfg, storage.PubSubQuota{}); err != nil {
		t.Fatal(err)
	}
	items, _ = s.Items(ctx, owner, node, 1, nil)
	if len(items) != 1 || items[0].ID != "b" || string(items[0].Payload) != "<x>b2</x>" {
		t.Fatalf("newest after republish = %+v", items)
	}
	items, _ = s.Items(ctx, owner, node, 0, []string{"c", "zz", "b", "c"})
	if got := itemIDs(items); !slices.Equal(got, []string{"c", "b"}) {
		t.Errorf("items by id = %v, want [c b]", got)
	}
	// Lowering max_items trims at once; persist_items false keeps nothing.
	cfg.MaxItems = 1
	if err := s.ConfigureNode(ctx, owner, node, cfg); err != nil {
		t.Fatal(err)
	}
	items, _ = s.Items(ctx, owner, node, 0, nil)
	if got := itemIDs(items); !slices.Equal(got, []string{"b"}) {
		t.Errorf("items after max_items 1 = %v", got)
	}
	cfg.PersistItems = false
	if err := s.ConfigureNode(ctx, owner, node, cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PublishItem(ctx, owner, node, storage.PubSubItem{ID: "d"}, nil, storage.PubSubQuota{}); err != nil {
		t.Fatal(err)
	}
	if items, _ = s.Items(ctx, owner, node, 0, nil); len(items) != 0 {
		t.Errorf("transient node holds %v", itemIDs(items))
	}
}

func TestPubSubNodes(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	const owner = "alice@example.com"
	cfg := pepConfig(5)
	cfg.AccessModel = storage.AccessRoster
	cfg.RosterGroupsAllowed = []string{"Friends", "Work"}
	for _, name := range []string{"n2", "n1"} {
		if err := s.CreateNode(ctx, storage.PubSubNode{Owner: owner, Name: name, Config: cfg}, 2); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.CreateNode(ctx, storage.PubSubNode{Owner: owner, Name: "n1", Config: cfg}, 0); !errors.Is(err, storage.ErrExists) {
		t.Errorf("duplicate node: %v", err)
	}
	if err := s.CreateNode(ctx, storage.PubSubNode{Owner: owner, Name: "n3", Config: cfg}, 2); !errors.Is(err, storage.ErrQuota) {
		t.Errorf("third node with max 2: %v", err)
	}
	if _, err := s.PublishItem(ctx, owner, "n3", storage.PubSubItem{ID: "x"}, &cfg, storage.PubSubQuota{MaxNodes: 2}); !errors.Is(err, storage.ErrQuota) {
		t.Errorf("auto-create past max: %v", err)
	}
	nodes, err := s.Nodes(ctx, owner)
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes) != 2 || nodes[0].Name != "n1" || nodes[1].Name != "n2" {
		t.Fatalf("nodes = %+v", nodes)
	}
	n, err := s.Node(ctx, owner, "n1")
	if err != nil {
		t.Fatal(err)
	}
	if n.Config.AccessModel != storage.AccessRoster || !slices.Equal(n.Config.RosterGroupsAllowed, cfg.RosterGroupsAllowed) ||
		n.Config.MaxItems != 5 || !n.Config.PersistItems || !n.Config.NotifyRetract || n.Config.SendLastPublished != storage.SendLastOnSubAndPresence {
		t.Errorf("node config = %+v", n.Config)
	}
	if _, err := s.Node(ctx, "bob@example.com", "n1"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("other owner's node: %v", err)
	}
	if err := s.ConfigureNode(ctx, owner, "missing", cfg); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("configure missing: %v", err)
	}
	if _, err := s.PublishItem(ctx, owner, "n1", storage.PubSubItem{ID: "i"}, nil, storage.PubSubQuota{}); err != nil {
		t.Fatal(err)
	}
	if err := s.RetractItem(ctx, owner, "n1", "nope"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("retract missing item: %v", err)
	}
	if err := s.RetractItem(ctx, owner, "n1", "i"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteNode(ctx, owner, "n1"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteNode(ctx, owner, "n1"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("delete twice: %v", err)
	}
	if _, err := s.Items(ctx, owner, "n1", 0, nil); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("items of deleted node: %v", err)
	}
}

func TestPubSubDeleteUserAndReopen(t *testing.T) {
	ctx := context.Background()
	s, path := openTest(t)
	if err := s.CreateUser(ctx, storage.User{Localpart: "alice", Domain: "example.com", SCRAM: creds(1)}); err != nil {
		t.Fatal(err)
	}
	cfg := pepConfig(3)
	for _, owner := range []string{"alice@example.com", "bob@example.com"} {
		if _, err := s.PublishItem(ctx, owner, "urn:xmpp:avatar:metadata", storage.PubSubItem{ID: "1", Payload: []byte("<m/>")}, &cfg, storage.PubSubQuota{}); err != nil {
			t.Fatal(err)
		}
	}
	// Durable: a second store on the same file sees the items.
	s2, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	items, err := s2.Items(ctx, "alice@example.com", "urn:xmpp:avatar:metadata", 0, nil)
	s2.Close()
	if err != nil || len(items) != 1 {
		t.Fatalf("reopened: %v, %v", items, err)
	}
	if err := s.DeleteUser(ctx, "alice", "example.com"); err != nil {
		t.Fatal(err)
	}
	if nodes, err := s.Nodes(ctx, "alice@example.com"); err != nil || len(nodes) != 0 {
		t.Errorf("nodes after DeleteUser: %v, %v", nodes, err)
	}
	var n int
	if err := s.rd.QueryRow(`SELECT count(*) FROM pubsub_items WHERE owner = 'alice@example.com'`).Scan(&n); err != nil || n != 0 {
		t.Errorf("items left after DeleteUser: %d, %v", n, err)
	}
	if nodes, _ := s.Nodes(ctx, "bob@example.com"); len(nodes) != 1 {
		t.Errorf("bob's nodes = %v", nodes)
	}
}

func TestPubSubSubscriptions(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	const owner, node = "alice@example.com", "urn:n"
	if err := s.Subscribe(ctx, owner, node, "bob@example.com", "bob@example.com", 0); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("subscribe to a missing node: %v", err)
	}
	cfg := pepConfig(1)
	if err := s.CreateNode(ctx, storage.PubSubNode{Owner: owner, Name: node, Config: cfg}, 0); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateNode(ctx, storage.PubSubNode{Owner: owner, Name: "urn:m", Config: cfg}, 0); err != nil {
		t.Fatal(err)
	}
	for _, j := range []string{"bob@example.com/phone", "bob@example.com", "bob@example.com"} {
		if err := s.Subscribe(ctx, owner, node, j, "bob@example.com", 2); err != nil {
			t.Fatalf("subscribe %s: %v", j, err)
		}
	}
	if err := s.Subscribe(ctx, owner, "urn:m", "bob@example.com", "bob@example.com", 2); !errors.Is(err, storage.ErrQuota) {
		t.Errorf("third subscription with max 2: %v", err)
	}
	if err := s.Subscribe(ctx, owner, "urn:m", "carol@example.com", "carol@example.com", 2); err != nil {
		t.Fatal(err)
	}
	subs, err := s.Subscribers(ctx, owner, node)
	if err != nil || !slices.Equal(subs, []string{"bob@example.com", "bob@example.com/phone"}) {
		t.Fatalf("subscribers = %v, %v", subs, err)
	}
	if err := s.Unsubscribe(ctx, owner, node, "bob@example.com/phone"); err != nil {
		t.Fatal(err)
	}
	if err := s.Unsubscribe(ctx, owner, node, "bob@example.com/phone"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("unsubscribe twice: %v", err)
	}
	// Deleting the node drops its subscriptions; deleting the subscriber's
	// account drops theirs elsewhere.
	if err := s.DeleteNode(ctx, owner, node); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateNode(ctx, storage.PubSubNode{Owner: owner, Name: node, Config: cfg}, 0); err != nil {
		t.Fatal(err)
	}
	if subs, _ := s.Subscribers(ctx, owner, node); len(subs) != 0 {
		t.Errorf("subscriptions survived node deletion: %v", subs)
	}
	if err := s.CreateUser(ctx, storage.User{Localpart: "carol", Domain: "example.com", SCRAM: creds(3)}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteUser(ctx, "carol", "example.com"); err != nil {
		t.Fatal(err)
	}
	if subs, _ := s.Subscribers(ctx, owner, "urn:m"); len(subs) != 0 {
		t.Errorf("deleted account still subscribed: %v", subs)
	}
}

// The byte quotas count the stored payloads after replacement and
// rotation; a publish over one changes nothing; the node quota names
// itself.
func TestPubSubQuotas(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	const owner = "alice@example.com"
	pub := func(node, id string, n int, q storage.PubSubQuota) error {
		cfg := pepConfig(3)
		_, err := s.PublishItem(ctx, owner, node, storage.PubSubItem{ID: id, Payload: make([]byte, n)}, &cfg, q)
		return err
	}
	quota := func(err error) string {
		var qe *storage.QuotaError
		if !errors.As(err, &qe) || !errors.Is(err, storage.ErrQuota) {
			return "not a quota error: " + fmt.Sprint(err)
		}
		return qe.Quota
	}
	q := storage.PubSubQuota{MaxNodes: 2, MaxNodeBytes: 300, MaxBytes: 500}
	for _, id := range []string{"a", "b", "c"} {
		if err := pub("n1", id, 100, q); err != nil {
			t.Fatal(err)
		}
	}
	// Rotation: d replaces a as the node keeps three.
	if err := pub("n1", "d", 100, q); err != nil {
		t.Errorf("rotation: %v", err)
	}
	if err := pub("n1", "b", 101, q); quota(err) != storage.QuotaNodeBytes {
		t.Errorf("node over 300: %s", quota(err))
	}
	if err := pub("n1", "b", 99, q); err != nil {
		t.Errorf("smaller replacement: %v", err)
	}
	if err := pub("n2", "x", 202, q); quota(err) != storage.QuotaBytes {
		t.Errorf("account over 500: %s", quota(err))
	}
	if _, err := s.Node(ctx, owner, "n2"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("refused publish created its node: %v", err)
	}
	if err := pub("n2", "x", 200, q); err != nil {
		t.Errorf("account at 499: %v", err)
	}
	if err := pub("n3", "x", 1, q); quota(err) != storage.QuotaCount {
		t.Errorf("third node: %s", quota(err))
	}
	if n, err := s.PubSubBytes(ctx, owner); err != nil || n != 499 {
		t.Errorf("bytes %d, %v; want 499", n, err)
	}
	refs, err := s.ItemRefs(ctx, owner, "n1")
	if err != nil || fmt.Sprint(refs) != "[{c 100} {d 100} {b 99}]" {
		t.Errorf("refs %v, %v", refs, err)
	}
	if err := s.RetractItem(ctx, owner, "n1", "c"); err != nil {
		t.Fatal(err)
	}
	if n, _ := s.PubSubBytes(ctx, owner); n != 399 {
		t.Errorf("after retract %d, want 399", n)
	}
	if _, err := s.ItemRefs(ctx, owner, "nope"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("refs of a missing node: %v", err)
	}
}

// PutPrivate stores all entries or none, counts a replaced key once and
// leaves exempt keys out; shrinking is allowed over a lowered quota.
func TestPutPrivateQuota(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	const u = "alice@example.com"
	if err := s.SetPrivate(ctx, u, "vcard", make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	q := storage.PrivateQuota{MaxItems: 2, MaxBytes: 100, Exempt: []string{"vcard"}}
	put := func(q storage.PrivateQuota, e ...storage.PrivateEntry) error { return s.PutPrivate(ctx, u, e, q) }
	if err := put(q, storage.PrivateEntry{Key: "a", Data: make([]byte, 50)}, storage.PrivateEntry{Key: "b", Data: make([]byte, 50)}); err != nil {
		t.Fatal(err)
	}
	if err := put(q, storage.PrivateEntry{Key: "a", Data: make([]byte, 40)}, storage.PrivateEntry{Key: "c", Data: []byte("x")}); !errors.Is(err, storage.ErrQuota) {
		t.Errorf("third key: %v", err)
	}
	if got, _ := s.GetPrivate(ctx, u, "a"); len(got) != 50 {
		t.Errorf("refused request changed a: %d bytes", len(got))
	}
	if err := put(q, storage.PrivateEntry{Key: "a", Data: make([]byte, 51)}); !errors.Is(err, storage.ErrQuota) {
		t.Errorf("101 bytes: %v", err)
	}
	if err := put(q, storage.PrivateEntry{Key: "a", Data: make([]byte, 49)}); err != nil {
		t.Errorf("replace smaller: %v", err)
	}
	low := storage.PrivateQuota{MaxItems: 1, MaxBytes: 10, Exempt: []string{"vcard"}}
	if err := put(low, storage.PrivateEntry{Key: "b", Data: make([]byte, 30)}); err != nil {
		t.Errorf("shrink over a lowered quota: %v", err)
	}
	if err := put(low, storage.PrivateEntry{Key: "a"}); err != nil {
		t.Errorf("delete over a lowered quota: %v", err)
	}
}

// Migration 9 gives items stored before it their sizes and nodes their
// sums, so that the quotas count what was already there.
func TestPubSubMigrationCountsStoredItems(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "palisade.db")
	db, err := sql.Open("sqlite3", "file:"+path+"?_txlock=immediate")
	if err != nil {
		t.Fatal(err)
	}
	if err := migrateDB(ctx, db, migrations[:8]); err != nil {
		t.Fatal(err)
	}
	const owner = "alice@example.com"
	for _, n := range []string{"a", "b"} {
		if _, err := db.ExecContext(ctx, `INSERT INTO pubsub_nodes (owner, node, access_model, roster_groups, max_items, persist_items, send_last, notify_retract, created)
			VALUES (?, ?, 'presence', '[]', 10, 1, 'never', 1, 0)`, owner, n); err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			if _, err := db.ExecContext(ctx, `INSERT INTO pubsub_items (owner, node, item_id, publisher, published, payload) VALUES (?, ?, ?, '', 0, ?)`,
				owner, n, strconv.Itoa(i), make([]byte, 100)); err != nil {
				t.Fatal(err)
			}
		}
	}
	db.Close()
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if n, err := s.PubSubBytes(ctx, owner); err != nil || n != 600 {
		t.Errorf("bytes after migration %d, %v; want 600", n, err)
	}
	cfg := pepConfig(10)
	_, err = s.PublishItem(ctx, owner, "a", storage.PubSubItem{ID: "new", Payload: make([]byte, 1)}, &cfg, storage.PubSubQuota{MaxNodeBytes: 300})
	if !errors.Is(err, storage.ErrQuota) {
		t.Errorf("publish past the stored 300 bytes: %v", err)
	}
}
