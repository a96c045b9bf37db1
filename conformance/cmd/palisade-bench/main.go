// Command palisade-bench runs the same XMPP workloads against Palisade,
// ejabberd and Prosody on loopback, one server at a time, and prints one
// table with every figure and Palisade's ratio to each peer. It also writes
// the table as bench.json and bench.md.
//
// Each server runs as a child process with its own configuration and data
// directory under a temporary directory; every server gets the same ECDSA
// P-256 certificate. Scenarios: idle sessions (held by a separate generator
// process so that each side has its own file-descriptor budget), logins/s
// with SCRAM and PLAIN, closed-loop pairs and open-loop rates.
//
//	palisade-bench [-quick] [-servers palisade,ejabberd,prosody] [-out DIR]
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/palisade-im/palisade/conformance/loadgen"
)

const (
	domain   = "localhost"
	password = "bench-password-1"
	// perUser is the number of idle sessions one account holds at most.
	perUser = 10
)

type options struct {
	servers      []string
	scenarios    map[string]bool
	out          string
	bin          string
	archive      string
	pairs        []int
	rates        []int
	openPairs    int
	window       int
	iq           bool // pairs send IQs instead of messages
	warmup       time.Duration
	length       time.Duration
	loginLen     time.Duration
	loginConc    int
	idleSteps    []int
	idleIPs      int
	idlePresence bool
	idleConc     int
	idleMech     string
	idleSettle   time.Duration
	keep         bool
	quick        bool
	rounds       int
	// s2s scenario (s2s.go)
	s2sPairs      []int
	s2sArchiveOff bool
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "idle-hold" {
		os.Exit(idleHoldMain(os.Args[2:]))
	}
	os.Exit(run(os.Args[1:]))
}

func ints(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("%q is not a positive number", f)
		}
		out = append(out, n)
	}
	return out, nil
}

func run(args []string) int {
	fs := flag.NewFlagSet("palisade-bench", flag.ContinueOnError)
	var o options
	servers := fs.String("servers", "palisade,palisade+archive,ejabberd,prosody", "servers to run, in order")
	scen := fs.String("scenarios", "idle,logins,pairs,open,s2s", "scenarios to run (s2s: pairs across two federated Palisade servers)")
	fs.StringVar(&o.out, "out", "bench-out", "directory for bench.json and bench.md")
	fs.StringVar(&o.bin, "palisade", "", "palisade binary (default: go build the repository)")
	fs.StringVar(&o.archive, "archive-toml", archiveOn, "TOML appended to Palisade's configuration for \"archive on\"")
	pairs := fs.String("pairs", "1,10,100,1000", "closed-loop pair counts")
	rates := fs.String("rates", "5000,10000,20000,40000", "open-loop rates (msgs/s)")
	fs.IntVar(&o.openPairs, "open-pairs", 10, "pairs carrying the open-loop traffic")
	fs.IntVar(&o.window, "window", 16, "closed loop: messages in flight per sender")
	fs.BoolVar(&o.iq, "iq", false, "pairs send IQ sets to each other's full JID instead of messages")
	fs.DurationVar(&o.warmup, "warmup", 2*time.Second, "warm-up before each measurement")
	fs.DurationVar(&o.length, "length", 8*time.Second, "measurement window of each traffic run")
	fs.DurationVar(&o.loginLen, "login-length", 6*time.Second, "measurement window of each login run")
	fs.IntVar(&o.loginConc, "login-conc", 16, "concurrent logins")
	idle := fs.String("idle", "10000,max", "idle-session steps; max is as many as the fd limit allows")
	fs.IntVar(&o.idleIPs, "idle-ips", 4, "source addresses 127.0.0.2.. for idle sessions")
	fs.BoolVar(&o.idlePresence, "idle-presence", true, "idle sessions send initial presence")
	fs.DurationVar(&o.idleSettle, "idle-settle", 5*time.Second, "wait after each idle step before sampling the server's RSS")
	fs.IntVar(&o.idleConc, "idle-conc", 32, "concurrent logins while filling idle sessions")
	fs.StringVar(&o.idleMech, "idle-mech", loadgen.SCRAMSHA256, "SASL mechanism of the idle sessions (SCRAM-SHA-1 where a server lacks it)")
	fs.BoolVar(&o.keep, "keep", false, "keep the temporary directory (configs, logs)")
	from := fs.String("from-json", "", "only print the table of an earlier bench.json again (into -out)")
	fs.BoolVar(&o.quick, "quick", false, "short run: pairs 1,10,100; rates 5000,10000; 2000 idle sessions; s2s 10 pairs; 3s windows")
	s2sPairs := fs.String("s2s-pairs", "1,10,100", "s2s scenario: pair counts across the federation")
	fs.BoolVar(&o.s2sArchiveOff, "s2s-archive-off", false, "s2s scenario: both servers with the archive off (default: -archive-toml)")
	fs.IntVar(&o.rounds, "rounds", 1, "paired rounds of the archive's cost: after the main pass, palisade and palisade+archive run the pairs this many times in all, back to back, and the report gives each pair count's median on/off ratio")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *from != "" {
		if err := rerender(os.Stdout, *from, o.out); err != nil {
			fmt.Fprintln(os.Stderr, "palisade-bench:", err)
			return 1
		}
		return 0
	}
	if o.quick {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		def := map[string]string{"pairs": "1,10,100", "rates": "5000,10000", "idle": "2000", "warmup": "1s", "length": "3s", "login-length": "3s", "s2s-pairs": "10"}
		for k, v := range def {
			if !set[k] {
				_ = fs.Set(k, v)
			}
		}
	}
	o.servers = strings.Split(*servers, ",")
	o.scenarios = map[string]bool{}
	for _, s := range strings.Split(*scen, ",") {
		switch s {
		case "idle", "logins", "pairs", "open", "s2s":
			o.scenarios[s] = true
		default:
			fmt.Fprintf(os.Stderr, "palisade-bench: unknown scenario %q\n", s)
			return 2
		}
	}
	var err error
	if o.rounds < 1 {
		fmt.Fprintln(os.Stderr, "palisade-bench: -rounds must be at least 1")
		return 2
	}
	if o.pairs, err = ints(*pairs); err != nil {
		fmt.Fprintln(os.Stderr, "palisade-bench: -pairs:", err)
		return 2
	}
	if o.s2sPairs, err = ints(*s2sPairs); err != nil {
		fmt.Fprintln(os.Stderr, "palisade-bench: -s2s-pairs:", err)
		return 2
	}
	if o.rates, err = ints(*rates); err != nil {
		fmt.Fprintln(os.Stderr, "palisade-bench: -rates:", err)
		return 2
	}
	fdMax := raiseNoFile()
	for _, f := range strings.Split(*idle, ",") {
		if f == "max" {
			o.idleSteps = append(o.idleSteps, fdMax-200)
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 {
			fmt.Fprintf(os.Stderr, "palisade-bench: -idle: %q is not a number or max\n", f)
			return 2
		}
		o.idleSteps = append(o.idleSteps, n)
	}

	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	rep, err := bench(ctx, o, fdMax)
	if err != nil {
		fmt.Fprintln(os.Stderr, "palisade-bench:", err)
		return 1
	}
	if err := rep.write(os.Stdout, o.out); err != nil {
		fmt.Fprintln(os.Stderr, "palisade-bench:", err)
		return 1
	}
	return 0
}

// raiseNoFile sets the open-file soft limit to the hard limit (children
// inherit it) and returns it.
func raiseNoFile() int {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 1024
	}
	lim.Cur = lim.Max
	_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	return int(lim.Cur)
}

func bench(ctx context.Context, o options, fdMax int) (*report, error) {
	tmp, err := os.MkdirTemp("", "palisade-bench-")
	if err != nil {
		return nil, err
	}
	if o.keep {
		fmt.Fprintf(os.Stderr, "bench: keeping %s\n", tmp)
	} else {
		defer os.RemoveAll(tmp)
	}
	certFile, keyFile, err := writeCert(tmp)
	if err != nil {
		return nil, err
	}
	if o.bin != "" {
		if o.bin, err = filepath.Abs(o.bin); err != nil {
			return nil, err
		}
	} else {
		o.bin = filepath.Join(tmp, "palisade")
		fmt.Fprintln(os.Stderr, "bench: building palisade")
		cmd := exec.CommandContext(ctx, "go", "build", "-o", o.bin, ".")
		cmd.Dir = repoRoot()
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("go build: %v\n%s", err, out)
		}
	}
	rep := newReport(o, fdMax)
	// The durable-write probe runs first, on the disk of the servers' data
	// directories, while nothing else runs.
	var durable *durableProbe
	if o.scenarios["pairs"] && slices.Contains(o.servers, "palisade+archive") {
		if p, err := probeDurable(tmp, 200); err != nil {
			fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		} else {
			durable = &p
		}
	}
	build := func(name string, round int) (server, error) {
		dir := filepath.Join(tmp, name)
		if round > 1 {
			dir += fmt.Sprintf("-round%d", round)
		}
		switch name {
		case "palisade":
			return &palisade{bin: o.bin, dir: dir, certFile: certFile, keyFile: keyFile}, nil
		case "palisade+archive":
			p := &palisade{bin: o.bin, dir: dir, certFile: certFile, keyFile: keyFile, archive: o.archive}
			if err := p.CheckConfig(); err != nil {
				rep.notRun(name, p.Settings(), "archive: "+err.Error())
				fmt.Fprintf(os.Stderr, "bench: %s not run: %v\n", name, err)
				return nil, nil
			}
			return p, nil
		case "ejabberd", "prosody":
			if _, err := exec.LookPath(map[string]string{"ejabberd": "ejabberdctl", "prosody": "prosody"}[name]); err != nil {
				rep.notRun(name, nil, "not installed (conformance/bench-peers.sh installs it)")
				return nil, nil
			}
			if name == "ejabberd" {
				return &ejabberd{dir: dir, certFile: certFile, keyFile: keyFile}, nil
			}
			return &prosody{dir: dir, certFile: certFile, keyFile: keyFile}, nil
		}
		return nil, fmt.Errorf("unknown server %q", name)
	}
	results := map[string]*serverResult{}
	for _, name := range o.servers {
		if !o.scenarios["idle"] && !o.scenarios["logins"] && !o.scenarios["pairs"] && !o.scenarios["open"] {
			break // s2s alone runs its own two servers
		}
		s, err := build(name, 1)
		if err != nil {
			return nil, err
		}
		if s == nil {
			continue
		}
		res := runServer(ctx, o, s, certFile)
		rep.add(res)
		results[name] = res
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
	var rounds []costRound
	if cr, ok := pairRound(1, results["palisade"], results["palisade+archive"]); ok && o.scenarios["pairs"] {
		rounds = append(rounds, cr)
		// The later rounds run the pairs alone, each server fresh.
		po := o
		po.scenarios = map[string]bool{"pairs": true}
		for round := 2; round <= o.rounds; round++ {
			fmt.Fprintf(os.Stderr, "bench: paired round %d of %d\n", round, o.rounds)
			var pair [2]*serverResult
			for i, name := range []string{"palisade", "palisade+archive"} {
				s, err := build(name, round)
				if err != nil || s == nil {
					return nil, fmt.Errorf("round %d: %s: %v", round, name, err)
				}
				pair[i] = runServer(ctx, po, s, certFile)
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
			}
			if cr, ok := pairRound(round, pair[0], pair[1]); ok {
				rounds = append(rounds, cr)
			}
		}
	}
	if o.scenarios["s2s"] {
		fmt.Fprintln(os.Stderr, "bench: s2s: pairs across a Palisade-Palisade federation")
		rep.S2S = runS2S(ctx, o, tmp)
	}
	rep.Cost = newArchiveCost(rounds)
	if rep.Cost != nil && durable != nil {
		rep.Cost.setCeiling(*durable, o.window)
	}
	return rep, nil
}

func repoRoot() string {
	_, file, _, ok := runtime.Caller(0)
	if ok {
		return filepath.Join(filepath.Dir(file), "..", "..", "..")
	}
	return "."
}

func tlsConfig(certFile string) (*tls.Config, error) {
	pem, err := os.ReadFile(certFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("no certificate in %s", certFile)
	}
	return &tls.Config{RootCAs: pool, ServerName: domain, MinVersion: tls.VersionTLS13}, nil
}

func accounts(n int) []loadgen.Account {
	out := make([]loadgen.Account, n)
	for i := range out {
		out[i] = loadgen.Account{User: fmt.Sprintf("u%d", i), Password: password, Resource: "r" + strconv.Itoa(i)}
	}
	return out
}

func logf(s server, format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: %s %s: %s\n", time.Now().Format("15:04:05"), s.Name(), fmt.Sprintf(format, args...))
}

// runServer runs every scenario against one server.
func runServer(ctx context.Context, o options, s server, certFile string) *serverResult {
	res := &serverResult{Name: s.Name()}
	fail := func(err error) *serverResult {
		res.Errors = append(res.Errors, err.Error())
		logf(s, "error: %v", err)
		return res
	}
	tc, err := tlsConfig(certFile)
	if err != nil {
		return fail(err)
	}
	logf(s, "starting")
	if err := s.Start(ctx); err != nil {
		return fail(fmt.Errorf("start: %w", err))
	}
	defer func() {
		if err := s.Stop(); err != nil {
			res.Errors = append(res.Errors, "stop: "+err.Error())
		}
		res.Settings = s.Settings()
	}()
	d := &loadgen.Dialer{Addr: s.Addr(), Domain: domain, TLS: tc, Mechanisms: []string{loadgen.PLAIN}}

	maxPairs := 0
	for _, p := range append(append([]int{}, o.pairs...), o.openPairs) {
		maxPairs = max(maxPairs, p)
	}
	maxIdle := 0
	for _, n := range o.idleSteps {
		maxIdle = max(maxIdle, n)
	}
	nUsers := max(2*maxPairs, (maxIdle+perUser-1)/perUser, 64)
	users := accounts(nUsers)
	t0 := time.Now()
	if err := d.Register(ctx, users); err != nil {
		return fail(fmt.Errorf("register %d accounts: %w", nUsers, err))
	}
	logf(s, "registered %d accounts in %.1fs", nUsers, time.Since(t0).Seconds())
	// One login to record what PLAIN negotiates.
	if c, err := d.Login(ctx, users[0], false); err != nil {
		return fail(fmt.Errorf("first login: %w", err))
	} else {
		res.Negotiated = c.Info
		c.Close()
	}

	if o.scenarios["idle"] {
		logf(s, "idle sessions %v", o.idleSteps)
		idle, err := runIdle(ctx, o, s, certFile, nUsers)
		res.Idle = idle
		if err != nil {
			res.Errors = append(res.Errors, "idle: "+err.Error())
			logf(s, "idle: %v", err)
		}
		// A fresh process for the traffic runs, so that idle-session
		// memory does not colour them and vice versa.
		if err := s.Stop(); err != nil {
			res.Errors = append(res.Errors, "stop after idle: "+err.Error())
		}
		if err := s.Start(ctx); err != nil {
			return fail(fmt.Errorf("restart after idle: %w", err))
		}
		d.Addr = s.Addr()
	}
	sampler := &loadgen.Sampler{PID: s.PID()}

	if o.scenarios["logins"] {
		for _, mechs := range [][]string{{loadgen.SCRAMSHA256, loadgen.SCRAMSHA1}, {loadgen.PLAIN}} {
			quiesce(ctx, s)
			ld := &loadgen.Dialer{Addr: d.Addr, Domain: domain, TLS: tc, Mechanisms: mechs, LocalIPs: localIPs(o.idleIPs)}
			lr, err := ld.RunLogins(ctx, users, o.loginConc, o.warmup/2, o.loginLen, sampler)
			if err != nil {
				res.Errors = append(res.Errors, fmt.Sprintf("logins %s: %v", mechs[0], err))
			}
			logf(s, "logins %s: %.0f/s (errors %d %s)", lr.Mechanism, lr.PerSec, lr.Errors, lr.FirstErr)
			res.Logins = append(res.Logins, lr)
		}
	}
	if o.scenarios["pairs"] {
		for _, n := range o.pairs {
			quiesce(ctx, s)
			tr, err := d.RunPairs(ctx, loadgen.Traffic{Pairs: n, Window: o.window, IQ: o.iq, Warmup: o.warmup, Length: o.length, Accounts: users, Sampler: sampler})
			if err != nil {
				res.Errors = append(res.Errors, fmt.Sprintf("pairs %d: %v", n, err))
			}
			logf(s, "pairs %d: %.0f msgs/s p50 %.2f p99 %.2f ms (errors %d %s; undrained %d)", n, tr.MsgsPerSec, tr.Latency.P50, tr.Latency.P99, tr.Errors, tr.FirstErr, tr.Undrained)
			res.Pairs = append(res.Pairs, tr)
			if !alive(s) {
				return fail(fmt.Errorf("server exited during pairs %d", n))
			}
		}
	}
	if o.scenarios["open"] {
		if o.scenarios["pairs"] {
			// A fresh process again: after a thousand pairs some servers
			// (Prosody) stay slow for longer than quiesce waits.
			if err := s.Stop(); err != nil {
				res.Errors = append(res.Errors, "stop before open loop: "+err.Error())
			}
			if err := s.Start(ctx); err != nil {
				return fail(fmt.Errorf("restart before open loop: %w", err))
			}
			d.Addr = s.Addr()
			sampler = &loadgen.Sampler{PID: s.PID()}
		}
		for _, r := range o.rates {
			quiesce(ctx, s)
			tr, err := d.RunPairs(ctx, loadgen.Traffic{Pairs: o.openPairs, Rate: float64(r), IQ: o.iq, Warmup: o.warmup, Length: o.length, Accounts: users, Sampler: sampler})
			if err != nil {
				res.Errors = append(res.Errors, fmt.Sprintf("open %d/s: %v", r, err))
			}
			logf(s, "open %d/s: %.0f msgs/s p50 %.2f p99 %.2f ms missing %d (errors %d %s; undrained %d)", r, tr.MsgsPerSec, tr.Latency.P50, tr.Latency.P99, tr.Missing, tr.Errors, tr.FirstErr, tr.Undrained)
			res.Open = append(res.Open, tr)
			if !alive(s) {
				return fail(fmt.Errorf("server exited during open loop %d/s", r))
			}
		}
	}
	return res
}

// quiesce waits until the server has used less than 5% of a core for half
// a second (at most 30s), so that one run does not pay for the clean-up of
// the one before (closing sessions, collecting garbage).
func quiesce(ctx context.Context, s server) {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		a, err := loadgen.SampleTree(s.PID())
		if err != nil {
			return
		}
		time.Sleep(500 * time.Millisecond)
		b, err := loadgen.SampleTree(s.PID())
		if err != nil || b.CPU-a.CPU < 25*time.Millisecond {
			return
		}
	}
}

func alive(s server) bool {
	return syscall.Kill(s.PID(), 0) == nil
}

func localIPs(n int) []net.IP {
	var out []net.IP
	for i := 0; i < n; i++ {
		out = append(out, net.IPv4(127, 0, 0, byte(2+i)))
	}
	return out
}
