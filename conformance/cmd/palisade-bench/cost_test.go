package main

import (
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
