package cli

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Log rate limits: a flood of identical lines (one per refused stanza, per
// bad TLS handshake, ...) must neither fill the disk nor bury the rest.
const (
	// logInterval is the window the limits count in, and how often the
	// summaries of what was held back are written.
	logInterval = time.Second
	// logFirst is how many identical lines (same level and message) are
	// written per window; the rest are counted.
	logFirst = 20
	// auditFirst is how many identical audit events (same event and
	// reason) are written per window; the rest are summarised.
	auditFirst = 50
	// maxLimitKeys bounds the distinct lines and events tracked per
	// window; beyond it, lines share one key per level and events one key
	// per event name.
	maxLimitKeys = 1024
	// maxSenders bounds the distinct senders counted per summary.
	maxSenders = 10_000
)

// Messages of the summaries.
const (
	suppressedMsg   = "suppressed similar log lines"
	auditSummaryMsg = "audit_summary"
)

// senderKeys are the audit fields that name who caused an event, in the
// order they are looked for.
var senderKeys = []string{"from", "ip", "jid", "who", "user", "remote"}

// rateLimiter wraps a core so that repeated lines are dropped and
// summarised. Ordinary lines go through zap's sampler: per window, the
// first `first` lines of a level and message are written, the others are
// counted by the sampler's hook and reported as one line (suppressedMsg,
// with the message and the count). Audit events (logger "audit") are never
// dropped silently: beyond the first `auditFirst` of an event name and
// reason per window, they are folded into one audit_summary event with the
// count, the first and last time and the number of distinct senders.
type rateLimiter struct {
	// level is the least level of ordinary lines (audit events: Info).
	level    zapcore.Level
	root     zapcore.Core
	interval time.Duration
	first    int
	auditMax int

	mu      sync.Mutex
	dropped map[lineKey]*dropCount
	seen    map[auditKey]int
	folded  map[auditKey]*auditFold
	order   []auditKey // folded, in the order they began

	stopOnce sync.Once
	done     chan struct{}
	stopped  chan struct{}
}

type lineKey struct {
	level   zapcore.Level
	message string
}

type dropCount struct {
	logger string
	n      int
}

type auditKey struct{ logger, event, reason string }

type auditFold struct {
	core        zapcore.Core // the core (with its context) of the first folded event
	level       zapcore.Level
	n           int
	first, last time.Time
	senders     map[string]struct{}
	capped      bool
}

// newRateLimiter wraps core; with tick, a goroutine writes the summaries
// every interval until stop (which writes the last ones).
func newRateLimiter(core zapcore.Core, interval time.Duration, first, auditMax int, tick bool) *rateLimiter {
	l := &rateLimiter{root: core, interval: interval, first: first, auditMax: auditMax,
		dropped: map[lineKey]*dropCount{}, seen: map[auditKey]int{}, folded: map[auditKey]*auditFold{},
		done: make(chan struct{}), stopped: make(chan struct{})}
	if !tick {
		close(l.stopped)
		return l
	}
	go func() {
		defer close(l.stopped)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-l.done:
				return
			case now := <-t.C:
				l.flush(now)
			}
		}
	}()
	return l
}

// rateLimited returns log with its lines rate-limited and a function that
// stops the limiter and writes what it still holds.
// level is the configured [log] level of the ordinary lines; audit events
// are written at Info and above whatever it is, so log's core must enable
// Info.
func rateLimited(log *zap.Logger, level zapcore.Level) (*zap.Logger, func()) {
	l := newRateLimiter(log.Core(), logInterval, logFirst, auditFirst, true)
	l.level = level
	return zap.New(l.core()), l.stop
}

// core is the wrapped core.
func (l *rateLimiter) core() zapcore.Core {
	plain := zapcore.NewSamplerWithOptions(l.root, l.interval, l.first, 0, zapcore.SamplerHook(l.sampled))
	if l.level > zapcore.InfoLevel {
		// Ordinary lines at the configured level; audit events never
		// depend on it (a compliance record is not a debug line).
		if c, err := zapcore.NewIncreaseLevelCore(plain, l.level); err == nil {
			plain = c
		}
	}
	return splitCore{plain: plain, audit: &auditCore{Core: l.root, l: l}}
}

// stop ends the ticker and writes the pending summaries.
func (l *rateLimiter) stop() {
	l.stopOnce.Do(func() {
		close(l.done)
		<-l.stopped
		l.flush(time.Now())
	})
}

// sampled counts the lines the sampler drops.
func (l *rateLimiter) sampled(ent zapcore.Entry, dec zapcore.SamplingDecision) {
	if dec&zapcore.LogDropped == 0 {
		return
	}
	k := lineKey{ent.Level, ent.Message}
	l.mu.Lock()
	defer l.mu.Unlock()
	d := l.dropped[k]
	if d == nil {
		if len(l.dropped) >= maxLimitKeys {
			k.message = "(various messages)"
			d = l.dropped[k]
		}
		if d == nil {
			d = &dropCount{logger: ent.LoggerName}
			l.dropped[k] = d
		}
	}
	d.n++
}

// admit counts an audit event and reports whether to write it; if not, it
// is folded into its key's summary.
func (l *rateLimiter) admit(core zapcore.Core, ent zapcore.Entry, fields []zapcore.Field) bool {
	k := auditKey{logger: ent.LoggerName, event: ent.Message, reason: fieldString(fields, "reason")}
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.seen[k]; !ok && len(l.seen) >= maxLimitKeys {
		k.reason = "(various reasons)"
	}
	l.seen[k]++
	if l.seen[k] <= l.auditMax {
		return true
	}
	f := l.folded[k]
	if f == nil {
		f = &auditFold{core: core, level: ent.Level, first: ent.Time, senders: map[string]struct{}{}}
		l.folded[k] = f
		l.order = append(l.order, k)
	}
	f.n++
	f.last = ent.Time
	for _, key := range senderKeys {
		if s := fieldString(fields, key); s != "" {
			if len(f.senders) < maxSenders {
				f.senders[s] = struct{}{}
			} else if _, ok := f.senders[s]; !ok {
				f.capped = true
			}
			break
		}
	}
	return false
}

// flush writes one line per message the sampler dropped and one
// audit_summary per folded event, and starts a new window for audit
// events.
func (l *rateLimiter) flush(now time.Time) {
	l.mu.Lock()
	dropped, folded, order := l.dropped, l.folded, l.order
	l.dropped, l.folded, l.order = map[lineKey]*dropCount{}, map[auditKey]*auditFold{}, nil
	clear(l.seen)
	l.mu.Unlock()
	for k, d := range dropped {
		ent := zapcore.Entry{Level: k.level, Time: now, LoggerName: d.logger, Message: suppressedMsg}
		_ = l.root.Write(ent, []zapcore.Field{zap.String("message", k.message), zap.Int("count", d.n),
			zap.Duration("interval", l.interval)})
	}
	for _, k := range order {
		f := folded[k]
		ent := zapcore.Entry{Level: f.level, Time: now, LoggerName: k.logger, Message: auditSummaryMsg}
		fields := []zapcore.Field{zap.String("event", k.event), zap.String("reason", k.reason), zap.Int("count", f.n),
			zap.Time("first", f.first), zap.Time("last", f.last), zap.Int("senders", len(f.senders))}
		if f.capped {
			fields = append(fields, zap.Bool("senders_capped", true))
		}
		_ = f.core.Write(ent, fields)
	}
}

// fieldString is the value of a string (or Stringer) field, "" if none.
func fieldString(fields []zapcore.Field, key string) (s string) {
	for _, f := range fields {
		if f.Key != key {
			continue
		}
		switch f.Type {
		case zapcore.StringType:
			return f.String
		case zapcore.StringerType:
			defer func() {
				if recover() != nil {
					s = ""
				}
			}()
			if v, ok := f.Interface.(fmt.Stringer); ok {
				return v.String()
			}
		}
		return ""
	}
	return ""
}

func isAudit(logger string) bool { return logger == "audit" || strings.HasPrefix(logger, "audit.") }

// splitCore sends audit events to the audit limiter and the rest to the
// sampler.
type splitCore struct{ plain, audit zapcore.Core }

func (c splitCore) Enabled(l zapcore.Level) bool { return c.plain.Enabled(l) || c.audit.Enabled(l) }

func (c splitCore) With(fields []zapcore.Field) zapcore.Core {
	return splitCore{plain: c.plain.With(fields), audit: c.audit.With(fields)}
}

func (c splitCore) Check(ent zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if isAudit(ent.LoggerName) {
		return c.audit.Check(ent, ce)
	}
	return c.plain.Check(ent, ce)
}

func (c splitCore) Write(ent zapcore.Entry, fields []zapcore.Field) error {
	if isAudit(ent.LoggerName) {
		return c.audit.Write(ent, fields)
	}
	return c.plain.Write(ent, fields)
}

func (c splitCore) Sync() error { return c.plain.Sync() }

// auditCore writes audit events the limiter admits.
type auditCore struct {
	zapcore.Core
	l *rateLimiter
}

func (c *auditCore) With(fields []zapcore.Field) zapcore.Core {
	return &auditCore{Core: c.Core.With(fields), l: c.l}
}

func (c *auditCore) Check(ent zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(ent.Level) {
		return ce.AddCore(ent, c)
	}
	return ce
}

func (c *auditCore) Write(ent zapcore.Entry, fields []zapcore.Field) error {
	if !c.l.admit(c.Core, ent, fields) {
		return nil
	}
	return c.Core.Write(ent, fields)
}
