package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
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
	"github.com/palisade-im/palisade/storage/sqlite/journaltest"
)

// officerFiles makes an officer key and writes its armored public key
// (NAME.pub) and private key (NAME.key) into dir.
func officerFiles(t *testing.T, dir, name string) (e *openpgp.Entity, pub, priv string) {
	t.Helper()
	e, err := openpgp.NewEntity(name, "officer", name+"@example.com", nil)
	if err != nil {
		t.Fatal(err)
	}
	write := func(file, typ string, ser func(w *bytes.Buffer) error) string {
		var b bytes.Buffer
		w, err := armor.Encode(&b, typ, nil)
		if err != nil {
			t.Fatal(err)
		}
		var raw bytes.Buffer
		if err := ser(&raw); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(raw.Bytes()); err != nil {
			t.Fatal(err)
		}
		w.Close()
		path := filepath.Join(dir, file)
		if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	pub = write(name+".pub", openpgp.PublicKeyType, func(w *bytes.Buffer) error { return e.Serialize(w) })
	priv = write(name+".key", openpgp.PrivateKeyType, func(w *bytes.Buffer) error { return e.SerializePrivate(w, nil) })
	return e, pub, priv
}

// archiveKeys creates the journal's keys as a first server start would.
func archiveKeys(t *testing.T, path string) {
	t.Helper()
	cfg, err := config.Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	f := archive.Paths(cfg)
	if _, err := archive.LoadOrCreateKey(f.SigningKey, archive.KeyName(cfg)); err != nil {
		t.Fatal(err)
	}
	if _, err := archive.LoadOrCreateOpenPGP(f.OpenPGPKey, archive.KeyName(cfg)); err != nil {
		t.Fatal(err)
	}
}

// actContents returns the content of the journal's records of kind.
func actContents(t *testing.T, dir string, kind storage.RecordKind) []string {
	t.Helper()
	recs, err := journaltest.Records(filepath.Join(dir, "journal.db"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range recs {
		if r.Kind != kind {
			continue
		}
		rec, err := archive.DecodeRecord(r.Data)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, rec.Content)
	}
	return out
}

// TestOfficerSignedActs: an export or a search made with --decrypt-key is
// signed with that key (the record names the officer by fingerprint and
// carries the signature); a key that is not one of archive.officer_keys
// is refused before anything is decrypted and nothing is recorded; acts
// without decryption keep --by; `archive verify` and verify-export check
// the signatures and report an unknown signer.
func TestOfficerSignedActs(t *testing.T) {
	dir := t.TempDir()
	a, aPub, aKey := officerFiles(t, dir, "alpha")
	_, bPub, bKey := officerFiles(t, dir, "bravo")
	path := writeConfig(t, dir, fmt.Sprintf("[archive]\nofficer_keys = [%q]\n", aPub))
	archiveKeys(t, path)
	if code, _, errOut := runIn("quill-pen-ink-42\n", "--config", path, "user", "add", "alice@example.com"); code != 0 {
		t.Fatal(errOut)
	}

	// bravo's key is not configured: refused, nothing recorded.
	bundle := filepath.Join(dir, "refused")
	for _, args := range [][]string{
		{"archive", "search", "--decrypt-key", bKey},
		{"archive", "export", "--out", bundle, "--decrypt-key", bKey},
	} {
		code, out, errOut := run(append([]string{"--config", path}, args...)...)
		if code != 2 || !strings.Contains(errOut, "is not one of archive.officer_keys") || strings.Count(errOut, `"msg":"archive_decrypt_refused"`) != 1 {
			t.Errorf("%v: exit %d: %s%s", args, code, out, errOut)
		}
	}
	if _, err := os.Stat(bundle); err == nil {
		t.Error("a refused export wrote a bundle")
	}
	if n := len(actContents(t, dir, storage.KindSearch)) + len(actContents(t, dir, storage.KindExport)); n != 0 {
		t.Fatalf("%d acts recorded for refused keys", n)
	}

	// alpha's: signed acts.
	if code, out, errOut := run("--config", path, "archive", "search", "--decrypt-key", aKey, "--kind", "admin"); code != 0 || !strings.Contains(out, "1 records found") {
		t.Fatalf("search: %d %s%s", code, out, errOut)
	}
	bundle = filepath.Join(dir, "signed")
	if code, out, errOut := run("--config", path, "archive", "export", "--out", bundle, "--decrypt-key", aKey); code != 0 {
		t.Fatalf("export: %d %s%s", code, out, errOut)
	}
	if code, out, errOut := run("--config", path, "archive", "search", "--by", "auditor-7"); code != 0 {
		t.Fatalf("search --by: %d %s%s", code, out, errOut)
	}
	fpr := archive.Fingerprint(a)
	acts := append(actContents(t, dir, storage.KindSearch), actContents(t, dir, storage.KindExport)...)
	if len(acts) != 3 {
		t.Fatalf("acts: %q", acts)
	}
	for i, c := range []string{acts[0], acts[2]} {
		var v struct{ Officer, Officer_sig, Signed_at string }
		if err := json.Unmarshal([]byte(c), &v); err != nil || v.Officer != fpr || v.Officer_sig == "" || v.Signed_at == "" ||
			!strings.HasSuffix(c, `"}`) || !strings.Contains(c, `,"officer_sig":"`) {
			t.Errorf("signed act %d: %s", i, c)
		}
		if act, err := archive.CheckAct([]storage.RecordKind{storage.KindSearch, storage.KindExport}[i], []byte(c), openpgp.EntityList{a}); err != nil || !act.Signed {
			t.Errorf("signed act %d does not check: %v", i, err)
		}
	}
	if strings.Contains(acts[1], "officer") || !strings.Contains(acts[1], `"by":"cli:auditor-7"`) {
		t.Errorf("the act without decryption: %s", acts[1])
	}

	code, out, errOut := run("--config", path, "archive", "verify")
	if code != 0 || !strings.Contains(out, "\nOK\nofficer acts: 2 signed by an officer key of archive.officer_keys, 1 recorded under --by") {
		t.Fatalf("verify: %d %s%s", code, out, errOut)
	}
	// A later export holds the signed acts: verify-export checks them.
	bundle2 := filepath.Join(dir, "all")
	if code, out, errOut := run("--config", path, "archive", "export", "--out", bundle2); code != 0 {
		t.Fatalf("export: %d %s%s", code, out, errOut)
	}
	if code, out, errOut := run("--config", path, "archive", "verify-export", bundle2); code != 0 ||
		!strings.Contains(out, "2 officer acts: signatures check with the officer keys given") {
		t.Fatalf("verify-export: %d %s%s", code, out, errOut)
	}
	if code, out, errOut := run("archive", "verify-export", "--officer-key", bPub, bundle2); code != 1 ||
		!strings.Contains(errOut, "signed by a key that is not one of archive.officer_keys") {
		t.Fatalf("verify-export with another officer key: %d %s%s", code, out, errOut)
	}
	// Officer keys that do not include alpha's: verify names the signer
	// as unknown.
	other := writeConfig(t, dir, fmt.Sprintf("[archive]\nofficer_keys = [%q]\n", bPub))
	code, out, errOut = run("--config", other, "archive", "verify")
	if code != 1 || !strings.Contains(out, "officer "+fpr+": signed by a key that is not one of archive.officer_keys") ||
		!strings.Contains(errOut, "officer act verification failed") {
		t.Fatalf("verify with other officer keys: %d %s%s", code, out, errOut)
	}
}

// TestAccountChangeNoServer: `user passwd` and `user del` with no server
// running say so in one line and exit 0; with the admin listener off they
// warn that a running server was not told. Each change is one journal
// record (kind admin).
func TestAccountChangeNoServer(t *testing.T) {
	dir := t.TempDir()
	path := writeConfig(t, dir, "")
	if code, _, errOut := runIn("quill-pen-ink-42\n", "--config", path, "user", "add", "alice@example.com"); code != 0 {
		t.Fatal(errOut)
	}
	code, out, errOut := runIn("quill-pen-ink-43\n", "--config", path, "user", "passwd", "alice@example.com")
	if code != 0 || out != "alice@example.com: password changed\n" ||
		!strings.Contains(errOut, "warning: listen.admin is off: a running server was not told") {
		t.Fatalf("passwd, admin off: %d %q %q", code, out, errOut)
	}

	// An admin address nobody listens on, with a token file (a server ran
	// here before).
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	if _, _, err := server.LoadOrCreateAdminToken(dir); err != nil {
		t.Fatal(err)
	}
	path = writeConfig(t, dir, "")
	if err := os.WriteFile(path, bytes.Replace(must(os.ReadFile(path)), []byte(`admin = ""`), []byte(`admin = "`+addr+`"`), 1), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = runIn("quill-pen-ink-44\n", "--config", path, "user", "passwd", "alice@example.com")
	if code != 0 || out != "no server is running on "+addr+": no session to end\nalice@example.com: password changed\n" {
		t.Fatalf("passwd, no server: %d %q %q", code, out, errOut)
	}
	code, out, errOut = runIn("", "--config", path, "user", "del", "alice@example.com")
	if code != 0 || out != "no server is running on "+addr+": no session to end\nalice@example.com: deleted\n" {
		t.Fatalf("del, no server: %d %q %q", code, out, errOut)
	}
	var got []string
	for _, c := range actContents(t, dir, storage.KindAdmin) {
		var a archive.AdminAct
		if err := json.Unmarshal([]byte(c), &a); err != nil {
			t.Fatal(err)
		}
		got = append(got, a.Act+" "+a.Target+" "+a.Details["sessions"])
	}
	want := []string{"user_add alice@example.com ", "user_passwd alice@example.com admin listener off: a running server was not told",
		"user_passwd alice@example.com no server running", "user_del alice@example.com no server running"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("admin records:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
