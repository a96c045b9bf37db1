package e2e

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/palisade-im/palisade/modules/archive"
	"github.com/palisade-im/palisade/server"
	"github.com/palisade-im/palisade/server/config"
	"github.com/palisade-im/palisade/storage"
	"github.com/palisade-im/palisade/storage/sqlite"
	"github.com/palisade-im/palisade/storage/sqlite/journaltest"
	"go.uber.org/zap/zaptest"
)

// writeOfficerKey makes an officer key and writes its public key, armored.
func writeOfficerKey(t testing.TB) (*openpgp.Entity, string) {
	t.Helper()
	officer, err := openpgp.NewEntity("officer", "", "officer@localhost", nil)
	if err != nil {
		t.Fatal(err)
	}
	var pub bytes.Buffer
	w, _ := armor.Encode(&pub, openpgp.PublicKeyType, nil)
	if err := officer.Serialize(w); err != nil {
		t.Fatal(err)
	}
	w.Close()
	keyFile := filepath.Join(t.TempDir(), "officer.asc")
	if err := os.WriteFile(keyFile, pub.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return officer, keyFile
}

// TestJournalSealedAtRest: with officer_keys the running server delivers
// as before, stores no content in the clear, and the officer's key opens
// what it stored.
func TestJournalSealedAtRest(t *testing.T) {
	t.Parallel()
	officer, keyFile := writeOfficerKey(t)
	e := newEnv(t, func(c *config.Config) { c.Archive.OfficerKeys = []string{keyFile} })
	alice := login(t, e, modeStartTLS, "alice", "a")
	bob := login(t, e, modeStartTLS, "bob", "b")
	alice.send("<message to='bob@localhost/b' type='chat' id='s1'><body>board minutes</body></message>")
	if m := bob.expect(nsClient, "message"); m.Child(nsClient, "body") == nil || m.Child(nsClient, "body").Text != "board minutes" {
		t.Fatalf("got %s", m)
	}
	rows := journalRows(t, e)
	if len(rows) != 1 || strings.Contains(rows[0].rawData, "board minutes") || rows[0].from != "alice@localhost/a" {
		t.Fatalf("journal: %+v", rows)
	}
	ctx := context.Background()
	j, err := sqlite.OpenJournalReadOnly(ctx, filepath.Join(e.cfg.Server.DataDir, "journal.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	epochs, err := j.EpochKeys(ctx)
	if err != nil || len(epochs) != 1 {
		t.Fatalf("epoch keys: %d, %v", len(epochs), err)
	}
	rec, err := archive.DecodeRecord([]byte(rows[0].rawData))
	if err != nil {
		t.Fatal(err)
	}
	plain, err := archive.NewOpener(openpgp.EntityList{officer}, epochs).Open(rec)
	if err != nil || !strings.Contains(string(plain), "<body>board minutes</body>") {
		t.Fatalf("opened: %q, %v", plain, err)
	}
}

// TestLockedPolicyAndConfigHold: a server with a locked policy and a legal
// hold in its file records both; a later configuration that shortens the
// policy does not start, naming it.
func TestLockedPolicyAndConfigHold(t *testing.T) {
	t.Parallel()
	policy := config.Retention{Name: "mifid", Scope: config.ScopeDomain, Domain: "localhost", KeepDays: 1825, Locked: true}
	hold := config.Hold{Name: "case-9", Custodians: []string{"alice@localhost"}, Reason: "litigation", From: "2026-01-01"}
	e := newEnv(t, func(c *config.Config) {
		c.Archive.Retention = []config.Retention{policy}
		c.Archive.Holds = []config.Hold{hold}
	})
	if err := e.stop(); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(e.cfg.Server.DataDir, "journal.db")+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var locks, holds, kinds int
	db.QueryRow("SELECT count(*) FROM retention_locks WHERE name = 'mifid' AND keep_days = 1825").Scan(&locks)
	db.QueryRow("SELECT count(*) FROM holds WHERE name = 'case-9' AND placed_by = 'config' AND released_at = 0").Scan(&holds)
	kinds, err = journaltest.Count(filepath.Join(e.cfg.Server.DataDir, "journal.db"), func(r storage.JournalRecord) bool {
		return r.Kind == storage.KindPolicy || r.Kind == storage.KindHold
	})
	if err != nil {
		t.Fatal(err)
	}
	if locks != 1 || holds != 1 || kinds != 2 {
		t.Fatalf("recorded: %d locks, %d holds, %d policy/hold records", locks, holds, kinds)
	}

	cfg := *e.cfg
	cfg.Archive.Retention = []config.Retention{policy}
	cfg.Archive.Retention[0].KeepDays = 365
	cfg.Archive.Holds = nil
	srv, err := server.New(&cfg, e.store, zaptest.NewLogger(t))
	var le *archive.LockError
	if !errors.As(err, &le) || le.Policy != "mifid" || !strings.Contains(err.Error(), "shortened from 1825 to 365") {
		t.Fatalf("server.New with the policy shortened: %v, %v", srv, err)
	}
}
