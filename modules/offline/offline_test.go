package offline

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/palisade-im/palisade/server/module/moduletest"
	"github.com/palisade-im/palisade/server/stanza"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
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
	err := m.StoreOffline(ctx, moduletest.Parse(t, msg))
	if moduletest.Condition(err) != stanza.ServiceUnavailable || !strings.Contains(err.Error(), "limits.max_offline_messages") {
		t.Errorf("over quota: %v", err)
	}
}

// Past limits.max_offline_bytes a message is refused whole, with the
// quota named, and what was stored before stays; delivery frees the room.
func TestByteQuota(t *testing.T) {
	h, r := moduletest.NewHost(t, nil)
	m := NewWithQuota(h.Store, h.Log, Quota{Messages: 1000, Bytes: 4000}, func() time.Time { return stamp })
	ctx := context.Background()
	msg := `<message from='romeo@montague.net/orchard' to='juliet@example.com' type='chat'><body>` + strings.Repeat("x", 900) + `</body></message>`
	stored := 0
	var err error
	for range 10 {
		if err = m.StoreOffline(ctx, moduletest.Parse(t, msg)); err != nil {
			break
		}
		stored++
	}
	if stored != 3 || moduletest.Condition(err) != stanza.ServiceUnavailable || !strings.Contains(err.Error(), "limits.max_offline_bytes") {
		t.Fatalf("stored %d, then %v; want 3 and service-unavailable naming limits.max_offline_bytes", stored, err)
	}
	pending, err := h.Store.Pending(ctx, "juliet@example.com")
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, p := range pending {
		total += len(p.Stanza)
	}
	if len(pending) != 3 || total > 4000 {
		t.Errorf("%d messages of %d bytes stored, want 3 within 4000", len(pending), total)
	}
	// A smaller message still fits in what is left.
	if err := m.StoreOffline(ctx, moduletest.Parse(t, `<message from='romeo@montague.net/orchard' to='juliet@example.com'><body>hi</body></message>`)); err != nil {
		t.Errorf("small message: %v", err)
	}
	s := r.Login(t, "juliet@example.com/balcony")
	m.InitialPresence(ctx, s)
	if got := s.TakeXML(); len(got) != 4 {
		t.Errorf("delivered %d, want 4", len(got))
	}
	if err := m.StoreOffline(ctx, moduletest.Parse(t, msg)); err != nil {
		t.Errorf("after delivery: %v", err)
	}
}

// A flood into a full account logs one line a minute, which counts the
// refusals it stands for, not one line per message.
func TestFullLoggedOnce(t *testing.T) {
	h, _ := moduletest.NewHost(t, nil)
	core, logs := observer.New(zap.InfoLevel)
	now := stamp
	m := NewWithQuota(h.Store, zap.New(core), Quota{Messages: 1}, func() time.Time { return now })
	ctx := context.Background()
	msg := `<message from='romeo@montague.net/orchard' to='juliet@example.com'><body>hi</body></message>`
	if err := m.StoreOffline(ctx, moduletest.Parse(t, msg)); err != nil {
		t.Fatal(err)
	}
	for range 50 {
		if err := m.StoreOffline(ctx, moduletest.Parse(t, msg)); moduletest.Condition(err) != stanza.ServiceUnavailable {
			t.Fatalf("over quota: %v", err)
		}
		now = now.Add(time.Second / 2)
	}
	if got := logs.FilterMessage("offline storage full").Len(); got != 1 {
		t.Fatalf("%d storage-full lines for 50 refusals in 25 s, want 1", got)
	}
	now = now.Add(time.Minute)
	m.StoreOffline(ctx, moduletest.Parse(t, msg))
	lines := logs.FilterMessage("offline storage full").AllUntimed()
	if len(lines) != 2 || lines[1].ContextMap()["suppressed"] != int64(49) {
		t.Errorf("after a minute: %d lines, last %v; want 2, suppressed 49", len(lines), lines[len(lines)-1].ContextMap())
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
