package cli

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
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
		if m["msg"] != "config_reloaded" {
			t.Fatalf("a valid file was refused: %v", m)
		}
		if !reflect.DeepEqual(m["partners"], []any{"partner-a"}) || !reflect.DeepEqual(m["restart_needed"], []any{"limits"}) {
			t.Errorf("config_reloaded = %v", m)
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

// writeTestCA writes a PEM file with one self-signed CA certificate.
func writeTestCA(t *testing.T, path string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Partner CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestCheckConfigFederation: check-config prints the federation block:
// the s2s listeners, then each partner with its domains, authentication,
// endpoints, kinds and sharing, and rate; "off (no partner)" without one.
func TestCheckConfigFederation(t *testing.T) {
	dir := t.TempDir()
	ca := filepath.Join(dir, "partner-ca.pem")
	writeTestCA(t, ca)
	path := writeConfig(t, dir, "[listen]\n")
	// writeConfig's [listen] is complete; add the s2s keys to it.
	doc, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Replace(string(doc), "admin = \"\"\n[listen]\n", "admin = \"\"\ns2s = \"0.0.0.0:5269\"\ns2s_direct_tls = \"0.0.0.0:5270\"\n", 1) +
		"[federation]\nrate = 20.0\nburst = 40\n" +
		"[[federation.partner]]\nname = \"partner-a\"\ndomains = [\"partner-a.test\", \"muc.partner-a.test\"]\nca_file = \"" + ca + "\"\n" +
		"spki_pins = [\"sha256/47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\", \"sha256/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\"]\n" +
		"endpoints = [\"xmpp.partner-a.test:5270\"]\ndirect_tls = true\nkinds = [\"message\"]\nfiles = true\nencryption_required = true\n" +
		"[[federation.partner]]\nname = \"partner-b\"\ndomains = [\"partner-b.test\"]\ndialback = true\nrooms = true\nrate = 0.5\nburst = 2\n"
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := run("check-config", path)
	if code != 0 {
		t.Fatalf("check-config: exit %d\n%s%s", code, out, errOut)
	}
	want := "s2s (STARTTLS):   0.0.0.0:5269\n" +
		"s2s (direct TLS): 0.0.0.0:5270\n" +
		"partner:          partner-a: partner-a.test, muc.partner-a.test\n" +
		"                  auth: PKIX with ca_file " + ca + ", 2 SPKI pins, no dialback\n" +
		"                  endpoints: xmpp.partner-a.test:5270 (direct TLS)\n" +
		"                  kinds: message; files yes, rooms no, encryption_required yes\n" +
		"                  rate: 20 stanzas/s, burst 40 (federation.rate)\n" +
		"partner:          partner-b: partner-b.test\n" +
		"                  auth: PKIX with the system roots, dialback allowed\n" +
		"                  endpoints: DNS SRV\n" +
		"                  kinds: message, presence, iq; files no, rooms yes, encryption_required no\n" +
		"                  rate: 0.5 stanzas/s, burst 2\n"
	if !strings.Contains(out, want) {
		t.Errorf("check-config output lacks the federation block:\n%s\nwant:\n%s", out, want)
	}

	code, out, _ = run("check-config", writeConfig(t, t.TempDir(), ""))
	if code != 0 || !strings.Contains(out, "federation:       off (no partner)\n") || strings.Contains(out, "s2s (") {
		t.Errorf("without partners: exit %d\n%s", code, out)
	}
}

// adminStub serves GET /admin/federation with body for the token "tok",
// and writes a configuration whose admin listener is it.
func adminStub(t *testing.T, status int, body string) (path string, requests *[]string) {
	t.Helper()
	var seen []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = append(seen, r.Method+" "+r.URL.Path+" "+r.Header.Get("Authorization"))
		if r.Header.Get("Authorization") != "Bearer tok" {
			http.Error(w, "forbidden", http.StatusForbidden)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "admin.token"), []byte("tok\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	path = writeConfig(t, dir, "")
	doc, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	doc = []byte(strings.Replace(string(doc), "admin = \"\"", "admin = \""+strings.TrimPrefix(srv.URL, "http://")+"\"", 1))
	if err := os.WriteFile(path, doc, 0o600); err != nil {
		t.Fatal(err)
	}
	return path, &seen
}

// TestFederationStatus: `palisade federation status` reads GET
// /admin/federation with the admin token and prints one row per stream
// (peer, partner, direction, auth, remote address, TLS, established,
// certificate expiry with the days left, stanza counts), "no federation
// streams" when there are none, the JSON as is with --json, and a clear
// error when the server or its admin listener is not there.
func TestFederationStatus(t *testing.T) {
	now := time.Now().UTC()
	in100 := now.Add(100*24*time.Hour + time.Hour).Format(time.RFC3339)
	ago3 := now.Add(-3*24*time.Hour - time.Hour).Format(time.RFC3339)
	body := `{"streams":[` +
		`{"peer":"partner.test","partner":"partner-a","direction":"out","auth":"sasl-external","local":"palisade.test","remote_addr":"127.0.0.2:5269","tls":"TLS 1.3","cert_not_after":"` + in100 + `","established":"2026-12-07T10:00:00Z","stanzas_in":3,"stanzas_out":4},` +
		`{"peer":"ejpartner.test","partner":"partner-b","direction":"in","auth":"dialback","local":"palisade.test","remote_addr":"127.0.0.3:40000","tls":"TLS 1.2","cert_not_after":"` + ago3 + `","established":"2026-12-07T11:00:00Z","stanzas_in":12,"stanzas_out":0},` +
		`{"peer":"partner.test","partner":"partner-a","direction":"in","auth":"sasl-external","local":"palisade.test","remote_addr":"127.0.0.2:41000","tls":"TLS 1.3","cert_not_after":"0001-01-01T00:00:00Z","established":"2026-12-07T11:00:01.123456789+01:00","stanzas_in":0,"stanzas_out":0}]}`
	path, seen := adminStub(t, http.StatusOK, body)
	code, out, errOut := run("--config", path, "federation", "status")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if len(*seen) != 1 || (*seen)[0] != "GET /admin/federation Bearer tok" {
		t.Errorf("requests: %q", *seen)
	}
	rows := strings.Split(strings.TrimRight(out, "\n"), "\n")
	fields := make([][]string, len(rows))
	for i, r := range rows {
		fields[i] = strings.Fields(r)
	}
	day := func(ts string) string { return ts[:10] }
	want := [][]string{
		{"PEER", "PARTNER", "DIR", "AUTH", "REMOTE", "TLS", "ESTABLISHED", "CERTIFICATE", "EXPIRES", "IN", "OUT"},
		{"ejpartner.test", "partner-b", "in", "dialback", "127.0.0.3:40000", "TLS", "1.2", "2026-12-07T11:00:00Z", day(ago3), "(expired", "3", "days", "ago)", "12", "0"},
		{"partner.test", "partner-a", "in", "sasl-external", "127.0.0.2:41000", "TLS", "1.3", "2026-12-07T10:00:01Z", "-", "0", "0"},
		{"partner.test", "partner-a", "out", "sasl-external", "127.0.0.2:5269", "TLS", "1.3", "2026-12-07T10:00:00Z", day(in100), "(100", "days", "left)", "3", "4"},
	}
	if !reflect.DeepEqual(fields, want) {
		t.Errorf("table:\n%s\nwant rows %q", out, want)
	}
	// The columns line up.
	if i := strings.Index(rows[0], "AUTH"); rows[1][i:i+8] != "dialback" || rows[3][i:i+13] != "sasl-external" {
		t.Errorf("columns do not line up:\n%s", out)
	}

	code, out, _ = run("--config", path, "federation", "status", "--json")
	if code != 0 || out != body+"\n" {
		t.Errorf("--json: exit %d, %q", code, out)
	}

	empty, _ := adminStub(t, http.StatusOK, `{"streams":[]}`)
	if code, out, _ := run("--config", empty, "federation", "status"); code != 0 || out != "no federation streams\n" {
		t.Errorf("no streams: exit %d, %q", code, out)
	}

	for _, c := range []struct {
		name, path, err string
		code            int
	}{
		{"no endpoint", func() string { p, _ := adminStub(t, http.StatusNotFound, "404 page not found\n"); return p }(),
			"the running server has no /admin/federation", 1},
		{"refused", func() string { p, _ := adminStub(t, http.StatusInternalServerError, "boom\n"); return p }(), ": 500: boom", 1},
		{"not JSON", func() string { p, _ := adminStub(t, http.StatusOK, "<html>"); return p }(), "is not its JSON", 1},
		{"admin listener off", writeConfig(t, t.TempDir(), ""), "listen.admin is off: this command needs the running server's admin listener", 2},
		{"server not running", func() string {
			p, _ := adminStub(t, http.StatusOK, body)
			doc, _ := os.ReadFile(p)
			dead := freePort(t)
			i := strings.Index(string(doc), "admin = \"")
			j := strings.Index(string(doc)[i+9:], "\"")
			_ = os.WriteFile(p, []byte(string(doc)[:i]+"admin = \""+dead+string(doc)[i+9+j:]), 0o600)
			return p
		}(), "is the server running? admin listener", 1},
	} {
		code, out, errOut := run("--config", c.path, "federation", "status")
		if code != c.code || out != "" || !strings.Contains(errOut, c.err) {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want exit %d and %q", c.name, code, out, errOut, c.code, c.err)
		}
	}
	for _, args := range [][]string{{"federation"}, {"federation", "list"}, {"federation", "status", "--yaml"}} {
		if code, _, errOut := run(args...); code != 2 || !strings.Contains(errOut, "usage: palisade federation status [--json]") {
			t.Errorf("%q: exit %d, %q", args, code, errOut)
		}
	}
}
