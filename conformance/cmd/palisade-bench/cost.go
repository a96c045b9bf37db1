package main

import (
	"fmt"
	"slices"
	"sort"
	"strings"
)

// archiveBudget is issue 4's budget: the archive costs at most 15% of
// msgs/s, so "archive on" carries at least 85% of "off".
const archiveBudget = 0.85

// costRound is one paired measurement of the archive's cost: "palisade"
// and "palisade+archive" run back to back on the closed-loop pairs.
type costRound struct {
	Round int                `json:"round"`
	Pairs map[int]costFigure `json:"pairs"`
}

// costFigure is one pair count of a round.
type costFigure struct {
	Off   float64 `json:"off_msgs_per_s"`
	On    float64 `json:"on_msgs_per_s"`
	Ratio float64 `json:"on_over_off"`
}

// archiveCost is every round and, per pair count, the median ratio: a
// shared machine's noise moves single runs by 10-20%, in both columns.
type archiveCost struct {
	Rounds []costRound     `json:"rounds"`
	Median map[int]float64 `json:"median_on_over_off"`
	// Durable is the disk's durable write, probed before the servers ran,
	// and Ceiling per pair count the best on/off ratio a journal that
	// makes each record durable before delivery can reach with it (see
	// setCeiling).
	Durable *durableProbe   `json:"durable_write,omitempty"`
	Ceiling map[int]float64 `json:"durable_write_ceiling,omitempty"`
}

// setCeiling computes Ceiling from Durable. The closed loop keeps
// 2 x pairs x window messages in flight (both sides of a pair send), so
// with the archive off a message's round trip is in flight / msgs/s; with
// it on, every message also waits for at least one durable write, so the
// ratio is at most round trip / (round trip + the write's median).
func (c *archiveCost) setCeiling(p durableProbe, window int) {
	c.Durable, c.Ceiling = &p, map[int]float64{}
	for _, n := range c.pairCounts() {
		var offs []float64
		for _, r := range c.Rounds {
			if f, ok := r.Pairs[n]; ok {
				offs = append(offs, f.Off)
			}
		}
		rt := float64(2*n*window) / median(offs) * 1000 // ms
		c.Ceiling[n] = rt / (rt + p.P50Ms)
	}
}

// pairRound pairs the closed-loop results of off and on into a round.
func pairRound(round int, off, on *serverResult) (costRound, bool) {
	cr := costRound{Round: round, Pairs: map[int]costFigure{}}
	if off == nil || on == nil || off.NotRun != "" || on.NotRun != "" {
		return cr, false
	}
	for _, a := range off.Pairs {
		for _, b := range on.Pairs {
			if a.Pairs == b.Pairs && a.MsgsPerSec > 0 {
				cr.Pairs[a.Pairs] = costFigure{Off: a.MsgsPerSec, On: b.MsgsPerSec, Ratio: b.MsgsPerSec / a.MsgsPerSec}
			}
		}
	}
	return cr, len(cr.Pairs) > 0
}

// newArchiveCost computes the medians of rounds.
func newArchiveCost(rounds []costRound) *archiveCost {
	if len(rounds) == 0 {
		return nil
	}
	c := &archiveCost{Rounds: rounds, Median: map[int]float64{}}
	by := map[int][]float64{}
	for _, r := range rounds {
		for p, f := range r.Pairs {
			by[p] = append(by[p], f.Ratio)
		}
	}
	for p, v := range by {
		c.Median[p] = median(v)
	}
	return c
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// target is the budget's verdict: met when every pair count's median is
// within it.
func (c *archiveCost) target() target {
	t := target{Server: "palisade+archive", Goal: "archive costs <= 15% of msgs/s (issue 4)"}
	if c == nil || len(c.Median) == 0 {
		t.Verdict, t.Figure = "not run", "needs palisade and palisade+archive pairs"
		return t
	}
	ok := true
	var parts []string
	for _, p := range c.pairCounts() {
		m := c.Median[p]
		ok = ok && m >= archiveBudget
		parts = append(parts, fmt.Sprintf("%d: %.0f%%", p, 100*m))
	}
	t.Verdict = map[bool]string{true: "met", false: "not met"}[ok]
	t.Figure = fmt.Sprintf("on/off, median of %d paired round(s): %s", len(c.Rounds), strings.Join(parts, ", "))
	return t
}

func (c *archiveCost) pairCounts() []int {
	var ps []int
	for p := range c.Median {
		ps = append(ps, p)
	}
	sort.Ints(ps)
	return ps
}

// text is the rounds as a table: per pair count, each round's ratio and
// the median.
func (c *archiveCost) text() string {
	if c == nil {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Archive cost (palisade+archive / palisade msgs/s, %d paired round(s), budget >= %.0f%%)\n", len(c.Rounds), 100*archiveBudget)
	for _, p := range c.pairCounts() {
		var each []string
		for _, r := range c.Rounds {
			if f, ok := r.Pairs[p]; ok {
				each = append(each, fmt.Sprintf("%.0f%% (%.0f/%.0f)", 100*f.Ratio, f.On, f.Off))
			}
		}
		fmt.Fprintf(&b, "  %4d pairs: median %3.0f%%; rounds: %s\n", p, 100*c.Median[p], strings.Join(each, ", "))
	}
	if c.Durable != nil {
		fmt.Fprintf(&b, "Durable write (probed before the servers): %s\n", c.Durable)
		var at []string
		for _, p := range c.pairCounts() {
			at = append(at, fmt.Sprintf("%d pairs %.0f%%", p, 100*c.Ceiling[p]))
		}
		fmt.Fprintf(&b, "  so at most, with each record durable before delivery: %s\n", strings.Join(at, ", "))
		b.WriteString("  (off round trip / (off round trip + the write's p50); 2 x pairs x window messages in flight)\n")
	}
	return b.String()
}
