package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/palisade-im/palisade/conformance/loadgen"
)

// idleStep is one measured point of the idle-session scenario.
type idleStep struct {
	Target        int     `json:"target"`
	Reached       int     `json:"reached"`
	LoginSeconds  float64 `json:"login_seconds"`
	ServerRSS     int64   `json:"server_rss_bytes"`
	PerSessionKiB float64 `json:"rss_per_session_kib"`
	Err           string  `json:"error,omitempty"`
}

// idleResult is the idle-session scenario of one server.
type idleResult struct {
	BaseRSS int64      `json:"server_rss_before_bytes"`
	FDLimit int        `json:"fd_limit"`
	IPs     int        `json:"source_addresses"`
	Steps   []idleStep `json:"steps"`
}

// runIdle holds idle sessions from a child generator process (its own fd
// budget) and samples the server's RSS at each step.
func runIdle(ctx context.Context, o options, s server, certFile string, nUsers int) (*idleResult, error) {
	var lim syscall.Rlimit
	_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
	res := &idleResult{FDLimit: int(lim.Cur), IPs: o.idleIPs}
	time.Sleep(time.Second)
	base, err := loadgen.SampleTree(s.PID())
	if err != nil {
		return res, err
	}
	res.BaseRSS = base.RSS
	exe, err := os.Executable()
	if err != nil {
		return res, err
	}
	targets := ""
	for i, t := range o.idleSteps {
		if i > 0 {
			targets += ","
		}
		targets += fmt.Sprint(t)
	}
	cmd := exec.CommandContext(ctx, exe, "idle-hold", "-addr", s.Addr(), "-ca", certFile,
		"-users", fmt.Sprint(nUsers), "-targets", targets, "-ips", fmt.Sprint(o.idleIPs), "-presence="+fmt.Sprint(o.idlePresence), "-conc", fmt.Sprint(o.idleConc), "-mech", o.idleMech)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = 30 * time.Second
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return res, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return res, err
	}
	if err := cmd.Start(); err != nil {
		return res, fmt.Errorf("start generator: %w", err)
	}
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		var st loadgen.IdleStep
		if err := json.Unmarshal(sc.Bytes(), &st); err != nil {
			continue
		}
		// Let the server finish what the logins started before sampling.
		time.Sleep(o.idleSettle)
		ps, err := loadgen.SampleTree(s.PID())
		step := idleStep{Target: st.Target, Reached: st.Reached, LoginSeconds: st.Seconds, Err: st.Err}
		if err == nil {
			step.ServerRSS = ps.RSS
			if st.Reached > 0 {
				step.PerSessionKiB = float64(ps.RSS-base.RSS) / float64(st.Reached) / 1024
			}
		} else {
			step.Err = "sample: " + err.Error()
		}
		res.Steps = append(res.Steps, step)
		fmt.Fprintf(os.Stderr, "bench: %s %s: idle %d/%d sessions, server RSS %.1f MiB, %.1f KiB/session %s\n",
			time.Now().Format("15:04:05"), s.Name(), st.Reached, st.Target, float64(step.ServerRSS)/(1<<20), step.PerSessionKiB, st.Err)
		if _, err := io.WriteString(stdin, "next\n"); err != nil {
			break
		}
	}
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		return res, fmt.Errorf("generator: %w", err)
	}
	return res, nil
}

// idleHoldMain is the child generator: it logs in sessions step by step,
// prints one JSON line per step and waits for a line on stdin before going
// on; end of stdin closes every session.
func idleHoldMain(args []string) int {
	fs := flag.NewFlagSet("idle-hold", flag.ContinueOnError)
	addr := fs.String("addr", "", "server STARTTLS address")
	ca := fs.String("ca", "", "certificate to trust")
	users := fs.Int("users", 1, "accounts u0..uN-1")
	targets := fs.String("targets", "1000", "session counts")
	ips := fs.Int("ips", 4, "source addresses 127.0.0.2..")
	conc := fs.Int("conc", 32, "concurrent logins")
	presence := fs.Bool("presence", true, "send initial presence")
	mech := fs.String("mech", loadgen.SCRAMSHA256, "SASL mechanism")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	steps, err := ints(*targets)
	if err != nil {
		fmt.Fprintln(os.Stderr, "idle-hold:", err)
		return 2
	}
	raiseNoFile()
	tc, err := tlsConfig(*ca)
	if err != nil {
		fmt.Fprintln(os.Stderr, "idle-hold:", err)
		return 1
	}
	d := &loadgen.Dialer{Addr: *addr, Domain: domain, TLS: tc, Mechanisms: []string{*mech, loadgen.SCRAMSHA1}, LocalIPs: localIPs(*ips), Timeout: 15 * time.Second}
	in := bufio.NewScanner(os.Stdin)
	enc := json.NewEncoder(os.Stdout)
	account := func(i int) loadgen.Account {
		return loadgen.Account{User: fmt.Sprintf("u%d", i%*users), Password: password, Resource: fmt.Sprintf("idle%d", i)}
	}
	err = d.HoldIdle(context.Background(), account, *presence, steps, *conc, func(st loadgen.IdleStep) bool {
		if err := enc.Encode(st); err != nil {
			return false
		}
		return in.Scan()
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "idle-hold:", err)
		return 1
	}
	return 0
}
