package c2s

import (
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// TestGateRefusalLoggedOncePerRun: a run of refusals from one address is
// one log line and one audit event, with the count carried to the next.
func TestGateRefusalLoggedOncePerRun(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	log := zap.New(core)
	g := newGate(Config{MaxUnauthenticatedPerIP: 1}, log, log.Named("audit"))
	s, reason := g.enter("192.0.2.1", true)
	if reason != "" {
		t.Fatalf("first connection refused: %s", reason)
	}
	for i := 0; i < 100; i++ {
		if _, reason := g.enter("192.0.2.1", true); reason != refusedPerIP {
			t.Fatalf("refusal %d: reason %q, want %s", i, reason, refusedPerIP)
		}
	}
	if n := logs.FilterMessage("connection_refused").Len(); n != 1 {
		t.Fatalf("%d audit events for one run of refusals, want 1", n)
	}
	if _, reason := g.enter("192.0.2.2", true); reason != "" {
		t.Fatalf("another address refused: %s", reason)
	}
	s.free()
	s.free() // idempotent
	if _, reason := g.enter("192.0.2.1", true); reason != "" {
		t.Fatalf("refused after the place was freed: %s", reason)
	}
	// The end of the run is summarised by the sweep, with its count.
	g.mu.Lock()
	st := g.addrs["192.0.2.1"]
	st.logged = st.logged.Add(-2 * refusalLogEvery)
	g.swept = time.Time{}
	g.sweep(time.Now())
	g.mu.Unlock()
	ev := logs.FilterMessage("connection_refused").All()
	if len(ev) != 2 || ev[1].ContextMap()["refused"] != int64(99) {
		t.Fatalf("audit events %v, want a second one counting 99 refusals", ev)
	}
}

// TestGateSweep: addresses with no connection and a full rate bucket are
// forgotten; one holding a connection is kept.
func TestGateSweep(t *testing.T) {
	g := newGate(Config{ConnectionRatePerIP: 1000, ConnectionBurstPerIP: 1}, zap.NewNop(), zap.NewNop())
	a, _ := g.enter("192.0.2.1", true)
	b, _ := g.enter("192.0.2.2", true)
	b.free()
	g.mu.Lock()
	g.sweep(time.Now().Add(gateSweepEvery + time.Second))
	_, keptA := g.addrs["192.0.2.1"]
	_, keptB := g.addrs["192.0.2.2"]
	g.mu.Unlock()
	if !keptA || keptB {
		t.Fatalf("after the sweep: holding address kept %v (want true), idle address kept %v (want false)", keptA, keptB)
	}
	a.free()
	if g.total != 0 {
		t.Fatalf("total %d after every slot was freed", g.total)
	}
}

// TestGateBehindProxy: without per-address limits (a listener behind a
// reverse proxy) the proxy's connections are not capped per address or
// rate-limited; the total cap holds.
func TestGateBehindProxy(t *testing.T) {
	g := newGate(Config{MaxUnauthenticated: 5, MaxUnauthenticatedPerIP: 1, ConnectionRatePerIP: 0.001, ConnectionBurstPerIP: 1}, zap.NewNop(), zap.NewNop())
	for i := 0; i < 5; i++ {
		if _, reason := g.enter("127.0.0.1", false); reason != "" {
			t.Fatalf("proxied connection %d refused: %s", i, reason)
		}
	}
	if _, reason := g.enter("127.0.0.1", false); reason != refusedTotal {
		t.Fatalf("connection past the total cap: reason %q, want %s", reason, refusedTotal)
	}
}
