package cli

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/palisade-im/palisade/modules/archive"
	"github.com/palisade-im/palisade/server"
	"github.com/palisade-im/palisade/server/config"
	"github.com/palisade-im/palisade/server/module"
	"github.com/palisade-im/palisade/storage/sqlite"
	"go.uber.org/zap"
)

const lockedPolicy = "[[archive.retention]]\nname = \"sec-17a4\"\nscope = \"all\"\nkeep_days = 2190\nlocked = true\n"

// startOnce builds the server of the configuration at path and runs it
// with a context already ended: the modules start (the archive records
// locks and holds and writes the lock marker) and stop again.
func startOnce(t *testing.T, path string) {
	t.Helper()
	cfg, err := config.Load(path, module.ConfigRegistry{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	st, err := openStore(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Listen.Admin = ln.Addr().String()
	_ = ln.Close()
	srv, err := server.New(cfg, st, zap.NewNop())
	if err != nil {
		t.Fatalf("server.New: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- srv.Run(cctx) }()
	// Up once the admin listener answers; then stop.
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + cfg.Listen.Admin + "/healthz")
		if err == nil {
			resp.Body.Close()
			break
		}
		select {
		case err := <-done:
			cancel()
			t.Fatalf("Run: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("admin listener not up: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// configAs writes the configuration writeConfig would to dir/name.
func configAs(t *testing.T, dir, name, extra string) string {
	t.Helper()
	path := writeConfig(t, dir, extra)
	named := filepath.Join(dir, name)
	if err := os.Rename(path, named); err != nil {
		t.Fatal(err)
	}
	return named
}

func readMarker(t *testing.T, dir string) archive.LockMarker {
	t.Helper()
	path := filepath.Join(dir, archive.LockMarkerFile)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("lock marker: %v", err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("lock marker mode %v, want 0600", fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m archive.LockMarker
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// refused runs check-config and serve on path: each must exit 2 with
// every want in its message.
func refused(t *testing.T, what, path string, want ...string) {
	t.Helper()
	for _, cmd := range [][]string{{"check-config", path}, {"--config", path, "serve"}} {
		type result struct {
			code        int
			out, errOut string
		}
		res := make(chan result, 1)
		go func() {
			code, out, errOut := run(cmd...)
			res <- result{code, out, errOut}
		}()
		var r result
		select {
		case r = <-res:
		case <-time.After(30 * time.Second):
			// serve did not refuse: it runs until a signal.
			t.Fatalf("%s: %s did not refuse within 30s", what, cmd[len(cmd)-1])
		}
		code, out, errOut := r.code, r.out, r.errOut
		ok := code == 2
		for _, w := range want {
			ok = ok && strings.Contains(errOut, w)
		}
		if !ok {
			t.Errorf("%s: %s: exit %d, stdout %q, stderr %q; want 2 naming %q", what, cmd[len(cmd)-1], code, out, errOut, want)
		}
	}
}

func checkOK(t *testing.T, what, path string, want ...string) {
	t.Helper()
	code, out, errOut := run("check-config", path)
	ok := code == 0
	for _, w := range want {
		ok = ok && strings.Contains(out, w)
	}
	if !ok {
		t.Errorf("%s: check-config exit %d, stdout %q, stderr %q; want 0 with %q", what, code, out, errOut, want)
	}
}

func moveJournal(t *testing.T, from, to string) {
	t.Helper()
	for _, suffix := range []string{"", "-wal", "-shm"} {
		if err := os.Rename(from+suffix, to+suffix); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}
	if err := os.Rename(sqlite.JournalRecordsDir(from), sqlite.JournalRecordsDir(to)); err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
}

// TestLockBindsArchive: a journal holding a locked policy and a legal
// hold cannot be left behind: turning the archive off, pointing
// journal_file elsewhere, or putting another journal (or none) at its path
// is refused by check-config and serve (exit 2, the policy, the hold and
// the paths named); moving the journal is accepted and remembered.
func TestLockBindsArchive(t *testing.T) {
	dir := t.TempDir()
	hold := "[[archive.hold]]\nname = \"matter-17\"\ncustodians = [\"alice@example.com\"]\nreason = \"SEC inquiry\"\n"
	path := configAs(t, dir, "c2.toml", lockedPolicy+hold)
	startOnce(t, path)
	jpath := filepath.Join(dir, "journal.db")
	m := readMarker(t, dir)
	if m.Journal != jpath || m.JournalID == "" || len(m.Policies) != 1 || m.Policies[0].Name != "sec-17a4" ||
		len(m.Holds) != 1 || m.Holds[0].Name != "matter-17" {
		t.Fatalf("marker %+v", m)
	}
	checkOK(t, "the same configuration", path, "lock binding:")

	off := configAs(t, dir, "c3.toml", "[archive]\nenabled = false\n")
	refused(t, "archive off", off, "archive.enabled = false: the journal "+jpath+` holds locked retention policy "sec-17a4"`,
		"until at least", `active legal hold "matter-17"`)

	other := filepath.Join(dir, "elsewhere", "journal.db")
	moved := configAs(t, dir, "c4.toml", "[archive]\njournal_file = \""+other+"\"\n"+lockedPolicy)
	refused(t, "journal_file elsewhere", moved, `archive.journal_file = "`+other+`"`, jpath, `"sec-17a4"`, `"matter-17"`, other+" does not exist")
	if _, err := os.Stat(other); err == nil {
		t.Fatal("the refused start created the other journal")
	}

	// Another journal at the same path (the old one set aside, a new one
	// recording the same policy name).
	aside := filepath.Join(dir, "aside.db")
	moveJournal(t, jpath, aside)
	refused(t, "journal missing", path, "the journal "+jpath+" is missing", `"sec-17a4"`, `"matter-17"`)
	cfg, err := config.Load(path, module.ConfigRegistry{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	j, err := sqlite.OpenJournal(ctx, jpath)
	if err != nil {
		t.Fatal(err)
	}
	if err := archive.EnforceLocks(ctx, j, j, cfg.Archive.Retention, "test", zap.NewNop()); err != nil {
		t.Fatal(err)
	}
	j.Close()
	refused(t, "another journal at the path", path, "the journal "+jpath+" is another journal", `"sec-17a4"`)
	// The server itself (not only the CLI) refuses to adopt it.
	st, err := openStore(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, err = server.New(cfg, st, zap.NewNop())
	st.Close()
	var bind *archive.BindError
	if !errors.As(err, &bind) || !strings.Contains(err.Error(), "is not the journal that holds locked retention policy \"sec-17a4\"") {
		t.Fatalf("server.New on another journal: %v", err)
	}
	for _, suffix := range []string{"", "-wal", "-shm"} {
		_ = os.Remove(jpath + suffix)
	}
	_ = os.RemoveAll(sqlite.JournalRecordsDir(jpath))

	// A move: the configured file is the marker's journal, the old path
	// is empty. Accepted, and the marker follows it.
	movedTo := filepath.Join(dir, "archive2", "journal.db")
	if err := os.MkdirAll(filepath.Dir(movedTo), 0o700); err != nil {
		t.Fatal(err)
	}
	moveJournal(t, aside, movedTo)
	movedCfg := configAs(t, dir, "c5.toml", "[archive]\njournal_file = \""+movedTo+"\"\n"+lockedPolicy)
	checkOK(t, "the journal moved", movedCfg, "the journal moved from "+jpath+" to "+movedTo)
	startOnce(t, movedCfg)
	if m := readMarker(t, dir); m.Journal != movedTo || len(m.Policies) != 1 {
		t.Fatalf("marker after the move %+v", m)
	}
	refused(t, "back to the default path", path, `archive.journal_file = ""`, movedTo, `"sec-17a4"`)
}

// TestLockBindsWithoutMarker: with no marker (an older build, or the file
// removed), a journal at the default path holding locks still binds.
func TestLockBindsWithoutMarker(t *testing.T) {
	dir := t.TempDir()
	path := configAs(t, dir, "c6.toml", lockedPolicy)
	cfg, err := config.Load(path, module.ConfigRegistry{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	jpath := archive.Paths(cfg).Journal
	j, err := sqlite.OpenJournal(ctx, jpath)
	if err != nil {
		t.Fatal(err)
	}
	if err := archive.EnforceLocks(ctx, j, j, cfg.Archive.Retention, "test", zap.NewNop()); err != nil {
		t.Fatal(err)
	}
	j.Close()
	if _, err := os.Stat(filepath.Join(dir, archive.LockMarkerFile)); err == nil {
		t.Fatal("marker written by EnforceLocks alone")
	}
	refused(t, "archive off", configAs(t, dir, "c7.toml", "[archive]\nenabled = false\n"),
		"archive.enabled = false: the journal "+jpath+` holds locked retention policy "sec-17a4"`)
	other := filepath.Join(dir, "other.db")
	refused(t, "elsewhere", configAs(t, dir, "c8.toml", "[archive]\njournal_file = \""+other+"\"\n"+lockedPolicy),
		jpath, other, `"sec-17a4"`)
}

// TestHoldCommandsUpdateMarker: `archive hold add` records the hold in
// the marker (the archive cannot then be turned off), `archive hold
// release` takes it out again (and then it can).
func TestHoldCommandsUpdateMarker(t *testing.T) {
	dir := t.TempDir()
	path := configAs(t, dir, "c9.toml", "")
	if code, out, errOut := run("--config", path, "archive", "hold", "add", "--custodian", "bob@example.com",
		"--reason", "litigation", "--name", "h1", "--by", "legal"); code != 0 {
		t.Fatalf("hold add: %d %s %s", code, out, errOut)
	}
	if m := readMarker(t, dir); len(m.Holds) != 1 || m.Holds[0].Name != "h1" || m.Holds[0].PlacedBy != "legal" {
		t.Fatalf("marker %+v", m)
	}
	off := configAs(t, dir, "c10.toml", "[archive]\nenabled = false\n")
	refused(t, "archive off with a hold", off, `archive.enabled = false: the journal `+filepath.Join(dir, "journal.db")+` holds active legal hold "h1"`)
	if code, out, errOut := run("--config", path, "archive", "hold", "release", "h1", "--reason", "settled", "--by", "legal"); code != 0 {
		t.Fatalf("hold release: %d %s %s", code, out, errOut)
	}
	if m := readMarker(t, dir); len(m.Holds) != 0 {
		t.Fatalf("marker after release %+v", m)
	}
	checkOK(t, "archive off after the release", off)
}

// TestCheckConfigPosture: check-config prints each posture warning as a
// "warning: ..." line and still exits 0.
func TestCheckConfigPosture(t *testing.T) {
	dir := t.TempDir()
	path := configAs(t, dir, "p.toml", "[archive]\nenabled = false\n")
	code, out, errOut := run("check-config", path)
	if code != 0 {
		t.Fatalf("check-config: exit %d, %s", code, errOut)
	}
	for _, want := range []string{
		"warning: the compliance journal is off ([archive] enabled = false): nothing users send is recorded (archive_off)\n",
		"warning: no [tls] certificate is configured: the generated self-signed development certificate is served for example.com: clients cannot authenticate the server (self_signed_certificate)\n",
		"(audit_stderr_only)\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("check-config output lacks %q:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "warning: "); n != 3 {
		t.Errorf("%d warnings, want 3:\n%s", n, out)
	}
}

// TestDamagedLockMarker: a marker that does not parse is refused, not
// ignored.
func TestDamagedLockMarker(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, archive.LockMarkerFile), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	refused(t, "damaged marker", configAs(t, dir, "d.toml", "[archive]\nenabled = false\n"), archive.LockMarkerFile, "is damaged")
}
