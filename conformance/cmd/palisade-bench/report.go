package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/palisade-im/palisade/conformance/loadgen"
)

// serverResult is everything measured on one server.
type serverResult struct {
	Name       string                     `json:"name"`
	NotRun     string                     `json:"not_run,omitempty"`
	Settings   map[string]string          `json:"settings"`
	Negotiated loadgen.LoginInfo          `json:"negotiated"`
	Idle       *idleResult                `json:"idle,omitempty"`
	Logins     []loadgen.LoginResult      `json:"logins,omitempty"`
	Pairs      []loadgen.ThroughputResult `json:"pairs,omitempty"`
	Open       []loadgen.ThroughputResult `json:"open_loop,omitempty"`
	Errors     []string                   `json:"errors,omitempty"`
}

// row is one line of the table; a nil value was not measured.
type row struct {
	Metric string              `json:"metric"`
	Better string              `json:"better"` // "higher" or "lower"
	Values map[string]*float64 `json:"values"`
	Ratios map[string]*float64 `json:"palisade_ratio,omitempty"` // palisade ÷ peer
}

// target is one goal of issue 3 with its verdict.
type target struct {
	Server  string `json:"server"`
	Goal    string `json:"goal"`
	Verdict string `json:"verdict"` // met, not met, not run
	Figure  string `json:"figure"`
}

type report struct {
	Date    string            `json:"date"`
	Command string            `json:"command"`
	Machine map[string]string `json:"machine"`
	Config  map[string]string `json:"scenario_settings"`
	Servers []*serverResult   `json:"servers"`
	Rows    []row             `json:"table"`
	Targets []target          `json:"targets"`
	Cost    *archiveCost      `json:"archive_cost,omitempty"`
	S2S     *s2sResult        `json:"s2s,omitempty"`
}

func newReport(o options, fdMax int) *report {
	r := &report{
		Date:    time.Now().UTC().Format(time.RFC3339),
		Command: "palisade-bench " + strings.Join(os.Args[1:], " "),
		Machine: machine(),
		Config: map[string]string{
			"message":      fmt.Sprintf("%d-byte <message type='chat'/>, alternately to the partner's full and bare JID; both sides of a pair send", loadgen.MessageSize),
			"closed loop":  fmt.Sprintf("window %d in flight per sender, %v warm-up, %v measured", o.window, o.warmup, o.length),
			"open loop":    fmt.Sprintf("%d pairs share the rate; latency from the intended send time; %v measured", o.openPairs, o.length),
			"logins":       fmt.Sprintf("%d concurrent: TCP, STARTTLS, SASL, bind, close; %v measured", o.loginConc, o.loginLen),
			"idle":         fmt.Sprintf("STARTTLS + %s + bind + presence, then held unread by a separate process over %d source addresses (%d logins at a time); open-file limit %d per process; RSS sampled %v after each step", o.idleMech, o.idleIPs, o.idleConc, fdMax, o.idleSettle),
			"tls":          "one ECDSA P-256 certificate for all servers; the generator requires TLS 1.3",
			"sasl":         "PLAIN for traffic; SCRAM-SHA-256 for idle sessions; logins/s with SCRAM-SHA-256 (SCRAM-SHA-1 where a server lacks it) and PLAIN",
			"machine note": "generator and server share the machine's cores",
			"quiet start":  "the server is restarted after the idle test and before the open-loop runs; each logins, pairs and open-loop run starts once the server has used < 5% of a core for 0.5 s (at most 30 s)",
		},
	}
	return r
}

func machine() map[string]string {
	m := map[string]string{"cpus": fmt.Sprint(runtime.NumCPU()), "go": runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				m["cpu"] = strings.TrimSpace(strings.SplitN(l, ":", 2)[1])
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		m["memory"] = strings.TrimSpace(strings.TrimPrefix(strings.SplitN(string(b), "\n", 2)[0], "MemTotal:"))
	}
	if out, err := exec.Command("uname", "-sr").Output(); err == nil {
		m["kernel"] = strings.TrimSpace(string(out))
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		m["load at start"] = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	return m
}

func (r *report) add(s *serverResult) { r.Servers = append(r.Servers, s) }

func (r *report) notRun(name string, settings map[string]string, why string) {
	r.Servers = append(r.Servers, &serverResult{Name: name, NotRun: why, Settings: settings})
}

func f(v float64) *float64 { return &v }

// build fills Rows and Targets from the servers' results.
func (r *report) build() {
	get := func(metric, better string, val func(*serverResult) *float64) {
		rw := row{Metric: metric, Better: better, Values: map[string]*float64{}}
		for _, s := range r.Servers {
			if s.NotRun == "" {
				rw.Values[s.Name] = val(s)
			}
		}
		if p := rw.Values["palisade"]; p != nil {
			rw.Ratios = map[string]*float64{}
			for _, peer := range []string{"ejabberd", "prosody"} {
				if v := rw.Values[peer]; v != nil && *v != 0 {
					rw.Ratios[peer] = f(*p / *v)
				}
			}
		}
		r.Rows = append(r.Rows, rw)
	}
	idleAt := func(s *serverResult, i int) *idleStep {
		if s.Idle == nil || i >= len(s.Idle.Steps) {
			return nil
		}
		return &s.Idle.Steps[i]
	}
	var idleTargets []int
	for _, s := range r.Servers {
		if s.Idle != nil {
			for _, st := range s.Idle.Steps {
				if !contains(idleTargets, st.Target) {
					idleTargets = append(idleTargets, st.Target)
				}
			}
		}
	}
	for i, t := range idleTargets {
		get(fmt.Sprintf("idle TLS sessions held (of %d)", t), "higher", func(s *serverResult) *float64 {
			if st := idleAt(s, i); st != nil && st.Target == t {
				return f(float64(st.Reached))
			}
			return nil
		})
		get(fmt.Sprintf("RSS per idle TLS session at %d (KiB)", t), "lower", func(s *serverResult) *float64 {
			if st := idleAt(s, i); st != nil && st.Target == t && st.Reached > 0 {
				return f(st.PerSessionKiB)
			}
			return nil
		})
	}
	for li, name := range []string{"SCRAM-SHA-256", "PLAIN"} {
		get("logins/s, TLS + "+name, "higher", func(s *serverResult) *float64 {
			if li < len(s.Logins) && s.Logins[li].Logins > 0 {
				return f(s.Logins[li].PerSec)
			}
			return nil
		})
		get("login p99 (ms), TLS + "+name, "lower", func(s *serverResult) *float64 {
			if li < len(s.Logins) && s.Logins[li].Logins > 0 {
				return f(s.Logins[li].Latency.P99)
			}
			return nil
		})
	}
	traffic := func(label string, pick func(*serverResult) []loadgen.ThroughputResult, key func(loadgen.ThroughputResult) int) {
		var keys []int
		for _, s := range r.Servers {
			for _, t := range pick(s) {
				if !contains(keys, key(t)) {
					keys = append(keys, key(t))
				}
			}
		}
		for _, k := range keys {
			find := func(s *serverResult) *loadgen.ThroughputResult {
				for _, t := range pick(s) {
					if key(t) == k && t.Delivered > 0 {
						return &t
					}
				}
				return nil
			}
			l := fmt.Sprintf(label, k)
			metrics := []struct {
				name, better string
				v            func(*loadgen.ThroughputResult) float64
			}{
				{"msgs/s", "higher", func(t *loadgen.ThroughputResult) float64 { return t.MsgsPerSec }},
				{"p50 ms", "lower", func(t *loadgen.ThroughputResult) float64 { return t.Latency.P50 }},
				{"p99 ms", "lower", func(t *loadgen.ThroughputResult) float64 { return t.Latency.P99 }},
				{"p999 ms", "lower", func(t *loadgen.ThroughputResult) float64 { return t.Latency.P999 }},
				{"latency samples", "higher", func(t *loadgen.ThroughputResult) float64 { return float64(t.Latency.N) }},
				{"server CPU us/msg", "lower", func(t *loadgen.ThroughputResult) float64 { return t.CPUPerMsg }},
				{"server CPU cores", "lower", func(t *loadgen.ThroughputResult) float64 { return t.CPUCores }},
				{"generator CPU cores", "lower", func(t *loadgen.ThroughputResult) float64 { return t.GenCores }},
				{"server RSS MiB", "lower", func(t *loadgen.ThroughputResult) float64 { return float64(t.RSS) / (1 << 20) }},
			}
			for _, m := range metrics {
				latency := strings.HasSuffix(m.name, " ms")
				get(l+": "+m.name, m.better, func(s *serverResult) *float64 {
					// A latency without samples (nothing stamped inside the
					// window arrived) is not a figure.
					if t := find(s); t != nil && (!latency || t.Latency.N > 0) {
						return f(m.v(t))
					}
					return nil
				})
			}
		}
	}
	traffic("%d pairs closed loop", func(s *serverResult) []loadgen.ThroughputResult { return s.Pairs }, func(t loadgen.ThroughputResult) int { return t.Pairs })
	traffic("open loop %d msgs/s", func(s *serverResult) []loadgen.ThroughputResult { return s.Open }, func(t loadgen.ThroughputResult) int { return int(t.OfferedRate) })
	r.targets()
}

func contains(xs []int, x int) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

func (r *report) value(metric, server string) *float64 {
	for _, rw := range r.Rows {
		if rw.Metric == metric {
			return rw.Values[server]
		}
	}
	return nil
}

func (r *report) targets() {
	defer func() {
		for _, s := range r.Servers {
			if s.Name == "palisade+archive" {
				r.Targets = append(r.Targets, r.Cost.target())
				return
			}
		}
	}()
	for _, s := range r.Servers {
		if !strings.HasPrefix(s.Name, "palisade") {
			continue
		}
		name := s.Name
		add := func(goal string, ok *bool, figure string) {
			v := "not run"
			if ok != nil {
				v = map[bool]string{true: "met", false: "not met"}[*ok]
			}
			r.Targets = append(r.Targets, target{Server: name, Goal: goal, Verdict: v, Figure: figure})
		}
		if s.NotRun != "" {
			add("all targets", nil, s.NotRun)
			continue
		}
		ratio := func(metric string, want float64, goal string) {
			p, e := r.value(metric, name), r.value(metric, "ejabberd")
			if p == nil || e == nil || *e == 0 {
				add(goal, nil, "needs both figures")
				return
			}
			ok := *p/(*e) >= want
			add(goal, &ok, fmt.Sprintf("%.0f vs %.0f = %.2fx", *p, *e, *p/(*e)))
		}
		ratio("10 pairs closed loop: msgs/s", 3, "msgs/s at 10 pairs >= 3x ejabberd")
		ratio("100 pairs closed loop: msgs/s", 3, "msgs/s at 100 pairs >= 3x ejabberd")
		if p := r.value("open loop 10000 msgs/s: p99 ms", name); p != nil {
			ok := *p < 5
			add("p99 at 10k msgs/s open loop < 5 ms", &ok, fmt.Sprintf("%.2f ms", *p))
		} else {
			add("p99 at 10k msgs/s open loop < 5 ms", nil, "")
		}
		if p := r.value("RSS per idle TLS session at 10000 (KiB)", name); p != nil {
			ok := *p <= 24
			add("RSS per idle TLS session at 10k <= 24 KiB", &ok, fmt.Sprintf("%.1f KiB", *p))
		} else {
			add("RSS per idle TLS session at 10k <= 24 KiB", nil, "needs a 10000-session step")
		}
		ratio("logins/s, TLS + SCRAM-SHA-256", 2, "TLS logins/s with SCRAM-SHA-256 >= 2x ejabberd")
		best, limit, errText := 0, 0, ""
		if s.Idle != nil {
			limit = s.Idle.FDLimit
			for _, st := range s.Idle.Steps {
				if st.Reached > best {
					best, errText = st.Reached, st.Err
				}
			}
		}
		if s.Idle != nil && len(s.Idle.Steps) > 0 {
			ok := best >= 50000
			fig := fmt.Sprintf("%d held; open-file limit %d per process here", best, limit)
			if errText != "" {
				fig += "; stopped by: " + errText
			}
			add("50k concurrent idle TLS sessions", &ok, fig)
			last := s.Idle.Steps[len(s.Idle.Steps)-1]
			full := last.Reached == last.Target && last.Err == "" && last.Target >= limit-200
			add("idle sessions up to the open-file limit (DECISIONS.md)", &full, fmt.Sprintf("%d of %d", last.Reached, last.Target))
		} else {
			add("50k concurrent idle TLS sessions", nil, "")
		}
	}
}

func fmtVal(v *float64) string {
	if v == nil {
		return "-"
	}
	x := *v
	switch {
	case x >= 1000:
		return fmt.Sprintf("%.0f", x)
	case x >= 100:
		return fmt.Sprintf("%.1f", x)
	default:
		return fmt.Sprintf("%.2f", x)
	}
}

func fmtRatio(v float64) string {
	if v >= 100 {
		return fmt.Sprintf("%.0fx", v)
	}
	return fmt.Sprintf("%.3gx", v)
}

func (r *report) columns() (names []string, header []string) {
	for _, s := range r.Servers {
		names = append(names, s.Name)
	}
	header = append([]string{"metric"}, names...)
	header = append(header, "palisade/ejabberd", "palisade/prosody", "better")
	return
}

func (r *report) cells(rw row, names []string) []string {
	c := []string{rw.Metric}
	for _, n := range names {
		c = append(c, fmtVal(rw.Values[n]))
	}
	for _, peer := range []string{"ejabberd", "prosody"} {
		if v := rw.Ratios[peer]; v != nil {
			c = append(c, fmtRatio(*v))
		} else {
			c = append(c, "-")
		}
	}
	return append(c, rw.Better)
}

// rerender reads a bench.json written earlier and writes the table again
// (after a change of the table's layout).
func rerender(w io.Writer, file, dir string) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	var r report
	if err := json.Unmarshal(b, &r); err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	r.Rows, r.Targets = nil, nil
	return r.write(w, dir)
}

// write prints the text table to w and writes bench.json and bench.md.
func (r *report) write(w io.Writer, dir string) error {
	r.build()
	names, header := r.columns()
	var lines [][]string
	lines = append(lines, header)
	for _, rw := range r.Rows {
		lines = append(lines, r.cells(rw, names))
	}
	widths := make([]int, len(header))
	for _, l := range lines {
		for i, c := range l {
			widths[i] = max(widths[i], len([]rune(c)))
		}
	}
	var txt strings.Builder
	fmt.Fprintf(&txt, "palisade-bench %s\n\n", r.Date)
	for _, l := range lines {
		for i, c := range l {
			pad := widths[i] - len([]rune(c))
			if i == 0 {
				txt.WriteString(c + strings.Repeat(" ", pad))
			} else {
				txt.WriteString("  " + strings.Repeat(" ", pad) + c)
			}
		}
		txt.WriteString("\n")
	}
	txt.WriteString("(- not measured: the server or scenario did not run, or no message stamped in the window arrived)\n")
	txt.WriteString("\n" + r.settingsText() + "\n" + r.targetsText())
	if r.Cost != nil {
		txt.WriteString("\n" + r.Cost.text())
	}
	if r.S2S != nil {
		txt.WriteString("\n" + r.S2S.text())
	}
	if _, err := io.WriteString(w, txt.String()); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "bench.json"), append(js, '\n'), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "bench.md"), []byte(r.markdown(names, header)), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nwrote %s and %s\n", filepath.Join(dir, "bench.json"), filepath.Join(dir, "bench.md"))
	return nil
}

func (r *report) settingsText() string {
	var b strings.Builder
	b.WriteString("Settings\n")
	for _, k := range sortedKeys(r.Config) {
		fmt.Fprintf(&b, "  %s: %s\n", k, r.Config[k])
	}
	for _, s := range r.Servers {
		fmt.Fprintf(&b, "  %s:", s.Name)
		if s.NotRun != "" {
			fmt.Fprintf(&b, " NOT RUN (%s)", s.NotRun)
		}
		b.WriteString("\n")
		if s.Negotiated.TLSVersion != "" {
			fmt.Fprintf(&b, "    negotiated: %s %s; SASL offered: %s\n", s.Negotiated.TLSVersion, s.Negotiated.Cipher, s.Negotiated.Offered)
		}
		for _, l := range s.Logins {
			fmt.Fprintf(&b, "    login test: %s", l.Mechanism)
			if l.Info.Iterations > 0 {
				fmt.Fprintf(&b, ", %d iterations", l.Info.Iterations)
			}
			fmt.Fprintf(&b, " (%d errors)\n", l.Errors)
		}
		for _, k := range sortedKeys(s.Settings) {
			fmt.Fprintf(&b, "    %s: %s\n", k, s.Settings[k])
		}
		for _, e := range s.Errors {
			fmt.Fprintf(&b, "    error: %s\n", e)
		}
		for _, t := range append(s.Pairs, s.Open...) {
			if t.Errors > 0 || t.Missing > 0 || t.Undrained > 0 {
				fmt.Fprintf(&b, "    run pairs=%d rate=%.0f: %d errors (%s), %d missing, %d still in flight after the drain\n", t.Pairs, t.OfferedRate, t.Errors, t.FirstErr, t.Missing, t.Undrained)
			}
		}
	}
	return b.String()
}

func (r *report) targetsText() string {
	var b strings.Builder
	b.WriteString("Targets (issues 3 and 4)\n")
	for _, t := range r.Targets {
		fmt.Fprintf(&b, "  %-16s %-48s %-8s %s\n", t.Server, t.Goal, t.Verdict, t.Figure)
	}
	return b.String()
}

func (r *report) markdown(names, header []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Run %s: `%s`\n\n", r.Date, r.Command)
	fmt.Fprintf(&b, "Machine: %s, %s CPUs, %s, %s, %s; load at start %s.\n\n", r.Machine["cpu"], r.Machine["cpus"], r.Machine["memory"], r.Machine["kernel"], r.Machine["go"], r.Machine["load at start"])
	b.WriteString("| " + strings.Join(header, " | ") + " |\n")
	b.WriteString("|" + strings.Repeat("---|", len(header)) + "\n")
	for _, rw := range r.Rows {
		b.WriteString("| " + strings.Join(r.cells(rw, names), " | ") + " |\n")
	}
	b.WriteString("\n- not measured: the server or scenario did not run, or no message stamped in the window arrived.\n")
	b.WriteString("\n```\n" + r.settingsText() + "```\n\n")
	b.WriteString("| server | target | verdict | figure |\n|---|---|---|---|\n")
	for _, t := range r.Targets {
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", t.Server, t.Goal, t.Verdict, strings.ReplaceAll(t.Figure, "|", "/"))
	}
	if r.Cost != nil {
		b.WriteString("\n```\n" + r.Cost.text() + "```\n")
	}
	if r.S2S != nil {
		b.WriteString("\n" + r.S2S.markdown())
	}
	return b.String()
}

func sortedKeys(m map[string]string) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	for i := 1; i < len(ks); i++ {
		for j := i; j > 0 && ks[j] < ks[j-1]; j-- {
			ks[j], ks[j-1] = ks[j-1], ks[j]
		}
	}
	return ks
}
