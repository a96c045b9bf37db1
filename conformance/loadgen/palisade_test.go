package loadgen

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/palisade-im/palisade/modules/all"
	"github.com/palisade-im/palisade/server"
	"github.com/palisade-im/palisade/server/config"
	"github.com/palisade-im/palisade/server/module"
	"github.com/palisade-im/palisade/storage/sqlite"
	"go.uber.org/zap"
)

const testPassword = "loadgen-password"

// startPalisade runs the real server in-process on loopback with in-band
// registration on and returns a dialer trusting its certificate.
func startPalisade(t *testing.T) *Dialer {
	t.Helper()
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	toml := fmt.Sprintf(`[server]
domains = ["localhost"]
data_dir = %q
[listen]
c2s = %q
c2s_direct_tls = ""
websocket = ""
admin = ""
[limits]
max_sessions_per_user = 100
max_unauthenticated_per_ip = 0
connection_rate_per_ip = 0.0
[modules.register]
allow = true
`, dir, addr)
	cfg, err := config.Parse("bench-test.toml", []byte(toml), module.ConfigRegistry{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	st, err := sqlite.Open(ctx, filepath.Join(dir, "palisade.db"))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(cfg, st, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("server did not stop")
		}
		st.Close()
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("listener %s not up: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	pem, err := os.ReadFile(filepath.Join(dir, "certs", "server.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return &Dialer{Addr: addr, Domain: "localhost", TLS: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13},
		Mechanisms: []string{PLAIN}, LocalIPs: []net.IP{net.IPv4(127, 0, 0, 2), net.IPv4(127, 0, 0, 3)}}
}

func testAccounts(n int) []Account {
	out := make([]Account, n)
	for i := range out {
		out[i] = Account{User: fmt.Sprintf("lg%d", i), Password: testPassword, Resource: fmt.Sprintf("res%d", i)}
	}
	return out
}

func TestLoginAgainstPalisade(t *testing.T) {
	d := startPalisade(t)
	ctx := context.Background()
	accts := testAccounts(2)
	if err := d.Register(ctx, accts); err != nil {
		t.Fatal(err)
	}
	if err := d.Register(ctx, accts[:1]); err == nil {
		t.Error("registering an existing account succeeded")
	}
	for _, mech := range []string{PLAIN, SCRAMSHA256, SCRAMSHA1} {
		ld := d.WithMechanisms(mech)
		c, err := ld.Login(ctx, accts[0], true)
		if err != nil {
			t.Fatalf("%s: %v", mech, err)
		}
		if c.JID != "lg0@localhost/res0" {
			t.Errorf("%s: bound %q", mech, c.JID)
		}
		if c.Info.Mechanism != mech || c.Info.TLSVersion != "TLS 1.3" {
			t.Errorf("%s: info %+v", mech, c.Info)
		}
		if mech != PLAIN && c.Info.Iterations != 4096 {
			t.Errorf("%s: iterations %d, want 4096", mech, c.Info.Iterations)
		}
		if err := c.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	}
	bad := accts[1]
	bad.Password = "wrong-password"
	for _, mech := range []string{PLAIN, SCRAMSHA256} {
		ld := d.WithMechanisms(mech)
		if _, err := ld.Login(ctx, bad, false); !errors.Is(err, ErrAuth) {
			t.Errorf("%s with a wrong password: %v, want ErrAuth", mech, err)
		}
	}
	ld := d.WithMechanisms("X-NONE")
	if _, err := ld.Login(ctx, accts[0], false); err == nil || !strings.Contains(err.Error(), "offered") {
		t.Errorf("unsupported mechanism: %v", err)
	}
}

func TestTrafficAgainstPalisade(t *testing.T) {
	d := startPalisade(t)
	ctx := context.Background()
	accts := testAccounts(4)
	if err := d.Register(ctx, accts); err != nil {
		t.Fatal(err)
	}
	t.Run("closed", func(t *testing.T) {
		r, err := d.RunPairs(ctx, Traffic{Pairs: 2, Window: 4, Warmup: 200 * time.Millisecond, Length: 500 * time.Millisecond, Accounts: accts})
		if err != nil {
			t.Fatal(err)
		}
		if r.Errors != 0 || r.Delivered == 0 || r.Latency.N == 0 {
			t.Fatalf("closed loop: %+v", r)
		}
		// Every message stamped in the window was sent and counted once.
		if r.Latency.N > r.Sent {
			t.Errorf("%d latency samples for %d sent", r.Latency.N, r.Sent)
		}
	})
	t.Run("open", func(t *testing.T) {
		r, err := d.RunPairs(ctx, Traffic{Pairs: 2, Rate: 400, Warmup: 200 * time.Millisecond, Length: 500 * time.Millisecond, Accounts: accts})
		if err != nil {
			t.Fatal(err)
		}
		if r.Errors != 0 || r.Sent == 0 || r.Missing != 0 || r.Latency.N != r.Sent {
			t.Fatalf("open loop lost messages: %+v", r)
		}
	})
	t.Run("iq", func(t *testing.T) {
		r, err := d.RunPairs(ctx, Traffic{Pairs: 2, Window: 4, IQ: true, Warmup: 200 * time.Millisecond, Length: 500 * time.Millisecond, Accounts: accts})
		if err != nil {
			t.Fatal(err)
		}
		// The IQs are relayed to the partner's full JID and counted there.
		if r.Errors != 0 || r.Delivered == 0 || r.Latency.N == 0 || r.Latency.N > r.Sent {
			t.Fatalf("closed-loop IQs: %+v", r)
		}
	})
	t.Run("logins", func(t *testing.T) {
		ld := d.WithMechanisms(SCRAMSHA256)
		r, err := ld.RunLogins(ctx, accts, 2, 100*time.Millisecond, 500*time.Millisecond, &Sampler{PID: os.Getpid()})
		if err != nil {
			t.Fatal(err)
		}
		if r.Errors != 0 || r.Logins == 0 || r.Mechanism != SCRAMSHA256 || r.Info.Iterations != 4096 {
			t.Fatalf("logins: %+v", r)
		}
	})
	t.Run("idle", func(t *testing.T) {
		var steps []IdleStep
		acct := func(i int) Account {
			a := accts[i%len(accts)]
			a.Resource = fmt.Sprintf("idle%d", i)
			return a
		}
		err := d.HoldIdle(ctx, acct, true, []int{5, 12}, 4, func(s IdleStep) bool {
			steps = append(steps, s)
			return true
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(steps) != 2 || steps[0].Reached != 5 || steps[1].Reached != 12 || steps[1].Err != "" {
			t.Fatalf("steps = %+v", steps)
		}
		// A stop after the first step holds no more.
		steps = nil
		err = d.HoldIdle(ctx, acct, false, []int{3, 100}, 2, func(s IdleStep) bool {
			steps = append(steps, s)
			return false
		})
		if err != nil || len(steps) != 1 || steps[0].Reached != 3 {
			t.Fatalf("stopped hold: %v %+v", err, steps)
		}
	})
}
