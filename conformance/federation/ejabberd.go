package federation

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// EjabberdctlBin is Debian's ejabberd 23.01 control script.
const EjabberdctlBin = "ejabberdctl"

// EjabberdOptions configures the ejabberd test server (EjDomain on
// EjAddr).
type EjabberdOptions struct {
	// Cert is its certificate for c2s and s2s.
	Cert *Cert
	// CAFile is the CA bundle it verifies peers' certificates with.
	CAFile string
	// Hosts is the hosts file (WriteHosts) bind-mounted over /etc/hosts in
	// its private mount namespace (it resolves through libc).
	Hosts string
	// Users are the accounts created once it runs (local part ->
	// password).
	Users map[string]string
}

// Ejabberd is a running ejabberd.
type Ejabberd struct {
	Domain string
	Dir    string
	C2S    string // host:port of its c2s listener (STARTTLS)
	S2S    string // host:port of its s2s listener
	node   string
	p      *proc
}

// nodeSeq makes node names unique within one test binary.
var nodeSeq atomic.Int64

const ejabberdConfig = `# written by conformance/federation
hosts:
  - %[1]s
loglevel: debug
certfiles:
  - %[2]s/server.pem
ca_file: %[3]s
s2s_use_starttls: required
s2s_dns_timeout: 2
s2s_dns_retries: 1
s2s_timeout: 60
listen:
  -
    port: %[4]d
    ip: "%[5]s"
    module: ejabberd_c2s
    starttls_required: true
  -
    port: %[6]d
    ip: "%[5]s"
    module: ejabberd_s2s_in
auth_method: [internal]
access_rules:
  c2s:
    allow: all
modules:
  mod_disco: {}
  mod_roster: {}
  mod_ping: {}
  mod_s2s_dialback: {}
`

// StartEjabberd writes a configuration in a temporary directory, starts
// `ejabberdctl foreground` as user ejabberd inside a private mount
// namespace whose /etc/hosts is o.Hosts, waits until its c2s and s2s
// ports accept and creates the users. It is stopped by PID at cleanup
// (SIGTERM to the Erlang VM, then SIGKILL to the process tree), and its
// logs are copied into the test log if the test failed.
func StartEjabberd(t testing.TB, o EjabberdOptions) *Ejabberd {
	t.Helper()
	RequireEjabberd(t)
	requireBin(t, "unshare", "util-linux")
	requireBin(t, "setpriv", "util-linux")
	u, err := user.Lookup("ejabberd")
	if err != nil {
		t.Fatalf("federation: no user ejabberd (%v): run conformance/install-peers.sh", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	dir := t.TempDir()
	port, err := freePort(EjAddr)
	if err != nil {
		t.Fatal(err)
	}
	distPort, err := freePort("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	s := &Ejabberd{
		Domain: EjDomain,
		Dir:    dir,
		C2S:    net.JoinHostPort(EjAddr, strconv.Itoa(port)),
		S2S:    net.JoinHostPort(EjAddr, strconv.Itoa(S2SPort)),
		node:   fmt.Sprintf("fed%d_%d@localhost", os.Getpid(), nodeSeq.Add(1)),
	}
	for _, d := range []string{"spool", "logs"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cert, err := os.ReadFile(o.Cert.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	key, err := os.ReadFile(o.Cert.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := os.ReadFile(o.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{
		// ejabberd reads certificate and key from one PEM file.
		"server.pem":   append(append(cert, '\n'), key...),
		"ca.pem":       ca,
		"ejabberd.yml": fmt.Appendf(nil, ejabberdConfig, EjDomain, dir, filepath.Join(dir, "ca.pem"), port, EjAddr, S2SPort),
		// A fixed distribution port: no epmd daemon; loopback only.
		"ejabberdctl.cfg": fmt.Appendf(nil, "ERLANG_NODE=%s\nERL_DIST_PORT=%d\nERL_OPTIONS='-kernel inet_dist_use_interface {127,0,0,1}'\n", s.node, distPort),
		// Host names from the (bind-mounted) hosts file first.
		"inetrc": []byte("{file, hosts, \"/etc/hosts\"}.\n{lookup, [file, native]}.\n"),
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	if err := chownTree(dir, uid, gid); err != nil {
		t.Fatal(err)
	}
	env := []string{"HOME=" + dir}
	// The mount is private to the new namespace (unshare's default
	// propagation is private); setpriv drops to user ejabberd so that
	// ejabberdctl does not re-run itself through su.
	script := `mount --bind "$1" /etc/hosts && shift && exec setpriv --reuid="$UID_E" --regid="$GID_E" --init-groups "$@"`
	args := append([]string{"-m", "sh", "-c", script, "sh", o.Hosts, EjabberdctlBin}, s.ctlArgs("foreground")...)
	env = append(env, "UID_E="+u.Uid, "GID_E="+u.Gid)
	s.p, err = startProc(dir, "ejabberdctl.out", env, "unshare", args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Stop(t)
		if t.Failed() {
			t.Logf("ejabberd output (%s):\n%s", dir, readTail(s.p.outFile))
			t.Logf("ejabberd log:\n%s", readTail(filepath.Join(dir, "logs", "ejabberd.log")))
			t.Logf("ejabberd error log:\n%s", readTail(filepath.Join(dir, "logs", "error.log")))
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	for _, a := range []string{s.C2S, s.S2S} {
		if err := waitPort(ctx, s.p, a, 60*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	for name, pw := range o.Users {
		if err := s.ctl(ctx, "register", name, EjDomain, pw); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

func (s *Ejabberd) ctlArgs(cmd ...string) []string {
	return append([]string{"--config-dir", s.Dir, "--config", filepath.Join(s.Dir, "ejabberd.yml"),
		"--ctl-config", filepath.Join(s.Dir, "ejabberdctl.cfg"), "--spool", filepath.Join(s.Dir, "spool"),
		"--logs", filepath.Join(s.Dir, "logs"), "--node", s.node}, cmd...)
}

// ctl runs an ejabberdctl command against the running node, as user
// ejabberd.
func (s *Ejabberd) ctl(ctx context.Context, cmd ...string) error {
	u, err := user.Lookup("ejabberd")
	if err != nil {
		return fmt.Errorf("federation: %w", err)
	}
	args := append([]string{"--reuid=" + u.Uid, "--regid=" + u.Gid, "--init-groups", EjabberdctlBin}, s.ctlArgs(cmd...)...)
	return runCmd(ctx, []string{"HOME=" + s.Dir}, "setpriv", args...)
}

// Stop ends ejabberd: SIGTERM to its Erlang VM, then SIGKILL to the tree.
func (s *Ejabberd) Stop(t testing.TB) {
	var beams []int
	for _, pid := range treePIDs(s.p.cmd.Process.Pid) {
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if strings.HasPrefix(strings.TrimSpace(string(comm)), "beam") {
			beams = append(beams, pid)
		}
	}
	s.p.stop(t, append(beams, s.p.cmd.Process.Pid))
}

// LogText is what ejabberd has logged so far (logs/ejabberd.log).
func (s *Ejabberd) LogText() string { return readAll(filepath.Join(s.Dir, "logs", "ejabberd.log")) }

// RequireEjabberd fails the test when ejabberd is not installed (CI
// installs it with conformance/install-peers.sh).
func RequireEjabberd(t testing.TB) {
	t.Helper()
	requireBin(t, EjabberdctlBin, "ejabberd")
}

func requireBin(t testing.TB, bin, pkg string) {
	t.Helper()
	if _, err := exec.LookPath(bin); err != nil {
		t.Fatalf("%s not found (%v): install Debian's %s with conformance/install-peers.sh", bin, err, pkg)
	}
}

// chownTree gives dir and everything under it to uid:gid, and makes
// every parent of dir traversable (t.TempDir's parents are 0700).
func chownTree(dir string, uid, gid int) error {
	err := filepath.Walk(dir, func(path string, _ os.FileInfo, err error) error {
		if err == nil {
			err = os.Chown(path, uid, gid)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("federation: chown %s: %w", dir, err)
	}
	for d := filepath.Dir(dir); d != "/" && d != "."; d = filepath.Dir(d) {
		if fi, err := os.Stat(d); err == nil && fi.Mode().Perm()&0o001 == 0 {
			if err := os.Chmod(d, fi.Mode().Perm()|0o011); err != nil {
				return fmt.Errorf("federation: chmod %s: %w", d, err)
			}
		}
	}
	return nil
}
