package archive

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/palisade-im/palisade/storage"
	"go.uber.org/zap"
)

func TestSearch(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	officer := officerKey(t, "officer")
	for _, m := range []struct{ from, to, body string }{
		{"alice@example.com/a", "bob@example.com", "Quarterly numbers"},
		{"bob@example.com/b", "alice@example.com", "thanks"},
		{"carol@example.com/c", "bob@example.com", "lunch?"},
	} {
		if err := f.m.Append(ctx, msg(t, m.from, m.to, "chat", m.body)); err != nil {
			t.Fatal(err)
		}
		if m.body == "thanks" {
			f.m.sealer = NewSealer(openpgp.EntityList{officer}, f.j) // the rest is sealed
		}
	}
	audit := zap.NewNop()
	search := func(opt SearchOptions) []Hit {
		t.Helper()
		hits, err := Search(ctx, f.j, opt, "officer", audit)
		if err != nil {
			t.Fatal(err)
		}
		return hits
	}
	if hits := search(SearchOptions{ExportOptions: ExportOptions{Users: []string{"bob@example.com"}, With: []string{"alice@example.com"}}}); len(hits) != 2 || hits[1].Body != "thanks" {
		t.Errorf("user and partner: %+v", hits)
	}
	if hits := search(SearchOptions{Text: "QUARTERLY", ExportOptions: ExportOptions{Users: []string{"alice@example.com"}}}); len(hits) != 1 || hits[0].Seq != 0 {
		t.Errorf("text in the clear: %+v", hits)
	}
	if _, err := Search(ctx, f.j, SearchOptions{Text: "lunch"}, "officer", audit); !errors.Is(err, ErrSearchNeedsKey) {
		t.Errorf("text search over sealed records without a key: %v", err)
	}
	keys, _ := f.j.EpochKeys(ctx)
	hits := search(SearchOptions{Text: "lunch", ExportOptions: ExportOptions{Open: NewOpener(openpgp.EntityList{officer}, keys)}})
	if len(hits) != 1 || hits[0].From != "carol@example.com/c" || !hits[0].Encrypted || hits[0].Body != "lunch?" {
		t.Errorf("text search with the officer key: %+v", hits)
	}
	// Each search (not the refused one) is a journal record.
	var searches []string
	for _, r := range records(t, f.j) {
		if r.Kind == storage.KindSearch {
			rec, err := DecodeRecord(r.Data)
			if err != nil {
				t.Fatal(err)
			}
			searches = append(searches, rec.Content)
		}
	}
	if len(searches) != 3 || !strings.Contains(searches[2], `"text":"lunch","decrypted":true,"hits":1,"seqs":[[2,2]],"by":"officer"`) {
		t.Errorf("search records: %q", searches)
	}
}
