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
		if err := s.Store(ctx, "alice@example.com", stanza, time.Now(), 0); err != nil {
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
