package archive

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// journalMetrics are the journal's Prometheus collectors (README
// "Metrics"). They exist in every module (tests build it with New); only
// the host's registry (module.Host.Metrics) makes them visible.
type journalMetrics struct {
	appends  prometheus.Counter
	failures prometheus.Counter
	commit   prometheus.Histogram
}

func newJournalMetrics() *journalMetrics {
	return &journalMetrics{
		appends: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "palisade_journal_appends_total",
			Help: "Stanza records submitted to the compliance journal (administrative acts, exports and purges are not counted).",
		}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "palisade_journal_commit_failures_total",
			Help: "Journal records that could not be encoded or made durable; their stanzas were refused, not delivered.",
		}),
		commit: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "palisade_journal_commit_seconds",
			Help: "Time from a record's submission until its group commit is durable (fsynced), per record.",
			// 0.1 ms (one fsync is ~0.3 ms) to ~3.3 s.
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
	}
}

// register adds the collectors to r (nil: nowhere).
func (jm *journalMetrics) register(r prometheus.Registerer) error {
	if r == nil {
		return nil
	}
	for _, c := range []prometheus.Collector{jm.appends, jm.failures, jm.commit} {
		if err := r.Register(c); err != nil {
			return fmt.Errorf("archive: metrics: %w", err)
		}
	}
	return nil
}

// committed records the outcome of a record submitted at start.
func (jm *journalMetrics) committed(start time.Time, err error) {
	if err != nil {
		jm.failures.Inc()
		return
	}
	jm.commit.Observe(time.Since(start).Seconds())
}
