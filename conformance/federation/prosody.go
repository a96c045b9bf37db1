package federation

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// ProsodyBin and ProsodyctlBin are Debian's prosody 0.12 programs.
const (
	ProsodyBin    = "prosody"
	ProsodyctlBin = "prosodyctl"
)

// ProsodyOptions configures one Prosody test server.
type ProsodyOptions struct {
	// Domain is its VirtualHost (PartnerDomain or StrangerDomain); it
	// listens on Addrs[Domain].
	Domain string
	// Cert is its certificate for c2s and s2s.
	Cert *Cert
	// CAFile is the CA bundle it verifies peers' certificates with.
	CAFile string
	// Hosts is the hosts file (WriteHosts) its resolver reads.
	Hosts string
	// DialbackOnly turns s2s_secure_auth off: peers whose certificate
	// does not verify (and its own self-signed one) authenticate with
	// XEP-0220 dialback.
	DialbackOnly bool
	// Users are the accounts created before it starts (local part ->
	// password).
	Users map[string]string
}

// Prosody is a running Prosody.
type Prosody struct {
	Domain string
	Dir    string
	Config string
	Log    string // its log file (debug level)
	C2S    string // host:port of its c2s listener (STARTTLS)
	S2S    string // host:port of its s2s listener
	p      *proc
}

const prosodyConfig = `-- written by conformance/federation
pidfile = %[1]q
data_path = %[2]q
run_as_root = true
daemonize = false
log = { debug = %[3]q }
interfaces = { %[4]q }
c2s_ports = { %[5]d }
s2s_ports = { %[6]d }
c2s_require_encryption = true
s2s_require_encryption = true
s2s_secure_auth = %[7]t
s2s_timeout = 15
unbound = { hoststxt = %[8]q }
modules_enabled = { "roster", "saslauth", "tls", "dialback", "disco", "presence", "ping" }
modules_disabled = { "offline" }
authentication = "internal_plain"
allow_registration = false
storage = "internal"
ssl = { cafile = %[9]q }
VirtualHost %[10]q
	ssl = { certificate = %[11]q; key = %[12]q; cafile = %[9]q }
`

// StartProsody writes a configuration in a temporary directory, creates
// the users, starts `prosody -F` and waits until its c2s and s2s ports
// accept. It is stopped by PID (SIGTERM, then SIGKILL) when the test ends,
// and its log is copied into the test log if the test failed.
func StartProsody(t testing.TB, o ProsodyOptions) *Prosody {
	t.Helper()
	RequireProsody(t)
	addr, ok := Addrs[o.Domain]
	if !ok {
		t.Fatalf("federation: no address for %q", o.Domain)
	}
	dir := t.TempDir()
	port, err := freePort(addr)
	if err != nil {
		t.Fatal(err)
	}
	s := &Prosody{
		Domain: o.Domain,
		Dir:    dir,
		Config: filepath.Join(dir, "prosody.cfg.lua"),
		Log:    filepath.Join(dir, "prosody.log"),
		C2S:    net.JoinHostPort(addr, strconv.Itoa(port)),
		S2S:    net.JoinHostPort(addr, strconv.Itoa(S2SPort)),
	}
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(data, 0o700); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(prosodyConfig, filepath.Join(dir, "prosody.pid"), data, s.Log, addr, port, S2SPort,
		!o.DialbackOnly, o.Hosts, o.CAFile, o.Domain, o.Cert.CertFile, o.Cert.KeyFile)
	if err := os.WriteFile(s.Config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for user, pw := range o.Users {
		if err := runCmd(ctx, nil, ProsodyctlBin, "--config", s.Config, "register", user, o.Domain, pw); err != nil {
			t.Fatal(err)
		}
	}
	s.p, err = startProc(dir, "prosody.out", nil, ProsodyBin, "-F", "--config", s.Config)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.p.stop(t, []int{s.p.cmd.Process.Pid})
		if t.Failed() {
			t.Logf("prosody %s log (%s):\n%s%s", o.Domain, s.Log, readTail(s.p.outFile), readAll(s.Log))
		}
	})
	for _, a := range []string{s.C2S, s.S2S} {
		if err := waitPort(ctx, s.p, a, 30*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	// Prosody keeps running when a port is taken (by another server, whose
	// port then accepts).
	if strings.Contains(s.LogText(), "Failed to open server port") {
		t.Fatalf("prosody %s could not open a port:\n%s", o.Domain, s.LogText())
	}
	return s
}

// Stop ends Prosody now (SIGTERM, then SIGKILL).
func (s *Prosody) Stop(t testing.TB) { s.p.stop(t, []int{s.p.cmd.Process.Pid}) }

// Reload sends SIGHUP (Prosody reloads its configuration and certificates).
func (s *Prosody) Reload() error { return s.p.cmd.Process.Signal(syscall.SIGHUP) }

// LogText is what Prosody has logged so far.
func (s *Prosody) LogText() string { return readAll(s.Log) }

// WaitLog waits until Prosody's log contains substr.
func (s *Prosody) WaitLog(t testing.TB, substr string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(s.LogText(), substr) {
		if time.Now().After(deadline) {
			t.Fatalf("prosody %s: no %q in its log within %v", s.Domain, substr, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// RequireProsody fails the test when prosody is not installed (CI
// installs it with conformance/install-peers.sh).
func RequireProsody(t testing.TB) {
	t.Helper()
	requireBin(t, ProsodyBin, "prosody")
	requireBin(t, ProsodyctlBin, "prosody")
	// Without lua-unbound Prosody resolves through libc and ignores
	// unbound.hoststxt.
	if out, err := exec.Command("dpkg-query", "-W", "-f", "${Status}", "lua-unbound").CombinedOutput(); err != nil || !strings.Contains(string(out), "installed") {
		t.Fatalf("lua-unbound not installed (%v, %s): run conformance/install-peers.sh", err, out)
	}
}

func readAll(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	return string(b)
}
