package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/palisade-im/palisade/modules/archive"
	"github.com/palisade-im/palisade/modules/register" // XEP-0077 account changes, linked into every e2e server
	"github.com/palisade-im/palisade/server/cli"
	"github.com/palisade-im/palisade/server/config"
	"github.com/palisade-im/palisade/storage"
	"github.com/palisade-im/palisade/storage/sqlite/journaltest"
	"go.uber.org/zap/zaptest/observer"
	"mellium.im/xmpp/jid"
)

// actRow is a kind admin record of the journal.
type actRow struct {
	seq      int64
	from, to string
	act      archive.AdminAct
}

// adminActs reads the journal's administrative acts.
func adminActs(t *testing.T, e *env) []actRow {
	t.Helper()
	recs, err := journaltest.Records(filepath.Join(e.cfg.Server.DataDir, "journal.db"))
	if err != nil {
		t.Fatal(err)
	}
	var out []actRow
	for _, r := range recs {
		if r.Kind != storage.KindAdmin {
			continue
		}
		rec, err := archive.DecodeRecord(r.Data)
		if err != nil {
			t.Fatalf("record %d: %v", r.Seq, err)
		}
		row := actRow{seq: r.Seq, from: r.From, to: r.To}
		if err := json.Unmarshal([]byte(rec.Content), &row.act); err != nil {
			t.Fatalf("record %d: %v: %s", r.Seq, err, rec.Content)
		}
		out = append(out, row)
	}
	return out
}

// actsOf returns the acts named act.
func actsOf(rows []actRow, act string) []actRow {
	var out []actRow
	for _, r := range rows {
		if r.act.Act == act {
			out = append(out, r)
		}
	}
	return out
}

// cliConfig writes a configuration for the CLI on e's data directory,
// with the admin listener address admin ("" : off) and extra TOML.
func cliConfig(t *testing.T, e *env, admin, extra string) string {
	t.Helper()
	conf := filepath.Join(t.TempDir(), "palisade.toml")
	doc := "[server]\ndomains = [\"" + domain + "\"]\ndata_dir = " + strconv.Quote(e.cfg.Server.DataDir) + "\n" +
		"[listen]\nc2s = \"\"\nc2s_direct_tls = \"\"\nwebsocket = \"\"\nadmin = " + strconv.Quote(admin) + "\n" + extra
	if err := os.WriteFile(conf, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return conf
}

// runCLI runs the palisade command line in-process.
func runCLI(conf, stdin string, args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := cli.Main(append([]string{"--config", conf}, args...), strings.NewReader(stdin), &out, &errOut)
	return code, out.String(), errOut.String()
}

// resumeWith logs in as user with pw and asks to resume previd; it
// returns the answer.
func resumeWith(t *testing.T, e *env, user, pw, previd string) *Node {
	t.Helper()
	c := dial(t, e, modeStartTLS)
	c.secure()
	if n := c.authPlain(user, pw); !n.Is(nsSASL, "success") {
		t.Fatalf("auth %s with %q: %s", user, pw, n)
	}
	c.openOK()
	c.send("<resume xmlns='urn:xmpp:sm:3' previd='%s' h='0'/>", previd)
	return c.next()
}

func countEvents(logs *observer.ObservedLogs, msg string) int {
	return logs.FilterMessage(msg).Len()
}

// TestUserPasswdEndsSessions: `palisade user passwd` with a server
// running ends every session of the account, attached (stream error
// not-authorized) and detached awaiting resumption, and none can be
// resumed, with the new password either; the old password no longer logs
// in; one audit event; the change is one journal record (kind admin).
// Other accounts keep their sessions.
func TestUserPasswdEndsSessions(t *testing.T) {
	t.Parallel()
	e, logs := newEnvObserved(t, func(c *config.Config) { c.Listen.Admin = freeAddr(t) })
	admin := e.cfg.Listen.Admin
	waitListening(t, admin)
	conf := cliConfig(t, e, admin, "")

	a1 := login(t, e, modeStartTLS, "alice", "a1")
	id1 := a1.enable()
	a2 := login(t, e, modeStartTLS, "alice", "a2")
	id2 := a2.enable()
	a2.autoAck.Store(false)
	_ = a2.raw.Close() // lost connection: the session stays resumable
	login(t, e, modeStartTLS, "bob", "b")
	// Without the admin token the endpoints refuse, and end nothing.
	for _, p := range []string{"/admin/end-sessions?jid=alice@localhost&change=passwd", "/archive/checkpoint"} {
		if code, body := adminRequest(t, e, "POST", p, nil); code != 401 {
			t.Errorf("POST %s without the token: %d %s", p, code, body)
		}
	}
	if n := len(e.srv.Sessions(jid.MustParse("alice@localhost"))); n != 2 {
		t.Fatalf("alice has %d sessions before the change, want 2", n)
	}

	const newPW = "quill-pen-ink-42"
	code, out, errOut := runCLI(conf, newPW+"\n", "user", "passwd", "alice@"+domain)
	if code != 0 || !strings.Contains(out, "alice@localhost: 2 session(s) ended on the running server\n") ||
		!strings.HasSuffix(out, "alice@localhost: password changed\n") {
		t.Fatalf("user passwd: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	a1.expectStreamError("not-authorized")
	for _, id := range []string{id1, id2} {
		if n := resumeWith(t, e, "alice", newPW, id); !n.Is(nsSM, "failed") {
			t.Errorf("resume %s after the password change: %s", id, n)
		}
	}
	c := dial(t, e, modeStartTLS)
	c.secure()
	if n := c.authPlain("alice", users["alice"]); n.Is(nsSASL, "success") {
		t.Error("the old password still logs in")
	}
	// bob is untouched, alice has no session left.
	if n := len(e.srv.Sessions(jid.MustParse("bob@localhost"))); n != 1 {
		t.Errorf("bob has %d sessions after alice's change, want 1", n)
	}
	if n := len(e.srv.Sessions(jid.MustParse("alice@localhost"))); n != 0 {
		t.Errorf("alice has %d sessions after the change, want 0", n)
	}
	if n := countEvents(logs, "account_sessions_ended"); n != 1 {
		t.Errorf("%d account_sessions_ended audit events, want 1", n)
	}
	acts := actsOf(adminActs(t, e), archive.ActUserPasswd)
	if len(acts) != 1 || acts[0].act.Target != "alice@localhost" || acts[0].to != "alice@localhost" ||
		!strings.HasPrefix(acts[0].act.Actor, "cli:") || acts[0].act.Details["sessions"] != "2 session(s) ended" || acts[0].act.Time == "" {
		t.Fatalf("user_passwd records: %+v", acts)
	}
}

// TestUserDelEndsSessions: `palisade user del` with a server running ends
// the account's sessions (not-authorized), drops the resumable one, and is
// one journal record; the account has no session left.
func TestUserDelEndsSessions(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *config.Config) { c.Listen.Admin = freeAddr(t) })
	admin := e.cfg.Listen.Admin
	waitListening(t, admin)
	conf := cliConfig(t, e, admin, "")
	b1 := login(t, e, modeStartTLS, "bob", "b1")
	b1.enable()
	b2 := login(t, e, modeStartTLS, "bob", "b2")
	b2.enable()
	b2.autoAck.Store(false)
	_ = b2.raw.Close()

	code, out, errOut := runCLI(conf, "", "user", "del", "bob@"+domain)
	if code != 0 || !strings.Contains(out, "bob@localhost: 2 session(s) ended on the running server\n") ||
		!strings.HasSuffix(out, "bob@localhost: deleted\n") {
		t.Fatalf("user del: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	b1.expectStreamError("not-authorized")
	if s := e.srv.Sessions(jid.MustParse("bob@localhost")); len(s) != 0 {
		t.Errorf("bob still has %d sessions", len(s))
	}
	acts := actsOf(adminActs(t, e), archive.ActUserDel)
	if len(acts) != 1 || acts[0].act.Target != "bob@localhost" || acts[0].act.Details["sessions"] != "2 session(s) ended" {
		t.Fatalf("user_del records: %+v", acts)
	}
}

// TestInBandPasswordChangeEndsOtherSessions: a password changed through
// XEP-0077 ends the account's other sessions (not-authorized, no
// resumption); the session that changed it stays; the change is one
// journal record naming the account as actor.
func TestInBandPasswordChangeEndsOtherSessions(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	a1 := login(t, e, modeStartTLS, "alice", "a1")
	a2 := login(t, e, modeStartTLS, "alice", "a2")
	id2 := a2.enable()
	a1.send("<iq type='set' id='pw1'><query xmlns='jabber:iq:register'><username>alice</username><password>quill-pen-ink-42</password></query></iq>")
	if n := a1.expect(nsClient, "iq"); n.A("id") != "pw1" || n.A("type") != "result" {
		t.Fatalf("password change: %s", n)
	}
	a2.expectStreamError("not-authorized")
	if n := resumeWith(t, e, "alice", "quill-pen-ink-42", id2); !n.Is(nsSM, "failed") {
		t.Errorf("resume after the password change: %s", n)
	}
	// The session that changed it stays and still talks.
	bob := login(t, e, modeStartTLS, "bob", "b")
	a1.send("<message to='bob@localhost/b' type='chat' id='after'><body>still here</body></message>")
	if n := bob.expect(nsClient, "message"); n.A("id") != "after" {
		t.Errorf("bob got %s", n)
	}
	acts := actsOf(adminActs(t, e), archive.ActUserPasswd)
	if len(acts) != 1 || acts[0].act.Actor != "xep-0077:alice@localhost" || acts[0].act.Target != "alice@localhost" {
		t.Fatalf("user_passwd records: %+v", acts)
	}
}

// TestInBandRemovalJournaled: an account removed through XEP-0077 ends
// all its sessions (not-authorized) and is one journal record.
func TestInBandRemovalJournaled(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *config.Config) {
		c.Modules["register"] = config.Section{Name: "register", Value: &register.Config{Allow: true}, Line: 1}
	})
	a1 := login(t, e, modeStartTLS, "alice", "a1")
	a2 := login(t, e, modeStartTLS, "alice", "a2")
	a2.enable()
	a1.send("<iq type='set' id='rm1'><query xmlns='jabber:iq:register'><remove/></query></iq>")
	if n := a1.expect(nsClient, "iq"); n.A("id") != "rm1" || n.A("type") != "result" {
		t.Fatalf("removal: %s", n)
	}
	a1.expectStreamError("not-authorized")
	a2.expectStreamError("not-authorized")
	acts := actsOf(adminActs(t, e), archive.ActUserDel)
	if len(acts) != 1 || acts[0].act.Actor != "xep-0077:alice@localhost" || acts[0].act.Target != "alice@localhost" {
		t.Fatalf("user_del records: %+v", acts)
	}
}

// TestAdminActsJournaled: each administrative act is one kind admin
// record with who, what, to what: the configuration at start (its
// SHA-256 and the version), user add, group add and remove, kick and
// unlock through the CLI (journaled by the server, under the CLI's
// actor); `archive search --kind admin` finds them and the journal
// verifies.
func TestAdminActsJournaled(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *config.Config) { c.Listen.Admin = freeAddr(t) })
	admin := e.cfg.Listen.Admin
	waitListening(t, admin)
	conf := cliConfig(t, e, admin, "[groups]\nops = \"\"\n")
	carol := login(t, e, modeStartTLS, "carol", "c")

	steps := [][]string{
		{"user", "add", "dave@" + domain},
		{"user", "group", "add", "dave@" + domain, "ops"},
		{"user", "group", "remove", "dave@" + domain, "ops"},
		{"user", "kick", "carol@" + domain},
		{"user", "unlock", "carol@" + domain},
	}
	for _, args := range steps {
		if code, out, errOut := runCLI(conf, "quill-pen-ink-42\n", args...); code != 0 {
			t.Fatalf("%v: exit %d: %s%s", args, code, out, errOut)
		}
	}
	carol.expectStreamError("policy-violation")

	rows := adminActs(t, e)
	want := []struct{ act, target, detail, value string }{
		{archive.ActConfig, "embedded default", "version", archive.BuildVersion()},
		{archive.ActUserAdd, "dave@localhost", "", ""},
		{archive.ActGroupAdd, "dave@localhost", "group", "ops"},
		{archive.ActGroupRemove, "dave@localhost", "group", "ops"},
		{archive.ActKick, "carol@localhost", "sessions", "1"},
		{archive.ActUnlock, "carol@localhost", "had_failures", "false"},
	}
	if len(rows) != len(want) {
		t.Fatalf("%d admin records, want %d: %+v", len(rows), len(want), rows)
	}
	for i, w := range want {
		r := rows[i]
		if r.act.Act != w.act || r.act.Target != w.target || r.to != w.target || r.from != r.act.Actor || r.act.Time == "" ||
			(w.detail != "" && r.act.Details[w.detail] != w.value) {
			t.Errorf("admin record %d: %+v, want %+v", i, r, w)
		}
		if i > 0 && !strings.HasPrefix(r.act.Actor, "cli:") {
			t.Errorf("admin record %d: actor %q, want the CLI's user", i, r.act.Actor)
		}
	}
	if d := rows[0].act.Details["sha256"]; len(d) != 64 {
		t.Errorf("configuration digest %q", d)
	}

	code, out, errOut := runCLI(conf, "", "archive", "search", "--kind", "admin")
	if code != 0 || !strings.Contains(out, strconv.Itoa(len(want))+" records found\n") || !strings.Contains(out, `"act":"kick"`) {
		t.Fatalf("archive search --kind admin: exit %d: %s%s", code, out, errOut)
	}
	if err := e.stop(); err != nil {
		t.Fatal(err)
	}
	if code, out, errOut := runCLI(conf, "", "archive", "verify"); code != 0 || !strings.Contains(out, "\nOK\n") {
		t.Fatalf("archive verify: exit %d: %s%s", code, out, errOut)
	}
}

// TestConfigDigestFromFile: a server started from a file journals the
// SHA-256 of the bytes it parsed.
func TestConfigDigestFromFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "palisade.toml")
	body := []byte("# the file as written\n")
	if err := os.WriteFile(path, body, 0o600); err != nil {
		t.Fatal(err)
	}
	parsed, err := config.Parse(path, body, nil)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(c *config.Config) { c.Path, c.SHA256 = path, parsed.SHA256 })
	rows := actsOf(adminActs(t, e), archive.ActConfig)
	sum := sha256.Sum256(body)
	if len(rows) != 1 || rows[0].act.Target != path || rows[0].act.Details["sha256"] != hex.EncodeToString(sum[:]) || rows[0].act.Details["source"] != "file" {
		t.Fatalf("config records: %+v", rows)
	}
}

// TestExportRightAfterConversation: `archive export` run at once after a
// message holds that message, proven (the running server issues a fresh
// checkpoint on request); the same with the server stopped for acts the
// CLI journaled since (the CLI issues the checkpoint and publishes it to
// the directory sink). verify-export passes both times.
func TestExportRightAfterConversation(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *config.Config) { c.Listen.Admin = freeAddr(t) }) // checkpoint_interval: the default minute
	admin := e.cfg.Listen.Admin
	waitListening(t, admin)
	conf := cliConfig(t, e, admin, "")
	alice := login(t, e, modeStartTLS, "alice", "a")
	bob := login(t, e, modeStartTLS, "bob", "b")
	alice.send("<message to='bob@localhost/b' type='chat' id='now1'><body>just said</body></message>")
	bob.expect(nsClient, "message")

	bundle := filepath.Join(t.TempDir(), "bundle")
	code, out, errOut := runCLI(conf, "", "archive", "export", "--out", bundle, "--kind", "message")
	if code != 0 || !strings.Contains(out, "1 records in 1 conversation files") || strings.Contains(out, "not covered") {
		t.Fatalf("archive export: exit %d: %s%s", code, out, errOut)
	}
	recs, err := os.ReadFile(filepath.Join(bundle, archive.FileRecords))
	if err != nil || !strings.Contains(string(recs), `"body":"just said"`) {
		t.Fatalf("records.jsonl: %v\n%s", err, recs)
	}
	if code, out, errOut := runCLI(conf, "", "archive", "verify-export", bundle); code != 0 || !strings.HasSuffix(out, "\nOK\n") {
		t.Fatalf("verify-export: exit %d: %s%s", code, out, errOut)
	}

	// Running: what the CLI journals itself (an account's creation) while
	// the server's view of the journal lags is in the export too, proven
	// by the fresh checkpoint the server issues.
	if code, out, errOut := runCLI(conf, "quill-pen-ink-41\n", "user", "add", "dave@"+domain); code != 0 {
		t.Fatalf("user add: %d %s%s", code, out, errOut)
	}
	bundle1 := filepath.Join(t.TempDir(), "bundle1")
	code, out, errOut = runCLI(conf, "", "archive", "export", "--out", bundle1, "--user", "dave@"+domain)
	if code != 0 || !strings.Contains(out, "1 records in 0 conversation files") || strings.Contains(out, "not covered") {
		t.Fatalf("archive export after a CLI append: exit %d: %s%s", code, out, errOut)
	}
	if code, out, errOut := runCLI(conf, "", "archive", "verify-export", bundle1); code != 0 || !strings.HasSuffix(out, "\nOK\n") {
		t.Fatalf("verify-export after a CLI append: exit %d: %s%s", code, out, errOut)
	}

	// Stopped: what the CLI journals next (an account's creation) is in
	// the next export too.
	if err := e.stop(); err != nil {
		t.Fatal(err)
	}
	before, _ := filepath.Glob(filepath.Join(archive.Paths(e.cfg).CheckpointDir, "checkpoint-*.txt"))
	if code, out, errOut := runCLI(conf, "quill-pen-ink-42\n", "user", "add", "erin@"+domain); code != 0 {
		t.Fatalf("user add: %d %s%s", code, out, errOut)
	}
	bundle2 := filepath.Join(t.TempDir(), "bundle2")
	code, out, errOut = runCLI(conf, "", "archive", "export", "--out", bundle2, "--user", "erin@"+domain)
	if code != 0 || !strings.Contains(out, "1 records in 0 conversation files") || strings.Contains(out, "not covered") {
		t.Fatalf("archive export, server stopped: exit %d: %s%s", code, out, errOut)
	}
	recs, err = os.ReadFile(filepath.Join(bundle2, archive.FileRecords))
	if err != nil || !strings.Contains(string(recs), `"kind":"admin"`) || !strings.Contains(string(recs), `"to":"erin@localhost"`) {
		t.Fatalf("records.jsonl: %v\n%s", err, recs)
	}
	if code, out, errOut := runCLI(conf, "", "archive", "verify-export", bundle2); code != 0 || !strings.HasSuffix(out, "\nOK\n") {
		t.Fatalf("verify-export: exit %d: %s%s", code, out, errOut)
	}
	after, _ := filepath.Glob(filepath.Join(archive.Paths(e.cfg).CheckpointDir, "checkpoint-*.txt"))
	if len(after) != len(before)+1 {
		t.Errorf("checkpoint files %d before, %d after: the CLI's checkpoint is not published to the sink", len(before), len(after))
	}
	if code, out, errOut := runCLI(conf, "", "archive", "verify"); code != 0 || !strings.Contains(out, "\nOK\n") {
		t.Fatalf("archive verify: exit %d: %s%s", code, out, errOut)
	}
}
