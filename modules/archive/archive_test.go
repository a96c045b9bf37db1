package archive

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/palisade-im/palisade/server/element"
	"github.com/palisade-im/palisade/server/stanza"
	"github.com/palisade-im/palisade/storage"
	"github.com/palisade-im/palisade/storage/sqlite"
	"github.com/palisade-im/palisade/storage/sqlite/journaltest"
	"go.uber.org/zap"
	"golang.org/x/mod/sumdb/note"
	"mellium.im/xmpp/jid"
)

type localDomains map[string]bool

func (l localDomains) IsLocal(d string) bool { return l[d] }

type fixture struct {
	m        *Module
	j        *sqlite.Journal
	path     string
	dir      string
	verifier note.Verifier
	keyFile  string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "journal.db")
	j, err := sqlite.OpenJournal(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = j.Close() })
	keyFile := filepath.Join(dir, "key")
	signer, err := LoadOrCreateKey(keyFile, "example.com/palisade-journal")
	if err != nil {
		t.Fatal(err)
	}
	vkey, err := ReadVerifierKey(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	cdir := filepath.Join(dir, "checkpoints")
	m := New(j, signer, []Sink{DirSink{Dir: cdir}}, localDomains{"example.com": true}, time.Hour, zap.NewNop(), zap.NewNop())
	return &fixture{m: m, j: j, path: path, dir: cdir, verifier: v, keyFile: keyFile}
}

func msg(t *testing.T, from, to, typ, body string) *stanza.Stanza {
	t.Helper()
	st := stanza.New(stanza.Message, jid.MustParse(from), jid.MustParse(to), typ, "id-"+body)
	st.El.Append(element.New(stanza.NSClient, "body").SetText(body))
	return st
}

func records(t *testing.T, j storage.Journal) []storage.JournalRecord {
	t.Helper()
	var out []storage.JournalRecord
	if err := j.Records(context.Background(), 0, 1<<62, func(r storage.JournalRecord) error {
		out = append(out, r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestRecordEncoding(t *testing.T) {
	content := []byte("<message xmlns=\"jabber:client\"><body>\"quoted\" \\ back\tslash \u00e9\u2028 \U0001F600</body></message>")
	when := time.Date(2026, 12, 1, 19, 0, 0, 123456789, time.FixedZone("x", 3600))
	data, err := appendRecord(nil, when, "local", "message", "a@example.com/r\"", "b@example.com", "chat", "i\x01d", content)
	if err != nil {
		t.Fatal(err)
	}
	if !json.Valid(data) {
		t.Fatalf("not JSON: %s", data)
	}
	r, err := DecodeRecord(data)
	if err != nil {
		t.Fatal(err)
	}
	if r.Content != string(content) || r.From != "a@example.com/r\"" || r.ID != "i\x01d" || r.Size != len(content) ||
		!r.Time.Equal(when) || r.Enc != EncNone || r.Kind != "message" {
		t.Fatalf("decoded %+v", r)
	}
	if !strings.HasPrefix(string(data), `{"v":1,"time":"2026-12-01T18:00:00.123456789Z","dir":"local","kind":"message","from":"a@example.com/r\"","to":"b@example.com","type":"chat","id":"i\u0001d","size":`) {
		t.Fatalf("encoding is not the canonical form: %s", data)
	}
	tampered := strings.Replace(string(data), "quoted", "quoteD", 1)
	if _, err := DecodeRecord([]byte(tampered)); err == nil || !strings.Contains(err.Error(), "commitment") {
		t.Fatalf("changed content decoded: %v", err)
	}
	if _, err := DecodeRecord([]byte(strings.Replace(string(data), `{"v":1,`, `{"v":1,"extra":1,`, 1))); err == nil {
		t.Fatal("unknown key accepted")
	}
}

func TestAppendSelects(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	alice, bob := jid.MustParse("alice@example.com/phone"), jid.MustParse("bob@example.com")
	noStore := msg(t, "alice@example.com/phone", "bob@example.com", "chat", "secret")
	noStore.El.Append(element.New("urn:xmpp:hints", "no-store"), element.New("urn:xmpp:hints", "no-permanent-store"))
	copied := stanza.New(stanza.Presence, alice, bob, "", "")
	copied.Journaled = true // a broadcast's copy: its original was journaled
	in := []*stanza.Stanza{
		msg(t, "alice@example.com/phone", "bob@example.com", "chat", "hello"),
		noStore,
		stanza.New(stanza.Presence, alice.Bare(), bob, "subscribe", ""),
		stanza.New(stanza.Presence, alice, bob, "", ""), // directed presence
		copied, // not journaled
		stanza.New(stanza.Presence, alice, bob, "probe", ""),                          // not journaled
		stanza.New(stanza.IQ, alice, bob, "get", "q1"),                                // answered by the server: not journaled
		stanza.New(stanza.IQ, alice, jid.MustParse("bob@example.com/b"), "get", "q2"), // to bob's client
		msg(t, "alice@example.com/phone", "carol@remote.example", "chat", "out"),
		msg(t, "dave@remote.example/x", "alice@example.com", "", "in"),
	}
	for _, st := range in {
		if err := f.m.Append(ctx, st); err != nil {
			t.Fatal(err)
		}
	}
	recs := records(t, f.j)
	want := []struct {
		kind storage.RecordKind
		dir  storage.Direction
		body string
	}{
		{storage.KindMessage, storage.DirLocal, "hello"},
		{storage.KindMessage, storage.DirLocal, "secret"},
		{storage.KindSubscription, storage.DirLocal, ""},
		{storage.KindPresence, storage.DirLocal, ""},
		{storage.KindIQ, storage.DirLocal, "q2"},
		{storage.KindMessage, storage.DirOutbound, "out"},
		{storage.KindMessage, storage.DirInbound, "in"},
	}
	if len(recs) != len(want) {
		t.Fatalf("%d records, want %d", len(recs), len(want))
	}
	for i, w := range want {
		r, err := DecodeRecord(recs[i].Data)
		if err != nil {
			t.Fatal(err)
		}
		if recs[i].Kind != w.kind || recs[i].Direction != w.dir || r.Kind != string(w.kind) || r.Dir != string(w.dir) ||
			!strings.Contains(r.Content, w.body) || recs[i].StanzaSize != len(r.Content) {
			t.Errorf("record %d = %+v / %+v, want %+v", i, recs[i], r, w)
		}
	}
	if !strings.Contains(string(recs[1].Data), "no-store") {
		t.Error("the no-store hint is not in the journaled stanza")
	}
}

func TestCheckpointsAndVerify(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	if err := f.m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	for round := range 3 {
		for i := range 5 + round {
			if err := f.m.Append(ctx, msg(t, "alice@example.com/a", "bob@example.com", "chat", fmt.Sprintf("r%d-%d", round, i))); err != nil {
				t.Fatal(err)
			}
		}
		if err := f.m.Checkpoint(ctx); err != nil {
			t.Fatal(err)
		}
		if err := f.m.Checkpoint(ctx); err != nil { // unchanged: no new checkpoint
			t.Fatal(err)
		}
	}
	if err := f.m.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	cps, err := f.j.Checkpoints(ctx)
	if err != nil || len(cps) != 3 || cps[0].Size != 5 || cps[1].Size != 11 || cps[2].Size != 18 {
		t.Fatalf("checkpoints = %+v, %v", cps, err)
	}
	files, _ := filepath.Glob(filepath.Join(f.dir, "checkpoint-*.txt"))
	if len(files) != 3 {
		t.Fatalf("checkpoint files %v", files)
	}
	b, err := os.ReadFile(files[2])
	if err != nil || string(b) != string(cps[2].Note) {
		t.Fatalf("sink file differs from the kept checkpoint: %v", err)
	}
	head, err := ParseCheckpoint(b, f.verifier)
	if err != nil || head.Size != 18 {
		t.Fatalf("ParseCheckpoint = %+v, %v", head, err)
	}
	if !strings.HasPrefix(string(b), "example.com/palisade-journal\n18\n") {
		t.Fatalf("checkpoint text:\n%s", b)
	}

	rep, err := Verify(ctx, f.j, f.verifier)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) != 0 || rep.Records != 18 || rep.Checkpoints != 3 {
		t.Fatalf("clean journal: %+v", rep)
	}

	// Another key's verifier rejects every checkpoint.
	_, vkey, _ := note.GenerateKey(rand.Reader, "example.com/palisade-journal")
	other, _ := note.NewVerifier(vkey)
	if rep, err := Verify(ctx, f.j, other); err != nil || len(rep.Problems) != 3 {
		t.Fatalf("verify with another key: %+v, %v", rep, err)
	}

	// One byte changed in record 7.
	if err := journaltest.Replace(f.path, 7, "r1-2", "r1-3"); err != nil {
		t.Fatal(err)
	}
	rep, err = Verify(ctx, f.j, f.verifier)
	if err != nil {
		t.Fatal(err)
	}
	if bad, ok := rep.FirstBad(); !ok || bad != 7 {
		t.Fatalf("changed record 7: first bad = %d, %v; %+v", bad, ok, rep.Problems)
	}

	// The change undone: the journal verifies again.
	if err := journaltest.Replace(f.path, 7, "r1-3", "r1-2"); err != nil {
		t.Fatal(err)
	}
	if rep, _ := Verify(ctx, f.j, f.verifier); len(rep.Problems) != 0 {
		t.Fatalf("restored journal: %+v", rep.Problems)
	}
	// The last record cut from the file: the checkpoints still count it.
	if err := f.j.Close(); err != nil {
		t.Fatal(err)
	}
	if err := journaltest.Cut(f.path, 17); err != nil {
		t.Fatal(err)
	}
	ro, err := sqlite.OpenJournalReadOnly(ctx, f.path)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	rep, _ = Verify(ctx, ro, f.verifier)
	if bad, ok := rep.FirstBad(); !ok || bad != 17 {
		t.Fatalf("removed last record: first bad = %d, %v; %+v", bad, ok, rep.Problems)
	}
}

// TestVerifyRewrittenHashes rewrites a record and every stored hash to
// match it: only the signed checkpoints can tell.
func TestVerifyRewrittenHashes(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	for i := range 8 {
		if err := f.m.Append(ctx, msg(t, "alice@example.com/a", "bob@example.com", "chat", fmt.Sprintf("m%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.m.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	recs := records(t, f.j)
	if err := f.j.Close(); err != nil {
		t.Fatal(err)
	}
	// Build a second journal with record 2 changed, then put the first
	// one's checkpoint into it.
	forged := filepath.Join(t.TempDir(), "forged.db")
	j2, err := sqlite.OpenJournal(ctx, forged)
	if err != nil {
		t.Fatal(err)
	}
	defer j2.Close()
	for i, r := range recs {
		if i == 2 {
			r.Data = []byte(strings.Replace(string(r.Data), "m2", "m9", 1))
		}
		if err := j2.Append(ctx, []storage.JournalRecord{r}); err != nil {
			t.Fatal(err)
		}
	}
	j1, err := sqlite.OpenJournalReadOnly(ctx, f.path)
	if err != nil {
		t.Fatal(err)
	}
	defer j1.Close()
	cps, _ := j1.Checkpoints(ctx)
	if err := j2.AddCheckpoint(ctx, cps[0]); err != nil {
		t.Fatal(err)
	}
	rep, err := Verify(ctx, j2, f.verifier)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) == 0 || !strings.Contains(rep.Problems[0].String(), "does not match the records") {
		t.Fatalf("forged journal: %+v", rep.Problems)
	}
}

func TestSigningKeyFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "k")
	s1, err := LoadOrCreateKey(path, "example.com/palisade-journal")
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, %v", fi.Mode(), err)
	}
	s2, err := LoadOrCreateKey(path, "other-name")
	if err != nil || s2.Name() != s1.Name() || s2.KeyHash() != s1.KeyHash() {
		t.Fatalf("reloaded key differs: %v", err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateKey(path, "x"); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("world-readable key accepted: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bad"), []byte("nonsense"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateKey(filepath.Join(dir, "bad"), "x"); err == nil {
		t.Fatal("a bad key file was accepted")
	}
}

// BenchmarkAppend measures appends through group commit, with content in
// the clear and with officer encryption at rest.
func BenchmarkAppend(b *testing.B) {
	b.Run("plain", func(b *testing.B) { benchmarkAppend(b, false) })
	b.Run("encrypted", func(b *testing.B) { benchmarkAppend(b, true) })
}

func benchmarkAppend(b *testing.B, encrypted bool) {
	dir := b.TempDir()
	j, err := sqlite.OpenJournal(context.Background(), filepath.Join(dir, "j.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer j.Close()
	signer, _ := LoadOrCreateKey(filepath.Join(dir, "k"), "example.com/palisade-journal")
	m := New(j, signer, nil, localDomains{"example.com": true}, time.Hour, zap.NewNop(), zap.NewNop())
	if encrypted {
		m.sealer = NewSealer(openpgp.EntityList{officerKey(b, "officer")}, j)
	}
	st := stanza.New(stanza.Message, jid.MustParse("alice@example.com/a"), jid.MustParse("bob@example.com"), "chat", "id1")
	st.El.Append(element.New(stanza.NSClient, "body").SetText(strings.Repeat("hello ", 30)))
	b.ReportAllocs()
	b.SetParallelism(64)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := m.Append(context.Background(), st); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

type failingSink struct{ fail *bool }

func (s failingSink) Publish(int64, []byte) error {
	if *s.fail {
		return fmt.Errorf("sink unreachable")
	}
	return nil
}

// TestSinkFailureHealth: a sink that fails marks the health status, the
// checkpoint is kept anyway, and the next good publication clears it.
func TestSinkFailureHealth(t *testing.T) {
	f := newFixture(t)
	fail := true
	f.m.sinks = append(f.m.sinks, failingSink{&fail})
	health := map[string]string{}
	f.m.health = func(c, p string) {
		if p == "" {
			delete(health, c)
		} else {
			health[c] = p
		}
	}
	ctx := context.Background()
	for i, wantBad := range []bool{true, false} {
		fail = wantBad
		if err := f.m.Append(ctx, msg(t, "alice@example.com/a", "bob@example.com", "chat", fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
		if err := f.m.Checkpoint(ctx); err != nil {
			t.Fatal(err)
		}
		if _, bad := health["archive-checkpoint-sink"]; bad != wantBad {
			t.Fatalf("round %d: health %v", i, health)
		}
	}
	if cps, _ := f.j.Checkpoints(ctx); len(cps) != 2 {
		t.Fatalf("%d checkpoints kept, want 2", len(cps))
	}
}
