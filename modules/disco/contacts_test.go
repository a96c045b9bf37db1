package disco

import (
	"strings"
	"testing"

	"github.com/palisade-im/palisade/server/module"
	"github.com/palisade-im/palisade/server/module/moduletest"
)

// TestServerInfoContacts checks the XEP-0157 form in the domain's
// disco#info (XEP-0157 section 4, XEP-0128) and in the caps hash.
func TestServerInfoContacts(t *testing.T) {
	var m *Module
	h, _ := moduletest.NewHost(t, func() []any { return []any{m} })
	h.Config.Server.Contacts.Abuse = []string{"mailto:abuse@example.com", "xmpp:abuse@example.com"}
	h.Config.Server.Contacts.Support = []string{"https://example.com/support"}
	m, err := New(h, Config{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := moduletest.Request(t, m, "romeo@example.com/orchard", module.ScopeServer,
		`<iq type='get' to='example.com' id='info1'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`)
	if err != nil {
		t.Fatal(err)
	}
	want := `<x xmlns="jabber:x:data" type="result">` +
		`<field var="FORM_TYPE" type="hidden"><value>http://jabber.org/network/serverinfo</value></field>` +
		`<field var="abuse-addresses"><value>mailto:abuse@example.com</value><value>xmpp:abuse@example.com</value></field>` +
		`<field var="admin-addresses"/><field var="feedback-addresses"/><field var="sales-addresses"/>` +
		`<field var="security-addresses"/>` +
		`<field var="support-addresses"><value>https://example.com/support</value></field></x></query>`
	if got := moduletest.String(res); !strings.HasSuffix(got, want) {
		t.Errorf("info:\n got %s\nwant suffix %s", got, want)
	}
	s := VerString(m.ServerInfo())
	if !strings.Contains(s, "http://jabber.org/network/serverinfo<abuse-addresses<mailto:abuse@example.com<xmpp:abuse@example.com<") {
		t.Errorf("caps S lacks the form: %q", s)
	}
	// The account's info carries no server form.
	res, err = moduletest.Request(t, m, "alice@"+moduletest.Domain+"/a", module.ScopeAccount,
		`<iq type='get' to='alice@`+moduletest.Domain+`' id='info2'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(moduletest.String(res), "serverinfo") {
		t.Errorf("account info has the form: %s", moduletest.String(res))
	}
}

func TestServerInfoNoContacts(t *testing.T) {
	m, _ := newDisco(t, Config{})
	if len(m.ServerInfo().Forms) != 0 {
		t.Errorf("forms without contacts: %v", m.ServerInfo().Forms)
	}
}
