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

	db, err := sql.Open("sqlite3", "file:"+filepath.Join(s.DataDir, "journal.db")+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	count := func(where string) int {
		t.Helper()
		var n int
		if err := db.QueryRow("SELECT count(*) FROM records WHERE " + where).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	alice := "kind IN ('message', 'subscription') AND (from_jid LIKE 'alice@%' OR to_jid LIKE 'alice@%')"
	others := "kind IN ('message', 'subscription') AND NOT (from_jid LIKE 'alice@%' OR to_jid LIKE 'alice@%')"
	held, purgeable := count(alice), count(others)
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
	if err != nil || !strings.HasPrefix(out, "purged 0 records") || count("kind = 'disposition'") != 0 {
		t.Fatalf("purge today: %v\n%s", err, out)
	}
	if n := count("kind = 'hold'"); n != 1 {
		t.Errorf("%d hold records, want 1", n)
	}
	if n := count("kind = 'policy' AND CAST(data AS TEXT) LIKE '%sec-17a4%'"); n != 1 {
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
