package conformance

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/palisade-im/palisade/storage"
	"github.com/palisade-im/palisade/storage/sqlite/journaltest"
	// Registers the "sqlite3" database/sql driver, to read the journal's tables.
	_ "github.com/mattn/go-sqlite3"
	"golang.org/x/mod/sumdb/note"
)

// archiveCLI runs "palisade archive ARGS" against s and returns its output
// and exit error.
// journalCount counts the records of s's journal that keep matches,
// through a read-only opening of it.
func journalCount(t *testing.T, s *Server, keep func(storage.JournalRecord) bool) int {
	t.Helper()
	n, err := journaltest.Count(filepath.Join(s.DataDir, "journal.db"), keep)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func archiveCLI(t *testing.T, s *Server, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binPath, append([]string{"--config", s.ConfigPath, "archive"}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestArchiveJournal: a conversation, an offline message and a roster
// subscription with slixmpp, then the journal holds each message once
// (the offline delivery is a copy), the subscription changes, and
// `palisade archive verify` passes; one byte changed in journal.db makes it
// fail naming that record.
func TestArchiveJournal(t *testing.T) {
	s := newServer(t)
	mustSlix(t, s, tcpTransports[0], 40*time.Second, nil, "chat", acct("alice"), acct("bob"))
	mustSlix(t, s, tcpTransports[1], 45*time.Second, nil, "offline", acct("alice"), acct("bob"))
	mustSlix(t, s, tcpTransports[0], 45*time.Second, nil, "roster", acct("carol"), acct("bob"))
	s.Stop(t) // SIGTERM: the final checkpoint

	jpath := filepath.Join(s.DataDir, "journal.db")
	for _, body := range []string{"hello from a", "hello from b", "offline hello"} {
		if n := journalCount(t, s, func(r storage.JournalRecord) bool {
			return r.Kind == storage.KindMessage && strings.Contains(string(r.Data), "<body>"+body+"</body>")
		}); n != 1 {
			t.Errorf("message %q journaled %d times, want once", body, n)
		}
	}
	for _, typ := range []string{"subscribe", "subscribed"} {
		if n := journalCount(t, s, func(r storage.JournalRecord) bool {
			return r.Kind == storage.KindSubscription && r.StanzaType == typ && (r.From == "carol@localhost" || r.From == "bob@localhost")
		}); n < 1 {
			t.Errorf("no %s presence in the journal", typ)
		}
	}
	// slixmpp sends the new contact directed presence on accepting a
	// subscription: journaled too, as kind presence.
	if n := journalCount(t, s, func(r storage.JournalRecord) bool {
		return r.Kind == storage.KindPresence && r.To != "" && (strings.HasPrefix(r.From, "bob@") || strings.HasPrefix(r.From, "carol@"))
	}); n < 1 {
		t.Errorf("no directed presence in the journal")
	}
	if n := journalCount(t, s, func(r storage.JournalRecord) bool {
		return r.Kind != storage.KindMessage && r.Kind != storage.KindSubscription && r.Kind != storage.KindPresence && r.Kind != storage.KindAdmin
	}); n != 0 {
		t.Errorf("%d records of other kinds", n)
	}

	out, err := archiveCLI(t, s, "verify")
	if err != nil {
		t.Fatalf("archive verify on an intact journal: %v\n%s", err, out)
	}
	if !regexp.MustCompile(`(?m)^OK$`).MatchString(out) || !strings.Contains(out, "checkpoints (+2 files") {
		t.Fatalf("archive verify output:\n%s", out)
	}

	t.Logf("archive verify:\n%s", out)
	// The printed verifier key checks the checkpoint published to the
	// directory sink.
	vkey, err := archiveCLI(t, s, "pubkey")
	if err != nil {
		t.Fatalf("archive pubkey: %v\n%s", err, vkey)
	}
	v, err := note.NewVerifier(strings.TrimSpace(vkey))
	if err != nil {
		t.Fatalf("pubkey printed %q: %v", vkey, err)
	}
	files, _ := filepath.Glob(filepath.Join(s.DataDir, "checkpoints", "checkpoint-*.txt"))
	// One at start (the configuration's record), one at the stop.
	if len(files) != 2 {
		t.Fatalf("checkpoint files: %v", files)
	}
	cp, err := os.ReadFile(files[1])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := note.Open(cp, note.VerifierList(v)); err != nil {
		t.Fatalf("checkpoint does not verify with the printed key: %v\n%s", err, cp)
	}
	vkeyFile := filepath.Join(s.Dir, "verifier.key")
	if err := os.WriteFile(vkeyFile, []byte(vkey), 0o600); err != nil {
		t.Fatal(err)
	}

	checkExportBundle(t, s, vkeyFile)
	// Each export is a journal record (chain of custody), and the journal
	// still verifies with them.
	if n := journalCount(t, s, func(r storage.JournalRecord) bool {
		return r.Kind == storage.KindExport && strings.HasPrefix(r.From, "cli:") && strings.Contains(string(r.Data), "manifest_sha256")
	}); n != 2 {
		t.Errorf("%d export records, want 2", n)
	}
	if out, err := archiveCLI(t, s, "verify"); err != nil || !strings.Contains(out, "\nOK\n") {
		t.Fatalf("archive verify after the exports: %v\n%s", err, out)
	}

	// Change one byte of the offline message's record.
	seq, err := journaltest.Find(jpath, "offline hello")
	if err != nil {
		t.Fatal(err)
	}
	if err := journaltest.Replace(jpath, seq, "offline hello", "offline jello"); err != nil {
		t.Fatal(err)
	}
	out, err = archiveCLI(t, s, "verify", "--verifier-key", vkeyFile)
	var ee *exec.ExitError
	if err == nil || !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("archive verify on a changed journal: %v\n%s", err, out)
	}
	t.Logf("archive verify on the changed journal:\n%s", out)
	if want := "first bad record index " + strconv.FormatInt(seq, 10); !strings.Contains(out, want) {
		t.Fatalf("archive verify does not name record %d:\n%s", seq, out)
	}
	if !regexp.MustCompile(`(?m)^record ` + strconv.FormatInt(seq, 10) + `: `).MatchString(out) {
		t.Fatalf("no problem line for record %d:\n%s", seq, out)
	}
}

// checkExportBundle exports the journal and checks the bundle with Debian's
// sha256sum and gpg, and with palisade archive verify-export; then one
// changed byte fails all three.
func checkExportBundle(t *testing.T, s *Server, vkeyFile string) {
	t.Helper()
	RequirePeer(t, "gpg")
	RequirePeer(t, "sha256sum")
	bundle := filepath.Join(s.Dir, "export")
	out, err := archiveCLI(t, s, "export", "--out", bundle, "--user", "alice@"+Domain)
	if err != nil {
		t.Fatalf("archive export: %v\n%s", err, out)
	}
	// Her three messages and the act that created her account (kind
	// admin, `palisade user add`).
	if !strings.Contains(out, "4 records") {
		t.Errorf("alice's export: %s", out)
	}
	emls, _ := filepath.Glob(filepath.Join(bundle, "conversations", "*.eml"))
	if len(emls) != 1 {
		t.Fatalf("conversation files: %v", emls)
	}
	eml, _ := os.ReadFile(emls[0])
	for _, want := range []string{"From: alice@localhost\r\n", "To: bob@localhost\r\n", ": hello from a\r\n", ": hello from b\r\n", ": offline hello\r\n"} {
		if !strings.Contains(string(eml), want) {
			t.Errorf("%s lacks %q:\n%s", emls[0], want, eml)
		}
	}
	run := func(dir, bin string, args ...string) (string, error) {
		cmd := exec.Command(bin, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "LC_ALL=C")
		b, err := cmd.CombinedOutput()
		return string(b), err
	}
	if out, err := run(bundle, "sha256sum", "-c", "--strict", "MANIFEST.sha256"); err != nil {
		t.Fatalf("sha256sum -c: %v\n%s", err, out)
	}
	home := filepath.Join(s.Dir, "gnupg")
	if err := os.Mkdir(home, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = run(s.Dir, "gpgconf", "--homedir", home, "--kill", "all") })
	pub, err := archiveCLI(t, s, "pubkey", "--openpgp")
	if err != nil {
		t.Fatalf("archive pubkey --openpgp: %v\n%s", err, pub)
	}
	pubFile := filepath.Join(s.Dir, "archive-openpgp.asc")
	if err := os.WriteFile(pubFile, []byte(pub), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := run(s.Dir, "gpg", "--batch", "--homedir", home, "--import", pubFile); err != nil {
		t.Fatalf("gpg --import: %v\n%s", err, out)
	}
	out, err = run(bundle, "gpg", "--batch", "--homedir", home, "--verify", "MANIFEST.sha256.asc", "MANIFEST.sha256")
	if err != nil || !strings.Contains(out, "Good signature") {
		t.Fatalf("gpg --verify: %v\n%s", err, out)
	}
	cps, _ := filepath.Glob(filepath.Join(s.DataDir, "checkpoints", "checkpoint-*.txt"))
	out, err = archiveCLI(t, s, "verify-export", "--verifier-key", vkeyFile, "--openpgp-key", pubFile, "--trusted-checkpoint", cps[0], bundle)
	if err != nil || !strings.Contains(out, "4 records: commitments, fields and inclusion proofs check") {
		t.Fatalf("verify-export: %v\n%s", err, out)
	}

	// The same as a tar file, unpacked with Debian's tar.
	tarFile := filepath.Join(s.Dir, "export2.tar")
	if out, err := archiveCLI(t, s, "export", "--out", tarFile, "--with", "bob@"+Domain, "--kind", "message"); err != nil {
		t.Fatalf("archive export to a tar file: %v\n%s", err, out)
	}
	if out, err := archiveCLI(t, s, "verify-export", "--verifier-key", vkeyFile, tarFile); err != nil {
		t.Fatalf("verify-export on the tar file: %v\n%s", err, out)
	}
	unpack := filepath.Join(s.Dir, "unpacked")
	if err := os.Mkdir(unpack, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := run(unpack, "tar", "-xf", tarFile); err != nil {
		t.Fatalf("tar -xf: %v\n%s", err, out)
	}
	if out, err := run(filepath.Join(unpack, "export2"), "sha256sum", "-c", "--strict", "MANIFEST.sha256"); err != nil {
		t.Fatalf("sha256sum -c in the unpacked tar: %v\n%s", err, out)
	}

	// One byte changed in the bundle.
	eb, _ := os.ReadFile(emls[0])
	if err := os.WriteFile(emls[0], []byte(strings.Replace(string(eb), "hello from a", "hello from A", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := run(bundle, "sha256sum", "-c", "--quiet", "MANIFEST.sha256"); err == nil || !strings.Contains(out, "FAILED") {
		t.Fatalf("sha256sum -c on a changed bundle: %v\n%s", err, out)
	}
	out, err = archiveCLI(t, s, "verify-export", "--verifier-key", vkeyFile, bundle)
	if err == nil || !strings.Contains(out, "SHA-256 differs") {
		t.Fatalf("verify-export on a changed bundle: %v\n%s", err, out)
	}
	// A changed manifest keeps sha256sum happy but not gpg.
	man := filepath.Join(bundle, "MANIFEST.sha256")
	mb, _ := os.ReadFile(man)
	if err := os.WriteFile(man, append(mb, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := run(bundle, "gpg", "--batch", "--homedir", home, "--verify", "MANIFEST.sha256.asc", "MANIFEST.sha256"); err == nil || !strings.Contains(out, "BAD signature") {
		t.Fatalf("gpg --verify on a changed manifest: %v\n%s", err, out)
	}
}

// TestArchiveCrash kills the server with SIGKILL while alice floods bob
// (offline): after a restart every message alice saw acknowledged, and
// every message bob then receives, is in the journal exactly once, and the
// journal verifies (the restart signs what the killed run left unsigned).
func TestArchiveCrash(t *testing.T) {
	s := newServer(t)
	alice := enableSM(dialRaw(t, s, "alice", "alice", accounts["alice"], "flood"))
	const total, killAt = 40, 10
	killed := false
	for k := 1; k <= total && !killed; k++ {
		if h, _ := alice.ackState(); h >= killAt {
			s.crash(t)
			killed = true
			break
		}
		if err := alice.waitAck(k-5, 10*time.Second); err != nil {
			t.Fatalf("before message %d: %v", k, err)
		}
		if err := alice.write(fmt.Sprintf(`<message to='bob@localhost' type='chat' id='c%d'><body>flood %d</body></message><r xmlns='urn:xmpp:sm:3'/>`, k, k)); err != nil {
			break
		}
	}
	if !killed {
		t.Fatalf("h never reached %d", killAt)
	}
	acked, _ := alice.ackState()
	s.restart(t)
	var want []string
	for i := 1; i <= acked; i++ {
		want = append(want, fmt.Sprintf("flood %d", i))
	}
	got, _ := collectOffline(t, s, want)
	s.Stop(t)

	journaled := func(body string) int {
		return journalCount(t, s, func(r storage.JournalRecord) bool {
			return r.Kind == storage.KindMessage && strings.HasPrefix(r.From, "alice@") && strings.Contains(string(r.Data), "<body>"+body+"</body>")
		})
	}
	for _, w := range want {
		if n := journaled(w); n != 1 {
			t.Errorf("acknowledged %q journaled %d times, want once", w, n)
		}
	}
	for body, n := range got {
		if n > 0 && journaled(body) != 1 {
			t.Errorf("bob received %q, which is not journaled exactly once", body)
		}
	}
	out, err := archiveCLI(t, s, "verify")
	if err != nil || !strings.Contains(out, "\nOK\n") {
		t.Fatalf("archive verify after kill -9 and restart: %v\n%s", err, out)
	}
	t.Logf("%d acknowledged before SIGKILL; bob received %d distinct messages\n%s", acked, len(got), out)
}
