// Package archive is Palisade's compliance journal: the server's
// module.Journal. Every message stanza that crosses the server (client to
// client, to an offline account, errors bounced to users), every presence
// subscription change, and what else a user sends that reaches another
// party (IQs between clients, directed presence and status broadcasts, PEP
// changes, vCard sets: kind.go) is encoded as a record (see Record) and
// appended, fsynced, before it is delivered; when the append fails the core does not
// deliver the stanza (fail closed). XEP-0334 no-store hints and user
// preferences do not keep anything out. Copies (carbons, offline
// redelivery, stream-resumption resends) are not new records.
//
// The records are the leaves of an RFC 6962 Merkle tree
// (golang.org/x/mod/sumdb/tlog). At archive.checkpoint_interval while the
// journal grows, and on shutdown, the module signs a C2SP tlog-checkpoint as
// a note (golang.org/x/mod/sumdb/note, Ed25519), keeps it in the journal
// and publishes it to archive.checkpoint_dir. Each checkpoint is also
// submitted to the [[archive.witness]] C2SP tlog-witnesses (witness.go),
// whose cosignatures are kept beside it. `palisade archive verify` checks
// the whole journal.
//
// It registers the module "archive", configured by the top-level [archive]
// section.
package archive

import (
	"context"
	"fmt"
	"net/url"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/palisade-im/palisade/server/config"
	"github.com/palisade-im/palisade/server/module"
	"github.com/palisade-im/palisade/server/stanza"
	"github.com/palisade-im/palisade/storage"
	"github.com/palisade-im/palisade/storage/sqlite"
	"go.uber.org/zap"
	"golang.org/x/mod/sumdb/note"
	"mellium.im/xmpp/jid"
)

func init() {
	module.Register(module.Info{Name: "archive", New: newFromHost})
}

// Files are the archive's files as a configuration names them.
type Files struct {
	Journal, SigningKey, OpenPGPKey, CheckpointDir string
}

// Paths returns the files cfg names, with their defaults under the data
// directory.
func Paths(cfg *config.Config) Files {
	a := cfg.Archive
	or := func(v, def string) string {
		if v != "" {
			return v
		}
		return filepath.Join(cfg.Server.DataDir, def)
	}
	return Files{
		Journal:       or(a.JournalFile, "journal.db"),
		SigningKey:    or(a.SigningKeyFile, "journal-signing.key"),
		OpenPGPKey:    or(a.OpenPGPKeyFile, "journal-openpgp.key"),
		CheckpointDir: or(a.CheckpointDir, "checkpoints"),
	}
}

// Sinks are the checkpoint sinks cfg names: the directory, then syslog and
// each URL when set.
func Sinks(cfg *config.Config) []Sink {
	sinks := []Sink{DirSink{Dir: Paths(cfg).CheckpointDir}}
	switch v := cfg.Archive.CheckpointSyslog; v {
	case "":
	case "local":
		sinks = append(sinks, SyslogSink{})
	default:
		if u, err := url.Parse(v); err == nil {
			addr := u.Host
			if u.Scheme == "unix" || u.Scheme == "unixgram" {
				addr = u.Path
			}
			sinks = append(sinks, SyslogSink{Network: u.Scheme, Addr: addr})
		}
	}
	for _, u := range cfg.Archive.CheckpointURLs {
		sinks = append(sinks, HTTPSink{URL: u})
	}
	return sinks
}

// KeyName is the note key name (and checkpoint origin) for a new signing key.
func KeyName(cfg *config.Config) string {
	return cfg.Server.Domains[0] + "/palisade-journal"
}

// disabled is what the module is when [archive] enabled = false: it
// implements no hook, so the core keeps its no-op journal.
type disabled struct{}

func newFromHost(h *module.Host, _ any) (any, error) {
	cfg := h.Config
	if cfg == nil || !cfg.Archive.Enabled {
		return disabled{}, nil
	}
	f := Paths(cfg)
	signer, err := LoadOrCreateKey(f.SigningKey, KeyName(cfg))
	if err != nil {
		return nil, err
	}
	// Made now so that `archive pubkey --openpgp` can hand it out before
	// the first export.
	if _, err := LoadOrCreateOpenPGP(f.OpenPGPKey, KeyName(cfg)); err != nil {
		return nil, err
	}
	j, err := sqlite.OpenJournal(context.Background(), f.Journal)
	if err != nil {
		return nil, err
	}
	ctx := context.Background()
	// A configuration that weakens a locked policy never starts.
	if err := EnforceLocks(ctx, j, j, cfg.Archive.Retention, "config:"+cfg.Path, h.Audit); err != nil {
		j.Close()
		return nil, err
	}
	if err := SyncConfigHolds(ctx, j, j, cfg.Archive.Holds, h.Audit, h.Log); err != nil {
		j.Close()
		return nil, err
	}
	// The locks and holds are remembered outside the journal too
	// (lockmarker.go).
	if err := RefreshLockMarker(ctx, cfg, f.Journal, j, j); err != nil {
		j.Close()
		return nil, err
	}
	m := New(j, signer, Sinks(cfg), h.Router, time.Duration(cfg.Archive.CheckpointInterval), h.Log, h.Audit)
	m.closeJournal = true
	m.retention, m.holds, m.cfgHolds = cfg.Archive.Retention, j, cfg.Archive.Holds
	if len(cfg.Archive.OfficerKeys) > 0 {
		officers, err := ReadOfficerKeys(cfg.Archive.OfficerKeys)
		if err != nil {
			j.Close()
			return nil, err
		}
		m.sealer = NewSealer(officers, j)
	}
	m.purgeEvery = time.Duration(cfg.Archive.PurgeInterval)
	if groupScoped(cfg.Archive.Retention) && h.Router != nil {
		m.groupsOf, m.groupMembers = h.Router.Groups, h.Router.GroupMembers
	}
	ws, err := Witnesses(cfg)
	if err != nil {
		j.Close()
		return nil, err
	}
	m.SetWitnesses(ws)
	// The configuration's digest is journaled at each start (acts.go).
	act, err := ConfigAct(cfg, BuildVersion())
	if err != nil {
		j.Close()
		return nil, err
	}
	m.startAct = &act
	if h.SetHealth != nil {
		m.health = h.SetHealth
	}
	if err := m.met.register(h.Metrics); err != nil {
		j.Close()
		return nil, err
	}
	return m, nil
}

// Module journals stanzas and issues checkpoints.
type Module struct {
	j        storage.Journal
	signer   note.Signer
	sinks    []Sink
	local    func(domain string) bool
	interval time.Duration
	log      *zap.Logger
	audit    *zap.Logger
	now      func() time.Time
	health   func(component, problem string)

	closeJournal bool
	// retention and holds drive the purge job, every purgeEvery (none
	// without policies).
	retention []config.Retention
	holds     storage.Retention
	cfgHolds  []config.Hold
	// sealer encrypts record content to the officer keys (nil: plaintext).
	sealer     *Sealer
	purgeEvery time.Duration
	stop       chan struct{}
	wg         sync.WaitGroup

	cpMu     sync.Mutex // serializes checkpoints
	lastSize int64      // size of the last checkpoint issued (-1: none yet)

	sinkBad atomic.Bool

	// groupsOf is set when a retention policy has scope "groups": the
	// memberships of the parties of every record are then recorded, each
	// account's once per change (seen, by bare JID).
	groupsOf func(bare jid.JID) []string
	seenMu   sync.Mutex
	seen     map[string][]string
	memWG    sync.WaitGroup // membership writes in flight
	memDone  bool           // Stop began: no new membership writes
	// groupMembers lists a group's members (offline ones too): before
	// each purge every member of a group-scoped policy is recorded.
	groupMembers func(ctx context.Context, group string) ([]jid.JID, error)
	// wit submits checkpoints to the C2SP witnesses (nil: none).
	wit *witnessWorker
	// startAct is the configuration's digest, journaled by Start (nil:
	// none, as in tests building the module with New).
	startAct *AdminAct
	// met counts appends, commit latency and failures (metrics.go).
	met *journalMetrics
}

var (
	_ module.Journal          = (*Module)(nil)
	_ module.Starter          = (*Module)(nil)
	_ module.Stopper          = (*Module)(nil)
	_ module.PipelinedJournal = (*Module)(nil)
)

// Localer tells whether a domain is served here (module.Router has it).
type Localer interface{ IsLocal(domain string) bool }

// New builds the module on an open journal.
func New(j storage.Journal, signer note.Signer, sinks []Sink, r Localer, interval time.Duration, log, audit *zap.Logger) *Module {
	return &Module{
		j: j, signer: signer, sinks: sinks, local: r.IsLocal, interval: interval,
		log: log, audit: audit, now: time.Now, lastSize: -1,
		health: func(string, string) {}, met: newJournalMetrics(),
	}
}

// bufPool holds the scratch buffers of Append (stanza XML, record bytes).
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

// Append implements module.Journal: messages, subscription presence and
// the other channels kindOf classifies are recorded, everything else
// passes.
func (m *Module) Append(ctx context.Context, st *stanza.Stanza) error {
	return m.Submit(ctx, st)()
}

// Submit implements module.PipelinedJournal: it queues the record of st
// for the next group commit; wait returns once it is durable.
func (m *Module) Submit(ctx context.Context, st *stanza.Stanza) (wait func() error) {
	// Messages first: the message path asks nothing else.
	kind := storage.KindMessage
	if st.Kind != stanza.Message {
		var ok bool
		if kind, ok = kindOf(st); !ok {
			if st.Peer == nil {
				return passed
			}
			// Everything that crosses a partner stream is recorded.
			kind = crossingKind(st)
		}
	}
	dir := storage.DirLocal
	switch {
	case !m.local(st.From.Domainpart()):
		dir = storage.DirInbound
	case !m.local(st.To.Domainpart()) && st.To.Domainpart() != "": // a broadcast has no 'to'
		dir = storage.DirOutbound
	}
	// The scratch buffers hold the record until the journal has copied it.
	xp, rp := bufPool.Get().(*[]byte), bufPool.Get().(*[]byte)
	defer func() {
		*xp, *rp = (*xp)[:0], (*rp)[:0]
		bufPool.Put(xp)
		bufPool.Put(rp)
	}()
	// The stanza's own wire bytes, which every session delivers, with its
	// namespace declared: the record holds what is delivered.
	xml := st.AppendStandalone((*xp)[:0])
	*xp = xml
	// The stamped attributes are the JIDs' string forms already.
	from, to := st.El.Attr("from"), st.El.Attr("to")
	if from == "" {
		from = st.From.String()
	}
	if to == "" {
		to = st.To.String()
	}
	if m.groupsOf != nil {
		m.noteMembers(st.From.Bare())
		m.noteMembers(st.To.Bare())
	}
	t := m.now()
	var data []byte
	var err error
	var v via
	if st.Peer != nil {
		v = via{peer: st.Peer.Domain, auth: st.Peer.Auth}
	}
	v.flags = st.Flags
	if m.sealer == nil {
		data, err = appendRecordVia((*rp)[:0], t, string(dir), string(kind), from, to, st.Type, st.ID, v, xml, EncNone, nil)
	} else {
		sp := bufPool.Get().(*[]byte)
		var enc string
		enc, *sp, err = m.sealer.Seal(ctx, t, (*sp)[:0], xml)
		if err == nil {
			data, err = appendRecordVia((*rp)[:0], t, string(dir), string(kind), from, to, st.Type, st.ID, v, xml, enc, *sp)
		}
		*sp = (*sp)[:0]
		bufPool.Put(sp)
	}
	if data != nil {
		*rp = data
	}
	if err != nil {
		m.met.failures.Inc()
		return func() error { return fmt.Errorf("archive: %w", err) }
	}
	recs := []storage.JournalRecord{{
		Time: t, Direction: dir, Kind: kind, From: from, To: to,
		StanzaType: st.Type, StanzaSize: len(xml), Data: data,
	}}
	start := time.Now()           // not m.now: tests set that clock
	done := m.j.Submit(ctx, recs) // copies data: the buffers go back now
	m.met.appends.Inc()
	return func() error {
		err := done()
		m.met.committed(start, err)
		if err != nil {
			return fmt.Errorf("archive: %w", err)
		}
		return nil
	}
}

// noteMembers records the groups of the local account bare when they
// changed since it was last seen. The write is off the message path; a
// membership only matters to a purge days later.
func (m *Module) noteMembers(bare jid.JID) {
	if bare.Localpart() == "" || !m.local(bare.Domainpart()) {
		return
	}
	gs := m.groupsOf(bare)
	if len(gs) == 0 {
		return
	}
	key := bare.String()
	m.seenMu.Lock()
	if m.seen == nil {
		m.seen = map[string][]string{}
	}
	same := slices.Equal(m.seen[key], gs) || m.memDone
	if !same {
		m.seen[key] = slices.Clone(gs)
		m.memWG.Add(1) // under seenMu: Stop's Wait cannot start between
	}
	m.seenMu.Unlock()
	if same {
		return
	}
	go func() {
		defer m.memWG.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := m.holds.RecordMemberships(ctx, map[string][]string{key: gs}, m.now()); err != nil {
			m.log.Error("archive: group memberships not recorded", zap.String("jid", key), zap.Error(err))
			m.seenMu.Lock()
			delete(m.seen, key) // try again with the next record
			m.seenMu.Unlock()
		}
	}()
}

// recordGroupMembers records the current members of every group a
// retention policy names, as the group sources list them. A group that
// cannot be listed now is logged; what was recorded before stays.
func (m *Module) recordGroupMembers(ctx context.Context) {
	if m.groupMembers == nil {
		return
	}
	var groups []string
	for _, p := range m.retention {
		if p.Scope == config.ScopeGroups {
			groups = append(groups, p.Groups...)
		}
	}
	slices.Sort(groups)
	seen := map[string][]string{}
	for _, g := range slices.Compact(groups) {
		members, err := m.groupMembers(ctx, g)
		if err != nil {
			m.log.Warn("archive: group members not listed before the purge", zap.String("group", g), zap.Error(err))
			continue
		}
		for _, j := range members {
			seen[j.Bare().String()] = append(seen[j.Bare().String()], g)
		}
	}
	// One transaction: the journal's writer is the message path's too.
	if err := m.holds.RecordMemberships(ctx, seen, m.now()); err != nil {
		m.log.Error("archive: group memberships not recorded", zap.Int("accounts", len(seen)), zap.Error(err))
	}
}

// passed is the Submit result of a stanza the journal does not record.
func passed() error { return nil }

// Start issues a checkpoint for what an earlier run left unsigned and
// starts the checkpoint timer.
func (m *Module) Start(ctx context.Context) error {
	cps, err := m.j.Checkpoints(ctx)
	if err != nil {
		return fmt.Errorf("archive: %w", err)
	}
	if len(cps) > 0 {
		m.lastSize = cps[len(cps)-1].Size
		if m.wit != nil {
			// What an earlier run left uncosigned is submitted too.
			m.wit.noteCheckpoint(cps[len(cps)-1])
		}
	}
	if m.startAct != nil {
		seq, err := RecordAdmin(ctx, m.j, *m.startAct)
		if err != nil {
			return err
		}
		m.audit.Info("config_digest", zap.String("actor", "server"), zap.String("config", m.startAct.Target),
			zap.String("sha256", m.startAct.Details["sha256"]), zap.String("version", m.startAct.Details["version"]), zap.Int64("record", seq))
	}
	if err := m.Checkpoint(ctx); err != nil {
		return err
	}
	if m.wit != nil {
		m.startWitnesses()
	}
	m.stop = make(chan struct{})
	m.wg.Add(1)
	go m.loop()
	if len(m.retention) > 0 && m.holds != nil && m.purgeEvery > 0 {
		m.wg.Add(1)
		go m.purgeLoop()
	}
	return nil
}

// purgeLoop runs the retention purge every purgeEvery, first once at
// start.
func (m *Module) purgeLoop() {
	defer m.wg.Done()
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
			m.recordGroupMembers(ctx)
			res, err := Purge(ctx, m.j, m.holds, m.retention, m.cfgHolds, m.now(), false, "server", m.audit)
			cancel()
			if err != nil {
				m.log.Error("archive purge failed", zap.Error(err))
			} else if len(res.Purged) > 0 {
				m.log.Info("archive purge", zap.Int("purged", len(res.Purged)), zap.Int("held", res.Held), zap.Int64("disposition", res.Disposition))
			}
			t.Reset(m.purgeEvery)
		}
	}
}

func (m *Module) loop() {
	defer m.wg.Done()
	t := time.NewTicker(m.interval)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), m.interval)
			if err := m.Checkpoint(ctx); err != nil {
				m.log.Error("archive checkpoint failed", zap.Error(err))
			}
			cancel()
			if m.wit != nil {
				// Witnesses that failed are asked again.
				m.wit.wake()
			}
		}
	}
}

// Stop issues a final checkpoint, lets the witnesses cosign it (until ctx
// is done) and closes the journal.
func (m *Module) Stop(ctx context.Context) error {
	if m.stop != nil {
		close(m.stop)
		m.wg.Wait()
	}
	m.seenMu.Lock()
	m.memDone = true
	m.seenMu.Unlock()
	m.memWG.Wait()
	err := m.Checkpoint(ctx)
	m.stopWitnesses(ctx)
	if m.closeJournal {
		if cerr := m.j.Close(); err == nil {
			err = cerr
		}
	}
	return err
}

// Checkpoint signs the current tree head when the journal grew since the
// last checkpoint, keeps it in the journal and publishes it to the sinks.
// A sink that fails is logged and marks the health status; the checkpoint
// is kept in the journal regardless. The witnesses are asked to cosign it
// from their own goroutine (witness.go): Checkpoint does not wait for them.
func (m *Module) Checkpoint(ctx context.Context) error {
	m.cpMu.Lock()
	defer m.cpMu.Unlock()
	head, err := m.j.TreeHead(ctx)
	if err != nil {
		return fmt.Errorf("archive: checkpoint: %w", err)
	}
	if head.Size == 0 || head.Size == m.lastSize {
		return nil
	}
	msg, err := note.Sign(&note.Note{Text: CheckpointText(m.signer.Name(), head)}, m.signer)
	if err != nil {
		return fmt.Errorf("archive: sign checkpoint: %w", err)
	}
	t := m.now()
	cp := storage.Checkpoint{Size: head.Size, Time: t, Note: msg}
	if err := m.j.AddCheckpoint(ctx, cp); err != nil {
		return fmt.Errorf("archive: %w", err)
	}
	m.lastSize = head.Size
	if m.wit != nil {
		m.wit.noteCheckpoint(cp)
	}
	m.audit.Info("archive_checkpoint", zap.Int64("size", head.Size), zap.String("root", head.Hash.String()))
	var failed error
	for _, s := range m.sinks {
		if err := s.Publish(head.Size, msg); err != nil {
			failed = err
			m.log.Error("archive checkpoint sink failed", zap.Int64("size", head.Size), zap.Error(err))
		}
	}
	switch {
	case failed != nil:
		m.sinkBad.Store(true)
		m.health("archive-checkpoint-sink", failed.Error())
	case m.sinkBad.Swap(false):
		m.health("archive-checkpoint-sink", "")
	}
	return nil
}
