package e2e

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/palisade-im/palisade/modules/archive"
	"github.com/palisade-im/palisade/server/cli"
	"github.com/palisade-im/palisade/server/config"
	"github.com/palisade-im/palisade/storage"
	"github.com/palisade-im/palisade/storage/sqlite"
	"github.com/palisade-im/palisade/storage/sqlite/journaltest"
	"golang.org/x/mod/sumdb/note"
)

// The archive module is linked into every e2e server: every test runs with
// the journal on, as a deployment does.

type journalRow struct {
	seq              int64
	kind, from, to   string
	typ, dir         string
	content, rawData string
}

// journalRows reads the journal of a running server through a separate
// read-only connection.
func journalRows(t *testing.T, e *env) []journalRow {
	t.Helper()
	recs, err := journaltest.Records(filepath.Join(e.cfg.Server.DataDir, "journal.db"))
	if err != nil {
		t.Fatal(err)
	}
	var out []journalRow
	for _, jr := range recs {
		if jr.Kind == storage.KindAdmin {
			continue // administrative acts (the configuration at each start): acts_test.go
		}
		r := journalRow{seq: jr.Seq, kind: string(jr.Kind), from: jr.From, to: jr.To, typ: jr.StanzaType, dir: string(jr.Direction)}
		rec, err := archive.DecodeRecord(jr.Data)
		if err != nil {
			t.Fatalf("record %d: %v", r.seq, err)
		}
		r.content, r.rawData = rec.Content, string(jr.Data)
		out = append(out, r)
	}
	return out
}

func findRow(rows []journalRow, substr string) *journalRow {
	for i := range rows {
		if strings.Contains(rows[i].content, substr) {
			return &rows[i]
		}
	}
	return nil
}

// TestJournalBeforeDelivery: when the recipient has a message, the journal
// already holds it, no-store hints included; subscription changes and
// errors bounced to users are journaled; the rest is not.
func TestJournalBeforeDelivery(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	alice := login(t, e, modeStartTLS, "alice", "a")
	bob := login(t, e, modeStartTLS, "bob", "b")

	alice.send("<message to='bob@localhost/b' type='chat' id='j1'><body>first</body></message>")
	if m := bob.expect(nsClient, "message"); m.A("id") != "j1" {
		t.Fatalf("got %s", m)
	}
	rows := journalRows(t, e)
	if len(rows) != 1 || rows[0].kind != "message" || rows[0].from != "alice@localhost/a" || rows[0].to != "bob@localhost/b" ||
		rows[0].typ != "chat" || rows[0].dir != "local" || !strings.Contains(rows[0].content, "<body>first</body>") {
		t.Fatalf("journal after the first delivery: %+v", rows)
	}

	alice.send("<message to='bob@localhost/b' type='chat' id='j2'><body>off the record</body>" +
		"<no-store xmlns='urn:xmpp:hints'/><no-permanent-store xmlns='urn:xmpp:hints'/></message>")
	if m := bob.expect(nsClient, "message"); m.A("id") != "j2" {
		t.Fatalf("got %s", m)
	}
	if r := findRow(journalRows(t, e), "off the record"); r == nil || !strings.Contains(r.content, "no-store") {
		t.Fatalf("the <no-store/> message is not in the journal: %+v", r)
	}

	// A bounce to the sender is journaled as a message of type error.
	bob.send("<message to='nobody@localhost' type='chat' id='j3'><body>anyone?</body></message>")
	if r := bob.expect(nsClient, "message"); r.stanzaError() != "service-unavailable" {
		t.Fatalf("got %s", r)
	}
	// Subscription and directed presence are journaled; IQs the server
	// answers are not.
	alice.send("<presence to='bob@localhost' type='subscribe' id='s1'/>")
	if p := bob.expect(nsClient, "presence"); p.A("type") != "subscribe" {
		t.Fatalf("got %s", p)
	}
	alice.send("<presence to='bob@localhost/b'/>")
	bob.expect(nsClient, "presence")
	alice.sync()
	bob.sync()

	rows = journalRows(t, e)
	var kinds []string
	for _, r := range rows {
		kinds = append(kinds, r.kind+"/"+r.typ+"/"+r.to)
	}
	want := []string{
		"message/chat/bob@localhost/b", "message/chat/bob@localhost/b",
		"message/chat/nobody@localhost", "message/error/bob@localhost/b",
		"subscription/subscribe/bob@localhost", "presence//bob@localhost/b",
	}
	if strings.Join(kinds, " ") != strings.Join(want, " ") {
		t.Fatalf("journal kinds:\n got  %v\n want %v", kinds, want)
	}

	// On shutdown a checkpoint is issued and the whole journal verifies.
	if err := e.stop(); err != nil {
		t.Fatal(err)
	}
	files := archive.Paths(e.cfg)
	jpath, kpath, cdir := files.Journal, files.SigningKey, files.CheckpointDir
	j, err := sqlite.OpenJournalReadOnly(context.Background(), jpath)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	vkey, err := archive.ReadVerifierKey(kpath)
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := archive.Verify(context.Background(), j, v)
	// Besides them: the configuration's record, checkpointed at start.
	if err != nil || len(rep.Problems) > 0 || rep.Records != int64(len(want))+1 || rep.Checkpoints != 2 {
		t.Fatalf("verify: %+v, %v", rep, err)
	}
	if files, _ := filepath.Glob(filepath.Join(cdir, "checkpoint-*.txt")); len(files) != 2 {
		t.Fatalf("checkpoint files: %v", files)
	}
}

func healthz(t *testing.T, e *env) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + e.cfg.Listen.Admin + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestJournalFailClosed locks the journal from outside: a message
// is not delivered, the sender gets a stanza error, /healthz fails; once
// the lock is gone, delivery and health come back.
func TestJournalFailClosed(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *config.Config) { c.Listen.Admin = freeAddr(t) })
	admin := e.cfg.Listen.Admin
	waitListening(t, admin)
	alice := login(t, e, modeStartTLS, "alice", "a")
	bob := login(t, e, modeStartTLS, "bob", "b")
	if code, body := healthz(t, e); code != http.StatusOK {
		t.Fatalf("healthz before: %d %s", code, body)
	}

	// Another process holds the journal's append lock.
	lf, err := os.OpenFile(filepath.Join(sqlite.JournalRecordsDir(filepath.Join(e.cfg.Server.DataDir, "journal.db")), "lock"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	if err := syscall.Flock(int(lf.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	alice.send("<message to='bob@localhost/b' type='chat' id='x1'><body>must not arrive</body></message>")
	r := alice.expect(nsClient, "message")
	if r.A("id") != "x1" || r.stanzaError() != "internal-server-error" || r.Child(nsClient, "error").A("type") != "wait" {
		t.Fatalf("sender got %s", r)
	}
	bob.nothing(quiet)
	code, body := healthz(t, e)
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "journal") {
		t.Fatalf("healthz while locked: %d %s", code, body)
	}
	if err := syscall.Flock(int(lf.Fd()), syscall.LOCK_UN); err != nil {
		t.Fatal(err)
	}

	alice.send("<message to='bob@localhost/b' type='chat' id='x2'><body>now</body></message>")
	if m := bob.expect(nsClient, "message"); m.A("id") != "x2" {
		t.Fatalf("got %s", m)
	}
	if code, body := healthz(t, e); code != http.StatusOK {
		t.Fatalf("healthz after: %d %s", code, body)
	}
	rows := journalRows(t, e)
	if len(rows) != 1 || findRow(rows, "must not arrive") != nil {
		t.Fatalf("journal: %+v", rows)
	}
}

// TestJournalCount sends messages from several goroutines at once: the
// journal holds each exactly once, in an order every sender's own messages
// keep.
func TestJournalCount(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	alice := login(t, e, modeStartTLS, "alice", "a")
	bob := login(t, e, modeStartTLS, "bob", "b")
	carol := login(t, e, modeDirectTLS, "carol", "c")
	const each = 40
	done := make(chan struct{})
	for _, c := range []*client{alice, bob} {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range each {
				c.send("<message to='carol@localhost/c' type='chat' id='%s-%d'><body>n</body></message>", c.user, i)
			}
		}()
	}
	<-done
	<-done
	for range 2 * each {
		carol.expect(nsClient, "message")
	}
	rows := journalRows(t, e)
	if len(rows) != 2*each {
		t.Fatalf("%d records for %d messages", len(rows), 2*each)
	}
	next := map[string]int{}
	for _, r := range rows {
		user := strings.SplitN(r.from, "@", 2)[0]
		id := user + "-" + strconv.Itoa(next[user])
		if !strings.Contains(r.content, "id=\""+id+"\"") {
			t.Fatalf("record %d is %s, want %s next", r.seq, r.content, id)
		}
		next[user]++
	}
}

func waitListening(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(short)
	for {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("admin listener %s not up: %v", addr, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestJournalDisabled: with [archive] enabled = false nothing is journaled
// and messages flow.
func TestJournalDisabled(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *config.Config) { c.Archive.Enabled = false })
	alice := login(t, e, modeStartTLS, "alice", "a")
	bob := login(t, e, modeStartTLS, "bob", "b")
	alice.send("<message to='bob@localhost/b' type='chat' id='d1'><body>x</body></message>")
	if m := bob.expect(nsClient, "message"); m.A("id") != "d1" {
		t.Fatalf("got %s", m)
	}
	if _, err := os.Stat(filepath.Join(e.cfg.Server.DataDir, "journal.db")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("journal.db with the archive off: %v", err)
	}
}

// TestExportWhileRunning exports through the CLI while the server keeps
// journaling: the CLI's export record and the server's records share the
// tree, and the journal verifies.
func TestExportWhileRunning(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *config.Config) { c.Archive.CheckpointInterval = config.Duration(time.Second) })
	alice := login(t, e, modeStartTLS, "alice", "a")
	bob := login(t, e, modeStartTLS, "bob", "b")
	alice.send("<message to='bob@localhost/b' type='chat' id='w1'><body>before</body></message>")
	bob.expect(nsClient, "message")
	cdir := archive.Paths(e.cfg).CheckpointDir
	deadline := time.Now().Add(short)
	for {
		if files, _ := filepath.Glob(filepath.Join(cdir, "checkpoint-*.txt")); len(files) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no checkpoint within 5s at a 1s interval")
		}
		time.Sleep(50 * time.Millisecond)
	}
	conf := filepath.Join(t.TempDir(), "palisade.toml")
	if err := os.WriteFile(conf, []byte("[server]\ndomains = [\"localhost\"]\ndata_dir = "+strconv.Quote(e.cfg.Server.DataDir)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bundle := filepath.Join(t.TempDir(), "bundle")
	var out strings.Builder
	if code := cli.Main([]string{"--config", conf, "archive", "export", "--out", bundle}, strings.NewReader(""), &out, &out); code != 0 {
		t.Fatalf("archive export exited %d:\n%s", code, out.String())
	}
	alice.send("<message to='bob@localhost/b' type='chat' id='w2'><body>after</body></message>")
	if m := bob.expect(nsClient, "message"); m.A("id") != "w2" {
		t.Fatalf("got %s", m)
	}
	rows := journalRows(t, e)
	var kinds []string
	for _, r := range rows {
		kinds = append(kinds, r.kind)
	}
	if strings.Join(kinds, " ") != "message export message" {
		t.Fatalf("journal kinds %v", kinds)
	}
	if err := e.stop(); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if code := cli.Main([]string{"--config", conf, "archive", "verify"}, strings.NewReader(""), &out, &out); code != 0 || !strings.Contains(out.String(), "\nOK\n") {
		t.Fatalf("archive verify exited %d:\n%s", code, out.String())
	}
}
