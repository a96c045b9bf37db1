package main

// The s2s scenario: pairs across a Palisade-Palisade federation. Two
// Palisade processes from the same binary, a.test on 127.0.0.1 and b.test
// on 127.0.0.2, each with a certificate from a CA the harness makes and the
// other as its only partner (ca_file and pinned endpoints); user i of
// a.test and user i of b.test ping-pong chat messages across the two s2s
// streams as the pairs scenario does within one server.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/palisade-im/palisade/conformance/loadgen"
)

// fedCA is the test CA of the s2s scenario.
type fedCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	file string // PEM of the CA certificate
}

// newFedCA creates an ECDSA P-256 CA and writes its certificate to
// dir/s2s-ca.pem.
func newFedCA(dir string) (*fedCA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "palisade-bench s2s CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(7 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	ca := &fedCA{cert: cert, key: key, file: filepath.Join(dir, "s2s-ca.pem")}
	if err := os.WriteFile(ca.file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return nil, err
	}
	return ca, nil
}

// issue writes a certificate for domain with serverAuth and clientAuth
// (a server presents it on both ends of an s2s stream) and its key.
func (ca *fedCA) issue(dir, domain string) (certFile, keyFile string, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return "", "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: domain},
		DNSNames:     []string{domain},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(7 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return "", "", fmt.Errorf("certificate for %s: %w", domain, err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", "", err
	}
	certFile, keyFile = filepath.Join(dir, domain+".pem"), filepath.Join(dir, domain+".key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return "", "", err
	}
	return certFile, keyFile, nil
}

// clientTLS trusts the CA only and requires TLS 1.3, as the other
// scenarios' generator does; the server name is the dialer's domain.
func (ca *fedCA) clientTLS() *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}
}

// freePortOn returns a TCP port free on ip.
func freePortOn(ip string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// fedNode is one of the two Palisade servers of the federation.
type fedNode struct {
	domain, ip          string
	bin, dir            string
	certFile, keyFile   string
	caFile              string
	c2sPort, s2sPort    int
	peerDomain, peerS2S string // the partner's domain and s2s address
	extra               string // TOML appended (the archive settings)
	p                   *proc
	version             string
}

func (n *fedNode) Name() string { return "palisade " + n.domain }
func (n *fedNode) Addr() string { return net.JoinHostPort(n.ip, fmt.Sprint(n.c2sPort)) }
func (n *fedNode) S2S() string  { return net.JoinHostPort(n.ip, fmt.Sprint(n.s2sPort)) }
func (n *fedNode) PID() int     { return n.p.cmd.Process.Pid }

// Federation settings of the scenario: the outbound queue of a peer is the
// queue of the live stream too, so it is raised like [limits] send_queue
// (the default 1000 would bounce the in-flight messages of 100 pairs).
const (
	fedQueueStanzas = 100000
	fedQueueBytes   = 64 << 20
)

// config is the node's palisade.toml.
func (n *fedNode) config() string {
	return fmt.Sprintf(`[server]
domains = [%q]
data_dir = %q

[listen]
c2s = %q
c2s_direct_tls = ""
websocket = ""
admin = ""
s2s = %q
s2s_direct_tls = ""

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

[federation]
queue_stanzas = %d
queue_bytes = %d
retry_min = "1s"

[[federation.partner]]
name = "bench-peer"
domains = [%q]
ca_file = %q
endpoints = [%q]

[modules.register]
allow = true
%s`, n.domain, filepath.Join(n.dir, "data"), n.Addr(), n.S2S(), n.certFile, n.keyFile,
		fedQueueStanzas, fedQueueBytes, n.peerDomain, n.caFile, n.peerS2S, n.extra)
}

func (n *fedNode) configFile() string { return filepath.Join(n.dir, "palisade.toml") }
func (n *fedNode) logFile() string    { return filepath.Join(n.dir, "palisade.log") }

func (n *fedNode) writeConfig() error {
	if err := os.MkdirAll(n.dir, 0o700); err != nil {
		return err
	}
	return os.WriteFile(n.configFile(), []byte(n.config()), 0o600)
}

// Start writes the configuration and starts the server; it returns when
// both its c2s and s2s listeners accept connections.
func (n *fedNode) Start(ctx context.Context) error {
	if err := n.writeConfig(); err != nil {
		return err
	}
	if out, err := exec.Command(n.bin, "version").Output(); err == nil {
		n.version = strings.TrimSpace(string(out))
	}
	p, err := startProc(n.dir, "palisade.log", nil, nil, n.bin, "--config", n.configFile(), "serve")
	if err != nil {
		return err
	}
	n.p = p
	if err := waitPort(ctx, p, n.Addr(), 30*time.Second, n.logFile()); err != nil {
		return err
	}
	return waitPort(ctx, p, n.S2S(), 30*time.Second, n.logFile())
}

func (n *fedNode) Stop() error {
	if n.p == nil {
		return nil
	}
	return n.p.stop([]int{n.PID()}, func() []int { return []int{n.PID()} })
}

func (n *fedNode) Settings() map[string]string {
	return map[string]string{"version": n.version}
}

// federation is the two nodes, a.test and b.test, partners of each other.
type federation struct {
	ca   *fedCA
	a, b *fedNode
}

// newFederation prepares (but does not start) the two nodes under dir:
// certificates, free ports on 127.0.0.1 and 127.0.0.2, configurations.
func newFederation(dir, bin, extra string) (*federation, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	ca, err := newFedCA(dir)
	if err != nil {
		return nil, err
	}
	f := &federation{ca: ca}
	for _, n := range []**fedNode{&f.a, &f.b} {
		*n = &fedNode{bin: bin, caFile: ca.file, extra: extra}
	}
	f.a.domain, f.a.ip = "a.test", "127.0.0.1"
	f.b.domain, f.b.ip = "b.test", "127.0.0.2"
	for _, n := range []*fedNode{f.a, f.b} {
		n.dir = filepath.Join(dir, n.domain)
		if err := os.MkdirAll(n.dir, 0o700); err != nil {
			return nil, err
		}
		if n.certFile, n.keyFile, err = ca.issue(n.dir, n.domain); err != nil {
			return nil, err
		}
		if n.c2sPort, err = freePortOn(n.ip); err != nil {
			return nil, err
		}
		if n.s2sPort, err = freePortOn(n.ip); err != nil {
			return nil, err
		}
	}
	f.a.peerDomain, f.a.peerS2S = f.b.domain, f.b.S2S()
	f.b.peerDomain, f.b.peerS2S = f.a.domain, f.a.S2S()
	for _, n := range []*fedNode{f.a, f.b} {
		if err := n.writeConfig(); err != nil {
			return nil, err
		}
	}
	return f, nil
}

func (f *federation) nodes() []*fedNode { return []*fedNode{f.a, f.b} }

func (f *federation) dialer(n *fedNode) *loadgen.Dialer {
	return &loadgen.Dialer{Addr: n.Addr(), Domain: n.domain, TLS: f.ca.clientTLS(), Mechanisms: []string{loadgen.PLAIN}}
}

// s2sResult is the s2s scenario in the report.
type s2sResult struct {
	Settings map[string]string          `json:"settings"`
	Runs     []loadgen.ThroughputResult `json:"runs,omitempty"`
	Errors   []string                   `json:"errors,omitempty"`
	// Logs names the copies of the two servers' logs next to bench.json.
	Logs []string `json:"logs,omitempty"`
}

func (f *federation) settings(o options) map[string]string {
	arch := "on: " + strings.Join(strings.Fields(o.archive), " ")
	if o.s2sArchiveOff {
		arch = "off: " + strings.Join(strings.Fields(archiveOff), " ")
	}
	return map[string]string{
		"servers":    fmt.Sprintf("two Palisade processes from one binary: %s (c2s %s, s2s %s) and %s (c2s %s, s2s %s)", f.a.domain, f.a.Addr(), f.a.S2S(), f.b.domain, f.b.Addr(), f.b.S2S()),
		"version":    f.a.version,
		"federation": "each the other's only [[federation.partner]]: ca_file = a CA made by the harness, endpoints pinned to the other's s2s address; certificates with serverAuth+clientAuth (SASL EXTERNAL both ways); one outgoing stream per direction",
		"queues":     fmt.Sprintf("[federation] queue_stanzas %d, queue_bytes %d; [limits] send_queue 100000", fedQueueStanzas, fedQueueBytes),
		"archive":    arch + " (both servers)",
		"traffic":    fmt.Sprintf("pair i is u<i>@%s and u<i>@%s, each sending to the other's full and bare JID in turn; window %d in flight per sender, %v warm-up, %v measured; latency on the generator's clock", f.a.domain, f.b.domain, o.window, o.warmup, o.length),
		"cpu":        "server CPU cores and RSS are the sums over both servers",
	}
}

// probe sends one message each way between two fresh accounts and waits
// for it, so that both s2s streams are up before any measurement and a
// federation that does not work is reported with what came back.
func (f *federation) probe(ctx context.Context, da, db *loadgen.Dialer) error {
	acct := loadgen.Account{User: "probe", Password: password, Resource: "probe"}
	var sides [2]probeSide
	done := make(chan struct{})
	defer close(done)
	for i, d := range []*loadgen.Dialer{da, db} {
		if err := d.Register(ctx, []loadgen.Account{acct}); err != nil {
			return fmt.Errorf("register probe on %s: %w", d.Domain, err)
		}
		c, err := d.Login(ctx, acct, true)
		if err != nil {
			return err
		}
		defer c.Abort()
		sides[i] = probeSide{c: c, in: make(chan []byte, 16)}
		go func(s probeSide) {
			defer close(s.in)
			for {
				el, err := s.c.Next()
				if err != nil {
					return
				}
				select {
				case s.in <- el:
				case <-done:
					return
				}
			}
		}(sides[i])
	}
	if err := crossOne(ctx, sides[0], sides[1]); err != nil {
		return err
	}
	return crossOne(ctx, sides[1], sides[0])
}

// probeSide is a logged-in probe account and what it receives.
type probeSide struct {
	c  *loadgen.Conn
	in chan []byte
}

// crossOne sends a message from one side to the other's full JID and
// waits up to 20s for it, sending it again every 2s (the first may be
// bounced while a stream is set up). It reports a bounce it saw.
func crossOne(ctx context.Context, from, to probeSide) error {
	body := "probe from " + from.c.JID
	msg := fmt.Sprintf("<message to='%s' type='chat'><body>%s</body></message>", to.c.JID, body)
	deadline := time.Now().Add(20 * time.Second)
	last := "nothing came back"
	for time.Now().Before(deadline) {
		if err := from.c.Write([]byte(msg)); err != nil {
			return fmt.Errorf("probe %s -> %s: %w", from.c.JID, to.c.JID, err)
		}
		again := time.After(2 * time.Second)
	wait:
		for {
			select {
			case el, ok := <-to.in:
				if !ok {
					return fmt.Errorf("probe: %s's stream closed", to.c.JID)
				}
				if strings.Contains(string(el), body) {
					return nil
				}
			case el, ok := <-from.in:
				if !ok {
					return fmt.Errorf("probe: %s's stream closed (last: %s)", from.c.JID, last)
				}
				if strings.Contains(string(el), "error") {
					last = "bounced: " + string(el)
				}
			case <-again:
				break wait
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	return fmt.Errorf("no message from %s reached %s in 20s (last: %s)", from.c.JID, to.c.JID, last)
}

// runS2S runs the s2s scenario: it starts the federation, registers the
// accounts on both sides, probes both directions and measures each pair
// count of o.s2sPairs. The servers' logs are copied into o.out.
func runS2S(ctx context.Context, o options, tmp string) *s2sResult {
	res := &s2sResult{}
	extra := o.archive
	if o.s2sArchiveOff {
		extra = archiveOff
	}
	fed, err := newFederation(filepath.Join(tmp, "s2s"), o.bin, extra)
	if err != nil {
		res.Errors = append(res.Errors, err.Error())
		return res
	}
	fail := func(err error) *s2sResult {
		res.Errors = append(res.Errors, err.Error())
		fmt.Fprintf(os.Stderr, "bench: s2s: %v\n", err)
		return res
	}
	defer func() {
		for _, n := range fed.nodes() {
			if err := n.Stop(); err != nil {
				res.Errors = append(res.Errors, n.domain+" stop: "+err.Error())
			}
			if dst, err := copyLog(n, o.out); err == nil {
				res.Logs = append(res.Logs, dst)
			}
		}
		res.Settings = fed.settings(o)
	}()
	for _, n := range fed.nodes() {
		if err := n.Start(ctx); err != nil {
			return fail(fmt.Errorf("start %s: %w", n.domain, err))
		}
	}
	da, db := fed.dialer(fed.a), fed.dialer(fed.b)
	maxPairs := 1
	for _, p := range o.s2sPairs {
		maxPairs = max(maxPairs, p)
	}
	users := accounts(maxPairs)
	t0 := time.Now()
	for _, d := range []*loadgen.Dialer{da, db} {
		if err := d.Register(ctx, users); err != nil {
			return fail(fmt.Errorf("register %d accounts on %s: %w", maxPairs, d.Domain, err))
		}
	}
	fmt.Fprintf(os.Stderr, "bench: s2s: registered %d accounts on each side in %.1fs\n", maxPairs, time.Since(t0).Seconds())
	if err := fed.probe(ctx, da, db); err != nil {
		return fail(fmt.Errorf("the servers do not federate: %w (logs: %s, %s)", err, fed.a.logFile(), fed.b.logFile()))
	}
	samplers := []*loadgen.Sampler{{PID: fed.a.PID()}, {PID: fed.b.PID()}}
	for _, n := range o.s2sPairs {
		quiesce(ctx, fed.a)
		quiesce(ctx, fed.b)
		tr, err := loadgen.RunCrossPairs(ctx, da, db, loadgen.CrossTraffic{
			Traffic:   loadgen.Traffic{Pairs: n, Window: o.window, Warmup: o.warmup, Length: o.length},
			AAccounts: users, BAccounts: users, Samplers: samplers,
		})
		if err != nil {
			res.Errors = append(res.Errors, fmt.Sprintf("s2s pairs %d: %v", n, err))
		}
		fmt.Fprintf(os.Stderr, "bench: %s s2s pairs %d: %.0f msgs/s p50 %.2f p99 %.2f ms (errors %d %s; undrained %d)\n",
			time.Now().Format("15:04:05"), n, tr.MsgsPerSec, tr.Latency.P50, tr.Latency.P99, tr.Errors, tr.FirstErr, tr.Undrained)
		res.Runs = append(res.Runs, tr)
		for _, node := range fed.nodes() {
			if !alive(node) {
				return fail(fmt.Errorf("%s exited during s2s pairs %d; log %s:\n%s", node.domain, n, node.logFile(), tail(node.logFile())))
			}
		}
		if ctx.Err() != nil {
			return fail(ctx.Err())
		}
	}
	return res
}

// copyLog copies a node's log into dir as s2s-DOMAIN.log.
func copyLog(n *fedNode, dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	src, err := os.Open(n.logFile())
	if err != nil {
		return "", err
	}
	defer src.Close()
	dst := filepath.Join(dir, "s2s-"+n.domain+".log")
	out, err := os.Create(dst)
	if err != nil {
		return "", err
	}
	if _, err := io.Copy(out, src); err != nil {
		out.Close()
		return "", err
	}
	return dst, out.Close()
}

// text is the s2s table of the text report.
func (s *s2sResult) text() string {
	var b strings.Builder
	b.WriteString("s2s: pairs across a Palisade-Palisade federation\n")
	rows := s.rows()
	widths := make([]int, len(rows[0]))
	for _, r := range rows {
		for i, c := range r {
			widths[i] = max(widths[i], len(c))
		}
	}
	for _, r := range rows {
		for i, c := range r {
			if i == 0 {
				b.WriteString("  " + c + strings.Repeat(" ", widths[i]-len(c)))
			} else {
				b.WriteString("  " + strings.Repeat(" ", widths[i]-len(c)) + c)
			}
		}
		b.WriteString("\n")
	}
	return b.String() + s.notes()
}

// notes are the scenario's settings, errors and log files.
func (s *s2sResult) notes() string {
	var b strings.Builder
	for _, k := range sortedKeys(s.Settings) {
		fmt.Fprintf(&b, "  %s: %s\n", k, s.Settings[k])
	}
	for _, e := range s.Errors {
		fmt.Fprintf(&b, "  error: %s\n", e)
	}
	for _, t := range s.Runs {
		if t.Errors > 0 || t.Undrained > 0 {
			fmt.Fprintf(&b, "  run pairs=%d: %d errors (%s), %d still in flight after the drain\n", t.Pairs, t.Errors, t.FirstErr, t.Undrained)
		}
	}
	if len(s.Logs) > 0 {
		fmt.Fprintf(&b, "  server logs: %s\n", strings.Join(s.Logs, ", "))
	}
	return b.String()
}

// markdown is the s2s table of bench.md.
func (s *s2sResult) markdown() string {
	var b strings.Builder
	b.WriteString("### s2s\n\nPairs across a Palisade-Palisade federation (a.test on 127.0.0.1, b.test on 127.0.0.2).\n\n")
	rows := s.rows()
	b.WriteString("| " + strings.Join(rows[0], " | ") + " |\n|" + strings.Repeat("---|", len(rows[0])) + "\n")
	for _, r := range rows[1:] {
		b.WriteString("| " + strings.Join(r, " | ") + " |\n")
	}
	b.WriteString("\n```\n" + s.notes() + "```\n")
	return b.String()
}

func (s *s2sResult) rows() [][]string {
	rows := [][]string{{"pairs", "msgs/s", "p50 ms", "p99 ms", "p999 ms", "latency samples", "server CPU cores (both)", "server CPU us/msg", "errors"}}
	for _, t := range s.Runs {
		lat := func(v float64) string {
			if t.Latency.N == 0 {
				return "-"
			}
			return fmtVal(&v)
		}
		rows = append(rows, []string{
			fmt.Sprint(t.Pairs), fmtVal(&t.MsgsPerSec), lat(t.Latency.P50), lat(t.Latency.P99), lat(t.Latency.P999),
			fmt.Sprint(t.Latency.N), fmtVal(&t.CPUCores), fmtVal(&t.CPUPerMsg), fmt.Sprint(t.Errors),
		})
	}
	return rows
}
