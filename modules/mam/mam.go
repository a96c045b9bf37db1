// Package mam keeps each user's own message history and serves it to the
// user's clients: XEP-0313 Message Archive Management (urn:xmpp:mam:2 with
// urn:xmpp:mam:2#extended: before-id, after-id, ids, flipped pages,
// metadata), paged with XEP-0059 Result Set Management, each archived
// message identified by an XEP-0359 stanza-id, and XEP-0441 archiving
// preferences.
//
// The history is the user's view, apart from the compliance journal
// (modules/archive): preferences, no-store hints and account deletion
// change it, never the journal. It registers the module "mam", the
// server's module.MessageArchiver, configured by [modules.mam].
//
// Every message the core admits passes ArchiveMessage after the policy
// chain and before the journal: stanza-ids a sender put in for our users
// are removed, and an archivable message for a local account gets the
// recipient's stanza-id, so that the journal, the delivered copy, carbons
// and offline storage all carry it. Once the journal took the message, the
// sender's and the recipient's items (each with its own id) go to a
// writer that gathers them for up to 100 ms and stores them in one
// transaction (group commit), off the delivery path; a query first waits
// for what was queued before it.
package mam

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/palisade-im/palisade/server/module"
	"github.com/palisade-im/palisade/server/rsm"
	"github.com/palisade-im/palisade/storage"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"mellium.im/xmpp/jid"
)

// Namespaces.
const (
	// NS is the XEP-0313 namespace.
	NS = "urn:xmpp:mam:2"
	// NSExtended is the XEP-0313 extended feature.
	NSExtended = "urn:xmpp:mam:2#extended"
	// NSStanzaID is the XEP-0359 namespace.
	NSStanzaID = "urn:xmpp:sid:0"
	// NSRSM is the XEP-0059 namespace.
	NSRSM = rsm.NS
	// NSForward is the XEP-0297 namespace.
	NSForward = "urn:xmpp:forward:0"
	// NSData is the XEP-0004 namespace.
	NSData = "jabber:x:data"
	// NSHints is the XEP-0334 namespace.
	NSHints = "urn:xmpp:hints"
)

// Config is the [modules.mam] section.
type Config struct {
	// DefaultPref is the archiving default of users who set no
	// preferences: "always", "never" or "roster" (XEP-0441).
	DefaultPref string `toml:"default_pref"`
	// MaxPage is the largest page a query returns (and the page size
	// when the client asks for none).
	MaxPage int `toml:"max_page"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() *Config {
	return &Config{DefaultPref: "always", MaxPage: 250}
}

// Validate checks the settings.
func (c *Config) Validate() error {
	if !validDefault(c.DefaultPref) {
		return fmt.Errorf("default_pref must be \"always\", \"never\" or \"roster\", not %q", c.DefaultPref)
	}
	if c.MaxPage < 1 || c.MaxPage > 10000 {
		return errors.New("max_page must be between 1 and 10000")
	}
	return nil
}

func validDefault(s string) bool { return s == "always" || s == "never" || s == "roster" }

func init() {
	module.RegisterConfigured("mam", DefaultConfig, func(h *module.Host, c Config) (any, error) {
		m, err := New(h.Router, h.Store, h.Log, c)
		if err != nil {
			return nil, err
		}
		if h.Metrics != nil {
			if err := h.Metrics.Register(m.queries); err != nil {
				_ = m.Stop(context.Background())
				return nil, fmt.Errorf("mam: metrics: %w", err)
			}
		}
		if h.Config != nil {
			m.SetRetention(Retention{Policies: h.Config.Archive.Retention, Interval: time.Duration(h.Config.Archive.PurgeInterval),
				Groups: func(b string) []string {
					j, err := jid.Parse(b)
					if err != nil {
						return nil
					}
					return h.Router.Groups(j)
				}})
		}
		return m, nil
	})
}

// Store is what the module needs from storage.
type Store interface {
	storage.History
	storage.Rosters
}

// Module archives messages and answers MAM queries.
type Module struct {
	router module.Router
	store  Store
	log    *zap.Logger
	cfg    Config
	now    func() time.Time

	prefsMu sync.Mutex
	prefs   map[string]storage.HistoryPrefs // by owner; cached after the first look-up

	queue chan writeReq
	stop  chan struct{}
	done  chan struct{}
	once  sync.Once

	ret    Retention
	purged chan struct{} // closed when the purge loop ended; nil before Start

	// queries counts query sets by result (palisade_mam_queries_total).
	queries *prometheus.CounterVec
}

// writeReq is a batch of items for the writer, or (items nil) a barrier
// closed once everything queued before it is stored.
type writeReq struct {
	items   []storage.HistoryItem
	barrier chan struct{}
}

var (
	_ module.IQHandlers      = (*Module)(nil)
	_ module.Features        = (*Module)(nil)
	_ module.MessageArchiver = (*Module)(nil)
	_ module.Stopper         = (*Module)(nil)
	_ module.Starter         = (*Module)(nil)
)

// Start starts the retention purge (at once, then every interval).
func (m *Module) Start(ctx context.Context) error {
	if len(m.ret.Policies) > 0 {
		m.purged = make(chan struct{})
		go m.purgeLoop(context.WithoutCancel(ctx))
	}
	return nil
}

// New builds the module and starts its writer.
func New(r module.Router, st Store, log *zap.Logger, cfg Config) (*Module, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("mam: %w", err)
	}
	m := &Module{
		router: r, store: st, log: log, cfg: cfg, now: time.Now,
		prefs: map[string]storage.HistoryPrefs{},
		queue: make(chan writeReq, 16384), stop: make(chan struct{}), done: make(chan struct{}),
		queries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "palisade_mam_queries_total",
			Help: "XEP-0313 archive queries (query sets) by result: ok (answered with results and fin) or error.",
		}, []string{"result"}),
	}
	go m.writer()
	return m, nil
}

// ServerFeatures implements module.Features.
func (m *Module) ServerFeatures() []string { return nil }

// AccountFeatures implements module.Features.
func (m *Module) AccountFeatures() []string { return []string{NS, NSExtended, NSStanzaID} }

// Stop stores what is queued and ends the writer.
func (m *Module) Stop(ctx context.Context) error {
	m.once.Do(func() { close(m.stop) })
	for _, done := range []chan struct{}{m.done, m.purged} {
		if done == nil {
			continue
		}
		select {
		case <-done:
		case <-ctx.Done():
			return fmt.Errorf("mam: stop: %w", ctx.Err())
		}
	}
	return nil
}

// maxBatch bounds the items stored in one transaction; linger is how long
// the writer gathers items before it commits them. Each item lands at the
// end of its owner's part of two indexes, so a commit writes a page per
// active owner and index: larger, rarer commits share those pages
// (measured with the bench harness, history only, 100 / 1000 pairs:
// 4096 items / 50 ms 16.9k / 6.9k msgs/s, 16384 / 100 ms 24.6k / 16.4k,
// 65536 / 200 ms 24.4k / 17.7k with a p99 of 1 s). A crash loses at most
// one window of history; the journal keeps the messages.
const (
	maxBatch = 16384
	linger   = 100 * time.Millisecond
)

// writer stores queued items, everything waiting in one transaction.
func (m *Module) writer() {
	defer close(m.done)
	var batch []storage.HistoryItem
	var barriers []chan struct{}
	take := func(r writeReq) {
		batch = append(batch, r.items...)
		if r.barrier != nil {
			barriers = append(barriers, r.barrier)
		}
	}
	flush := func() {
		if len(batch) > 0 {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			if err := m.store.AppendHistory(ctx, batch); err != nil {
				m.log.Error("message history not stored", zap.Int("items", len(batch)), zap.Error(err))
			}
			cancel()
		}
		for _, b := range barriers {
			close(b)
		}
		batch, barriers = batch[:0], barriers[:0]
	}
	for {
		select {
		case r := <-m.queue:
			take(r)
			// Gather for a moment: one commit (one fsync) for many
			// messages. A query's barrier ends the wait at once.
			timer := time.NewTimer(linger)
		gather:
			for len(batch) < maxBatch && len(barriers) == 0 {
				select {
				case r := <-m.queue:
					take(r)
				case <-timer.C:
					break gather
				case <-m.stop:
					break gather
				}
			}
			timer.Stop()
			flush()
		case <-m.stop:
			for {
				select {
				case r := <-m.queue:
					take(r)
					if len(batch) >= maxBatch {
						flush()
					}
				default:
					flush()
					return
				}
			}
		}
	}
}

// enqueue hands items to the writer; it waits when the queue is full.
func (m *Module) enqueue(items []storage.HistoryItem) {
	select {
	case m.queue <- writeReq{items: items}:
	case <-m.done:
		// Stopped: store directly.
		if err := m.store.AppendHistory(context.Background(), items); err != nil {
			m.log.Error("message history not stored", zap.Error(err))
		}
	}
}

// sync waits until everything queued so far is stored.
func (m *Module) sync(ctx context.Context) error {
	b := make(chan struct{})
	select {
	case m.queue <- writeReq{barrier: b}:
	case <-m.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-b:
		return nil
	case <-m.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
