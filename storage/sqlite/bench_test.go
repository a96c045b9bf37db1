package sqlite

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/palisade-im/palisade/storage"
)

// Each iteration is one durable (fsynced) transaction.

func BenchmarkOfflineStore(b *testing.B) {
	ctx := context.Background()
	s, _ := openTest(b)
	stanza := []byte(`<message from="bob@example.net/phone" to="alice@example.com" type="chat"><body>hello</body></message>`)
	b.ReportAllocs()
	for b.Loop() {
		if err := s.Store(ctx, "alice@example.com", stanza, time.Now(), 0, 0); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRosterPut(b *testing.B) {
	ctx := context.Background()
	s, _ := openTest(b)
	item := storage.RosterItem{Name: "Contact", Subscription: storage.SubBoth, Groups: []string{"Friends"}}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		item.JID = fmt.Sprintf("c%d@example.net", i%1000)
		i++
		if _, err := s.PutItem(ctx, "alice@example.com", item); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAppendHistory stores batches as the MAM writer does under
// load: 4096 items over 200 owners in 100 conversations per commit. It
// reports items per second; run it long (-benchtime=200x) so that the
// history outgrows the page cache.
func BenchmarkAppendHistory(b *testing.B) {
	ctx := context.Background()
	s, _ := openTest(b)
	stanza := []byte(`<message xmlns="jabber:client" from="user17@example.com/res" to="user18@example.com" type="chat" id="a8b9c0d1"><body>The quick brown fox jumps over the lazy dog, 0123456789.</body><stanza-id xmlns="urn:xmpp:sid:0" by="user18@example.com" id="abcdefghijklmnopqrstuvwxyz"/></message>`)
	const batch, owners = 4096, 200
	items := make([]storage.HistoryItem, batch)
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		now := time.Now()
		for i := range items {
			o := (n + i) % owners
			items[i] = storage.HistoryItem{Owner: fmt.Sprintf("user%d@example.com", o), ID: s.NewHistoryID(),
				Time: now, With: fmt.Sprintf("user%d@example.com/res", o^1), Stanza: stanza}
		}
		n += batch
		if err := s.AppendHistory(ctx, items); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "items/s")
}
