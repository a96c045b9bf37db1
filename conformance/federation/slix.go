package federation

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// PythonBin is Debian's interpreter, the one slixmpp is installed for.
const PythonBin = "/usr/bin/python3"

// User is an account on one of the test servers.
type User struct {
	JID      string // bare JID
	Password string
	Addr     string // host:port of its server's c2s listener (STARTTLS)
	CAFile   string // the CA its server's certificate chains to
}

// SlixSteps are the steps of testdata/slix_fed.py, in the order it runs
// them.
type SlixSteps struct {
	Carbons      bool     // enable carbons (XEP-0280) first
	Subscribe    string   // JID to ask for a subscription
	WaitPresence string   // JID to wait for (subscription both, available)
	Send         []string // "JID=BODY" chat messages
	Expect       []string // bodies to wait for
	ExpectError  string   // a message error condition to wait for ("any": any)
	MAMWith      string   // JID to query the archive with
	ExpectCarbon []string // "sent:BODY" or "received:BODY" carbons to wait for
	Linger       time.Duration
	Absent       []string // bodies that must not have arrived after Linger
}

// Slix is a running testdata/slix_fed.py.
type Slix struct {
	Name string
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
	err  error
}

// script is testdata/slix_fed.py beside this package.
func script() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "testdata", "slix_fed.py")
}

// StartSlix runs testdata/slix_fed.py as u with the given steps, killed
// after timeout or when the test ends; its output goes into the test log
// if the test failed.
func StartSlix(t testing.TB, name string, u User, steps SlixSteps, timeout time.Duration) *Slix {
	t.Helper()
	requireBin(t, PythonBin, "python3")
	host, port, err := net.SplitHostPort(u.Addr)
	if err != nil {
		t.Fatal(err)
	}
	args := []string{script(), "--host", host, "--port", port, "--ca", u.CAFile,
		"--timeout", fmt.Sprint(int(timeout.Seconds()) - 2)}
	add := func(flag, v string) {
		if v != "" {
			args = append(args, flag, v)
		}
	}
	if steps.Carbons {
		args = append(args, "--carbons")
	}
	add("--subscribe", steps.Subscribe)
	add("--wait-presence", steps.WaitPresence)
	for _, s := range steps.Send {
		add("--send", s)
	}
	for _, s := range steps.Expect {
		add("--expect", s)
	}
	add("--expect-error", steps.ExpectError)
	for _, s := range steps.ExpectCarbon {
		add("--expect-carbon", s)
	}
	add("--mam-with", steps.MAMWith)
	if steps.Linger > 0 {
		add("--linger", fmt.Sprint(steps.Linger.Seconds()))
	}
	for _, s := range steps.Absent {
		add("--absent", s)
	}
	args = append(args, u.JID+":"+u.Password)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	c := &Slix{Name: name, out: &syncBuffer{}, done: make(chan struct{})}
	c.cmd = exec.CommandContext(ctx, PythonBin, args...)
	c.cmd.Env = append(os.Environ(), "PYTHONUNBUFFERED=1", "HOME="+t.TempDir())
	c.cmd.Stdout, c.cmd.Stderr = c.out, c.out
	c.cmd.WaitDelay = 2 * time.Second
	if err := c.cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { c.err = c.cmd.Wait(); cancel(); close(c.done) }()
	t.Cleanup(func() {
		select {
		case <-c.done:
		default:
			_ = c.cmd.Process.Kill()
			<-c.done
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", name, c.out.String())
		}
	})
	return c
}

// Output is what the script printed so far.
func (c *Slix) Output() string { return c.out.String() }

// Wait waits for the script to exit and returns its error (nil on exit 0).
func (c *Slix) Wait() error {
	<-c.done
	return c.err
}

// MustSucceed waits for the script and fails the test unless it exited 0.
func (c *Slix) MustSucceed(t testing.TB) string {
	t.Helper()
	if err := c.Wait(); err != nil {
		t.Fatalf("%s failed: %v\n%s", c.Name, err, c.Output())
	}
	return c.Output()
}

// WaitLine waits until a line of the output matches re (anchored at both
// ends), failing the test after timeout or when the script exits first.
func (c *Slix) WaitLine(t testing.TB, re string, timeout time.Duration) string {
	t.Helper()
	rx := regexp.MustCompile("(?m)^" + re + "$")
	deadline := time.After(timeout)
	for {
		if m := rx.FindString(c.Output()); m != "" {
			return m
		}
		select {
		case <-c.done:
			if m := rx.FindString(c.Output()); m != "" {
				return m
			}
			t.Fatalf("%s exited (%v) before printing /%s/:\n%s", c.Name, c.err, re, c.Output())
		case <-deadline:
			t.Fatalf("%s: no line /%s/ within %v:\n%s", c.Name, re, timeout, c.Output())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// HasLine tells whether a line of out matches re (anchored).
func HasLine(out, re string) bool {
	return regexp.MustCompile("(?m)^" + re + "$").MatchString(out)
}

// Lines returns the lines of out starting with prefix.
func Lines(out, prefix string) []string {
	var ls []string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, prefix) {
			ls = append(ls, l)
		}
	}
	return ls
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Exchange has a and b (users on two federated servers) subscribe to each
// other, wait for each other's presence and send each other one message
// ("hello from A's JID" and back), and fails the test unless both see it
// all. It returns both outputs.
func Exchange(t testing.TB, a, b User, timeout time.Duration) (string, string) {
	t.Helper()
	ab, ba := "hello from "+a.JID, "hello from "+b.JID
	// b first, so that a's request finds it online.
	cb := StartSlix(t, "slixmpp "+b.JID, b, SlixSteps{
		WaitPresence: a.JID, Send: []string{a.JID + "=" + ba}, Expect: []string{ab}, Linger: 2 * time.Second,
	}, timeout)
	cb.WaitLine(t, `LOGIN OK .*`, timeout)
	ca := StartSlix(t, "slixmpp "+a.JID, a, SlixSteps{
		Subscribe: b.JID, WaitPresence: b.JID, Send: []string{b.JID + "=" + ab}, Expect: []string{ba}, Linger: 2 * time.Second,
	}, timeout)
	return ca.MustSucceed(t), cb.MustSucceed(t)
}
