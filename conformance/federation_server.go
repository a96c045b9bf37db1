package conformance

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/palisade-im/palisade/conformance/federation"
)

// FedPartner is one [[federation.partner]] table of a federation test's
// configuration.
type FedPartner struct {
	Name      string
	Domains   []string
	CAFile    string
	SPKIPins  []string
	Dialback  bool
	Endpoints []string
}

// FedConfig is the configuration of a Palisade that hosts
// federation.PalisadeDomain, with its s2s listener on
// federation.PalisadeAddr:5269 and a certificate from the test CA.
type FedConfig struct {
	Cert     *federation.Cert
	CAFile   string // the CA clients trust for its c2s certificate
	Partners []FedPartner
}

// fedToml renders the configuration of s.
func fedToml(s *Server, c FedConfig) string {
	var b strings.Builder
	fmt.Fprintf(&b, `[server]
domains = [%q]
data_dir = %q

[listen]
c2s = %q
c2s_direct_tls = %q
websocket = %q
admin = %q
s2s = %q

[tls]
cert_file = %q
key_file = %q

[limits]
max_stanza_bytes = %d

[log]
format = "json"
level = "debug"
`, federation.PalisadeDomain, s.DataDir, s.C2S, s.DirectTLS, s.WebSocket, s.Admin, federation.S2SAddr(federation.PalisadeDomain),
		c.Cert.CertFile, c.Cert.KeyFile, MaxStanzaBytes)
	for _, p := range c.Partners {
		fmt.Fprintf(&b, "\n[[federation.partner]]\nname = %q\ndomains = %s\n", p.Name, tomlList(p.Domains))
		if p.CAFile != "" {
			fmt.Fprintf(&b, "ca_file = %q\n", p.CAFile)
		}
		if len(p.SPKIPins) > 0 {
			fmt.Fprintf(&b, "spki_pins = %s\n", tomlList(p.SPKIPins))
		}
		if p.Dialback {
			b.WriteString("dialback = true\n")
		}
		if len(p.Endpoints) > 0 {
			fmt.Fprintf(&b, "endpoints = %s\n", tomlList(p.Endpoints))
		}
	}
	return b.String()
}

func tomlList(xs []string) string {
	q := make([]string, len(xs))
	for i, x := range xs {
		q[i] = fmt.Sprintf("%q", x)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// StartFederationServer starts palisade for domain palisade.test with the
// federation configuration c: c2s and admin on free ports of 127.0.0.1,
// s2s on 127.0.0.1:5269 (so federation tests cannot run in parallel). It
// waits until c2s, admin and s2s are up (logged), /healthz answers and
// the s2s port accepts; the server is stopped when the test ends and its
// log copied into the test log if the test failed. The caller holds the
// federation test lock (federation.NewPKI takes it).
func StartFederationServer(t *testing.T, c FedConfig) *Server {
	t.Helper()
	if binPath == "" {
		t.Fatal("palisade binary not built (TestMain)")
	}
	dir := t.TempDir()
	// Every listener on a free port (the defaults are fixed ports).
	ports := freePorts(t, 4)
	s := &Server{
		Dir:       dir,
		DataDir:   filepath.Join(dir, "data"),
		CAFile:    c.CAFile,
		C2S:       ports[0],
		DirectTLS: ports[1],
		WebSocket: ports[2],
		Admin:     ports[3],
		stderr:    &lockedBuffer{},
		done:      make(chan struct{}),
	}
	s.ConfigPath = filepath.Join(dir, "palisade.toml")
	if err := os.WriteFile(s.ConfigPath, []byte(fedToml(s, c)), 0o600); err != nil {
		t.Fatal(err)
	}
	s.cmd = exec.Command(binPath, "--config", s.ConfigPath, "serve")
	s.cmd.Dir = dir
	s.cmd.Stderr = s.stderr
	s.cmd.Stdout = s.stderr
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start palisade: %v", err)
	}
	go func() { s.cmd.Wait(); close(s.done) }()
	t.Cleanup(func() {
		s.Stop(t)
		if t.Failed() {
			t.Logf("palisade log (%s):\n%s", s.ConfigPath, s.Log())
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		select {
		case <-s.done:
			t.Fatalf("palisade exited during start-up: %v\n%s", s.cmd.ProcessState, s.Log())
		default:
		}
		log := s.Log()
		if strings.Contains(log, `"msg":"listening","listener":"c2s"`) && strings.Contains(log, `"msg":"listening","listener":"admin"`) &&
			strings.Contains(log, `"msg":"listening","listener":"s2s","addr":"`+federation.S2SAddr(federation.PalisadeDomain)+`"`) {
			resp, err := client.Get("http://" + s.Admin + "/healthz")
			if err == nil {
				ok := resp.StatusCode == http.StatusOK
				resp.Body.Close()
				if ok {
					conn, err := net.DialTimeout("tcp", federation.S2SAddr(federation.PalisadeDomain), time.Second)
					if err == nil {
						conn.Close()
						break
					}
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("palisade not ready after 20s (c2s, admin, /healthz, s2s on %s):\n%s", federation.S2SAddr(federation.PalisadeDomain), s.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return s
}

// Rewrite replaces the server's configuration file with c's and sends
// SIGHUP (the partner list is reloaded).
func (s *Server) Rewrite(t *testing.T, c FedConfig) {
	t.Helper()
	if err := os.WriteFile(s.ConfigPath, []byte(fedToml(s, c)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatalf("SIGHUP palisade: %v", err)
	}
}
