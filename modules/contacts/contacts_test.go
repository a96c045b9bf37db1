package contacts

import (
	"context"
	"strings"
	"testing"

	"github.com/palisade-im/palisade/server/config"
	"github.com/palisade-im/palisade/server/module"
	"github.com/palisade-im/palisade/server/module/moduletest"
	"github.com/palisade-im/palisade/server/stanza"
	"github.com/palisade-im/palisade/storage"
)

// router adds live partners to the test router (module.PartnerOf).
type router struct {
	*moduletest.Router
	partners map[string]*config.Partner
}

func (r router) Partner(domain string) *config.Partner { return r.partners[domain] }

type shared []string

func (s shared) SharedGroups() []string { return s }

// setup returns the policy over a host where bob has the given rights.
func setup(t *testing.T, bob config.Rights) (*Module, *moduletest.Router) {
	t.Helper()
	h, r := moduletest.NewHost(t, nil)
	r.SetRights(moduletest.JID(t, "bob@example.com"), bob)
	rt := router{Router: r, partners: map[string]*config.Partner{"partner.example": {Name: "p"}}}
	access := config.Access{Default: bob}
	m := New(rt, h.Store, access, func() []any { return []any{shared{"team"}} })
	return m, r
}

func check(t *testing.T, m *Module, xml string) *module.Denial {
	t.Helper()
	return m.Check(context.Background(), moduletest.Parse(t, xml))
}

func TestScopes(t *testing.T) {
	msg := func(from string) string {
		return `<message type='chat' id='m' from='` + from + `' to='bob@example.com'><body>hi</body></message>`
	}
	cases := []struct {
		scope string
		from  string
		pass  bool
	}{
		{"roster", "alice@example.com/a", false},
		{"roster", "carol@example.com/c", true},  // subscription from
		{"roster", "juliet@example.com/j", true}, // bob's pending request
		{"roster", "dave@example.com/d", true},   // shared group "team"
		{"roster", "eve@partner.example/e", false},
		{"roster", "mallory@stranger.example/m", false},
		{"organisation", "alice@example.com/a", true},
		{"organisation", "eve@partner.example/e", false},
		{"organisation", "friend@stranger.example/f", true}, // on bob's roster
		{"partners", "eve@partner.example/e", true},
		{"partners", "mallory@stranger.example/m", false},
		{"anyone", "mallory@stranger.example/m", true},
	}
	for _, c := range cases {
		m, r := setup(t, config.Rights{Contacts: c.scope})
		ctx := context.Background()
		st := r.Store()
		must := func(err error) {
			if err != nil {
				t.Fatal(err)
			}
		}
		_, err := st.PutItem(ctx, "bob@example.com", storage.RosterItem{JID: "carol@example.com", Subscription: storage.SubFrom})
		must(err)
		_, err = st.PutItem(ctx, "bob@example.com", storage.RosterItem{JID: "juliet@example.com", Subscription: storage.SubNone, Ask: true})
		must(err)
		_, err = st.PutItem(ctx, "bob@example.com", storage.RosterItem{JID: "friend@stranger.example", Subscription: storage.SubTo})
		must(err)
		// A stranger's own pending request makes no contact.
		_, err = st.PutItem(ctx, "bob@example.com", storage.RosterItem{JID: "alice@example.com", Subscription: storage.SubNone, PendingIn: true, Hidden: true})
		must(err)
		r.SetGroups("bob@example.com", "team")
		r.SetGroups("dave@example.com", "team")
		d := check(t, m, msg(c.from))
		if (d == nil) != c.pass {
			t.Errorf("contacts = %s, from %s: denial %+v, want pass %v", c.scope, c.from, d, c.pass)
		}
		if d != nil && !strings.Contains(d.Reason, "access: contacts = "+c.scope+": not a contact") {
			t.Errorf("reason %q", d.Reason)
		}
	}
}

func TestRefusalIsMissingAccountAnswer(t *testing.T) {
	m, _ := setup(t, config.Rights{Contacts: "roster", Subscriptions: "none"})
	unavailable := stanza.Err(stanza.Cancel, stanza.ServiceUnavailable, "")
	cases := []struct {
		xml  string
		want *stanza.Error // nil: dropped silently
	}{
		{`<message type='chat' from='alice@example.com/a' to='bob@example.com'><body>x</body></message>`, unavailable},
		{`<message from='alice@example.com/a' to='bob@example.com/b'><body>x</body></message>`, unavailable},
		{`<message type='groupchat' from='alice@example.com/a' to='bob@example.com'><body>x</body></message>`, unavailable},
		{`<message type='headline' from='alice@example.com/a' to='bob@example.com'><body>x</body></message>`, nil},
		{`<iq type='get' id='1' from='alice@example.com/a' to='bob@example.com/b'><query xmlns='jabber:iq:version'/></iq>`, unavailable},
		{`<iq type='set' id='2' from='alice@example.com/a' to='bob@example.com'><query xmlns='urn:x'/></iq>`, unavailable},
		{`<presence from='alice@example.com/a' to='bob@example.com/b'/>`, nil},
		{`<presence type='subscribe' from='alice@example.com' to='bob@example.com'/>`, nil},
	}
	for _, c := range cases {
		d := check(t, m, c.xml)
		if d == nil {
			t.Errorf("%s: passed", c.xml)
			continue
		}
		if (d.Err == nil) != (c.want == nil) || (d.Err != nil && (d.Err.Condition != c.want.Condition || d.Err.Type != c.want.Type || d.Err.Text != "")) {
			t.Errorf("%s: error %+v, want %+v", c.xml, d.Err, c.want)
		}
	}
	// The same for an account that does not exist (rights by its JID).
	d := check(t, m, `<message type='chat' from='alice@example.com/a' to='nobody@example.com'><body>x</body></message>`)
	if d != nil {
		t.Errorf("missing account with default rights refused: %+v (the router answers it)", d)
	}
	if c := m.Counts(); c.NotContact != 7 || c.Subscriptions != 1 {
		t.Errorf("counts %+v", c)
	}
}

func TestAlwaysPass(t *testing.T) {
	m, r := setup(t, config.Rights{Contacts: "roster", Subscriptions: "none", ContactsExempt: []string{"helpdesk"}})
	r.SetGroups("carol@example.com", "helpdesk")
	for _, xml := range []string{
		`<message type='chat' from='bob@example.com/other' to='bob@example.com/b'><body>x</body></message>`, // own resource
		`<message type='chat' from='example.com' to='bob@example.com'><body>x</body></message>`,             // the server
		`<message type='chat' from='partner.example' to='bob@example.com'><body>x</body></message>`,         // a server
		`<message type='error' from='alice@example.com/a' to='bob@example.com/b'/>`,
		`<iq type='result' id='1' from='alice@example.com/a' to='bob@example.com/b'/>`,
		`<iq type='error' id='1' from='alice@example.com/a' to='bob@example.com/b'/>`,
		`<presence type='unavailable' from='alice@example.com/a' to='bob@example.com'/>`,
		`<presence type='probe' from='alice@example.com' to='bob@example.com'/>`,
		`<presence type='subscribed' from='alice@example.com' to='bob@example.com'/>`,
		`<presence type='unsubscribe' from='alice@example.com' to='bob@example.com'/>`,
		`<presence type='unsubscribed' from='alice@example.com' to='bob@example.com'/>`,
		`<message type='chat' from='carol@example.com/c' to='bob@example.com'><body>x</body></message>`, // exempt
		`<presence type='subscribe' from='carol@example.com' to='bob@example.com'/>`,                    // exempt
		`<message type='chat' from='bob@example.com/b' to='alice@example.com'><body>x</body></message>`, // outbound
		`<message type='chat' from='bob@example.com/b' to='x@remote.example'><body>x</body></message>`,
	} {
		if d := check(t, m, xml); d != nil {
			t.Errorf("%s: refused: %+v", xml, d)
		}
	}
}

func TestSubscriptions(t *testing.T) {
	sub := func(from string) string {
		return `<presence type='subscribe' from='` + from + `' to='bob@example.com'/>`
	}
	for _, c := range []struct {
		scope, from string
		pass        bool
	}{
		{"none", "alice@example.com", false},
		{"organisation", "alice@example.com", true},
		{"organisation", "eve@partner.example", false},
		{"partners", "eve@partner.example", true},
		{"partners", "mallory@stranger.example", false},
		{"anyone", "mallory@stranger.example", true},
	} {
		// contacts = roster does not govern subscription requests.
		m, _ := setup(t, config.Rights{Contacts: "roster", Subscriptions: c.scope})
		d := check(t, m, sub(c.from))
		if (d == nil) != c.pass {
			t.Errorf("subscriptions = %s, from %s: %+v, want pass %v", c.scope, c.from, d, c.pass)
		}
		if d != nil && (d.Err != nil || !strings.Contains(d.Reason, "subscriptions = "+c.scope)) {
			t.Errorf("denial %+v", d)
		}
	}
}

func TestUnrestrictedLooksNothingUp(t *testing.T) {
	h, r := moduletest.NewHost(t, nil)
	m := New(r, h.Store, config.Default().Access, nil)
	if m.restricted {
		t.Fatal("default access is restricted")
	}
	if d := check(t, m, `<message type='chat' from='x@stranger.example/a' to='bob@example.com'><body>x</body></message>`); d != nil {
		t.Errorf("refused: %+v", d)
	}
	if got := m.AccountFeaturesFor(moduletest.JID(t, "bob@example.com")); len(got) != 1 || got[0] != NSFeature+"anyone" {
		t.Errorf("features %v", got)
	}
	r.SetRights(moduletest.JID(t, "bob@example.com"), config.Rights{Contacts: "roster"})
	if got := m.AccountFeaturesFor(moduletest.JID(t, "bob@example.com")); got[0] != NSFeature+"roster" {
		t.Errorf("features %v", got)
	}
}
