package e2e

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/palisade-im/palisade/server"
	"github.com/palisade-im/palisade/server/cli"
	"github.com/palisade-im/palisade/server/config"
	"go.uber.org/zap/zaptest/observer"
	"golang.org/x/net/http2"
)

// adminEnv starts a server with its admin listener and waits for it.
func adminEnv(t *testing.T) (*env, *observer.ObservedLogs) {
	t.Helper()
	e, logs := newEnvObserved(t, func(c *config.Config) { c.Listen.Admin = freeAddr(t) })
	deadline := time.Now().Add(short)
	for {
		resp, err := http.Get("http://" + e.cfg.Listen.Admin + "/healthz")
		if err == nil {
			resp.Body.Close()
			return e, logs
		}
		if time.Now().After(deadline) {
			t.Fatalf("admin listener not up: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// adminRequest sends a request to the admin listener with the given
// header lines and returns the status and body.
func adminRequest(t *testing.T, e *env, method, path string, header map[string]string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+e.cfg.Listen.Admin+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// TestAdminToken: the admin listener takes administrative requests only
// with the token the server wrote to data_dir/admin.token (mode 0600, never
// logged); without it, with a wrong one or with the old constant header,
// 401 and an admin_refused audit event; with it, kick and unlock work, and
// so does `palisade user kick` reading the file. /healthz needs none.
func TestAdminToken(t *testing.T) {
	e, logs := adminEnv(t)
	path := filepath.Join(e.cfg.Server.DataDir, server.AdminTokenFile)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("%s has mode %v, want 0600", path, fi.Mode().Perm())
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	token := strings.TrimSpace(string(raw))
	if len(token) < 32 {
		t.Fatalf("admin token %q too short", token)
	}

	if code, body := adminRequest(t, e, "GET", "/healthz", nil); code != http.StatusOK {
		t.Errorf("healthz without a token: %d %s", code, body)
	}
	alice := login(t, e, modeStartTLS, "alice", "a")
	kick := "/admin/kick?jid=alice@localhost"
	for _, tc := range []struct {
		name   string
		header map[string]string
		reason string
	}{
		{"no token", nil, "no token"},
		{"the old header", map[string]string{"X-Palisade-Admin": "1"}, "no token"},
		{"a wrong token", map[string]string{"Authorization": "Bearer " + strings.Repeat("0", len(token))}, "wrong token"},
		{"a prefix of the token", map[string]string{"Authorization": "Bearer " + token[:len(token)-1]}, "wrong token"},
		{"the token without Bearer", map[string]string{"Authorization": token}, "no token"},
	} {
		before := logs.FilterMessage("admin_refused").Len()
		code, body := adminRequest(t, e, "POST", kick, tc.header)
		if code != http.StatusUnauthorized || len(body) > 200 {
			t.Errorf("%s: %d %q, want 401 with a short text", tc.name, code, body)
		}
		evs := logs.FilterMessage("admin_refused").All()
		if len(evs) != before+1 {
			t.Errorf("%s: %d admin_refused events, want 1", tc.name, len(evs)-before)
			continue
		}
		if m := evs[len(evs)-1].ContextMap(); m["reason"] != tc.reason || m["path"] != "/admin/kick" || m["audit"] != true {
			t.Errorf("%s: admin_refused event %v", tc.name, m)
		}
	}
	if code, _ := adminRequest(t, e, "POST", "/admin/unlock?jid=alice@localhost", nil); code != http.StatusUnauthorized {
		t.Errorf("unlock without a token: %d", code)
	}
	alice.nothing(100 * time.Millisecond) // the refused requests did not end the session

	bearer := map[string]string{"Authorization": "Bearer " + token}
	if code, _ := adminRequest(t, e, "GET", kick, bearer); code != http.StatusMethodNotAllowed {
		t.Errorf("GET with the token: %d, want 405", code)
	}
	code, body := adminRequest(t, e, "POST", kick, bearer)
	var res server.KickResult
	if code != http.StatusOK || json.Unmarshal([]byte(body), &res) != nil || res.Closed != 1 {
		t.Fatalf("kick with the token: %d %s", code, body)
	}
	alice.expectStreamError("policy-violation")
	if code, body := adminRequest(t, e, "POST", "/admin/unlock?jid=alice@localhost", bearer); code != http.StatusOK {
		t.Errorf("unlock with the token: %d %s", code, body)
	}

	// The CLI reads the token from data_dir.
	bob := login(t, e, modeStartTLS, "bob", "b")
	conf := filepath.Join(t.TempDir(), "palisade.toml")
	doc := "[server]\ndomains = [\"" + domain + "\"]\ndata_dir = \"" + e.cfg.Server.DataDir + "\"\n" +
		"[listen]\nc2s = \"\"\nc2s_direct_tls = \"\"\nwebsocket = \"\"\nadmin = \"" + e.cfg.Listen.Admin + "\"\n"
	if err := os.WriteFile(conf, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if code := cli.Main([]string{"--config", conf, "user", "kick", "bob@" + domain}, strings.NewReader(""), &out, &errOut); code != 0 ||
		!strings.Contains(out.String(), "bob@localhost: 1 session(s) closed") {
		t.Fatalf("palisade user kick: exit %d: %s%s", code, out.String(), errOut.String())
	}
	bob.expectStreamError("policy-violation")
	// Without the file (another user's data_dir), the CLI says why.
	other := filepath.Join(t.TempDir(), "palisade.toml")
	if err := os.WriteFile(other, []byte(strings.Replace(doc, e.cfg.Server.DataDir, t.TempDir(), 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	errOut.Reset()
	if code := cli.Main([]string{"--config", other, "user", "unlock", "bob@" + domain}, strings.NewReader(""), &out, &errOut); code == 0 ||
		!strings.Contains(errOut.String(), "admin token") {
		t.Fatalf("palisade user unlock without the token file: exit %d: %s%s", code, out.String(), errOut.String())
	}

	for _, ev := range logs.All() {
		if strings.Contains(fmt.Sprint(ev.Message, ev.ContextMap()), token) {
			t.Fatalf("the admin token is in the log: %s %v", ev.Message, ev.ContextMap())
		}
	}
}

// TestWebSocketNoHTTP2: the WebSocket listener offers only http/1.1 in
// ALPN; an HTTP/2 client is refused cleanly, and neither that nor a
// client sending the HTTP/2 preface anyway makes a handler panic or puts
// a stack trace in the log. WebSocket over HTTP/1.1 still works.
func TestWebSocketNoHTTP2(t *testing.T) {
	e, logs := newEnvObserved(t, nil)
	addr := e.cfg.Listen.WebSocket
	cfg := e.tlsConfig()
	cfg.NextProtos = []string{"h2", "http/1.1"}
	c, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if p := c.ConnectionState().NegotiatedProtocol; p != "http/1.1" {
		t.Errorf("ALPN offering h2 and http/1.1: negotiated %q, want http/1.1", p)
	}
	c.Close()

	// golang.org/x/net/http2's Transport insists on h2: it must fail
	// without reaching a handler.
	tr := &http2.Transport{TLSClientConfig: e.tlsConfig()}
	for i := 0; i < 20; i++ {
		req, _ := http.NewRequest("GET", "https://"+addr+"/xmpp-websocket", nil)
		resp, err := tr.RoundTrip(req)
		if err == nil {
			resp.Body.Close()
			t.Fatalf("HTTP/2 request answered %s", resp.Status)
		}
	}
	// The HTTP/2 preface sent over a TLS connection without h2.
	for i := 0; i < 20; i++ {
		c, err := tls.Dial("tcp", addr, e.tlsConfig())
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(short))
		_, _ = io.WriteString(c, http2.ClientPreface)
		_, _ = io.Copy(io.Discard, c)
		c.Close()
	}
	ws := dial(t, e, modeWS)
	ws.open("localhost")
	ws.close()

	for _, ev := range logs.All() {
		s := fmt.Sprint(ev.Message, ev.ContextMap())
		if strings.Contains(s, "panic") || strings.Contains(s, "goroutine ") || len(s) > 2000 {
			t.Errorf("log line after HTTP/2 attempts: %.300s", s)
		}
	}
}
