package main

import (
	"os"
	"strings"
	"testing"

	"github.com/palisade-im/palisade/conformance/loadgen"
)

func pairsResult(name string, msgs ...float64) *serverResult {
	s := &serverResult{Name: name}
	for i, m := range msgs {
		s.Pairs = append(s.Pairs, loadgen.ThroughputResult{Pairs: []int{1, 100}[i], Delivered: 1, MsgsPerSec: m})
	}
	return s
}

// The budget is judged on each pair count's median over the rounds, not
// on the best or the last round.
func TestArchiveCostMedians(t *testing.T) {
	var rounds []costRound
	for i, on := range [][2]float64{{40, 90}, {60, 80}, {50, 95}} {
		cr, ok := pairRound(i+1, pairsResult("palisade", 100, 100), pairsResult("palisade+archive", on[0], on[1]))
		if !ok {
			t.Fatal("round not paired")
		}
		rounds = append(rounds, cr)
	}
	c := newArchiveCost(rounds)
	if c.Median[1] != 0.5 || c.Median[100] != 0.9 {
		t.Fatalf("medians %v, want 1: 0.5, 100: 0.9", c.Median)
	}
	tg := c.target()
	if tg.Verdict != "not met" || !strings.Contains(tg.Figure, "1: 50%, 100: 90%") || !strings.Contains(tg.Figure, "3 paired") {
		t.Fatalf("target %+v", tg)
	}
	// Every pair count within the budget: met.
	cr, _ := pairRound(1, pairsResult("palisade", 100, 100), pairsResult("palisade+archive", 86, 99))
	if tg := newArchiveCost([]costRound{cr}).target(); tg.Verdict != "met" {
		t.Fatalf("target %+v, want met", tg)
	}
	// No pairing: not run, and a missing server is no round.
	if _, ok := pairRound(1, pairsResult("palisade", 100), nil); ok {
		t.Fatal("a round without palisade+archive was paired")
	}
	var none *archiveCost
	if tg := none.target(); tg.Verdict != "not run" {
		t.Fatalf("target %+v, want not run", tg)
	}
	if txt := c.text(); !strings.Contains(txt, "100 pairs: median  90%") || !strings.Contains(txt, "80% (80/100)") {
		t.Fatalf("text:\n%s", txt)
	}
}

// The ceiling is the off round trip (2 x pairs x window in flight over
// msgs/s) against that plus the durable write's median, per pair count.
func TestArchiveCostCeiling(t *testing.T) {
	var rounds []costRound
	for _, off := range []float64{90, 100, 200} {
		cr, _ := pairRound(1, pairsResult("palisade", off, off), pairsResult("palisade+archive", 50, 50))
		rounds = append(rounds, cr)
	}
	c := newArchiveCost(rounds)
	// 1 pair, window 16: 32 in flight at the median 100 msgs/s is a 320 ms
	// round trip; with an 80 ms write, at most 320/400.
	c.setCeiling(durableProbe{Writes: 10, P50Ms: 80, P90Ms: 90, CPUUs: 100}, 16)
	if got := c.Ceiling[1]; got < 0.7999 || got > 0.8001 {
		t.Fatalf("ceiling at 1 pair = %v, want 0.8", got)
	}
	if got := c.Ceiling[100]; got < 0.997 || got >= 1 {
		t.Fatalf("ceiling at 100 pairs = %v, want 32000/32080", got)
	}
	txt := c.text()
	if !strings.Contains(txt, "p50 80.00 ms") || !strings.Contains(txt, "1 pairs 80%, 100 pairs 100%") {
		t.Fatalf("text:\n%s", txt)
	}
}

// The probe writes and fdatasyncs into a real file and leaves nothing.
func TestProbeDurable(t *testing.T) {
	dir := t.TempDir()
	p, err := probeDurable(dir, 20)
	if err != nil {
		t.Fatal(err)
	}
	if p.Writes != 20 || p.P50Ms <= 0 || p.P90Ms < p.P50Ms || p.CPUUs < 0 {
		t.Fatalf("probe %+v", p)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Fatalf("probe left %d files", len(left))
	}
}
