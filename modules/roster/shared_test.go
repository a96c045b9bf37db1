package roster

import (
	"slices"
	"strings"
	"testing"

	"github.com/palisade-im/palisade/server/config"
	"github.com/palisade-im/palisade/server/module"
	"github.com/palisade-im/palisade/server/module/moduletest"
	"github.com/palisade-im/palisade/storage"
)

// The members of a shared group get each other as contacts with
// subscription both, see each other's presence at once, cannot remove the
// items, and lose them (push, unavailable presence) when they leave the
// group; a round whose members cannot be read changes nothing.
func TestSharedRoster(t *testing.T) {
	cfg := *DefaultConfig()
	cfg.SharedGroups = []string{"desk"}
	e := newEnvConfig(t, cfg)
	alice, bob, carol := moduletest.JID(t, "alice@example.com"), moduletest.JID(t, "bob@example.com"), moduletest.JID(t, "carol@example.com")
	// alice already had carol (her own item, subscription to).
	e.put("alice@example.com", storage.RosterItem{JID: "carol@example.com", Subscription: storage.SubTo, Name: "Carol"})
	a := e.online("alice@example.com/a")
	b := e.online("bob@example.com/b")
	take(a)
	take(b)
	e.processed()

	e.r.SetMembers("desk", alice, bob, moduletest.JID(t, "x@elsewhere.example"))
	e.m.ReconcileShared(e.ctx)
	for _, p := range [][2]string{{"alice@example.com", "bob@example.com"}, {"bob@example.com", "alice@example.com"}} {
		it, ok := e.item(p[0], p[1])
		if !ok || it.Subscription != storage.SubBoth || it.Shared != "desk" || !slices.Equal(it.Groups, []string{"desk"}) {
			t.Fatalf("%s's item for %s: %+v (exists %v)", p[0], p[1], it, ok)
		}
	}
	if _, ok := e.item("alice@example.com", "x@elsewhere.example"); ok {
		t.Fatal("a remote member got an item")
	}
	gotA := take(a)
	if !slices.ContainsFunc(gotA, func(s string) bool {
		return strings.HasPrefix(s, "push ") && strings.HasSuffix(s, " bob@example.com both group=desk")
	}) || !slices.Contains(gotA, "presence available bob@example.com/b > alice@example.com") {
		t.Fatalf("alice got %q", gotA)
	}
	if gotB := take(b); !slices.Contains(gotB, "presence available alice@example.com/a > bob@example.com") {
		t.Fatalf("bob got %q", gotB)
	}
	// A second round changes nothing.
	e.m.ReconcileShared(e.ctx)
	if got := take(a); len(got) != 0 {
		t.Fatalf("second round sent alice %q", got)
	}
	// The user cannot remove a shared item.
	_, err := e.iq(a, `<iq type='set' id='rm'><query xmlns='jabber:iq:roster'><item jid='bob@example.com' subscription='remove'/></query></iq>`)
	if condition(err) != "cancel/not-allowed" {
		t.Fatalf("removing a shared item: %v", err)
	}

	// The directory fails: nothing changes.
	e.r.ClearMembers("desk")
	e.m.ReconcileShared(e.ctx)
	if _, ok := e.item("alice@example.com", "bob@example.com"); !ok {
		t.Fatal("a failed member look-up removed items")
	}

	// bob leaves, carol joins: alice's own carol item becomes shared.
	e.r.SetMembers("desk", alice, carol)
	take(a)
	e.m.ReconcileShared(e.ctx)
	if _, ok := e.item("alice@example.com", "bob@example.com"); ok {
		t.Fatal("bob's item stayed after he left the group")
	}
	if _, ok := e.item("bob@example.com", "alice@example.com"); ok {
		t.Fatal("bob kept alice after he left the group")
	}
	it, _ := e.item("alice@example.com", "carol@example.com")
	if it.Subscription != storage.SubBoth || it.Shared != "desk" || it.Name != "Carol" {
		t.Fatalf("alice's carol item: %+v", it)
	}
	gotA = take(a)
	if !slices.Contains(gotA, "presence unavailable bob@example.com/b > alice@example.com") || !containsPrefix(gotA, "push ") {
		t.Fatalf("alice got %q", gotA)
	}
}

func containsPrefix(list []string, prefix string) bool {
	return slices.ContainsFunc(list, func(s string) bool { return strings.HasPrefix(s, prefix) })
}

// A shared group missing from [groups] is a configuration error that
// names the key (check-config and start-up).
func TestSharedGroupsMustBeDeclared(t *testing.T) {
	doc := "[groups]\nstaff = \"cn=staff,dc=example\"\n\n[modules.roster]\nshared_groups = [\"staff\", \"nope\"]\n"
	_, err := config.Parse("t.toml", []byte(doc), module.ConfigRegistry{})
	if err == nil || !strings.Contains(err.Error(), "modules.roster.shared_groups") || !strings.Contains(err.Error(), `"nope"`) {
		t.Fatalf("err = %v", err)
	}
	if _, err := config.Parse("t.toml", []byte(strings.Replace(doc, `, "nope"`, "", 1)), module.ConfigRegistry{}); err != nil {
		t.Fatalf("declared group refused: %v", err)
	}
}

// Shared items do not count against max_items, in either direction.
func TestSharedItemsOutsideMaxItems(t *testing.T) {
	cfg := *DefaultConfig()
	cfg.SharedGroups, cfg.MaxItems = []string{"desk"}, 1
	e := newEnvConfig(t, cfg)
	alice := moduletest.JID(t, "alice@example.com")
	e.r.SetMembers("desk", alice, moduletest.JID(t, "bob@example.com"), moduletest.JID(t, "carol@example.com"))
	e.m.ReconcileShared(e.ctx)
	for _, c := range []string{"bob@example.com", "carol@example.com"} {
		if _, ok := e.item("alice@example.com", c); !ok {
			t.Fatalf("shared item %s missing with max_items = 1", c)
		}
	}
	a := e.online("alice@example.com/a")
	if _, err := e.iq(a, `<iq type='set' id='s1'><query xmlns='jabber:iq:roster'><item jid='juliet@example.com'/></query></iq>`); err != nil {
		t.Fatalf("her own first item refused beside two shared ones: %v", err)
	}
	if _, err := e.iq(a, `<iq type='set' id='s2'><query xmlns='jabber:iq:roster'><item jid='romeo@example.net'/></query></iq>`); condition(err) != "cancel/not-allowed" {
		t.Fatalf("her second own item: %v, want not-allowed (max_items 1)", err)
	}
}
