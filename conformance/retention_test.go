package conformance

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/palisade-im/palisade/storage"
)

// TestArchiveRetentionAndHold: with a locked retention policy, slixmpp
// conversations alice-bob and carol-bob; a legal hold on alice placed with
// the CLI while the server runs survives her account's deletion and keeps
// her records out of a purge (dry run as of a day past retention), while
// carol's would go; a real purge today removes nothing; the journal
// verifies. Then a configuration that shortens or removes the locked
// policy is refused at start-up with exit status 2 naming it.
func TestArchiveRetentionAndHold(t *testing.T) {
	s := newServer(t)
	s.Stop(t)
	base, err := os.ReadFile(s.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	locked := "\n[[archive.retention]]\nname = \"sec-17a4\"\nscope = \"all\"\nkeep_days = 30\nlocked = true\n"
	if err := os.WriteFile(s.ConfigPath, append(base, locked...), 0o600); err != nil {
		t.Fatal(err)
	}
	s.restart(t)
	mustSlix(t, s, tcpTransports[0], 40*time.Second, nil, "chat", acct("alice"), acct("bob"))
	mustSlix(t, s, tcpTransports[1], 40*time.Second, nil, "chat", acct("carol"), acct("bob"))

	out, err := archiveCLI(t, s, "hold", "add", "--custodian", "alice@"+Domain, "--reason", "matter 7", "--by", "officer@"+Domain, "--name", "matter-7")
	if err != nil {
		t.Fatalf("hold add: %v\n%s", err, out)
	}
	if out, err := archiveCLI(t, s, "hold", "add", "--custodian", "alice@"+Domain, "--reason", "again", "--name", "matter-7"); err == nil || !strings.Contains(out, "exists already") {
		t.Errorf("second hold of the same name: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, binPath, "--config", s.ConfigPath, "user", "del", "alice@"+Domain).CombinedOutput(); err != nil {
		t.Fatalf("user del: %v\n%s", err, out)
	}
	out, err = archiveCLI(t, s, "hold", "list")
	if err != nil || !strings.Contains(out, "matter-7\talice@"+Domain) || !strings.Contains(out, "by officer@"+Domain) || !strings.Contains(out, "active") {
		t.Fatalf("hold list after deleting alice: %v\n%s", err, out)
	}

	ofAlice := func(r storage.JournalRecord) bool {
		return strings.HasPrefix(r.From, "alice@") || strings.HasPrefix(r.To, "alice@")
	}
	alice := func(r storage.JournalRecord) bool {
		return (r.Kind == storage.KindMessage || r.Kind == storage.KindSubscription) && ofAlice(r)
	}
	others := func(r storage.JournalRecord) bool {
		return (r.Kind == storage.KindMessage || r.Kind == storage.KindSubscription) && !ofAlice(r)
	}
	kind := func(k storage.RecordKind) func(storage.JournalRecord) bool {
		return func(r storage.JournalRecord) bool { return r.Kind == k }
	}
	held, purgeable := journalCount(t, s, alice), journalCount(t, s, others)
	if held < 2 || purgeable < 2 {
		t.Fatalf("journal: %d records of alice, %d of others", held, purgeable)
	}

	later := time.Now().Add(40 * 24 * time.Hour).UTC().Format("2006-01-02")
	out, err = archiveCLI(t, s, "purge", "--dry-run", "--as-of", later)
	want := regexp.MustCompile(`would purge (\d+) records \(\d+ under retention, (\d+) past it kept by a legal hold`)
	m := want.FindStringSubmatch(out)
	if err != nil || m == nil || m[1] != itoa(purgeable) || m[2] != itoa(held) {
		t.Fatalf("purge --dry-run --as-of %s: %v (want %d purged, %d held)\n%s", later, err, purgeable, held, out)
	}
	if out, err := archiveCLI(t, s, "purge", "--as-of", later); err == nil {
		t.Errorf("a real purge accepted --as-of:\n%s", out)
	}
	out, err = archiveCLI(t, s, "purge", "--by", "officer")
	if err != nil || !strings.HasPrefix(out, "purged 0 records") || journalCount(t, s, kind(storage.KindDisposition)) != 0 {
		t.Fatalf("purge today: %v\n%s", err, out)
	}
	if n := journalCount(t, s, kind(storage.KindHold)); n != 1 {
		t.Errorf("%d hold records, want 1", n)
	}
	if n := journalCount(t, s, func(r storage.JournalRecord) bool {
		return r.Kind == storage.KindPolicy && strings.Contains(string(r.Data), "sec-17a4")
	}); n != 1 {
		t.Errorf("%d policy records of sec-17a4, want 1", n)
	}
	s.Stop(t)
	if out, err := archiveCLI(t, s, "verify"); err != nil || !strings.Contains(out, "OK") {
		t.Fatalf("archive verify: %v\n%s", err, out)
	}

	// Weakening the locked policy: refused at start-up and by check-config.
	for _, c := range []struct{ name, doc, want string }{
		{"shortened", strings.Replace(locked, "30", "10", 1), "keep_days shortened from 30 to 10"},
		{"removed", "", "removed from the configuration"},
	} {
		if err := os.WriteFile(s.ConfigPath, append(base, c.doc...), 0o600); err != nil {
			t.Fatal(err)
		}
		for _, args := range [][]string{{"--config", s.ConfigPath, "serve"}, {"check-config", s.ConfigPath}} {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			out, err := exec.CommandContext(ctx, binPath, args...).CombinedOutput()
			cancel()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), `locked retention policy "sec-17a4"`) ||
				!strings.Contains(string(out), c.want) {
				t.Errorf("%s, %s: %v\n%s", c.name, args[len(args)-1], err, out)
			}
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestArchiveOfficerEncryption: officer keys made with Debian's gpg; a
// slixmpp conversation is stored encrypted (no body in journal.db); an
// export with --decrypt-key and --recipient is decrypted with gpg by the
// regulator, checked with sha256sum -c, and verify-export proves the
// plaintext against the commitments.
func TestArchiveOfficerEncryption(t *testing.T) {
	RequirePeer(t, "gpg")
	s := newServer(t)
	s.Stop(t)
	home := filepath.Join(s.Dir, "gpg-officer")
	if err := os.Mkdir(home, 0o700); err != nil {
		t.Fatal(err)
	}
	gpg := func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, "gpg", append([]string{"--batch", "--homedir", home, "--pinentry-mode", "loopback", "--passphrase", ""}, args...)...)
		cmd.Dir = s.Dir
		cmd.Env = append(os.Environ(), "LC_ALL=C")
		out, err := cmd.Output()
		if err != nil {
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				t.Fatalf("gpg %v: %v\n%s", args, err, ee.Stderr)
			}
			t.Fatalf("gpg %v: %v", args, err)
		}
		return string(out)
	}
	t.Cleanup(func() { _ = exec.Command("gpgconf", "--homedir", home, "--kill", "all").Run() })
	write := func(name, data string) string {
		t.Helper()
		p := filepath.Join(s.Dir, name)
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	gpg("--quick-gen-key", "Compliance Officer <officer@example.com>", "future-default", "default", "never")
	gpg("--quick-gen-key", "Regulator <regulator@example.org>", "future-default", "default", "never")
	officerPub := write("officer.asc", gpg("--armor", "--export", "officer@example.com"))
	officerSec := write("officer-secret.asc", gpg("--armor", "--export-secret-keys", "officer@example.com"))
	regulatorPub := write("regulator.asc", gpg("--armor", "--export", "regulator@example.org"))

	base, err := os.ReadFile(s.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	conf := strings.Replace(string(base), "[log]", "[archive]\nofficer_keys = ["+strconv.Quote(officerPub)+"]\n\n[log]", 1)
	if err := os.WriteFile(s.ConfigPath, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	s.restart(t)
	mustSlix(t, s, tcpTransports[0], 40*time.Second, nil, "chat", acct("alice"), acct("bob"))
	s.Stop(t)

	db, err := sql.Open("sqlite3", "file:"+filepath.Join(s.DataDir, "journal.db")+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var epochs int
	clear := journalCount(t, s, func(r storage.JournalRecord) bool { return strings.Contains(string(r.Data), "hello from") })
	sealed := journalCount(t, s, func(r storage.JournalRecord) bool {
		return r.Kind == storage.KindMessage && strings.Contains(string(r.Data), `"enc":"aes-256-gcm/`)
	})
	db.QueryRow("SELECT count(*) FROM epoch_keys").Scan(&epochs)
	if clear != 0 || sealed < 2 || epochs != 1 {
		t.Fatalf("journal: %d records with a body in the clear, %d sealed messages, %d epoch keys", clear, sealed, epochs)
	}
	if out, err := archiveCLI(t, s, "verify"); err != nil {
		t.Fatalf("archive verify: %v\n%s", err, out)
	}

	enc := filepath.Join(s.Dir, "export.tar.gpg")
	out, err := archiveCLI(t, s, "export", "--out", enc, "--decrypt-key", officerSec, "--recipient", regulatorPub)
	if err != nil || !strings.Contains(out, "records decrypted with the officer key") {
		t.Fatalf("export: %v\n%s", err, out)
	}
	if b, _ := os.ReadFile(enc); strings.Contains(string(b), "hello from") || strings.Contains(string(b), "MANIFEST") {
		t.Fatal("the encrypted bundle holds plaintext")
	}
	tarFile := filepath.Join(s.Dir, "export.tar")
	gpg("--output", tarFile, "--decrypt", enc)
	unpack := filepath.Join(s.Dir, "unpacked")
	if err := os.Mkdir(unpack, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("tar", "-xf", tarFile, "-C", unpack).CombinedOutput(); err != nil {
		t.Fatalf("tar: %v\n%s", err, out)
	}
	bundle := filepath.Join(unpack, "export")
	cmd := exec.Command("sha256sum", "-c", "--strict", "MANIFEST.sha256")
	cmd.Dir = bundle
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sha256sum -c: %v\n%s", err, out)
	}
	recs, err := os.ReadFile(filepath.Join(bundle, "records.jsonl"))
	if err != nil || !strings.Contains(string(recs), `"body":"hello from a"`) || !strings.Contains(string(recs), `"encrypted":true`) {
		t.Fatalf("records.jsonl: %v\n%s", err, recs)
	}
	out, err = archiveCLI(t, s, "verify-export", bundle)
	if err != nil || !strings.Contains(out, "decrypted: plaintext -> commitment -> leaf -> checkpoint checks") {
		t.Fatalf("verify-export: %v\n%s", err, out)
	}
	if n := journalCount(t, s, func(r storage.JournalRecord) bool {
		return r.Kind == storage.KindExport && strings.Contains(string(r.Data), "encrypted_to")
	}); n != 1 {
		t.Errorf("export record with encrypted_to: %d", n)
	}

	// An officer's search: text needs the key; each search is journaled.
	out, err = archiveCLI(t, s, "search", "--text", "HELLO FROM A")
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(out, "--decrypt-key") {
		t.Errorf("text search without the key: %v\n%s", err, out)
	}
	out, err = archiveCLI(t, s, "search", "--text", "HELLO FROM A", "--decrypt-key", officerSec, "--user", "alice@"+Domain, "--by", "officer")
	if err != nil || !strings.Contains(out, "\thello from a\n") || !strings.Contains(out, "1 records found") {
		t.Errorf("text search with the key: %v\n%s", err, out)
	}
	out, err = archiveCLI(t, s, "search", "--with", "bob@"+Domain, "--kind", "message")
	if err != nil || !strings.Contains(out, "[encrypted: --decrypt-key]") {
		t.Errorf("metadata search: %v\n%s", err, out)
	}
	if n := journalCount(t, s, func(r storage.JournalRecord) bool { return r.Kind == storage.KindSearch }); n != 2 {
		t.Errorf("%d search records, want 2", n)
	}
	if out, err := archiveCLI(t, s, "verify"); err != nil {
		t.Errorf("archive verify at the end: %v\n%s", err, out)
	}
}
