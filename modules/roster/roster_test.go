package roster

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/palisade-im/palisade/server/element"
	"github.com/palisade-im/palisade/server/module"
	"github.com/palisade-im/palisade/server/module/moduletest"
	"github.com/palisade-im/palisade/server/stanza"
	"github.com/palisade-im/palisade/storage"
)

func items(q *element.Element) []string {
	var out []string
	for _, it := range q.Elements() {
		out = append(out, itemSummary(it))
	}
	return out
}

func condition(err error) string {
	var se *stanza.Error
	if errors.As(err, &se) {
		return string(se.Type) + "/" + string(se.Condition)
	}
	if err == nil {
		return "ok"
	}
	return "other: " + err.Error()
}

// TestRosterGet is RFC 6121 2.2 (retrieving the roster on login).
func TestRosterGet(t *testing.T) {
	e := newEnv(t)
	e.put(juliet, storage.RosterItem{JID: "romeo@example.net", Name: "Romeo", Subscription: storage.SubBoth, Groups: []string{"Friends"}})
	e.put(juliet, storage.RosterItem{JID: "mercutio@example.com", Name: "Mercutio", Subscription: storage.SubFrom})
	e.put(juliet, storage.RosterItem{JID: "benvolio@example.net", Name: "Benvolio", Subscription: storage.SubBoth})
	s := e.login(juliet + "/balcony")
	if s.RosterRequested() {
		t.Fatal("interested before asking")
	}
	// C: <iq from='juliet@example.com/balcony' id='hu2bac18' type='get'>
	//      <query xmlns='jabber:iq:roster'/>
	//    </iq>
	q, err := e.iq(s, `<iq id='hu2bac18' type='get'><query xmlns='jabber:iq:roster'/></iq>`)
	if err != nil {
		t.Fatal(err)
	}
	if q.Space != NSRoster || q.Local != "query" || q.Attr("ver") != "3" {
		t.Errorf("result %s", q)
	}
	want := []string{
		"benvolio@example.net both name=Benvolio",
		"mercutio@example.com from name=Mercutio",
		"romeo@example.net both name=Romeo group=Friends",
	}
	if got := items(q); !slices.Equal(got, want) {
		t.Errorf("items %q, want %q", got, want)
	}
	if !s.RosterRequested() {
		t.Error("the session is not marked interested (RFC 6121 2.2)")
	}
}

// TestRosterSetPushRemove is RFC 6121 2.3 (add), 2.4 (update) and 2.5
// (delete) with the roster pushes of 2.1.6.
func TestRosterSetPushRemove(t *testing.T) {
	e := newEnv(t)
	balcony := e.online(juliet + "/balcony")
	chamber := e.online(juliet + "/chamber")
	uninterested := e.login(juliet + "/car")
	take(balcony)
	take(chamber)

	// 2.3.1: C: <iq from='juliet@example.com/balcony' id='ph1xaz53' type='set'>
	//             <query xmlns='jabber:iq:roster'>
	//               <item jid='nurse@example.com' name='Nurse'><group>Servants</group></item>
	//             </query></iq>
	res, err := e.iq(balcony, `<iq id='ph1xaz53' type='set'><query xmlns='jabber:iq:roster'>
		<item jid='nurse@example.com' name='Nurse'><group>Servants</group></item></query></iq>`)
	if err != nil || res != nil {
		t.Fatalf("set = %v, %v; want an empty result", res, err)
	}
	// 2.3.2: the push goes to every interested resource, the setter included.
	want := []string{"push 1 nurse@example.com none name=Nurse group=Servants"}
	for _, s := range []*moduletest.Session{balcony, chamber} {
		got := s.Take()
		if !slices.Equal(summaries(got), want) {
			t.Errorf("%s got %q, want %q", s.JID(), summaries(got), want)
			continue
		}
		if got[0].Type != "set" || got[0].ID == "" || !got[0].To.Equal(s.JID()) {
			t.Errorf("push %s", got[0].El)
		}
	}
	if got := take(uninterested); len(got) != 0 {
		t.Errorf("uninterested resource got %q", got)
	}

	// 2.4: update; the subscription attribute of a set is ignored.
	if _, err := e.iq(chamber, `<iq type='set' id='a'><query xmlns='jabber:iq:roster'>
		<item jid='nurse@example.com' name='Nurse' subscription='both' ask='subscribe' approved='true'>
		<group>Servants</group><group>Friends</group></item></query></iq>`); err != nil {
		t.Fatal(err)
	}
	want = []string{"push 2 nurse@example.com none name=Nurse group=Servants group=Friends"}
	if got := take(balcony); !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	take(chamber)

	// 2.5.1: C: <iq from='juliet@example.com/balcony' id='hm4hs97y' type='set'>
	//             <query xmlns='jabber:iq:roster'>
	//               <item jid='nurse@example.com' subscription='remove'/>
	if _, err := e.iq(balcony, `<iq id='hm4hs97y' type='set'><query xmlns='jabber:iq:roster'>
		<item jid='nurse@example.com' subscription='remove'/></query></iq>`); err != nil {
		t.Fatal(err)
	}
	want = []string{"push 3 nurse@example.com remove"}
	for _, s := range []*moduletest.Session{balcony, chamber} {
		if got := take(s); !slices.Equal(got, want) {
			t.Errorf("%s got %q, want %q", s.JID(), got, want)
		}
	}
	// 2.5.3: removing an item that is not there.
	_, err = e.iq(balcony, `<iq id='x' type='set'><query xmlns='jabber:iq:roster'>
		<item jid='nurse@example.com' subscription='remove'/></query></iq>`)
	if got := condition(err); got != "cancel/item-not-found" {
		t.Errorf("second remove: %s", got)
	}
}

// TestRosterVersioning is RFC 6121 2.6 (XEP-0237).
func TestRosterVersioning(t *testing.T) {
	e := newEnv(t)
	s := e.login(juliet + "/balcony")
	// 2.6.3: a client without a cache asks with an empty ver.
	q, err := e.iq(s, `<iq type='get' id='a'><query xmlns='jabber:iq:roster' ver=''/></iq>`)
	if err != nil || q == nil || q.Attr("ver") != "0" || len(q.Elements()) != 0 {
		t.Fatalf("empty roster = %v, %v", q, err)
	}
	e.iq(s, `<iq type='set' id='b'><query xmlns='jabber:iq:roster'><item jid='romeo@example.net' name='Romeo'/></query></iq>`)
	pushes := take(s)
	if !slices.Equal(pushes, []string{"push 1 romeo@example.net none name=Romeo"}) {
		t.Errorf("push %q", pushes)
	}
	// The cached version is current: an empty result.
	q, err = e.iq(s, `<iq type='get' id='c'><query xmlns='jabber:iq:roster' ver='1'/></iq>`)
	if err != nil || q != nil {
		t.Errorf("current version: %v, %v; want an empty result", q, err)
	}
	// A stale version gets the whole roster with the new version.
	q, err = e.iq(s, `<iq type='get' id='d'><query xmlns='jabber:iq:roster' ver='0'/></iq>`)
	if err != nil || q.Attr("ver") != "1" || !slices.Equal(items(q), []string{"romeo@example.net none name=Romeo"}) {
		t.Errorf("stale version: %v, %v", q, err)
	}
}

// TestRosterSetErrors covers RFC 6121 2.3.3 and 2.1.5.
func TestRosterSetErrors(t *testing.T) {
	long := strings.Repeat("x", 1024)
	for _, tc := range []struct {
		name, query, want string
	}{
		{"two items", `<item jid='a@example.net'/><item jid='b@example.net'/>`, "modify/bad-request"},
		{"no item", ``, "modify/bad-request"},
		{"no jid", `<item name='x'/>`, "modify/bad-request"},
		{"malformed jid", `<item jid='@@bad@@'/>`, "modify/jid-malformed"},
		{"full jid", `<item jid='a@example.net/res'/>`, "modify/bad-request"},
		{"own jid", `<item jid='juliet@example.com'/>`, "cancel/not-allowed"},
		{"duplicate group", `<item jid='a@example.net'><group>Friends</group><group>Friends</group></item>`, "modify/bad-request"},
		{"empty group", `<item jid='a@example.net'><group/></item>`, "modify/not-acceptable"},
		{"long group", `<item jid='a@example.net'><group>` + long + `</group></item>`, "modify/not-acceptable"},
		{"long name", `<item jid='a@example.net' name='` + long + `'/>`, "modify/not-acceptable"},
		{"ok", `<item jid='a@example.net' name='A'><group>G</group></item>`, "ok"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			s := e.login(juliet + "/balcony")
			_, err := e.iq(s, `<iq type='set' id='x'><query xmlns='jabber:iq:roster'>`+tc.query+`</query></iq>`)
			if got := condition(err); got != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
			if tc.want != "ok" {
				if items, _, _ := e.store.Roster(e.ctx, juliet); len(items) != 0 {
					t.Errorf("stored %v after an error", items)
				}
			}
		})
	}
}

// TestRosterForbidden: only the account's own resources use its roster.
func TestRosterForbidden(t *testing.T) {
	e := newEnv(t)
	e.put(juliet, storage.RosterItem{JID: romeo, Name: "Romeo"})
	bob := e.login("bob@example.com/work")
	for _, xml := range []string{
		`<iq type='get' id='a' to='juliet@example.com'><query xmlns='jabber:iq:roster'/></iq>`,
		`<iq type='set' id='b' to='juliet@example.com'><query xmlns='jabber:iq:roster'><item jid='x@example.net'/></query></iq>`,
	} {
		if _, err := e.iq(bob, xml); condition(err) != "auth/forbidden" {
			t.Errorf("%s: %s", xml, condition(err))
		}
	}
	// From no local session (another server).
	st := moduletest.Parse(t, `<iq type='get' id='c' from='romeo@example.net/orchard' to='juliet@example.com'><query xmlns='jabber:iq:roster'/></iq>`)
	if _, err := e.m.handleIQ(e.ctx, nil, st); condition(err) != "auth/forbidden" {
		t.Errorf("remote get: %s", condition(err))
	}
}

// TestRosterFull: a roster at max_items refuses new items.
func TestRosterFull(t *testing.T) {
	cfg := *DefaultConfig()
	cfg.MaxItems = 2
	cfg.MaxPending = 1
	e := newEnvConfig(t, cfg)
	s := e.online(juliet + "/balcony")
	for i, want := range []string{"ok", "ok", "cancel/not-allowed"} {
		_, err := e.iq(s, `<iq type='set' id='x'><query xmlns='jabber:iq:roster'><item jid='c`+string(rune('0'+i))+`@example.net'/></query></iq>`)
		if got := condition(err); got != want {
			t.Errorf("item %d: %s, want %s", i, got, want)
		}
	}
	// Updating an existing item still works.
	if _, err := e.iq(s, `<iq type='set' id='x'><query xmlns='jabber:iq:roster'><item jid='c0@example.net' name='C'/></query></iq>`); err != nil {
		t.Errorf("update: %v", err)
	}
	// Pending requests from strangers have their own limit.
	take(s)
	e.inbound(`<presence from='s1@example.org' to='juliet@example.com' type='subscribe'/>`)
	e.inbound(`<presence from='s2@example.org' to='juliet@example.com' type='subscribe'/>`)
	if got := take(s); !slices.Equal(got, []string{"presence subscribe s1@example.org > juliet@example.com"}) {
		t.Errorf("juliet got %q", got)
	}
	// A subscribe to a new contact with a full roster bounces.
	e.presence(s, `<presence to='new@example.net' type='subscribe'/>`)
	if got := take(s); !slices.Equal(got, []string{"presence error new@example.net > juliet@example.com/balcony not-allowed"}) {
		t.Errorf("juliet got %q", got)
	}
}

// TestHiddenPendingItems: a request from a stranger is not a roster item
// until the user acts on it.
func TestHiddenPendingItems(t *testing.T) {
	e := newEnv(t)
	s := e.online(juliet + "/balcony")
	take(s)
	e.inbound(`<presence from='romeo@example.net' to='juliet@example.com' type='subscribe'/>`)
	take(s)
	q, _ := e.iq(s, `<iq type='get' id='a'><query xmlns='jabber:iq:roster'/></iq>`)
	if len(q.Elements()) != 0 {
		t.Errorf("roster shows %q", items(q))
	}
	// A roster set lists it, keeping the pending request.
	e.iq(s, `<iq type='set' id='b'><query xmlns='jabber:iq:roster'><item jid='romeo@example.net'/></query></iq>`)
	if got := take(s); !slices.Equal(got, []string{"push " + e.rosterVer(juliet) + " romeo@example.net none"}) {
		t.Errorf("juliet got %q", got)
	}
	q, _ = e.iq(s, `<iq type='get' id='c'><query xmlns='jabber:iq:roster'/></iq>`)
	if got := items(q); !slices.Equal(got, []string{"romeo@example.net none"}) {
		t.Errorf("roster %q", got)
	}
	if got := e.stateName(juliet, romeo); got != "None + Pending In" {
		t.Errorf("state %q", got)
	}
	// Refusing now keeps the listed item.
	e.presence(s, `<presence to='romeo@example.net' type='unsubscribed'/>`)
	if got := e.stateName(juliet, romeo); got != "None" {
		t.Errorf("state %q", got)
	}
}

// TestRemoveWithSubscriptions is RFC 6121 2.5.2: removing a contact with a
// mutual subscription cancels both.
func TestRemoveWithSubscriptions(t *testing.T) {
	e := newEnv(t)
	a, b := e.mutualOnline()
	if _, err := e.iq(a, `<iq type='set' id='r'><query xmlns='jabber:iq:roster'><item jid='bob@example.com' subscription='remove'/></query></iq>`); err != nil {
		t.Fatal(err)
	}
	ga := take(a)
	if len(ga) == 0 || ga[0] != "push 2 bob@example.com remove" {
		t.Errorf("alice got %q", ga)
	}
	vb := e.rosterVer("bob@example.com")
	want := []string{
		"push 2 alice@example.com to",
		"presence unsubscribe alice@example.com > bob@example.com",
		"presence unavailable alice@example.com/home > bob@example.com",
		"push " + vb + " alice@example.com none",
		"presence unsubscribed alice@example.com > bob@example.com",
	}
	if got := take(b); !slices.Equal(got, want) {
		t.Errorf("bob got %q, want %q", got, want)
	}
	if _, ok := e.item("alice@example.com", "bob@example.com"); ok {
		t.Error("alice's item is still there")
	}
	if got := e.stateName("bob@example.com", "alice@example.com"); got != "None" {
		t.Errorf("bob's item %q, want None", got)
	}
}

func TestFeatures(t *testing.T) {
	e := newEnv(t)
	if f := e.m.StreamFeatures(false); len(f) != 0 {
		t.Errorf("features before auth: %v", f)
	}
	var got []string
	for _, f := range e.m.StreamFeatures(true) {
		got = append(got, f.String())
	}
	want := []string{`<ver xmlns="urn:xmpp:features:rosterver"/>`, `<sub xmlns="urn:xmpp:features:pre-approval"/>`}
	if !slices.Equal(got, want) {
		t.Errorf("stream features %q, want %q", got, want)
	}
	if !slices.Equal(e.m.ServerFeatures(), []string{"jabber:iq:roster"}) || e.m.AccountFeatures() != nil {
		t.Errorf("disco features %v %v", e.m.ServerFeatures(), e.m.AccountFeatures())
	}
}

func TestRegistered(t *testing.T) {
	var info *module.Info
	for _, i := range module.Registered() {
		if i.Name == "roster" {
			info = &i
		}
	}
	if info == nil {
		t.Fatal("module roster not registered")
	}
	cfg, ok := info.Config().(*Config)
	if !ok || cfg.Validate() != nil {
		t.Fatalf("default config %#v", info.Config())
	}
	bad := *cfg
	bad.MaxItems = -1
	if bad.Validate() == nil {
		t.Error("negative max_items accepted")
	}
	e := newEnv(t)
	m, err := info.New(module.NewHost(e.r, e.store, nil, nil, nil, nil), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := m.(module.PresenceHandler); !ok {
		t.Error("not a presence handler")
	}
	if _, err := info.New(&module.Host{}, cfg); err == nil {
		t.Error("built without a router and store")
	}
}
