package cli

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// countOf sums the "count" field of the entries.
func countOf(entries []observer.LoggedEntry) int {
	n := 0
	for _, e := range entries {
		n += int(e.ContextMap()["count"].(int64))
	}
	return n
}

// 40k identical warnings: the first logFirst are written, the rest is one
// summary line whose count adds up; other lines are not held back.
func TestRateLimitLines(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	l := newRateLimiter(core, time.Hour, logFirst, auditFirst, false)
	log := zap.New(l.core()).Named("offline")
	for i := 0; i < 40_000; i++ {
		log.Warn("offline storage full", zap.Int("i", i))
	}
	log.Warn("something else")
	log.Info("offline storage full") // another level: counted apart
	l.stop()
	if n := logs.FilterMessage("offline storage full").Len(); n != logFirst+1 {
		t.Errorf("%d lines written, want %d", n, logFirst+1)
	}
	if logs.FilterMessage("something else").Len() != 1 {
		t.Error("another message was held back")
	}
	sum := logs.FilterMessage(suppressedMsg).All()
	if len(sum) != 1 {
		t.Fatalf("%d summaries, want 1: %v", len(sum), sum)
	}
	m := sum[0].ContextMap()
	if m["message"] != "offline storage full" || m["count"] != int64(40_000-logFirst) || sum[0].Level != zapcore.WarnLevel || sum[0].LoggerName != "offline" {
		t.Errorf("summary %v %v", sum[0].Entry, m)
	}
	if logs.Len() > logFirst+4 {
		t.Errorf("%d lines in all", logs.Len())
	}
}

// With the ticker, a flood spread over several windows is bounded per
// window, and what was written plus what the summaries count adds up.
func TestRateLimitTicker(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	l := newRateLimiter(core, 20*time.Millisecond, 5, 5, true)
	log := zap.New(l.core())
	audit := log.Named("audit").With(zap.Bool("audit", true))
	start := time.Now()
	n := 0
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 10_000; i++ {
				log.Warn("flood")
				audit.Info("policy_denied", zap.String("reason", "rate"), zap.String("from", fmt.Sprintf("u%d@x", i%7)))
			}
		}()
		n += 10_000
	}
	wg.Wait()
	l.stop()
	windows := int(time.Since(start)/(20*time.Millisecond)) + 2
	written := logs.FilterMessage("flood").Len()
	if written > 5*windows*2 || written+countOf(logs.FilterMessage(suppressedMsg).All()) != n {
		t.Errorf("flood: %d written over ~%d windows, %d suppressed; want <= %d written, %d in all",
			written, windows, countOf(logs.FilterMessage(suppressedMsg).All()), 5*windows*2, n)
	}
	aw := logs.FilterMessage("policy_denied").Len()
	if aw > 5*windows || aw+countOf(logs.FilterMessage(auditSummaryMsg).All()) != n {
		t.Errorf("audit: %d written over ~%d windows, %d summarised; want %d in all",
			aw, windows, countOf(logs.FilterMessage(auditSummaryMsg).All()), n)
	}
}

// Audit events are never dropped silently: 40k identical denials are the
// first auditFirst events and one audit_summary with the count, first and
// last time and distinct senders; another reason is counted apart, and the
// summary keeps the audit logger's context.
func TestRateLimitAudit(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	l := newRateLimiter(core, time.Hour, logFirst, auditFirst, false)
	clock := time.Unix(1_700_000_000, 0)
	audit := zap.New(l.core(), zap.WithClock(fakeClock{&clock})).Named("audit").With(zap.Bool("audit", true))
	t0 := clock
	for i := 0; i < 40_000; i++ {
		clock = t0.Add(time.Duration(i) * time.Microsecond)
		audit.Info("policy_denied", zap.String("policy", "ratelimit"), zap.String("reason", "rate"),
			zap.String("from", fmt.Sprintf("u%d@x/r", i%250)))
	}
	for i := 0; i < 3; i++ {
		audit.Info("policy_denied", zap.String("reason", "content"), zap.String("from", "v@x/r"))
	}
	l.stop()
	if n := logs.FilterMessage("policy_denied").Len(); n != auditFirst+3 {
		t.Errorf("%d events written, want %d", n, auditFirst+3)
	}
	sum := logs.FilterMessage(auditSummaryMsg).All()
	if len(sum) != 1 {
		t.Fatalf("%d summaries, want 1: %v", len(sum), sum)
	}
	m := sum[0].ContextMap()
	first, last := t0.Add(auditFirst*time.Microsecond), t0.Add(39_999*time.Microsecond)
	if m["event"] != "policy_denied" || m["reason"] != "rate" || m["count"] != int64(40_000-auditFirst) ||
		m["senders"] != int64(250) || m["audit"] != true || sum[0].LoggerName != "audit" ||
		!m["first"].(time.Time).Equal(first) || !m["last"].(time.Time).Equal(last) {
		t.Errorf("summary %v", m)
	}
}

type fakeClock struct{ t *time.Time }

func (c fakeClock) Now() time.Time                         { return *c.t }
func (c fakeClock) NewTicker(d time.Duration) *time.Ticker { return time.NewTicker(d) }

// With [log] level = "warn", ordinary Info lines are dropped but audit
// events (Info) are still written: the level is for operators' lines, not
// for the compliance record.
func TestAuditIgnoresLogLevel(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	l := newRateLimiter(core, time.Hour, logFirst, auditFirst, false)
	l.level = zapcore.WarnLevel
	log := zap.New(l.core())
	log.Info("session started")
	log.Warn("disk slow")
	log.Named("audit").With(zap.Bool("audit", true)).Info("login", zap.String("result", "success"))
	l.stop()
	if logs.FilterMessage("session started").Len() != 0 {
		t.Error("an Info line was written at level warn")
	}
	if logs.FilterMessage("disk slow").Len() != 1 || logs.FilterMessage("login").Len() != 1 {
		t.Errorf("got %v", logs.All())
	}
}
