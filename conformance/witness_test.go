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
	"strconv"
	"strings"
	"testing"
	"time"
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
	vkey, err := archiveCLI(t, s, "pubkey")
	if err != nil {
		t.Fatalf("archive pubkey: %v\n%s", err, vkey)
	}
	vkey = strings.TrimSpace(vkey)
	origin := strings.SplitN(vkey, "+", 2)[0]
	lw.ctl("add-log", "-origin", origin)
	lw.ctl("add-key", "-origin", origin, "-key", vkey)

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
	alice.roundTrip("while the witness is down")
	s.WaitLog(t, `"msg":"archive witness failed".*"witness":"witness.test/lw"`, 30*time.Second)
	if code, body := healthz(t, s); code != http.StatusServiceUnavailable || !strings.Contains(body, "archive-witness:witness.test/lw") {
		t.Fatalf("/healthz with the witness down: %d %s", code, body)
	}
	lw.start()
	ev = waitCosigned(t, s, 3)
	if ev[2][1] != ev[1][0] {
		t.Fatalf("cosignature after the restart %v: want old %d", ev[2], ev[1][0])
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
	t.Logf("cosigned: %v\n%s", last, cp)
}
