package disco

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

// XEP-0115 section 5.2 (simple) and 5.3 (complex) generation examples.
func TestVerXEP0115Examples(t *testing.T) {
	simple := Info{
		Identities: []Identity{{Category: "client", Type: "pc", Name: "Exodus 0.9.1"}},
		Features: []string{
			"http://jabber.org/protocol/disco#info",
			"http://jabber.org/protocol/disco#items",
			"http://jabber.org/protocol/muc",
			"http://jabber.org/protocol/caps",
		},
	}
	wantS := "client/pc//Exodus 0.9.1<http://jabber.org/protocol/caps<http://jabber.org/protocol/disco#info<" +
		"http://jabber.org/protocol/disco#items<http://jabber.org/protocol/muc<"
	if got := VerString(simple); got != wantS {
		t.Errorf("S = %q, want %q", got, wantS)
	}
	if got := Ver(simple); got != "QgayPKawpkPSDYmwT/WM94uAlu0=" {
		t.Errorf("5.2: ver = %s", got)
	}

	complexInfo := Info{
		Identities: []Identity{
			{Category: "client", Type: "pc", Lang: "en", Name: "Psi 0.11"},
			{Category: "client", Type: "pc", Lang: "el", Name: "Ψ 0.11"},
		},
		Features: []string{
			"http://jabber.org/protocol/caps",
			"http://jabber.org/protocol/disco#info",
			"http://jabber.org/protocol/disco#items",
			"http://jabber.org/protocol/muc",
		},
		Forms: []Form{{
			FormType: "urn:xmpp:dataforms:softwareinfo",
			Fields: []Field{
				{Var: "FORM_TYPE", Values: []string{"urn:xmpp:dataforms:softwareinfo"}},
				{Var: "ip_version", Values: []string{"ipv6", "ipv4"}},
				{Var: "os", Values: []string{"Mac"}},
				{Var: "os_version", Values: []string{"10.5.1"}},
				{Var: "software", Values: []string{"Psi"}},
				{Var: "software_version", Values: []string{"0.11"}},
			},
		}},
	}
	wantS = "client/pc/el/Ψ 0.11<client/pc/en/Psi 0.11<http://jabber.org/protocol/caps<" +
		"http://jabber.org/protocol/disco#info<http://jabber.org/protocol/disco#items<" +
		"http://jabber.org/protocol/muc<urn:xmpp:dataforms:softwareinfo<ip_version<ipv4<ipv6<os<Mac<" +
		"os_version<10.5.1<software<Psi<software_version<0.11<"
	if got := VerString(complexInfo); got != wantS {
		t.Errorf("S = %q, want %q", got, wantS)
	}
	if got := Ver(complexInfo); got != "q07IKJEyjvHSyhy//CH0CxmKi8w=" {
		t.Errorf("5.3: ver = %s", got)
	}
}

type features struct{ server, account []string }

func (f features) ServerFeatures() []string  { return f.server }
func (f features) AccountFeatures() []string { return f.account }

func newDisco(t *testing.T, cfg Config) (*Module, *moduletest.Router) {
	t.Helper()
	var m *Module
	h, r := moduletest.NewHost(t, func() []any {
		return []any{
			m,
			features{server: []string{"urn:xmpp:ping", "jabber:iq:version"}},
			features{server: []string{"urn:xmpp:carbons:2", "urn:xmpp:ping"}, account: []string{"urn:xmpp:carbons:2"}},
			struct{}{}, // a module without features
		}
	})
	m, err := New(h, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m, r
}

const ourServerInfo = `<query xmlns="http://jabber.org/protocol/disco#info">` +
	`<identity category="server" type="im" name="Palisade"/>` +
	`<feature var="http://jabber.org/protocol/disco#info"/>` +
	`<feature var="http://jabber.org/protocol/disco#items"/>` +
	`<feature var="jabber:iq:version"/>` +
	`<feature var="urn:xmpp:carbons:2"/>` +
	`<feature var="urn:xmpp:ping"/>` +
	`</query>`

func TestServerInfo(t *testing.T) {
	m, _ := newDisco(t, Config{})
	// XEP-0030 Example 1.
	res, err := moduletest.Request(t, m, "romeo@example.com/orchard", module.ScopeServer,
		`<iq type='get' to='example.com' id='info1'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`)
	if err != nil {
		t.Fatal(err)
	}
	if got := moduletest.String(res); got != ourServerInfo {
		t.Errorf("info:\n got %s\nwant %s", got, ourServerInfo)
	}
	wantS := "server/im//Palisade<http://jabber.org/protocol/disco#info<http://jabber.org/protocol/disco#items<" +
		"jabber:iq:version<urn:xmpp:carbons:2<urn:xmpp:ping<"
	if got := VerString(m.ServerInfo()); got != wantS {
		t.Errorf("S = %q, want %q", got, wantS)
	}
	if m.Ver() != Ver(m.ServerInfo()) || m.Ver() == "" {
		t.Errorf("ver %q", m.Ver())
	}

	// XEP-0115 section 6.2: a query to node#ver returns the same info.
	node := CapsNode + "#" + m.Ver()
	res, err = moduletest.Request(t, m, "romeo@example.com/orchard", module.ScopeServer,
		`<iq type='get' to='example.com' id='disco1'><query xmlns='http://jabber.org/protocol/disco#info' node='`+node+`'/></iq>`)
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Replace(ourServerInfo, `#info">`, `#info" node="`+node+`">`, 1)
	if got := moduletest.String(res); got != want {
		t.Errorf("node info:\n got %s\nwant %s", got, want)
	}

	_, err = moduletest.Request(t, m, "romeo@example.com/orchard", module.ScopeServer,
		`<iq type='get' to='example.com' id='disco2'><query xmlns='http://jabber.org/protocol/disco#info' node='https://palisade.im#stale'/></iq>`)
	if moduletest.Condition(err) != stanza.ItemNotFound {
		t.Errorf("unknown node: %v", err)
	}
	_, err = moduletest.Request(t, m, "romeo@example.com/orchard", module.ScopeServer,
		`<iq type='set' to='example.com' id='disco3'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`)
	if moduletest.Condition(err) != stanza.BadRequest {
		t.Errorf("set: %v", err)
	}
}

func TestCapsStreamFeature(t *testing.T) {
	m, _ := newDisco(t, Config{})
	for _, auth := range []bool{false, true} {
		f := m.StreamFeatures(auth)
		want := `<c xmlns="http://jabber.org/protocol/caps" hash="sha-1" node="https://palisade.im" ver="` + m.Ver() + `"/>`
		if len(f) != 1 || f[0].String() != want {
			t.Errorf("authenticated=%v: %v", auth, f)
		}
	}
}

func TestServerItems(t *testing.T) {
	m, _ := newDisco(t, Config{})
	// XEP-0030 section 4: no items is an empty query, not an error.
	res, err := moduletest.Request(t, m, "romeo@example.com/orchard", module.ScopeServer,
		`<iq type='get' to='example.com' id='items1'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>`)
	if err != nil || moduletest.String(res) != `<query xmlns="http://jabber.org/protocol/disco#items"/>` {
		t.Errorf("empty items: %s, %v", moduletest.String(res), err)
	}

	cfg := Config{Items: []Item{{JID: "Conference.Example.com", Name: "Chatrooms"}, {JID: "pubsub.example.com", Node: "news"}}}
	m, _ = newDisco(t, cfg)
	res, err = moduletest.Request(t, m, "romeo@example.com/orchard", module.ScopeServer,
		`<iq type='get' to='example.com' id='items1'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>`)
	want := `<query xmlns="http://jabber.org/protocol/disco#items">` +
		`<item jid="conference.example.com" name="Chatrooms"/><item jid="pubsub.example.com" node="news"/></query>`
	if err != nil || moduletest.String(res) != want {
		t.Errorf("items: %s, %v", moduletest.String(res), err)
	}
	_, err = moduletest.Request(t, m, "romeo@example.com/orchard", module.ScopeServer,
		`<iq type='get' to='example.com' id='items2'><query xmlns='http://jabber.org/protocol/disco#items' node='x'/></iq>`)
	if moduletest.Condition(err) != stanza.ItemNotFound {
		t.Errorf("items node: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	if err := (&Config{Items: []Item{{Name: "no jid"}}}).Validate(); err == nil {
		t.Error("missing jid accepted")
	}
	if err := (&Config{Items: []Item{{JID: "a@b@c"}}}).Validate(); err == nil {
		t.Error("bad jid accepted")
	}
	if err := (&Config{Items: []Item{{JID: "muc.example.com"}}}).Validate(); err != nil {
		t.Error(err)
	}
}

const ourAccountInfo = `<query xmlns="http://jabber.org/protocol/disco#info">` +
	`<identity category="account" type="registered"/>` +
	`<feature var="http://jabber.org/protocol/disco#info"/>` +
	`<feature var="http://jabber.org/protocol/disco#items"/>` +
	`<feature var="urn:xmpp:carbons:2"/>` +
	`</query>`

func TestAccountInfo(t *testing.T) {
	m, r := newDisco(t, Config{})
	ctx := context.Background()
	get := `<iq type='get' to='juliet@example.com' id='info1'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`

	// The owner, with or without a 'to'.
	res, err := moduletest.Request(t, m, "juliet@example.com/balcony", module.ScopeAccount, get)
	if err != nil || moduletest.String(res) != ourAccountInfo {
		t.Errorf("owner: %s, %v", moduletest.String(res), err)
	}
	res, err = moduletest.Request(t, m, "juliet@example.com/balcony", module.ScopeAccount,
		`<iq type='get' id='info2'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`)
	if err != nil || moduletest.String(res) != ourAccountInfo {
		t.Errorf("owner without to: %s, %v", moduletest.String(res), err)
	}

	// XEP-0030 section 10: not subscribed, or no such account: the same
	// service-unavailable.
	_, err = moduletest.Request(t, m, "bob@example.com/home", module.ScopeAccount, get)
	if moduletest.Condition(err) != stanza.ServiceUnavailable {
		t.Errorf("unsubscribed: %v", err)
	}
	_, err = moduletest.Request(t, m, "bob@example.com/home", module.ScopeAccount,
		`<iq type='get' to='nobody@example.com' id='info3'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`)
	if moduletest.Condition(err) != stanza.ServiceUnavailable {
		t.Errorf("no account: %v", err)
	}

	// A contact juliet shares presence with may see it.
	if _, err := r.Store().PutItem(ctx, "juliet@example.com", storage.RosterItem{JID: "bob@example.com", Subscription: storage.SubFrom}); err != nil {
		t.Fatal(err)
	}
	res, err = moduletest.Request(t, m, "bob@example.com/home", module.ScopeAccount, get)
	if err != nil || moduletest.String(res) != ourAccountInfo {
		t.Errorf("subscribed: %s, %v", moduletest.String(res), err)
	}
	// Subscription "to" is not enough: bob does not get juliet's presence.
	if _, err := r.Store().PutItem(ctx, "juliet@example.com", storage.RosterItem{JID: "alice@example.com", Subscription: storage.SubTo}); err != nil {
		t.Fatal(err)
	}
	_, err = moduletest.Request(t, m, "alice@example.com/home", module.ScopeAccount, get)
	if moduletest.Condition(err) != stanza.ServiceUnavailable {
		t.Errorf("subscription to: %v", err)
	}
	_, err = moduletest.Request(t, m, "juliet@example.com/balcony", module.ScopeAccount,
		`<iq type='get' id='info4'><query xmlns='http://jabber.org/protocol/disco#info' node='x'/></iq>`)
	if moduletest.Condition(err) != stanza.ItemNotFound {
		t.Errorf("account node: %v", err)
	}
}

func TestAccountItems(t *testing.T) {
	m, _ := newDisco(t, Config{})
	for _, from := range []string{"juliet@example.com/balcony", "bob@example.com/home"} {
		res, err := moduletest.Request(t, m, from, module.ScopeAccount,
			`<iq type='get' to='juliet@example.com' id='items1'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>`)
		if err != nil || moduletest.String(res) != `<query xmlns="http://jabber.org/protocol/disco#items"/>` {
			t.Errorf("%s: %s, %v", from, moduletest.String(res), err)
		}
	}
}

func TestRegistered(t *testing.T) {
	for _, i := range module.Registered() {
		if i.Name == "disco" {
			return
		}
	}
	t.Error("disco not registered")
}

func TestConfigFile(t *testing.T) {
	data := []byte(`
[modules.disco]
items = [
  { jid = "conference.example.com", name = "Chatrooms" },
  { jid = "pubsub.example.com", node = "news" },
]
`)
	cfg, err := config.Parse("palisade.toml", data, config.StaticRegistry{"disco": func() any { return DefaultConfig() }})
	if err != nil {
		t.Fatal(err)
	}
	c := cfg.Modules["disco"].Value.(*Config)
	if len(c.Items) != 2 || c.Items[0].Name != "Chatrooms" || c.Items[1].Node != "news" {
		t.Errorf("items %+v", c.Items)
	}
	_, err = config.Parse("palisade.toml", []byte("[modules.disco]\nitems = [{ jid = \"a@b@c\" }]\n"),
		config.StaticRegistry{"disco": func() any { return DefaultConfig() }})
	if err == nil {
		t.Error("invalid item JID accepted")
	}
}
