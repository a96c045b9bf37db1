package loadgen

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

// TestCrossPairsAgainstPalisade: RunCrossPairs pairs the A side's i-th
// account with the B side's i-th (here two dialers of one server, with
// disjoint accounts), both directions carry traffic, and an error stanza
// (a bounce) counts as an error, not as a delivery.
func TestCrossPairsAgainstPalisade(t *testing.T) {
	d := startPalisade(t)
	ctx := context.Background()
	accts := testAccounts(4)
	if err := d.Register(ctx, accts); err != nil {
		t.Fatal(err)
	}
	b := d.WithMechanisms(PLAIN)
	tr := CrossTraffic{
		Traffic:   Traffic{Pairs: 2, Window: 4, Warmup: 200 * time.Millisecond, Length: 500 * time.Millisecond},
		AAccounts: accts[:2], BAccounts: accts[2:],
		Samplers: []*Sampler{{PID: os.Getpid()}, nil},
	}
	r, err := RunCrossPairs(ctx, d, b, tr)
	if err != nil {
		t.Fatal(err)
	}
	if r.Errors != 0 || r.Delivered == 0 || r.Latency.N == 0 || r.Latency.N > r.Sent || r.Pairs != 2 {
		t.Fatalf("cross pairs: %+v", r)
	}
	if r.CPUCores <= 0 {
		t.Errorf("no CPU sampled: %+v", r)
	}
	if _, err := RunCrossPairs(ctx, d, b, CrossTraffic{Traffic: Traffic{Pairs: 3, Window: 1}, AAccounts: accts[:2], BAccounts: accts[2:]}); err == nil {
		t.Error("3 pairs from 2 accounts a side ran")
	}

	// A pair whose one side's JID is held by nobody: the messages to it
	// come back as errors, which must count as errors and not as
	// deliveries (the other direction still delivers).
	conns, err := d.LoginAll(ctx, accts[:2], 2)
	if err != nil {
		t.Fatal(err)
	}
	conns[1].JID = "ghost@localhost/x"
	res, err := runPairs(ctx, Traffic{Pairs: 1, Window: 2, Warmup: 100 * time.Millisecond, Length: 300 * time.Millisecond, Drain: time.Second}, conns, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Errors == 0 || !strings.Contains(res.FirstErr, "error stanza") {
		t.Errorf("bounces not counted as errors: %+v", res)
	}
	if res.Delivered == 0 || res.Latency.N > res.Sent {
		t.Errorf("deliveries: %+v", res)
	}
}
