package offline

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/palisade-im/palisade/server/module/moduletest"
	"github.com/palisade-im/palisade/server/stanza"
)

var stamp = time.Date(2002, 9, 10, 23, 8, 25, 0, time.UTC)

func newOffline(t *testing.T, max int) (*Module, *moduletest.Router) {
	t.Helper()
	h, r := moduletest.NewHost(t, nil)
	return New(h.Store, h.Log, max, func() time.Time { return stamp }), r
}

func TestStoreAndDeliver(t *testing.T) {
	m, r := newOffline(t, 100)
	ctx := context.Background()
	// XEP-0160 Example 1: a message to a user who is offline ...
	msg := `<message from='romeo@montague.net/orchard' to='juliet@example.com' type='chat'><body>O blessed, blessed night! I am afeard.</body></message>`
	if err := m.StoreOffline(ctx, moduletest.Parse(t, msg)); err != nil {
		t.Fatal(err)
	}
	if err := m.StoreOffline(ctx, moduletest.Parse(t, `<message from='romeo@montague.net/orchard' to='juliet@example.com/balcony'><body>second</body></message>`)); err != nil {
		t.Fatal(err)
	}
	if n, _ := r.Store().Count(ctx, "juliet@example.com"); n != 2 {
		t.Fatalf("%d stored", n)
	}

	// A resource with negative priority gets nothing.
	hidden := r.Login(t, "juliet@example.com/hidden")
	hidden.SetPriority(-1)
	m.InitialPresence(ctx, hidden)
	if got := hidden.TakeXML(); len(got) != 0 {
		t.Errorf("negative priority got %v", got)
	}

	// ... Example 3: delivered with a delay stamp when she comes online.
	balcony := r.Login(t, "juliet@example.com/balcony")
	m.InitialPresence(ctx, balcony)
	want := []string{
		`<message xmlns="jabber:client" from="romeo@montague.net/orchard" to="juliet@example.com" type="chat">` +
			`<body>O blessed, blessed night! I am afeard.</body>` +
			`<delay xmlns="urn:xmpp:delay" from="example.com" stamp="2002-09-10T23:08:25Z">Offline Storage</delay></message>`,
		`<message xmlns="jabber:client" from="romeo@montague.net/orchard" to="juliet@example.com/balcony"><body>second</body>` +
			`<delay xmlns="urn:xmpp:delay" from="example.com" stamp="2002-09-10T23:08:25Z">Offline Storage</delay></message>`,
	}
	if got := balcony.TakeXML(); !slices.Equal(got, want) {
		t.Errorf("delivered:\n got %v\nwant %v", got, want)
	}
	if n, _ := r.Store().Count(ctx, "juliet@example.com"); n != 0 {
		t.Errorf("%d left after delivery", n)
	}
	// Nothing twice.
	again := r.Login(t, "juliet@example.com/chamber")
	m.InitialPresence(ctx, again)
	if got := again.TakeXML(); len(got) != 0 {
		t.Errorf("delivered twice: %v", got)
	}
}

func TestQuota(t *testing.T) {
	m, _ := newOffline(t, 2)
	ctx := context.Background()
	msg := `<message from='romeo@montague.net/orchard' to='juliet@example.com' type='chat'><body>hi</body></message>`
	for i := range 2 {
		if err := m.StoreOffline(ctx, moduletest.Parse(t, msg)); err != nil {
			t.Fatalf("%d: %v", i, err)
		}
	}
	// XEP-0160 section 3: storage full.
	if err := m.StoreOffline(ctx, moduletest.Parse(t, msg)); moduletest.Condition(err) != stanza.ServiceUnavailable {
		t.Errorf("over quota: %v", err)
	}
}

func TestExistingDelay(t *testing.T) {
	m, r := newOffline(t, 0)
	ctx := context.Background()
	// Rerouted by the core with its own stamp, and one from elsewhere.
	msg := `<message from='romeo@montague.net/orchard' to='juliet@example.com'><body>x</body>` +
		`<delay xmlns='urn:xmpp:delay' from='montague.net' stamp='2002-09-10T23:05:37Z'/>` +
		`<delay xmlns='urn:xmpp:delay' from='example.com' stamp='2002-09-10T23:06:00Z'/></message>`
	if err := m.StoreOffline(ctx, moduletest.Parse(t, msg)); err != nil {
		t.Fatal(err)
	}
	s := r.Login(t, "juliet@example.com/balcony")
	m.InitialPresence(ctx, s)
	got := s.TakeXML()
	if len(got) != 1 || got[0] != moduletest.Parse(t, msg).El.String() {
		t.Errorf("got %v", got)
	}
}

func TestStorable(t *testing.T) {
	for _, tc := range []struct {
		xml  string
		want bool
	}{
		{`<message type='chat'><body>x</body></message>`, true},
		{`<message><body>x</body></message>`, true},
		{`<message type='normal'><body>x</body></message>`, true},
		{`<message type='headline'><body>x</body></message>`, false},
		{`<message type='groupchat'><body>x</body></message>`, false},
		{`<message type='error'><body>x</body></message>`, false},
		// XEP-0085: a bare chat state is not stored.
		{`<message type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>`, false},
		{`<message type='chat'><thread>t</thread><gone xmlns='http://jabber.org/protocol/chatstates'/><origin-id xmlns='urn:xmpp:sid:0' id='1'/></message>`, false},
		// Other payloads are (receipts, encrypted messages, ...).
		{`<message><received xmlns='urn:xmpp:receipts' id='x'/></message>`, true},
		{`<message type='chat'><encrypted xmlns='eu.siacs.conversations.axolotl'/></message>`, true},
		{`<message><subject>s</subject></message>`, true},
		// XEP-0334 hints.
		{`<message type='chat'><body>x</body><no-store xmlns='urn:xmpp:hints'/></message>`, false},
		{`<message type='chat'><active xmlns='http://jabber.org/protocol/chatstates'/><store xmlns='urn:xmpp:hints'/></message>`, true},
		{`<presence/>`, false},
	} {
		if got := Storable(moduletest.Parse(t, tc.xml)); got != tc.want {
			t.Errorf("%s: %v", tc.xml, got)
		}
	}
	m, r := newOffline(t, 0)
	ctx := context.Background()
	if err := m.StoreOffline(ctx, moduletest.Parse(t, `<message from='a@b/c' to='juliet@example.com' type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>`)); err != nil {
		t.Error(err)
	}
	if n, _ := r.Store().Count(ctx, "juliet@example.com"); n != 0 {
		t.Errorf("chat state stored")
	}
}

func TestConcurrentDelivery(t *testing.T) {
	m, r := newOffline(t, 0)
	ctx := context.Background()
	const n = 20
	for range n {
		if err := m.StoreOffline(ctx, moduletest.Parse(t, `<message from='a@b/c' to='juliet@example.com'><body>x</body></message>`)); err != nil {
			t.Fatal(err)
		}
	}
	var sessions []*moduletest.Session
	var wg sync.WaitGroup
	for _, res := range []string{"a", "b", "c", "d"} {
		s := r.Login(t, "juliet@example.com/"+res)
		sessions = append(sessions, s)
		wg.Go(func() { m.InitialPresence(ctx, s) })
	}
	wg.Wait()
	total := 0
	for _, s := range sessions {
		total += len(s.TakeXML())
	}
	if total != n {
		t.Errorf("%d messages delivered, want %d", total, n)
	}
}
