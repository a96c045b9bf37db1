package mam

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/palisade-im/palisade/server/config"
	"go.uber.org/zap"
)

// Retention of the user's history follows [[archive.retention]]: an item
// of owner's conversation with a contact is kept for the longest keep_days
// of the policies that apply to the owner or the contact, as for the
// journal record of the same message; with none it is kept for ever.
// Legal holds keep the journal (the company's record), not users' views.

// Retention is the history's share of the archive configuration.
type Retention struct {
	Policies []config.Retention
	// Groups tells an account's Palisade groups, for policies of scope
	// "groups" (the members as they are now; the journal also covers
	// those who left).
	Groups func(bare string) []string
	// Interval is how often the running server purges (default a day).
	Interval time.Duration
}

// keep returns how long the items of owner's conversation with are kept.
func (r Retention) keep(owner, with string) time.Duration {
	days, _ := config.KeepFor(r.Policies, r.Groups, bare(owner), bare(with))
	return time.Duration(days) * 24 * time.Hour
}

func bare(j string) string {
	if i := strings.IndexByte(j, '/'); i >= 0 {
		return j[:i]
	}
	return j
}

// SetRetention sets the retention the history follows; call it before
// Start.
func (m *Module) SetRetention(r Retention) { m.ret = r }

// Purge removes the history items past retention as of now.
func (m *Module) Purge(ctx context.Context, now time.Time) (int64, error) {
	if len(m.ret.Policies) == 0 {
		return 0, nil
	}
	n, err := m.store.PurgeHistory(ctx, now, m.ret.keep)
	if err != nil {
		return n, fmt.Errorf("mam: purge: %w", err)
	}
	return n, nil
}

// purgeLoop purges at start and then every Interval until stop.
func (m *Module) purgeLoop(ctx context.Context) {
	defer close(m.purged)
	every := m.ret.Interval
	if every <= 0 {
		every = 24 * time.Hour
	}
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
		}
		n, err := m.Purge(ctx, m.now())
		if err != nil {
			m.log.Error("history purge failed", zap.Error(err))
		} else if n > 0 {
			m.log.Info("history purged", zap.Int64("items", n))
		}
		t.Reset(every)
	}
}
