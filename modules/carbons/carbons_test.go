package carbons

import (
	"context"
	"strings"
	"testing"

	"github.com/palisade-im/palisade/server/module"
	"github.com/palisade-im/palisade/server/module/moduletest"
	"github.com/palisade-im/palisade/server/stanza"
)

func newCarbons(t *testing.T) (*Module, *moduletest.Router) {
	t.Helper()
	h, r := moduletest.NewHost(t, nil)
	return New(r, h.Log), r
}

func TestEnableDisable(t *testing.T) {
	m, r := newCarbons(t)
	garden := r.Login(t, "romeo@montague.example/garden")
	// XEP-0280 section 4: client enables carbons.
	res, err := moduletest.RequestSession(t, m, garden, module.ScopeAccount,
		`<iq xmlns='jabber:client' from='romeo@montague.example/garden' id='enable1' type='set'><enable xmlns='urn:xmpp:carbons:2'/></iq>`)
	if err != nil || res != nil || !garden.Carbons() {
		t.Fatalf("enable: %s, %v, %v", moduletest.String(res), err, garden.Carbons())
	}
	// Enabling twice is fine.
	if _, err := moduletest.RequestSession(t, m, garden, module.ScopeServer,
		`<iq to='montague.example' id='enable2' type='set'><enable xmlns='urn:xmpp:carbons:2'/></iq>`); err != nil || !garden.Carbons() {
		t.Fatal(err)
	}
	// Section 5: client disables carbons.
	if _, err := moduletest.RequestSession(t, m, garden, module.ScopeAccount,
		`<iq xmlns='jabber:client' from='romeo@montague.example/garden' id='disable1' type='set'><disable xmlns='urn:xmpp:carbons:2'/></iq>`); err != nil || garden.Carbons() {
		t.Fatalf("disable: %v, %v", err, garden.Carbons())
	}
	// Not a local session (section 4.1), another user's account, a get.
	_, err = moduletest.Request(t, m, "romeo@montague.example/garden", module.ScopeAccount,
		`<iq id='enable3' type='set'><enable xmlns='urn:xmpp:carbons:2'/></iq>`)
	if moduletest.Condition(err) != stanza.NotAllowed {
		t.Errorf("no session: %v", err)
	}
	_, err = moduletest.RequestSession(t, m, garden, module.ScopeAccount,
		`<iq to='juliet@capulet.example' id='disable2' type='set'><disable xmlns='urn:xmpp:carbons:2'/></iq>`)
	if moduletest.Condition(err) != stanza.NotAllowed {
		t.Errorf("other account: %v", err)
	}
	_, err = moduletest.RequestSession(t, m, garden, module.ScopeAccount,
		`<iq id='enable4' type='get'><enable xmlns='urn:xmpp:carbons:2'/></iq>`)
	if moduletest.Condition(err) != stanza.BadRequest {
		t.Errorf("get: %v", err)
	}
}

// romeo has three sessions: garden and home with carbons, work without.
func romeo(t *testing.T, r *moduletest.Router) (garden, home, work *moduletest.Session) {
	garden = r.Login(t, "romeo@montague.example/garden")
	home = r.Login(t, "romeo@montague.example/home")
	work = r.Login(t, "romeo@montague.example/work")
	garden.SetCarbons(true)
	home.SetCarbons(true)
	return
}

func TestReceived(t *testing.T) {
	m, r := newCarbons(t)
	garden, home, work := romeo(t, r)
	// XEP-0280 section 6 (Receiving Messages): Juliet sends Romeo a directed message ...
	msg := moduletest.Parse(t, `<message xmlns='jabber:client' from='juliet@capulet.example/balcony' to='romeo@montague.example/garden' type='chat'>
  <body>What man art thou that, thus bescreen'd in night, so stumblest on my counsel?</body>
  <thread>0e3141cd80894871a68e6fe6b1ec56fa</thread>
</message>`)
	m.MessageDelivered(context.Background(), msg, []module.Session{garden}, false)
	// ... and the server sends the carbon to Romeo's other client.
	want := `<message xmlns="jabber:client" type="chat" from="romeo@montague.example" to="romeo@montague.example/home">` +
		`<received xmlns="urn:xmpp:carbons:2"><forwarded xmlns="urn:xmpp:forward:0">` + msg.El.String() +
		`</forwarded></received></message>`
	got := home.TakeXML()
	if len(got) != 1 || got[0] != want {
		t.Errorf("home:\n got %v\nwant %s", got, want)
	}
	if g := garden.TakeXML(); len(g) != 0 {
		t.Errorf("garden got the message and a copy: %v", g)
	}
	if g := work.TakeXML(); len(g) != 0 {
		t.Errorf("work has carbons disabled: %v", g)
	}
}

func TestSent(t *testing.T) {
	m, r := newCarbons(t)
	garden, home, work := romeo(t, r)
	// XEP-0280 section 7 (Sending Messages): Romeo replies from home ...
	msg := moduletest.Parse(t, `<message xmlns='jabber:client' from='romeo@montague.example/home' to='juliet@capulet.example/balcony' type='chat'>
  <body>Neither, fair saint, if either thee dislike.</body>
  <thread>0e3141cd80894871a68e6fe6b1ec56fa</thread>
</message>`)
	m.MessageSent(context.Background(), home, msg)
	// ... and the server sends the sent carbon to garden.
	want := `<message xmlns="jabber:client" type="chat" from="romeo@montague.example" to="romeo@montague.example/garden">` +
		`<sent xmlns="urn:xmpp:carbons:2"><forwarded xmlns="urn:xmpp:forward:0">` + msg.El.String() +
		`</forwarded></sent></message>`
	got := garden.TakeXML()
	if len(got) != 1 || got[0] != want {
		t.Errorf("garden:\n got %v\nwant %s", got, want)
	}
	if g := home.TakeXML(); len(g) != 0 {
		t.Errorf("sender got a copy: %v", g)
	}
	if g := work.TakeXML(); len(g) != 0 {
		t.Errorf("work has carbons disabled: %v", g)
	}
}

func TestToSelf(t *testing.T) {
	m, r := newCarbons(t)
	garden, home, work := romeo(t, r)
	work.SetCarbons(true)
	msg := moduletest.Parse(t, `<message from='romeo@montague.example/home' to='romeo@montague.example' type='chat'><body>note</body></message>`)
	m.MessageSent(context.Background(), home, msg)
	m.MessageDelivered(context.Background(), msg, []module.Session{garden}, true)
	if g := garden.TakeXML(); len(g) != 0 {
		t.Errorf("garden got the message itself: %v", g)
	}
	if g := home.TakeXML(); len(g) != 0 {
		t.Errorf("sender: %v", g)
	}
	if g := work.TakeXML(); len(g) != 1 {
		t.Errorf("work: one received copy expected, got %v", g)
	}
}

func TestEligible(t *testing.T) {
	for _, tc := range []struct {
		xml  string
		want bool
	}{
		{`<message type='chat'><body>x</body></message>`, true},
		{`<message type='chat'/>`, true},
		{`<message><body>x</body></message>`, true},
		{`<message type='normal'><body>x</body></message>`, true},
		{`<message type='normal'><subject>x</subject></message>`, false},
		{`<message><active xmlns='http://jabber.org/protocol/chatstates'/></message>`, true},
		{`<message><received xmlns='urn:xmpp:receipts' id='x'/></message>`, true},
		{`<message><displayed xmlns='urn:xmpp:chat-markers:0' id='x'/></message>`, true},
		{`<message type='groupchat'><body>x</body></message>`, false},
		{`<message type='headline'><body>x</body></message>`, false},
		{`<message type='error'><body>x</body></message>`, false},
		// XEP-0280 section 8: <private/>, with or without the no-copy hint.
		{`<message type='chat'><body>x</body><private xmlns='urn:xmpp:carbons:2'/><no-copy xmlns='urn:xmpp:hints'/></message>`, false},
		{`<message type='chat'><body>x</body><private xmlns='urn:xmpp:carbons:2'/></message>`, false},
		{`<message type='chat'><body>x</body><no-copy xmlns='urn:xmpp:hints'/></message>`, false},
		// Already a carbon.
		{`<message type='chat'><received xmlns='urn:xmpp:carbons:2'/></message>`, false},
		{`<message type='chat'><sent xmlns='urn:xmpp:carbons:2'/></message>`, false},
	} {
		if got := Eligible(moduletest.Parse(t, tc.xml)); got != tc.want {
			t.Errorf("%s: %v", tc.xml, got)
		}
	}
	// Presence is never eligible.
	if Eligible(moduletest.Parse(t, `<presence/>`)) {
		t.Error("presence eligible")
	}
}

func TestPrivateMessageNotCopied(t *testing.T) {
	m, r := newCarbons(t)
	garden, home, _ := romeo(t, r)
	for _, x := range []string{
		`<message from='juliet@capulet.example/balcony' to='romeo@montague.example/garden' type='chat'><body>x</body><private xmlns='urn:xmpp:carbons:2'/><no-copy xmlns='urn:xmpp:hints'/></message>`,
		// A private message from a chat room occupant.
		`<message from='room@muc.example/nurse' to='romeo@montague.example/garden' type='chat'><body>x</body><x xmlns='http://jabber.org/protocol/muc#user'/></message>`,
	} {
		msg := moduletest.Parse(t, x)
		m.MessageDelivered(context.Background(), msg, []module.Session{garden}, false)
		if g := home.TakeXML(); len(g) != 0 {
			t.Errorf("%s copied: %v", x, g)
		}
	}
}

// The sent carbon does not show the recipient's archive id (XEP-0313
// section 3.3); the sender's own stays.
func TestSentWithoutRecipientsStanzaID(t *testing.T) {
	m, r := newCarbons(t)
	garden, home, _ := romeo(t, r)
	msg := moduletest.Parse(t, `<message from='romeo@montague.example/home' to='juliet@capulet.example/balcony' type='chat'><body>b</body>`+
		`<stanza-id xmlns='urn:xmpp:sid:0' by='juliet@capulet.example' id='j1'/><stanza-id xmlns='urn:xmpp:sid:0' by='romeo@montague.example' id='r1'/></message>`)
	m.MessageSent(context.Background(), home, msg)
	got := garden.TakeXML()
	if len(got) != 1 || strings.Contains(got[0], "j1") || !strings.Contains(got[0], "r1") || !strings.Contains(got[0], "<body>b</body>") {
		t.Fatalf("garden: %v", got)
	}
	if !strings.Contains(msg.El.String(), "j1") {
		t.Fatal("the original lost the recipient's stanza-id")
	}
}
