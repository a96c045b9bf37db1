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

// proc is a server process started by a test, with its output in a file.
type proc struct {
	name    string
	cmd     *exec.Cmd
	done    chan struct{}
	outFile string
}

// startProc starts name args... in dir with stdout and stderr to
// dir/logName. The child is killed if the test binary dies.
func startProc(dir, logName string, env []string, name string, args ...string) (*proc, error) {
	path := filepath.Join(dir, logName)
	lf, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("federation: %w", err)
	}
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("federation: start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{}), outFile: path}
	go func() { _ = cmd.Wait(); lf.Close(); close(p.done) }()
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

// stop sends SIGTERM to term (the server process proper, which may be a
// descendant of the child), waits up to 15 s for the child to exit, then
// SIGKILLs the child and every descendant of it.
func (p *proc) stop(t testing.TB, term []int) {
	if p.exited() {
		return
	}
	for _, pid := range term {
		_ = syscall.Kill(pid, syscall.SIGTERM)
	}
	select {
	case <-p.done:
		return
	case <-time.After(15 * time.Second):
	}
	t.Logf("%s (pid %d) did not stop within 15s of SIGTERM: killing it", p.name, p.cmd.Process.Pid)
	for _, pid := range treePIDs(p.cmd.Process.Pid) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	<-p.done
}

// treePIDs is pid and its descendants (from /proc), parents first.
func treePIDs(pid int) []int {
	children := map[int][]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so split after ')'.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 2 {
			continue
		}
		pp, _ := strconv.Atoi(f[1])
		children[pp] = append(children[pp], n)
	}
	out := []int{pid}
	for i := 0; i < len(out); i++ {
		out = append(out, children[out[i]]...)
	}
	return out
}

// freePort returns a port free on host, found by listening on port 0.
func freePort(host string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, fmt.Errorf("federation: free port on %s: %w", host, err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitPort waits until addr accepts TCP connections, failing when the
// process exits first or after timeout.
func waitPort(ctx context.Context, p *proc, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if p.exited() {
			return fmt.Errorf("federation: %s exited before %s accepted connections (%v):\n%s", p.name, addr, p.cmd.ProcessState, readTail(p.outFile))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("federation: %s not accepting on %s after %v:\n%s", p.name, addr, timeout, readTail(p.outFile))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// readTail is the last 8 KiB of a file, for error messages.
func readTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	if len(b) > 8192 {
		b = b[len(b)-8192:]
	}
	return string(b)
}

// runCmd runs a short command to completion and returns its error with
// its output.
func runCmd(ctx context.Context, env []string, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("federation: %s %s: %w\n%s", name, strings.Join(args, " "), err, out)
	}
	return nil
}
