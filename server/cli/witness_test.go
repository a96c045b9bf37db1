package cli

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"filippo.io/torchwood"
	"github.com/palisade-im/palisade/modules/archive"
	"github.com/palisade-im/palisade/server/config"
	"github.com/palisade-im/palisade/server/element"
	"github.com/palisade-im/palisade/server/stanza"
	"github.com/palisade-im/palisade/storage"
	"github.com/palisade-im/palisade/storage/sqlite"
	"go.uber.org/zap"
	"golang.org/x/mod/sumdb/note"
	"mellium.im/xmpp/jid"
)

type allLocal struct{}

func (allLocal) IsLocal(string) bool { return true }

// TestWitnessCLI: `archive verify` checks the stored cosignatures with the
// configured witness keys and names a bad one; `verify-export
// --witness-key` passes with the witness that cosigned and fails naming
// one that did not.
func TestWitnessCLI(t *testing.T) {
	dir := t.TempDir()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	w, err := torchwood.NewCosignatureSigner("w.example/one", priv)
	if err != nil {
		t.Fatal(err)
	}
	vkey := w.Verifier().String()
	path := writeConfig(t, dir, "[[archive.witness]]\nurl = \"http://127.0.0.1:9/\"\nkey = \""+vkey+"\"\n")
	cfg, err := config.Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	files := archive.Paths(cfg)
	signer, err := archive.LoadOrCreateKey(files.SigningKey, archive.KeyName(cfg))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := archive.LoadOrCreateOpenPGP(files.OpenPGPKey, archive.KeyName(cfg)); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	j, err := sqlite.OpenJournal(ctx, files.Journal)
	if err != nil {
		t.Fatal(err)
	}
	m := archive.New(j, signer, nil, allLocal{}, time.Hour, zap.NewNop(), zap.NewNop())
	st := stanza.New(stanza.Message, jid.MustParse("a@example.com/r"), jid.MustParse("b@example.com"), "chat", "m1")
	st.El.Append(element.New(stanza.NSClient, "body").SetText("hi"))
	if err := m.Append(ctx, st); err != nil {
		t.Fatal(err)
	}
	if err := m.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	cps, _ := j.Checkpoints(ctx)
	v, _ := note.NewVerifier(mustVkey(t, files.SigningKey))
	n, err := note.Open(cps[0].Note, note.VerifierList(v))
	if err != nil {
		t.Fatal(err)
	}
	cosigned, err := note.Sign(&note.Note{Text: n.Text}, w)
	if err != nil {
		t.Fatal(err)
	}
	_, line, _ := bytes.Cut(cosigned, []byte("\n\n"))
	if err := j.AddCosignature(ctx, storage.Cosignature{Size: cps[0].Size, Witness: w.Name(), KeyHash: w.KeyHash(), Time: time.Now(), Line: string(line)}); err != nil {
		t.Fatal(err)
	}
	j.Close()

	code, out, errOut := run("--config", path, "archive", "verify")
	if code != 0 || !strings.Contains(out, "1 witness cosignatures checked") {
		t.Fatalf("verify: %d\n%s%s", code, out, errOut)
	}
	bundle := filepath.Join(dir, "bundle")
	if code, out, errOut := run("--config", path, "archive", "export", "--out", bundle); code != 0 {
		t.Fatalf("export: %d\n%s%s", code, out, errOut)
	}
	keyFile := filepath.Join(dir, "witness.vkey")
	if err := os.WriteFile(keyFile, []byte(vkey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{vkey, keyFile} {
		code, out, errOut := run("archive", "verify-export", "--witness-key", k, bundle)
		if code != 0 || !strings.Contains(out, "checkpoint cosigned by witness w.example/one") {
			t.Fatalf("verify-export --witness-key %s: %d\n%s%s", k, code, out, errOut)
		}
	}
	_, priv2, _ := ed25519.GenerateKey(rand.Reader)
	other, _ := torchwood.NewCosignatureSigner("w.example/two", priv2)
	code, out, errOut = run("archive", "verify-export", "--witness-key", vkey, "--witness-key", other.Verifier().String(), bundle)
	if code != 1 || !strings.Contains(errOut, "witness w.example/two: no cosignature from witness w.example/two") {
		t.Fatalf("verify-export with a witness that did not cosign: %d\n%s%s", code, out, errOut)
	}
	if code, _, errOut := run("archive", "verify-export", "--witness-key", "nonsense", bundle); code != 2 || !strings.Contains(errOut, "--witness-key") {
		t.Fatalf("verify-export with a bad key: %d %s", code, errOut)
	}

	// A stored cosignature changed: verify names the witness.
	db, err := sql.Open("sqlite3", "file:"+files.Journal)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec("UPDATE cosignatures SET line = substr(line, 1, length(line) - 6) || 'AAAA=\n'"); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = run("--config", path, "archive", "verify")
	if code != 1 || !strings.Contains(out, "cosignature of witness w.example/one does not verify") {
		t.Fatalf("verify with a changed cosignature: %d\n%s%s", code, out, errOut)
	}
}

func mustVkey(t *testing.T, keyFile string) string {
	t.Helper()
	k, err := archive.ReadVerifierKey(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
