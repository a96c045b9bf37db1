package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/palisade-im/palisade/conformance/loadgen"
)

func tput(pairs int, rate float64, msgs, p99 float64) loadgen.ThroughputResult {
	return loadgen.ThroughputResult{Pairs: pairs, OfferedRate: rate, Delivered: 1, MsgsPerSec: msgs, Latency: loadgen.Latency{P99: p99, N: 1}}
}

func TestReportRatiosAndTargets(t *testing.T) {
	r := newReport(options{window: 16}, 20000)
	r.add(&serverResult{Name: "palisade",
		Idle:   &idleResult{FDLimit: 20000, Steps: []idleStep{{Target: 10000, Reached: 10000, PerSessionKiB: 20}, {Target: 19800, Reached: 19800, PerSessionKiB: 21}}},
		Logins: []loadgen.LoginResult{{Logins: 10, PerSec: 1000}, {Logins: 10, PerSec: 3000}},
		Pairs:  []loadgen.ThroughputResult{tput(10, 0, 90000, 1), tput(100, 0, 50000, 2)},
		Open:   []loadgen.ThroughputResult{tput(10, 10000, 10000, 7)},
	})
	r.notRun("palisade+archive", nil, "archive: unknown key")
	r.add(&serverResult{Name: "ejabberd",
		Idle:   &idleResult{Steps: []idleStep{{Target: 10000, Reached: 10000, PerSessionKiB: 56}}},
		Logins: []loadgen.LoginResult{{Logins: 10, PerSec: 600}},
		Pairs:  []loadgen.ThroughputResult{tput(10, 0, 20000, 5), tput(100, 0, 20000, 9)},
	})
	r.add(&serverResult{Name: "prosody", Errors: []string{"start: failed"}})
	dir := t.TempDir()
	var out strings.Builder
	if err := r.write(&out, dir); err != nil {
		t.Fatal(err)
	}
	verdicts := map[string]string{}
	for _, tg := range r.Targets {
		verdicts[tg.Server+": "+tg.Goal] = tg.Verdict
	}
	want := map[string]string{
		"palisade: msgs/s at 10 pairs >= 3x ejabberd":                      "met",     // 4.5x
		"palisade: msgs/s at 100 pairs >= 3x ejabberd":                     "not met", // 2.5x
		"palisade: p99 at 10k msgs/s open loop < 5 ms":                     "not met",
		"palisade: RSS per idle TLS session at 10k <= 24 KiB":              "met",
		"palisade: TLS logins/s with SCRAM-SHA-256 >= 2x ejabberd":         "not met", // 1.67x
		"palisade: 50k concurrent idle TLS sessions":                       "not met",
		"palisade: idle sessions up to the open-file limit (DECISIONS.md)": "met",
		"palisade+archive: all targets":                                    "not run",
	}
	for k, v := range want {
		if verdicts[k] != v {
			t.Errorf("%s: %q, want %q", k, verdicts[k], v)
		}
	}
	ratio := func(metric, peer string) float64 {
		for _, rw := range r.Rows {
			if rw.Metric == metric && rw.Ratios[peer] != nil {
				return *rw.Ratios[peer]
			}
		}
		return -1
	}
	if got := ratio("10 pairs closed loop: msgs/s", "ejabberd"); got != 4.5 {
		t.Errorf("10-pair ratio = %v", got)
	}
	if got := ratio("10 pairs closed loop: msgs/s", "prosody"); got != -1 {
		t.Errorf("ratio to a server without figures = %v", got)
	}
	text := out.String()
	for _, s := range []string{"not run", "NOT RUN (archive: unknown key)", "error: start: failed", "4.5x"} {
		if !strings.Contains(text, s) {
			t.Errorf("table lacks %q:\n%s", s, text)
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, "bench.json"))
	if err != nil {
		t.Fatal(err)
	}
	var back report
	if err := json.Unmarshal(b, &back); err != nil || len(back.Servers) != 4 || len(back.Targets) != len(r.Targets) {
		t.Errorf("bench.json round trip: %v, %d servers", err, len(back.Servers))
	}
	md, err := os.ReadFile(filepath.Join(dir, "bench.md"))
	if err != nil || !strings.Contains(string(md), "| 10 pairs closed loop: msgs/s | 90000 | - | 20000 |") {
		t.Errorf("bench.md: %v\n%s", err, md)
	}
}
