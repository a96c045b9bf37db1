package filetransfer

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/palisade-im/palisade/server/config"
	"github.com/palisade-im/palisade/server/module/moduletest"
	"github.com/palisade-im/palisade/server/stanza"
	"github.com/palisade-im/palisade/storage"
	"mellium.im/xmpp/jid"
)

// Transfer stanzas of each protocol, from alice to bob, as clients send
// them (%s is the 'type' of the iq where one applies).
var transfers = map[string]string{
	"si offer": `<iq type='set' id='s1' from='alice@example.com/a' to='bob@example.com/b'>
		<si xmlns='http://jabber.org/protocol/si' id='x' profile='http://jabber.org/protocol/si/profile/file-transfer'>
		<file xmlns='http://jabber.org/protocol/si/profile/file-transfer' name='a.txt' size='3'/>
		<feature xmlns='http://jabber.org/protocol/feature-neg'/></si></iq>`,
	"si answer": `<iq type='result' id='s1' from='alice@example.com/a' to='bob@example.com/b'>
		<si xmlns='http://jabber.org/protocol/si'><feature xmlns='http://jabber.org/protocol/feature-neg'/></si></iq>`,
	"ibb open":  `<iq type='set' id='i1' from='alice@example.com/a' to='bob@example.com/b'><open xmlns='http://jabber.org/protocol/ibb' sid='x' block-size='4096'/></iq>`,
	"ibb data":  `<iq type='set' id='i2' from='alice@example.com/a' to='bob@example.com/b'><data xmlns='http://jabber.org/protocol/ibb' sid='x' seq='0'>YWJj</data></iq>`,
	"ibb close": `<iq type='set' id='i3' from='alice@example.com/a' to='bob@example.com/b'><close xmlns='http://jabber.org/protocol/ibb' sid='x'/></iq>`,
	"ibb message": `<message id='m1' from='alice@example.com/a' to='bob@example.com/b'>
		<data xmlns='http://jabber.org/protocol/ibb' sid='x' seq='0'>YWJj</data></message>`,
	"bytestreams": `<iq type='set' id='b1' from='alice@example.com/a' to='bob@example.com/b'>
		<query xmlns='http://jabber.org/protocol/bytestreams' sid='x'><streamhost jid='alice@example.com/a' host='192.0.2.1' port='5086'/></query></iq>`,
	"jingle ft5": `<iq type='set' id='j1' from='alice@example.com/a' to='bob@example.com/b'>
		<jingle xmlns='urn:xmpp:jingle:1' action='session-initiate' sid='x'><content creator='initiator' name='f'>
		<description xmlns='urn:xmpp:jingle:apps:file-transfer:5'><file><name>a.txt</name></file></description>
		</content></jingle></iq>`,
	"jingle ft3": `<iq type='set' id='j2' from='alice@example.com/a' to='bob@example.com/b'>
		<jingle xmlns='urn:xmpp:jingle:1' action='session-initiate' sid='x'><content creator='initiator' name='f'>
		<description xmlns='urn:xmpp:jingle:apps:file-transfer:3'/></content></jingle></iq>`,
	"jingle ibb transport": `<iq type='set' id='j3' from='alice@example.com/a' to='bob@example.com/b'>
		<jingle xmlns='urn:xmpp:jingle:1' action='transport-replace' sid='x'><content creator='initiator' name='f'>
		<transport xmlns='urn:xmpp:jingle:transports:ibb:1' sid='y' block-size='4096'/></content></jingle></iq>`,
	"jingle s5b transport": `<iq type='set' id='j4' from='alice@example.com/a' to='bob@example.com/b'>
		<jingle xmlns='urn:xmpp:jingle:1' action='session-accept' sid='x'><content creator='initiator' name='f'>
		<transport xmlns='urn:xmpp:jingle:transports:s5b:1' sid='y'/></content></jingle></iq>`,
	"jingle checksum": `<iq type='set' id='j5' from='alice@example.com/a' to='bob@example.com/b'>
		<jingle xmlns='urn:xmpp:jingle:1' action='session-info' sid='x'><checksum xmlns='urn:xmpp:jingle:apps:file-transfer:5' creator='initiator' name='f'/></jingle></iq>`,
	"oob message": `<message id='o1' from='alice@example.com/a' to='bob@example.com/b'><body>https://x.example/a</body>
		<x xmlns='jabber:x:oob'><url>https://x.example/a</url></x></message>`,
	"oob iq": `<iq type='set' id='o2' from='alice@example.com/a' to='bob@example.com/b'>
		<query xmlns='jabber:iq:oob'><url>https://x.example/a</url></query></iq>`,
}

var wantKind = map[string]string{
	"si offer": KindSI, "si answer": KindSI, "ibb open": KindIBB, "ibb data": KindIBB, "ibb close": KindIBB,
	"ibb message": KindIBB, "bytestreams": KindBytestreams, "jingle ft5": KindJingle, "jingle ft3": KindJingle,
	"jingle ibb transport": KindJingle, "jingle s5b transport": KindJingle, "jingle checksum": KindJingle,
	"oob message": KindOOB, "oob iq": KindOOB,
}

// Stanzas that are no file transfer.
var others = map[string]string{
	"chat": `<message type='chat' id='c' from='alice@example.com/a' to='bob@example.com/b'><body>hi</body></message>`,
	"disco": `<iq type='get' id='d' from='alice@example.com/a' to='bob@example.com/b'>
		<query xmlns='http://jabber.org/protocol/disco#info'/></iq>`,
	"jingle rtp": `<iq type='set' id='r' from='alice@example.com/a' to='bob@example.com/b'>
		<jingle xmlns='urn:xmpp:jingle:1' action='session-initiate' sid='x'><content creator='initiator' name='v'>
		<description xmlns='urn:xmpp:jingle:apps:rtp:1' media='audio'/>
		<transport xmlns='urn:xmpp:jingle:transports:ice-udp:1'/></content></jingle></iq>`,
	"si other profile": `<iq type='set' id='s' from='alice@example.com/a' to='bob@example.com/b'>
		<si xmlns='http://jabber.org/protocol/si' id='x' profile='urn:example:other'/></iq>`,
	"ibb error": `<iq type='error' id='i' from='alice@example.com/a' to='bob@example.com/b'>
		<open xmlns='http://jabber.org/protocol/ibb' sid='x' block-size='4096'/>
		<error type='cancel'><not-acceptable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>`,
	"presence": `<presence from='alice@example.com/a' to='bob@example.com/b'/>`,
}

func TestRecognise(t *testing.T) {
	for name, x := range transfers {
		if got := Recognise(moduletest.Parse(t, x)); got != wantKind[name] {
			t.Errorf("%s: Recognise = %q, want %q", name, got, wantKind[name])
		}
	}
	for name, x := range others {
		if got := Recognise(moduletest.Parse(t, x)); got != "" {
			t.Errorf("%s: Recognise = %q, want none", name, got)
		}
	}
}

// countingRouter counts the rights look-ups and knows partners.
type countingRouter struct {
	*moduletest.Router
	lookups  atomic.Int64
	partners map[string]*config.Partner
}

// Partner implements what module.PartnerOf asks of the core's router.
func (r *countingRouter) Partner(domain string) *config.Partner { return r.partners[domain] }

func (r *countingRouter) AccountRights(bare jid.JID) config.Rights {
	r.lookups.Add(1)
	return r.Router.AccountRights(bare)
}

// countingRosters counts the roster look-ups.
type countingRosters struct {
	storage.Rosters
	lookups atomic.Int64
}

func (r *countingRosters) Item(ctx context.Context, user, contact string) (storage.RosterItem, error) {
	r.lookups.Add(1)
	return r.Rosters.Item(ctx, user, contact)
}

type fixture struct {
	m       *Module
	router  *countingRouter
	rosters *countingRosters
}

// newFixture builds the policy with alice's and bob's rights; access says
// whether a rule restricts file_transfer (the configuration's view).
func newFixture(t *testing.T, alice, bob string, restricted bool, shared *sharedRoster) fixture {
	t.Helper()
	h, r := moduletest.NewHost(t, nil)
	r.SetRights(moduletest.JID(t, "alice@example.com"), config.Rights{FileTransfer: alice})
	r.SetRights(moduletest.JID(t, "bob@example.com"), config.Rights{FileTransfer: bob})
	cr := &countingRouter{Router: r}
	ros := &countingRosters{Rosters: h.Store}
	access := config.Access{}
	if restricted {
		access.Rules = []config.Rule{{JID: "x@example.com", Rights: config.Rights{FileTransfer: config.FileTransferContacts}}}
	}
	var mods func() []any
	if shared != nil {
		mods = func() []any { return []any{shared} }
	}
	return fixture{m: New(cr, ros, access, mods), router: cr, rosters: ros}
}

type sharedRoster struct{ groups []string }

func (s *sharedRoster) SharedGroups() []string { return s.groups }

func TestScopes(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		alice, bob string
		roster     storage.Subscription // alice's item for bob ("" none)
		bobRoster  storage.Subscription // bob's item for alice
		allowed    bool
		reason     string
	}{
		{alice: "all", bob: "all", allowed: true},
		{alice: "", bob: "", allowed: true},
		{alice: "none", bob: "all", reason: "access: file_transfer = none (sender, "},
		{alice: "all", bob: "none", reason: "access: file_transfer = none (recipient, "},
		{alice: "contacts", bob: "all", reason: "access: file_transfer = contacts (sender, "},
		{alice: "contacts", bob: "all", roster: storage.SubTo, reason: "access: file_transfer = contacts (sender, "},
		{alice: "contacts", bob: "all", roster: storage.SubBoth, allowed: true},
		{alice: "all", bob: "contacts", roster: storage.SubBoth, reason: "access: file_transfer = contacts (recipient, "},
		{alice: "contacts", bob: "contacts", roster: storage.SubBoth, bobRoster: storage.SubBoth, allowed: true},
	} {
		name := tc.alice + "/" + tc.bob + "/" + string(tc.roster) + "/" + string(tc.bobRoster)
		f := newFixture(t, tc.alice, tc.bob, true, nil)
		if tc.roster != "" {
			if _, err := f.rosters.PutItem(ctx, "alice@example.com", storage.RosterItem{JID: "bob@example.com", Subscription: tc.roster}); err != nil {
				t.Fatal(err)
			}
		}
		if tc.bobRoster != "" {
			if _, err := f.rosters.PutItem(ctx, "bob@example.com", storage.RosterItem{JID: "alice@example.com", Subscription: tc.bobRoster}); err != nil {
				t.Fatal(err)
			}
		}
		for tname, x := range transfers {
			d := f.m.Check(ctx, moduletest.Parse(t, x))
			if tc.allowed {
				if d != nil {
					t.Errorf("%s, %s: denied (%s), want allowed", name, tname, d.Reason)
				}
				continue
			}
			if d == nil {
				t.Errorf("%s, %s: allowed, want denied", name, tname)
				continue
			}
			if d.Err == nil || d.Err.Condition != stanza.PolicyViolation || d.Err.Type != stanza.Cancel || d.Err.Text != Text {
				t.Errorf("%s, %s: error %+v, want cancel policy-violation %q", name, tname, d.Err, Text)
			}
			if !strings.HasPrefix(d.Reason, tc.reason) || !strings.Contains(d.Reason, wantKind[tname]) {
				t.Errorf("%s, %s: reason %q, want %q... naming %s", name, tname, d.Reason, tc.reason, wantKind[tname])
			}
		}
		// What is no transfer passes whatever the rights.
		for oname, x := range others {
			if d := f.m.Check(ctx, moduletest.Parse(t, x)); d != nil {
				t.Errorf("%s, %s: denied (%s)", name, oname, d.Reason)
			}
		}
	}
}

// TestPassesServerAndSelf: a transfer stanza from or to a server address
// (the server, a SOCKS5 proxy) or between an account's own resources
// passes even with file_transfer = none; so does one with a remote user
// whose local party may transfer.
func TestPassesServerAndSelf(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, "none", "all", true, nil)
	f.router.partners = map[string]*config.Partner{"remote.example": {Files: true}, "proxy.example.com": {Files: true}}
	for _, x := range []string{
		`<iq type='set' id='1' from='example.com' to='alice@example.com/a'><open xmlns='http://jabber.org/protocol/ibb' sid='x' block-size='4096'/></iq>`,
		`<iq type='get' id='2' from='alice@example.com/a' to='proxy.example.com'><query xmlns='http://jabber.org/protocol/bytestreams'/></iq>`,
		`<iq type='set' id='3' from='alice@example.com/a' to='alice@example.com/b'><open xmlns='http://jabber.org/protocol/ibb' sid='x' block-size='4096'/></iq>`,
		`<iq type='set' id='4' from='bob@example.com/b' to='juliet@remote.example/r'><open xmlns='http://jabber.org/protocol/ibb' sid='x' block-size='4096'/></iq>`,
	} {
		if d := f.m.Check(ctx, moduletest.Parse(t, x)); d != nil {
			t.Errorf("%s: denied (%s)", x, d.Reason)
		}
	}
	// alice's none holds towards a remote user too.
	x := `<iq type='set' id='5' from='alice@example.com/a' to='juliet@remote.example/r'><open xmlns='http://jabber.org/protocol/ibb' sid='x' block-size='4096'/></iq>`
	if d := f.m.Check(ctx, moduletest.Parse(t, x)); d == nil {
		t.Error("alice (none) to a remote user: allowed")
	}
}

// TestSharedGroupIsContact: members of a common shared-roster group are
// contacts without a roster item; a group that is not shared does not
// count.
func TestSharedGroupIsContact(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, "contacts", "all", true, &sharedRoster{groups: []string{"staff"}})
	f.router.SetGroups("alice@example.com", "staff", "golf")
	f.router.SetGroups("bob@example.com", "golf")
	offer := moduletest.Parse(t, transfers["si offer"])
	if d := f.m.Check(ctx, offer); d == nil {
		t.Fatal("alice and bob share only golf, not a shared group: allowed")
	}
	f.router.SetGroups("bob@example.com", "staff")
	if d := f.m.Check(ctx, offer); d != nil {
		t.Fatalf("alice and bob in the shared group staff: denied (%s)", d.Reason)
	}
}

// TestNoLookups: without a rule restricting file_transfer the policy looks
// nothing up, even for transfer stanzas; with one, stanzas that are no
// transfer cost no look-up either, and only "contacts" reads the roster.
func TestNoLookups(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, "none", "none", false, nil) // the configuration restricts nothing
	for _, x := range transfers {
		if d := f.m.Check(ctx, moduletest.Parse(t, x)); d != nil {
			t.Fatalf("unrestricted configuration denied %s", d.Reason)
		}
	}
	if n := f.router.lookups.Load() + f.rosters.lookups.Load(); n != 0 {
		t.Errorf("unrestricted configuration: %d look-ups", n)
	}

	f = newFixture(t, "contacts", "contacts", true, nil)
	for _, x := range others {
		f.m.Check(ctx, moduletest.Parse(t, x))
	}
	if n := f.router.lookups.Load() + f.rosters.lookups.Load(); n != 0 {
		t.Errorf("stanzas without transfer payloads: %d look-ups", n)
	}
	f.m.Check(ctx, moduletest.Parse(t, transfers["ibb message"]))
	if f.router.lookups.Load() == 0 || f.rosters.lookups.Load() == 0 {
		t.Error("a transfer under contacts looked up no rights or no roster")
	}

	f = newFixture(t, "all", "all", true, nil)
	f.m.Check(ctx, moduletest.Parse(t, transfers["ibb message"]))
	if n := f.rosters.lookups.Load(); n != 0 {
		t.Errorf("all/all read the roster %d times", n)
	}
}

func TestRestricted(t *testing.T) {
	if Restricted(config.Default().Access) {
		t.Error("the default access restricts file_transfer")
	}
	a := config.Default().Access
	a.Rules = []config.Rule{{Group: "g", Rights: config.Rights{FileTransfer: "contacts"}}}
	if !Restricted(a) {
		t.Error("a contacts rule is not a restriction")
	}
}

// BenchmarkCheckChat is the cost of the link on a chat message with a
// restricting rule configured.
func BenchmarkCheckChat(b *testing.B) {
	h, r := moduletest.NewHost(b, nil)
	access := config.Access{Rules: []config.Rule{{JID: "x@example.com", Rights: config.Rights{FileTransfer: "none"}}}}
	m := New(r, h.Store, access, nil)
	st := moduletest.Parse(b, others["chat"])
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if m.Check(ctx, st) != nil {
			b.Fatal("denied")
		}
	}
}

// TestRemoteNeedsPartnerFiles: a transfer with another domain passes only
// when its partner entry says files = true, in both directions and
// whatever the local rights; then the local party's rights apply.
func TestRemoteNeedsPartnerFiles(t *testing.T) {
	ctx := context.Background()
	out := `<iq type='set' id='1' from='bob@example.com/b' to='juliet@remote.example/r'><open xmlns='http://jabber.org/protocol/ibb' sid='x' block-size='4096'/></iq>`
	in := `<iq type='set' id='2' from='juliet@remote.example/r' to='bob@example.com/b'><si xmlns='http://jabber.org/protocol/si' id='s' profile='http://jabber.org/protocol/si/profile/file-transfer'/></iq>`
	chat := `<message from='juliet@remote.example/r' to='bob@example.com/b' type='chat'><body>hi</body></message>`
	for _, restricted := range []bool{false, true} {
		for _, c := range []struct {
			name    string
			partner *config.Partner
			ok      bool
		}{{"no partner", nil, false}, {"files = false", &config.Partner{}, false}, {"files = true", &config.Partner{Files: true}, true}} {
			f := newFixture(t, "all", "all", restricted, nil)
			if c.partner != nil {
				f.router.partners = map[string]*config.Partner{"remote.example": c.partner}
			}
			for _, x := range []string{out, in} {
				d := f.m.Check(ctx, moduletest.Parse(t, x))
				if c.ok != (d == nil) {
					t.Errorf("restricted %v, %s: %s: denial %+v, want allowed %v", restricted, c.name, x, d, c.ok)
				}
				if d != nil && (d.Err.Condition != stanza.PolicyViolation || !strings.Contains(d.Err.Text, "remote.example")) {
					t.Errorf("%s: error %+v", c.name, d.Err)
				}
			}
			if d := f.m.Check(ctx, moduletest.Parse(t, chat)); d != nil {
				t.Errorf("%s: a chat message with the remote user denied: %s", c.name, d.Reason)
			}
		}
	}
	// With files = true, a local party's none still holds.
	f := newFixture(t, "all", "none", true, nil)
	f.router.partners = map[string]*config.Partner{"remote.example": {Files: true}}
	if d := f.m.Check(ctx, moduletest.Parse(t, out)); d == nil {
		t.Error("bob (none) to a partner with files = true: allowed")
	}
}
