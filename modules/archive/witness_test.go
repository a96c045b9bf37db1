package archive

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"database/sql"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"filippo.io/torchwood"
	"github.com/palisade-im/palisade/modules/archive/cosignature"
	"github.com/palisade-im/palisade/server/config"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// fakeWitness follows c2sp.org/tlog-witness add-checkpoint for one log,
// cosigning with torchwood's cosignature signer. The real litewitness is
// driven in conformance/witness_test.go.
type fakeWitness struct {
	t      *testing.T
	signer *torchwood.CosignatureSigner
	log    note.Verifier
	srv    *httptest.Server

	mu   sync.Mutex
	size int64
	hash tlog.Hash
	reqs []string // "old N proof K" of each request
	// answer, when set, replaces the protocol's answer.
	answer func(w http.ResponseWriter) bool
	// hold, when set, blocks each request until it is closed.
	hold chan struct{}
}

func newFakeWitness(t *testing.T, name string) *fakeWitness {
	t.Helper()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	s, err := torchwood.NewCosignatureSigner(name, priv)
	if err != nil {
		t.Fatal(err)
	}
	fw := &fakeWitness{t: t, signer: s}
	fw.srv = httptest.NewServer(http.HandlerFunc(fw.serve))
	t.Cleanup(fw.srv.Close)
	return fw
}

func (fw *fakeWitness) vkey() string { return fw.signer.Verifier().String() }

func (fw *fakeWitness) witness(required bool) Witness {
	v, err := cosignature.NewVerifier(fw.vkey())
	if err != nil {
		fw.t.Fatal(err)
	}
	return Witness{URL: fw.srv.URL + "/", Verifier: v, Required: required}
}

func (fw *fakeWitness) requests() []string {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	return append([]string(nil), fw.reqs...)
}

func (fw *fakeWitness) serve(w http.ResponseWriter, r *http.Request) {
	if fw.hold != nil {
		<-fw.hold
	}
	if r.Method != http.MethodPost || r.URL.Path != "/add-checkpoint" {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	body, _ := io.ReadAll(r.Body)
	head, msg, ok := bytes.Cut(body, []byte("\n\n"))
	lines := strings.Split(string(head), "\n")
	oldS, ok2 := strings.CutPrefix(lines[0], "old ")
	old, err := strconv.ParseInt(oldS, 10, 64)
	if !ok || !ok2 || err != nil {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	var proof tlog.TreeProof
	for _, l := range lines[1:] {
		h, err := tlog.ParseHash(l)
		if err != nil {
			http.Error(w, "bad proof line", http.StatusBadRequest)
			return
		}
		proof = append(proof, h)
	}
	fw.mu.Lock()
	defer fw.mu.Unlock()
	fw.reqs = append(fw.reqs, fmt.Sprintf("old %d proof %d", old, len(proof)))
	if fw.answer != nil && fw.answer(w) {
		return
	}
	head2, err := ParseCheckpoint(msg, fw.log)
	if err != nil {
		http.Error(w, err.Error(), http.StatusForbidden)
		return
	}
	if old != fw.size {
		w.Header().Set("Content-Type", "text/x.tlog.size")
		w.WriteHeader(http.StatusConflict)
		fmt.Fprintf(w, "%d\n", fw.size)
		return
	}
	if old > 0 {
		if err := tlog.CheckTree(proof, head2.Size, head2.Hash, old, fw.hash); err != nil {
			http.Error(w, "bad consistency proof", http.StatusUnprocessableEntity)
			return
		}
	}
	n, _ := note.Open(msg, note.VerifierList(fw.log))
	signed, err := note.Sign(&note.Note{Text: n.Text}, fw.signer)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	fw.size, fw.hash = head2.Size, head2.Hash
	_, sigs, _ := bytes.Cut(signed, []byte("\n\n"))
	w.Write(sigs)
}

// witnessFixture is a fixture whose module has the given witnesses and
// records audit events and health reports.
type witnessFixture struct {
	*fixture
	audit  *observer.ObservedLogs
	mu     sync.Mutex
	health map[string]string
}

func newWitnessFixture(t *testing.T, ws ...Witness) *witnessFixture {
	t.Helper()
	f := &witnessFixture{fixture: newFixture(t), health: map[string]string{}}
	core, logs := observer.New(zapcore.DebugLevel)
	f.audit = logs
	f.m.audit = zap.New(core)
	f.m.health = func(c, p string) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if p == "" {
			delete(f.health, c)
		} else {
			f.health[c] = p
		}
	}
	f.m.SetWitnesses(ws)
	return f
}

func (f *witnessFixture) healthOf(c string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.health[c]
}

// grow appends n messages and issues a checkpoint, then runs one witness
// round as the worker would.
func (f *witnessFixture) grow(t *testing.T, n int) {
	t.Helper()
	ctx := context.Background()
	for i := 0; i < n; i++ {
		if err := f.m.Append(ctx, msg(t, "alice@example.com/a", "bob@example.com", "chat", fmt.Sprint("m", i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.m.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	f.m.witnessRound(ctx)
}

func (f *witnessFixture) events(name string) []observer.LoggedEntry {
	return f.audit.FilterMessage(name).All()
}

// TestWitnessCosigns: the first checkpoint goes with old 0, the next with
// a proof from the first; both cosignatures are kept, the export's
// checkpoint carries them, verify-export checks the witness key, and
// Verify checks the stored ones.
func TestWitnessCosigns(t *testing.T) {
	fw := newFakeWitness(t, "w.example/one")
	wf := newWitnessFixture(t, fw.witness(true))
	fw.log = wf.verifier
	wf.grow(t, 3)
	wf.grow(t, 4)
	if got := fw.requests(); len(got) != 2 || got[0] != "old 0 proof 0" || !strings.HasPrefix(got[1], "old 3 proof ") || got[1] == "old 3 proof 0" {
		t.Fatalf("requests %q", got)
	}
	ctx := context.Background()
	cps, err := wf.j.Checkpoints(ctx)
	if err != nil || len(cps) != 2 {
		t.Fatalf("checkpoints %+v, %v", cps, err)
	}
	v := fw.witness(true).Verifier
	for _, c := range cps {
		if len(c.Cosignatures) != 1 || c.Cosignatures[0].Witness != "w.example/one" || c.Cosignatures[0].KeyHash != v.KeyHash() {
			t.Fatalf("checkpoint %d cosignatures %+v", c.Size, c.Cosignatures)
		}
		if _, _, err := cosignature.Open(append(bytes.Clone(c.Note), c.Cosignatures[0].Line...), v); err != nil {
			t.Fatalf("stored cosignature of %d: %v", c.Size, err)
		}
	}
	if n, _ := wf.j.CosignedSize(ctx, "w.example/one", v.KeyHash()); n != 7 {
		t.Fatalf("cosigned size %d", n)
	}
	if ev := wf.events("archive_witness_cosigned"); len(ev) != 2 || ev[1].ContextMap()["size"] != int64(7) || ev[1].ContextMap()["witness"] != "w.example/one" {
		t.Fatalf("audit %+v", ev)
	}
	// Nothing new: no request.
	wf.m.witnessRound(ctx)
	if len(fw.requests()) != 2 {
		t.Fatalf("a cosigned checkpoint was sent again: %q", fw.requests())
	}

	rep, err := VerifyWith(ctx, wf.j, wf.verifier, []*cosignature.Verifier{v})
	if err != nil || len(rep.Problems) != 0 || rep.Cosignatures != 2 {
		t.Fatalf("verify: %+v, %v", rep, err)
	}

	vkey, _ := ReadVerifierKey(wf.keyFile)
	pgp, err := LoadOrCreateOpenPGP(filepath.Join(t.TempDir(), "pgp.key"), "example.com/palisade-journal")
	if err != nil {
		t.Fatal(err)
	}
	bundle := filepath.Join(t.TempDir(), "bundle")
	if _, err := Export(ctx, wf.j, bundle, ExportOptions{}, vkey, pgp); err != nil {
		t.Fatal(err)
	}
	cpText, _ := os.ReadFile(filepath.Join(bundle, FileCheckpoint))
	if !strings.Contains(string(cpText), cps[1].Cosignatures[0].Line) {
		t.Fatalf("bundle checkpoint lacks the cosignature:\n%s", cpText)
	}
	report, err := VerifyExport(bundle, VerifyExportOptions{VerifierKey: vkey, WitnessKeys: []string{fw.vkey()}})
	if err != nil || !strings.Contains(report, "cosigned by witness w.example/one") {
		t.Fatalf("verify-export with the witness key: %v\n%s", err, report)
	}
	other := newFakeWitness(t, "w.example/two")
	if _, err := VerifyExport(bundle, VerifyExportOptions{VerifierKey: vkey, WitnessKeys: []string{other.vkey()}}); err == nil ||
		!strings.Contains(err.Error(), "w.example/two") {
		t.Fatalf("verify-export with another witness's key: %v", err)
	}
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	impostor, _ := torchwood.NewCosignatureSigner("w.example/one", priv)
	if _, err := VerifyExport(bundle, VerifyExportOptions{VerifierKey: vkey, WitnessKeys: []string{impostor.Verifier().String()}}); err == nil ||
		!strings.Contains(err.Error(), "no cosignature from witness w.example/one") {
		t.Fatalf("verify-export with the same name and another key: %v", err)
	}

	// A stored cosignature changed in the database.
	db := openRaw(t, wf.path)
	if _, err := db.Exec("UPDATE cosignatures SET line = replace(line, substr(line, -6, 3), 'AAA') WHERE size = 3"); err != nil {
		t.Fatal(err)
	}
	rep, err = VerifyWith(ctx, wf.j, wf.verifier, []*cosignature.Verifier{v})
	if err != nil || len(rep.Problems) != 1 || !strings.Contains(rep.Problems[0].Msg, "cosignature of witness w.example/one does not verify") {
		t.Fatalf("verify with a changed cosignature: %+v, %v", rep.Problems, err)
	}
}

// TestWitnessConflictRetry: the witness has cosigned size 3 but the
// journal lost that (or never saw the answer): 409 says 3, and the retry
// proves from 3.
func TestWitnessConflictRetry(t *testing.T) {
	fw := newFakeWitness(t, "w.example/one")
	wf := newWitnessFixture(t, fw.witness(true))
	fw.log = wf.verifier
	wf.grow(t, 3)
	// Forget the cosignature of 3.
	if _, err := openRaw(t, wf.path).Exec("DELETE FROM cosignatures"); err != nil {
		t.Fatal(err)
	}
	wf.m.SetWitnesses([]Witness{fw.witness(true)})
	wf.grow(t, 2)
	got := fw.requests()
	if len(got) != 3 || got[1] != "old 0 proof 0" || !strings.HasPrefix(got[2], "old 3 proof ") || got[2] == "old 3 proof 0" {
		t.Fatalf("requests %q", got)
	}
	if n, _ := wf.j.CosignedSize(context.Background(), "w.example/one", fw.witness(true).Verifier.KeyHash()); n != 5 {
		t.Fatalf("cosigned size after the retry: %d", n)
	}
	if wf.healthOf("archive-witness:w.example/one") != "" || len(wf.events("archive_witness_failed")) != 0 {
		t.Fatalf("the retry was reported as a failure: %v", wf.health)
	}
}

// TestWitnessSplitView: a witness that has cosigned a larger tree than
// the journal's (another journal signed with this key, or history rolled
// back) raises the alarm: no retry, an audit event, the health status
// marked even for a witness that is not required; likewise a witness
// holding another tree of the journal's own size.
func TestWitnessSplitView(t *testing.T) {
	fw := newFakeWitness(t, "w.example/one")
	wf := newWitnessFixture(t, fw.witness(false))
	fw.log = wf.verifier
	fw.size = 1000
	wf.grow(t, 3)
	if got := fw.requests(); len(got) != 1 {
		t.Fatalf("requests %q (a split view is not retried)", got)
	}
	ev := wf.events("archive_witness_split_view")
	if len(ev) != 1 || ev[0].ContextMap()["witness"] != "w.example/one" || ev[0].ContextMap()["size"] != int64(3) ||
		!strings.Contains(ev[0].ContextMap()["error"].(string), "size 1000, larger than this journal's tree (3)") {
		t.Fatalf("split-view audit %+v", ev)
	}
	if h := wf.healthOf("archive-witness:w.example/one"); !strings.Contains(h, "split view") {
		t.Fatalf("health %q", h)
	}
	cps, _ := wf.j.Checkpoints(context.Background())
	if len(cps[0].Cosignatures) != 0 {
		t.Fatal("a cosignature was kept")
	}

	// Same size, another root: the witness refuses the empty proof.
	fw2 := newFakeWitness(t, "w.example/two")
	wg := newWitnessFixture(t, fw2.witness(true))
	fw2.log = wg.verifier
	fw2.size, fw2.hash = 3, tlog.Hash{1}
	wg.grow(t, 3)
	if got := fw2.requests(); len(got) != 2 || got[1] != "old 3 proof 0" {
		t.Fatalf("requests %q", got)
	}
	if ev := wg.events("archive_witness_split_view"); len(ev) != 1 || !strings.Contains(ev[0].ContextMap()["error"].(string), "another tree of size 3") {
		t.Fatalf("split-view audit %+v", ev)
	}

	// A smaller tree that is not a prefix of the journal's: the proof
	// from it does not verify (422).
	fw3 := newFakeWitness(t, "w.example/three")
	w3 := newWitnessFixture(t, fw3.witness(true))
	fw3.log = w3.verifier
	fw3.size, fw3.hash = 2, tlog.Hash{2}
	w3.grow(t, 3)
	if got := fw3.requests(); len(got) != 2 || !strings.HasPrefix(got[1], "old 2 proof ") {
		t.Fatalf("requests %q", got)
	}
	if ev := w3.events("archive_witness_split_view"); len(ev) != 1 || !strings.Contains(ev[0].ContextMap()["error"].(string), "tree of size 2 is not a prefix of this journal's tree of size 3") {
		t.Fatalf("split-view audit %+v", ev)
	}
	// The alarm stays: a later success does not clear it.
	fw3.size, fw3.hash = 0, tlog.Hash{}
	w3.grow(t, 1)
	if h := w3.healthOf("archive-witness:w.example/three"); !strings.Contains(h, "split view") {
		t.Fatalf("health after a later cosignature %q", h)
	}
}

// TestWitnessFailures: refusals, a forged or foreign cosignature and an
// unreachable witness are failures: logged, audited, the health status
// marked for a required witness only and cleared by the next success.
func TestWitnessFailures(t *testing.T) {
	req := newFakeWitness(t, "w.example/req")
	opt := newFakeWitness(t, "w.example/opt")
	wf := newWitnessFixture(t, req.witness(true), opt.witness(false))
	req.log, opt.log = wf.verifier, wf.verifier
	refuse := func(w http.ResponseWriter) bool { http.Error(w, "unknown log", http.StatusForbidden); return true }
	req.answer, opt.answer = refuse, refuse
	wf.grow(t, 2)
	if h := wf.healthOf("archive-witness:w.example/req"); !strings.Contains(h, "403 Forbidden") {
		t.Fatalf("required witness health %q", h)
	}
	if h := wf.healthOf("archive-witness:w.example/opt"); h != "" {
		t.Fatalf("optional witness marked the health status: %q", h)
	}
	if ev := wf.events("archive_witness_failed"); len(ev) != 2 {
		t.Fatalf("failed audit events %+v", ev)
	}

	// A cosignature by another key under the witness's name.
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	impostor, _ := torchwood.NewCosignatureSigner("w.example/req", priv)
	req.answer = func(w http.ResponseWriter) bool {
		cps, _ := wf.j.Checkpoints(context.Background())
		n, _ := note.Open(cps[len(cps)-1].Note, note.VerifierList(wf.verifier))
		signed, _ := note.Sign(&note.Note{Text: n.Text}, impostor)
		_, sigs, _ := bytes.Cut(signed, []byte("\n\n"))
		w.Write(sigs)
		return true
	}
	wf.m.witnessRound(context.Background())
	if h := wf.healthOf("archive-witness:w.example/req"); !strings.Contains(h, "no cosignature from witness w.example/req") {
		t.Fatalf("foreign cosignature: health %q", h)
	}
	// A forged line of the right key hash.
	req.answer = func(w http.ResponseWriter) bool {
		cps, _ := wf.j.Checkpoints(context.Background())
		n, _ := note.Open(cps[len(cps)-1].Note, note.VerifierList(wf.verifier))
		signed, _ := note.Sign(&note.Note{Text: n.Text + "x\n"}, req.signer)
		_, sigs, _ := bytes.Cut(signed, []byte("\n\n"))
		w.Write(sigs)
		return true
	}
	wf.m.witnessRound(context.Background())
	if h := wf.healthOf("archive-witness:w.example/req"); !strings.Contains(h, "invalid signature") {
		t.Fatalf("forged cosignature: health %q", h)
	}
	// The witness answers properly again: health clears at once (the
	// retry needs no new checkpoint).
	req.answer = nil
	wf.m.witnessRound(context.Background())
	if h := wf.healthOf("archive-witness:w.example/req"); h != "" {
		t.Fatalf("health after success %q", h)
	}
	// A redirect is not followed.
	moved := newFakeWitness(t, "w.example/moved")
	req.answer = func(w http.ResponseWriter) bool {
		w.Header().Set("Location", moved.srv.URL+"/add-checkpoint")
		w.WriteHeader(http.StatusTemporaryRedirect)
		return true
	}
	wf.grow(t, 1)
	if h := wf.healthOf("archive-witness:w.example/req"); !strings.Contains(h, "307") || len(moved.requests()) != 0 {
		t.Fatalf("redirect: health %q, redirect target got %q", h, moved.requests())
	}
	req.answer = nil
	// Unreachable.
	req.srv.Close()
	wf.grow(t, 1)
	if h := wf.healthOf("archive-witness:w.example/req"); !strings.Contains(h, "connect") {
		t.Fatalf("unreachable witness: health %q", h)
	}
}

// TestWitnessDoesNotBlock: with the worker running, a witness that does
// not answer holds up neither appends nor checkpoints; Stop gives up on it
// when its context ends.
func TestWitnessDoesNotBlock(t *testing.T) {
	fw := newFakeWitness(t, "w.example/slow")
	fw.hold = make(chan struct{})
	wf := newWitnessFixture(t, fw.witness(true))
	fw.log = wf.verifier
	ctx := context.Background()
	if err := wf.m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if err := wf.m.Append(ctx, msg(t, "alice@example.com/a", "bob@example.com", "chat", fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
		if err := wf.m.Checkpoint(ctx); err != nil {
			t.Fatal(err)
		}
	}
	stopCtx, cancel := context.WithCancel(ctx)
	cancel()
	if err := wf.m.Stop(stopCtx); err != nil {
		t.Fatal(err)
	}
	close(fw.hold)
	cps, _ := wf.j.Checkpoints(ctx)
	if len(cps) != 3 {
		t.Fatalf("%d checkpoints, want 3", len(cps))
	}
}

// TestWitnessesFromConfig: the module reads [[archive.witness]], required
// by default.
func TestWitnessesFromConfig(t *testing.T) {
	fw := newFakeWitness(t, "w.example/one")
	fw2 := newFakeWitness(t, "w.example/two")
	off := false
	cfg := config.Default()
	cfg.Archive.Witnesses = []config.Witness{{URL: fw.srv.URL, Key: fw.vkey(), Required: &off}, {URL: fw2.srv.URL, Key: fw2.vkey()}}
	ws, err := Witnesses(cfg)
	if err != nil || len(ws) != 2 || ws[0].Required || !ws[1].Required || ws[0].Verifier.Name() != "w.example/one" || ws[1].URL != fw2.srv.URL {
		t.Fatalf("witnesses %+v, %v", ws, err)
	}
}

func openRaw(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}
