// Package conformance drives Palisade with real third-party XMPP clients
// (slixmpp, go-sendxmpp, xmpp.js) and with raw byte streams.
//
// The tests build the palisade binary once, start one server per test on
// free loopback ports with its own data directory, create accounts through
// the CLI and run the client scripts in testdata/. Every client script prints
// machine-checkable lines (LOGIN OK ..., RECEIVED ..., AUTH FAILED ...) and
// exits non-zero on failure. Install the peers with conformance/install-peers.sh.
package conformance

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Domain is the XMPP domain every test server hosts.
const Domain = "localhost"

// MaxStanzaBytes is limits.max_stanza_bytes in the test configuration.
const MaxStanzaBytes = 10000

// Peer programs. Python must be Debian's interpreter: slixmpp is installed
// for it only.
const (
	PythonBin     = "/usr/bin/python3"
	GoSendxmppBin = "go-sendxmpp"
	NodeBin       = "node"
)

// binPath is the palisade binary built by TestMain.
var binPath string

// BuildPalisade builds the server from the repository root into dir and
// remembers the path for StartServer.
func BuildPalisade(dir string) error {
	root, err := filepath.Abs("..")
	if err != nil {
		return err
	}
	out := filepath.Join(dir, "palisade")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, ".")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %v\n%s", err, b)
	}
	binPath = out
	return nil
}

// lockedBuffer collects the server's stderr.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Server is one running palisade process.
type Server struct {
	Dir        string // scratch directory (config, HOME for peers)
	DataDir    string
	ConfigPath string
	CAFile     string // the self-signed server certificate, trusted as CA
	C2S        string // host:port, STARTTLS
	DirectTLS  string // host:port, direct TLS
	WebSocket  string // host:port, wss
	Admin      string // host:port, HTTP

	cmd    *exec.Cmd
	stderr *lockedBuffer
	done   chan struct{}
}

// WebSocketURL is the RFC 7395 endpoint.
func (s *Server) WebSocketURL() string {
	return "wss://" + s.WebSocket + "/xmpp-websocket"
}

// Log returns what the server has written to stderr so far.
func (s *Server) Log() string { return s.stderr.String() }

// freePorts returns n distinct free loopback ports, found by listening on
// :0 and closing.
func freePorts(t testing.TB, n int) []string {
	t.Helper()
	var ls []net.Listener
	var addrs []string
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("free port: %v", err)
		}
		ls = append(ls, l)
		addrs = append(addrs, l.Addr().String())
	}
	for _, l := range ls {
		l.Close()
	}
	return addrs
}

// StartServer starts palisade with a fresh data directory and waits until
// every listener is up and /healthz answers. The server is stopped (SIGTERM,
// then SIGKILL) when the test ends, and its log is copied into the test log
// if the test failed.
func StartServer(t *testing.T) *Server {
	t.Helper()
	return StartServerWith(t, "")
}

// StartServerWith is StartServer with extra TOML appended to the test
// configuration (sections the base configuration does not have).
func StartServerWith(t *testing.T, extra string) *Server {
	t.Helper()
	return startServerAttempt(t, "", extra, 1)
}

// StartServerWithKeys is StartServerWith with serverKeys (TOML lines, e.g.
// `admins = ["alice@localhost"]`) added to the [server] section.
func StartServerWithKeys(t *testing.T, serverKeys, extra string) *Server {
	t.Helper()
	return startServerAttempt(t, serverKeys, extra, 1)
}

func startServerAttempt(t *testing.T, serverKeys, extra string, attempt int) *Server {
	t.Helper()
	if binPath == "" {
		t.Fatal("palisade binary not built (TestMain)")
	}
	dir := t.TempDir()
	ports := freePorts(t, 4)
	s := &Server{
		Dir:       dir,
		DataDir:   filepath.Join(dir, "data"),
		C2S:       ports[0],
		DirectTLS: ports[1],
		WebSocket: ports[2],
		Admin:     ports[3],
		stderr:    &lockedBuffer{},
		done:      make(chan struct{}),
	}
	s.ConfigPath = filepath.Join(dir, "palisade.toml")
	s.CAFile = filepath.Join(s.DataDir, "certs", "server.pem")
	cfg := fmt.Sprintf(`[server]
domains = [%q]
data_dir = %q
%s
[listen]
c2s = %q
c2s_direct_tls = %q
websocket = %q
admin = %q

[limits]
max_stanza_bytes = %d

[log]
format = "json"
level = "debug"
`, Domain, s.DataDir, serverKeys, s.C2S, s.DirectTLS, s.WebSocket, s.Admin, MaxStanzaBytes) + extra
	if err := os.WriteFile(s.ConfigPath, []byte(cfg), 0o600); err != nil {
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

	want := map[string]bool{"c2s": true, "c2s_direct_tls": true, "websocket": true, "admin": true}
	deadline := time.Now().Add(20 * time.Second)
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		select {
		case <-s.done:
			// A port picked free can be taken by another process before
			// palisade binds it: then start again on new ports.
			if strings.Contains(s.Log(), "address already in use") && attempt < 3 {
				return startServerAttempt(t, serverKeys, extra, attempt+1)
			}
			t.Fatalf("palisade exited during start-up: %v\n%s", s.cmd.ProcessState, s.Log())
		default:
		}
		log := s.Log()
		up := 0
		for name := range want {
			if strings.Contains(log, `"msg":"listening","listener":"`+name+`"`) {
				up++
			}
		}
		if up == len(want) {
			resp, err := client.Get("http://" + s.Admin + "/healthz")
			if err == nil {
				ready := healthyButWitnesses(resp)
				resp.Body.Close()
				if ready {
					break
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("palisade not ready after 20s:\n%s", s.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := os.Stat(s.CAFile); err != nil {
		t.Fatalf("server certificate: %v", err)
	}
	return s
}

// Stop ends the server: SIGTERM, then SIGKILL after 10 seconds.
func (s *Server) Stop(t testing.TB) {
	select {
	case <-s.done:
		return
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		t.Errorf("palisade did not stop within 10s of SIGTERM; killing pid %d", s.cmd.Process.Pid)
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

// AddUser creates an account through the CLI.
func (s *Server) AddUser(t testing.TB, jid, password string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binPath, "--config", s.ConfigPath, "user", "add", jid)
	cmd.Stdin = strings.NewReader(password + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("palisade user add %s: %v\n%s", jid, err, out)
	}
}

// RequirePeer fails the test when a peer program is not installed.
func RequirePeer(t testing.TB, bin string) {
	t.Helper()
	if _, err := exec.LookPath(bin); err != nil {
		t.Fatalf("peer %s not found (%v): run conformance/install-peers.sh", bin, err)
	}
}

// RequireSlixmpp fails the test when slixmpp is not importable.
func RequireSlixmpp(t testing.TB) {
	t.Helper()
	RequirePeer(t, PythonBin)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, PythonBin, "-c", "import slixmpp").CombinedOutput(); err != nil {
		t.Fatalf("slixmpp not importable from %s: %v\n%s\nrun conformance/install-peers.sh", PythonBin, err, out)
	}
}

// RequireXMPPJS fails the test when xmpp.js is not installed.
func RequireXMPPJS(t testing.TB) {
	t.Helper()
	RequirePeer(t, NodeBin)
	for _, p := range []string{"node_modules/@xmpp/client", "node_modules/ws"} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%s missing: run conformance/install-peers.sh", p)
		}
	}
}

// Peer is a client program started by a test.
type Peer struct {
	Name string
	cmd  *exec.Cmd
	out  *lockedBuffer
	done chan struct{}
	err  error
}

// StartPeer starts a client program with the given extra environment; it is
// killed when the test ends or after timeout.
func (s *Server) StartPeer(t *testing.T, timeout time.Duration, name string, env []string, bin string, args ...string) *Peer {
	t.Helper()
	return s.StartPeerInput(t, timeout, name, env, "", bin, args...)
}

// StartPeerInput is StartPeer with stdin.
func (s *Server) StartPeerInput(t *testing.T, timeout time.Duration, name string, env []string, stdin string, bin string, args ...string) *Peer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	p := &Peer{Name: name, out: &lockedBuffer{}, done: make(chan struct{})}
	p.cmd = exec.CommandContext(ctx, bin, args...)
	p.cmd.Env = append(os.Environ(),
		"HOME="+s.Dir,
		"SSL_CERT_FILE="+s.CAFile,
		"NODE_EXTRA_CA_CERTS="+s.CAFile,
		"PYTHONUNBUFFERED=1",
	)
	p.cmd.Env = append(p.cmd.Env, env...)
	p.cmd.Stdin = strings.NewReader(stdin)
	p.cmd.Stdout = p.out
	p.cmd.Stderr = p.out
	p.cmd.WaitDelay = 2 * time.Second
	if err := p.cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		cancel()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", name, p.out.String())
		}
	})
	return p
}

// Output returns what the peer printed so far (stdout and stderr).
func (p *Peer) Output() string { return p.out.String() }

// Wait waits for the peer to exit and returns its error (nil on exit 0).
func (p *Peer) Wait() error {
	<-p.done
	return p.err
}

// WaitLine waits until the peer's output matches re, failing the test after
// timeout or when the peer exits first.
func (p *Peer) WaitLine(t testing.TB, re string, timeout time.Duration) string {
	t.Helper()
	rx := regexp.MustCompile("(?m)" + re)
	deadline := time.After(timeout)
	for {
		if m := rx.FindString(p.Output()); m != "" {
			return m
		}
		select {
		case <-p.done:
			if m := rx.FindString(p.Output()); m != "" {
				return m
			}
			t.Fatalf("%s exited (%v) before printing /%s/:\n%s", p.Name, p.err, re, p.Output())
		case <-deadline:
			t.Fatalf("%s: no line /%s/ within %v:\n%s", p.Name, re, timeout, p.Output())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// RunPeer runs a client program to completion and returns its output. A
// non-zero exit or a timeout fails the test unless allowFail is set.
func (s *Server) RunPeer(t *testing.T, timeout time.Duration, name string, env []string, bin string, args ...string) (string, error) {
	t.Helper()
	p := s.StartPeer(t, timeout, name, env, bin, args...)
	err := p.Wait()
	return p.Output(), err
}

// MustRunPeer is RunPeer failing the test on a non-zero exit.
func (s *Server) MustRunPeer(t *testing.T, timeout time.Duration, name string, env []string, bin string, args ...string) string {
	t.Helper()
	out, err := s.RunPeer(t, timeout, name, env, bin, args...)
	if err != nil {
		t.Fatalf("%s failed: %v\n%s", name, err, out)
	}
	return out
}

// HostPort splits host:port for client command lines.
func HostPort(addr string) (string, string) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		panic(err)
	}
	return h, p
}

// WaitLog waits until the server's log matches re.
func (s *Server) WaitLog(t testing.TB, re string, timeout time.Duration) {
	t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(timeout)
	for !rx.MatchString(s.Log()) {
		if time.Now().After(deadline) {
			t.Fatalf("server log: no line /%s/ within %v", re, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// healthyButWitnesses tells whether a /healthz answer says the server is
// ready: healthy, or failing only on its witnesses. A test that configures
// a witness registers the journal with it after the start (its key and
// origin exist only then), and the start-up checkpoint (the journal's
// configuration record) meets an unregistered log until it does.
func healthyButWitnesses(resp *http.Response) bool {
	if resp.StatusCode == http.StatusOK {
		return true
	}
	var h struct {
		Problems string `json:"problems"`
	}
	if resp.StatusCode != http.StatusServiceUnavailable || json.NewDecoder(resp.Body).Decode(&h) != nil || h.Problems == "" {
		return false
	}
	for _, p := range strings.Split(h.Problems, "; ") {
		if !strings.HasPrefix(p, "archive-witness:") {
			return false
		}
	}
	return true
}
