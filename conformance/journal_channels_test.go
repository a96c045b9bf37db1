package conformance

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/palisade-im/palisade/storage/sqlite"
)

// searchLines runs `palisade archive search ARGS` and returns its record
// lines (without the "N records found" summary).
func searchLines(t *testing.T, s *Server, args ...string) []string {
	t.Helper()
	out, err := archiveCLI(t, s, append([]string{"search"}, args...)...)
	if err != nil {
		t.Fatalf("archive search %v: %v\n%s", args, err, out)
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if strings.Contains(l, "\t") {
			lines = append(lines, l)
		}
	}
	return lines
}

// matching returns the lines matching re.
func matching(lines []string, re string) []string {
	rx := regexp.MustCompile(re)
	var out []string
	for _, l := range lines {
		if rx.MatchString(l) {
			out = append(out, l)
		}
	}
	return out
}

// TestJournalChannelsSlixmpp: slixmpp clients with real rosters. alice's
// raw IQs to bob's full JID (XEP-0047 open, XEP-0050 execute) and bob's
// answers, her status broadcast to two contacts and her directed presence
// are journaled (archive search through the built binary finds them, the
// broadcast once); while the journal's lock is held by another process, an
// IQ to bob and a status broadcast are refused to alice with
// internal-server-error and never reach bob.
func TestJournalChannelsSlixmpp(t *testing.T) {
	RequireSlixmpp(t)
	s := newServer(t)
	wait := t.TempDir()
	_, port := HostPort(s.DirectTLS)
	p := s.StartPeer(t, 150*time.Second, "slixmpp journal channels", nil, PythonBin,
		"testdata/slix_journal.py", "--port", port, "--ca", s.CAFile, "--direct-tls", "--timeout", "140",
		"--wait-dir", wait, acctRes("alice", "slix"), acctRes("bob", "slix"), acctRes("carol", "slix"))
	p.WaitLine(t, `^CHANNELS OK$`, 90*time.Second)
	p.WaitLine(t, `^LOCK NOW$`, 10*time.Second)

	lf, err := os.OpenFile(filepath.Join(sqlite.JournalRecordsDir(filepath.Join(s.DataDir, "journal.db")), "lock"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	if err := syscall.Flock(int(lf.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(wait, "locked"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	p.WaitLine(t, `^UNLOCK NOW$`, 60*time.Second)
	if err := syscall.Flock(int(lf.Fd()), syscall.LOCK_UN); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(wait, "unlocked"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(); err != nil {
		t.Fatalf("slixmpp: %v\n%s", err, p.Output())
	}
	out := p.Output()
	wantLine(t, out, `REFUSED iq error internal-server-error wait`)
	wantLine(t, out, `REFUSED presence internal-server-error wait`)
	wantLine(t, out, `STATUSES bob journal status text\|directed status text\|after unlock status text`)
	if strings.Contains(out, "BOB SAW LOCKED STATUS") {
		t.Error("bob received the status broadcast the journal could not record")
	}
	s.Stop(t)

	const alice, bob = `alice@localhost/slix`, `bob@localhost/slix`
	ft := searchLines(t, s, "--kind", "file_transfer")
	if got := matching(ft, `\tfile_transfer\tlocal\t`+alice+` -> `+bob+`\tset\t.*conf-ibb-1`); len(got) != 1 {
		t.Errorf("IBB open records: %q (all file_transfer: %q)", got, ft)
	}
	cmd := searchLines(t, s, "--kind", "command")
	if got := matching(cmd, `\tcommand\tlocal\t`+alice+` -> `+bob+`\tset\t.*conf-node`); len(got) != 1 {
		t.Errorf("command records: %q", got)
	}
	// bob's slixmpp answered both with an error: journaled too, whatever
	// the kind its payload gives them.
	answers := searchLines(t, s, "--kind", "iq", "--kind", "file_transfer", "--kind", "command")
	if got := matching(answers, `\t`+bob+` -> `+alice+`\terror\t`); len(got) != 2 {
		t.Errorf("bob's answers: %q (all: %q)", got, answers)
	}
	pres := searchLines(t, s, "--kind", "presence")
	if got := matching(pres, `\tpresence\tlocal\t`+alice+` -> \t.*journal status text`); len(got) != 1 {
		t.Errorf("status broadcast records (one per broadcast, two contacts): %q (all presence: %q)", got, pres)
	}
	if got := matching(pres, `\tpresence\tlocal\t`+alice+` -> `+bob+`\t\t.*directed status text`); len(got) != 1 {
		t.Errorf("directed presence records: %q", got)
	}
	if got := matching(pres, `after unlock status text`); len(got) != 1 {
		t.Errorf("records of the status after the unlock: %q", got)
	}
	if got := matching(searchLines(t, s), `locked status text|bG9ja2Vk`); len(got) != 0 {
		t.Errorf("the journal holds what it refused: %q", got)
	}
}
