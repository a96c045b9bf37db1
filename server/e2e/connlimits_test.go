package e2e

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/palisade-im/palisade/server/config"
	"golang.org/x/net/websocket"
)

// Tests of the [limits] connection keys: the caps on unauthenticated
// connections, the login deadline from accept, and the session's byte
// rate. Held connections come from addresses of their own (127.0.0.x):
// newEnv's listener probes come from 127.0.0.1.

// refusedEarly dials the STARTTLS listener from local without sending
// anything and reports whether the server closed it with a
// policy-violation stream error (refused by the gate).
func refusedEarly(t *testing.T, e *env, local string) bool {
	t.Helper()
	d := net.Dialer{Timeout: short, LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
	c, err := d.Dial("tcp", e.cfg.Listen.C2S)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// An accepted connection waits for the stream header: silence.
	_ = c.SetReadDeadline(time.Now().Add(time.Second))
	b, err := io.ReadAll(c)
	if errors.Is(err, os.ErrDeadlineExceeded) && len(b) == 0 {
		return false
	}
	if !strings.Contains(string(b), "policy-violation") {
		t.Fatalf("from %s: got %q (%v), want silence or a policy-violation stream error", local, b, err)
	}
	return true
}

// wsFrom opens a WebSocket connection from local; nil when it fails.
func wsFrom(t *testing.T, e *env, local string) *websocket.Conn {
	t.Helper()
	cfg, err := websocket.NewConfig("wss://"+e.cfg.Listen.WebSocket+"/xmpp-websocket", "https://localhost/")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Protocol = []string{"xmpp"}
	d := net.Dialer{Timeout: short, LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
	raw, err := d.Dial("tcp", e.cfg.Listen.WebSocket)
	if err != nil {
		t.Fatal(err)
	}
	tc := tls.Client(raw, e.tlsConfig())
	_ = tc.SetDeadline(time.Now().Add(short))
	if err := tc.Handshake(); err != nil {
		_ = raw.Close()
		return nil
	}
	_ = tc.SetDeadline(time.Time{})
	ws, err := websocket.NewClient(cfg, tc)
	if err != nil {
		_ = tc.Close()
		return nil
	}
	t.Cleanup(func() { _ = ws.Close() })
	return ws
}

// TestConnLimitUnauthenticatedPerIP: past max_unauthenticated_per_ip a
// new connection from that address is refused before TLS, on STARTTLS,
// direct TLS and WebSocket alike, while another address still connects;
// a connection that logs in frees its place.
func TestConnLimitUnauthenticatedPerIP(t *testing.T) {
	t.Parallel()
	const perIP = 3
	e := newEnv(t, func(c *config.Config) {
		c.Limits.MaxUnauthenticatedPerIP = perIP
		c.Limits.ConnectionRatePerIP = 0
	})
	const from = "127.0.0.7"
	held := make([]*client, perIP)
	for i := range held {
		held[i] = dialFrom(t, e, modeStartTLS, from)
		held[i].secure() // TLS done, SASL not yet
	}
	if !refusedEarly(t, e, from) {
		t.Fatalf("connection %d from %s accepted with max_unauthenticated_per_ip = %d", perIP+1, from, perIP)
	}
	// Direct TLS: closed before the handshake.
	d := net.Dialer{Timeout: short, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	if raw, err := d.Dial("tcp", e.cfg.Listen.C2SDirectTLS); err == nil {
		tc := tls.Client(raw, e.tlsConfig())
		_ = tc.SetDeadline(time.Now().Add(short))
		if err := tc.Handshake(); err == nil {
			t.Fatal("direct TLS connection past the per-address cap completed its handshake")
		}
		_ = raw.Close()
	}
	if ws := wsFrom(t, e, from); ws != nil {
		t.Fatal("WebSocket connection past the per-address cap was accepted")
	}
	// Another address is not affected.
	other := dialFrom(t, e, modeStartTLS, "127.0.0.8")
	other.openOK()

	// One held connection logs in: it no longer counts.
	if n := held[0].authPlain("alice", users["alice"]); !n.Is(nsSASL, "success") {
		t.Fatalf("auth: %s", n)
	}
	held[0].openOK()
	held[0].bind("a")
	c := dialFrom(t, e, modeStartTLS, from)
	c.openOK()
	if !refusedEarly(t, e, from) {
		t.Fatal("the cap did not hold again once the freed place was taken")
	}
	// A connection that closes frees its place too (the server notices
	// the close asynchronously: wait for it).
	held[1].close()
	deadline := time.Now().Add(short)
	for refusedEarly(t, e, from) {
		if time.Now().After(deadline) {
			t.Fatal("a closed unauthenticated connection kept its place")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestConnLimitUnauthenticatedTotal: max_unauthenticated counts over all
// addresses and listeners.
func TestConnLimitUnauthenticatedTotal(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *config.Config) {
		c.Limits.MaxUnauthenticated = 2
		c.Limits.ConnectionRatePerIP = 0
	})
	a := dialFrom(t, e, modeStartTLS, "127.0.0.9")
	a.openOK()
	b := dialFrom(t, e, modeDirectTLS, "127.0.0.10")
	b.openOK()
	if !refusedEarly(t, e, "127.0.0.11") {
		t.Fatal("a third unauthenticated connection was accepted with max_unauthenticated = 2")
	}
}

// TestConnLimitRatePerIP: past connection_rate_per_ip's burst, new
// connections from the address are refused; another address connects.
func TestConnLimitRatePerIP(t *testing.T) {
	t.Parallel()
	const burst = 5
	e := newEnv(t, func(c *config.Config) {
		c.Limits.ConnectionRatePerIP = 0.01 // one every 100 s: none refills during the test
		c.Limits.ConnectionBurstPerIP = burst
	})
	const from = "127.0.0.12"
	for i := 0; i < burst; i++ {
		c := dialFrom(t, e, modeStartTLS, from)
		c.openOK()
		c.close()
	}
	if !refusedEarly(t, e, from) {
		t.Fatalf("connection %d from %s accepted with a burst of %d", burst+1, from, burst)
	}
	c := dialFrom(t, e, modeStartTLS, "127.0.0.13")
	c.openOK()
}

// TestConnLimitSlowSenderDeadline: a client that sends one byte a second
// is cut with connection-timeout when auth_timeout has passed since
// accept, whatever each read waited: on STARTTLS, and on direct TLS where
// it first spends most of the deadline before its TLS handshake (the
// handshake used to get an auth_timeout of its own, doubling it).
func TestConnLimitSlowSenderDeadline(t *testing.T) {
	t.Parallel()
	const deadline = 3 * time.Second
	e := newEnv(t, func(c *config.Config) { c.Limits.AuthTimeout = config.Duration(deadline) })
	header := "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>"
	for _, tc := range []struct {
		name      string
		directTLS bool
	}{{"starttls", false}, {"direct-tls", true}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			addr := e.cfg.Listen.C2S
			if tc.directTLS {
				addr = e.cfg.Listen.C2SDirectTLS
			}
			start := time.Now()
			raw, err := net.DialTimeout("tcp", addr, short)
			if err != nil {
				t.Fatal(err)
			}
			defer raw.Close()
			var conn net.Conn = raw
			if tc.directTLS {
				// Idle for two thirds of the deadline, then a handshake.
				time.Sleep(2 * deadline / 3)
				tlc := tls.Client(raw, e.tlsConfig())
				_ = tlc.SetDeadline(time.Now().Add(short))
				if err := tlc.Handshake(); err != nil {
					t.Fatal(err)
				}
				_ = tlc.SetDeadline(time.Time{})
				conn = tlc
			}
			// Read what the server sends (the header, then the stream
			// error) while writing one byte a second.
			got := make(chan string, 1)
			go func() {
				_ = conn.SetReadDeadline(time.Now().Add(3 * deadline))
				b, _ := io.ReadAll(conn)
				got <- string(b)
			}()
			var out string
			tick := time.NewTicker(time.Second)
			defer tick.Stop()
		send:
			for i := 0; ; i++ {
				select {
				case out = <-got:
					break send
				case <-tick.C:
					if i < len(header) {
						_, _ = conn.Write([]byte{header[i]})
					}
				}
			}
			took := time.Since(start)
			if !strings.Contains(out, "connection-timeout") {
				t.Fatalf("got %q, want a connection-timeout stream error", out)
			}
			// Cut at the deadline from accept: well before a second one.
			if took < deadline-100*time.Millisecond || took > deadline+deadline/2 {
				t.Fatalf("cut after %v, want about %v from accept", took, deadline)
			}
		})
	}
}

// TestConnLimitReadRate: a session sending faster than
// read_bytes_per_second is slowed down, not disconnected: all its
// messages arrive in order, later than the rate allows at once, and the
// session works afterwards.
func TestConnLimitReadRate(t *testing.T) {
	t.Parallel()
	const rate, burst = 20000, 4096
	e := newEnv(t, func(c *config.Config) {
		c.Limits.ReadBytesPerSecond = rate
		c.Limits.ReadBurstBytes = burst
	})
	alice := login(t, e, modeStartTLS, "alice", "a")
	bob := login(t, e, modeStartTLS, "bob", "b")
	const n = 40
	body := strings.Repeat("x", 1000)
	var all strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&all, "<message to='bob@localhost/b' id='r%d' type='chat'><body>%s</body></message>", i, body)
	}
	total := all.Len()
	start := time.Now()
	sent := make(chan error, 1)
	go func() { sent <- alice.trySend(all.String()) }()
	for i := 0; i < n; i++ {
		m := bob.expect(nsClient, "message")
		if m.A("id") != fmt.Sprintf("r%d", i) {
			t.Fatalf("message %d: got %s", i, m.A("id"))
		}
	}
	took := time.Since(start)
	if err := <-sent; err != nil {
		t.Fatalf("alice's write: %v", err)
	}
	// The bucket holds burst bytes; the rest comes at rate.
	if min := time.Duration(float64(total-burst) / rate * 0.8 * float64(time.Second)); took < min {
		t.Fatalf("%d bytes read in %v, want at least %v at %d bytes/s", total, took, min, rate)
	}
	t.Logf("%d bytes delivered in %v at %d bytes/s", total, took, rate)
	// Still connected, and still delivering.
	alice.send("<message to='bob@localhost/b' id='after' type='chat'><body>after</body></message>")
	if m := bob.expect(nsClient, "message"); m.A("id") != "after" {
		t.Fatalf("after the burst: got %s", m)
	}
}
