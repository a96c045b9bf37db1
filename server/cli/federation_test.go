package cli

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/palisade-im/palisade/server/config"
	"github.com/palisade-im/palisade/server/module"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// fakeReloader records the [federation] sections it is given.
type fakeReloader struct {
	got []config.Federation
	err error
}

func (f *fakeReloader) ReloadFederation(_ context.Context, fed config.Federation) error {
	f.got = append(f.got, fed)
	return f.err
}

const partnerA = "[[federation.partner]]\nname = \"partner-a\"\ndomains = [\"partner-a.test\"]\n"

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// TestReloadConfig: SIGHUP's reload applies a valid file's [federation]
// and names the other sections that changed (not applied); a file with
// errors, or one ReloadFederation refuses, changes nothing; each outcome
// is one audit event.
func TestReloadConfig(t *testing.T) {
	dir := t.TempDir()
	path := writeConfig(t, dir, "")
	running, err := config.Load(path, module.ConfigRegistry{})
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.InfoLevel)
	log := zap.New(core)
	audits := func(msg string) []map[string]any {
		var out []map[string]any
		for _, e := range logs.FilterMessage(msg).FilterLoggerName("audit").All() {
			out = append(out, e.ContextMap())
		}
		return out
	}
	rewrite := func(extra string) []byte {
		t.Helper()
		writeConfig(t, dir, extra)
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}

	// Errors: logged one by one at their line, audited, nothing applied.
	rewrite("[limits]\nsend_queue = 0\n[[federation.partner]]\nname = \"partner-a\"\n")
	r := &fakeReloader{}
	if reloadConfig(context.Background(), running, r, log) || len(r.got) != 0 {
		t.Fatalf("a bad file was applied: %+v", r.got)
	}
	want := []string{
		path + ":10:1: limits.send_queue: must be at least 1, got 0",
		path + ":11:3: federation.partner[0].domains: must list at least one domain",
	}
	var logged []string
	for _, e := range logs.FilterMessage("configuration error").All() {
		logged = append(logged, e.ContextMap()["error"].(string))
	}
	if !slices.Equal(logged, want) {
		t.Errorf("logged errors %q, want %q", logged, want)
	}
	if f := audits("config_reload_failed"); len(f) != 1 || !reflect.DeepEqual(f[0]["errors"], []any{want[0], want[1]}) || f[0]["actor"] != "sighup" {
		t.Errorf("config_reload_failed events: %v", f)
	}

	// A valid file: [federation] applied, [limits] and [groups] named.
	doc := rewrite("[limits]\nsend_queue = 5\n[groups]\nsales = \"\"\n" + partnerA)
	logs.TakeAll()
	if !reloadConfig(context.Background(), running, r, log) {
		t.Fatal("not reloaded")
	}
	if len(r.got) != 1 || len(r.got[0].Partners) != 1 || r.got[0].Partners[0].Name != "partner-a" || r.got[0].Partners[0].Domains[0] != "partner-a.test" {
		t.Fatalf("ReloadFederation got %+v", r.got)
	}
	var warned []string
	for _, e := range logs.FilterLevelExact(zap.WarnLevel).All() {
		warned = append(warned, e.Message)
	}
	if want := []string{
		"SIGHUP: [limits] changed and needs a restart: only [federation] is reloaded",
		"SIGHUP: [groups] changed and needs a restart: only [federation] is reloaded",
	}; !slices.Equal(warned, want) {
		t.Errorf("warnings %q, want %q", warned, want)
	}
	ok := audits("config_reloaded")
	if len(ok) != 1 || ok[0]["sha256"] != sha256Hex(doc) || !reflect.DeepEqual(ok[0]["partners"], []any{"partner-a"}) ||
		!reflect.DeepEqual(ok[0]["restart_needed"], []any{"limits", "groups"}) || ok[0]["config"] != path {
		t.Errorf("config_reloaded events: %v", ok)
	}
	if running.Limits.SendQueue != config.Default().Limits.SendQueue || len(running.Federation.Partners) != 0 {
		t.Errorf("the running configuration was changed: %+v", running)
	}

	// Only [federation] changed: nothing needs a restart. ReloadFederation
	// refusing it is a failed reload.
	doc = rewrite(partnerA)
	logs.TakeAll()
	r.err = errors.New("partner list refused")
	if reloadConfig(context.Background(), running, r, log) {
		t.Fatal("reported reloaded")
	}
	if len(logs.FilterLevelExact(zap.WarnLevel).FilterMessageSnippet("needs a restart").All()) != 0 {
		t.Errorf("restart warnings for an unchanged file: %v", logs.All())
	}
	if f := audits("config_reload_failed"); len(f) != 1 || f[0]["sha256"] != sha256Hex(doc) || !reflect.DeepEqual(f[0]["errors"], []any{"partner list refused"}) {
		t.Errorf("config_reload_failed events: %v", f)
	}

	// The embedded default has no file to read again.
	logs.TakeAll()
	if reloadConfig(context.Background(), config.Default(), r, log) || len(audits("config_reload_failed")) != 1 {
		t.Errorf("reload of the embedded default: %v", logs.All())
	}
}

// serveChildEnv makes TestServeProcess run the server.
const serveChildEnv = "PALISADE_TEST_SERVE_CONFIG"

// TestServeProcess is the server process of TestSIGHUPReload: `palisade
// --config $PALISADE_TEST_SERVE_CONFIG serve`, logging to stderr.
func TestServeProcess(t *testing.T) {
	path := os.Getenv(serveChildEnv)
	if path == "" {
		t.Skip("the server process of TestSIGHUPReload")
	}
	if code := Main([]string{"--config", path, "serve"}, strings.NewReader(""), os.Stdout, os.Stderr); code != 0 {
		t.Fatalf("serve: exit %d", code)
	}
}

// freePort returns a loopback address that was free a moment ago.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestSIGHUPReload runs `palisade serve` as a process and sends it SIGHUP:
// with a broken file it logs each error at its line, audits
// config_reload_failed and keeps serving; with a valid file whose
// [limits] changed it warns that [limits] needs a restart and hands the
// new partner list to the server, whose answer is audited with the
// file's digest; SIGTERM still stops it cleanly.
func TestSIGHUPReload(t *testing.T) {
	dir := t.TempDir()
	c2s := freePort(t)
	base := "[server]\ndomains = [\"example.com\"]\ndata_dir = \"" + dir + "\"\n" +
		"[listen]\nc2s = \"" + c2s + "\"\nc2s_direct_tls = \"\"\nwebsocket = \"\"\nadmin = \"\"\ns2s = \"\"\n"
	path := filepath.Join(dir, "palisade.toml")
	write := func(extra string) []byte {
		t.Helper()
		doc := []byte(base + extra)
		// Written whole and renamed, so the server never reads half a file.
		if err := os.WriteFile(path+".new", doc, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(path+".new", path); err != nil {
			t.Fatal(err)
		}
		return doc
	}
	write("")

	cmd := exec.Command(os.Args[0], "-test.run=^TestServeProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), serveChildEnv+"="+path)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan map[string]any, 256)
	var raw strings.Builder
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		defer close(lines)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			raw.WriteString(sc.Text() + "\n")
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) == nil {
				lines <- m
			}
		}
	}()
	exited := false
	t.Cleanup(func() {
		if !exited {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	// await reads log lines until one has msg (and, when set, the
	// logger name), returning it.
	await := func(msg, logger string) map[string]any {
		t.Helper()
		deadline := time.After(30 * time.Second)
		for {
			select {
			case m, ok := <-lines:
				if !ok {
					<-readDone
					t.Fatalf("server process ended before %q:\n%s", msg, raw.String())
				}
				if m["msg"] == msg && (logger == "" || m["logger"] == logger) {
					return m
				}
			case <-deadline:
				t.Fatalf("no %q within 30s:\n%s", msg, raw.String())
			}
		}
	}
	serving := func(what string) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			c, err := net.DialTimeout("tcp", c2s, time.Second)
			if err == nil {
				_ = c.Close()
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: c2s %s does not accept: %v", what, c2s, err)
			}
		}
	}
	await("palisade starting", "") // the SIGHUP handler is in place before it
	serving("at start")

	// A broken file: errors logged, audited, nothing changes.
	write("[federation]\nqueue_stanzas = 0\n" + "[[federation.partner]]\nname = \"Partner A\"\ndomains = [\"partner-a.test\"]\n")
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	first := await("configuration error", "")
	second := await("configuration error", "")
	if first["error"] != path+":11:1: federation.queue_stanzas: must be between 1 and 100000, got 0" ||
		second["error"] != path+":13:1: federation.partner[0].name: \"Partner A\" may only hold a-z, 0-9, \".\", \"_\" and \"-\"" {
		t.Errorf("logged errors: %v, %v", first["error"], second["error"])
	}
	if f := await("config_reload_failed", "audit"); f["audit"] != true || len(f["errors"].([]any)) != 2 {
		t.Errorf("config_reload_failed = %v", f)
	}
	serving("after the failed reload")

	// A valid file: [limits] needs a restart, the partner list goes to
	// the server.
	doc := write("[limits]\nsend_queue = 10\n" + partnerA)
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if w := await("SIGHUP: [limits] changed and needs a restart: only [federation] is reloaded", ""); w["level"] != "warn" {
		t.Errorf("restart warning = %v", w)
	}
	// The server's answer, audited with the new file's digest.
	for {
		m, ok := <-lines
		if !ok {
			t.Fatalf("server process ended:\n%s", raw.String())
		}
		if m["logger"] != "audit" || (m["msg"] != "config_reloaded" && m["msg"] != "config_reload_failed") {
			continue
		}
		if m["sha256"] != sha256Hex(doc) {
			t.Errorf("%s with digest %v, want %s", m["msg"], m["sha256"], sha256Hex(doc))
		}
		if m["msg"] == "config_reloaded" {
			if !reflect.DeepEqual(m["partners"], []any{"partner-a"}) || !reflect.DeepEqual(m["restart_needed"], []any{"limits"}) {
				t.Errorf("config_reloaded = %v", m)
			}
		} else {
			// Only ReloadFederation itself may refuse a valid file.
			t.Logf("the server refused the partner list: %v", m["errors"])
		}
		break
	}
	serving("after the reload")

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for range lines {
	}
	err = cmd.Wait()
	exited = true
	if err != nil {
		t.Fatalf("server process: %v\n%s", err, raw.String())
	}
}
