package conformance

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/palisade-im/palisade/storage/sqlite"
)

// witnessBin returns conformance/bin/NAME (where install-peers.sh puts
// litewitness and witnessctl), else NAME on PATH.
func witnessBin(t *testing.T, name string) string {
	t.Helper()
	if p, err := filepath.Abs(filepath.Join("bin", name)); err == nil {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found in conformance/bin or on PATH: run conformance/install-peers.sh", name)
	}
	return p
}

// child is a helper process started by a test and stopped by PID.
type child struct {
	name string
	cmd  *exec.Cmd
	out  *lockedBuffer
	done chan struct{}
}

func startChild(t *testing.T, name, bin string, env []string, args ...string) *child {
	t.Helper()
	c := &child{name: name, cmd: exec.Command(bin, args...), out: &lockedBuffer{}, done: make(chan struct{})}
	c.cmd.Env = append(os.Environ(), env...)
	c.cmd.Stdout, c.cmd.Stderr = c.out, c.out
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { c.cmd.Wait(); close(c.done) }()
	t.Cleanup(func() {
		c.stop()
		if t.Failed() {
			t.Logf("%s output:\n%s", name, c.out.String())
		}
	})
	return c
}

// stop kills the process (by its PID) and waits for it.
func (c *child) stop() {
	select {
	case <-c.done:
		return
	default:
	}
	_ = c.cmd.Process.Kill()
	<-c.done
}

// waitOutput waits until the child's output matches re and returns the
// first submatch.
func (c *child) waitOutput(t *testing.T, re string, timeout time.Duration) string {
	t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(timeout)
	for {
		if m := rx.FindStringSubmatch(c.out.String()); m != nil {
			return m[len(m)-1]
		}
		select {
		case <-c.done:
			t.Fatalf("%s exited (%v) before printing /%s/:\n%s", c.name, c.cmd.ProcessState, re, c.out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no /%s/ within %v:\n%s", c.name, re, timeout, c.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// liteWitness is a running litewitness with its own ssh-agent.
type liteWitness struct {
	t       *testing.T
	dir     string
	db      string
	sock    string
	fpr     string
	name    string
	addr    string
	VKey    string
	proc    *child
	started int
}

// startLiteWitness starts a dedicated ssh-agent holding a new Ed25519 key,
// and litewitness on a free loopback port using it.
func startLiteWitness(t *testing.T, name string) *liteWitness {
	t.Helper()
	for _, bin := range []string{"ssh-agent", "ssh-add", "ssh-keygen"} {
		RequirePeer(t, bin)
	}
	dir := t.TempDir()
	w := &liteWitness{t: t, dir: dir, db: filepath.Join(dir, "litewitness.db"), sock: filepath.Join(dir, "agent.sock"), name: name}
	key := filepath.Join(dir, "witness-key")
	run := func(env []string, bin string, args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %v: %v\n%s", bin, args, err, out)
		}
		return string(out)
	}
	run(nil, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "palisade-test-witness", "-f", key)
	agent := startChild(t, "ssh-agent", "ssh-agent", nil, "-D", "-a", w.sock)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(w.sock); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ssh-agent socket %s not there after 10s:\n%s", w.sock, agent.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	run([]string{"SSH_AUTH_SOCK=" + w.sock}, "ssh-add", key)
	fields := strings.Fields(run(nil, "ssh-keygen", "-l", "-f", key+".pub"))
	if len(fields) < 2 || !strings.HasPrefix(fields[1], "SHA256:") {
		t.Fatalf("ssh-keygen -l: %q", fields)
	}
	w.fpr = fields[1]
	w.addr = freePorts(t, 1)[0]
	w.start()
	return w
}

// start runs litewitness (again) on w.addr with w.db.
func (w *liteWitness) start() {
	t := w.t
	t.Helper()
	w.started++
	w.proc = startChild(t, fmt.Sprintf("litewitness (run %d)", w.started), witnessBin(t, "litewitness"), nil,
		"-db", w.db, "-name", w.name, "-key", w.fpr, "-ssh-agent", w.sock, "-listen", w.addr)
	w.VKey = w.proc.waitOutput(t, `msg="verifier key" vkey=(\S+)`, 20*time.Second)
	w.proc.waitOutput(t, `msg=listening`, 20*time.Second)
}

// URL is the witness's submission prefix.
func (w *liteWitness) URL() string { return "http://" + w.addr }

// ctl runs witnessctl on the witness's database.
func (w *liteWitness) ctl(args ...string) string {
	t := w.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	args = append(args[:1:1], append([]string{"-db", w.db}, args[1:]...)...)
	out, err := exec.CommandContext(ctx, witnessBin(t, "witnessctl"), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("witnessctl %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// size is the size of the latest checkpoint of origin the witness
// cosigned.
func (w *liteWitness) size(origin string) int64 {
	t := w.t
	t.Helper()
	for _, l := range strings.Split(w.ctl("list-logs"), "\n") {
		var e struct {
			Origin string `json:"origin"`
			Size   int64  `json:"size"`
		}
		if json.Unmarshal([]byte(l), &e) == nil && e.Origin == origin {
			return e.Size
		}
	}
	t.Fatalf("witness does not list %s", origin)
	return 0
}

// cosignLatency pairs each archive_witness_cosigned event with the
// archive_checkpoint event of its size: the time from signing the
// checkpoint to keeping the witness's cosignature.
func cosignLatency(s *Server) []time.Duration {
	signed := map[int64]time.Time{}
	var out []time.Duration
	for _, l := range strings.Split(s.Log(), "\n") {
		var e struct {
			Msg  string `json:"msg"`
			Time string `json:"time"`
			Size int64  `json:"size"`
		}
		if json.Unmarshal([]byte(l), &e) != nil {
			continue
		}
		at, err := time.Parse("2006-01-02T15:04:05.000Z0700", e.Time)
		if err != nil {
			continue
		}
		switch e.Msg {
		case "archive_checkpoint":
			signed[e.Size] = at
		case "archive_witness_cosigned":
			if t0, ok := signed[e.Size]; ok {
				out = append(out, at.Sub(t0))
			}
		}
	}
	return out
}

// cosignedEvents are the archive_witness_cosigned audit events in the
// server's log: [size, old] each.
func cosignedEvents(s *Server) [][2]int64 {
	var out [][2]int64
	for _, l := range strings.Split(s.Log(), "\n") {
		var e struct {
			Msg     string `json:"msg"`
			Witness string `json:"witness"`
			Size    int64  `json:"size"`
			Old     int64  `json:"old"`
		}
		if json.Unmarshal([]byte(l), &e) == nil && e.Msg == "archive_witness_cosigned" {
			out = append(out, [2]int64{e.Size, e.Old})
		}
	}
	return out
}

func waitCosigned(t *testing.T, s *Server, n int) [][2]int64 {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if ev := cosignedEvents(s); len(ev) >= n {
			return ev
		}
		if time.Now().After(deadline) {
			t.Fatalf("fewer than %d archive_witness_cosigned events after 30s:\n%s", n, s.Log())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func healthz(t *testing.T, s *Server) (int, string) {
	t.Helper()
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + s.Admin + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestLiteWitness drives the real litewitness (filippo.io/torchwood
// v0.6.1, behind its own ssh-agent): the journal is registered with
// witnessctl, two checkpoints are cosigned (the second with a consistency
// proof from the first, which litewitness checks), a stopped witness marks
// /healthz and is asked again when it is back, the export's checkpoint
// carries the cosignatures and verify-export --witness-key accepts the
// witness's key and refuses another; `archive verify` checks the stored
// cosignatures.
func TestLiteWitness(t *testing.T) {
	lw := startLiteWitness(t, "witness.test/lw")
	s := StartServerWith(t, fmt.Sprintf("[archive]\ncheckpoint_interval = \"1s\"\n\n[[archive.witness]]\nurl = %q\nkey = %q\n", lw.URL(), lw.VKey))
	for name, pw := range accounts {
		s.AddUser(t, name+"@"+Domain, pw)
	}
	// Register the journal with the witness, as its operator would: the
	// origin and key come from `palisade archive pubkey`.
	origin, vkey := registerJournal(t, s, lw)

	alice := dialRaw(t, s, "alice", "alice", accounts["alice"], "w")
	alice.roundTrip("first")
	ev := waitCosigned(t, s, 1)
	if ev[0][1] != 0 || ev[0][0] < 1 {
		t.Fatalf("first cosignature event %v: want old 0", ev)
	}
	first := ev[0][0]
	for i := 0; i < 5; i++ {
		alice.roundTrip(fmt.Sprint("more ", i))
	}
	ev = waitCosigned(t, s, 2)
	if ev[1][1] != first || ev[1][0] <= first {
		t.Fatalf("second cosignature event %v: want old %d (a consistency proof from the first)", ev, first)
	}
	if got := lw.size(origin); got < ev[1][0] {
		t.Fatalf("litewitness holds size %d, palisade says %d was cosigned", got, ev[1][0])
	}
	if code, body := healthz(t, s); code != http.StatusOK {
		t.Fatalf("/healthz with the witness up: %d %s", code, body)
	}

	// The witness goes away: /healthz names it; back, it is asked again.
	lw.proc.stop()
	before := cosignedEvents(s)
	alice.roundTrip("while the witness is down")
	// The log holds failures from before the journal was registered
	// (its start-up checkpoint): count the new ones.
	failed := regexp.MustCompile(`"msg":"archive witness failed".*"witness":"witness.test/lw"`)
	seen := len(failed.FindAllString(s.Log(), -1))
	for down := time.Now().Add(30 * time.Second); len(failed.FindAllString(s.Log(), -1)) == seen; {
		if time.Now().After(down) {
			t.Fatal("no new witness failure within 30s of stopping the witness")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code, body := healthz(t, s); code != http.StatusServiceUnavailable || !strings.Contains(body, "archive-witness:witness.test/lw") {
		t.Fatalf("/healthz with the witness down: %d %s", code, body)
	}
	lw.start()
	ev = waitCosigned(t, s, len(before)+1)
	if got, want := ev[len(before)][1], before[len(before)-1][0]; got != want {
		t.Fatalf("cosignature after the restart %v: want old %d", ev, want)
	}
	deadline := time.Now().Add(10 * time.Second)
	for code, body := healthz(t, s); code != http.StatusOK; code, body = healthz(t, s) {
		if time.Now().After(deadline) {
			t.Fatalf("/healthz after the witness came back: %d %s", code, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.Stop(t)
	last := cosignedEvents(s)
	size := last[len(last)-1][0]
	if got := lw.size(origin); got != size {
		t.Fatalf("litewitness holds size %d, the last cosigned is %d", got, size)
	}

	out, err := archiveCLI(t, s, "verify")
	if err != nil || !strings.Contains(out, "\nOK\n") || !regexp.MustCompile(`(?m)^`+strconv.Itoa(len(last))+` witness cosignatures checked`).MatchString(out) {
		t.Fatalf("archive verify: %v\n%s", err, out)
	}
	bundle := filepath.Join(s.Dir, "export")
	if out, err := archiveCLI(t, s, "export", "--out", bundle); err != nil {
		t.Fatalf("archive export: %v\n%s", err, out)
	}
	cp, _ := os.ReadFile(filepath.Join(bundle, "checkpoint.txt"))
	if n := strings.Count(string(cp), "\u2014 witness.test/lw "); n != 1 || !strings.Contains(string(cp), "\n"+strconv.FormatInt(size, 10)+"\n") {
		t.Fatalf("bundle checkpoint (size %d) with %d cosignature lines:\n%s", size, n, cp)
	}
	out, err = archiveCLI(t, s, "verify-export", "--verifier-key", vkey, "--witness-key", lw.VKey, bundle)
	if err != nil || !strings.Contains(out, "checkpoint cosigned by witness witness.test/lw") {
		t.Fatalf("verify-export --witness-key: %v\n%s", err, out)
	}
	// Another witness's key (a second litewitness, never asked) fails,
	// naming it.
	other := startLiteWitness(t, "witness.test/other")
	out, err = archiveCLI(t, s, "verify-export", "--verifier-key", vkey, "--witness-key", lw.VKey, "--witness-key", other.VKey, bundle)
	if err == nil || !strings.Contains(out, "witness witness.test/other: no cosignature from witness witness.test/other") {
		t.Fatalf("verify-export with a witness that did not cosign: %v\n%s", err, out)
	}
	t.Logf("cosigned [size old]: %v; checkpoint signed to cosignature kept: %v\n%s", last, cosignLatency(s), cp)
}

// splitViewEvents are the archive_witness_split_view audit events'
// errors in the server's log.
func splitViewEvents(s *Server) []string {
	var out []string
	for _, l := range strings.Split(s.Log(), "\n") {
		var e struct {
			Msg   string `json:"msg"`
			Error string `json:"error"`
		}
		if json.Unmarshal([]byte(l), &e) == nil && e.Msg == "archive_witness_split_view" {
			out = append(out, e.Error)
		}
	}
	return out
}

func waitSplitView(t *testing.T, s *Server) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if ev := splitViewEvents(s); len(ev) > 0 {
			return ev[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no archive_witness_split_view event after 30s:\n%s", s.Log())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestLiteWitnessSplitView: what the real litewitness says when history
// is rewritten. (1) journal.db restored from a backup (history rolled
// back): the witness has cosigned a larger tree than the journal now has.
// (2) A second journal signed with the same key and origin: the witness
// refuses the consistency proof from the tree it cosigned. Both raise the
// alarm (audit archive_witness_split_view, /healthz names the witness)
// and get no cosignature.
// journalBackup is a copy of a journal's files: journal.db and its record
// log.
type journalBackup struct {
	path  string
	files map[string][]byte // by path
}

func backupJournal(t *testing.T, path string) journalBackup {
	t.Helper()
	b := journalBackup{path: path, files: map[string][]byte{}}
	names, err := filepath.Glob(filepath.Join(sqlite.JournalRecordsDir(path), "*"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range append(names, path) {
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		b.files[name] = data
	}
	return b
}

// restore puts the journal back as it was copied.
func (b journalBackup) restore(t *testing.T) {
	t.Helper()
	if err := os.RemoveAll(sqlite.JournalRecordsDir(b.path)); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(sqlite.JournalRecordsDir(b.path), 0o700); err != nil {
		t.Fatal(err)
	}
	for name, data := range b.files {
		if err := os.WriteFile(name, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func TestLiteWitnessSplitView(t *testing.T) {
	lw := startLiteWitness(t, "witness.test/sv")
	witnessTOML := fmt.Sprintf("\n[[archive.witness]]\nurl = %q\nkey = %q\n", lw.URL(), lw.VKey)
	a := StartServerWith(t, "[archive]\ncheckpoint_interval = \"1s\"\n"+witnessTOML)
	a.AddUser(t, "alice@"+Domain, accounts["alice"])
	origin, _ := registerJournal(t, a, lw)

	alice := dialRaw(t, a, "alice", "alice", accounts["alice"], "w")
	alice.roundTrip("before the backup")
	waitCosigned(t, a, 1)
	a.Stop(t)
	ev := cosignedEvents(a)
	backupSize := ev[len(ev)-1][0]
	journal := filepath.Join(a.DataDir, "journal.db")
	backup := backupJournal(t, journal)
	if _, err := os.Stat(journal + "-wal"); err == nil {
		t.Fatalf("%s-wal left after a clean stop: the copy would miss it", journal)
	}
	a.restart(t)
	alice = dialRaw(t, a, "alice", "alice", accounts["alice"], "w2")
	for i := 0; i < 5; i++ {
		alice.roundTrip(fmt.Sprint("after the backup ", i))
	}
	waitCosigned(t, a, len(ev)+1)
	a.Stop(t)
	ev = cosignedEvents(a)
	larger := ev[len(ev)-1][0]
	if larger <= backupSize+1 {
		t.Fatalf("cosigned after the backup: %v", ev)
	}

	// Roll the journal back and let it grow by one record.
	backup.restore(t)
	a.restart(t)
	alice = dialRaw(t, a, "alice", "alice", accounts["alice"], "w3")
	alice.roundTrip("rewritten history")
	msg := waitSplitView(t, a)
	if !strings.Contains(msg, fmt.Sprintf("the witness has cosigned size %d, larger than this journal's tree (%d)", larger, backupSize+1)) {
		t.Fatalf("split-view event after the rollback: %q", msg)
	}
	if code, body := healthz(t, a); code != http.StatusServiceUnavailable || !strings.Contains(body, "archive-witness:witness.test/sv: split view") {
		t.Fatalf("/healthz after the split view: %d %s", code, body)
	}
	if got := lw.size(origin); got != larger {
		t.Fatalf("litewitness moved to %d", got)
	}
	a.Stop(t)

	// A second journal under the same key: more records than the witness
	// saw, none of them the same. Its one checkpoint is the one on
	// shutdown, so that it covers them all.
	b := StartServerWith(t, fmt.Sprintf("[archive]\ncheckpoint_interval = \"1h\"\nsigning_key_file = %q\n", filepath.Join(a.DataDir, "journal-signing.key"))+witnessTOML)
	b.AddUser(t, "bob@"+Domain, accounts["bob"])
	bob := dialRaw(t, b, "bob", "bob", accounts["bob"], "w")
	for i := int64(0); i <= larger; i++ {
		bob.roundTrip(fmt.Sprint("twin journal ", i))
	}
	b.Stop(t)
	// Its start-up checkpoint (the configuration record, size 1) already
	// met the witness's larger tree; the one on shutdown, larger than
	// the witness's, is refused as not its extension.
	waitSplitView(t, b)
	prefix := fmt.Sprintf("the witness's tree of size %d is not a prefix of this journal's tree", larger)
	if ev := splitViewEvents(b); !slices.ContainsFunc(ev, func(m string) bool { return strings.Contains(m, prefix) && strings.Contains(m, "422") }) {
		t.Fatalf("split-view events of the twin journal: %q", ev)
	}
	if n := len(cosignedEvents(b)); n != 0 {
		t.Fatalf("the twin journal got %d cosignatures", n)
	}
	if got := lw.size(origin); got != larger {
		t.Fatalf("litewitness moved to %d", got)
	}
}

// registerJournal adds the server's journal to the witness as its operator
// would: the origin and key come from `palisade archive pubkey`. It
// returns the origin and the journal's verifier key.
func registerJournal(t *testing.T, s *Server, lw *liteWitness) (origin, vkey string) {
	t.Helper()
	vkey, err := archiveCLI(t, s, "pubkey")
	if err != nil {
		t.Fatalf("archive pubkey: %v\n%s", err, vkey)
	}
	vkey = strings.TrimSpace(vkey)
	origin = strings.SplitN(vkey, "+", 2)[0]
	lw.ctl("add-log", "-origin", origin)
	lw.ctl("add-key", "-origin", origin, "-key", vkey)
	return origin, vkey
}
