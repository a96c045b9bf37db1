package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// server is one XMPP server under test, run as a child process with its own
// configuration and data directory.
type server interface {
	// Name labels the server's column in the report.
	Name() string
	// Start writes the configuration, starts the process and returns when
	// the c2s port accepts connections.
	Start(ctx context.Context) error
	// Stop ends the process tree (SIGTERM, then SIGKILL).
	Stop() error
	// PID is the process whose tree is sampled.
	PID() int
	// Addr is the STARTTLS c2s address.
	Addr() string
	// Settings describe the effective configuration for the report.
	Settings() map[string]string
}

// proc runs one child process and stops it by PID.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
	log  *os.File
}

func startProc(dir, logName string, cred *syscall.Credential, env []string, name string, args ...string) (*proc, error) {
	lf, err := os.Create(filepath.Join(dir, logName))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Credential: cred}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{}), log: lf}
	go func() { cmd.Wait(); lf.Close(); close(p.done) }()
	return p, nil
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM to the given pids (the server process proper), waits
// for the child to exit, then SIGKILLs the child and its descendants.
func (p *proc) stop(term []int, kill func() []int) error {
	if p == nil || p.exited() {
		return nil
	}
	for _, pid := range term {
		_ = syscall.Kill(pid, syscall.SIGTERM)
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(20 * time.Second):
	}
	for _, pid := range kill() {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	_ = p.cmd.Process.Kill()
	<-p.done
	return errors.New("did not stop within 20s of SIGTERM; killed")
}

// waitPort waits until addr accepts TCP connections or the process exits.
func waitPort(ctx context.Context, p *proc, addr string, limit time.Duration, logFile string) error {
	deadline := time.Now().Add(limit)
	for {
		if p.exited() {
			return fmt.Errorf("exited during start-up (%v); log %s:\n%s", p.cmd.ProcessState, logFile, tail(logFile))
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s not listening after %v; log %s:\n%s", addr, limit, logFile, tail(logFile))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func tail(file string) string {
	b, _ := os.ReadFile(file)
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return string(b)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// pkgVersion reads a Debian package's version.
func pkgVersion(pkg string) string {
	out, err := exec.Command("dpkg-query", "-W", "-f=${Version}", pkg).Output()
	if err != nil {
		return "unknown"
	}
	return string(out)
}

// ---- Palisade ----

type palisade struct {
	bin, dir, certFile, keyFile string
	archive                     string // TOML appended for "archive on"; "" for off
	port                        int
	p                           *proc
	version                     string
}

func (s *palisade) Name() string {
	if s.archive != "" {
		return "palisade+archive"
	}
	return "palisade"
}
func (s *palisade) Addr() string { return fmt.Sprintf("127.0.0.1:%d", s.port) }
func (s *palisade) PID() int     { return s.p.cmd.Process.Pid }

// archiveOff is appended for "archive off": no compliance journal, and no
// user history (MAM), as the peers run without mod_mam. The archive and
// MAM are on by default.
const archiveOff = "[archive]\nenabled = false\n\n[modules.mam]\ndefault_pref = \"never\"\n"

// archiveOn is appended for "archive on": the compliance journal,
// fdatasync-durable with group commit, and still no user history, so that
// the two columns differ by the journal alone. -archive-toml
// '[archive]\nenabled = true\n' measures the default configuration (MAM on).
const archiveOn = "[archive]\nenabled = true\n\n[modules.mam]\ndefault_pref = \"never\"\n"

func (s *palisade) config() string {
	extra := s.archive
	if extra == "" {
		extra = archiveOff
	}
	return fmt.Sprintf(`[server]
domains = ["localhost"]
data_dir = %q

[listen]
c2s = "127.0.0.1:%d"
c2s_direct_tls = ""
websocket = ""
admin = ""

[tls]
cert_file = %q
key_file = %q

[limits]
idle_timeout = "1h"
send_queue = 100000
max_sessions_per_user = 1000
# The flood limits are off: the bench measures capacity (logins/s from
# few addresses, throughput of one session).
max_unauthenticated = 0
max_unauthenticated_per_ip = 0
connection_rate_per_ip = 0.0
read_bytes_per_second = 0

[log]
level = "warn"

[auth]
scram_iterations = 4096

[modules.register]
allow = true
%s`, filepath.Join(s.dir, "data"), s.port, s.certFile, s.keyFile, extra)
}

// CheckConfig asks the binary whether it accepts the configuration; for
// "archive on" a refusal means the archive is not built yet.
func (s *palisade) CheckConfig() error {
	if err := s.prepare(); err != nil {
		return err
	}
	out, err := exec.Command(s.bin, "check-config", filepath.Join(s.dir, "palisade.toml")).CombinedOutput()
	if err != nil {
		return fmt.Errorf("palisade check-config: %s", strings.TrimSpace(string(out)))
	}
	return nil
}

func (s *palisade) prepare() error {
	if s.port == 0 {
		port, err := freePort()
		if err != nil {
			return err
		}
		s.port = port
	}
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(s.dir, "palisade.toml"), []byte(s.config()), 0o600)
}

func (s *palisade) Start(ctx context.Context) error {
	if err := s.prepare(); err != nil {
		return err
	}
	if out, err := exec.Command(s.bin, "version").Output(); err == nil {
		s.version = strings.TrimSpace(string(out))
	}
	p, err := startProc(s.dir, "palisade.log", nil, nil, s.bin, "--config", filepath.Join(s.dir, "palisade.toml"), "serve")
	if err != nil {
		return err
	}
	s.p = p
	return waitPort(ctx, p, s.Addr(), 30*time.Second, filepath.Join(s.dir, "palisade.log"))
}

func (s *palisade) Stop() error {
	if s.p == nil {
		return nil
	}
	return s.p.stop([]int{s.PID()}, func() []int { return []int{s.PID()} })
}

func (s *palisade) Settings() map[string]string {
	arch := "off: " + strings.Join(strings.Fields(archiveOff), " ")
	if s.archive != "" {
		arch = "on: " + strings.Join(strings.Fields(s.archive), " ")
	}
	return map[string]string{
		"version":  s.version,
		"storage":  "SQLite (WAL)",
		"tls":      "server default (TLS 1.2+, AEAD only); generator requires 1.3",
		"archive":  arch,
		"accounts": "SCRAM-SHA-1/256 keys, 4096 iterations (scram_iterations), created by XEP-0077",
		"limits":   "send_queue 100000, max_sessions_per_user 1000, idle_timeout 1h",
		"modules":  "defaults (roster, offline, carbons, blocking, disco, ping, ...) + register",
	}
}

// ---- ejabberd ----

type ejabberd struct {
	dir, certFile, keyFile string
	port, distPort         int
	node                   string
	p                      *proc
}

func (s *ejabberd) Name() string { return "ejabberd" }
func (s *ejabberd) Addr() string { return fmt.Sprintf("127.0.0.1:%d", s.port) }
func (s *ejabberd) PID() int     { return s.p.cmd.Process.Pid }

const ejabberdYML = `hosts:
  - localhost
loglevel: warning
certfiles:
  - %[1]s/server.pem
ca_file: %[1]s/ca.pem
c2s_ciphers: "HIGH:!aNULL:!eNULL:!3DES:@STRENGTH"
c2s_protocol_options: [no_sslv3, no_tlsv1, no_tlsv1_1, cipher_server_preference, no_compression]
listen:
  -
    port: %[2]d
    ip: "127.0.0.1"
    module: ejabberd_c2s
    starttls_required: true
    max_stanza_size: 262144
    access: c2s
    protocol_options: [no_sslv3, no_tlsv1, no_tlsv1_1, cipher_server_preference, no_compression]
auth_method: [internal]
auth_password_format: scram
auth_scram_hash: sha256
registration_timeout: infinity
access_rules:
  c2s:
    allow: all
  register:
    allow: all
shaper_rules:
  max_user_sessions: 1000
modules:
  mod_disco: {}
  mod_roster: {}
  mod_offline: {}
  mod_carboncopy: {}
  mod_ping: {}
  mod_stream_mgmt: {}
  mod_register:
    access: register
    ip_access: all
`

func (s *ejabberd) Start(ctx context.Context) error {
	var err error
	if s.port, err = freePort(); err != nil {
		return err
	}
	if s.distPort, err = freePort(); err != nil {
		return err
	}
	s.node = fmt.Sprintf("bench%d@localhost", os.Getpid())
	for _, d := range []string{"", "spool", "logs"} {
		if err := os.MkdirAll(filepath.Join(s.dir, d), 0o755); err != nil {
			return err
		}
	}
	// ejabberd reads the certificate and key from one PEM file.
	cert, err := os.ReadFile(s.certFile)
	if err != nil {
		return err
	}
	key, err := os.ReadFile(s.keyFile)
	if err != nil {
		return err
	}
	files := map[string][]byte{
		"server.pem":   append(append(cert, '\n'), key...),
		"ca.pem":       cert,
		"ejabberd.yml": []byte(fmt.Sprintf(ejabberdYML, s.dir, s.port)),
		// The distribution port is fixed so that no epmd daemon is started;
		// it listens on loopback only.
		"ejabberdctl.cfg": []byte(fmt.Sprintf("ERLANG_NODE=%s\nERL_DIST_PORT=%d\nERL_MAX_PORTS=65536\nERL_OPTIONS='-kernel inet_dist_use_interface {127,0,0,1}'\n", s.node, s.distPort)),
		"inetrc":          []byte("{file, hosts, \"/etc/hosts\"}.\n{lookup, [file, native]}.\n"),
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(s.dir, name), b, 0o640); err != nil {
			return err
		}
	}
	// ejabberdctl re-runs itself through su as user ejabberd, and su's PAM
	// session lowers the open-file soft limit to 1024. Started as that user
	// directly it keeps the limit this process raised; HOME in its own
	// directory keeps the Erlang cookie there too.
	var cred *syscall.Credential
	if u, err := user.Lookup("ejabberd"); err == nil {
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		_ = filepath.Walk(s.dir, func(path string, _ os.FileInfo, err error) error {
			if err == nil {
				err = os.Chown(path, uid, gid)
			}
			return err
		})
		// Every parent must be traversable by that user.
		for d := filepath.Dir(s.dir); d != "/" && d != "."; d = filepath.Dir(d) {
			if fi, err := os.Stat(d); err == nil && fi.Mode().Perm()&0o001 == 0 {
				_ = os.Chmod(d, fi.Mode().Perm()|0o011)
			}
		}
	}
	p, err := startProc(s.dir, "ejabberdctl.out", cred, []string{"HOME=" + s.dir}, "ejabberdctl", s.ctlArgs("foreground")...)
	if err != nil {
		return err
	}
	s.p = p
	return waitPort(ctx, p, s.Addr(), 60*time.Second, filepath.Join(s.dir, "ejabberdctl.out"))
}

func (s *ejabberd) ctlArgs(cmd ...string) []string {
	return append([]string{"--config-dir", s.dir, "--config", filepath.Join(s.dir, "ejabberd.yml"),
		"--ctl-config", filepath.Join(s.dir, "ejabberdctl.cfg"), "--spool", filepath.Join(s.dir, "spool"),
		"--logs", filepath.Join(s.dir, "logs"), "--node", s.node}, cmd...)
}

// beamPIDs finds the Erlang VM in the process tree.
func (s *ejabberd) beamPIDs() []int {
	var out []int
	for _, pid := range treePIDs(s.PID()) {
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if strings.HasPrefix(strings.TrimSpace(string(comm)), "beam") {
			out = append(out, pid)
		}
	}
	return out
}

func (s *ejabberd) Stop() error {
	if s.p == nil {
		return nil
	}
	return s.p.stop(s.beamPIDs(), func() []int { return treePIDs(s.PID()) })
}

func (s *ejabberd) Settings() map[string]string {
	return map[string]string{
		"version":  pkgVersion("ejabberd"),
		"storage":  "Mnesia",
		"tls":      "c2s_ciphers and protocol_options as Debian's default ejabberd.yml (no_compression; without them a session cost ~600 KiB)",
		"run as":   "user ejabberd, started directly (su would lower the open-file limit to 1024)",
		"archive":  "off (no mod_mam)",
		"accounts": "auth_password_format scram, auth_scram_hash sha256 (4096 iterations), created by XEP-0077",
		"limits":   "no shaper, max_user_sessions 1000",
		"modules":  "disco, roster, offline, carboncopy, ping, stream_mgmt, register",
	}
}

// ---- Prosody ----

type prosody struct {
	dir, certFile, keyFile string
	port                   int
	p                      *proc
}

func (s *prosody) Name() string { return "prosody" }
func (s *prosody) Addr() string { return fmt.Sprintf("127.0.0.1:%d", s.port) }
func (s *prosody) PID() int     { return s.p.cmd.Process.Pid }

const prosodyCfg = `-- written by palisade-bench
pidfile = "%[1]s/prosody.pid"
data_path = "%[1]s/data"
run_as_root = true
log = { warn = "%[1]s/prosody.log" }
network_backend = "epoll"
interfaces = { "127.0.0.1" }
c2s_ports = { %[2]d }
c2s_require_encryption = true
modules_disabled = { "s2s" }
modules_enabled = { "roster", "saslauth", "tls", "disco", "carbons", "ping", "register", "smacks" }
allow_registration = true
authentication = "internal_hashed"
password_hash = "SHA-256"
default_iteration_count = 4096
storage = "internal"
ssl = { certificate = "%[3]s"; key = "%[4]s"; protocol = "tlsv1_3" }
VirtualHost "localhost"
`

func (s *prosody) Start(ctx context.Context) error {
	var err error
	if s.port, err = freePort(); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(s.dir, "data"), 0o700); err != nil {
		return err
	}
	cfg := filepath.Join(s.dir, "prosody.cfg.lua")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(prosodyCfg, s.dir, s.port, s.certFile, s.keyFile)), 0o600); err != nil {
		return err
	}
	p, err := startProc(s.dir, "prosody.out", nil, nil, "prosody", "--config", cfg, "-F")
	if err != nil {
		return err
	}
	s.p = p
	return waitPort(ctx, p, s.Addr(), 30*time.Second, filepath.Join(s.dir, "prosody.out"))
}

func (s *prosody) Stop() error {
	if s.p == nil {
		return nil
	}
	return s.p.stop([]int{s.PID()}, func() []int { return treePIDs(s.PID()) })
}

func (s *prosody) Settings() map[string]string {
	return map[string]string{
		"version":  pkgVersion("prosody"),
		"storage":  "internal (files)",
		"tls":      "protocol tlsv1_3",
		"archive":  "off (no mod_mam)",
		"accounts": "internal_hashed, password_hash SHA-256, default_iteration_count 4096, created by XEP-0077",
		"limits":   "no mod_limits, network_backend epoll",
		"modules":  "roster, saslauth, tls, disco, carbons, ping, register, smacks (+ autoloaded offline)",
	}
}

// treePIDs is pid and its descendants, deepest last.
func treePIDs(pid int) []int {
	out := []int{pid}
	b, _ := exec.Command("ps", "-e", "-o", "pid=,ppid=").Output()
	kids := map[int][]int{}
	for _, line := range bytes.Split(b, []byte("\n")) {
		f := strings.Fields(string(line))
		if len(f) != 2 {
			continue
		}
		c, _ := strconv.Atoi(f[0])
		pp, _ := strconv.Atoi(f[1])
		kids[pp] = append(kids[pp], c)
	}
	for i := 0; i < len(out); i++ {
		out = append(out, kids[out[i]]...)
	}
	return out
}
