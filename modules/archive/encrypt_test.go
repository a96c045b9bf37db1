package archive

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/palisade-im/palisade/storage"
)

func officerKey(t testing.TB, name string) *openpgp.Entity {
	t.Helper()
	e, err := openpgp.NewEntity(name, "officer", name+"@example.com", pgpConfig)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestOfficerEncryption(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	officer := officerKey(t, "officer")
	f.m.sealer = NewSealer(openpgp.EntityList{officer}, f.j)
	day1 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	f.m.now = func() time.Time { return day1 }
	for _, body := range []string{"secret-one", "secret-two"} {
		if err := f.m.Append(ctx, msg(t, "alice@example.com/a", "bob@example.com", "chat", body)); err != nil {
			t.Fatal(err)
		}
	}
	f.m.now = func() time.Time { return day1.Add(24 * time.Hour) }
	if err := f.m.Append(ctx, msg(t, "bob@example.com/b", "alice@example.com", "chat", "secret-three")); err != nil {
		t.Fatal(err)
	}
	keys, err := f.j.EpochKeys(ctx)
	if err != nil || len(keys) != 2 {
		t.Fatalf("epoch keys: %d, %v (want one per day)", len(keys), err)
	}
	recs := records(t, f.j)
	for i, r := range recs {
		if strings.Contains(string(r.Data), "<body>") || strings.Contains(string(r.Data), "body") {
			t.Errorf("record %d stores its content in the clear: %s", i, r.Data)
		}
		rec, err := DecodeRecord(r.Data)
		if err != nil || !strings.HasPrefix(rec.Enc, EncAESGCMPrefix) || rec.From != r.From || r.From == "" {
			t.Errorf("record %d: %+v, %v", i, rec, err)
		}
	}
	if err := f.m.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	if rep, err := Verify(ctx, f.j, f.verifier); err != nil || len(rep.Problems) != 0 {
		t.Fatalf("verify: %+v, %v", rep.Problems, err)
	}

	// The officer's key opens every record; another key opens none.
	op := NewOpener(openpgp.EntityList{officer}, keys)
	for i, r := range recs {
		rec, _ := DecodeRecord(r.Data)
		plain, err := op.Open(rec)
		if err != nil || !strings.Contains(string(plain), "<body>secret-") {
			t.Errorf("record %d: %q, %v", i, plain, err)
		}
	}
	rec0, _ := DecodeRecord(recs[0].Data)
	if _, err := NewOpener(openpgp.EntityList{officerKey(t, "mallory")}, keys).Open(rec0); err == nil {
		t.Error("another key decrypted a record")
	}
	forged := rec0
	forged.Commit = append([]byte(nil), rec0.Commit...)
	forged.Commit[0] ^= 1
	if _, err := op.Open(forged); err == nil || !strings.Contains(err.Error(), "commitment") {
		t.Errorf("a changed commitment: %v", err)
	}

	pgp, _ := LoadOrCreateOpenPGP(filepath.Join(t.TempDir(), "pgp.key"), "x")
	vkey, _ := ReadVerifierKey(f.keyFile)
	sealed := filepath.Join(t.TempDir(), "sealed")
	if _, err := Export(ctx, f.j, sealed, ExportOptions{}, vkey, pgp); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, sealed, FileRecords); strings.Contains(got, `"body":"secret`) || !strings.Contains(got, `"encrypted":true`) {
		t.Errorf("sealed export: %s", got)
	}
	if _, err := VerifyExport(sealed, VerifyExportOptions{VerifierKey: vkey}); err != nil {
		t.Fatalf("verify-export of the sealed export: %v", err)
	}
	open := filepath.Join(t.TempDir(), "open")
	sum, err := Export(ctx, f.j, open, ExportOptions{Open: op}, vkey, pgp)
	if err != nil || sum.Decrypted != 3 {
		t.Fatalf("decrypted export: %+v, %v", sum, err)
	}
	if got := readFile(t, open, FileRecords); !strings.Contains(got, `"body":"secret-two"`) {
		t.Errorf("decrypted export: %s", got)
	}
	report, err := VerifyExport(open, VerifyExportOptions{VerifierKey: vkey})
	if err != nil || !strings.Contains(report, "3 of them decrypted") {
		t.Fatalf("verify-export of the decrypted export: %q, %v", report, err)
	}

	// An epoch key lost from the journal makes its records undecryptable
	// for ever: verify names the first of them.
	db, err := sql.Open("sqlite3", "file:"+f.path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`DELETE FROM epoch_keys WHERE id = ?`, keys[1].ID); err != nil {
		t.Fatal(err)
	}
	rep, err := Verify(ctx, f.j, f.verifier)
	if err != nil || len(rep.Problems) != 1 || rep.Problems[0].Index != 2 || !strings.Contains(rep.Problems[0].Msg, keys[1].ID) {
		t.Fatalf("verify without an epoch key: %+v, %v", rep.Problems, err)
	}
}

// BenchmarkRecord is the CPU cost of encoding one record, in the clear and
// sealed (no storage).
func BenchmarkRecord(b *testing.B) {
	plain := []byte(`<message xmlns="jabber:client" from="alice@example.com/a" to="bob@example.com" type="chat" id="id1"><body>` +
		strings.Repeat("hello ", 30) + `</body></message>`)
	t := time.Now()
	b.Run("plain", func(b *testing.B) {
		buf := make([]byte, 0, 2048)
		for i := 0; i < b.N; i++ {
			buf, _ = appendRecord(buf[:0], t, "local", "message", "alice@example.com/a", "bob@example.com", "chat", "id1", plain)
		}
	})
	b.Run("encrypted", func(b *testing.B) {
		s := NewSealer(openpgp.EntityList{officerKey(b, "officer")}, memEpochs{})
		buf, sealed := make([]byte, 0, 2048), make([]byte, 0, 2048)
		for i := 0; i < b.N; i++ {
			enc, out, err := s.Seal(context.Background(), t, sealed[:0], plain)
			if err != nil {
				b.Fatal(err)
			}
			buf, _ = appendSealedRecord(buf[:0], t, "local", "message", "alice@example.com/a", "bob@example.com", "chat", "id1", plain, enc, out)
		}
	})
}

type memEpochs struct{}

func (memEpochs) AddEpochKey(context.Context, storage.EpochKey) error   { return nil }
func (memEpochs) EpochKeys(context.Context) ([]storage.EpochKey, error) { return nil, nil }
