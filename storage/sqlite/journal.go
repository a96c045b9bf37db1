package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/palisade-im/palisade/storage"
	"github.com/palisade-im/palisade/storage/recordlog"
	"golang.org/x/mod/sumdb/tlog"
)

// ErrJournalClosed is returned by Append after Close.
var ErrJournalClosed = errors.New("sqlite: journal closed")

// ErrJournalReadOnly is returned by writes to a journal opened read-only.
var ErrJournalReadOnly = errors.New("sqlite: journal opened read-only")

// Group commit bounds.
const (
	// journalQueue is how many Append calls may wait for the committer.
	journalQueue = 16384
	// journalMaxBatch is how many Append calls one frame takes. Measured,
	// journal only, 1000 pairs (32,000 messages in flight): 4096 gave
	// 35.6k msgs/s, 16384 45.9k, 65536 43.8k. Smaller frames cut each
	// session's burst into several commits and so into several socket
	// writes (3 messages per write against 15 without the journal).
	journalMaxBatch = 16384
)

// Journal is a storage.Journal on its own SQLite file (normally
// data_dir/journal.db), apart from the main store so that it can live on
// another mount and has its own schema versions, and its record log beside
// it (JournalRecordsDir, package recordlog).
//
// One committer goroutine takes Append calls from a bounded queue and
// writes everything waiting as one frame of the record log (group commit),
// fdatasynced before any of the calls returns. The SQLite file holds what
// is not on the message path: checkpoints, cosignatures, retention locks,
// holds, epoch keys, and the records of journals written before the record
// log existed (table records, seq < legacyEnd), which stay readable where
// they are. Several processes may append to one journal (the server, and
// the CLI recording an export): each commit holds the log's append lock
// and starts from the size on disk.
type Journal struct {
	wr, rd   *sql.DB
	readOnly bool

	log *recordlog.Log
	// legacyEnd: records before it are rows of table records.
	legacyEnd int64

	queue   chan *appendReq
	stop    chan struct{}
	done    chan struct{}
	closeMu sync.Once

	// head is the durable tree (what TreeHead and so the checkpoints
	// report).
	mu   sync.Mutex // guards head
	head treeEdge

	// The committer's: the tree as written (durable or not), which the
	// next frame extends.
	written treeEdge
	batch   []*appendReq
	// slots holds one token per frame between its write and the end of
	// its fdatasync (journalSyncs at most); fifo are those frames, oldest
	// first (under tmu), answered in that order.
	slots  chan struct{}
	tmu    sync.Mutex
	fifo   []*ticket
	enc    [][]byte
	ends   []int
	hashes [][]byte
	hbuf   []byte
	// inlineMax is journalInlineMax but in tests.
	inlineMax int
}

// JournalRecordsDir is the record log directory of the journal at path.
func JournalRecordsDir(path string) string { return path + "-records" }

var _ storage.Journal = (*Journal)(nil)

// appendReq is one Submit call: its records, encoded for the record log
// and with their leaf hashes, both by the caller, so that the committer
// (one goroutine for every session's messages) only copies and hashes the
// tree's inner nodes.
type appendReq struct {
	recs   []storage.JournalRecord
	enc    [][]byte
	ends   []int
	buf    []byte
	leaves []tlog.Hash

	// The answer: err, then state reqDone. A waiter that finds the
	// request pending marks it reqWaiting and blocks on done, which the
	// committer then signals; a waiter that finds it answered touches no
	// channel.
	err   error
	state atomic.Int32
	done  chan struct{}
}

// The states of an appendReq's answer.
const (
	reqPending = iota
	reqWaiting
	reqDone
)

// answer gives r its result and wakes its waiter, if it waits.
func (r *appendReq) answer(err error) {
	r.err = err
	if r.state.Swap(reqDone) == reqWaiting {
		r.done <- struct{}{}
	}
}

// prepare encodes r.recs and computes their leaf hashes.
func (r *appendReq) prepare() {
	r.buf, r.enc, r.ends, r.leaves = r.buf[:0], r.enc[:0], r.ends[:0], r.leaves[:0]
	for i := range r.recs {
		r.buf = recordlog.Encode(r.buf, &r.recs[i])
		r.ends = append(r.ends, len(r.buf))
		r.leaves = append(r.leaves, tlog.RecordHash(r.recs[i].Data))
	}
	r.enc = splitAt(r.enc, r.buf, r.ends)
}

// splitAt appends to dst the pieces of buf that end at ends, each capped
// at its end so that appending to one cannot overwrite the next.
func splitAt(dst [][]byte, buf []byte, ends []int) [][]byte {
	start := 0
	for _, e := range ends {
		dst = append(dst, buf[start:e:e])
		start = e
	}
	return dst
}

// release returns r to the pool, keeping modest buffers.
func (r *appendReq) release() {
	r.recs, r.err = nil, nil
	r.state.Store(reqPending)
	clear(r.enc)
	if cap(r.buf) > 64<<10 {
		r.buf = nil
	}
	reqPool.Put(r)
}

var reqPool = sync.Pool{New: func() any { return &appendReq{done: make(chan struct{}, 1)} }}

// OpenJournal opens or creates the journal database at path (file mode
// 0600, directory 0700), applies its migrations and starts the committer.
func OpenJournal(ctx context.Context, path string) (*Journal, error) {
	if err := createPrivate(path); err != nil {
		return nil, fmt.Errorf("sqlite: journal: %w", err)
	}
	uri := "file:" + escapePath(path)
	// The SQLite file is off the message path (records go to the record
	// log); a short busy timeout still fails a checkpoint or a hold change
	// rather than hang when another process holds the file.
	wr, err := sql.Open("sqlite3", uri+"?mode=rw&_journal_mode=WAL&_synchronous=FULL&_busy_timeout=2000&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("sqlite: journal: open %s: %w", path, err)
	}
	wr.SetMaxOpenConns(1)
	wr.SetMaxIdleConns(1)
	wr.SetConnMaxLifetime(0)
	if err := migrateDB(ctx, wr, journalMigrations); err != nil {
		wr.Close()
		return nil, fmt.Errorf("sqlite: journal %s: %w", path, err)
	}
	j := &Journal{wr: wr}
	if err := j.openReader(ctx, uri); err != nil {
		wr.Close()
		return nil, err
	}
	err = j.openLog(ctx, path, false)
	if err == nil {
		err = j.loadHead(ctx)
	}
	if err != nil {
		j.closeDBs()
		return nil, fmt.Errorf("sqlite: journal %s: %w", path, err)
	}
	j.queue = make(chan *appendReq, journalQueue)
	j.slots = make(chan struct{}, journalSyncs)
	j.inlineMax = journalInlineMax
	j.stop = make(chan struct{})
	j.done = make(chan struct{})
	go j.commitLoop()
	return j, nil
}

// OpenJournalReadOnly opens an existing journal for reading (verification,
// export) without migrating it; Append and AddCheckpoint fail.
func OpenJournalReadOnly(ctx context.Context, path string) (*Journal, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("sqlite: journal: %w", err)
	}
	j := &Journal{readOnly: true}
	if err := j.openReader(ctx, "file:"+escapePath(path)); err != nil {
		return nil, err
	}
	var v int
	if err := j.rd.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		j.closeDBs()
		return nil, fmt.Errorf("sqlite: journal %s: %w", path, err)
	}
	if v != len(journalMigrations) {
		j.closeDBs()
		return nil, fmt.Errorf("sqlite: journal %s: schema version %d, this build reads %d", path, v, len(journalMigrations))
	}
	if err := j.openLog(ctx, path, true); err != nil {
		j.closeDBs()
		return nil, fmt.Errorf("sqlite: journal %s: %w", path, err)
	}
	if err := j.loadHead(ctx); err != nil {
		j.closeDBs()
		return nil, fmt.Errorf("sqlite: journal %s: %w", path, err)
	}
	return j, nil
}

func (j *Journal) openReader(ctx context.Context, uri string) error {
	rd, err := sql.Open("sqlite3", uri+"?mode=ro&_busy_timeout=5000")
	if err != nil {
		return fmt.Errorf("sqlite: journal: open read-only: %w", err)
	}
	rd.SetMaxOpenConns(4)
	rd.SetMaxIdleConns(4)
	if err := rd.PingContext(ctx); err != nil {
		rd.Close()
		return fmt.Errorf("sqlite: journal: open read-only: %w", err)
	}
	j.rd = rd
	return nil
}

// openLog finds where the legacy records end and opens the record log
// that follows them.
func (j *Journal) openLog(ctx context.Context, path string, readOnly bool) error {
	if err := j.rd.QueryRowContext(ctx, "SELECT first_seq FROM record_log").Scan(&j.legacyEnd); err != nil {
		return fmt.Errorf("read where the record log starts: %w", err)
	}
	l, err := recordlog.Open(JournalRecordsDir(path), j.legacyEnd, readOnly)
	if err != nil {
		return err
	}
	j.log = l
	return nil
}

// loadHead reads the tree's edge, as written and as durable (at open, all
// that is on disk is).
func (j *Journal) loadHead(ctx context.Context) error {
	e, err := j.readEdge(ctx, j.log.Next())
	if err != nil {
		return err
	}
	j.written = e
	j.mu.Lock()
	j.head = e
	j.mu.Unlock()
	return nil
}

// Append implements storage.Journal.
func (j *Journal) Append(ctx context.Context, recs []storage.JournalRecord) error {
	return j.Submit(ctx, recs)()
}

// Submit implements storage.Journal.
func (j *Journal) Submit(ctx context.Context, recs []storage.JournalRecord) (wait func() error) {
	if j.readOnly {
		return failed(ErrJournalReadOnly)
	}
	if len(recs) == 0 {
		return failed(nil)
	}
	if err := ctx.Err(); err != nil {
		return failed(fmt.Errorf("sqlite: journal append: %w", err))
	}
	r := reqPool.Get().(*appendReq)
	r.recs = recs
	r.prepare()
	// Most sends find room in the queue: try that without the three-way
	// select.
	select {
	case j.queue <- r:
		return r.wait(ctx, j)
	default:
	}
	select {
	case j.queue <- r:
	case <-j.done:
		r.release()
		return failed(ErrJournalClosed)
	case <-ctx.Done():
		r.release()
		return failed(fmt.Errorf("sqlite: journal append: %w", ctx.Err()))
	}
	return r.wait(ctx, j)
}

// wait is Submit's wait for r.
func (r *appendReq) wait(ctx context.Context, j *Journal) func() error {
	return func() error {
		// Most waits find the batch committed: no channel then.
		if r.state.Load() == reqDone || !r.state.CompareAndSwap(reqPending, reqWaiting) {
			err := r.err
			r.release()
			return err
		}
		select {
		case <-r.done:
			err := r.err
			r.release()
			return err
		case <-j.done:
			select {
			case <-r.done:
				return r.err
			default:
				return ErrJournalClosed
			}
		case <-ctx.Done():
			// The committer still owns r; it may commit the records anyway,
			// which leaves the journal with more than was delivered, never less.
			return fmt.Errorf("sqlite: journal append: %w", ctx.Err())
		}
	}
}

// failed is a Submit result that is already decided.
func failed(err error) func() error { return func() error { return err } }

// journalSyncs is how many frames' fdatasyncs may be in flight at once.
// A frame is written while the one before it is still being flushed, so a
// message need not wait for the flush in progress before its own starts;
// concurrent fdatasyncs overlap on the disks measured here (one at a time
// 1,254/s, two 2,126/s).
const journalSyncs = 2

// journalInlineMax is the largest frame (in requests) that the committer
// flushes itself when no other frame is in flight, rather than handing it
// to a syncer. A frame of a few senders' messages is written in
// microseconds, so overlapping the next frame with its flush gains little,
// while the hand-off wakes another thread, which costs 10-25 us on the
// 2-CPU VMs measured (perf bench sched pipe: 26 us a round trip). Measured
// against handing every frame off, three alternated runs each: 1 pair
// 18.8k / 22.5k / 17.5k msgs/s against 16.3k / 19.0k / 16.4k, 10 pairs
// 44.0k / 46.3k / 41.7k against 40.3k / 45.3k / 38.7k. A limit of 256,
// under which 10 pairs' frames of 65-120 were flushed one at a time,
// carried 38.1k msgs/s there against 43.3k (medians of three).
const journalInlineMax = 32

// ticket is a frame written and not yet answered.
type ticket struct {
	reqs []*appendReq
	edge treeEdge // the tree with the frame
	sync *recordlog.Sync
	done bool
	err  error
}

func (j *Journal) commitLoop() {
	defer close(j.done)
	toSync := make(chan *ticket)
	var wg sync.WaitGroup
	for range journalSyncs {
		wg.Add(1)
		go j.syncLoop(toSync, &wg)
	}
	defer func() {
		close(toSync)
		wg.Wait()
	}()
	for {
		// A frame is written only when its fdatasync can start at once;
		// meanwhile the queue grows into the next batch.
		j.slots <- struct{}{}
		select {
		case r := <-j.queue:
			j.batch = append(j.batch, r)
		case <-j.stop:
			// Commit what was queued before Close; later calls see done.
			<-j.slots
			for {
				j.slots <- struct{}{}
				j.drain()
				if len(j.batch) == 0 {
					<-j.slots
					return
				}
				j.flush(toSync)
			}
		}
		j.drain()
		j.flush(toSync)
	}
}

// drain adds what is queued to the batch, up to journalMaxBatch.
func (j *Journal) drain() {
	for len(j.batch) < journalMaxBatch {
		select {
		case r := <-j.queue:
			j.batch = append(j.batch, r)
		default:
			return
		}
	}
}

// flush writes the batch as one frame and hands it to a syncer, which
// answers its requests once it is durable, or, for a small frame with no
// other in flight, makes it durable and answers itself; a failed write is
// answered at once. The caller holds a slot, which the syncer (or flush)
// gives back.
func (j *Journal) flush(toSync chan<- *ticket) {
	t, err := j.write(j.batch)
	if err != nil {
		<-j.slots
		// A failed write may still have reached the file: take the tree
		// as written from the log again rather than trust memory.
		if e, rerr := j.readEdge(context.Background(), j.log.Next()); rerr != nil {
			err = errors.Join(err, fmt.Errorf("sqlite: journal: reload tree head: %w", rerr))
		} else {
			j.written = e
		}
		for _, r := range j.batch {
			r.answer(err)
		}
	} else {
		j.tmu.Lock()
		j.fifo = append(j.fifo, t)
		alone := len(j.fifo) == 1
		j.tmu.Unlock()
		if alone && len(j.batch) <= j.inlineMax {
			err := t.sync.Wait()
			<-j.slots
			j.complete(t, err)
		} else {
			toSync <- t
		}
	}
	clear(j.batch)
	j.batch = j.batch[:0]
}

// syncLoop makes frames durable and answers them.
func (j *Journal) syncLoop(in <-chan *ticket, wg *sync.WaitGroup) {
	defer wg.Done()
	for t := range in {
		err := t.sync.Wait()
		<-j.slots
		j.complete(t, err)
	}
}

// complete records t's fdatasync and answers, in write order, every frame
// now known durable: a successful fdatasync vouches for the earlier frames
// of its segment too, so no request is answered before every record
// before it is durable.
func (j *Journal) complete(t *ticket, err error) {
	j.tmu.Lock()
	defer j.tmu.Unlock()
	if t.done {
		return // answered already, on a later frame's fdatasync
	}
	t.done, t.err = true, err
	if err == nil {
		for _, u := range j.fifo {
			if u == t {
				break
			}
			if !u.done && u.sync.Segment == t.sync.Segment {
				u.done = true
			}
		}
	}
	for len(j.fifo) > 0 && j.fifo[0].done {
		u := j.fifo[0]
		j.fifo[0] = nil
		j.fifo = j.fifo[1:]
		if u.err == nil {
			j.mu.Lock()
			j.head = u.edge
			j.mu.Unlock()
		}
		for _, r := range u.reqs {
			r.answer(u.err)
		}
	}
}

// write writes batch as one frame (not yet durable) and returns its
// ticket.
func (j *Journal) write(batch []*appendReq) (*ticket, error) {
	// Another process (the CLI recording an export) may have appended
	// since: the append lock is held now, so the size read here is final.
	size, err := j.log.Begin()
	if err != nil {
		return nil, fmt.Errorf("sqlite: journal append: %w", err)
	}
	defer j.log.End()
	if size != j.written.size {
		e, err := j.readEdge(context.Background(), size)
		if err != nil {
			return nil, fmt.Errorf("sqlite: journal append: %w", err)
		}
		j.written = e
	}
	e := j.written
	j.enc, j.hashes, j.hbuf = j.enc[:0], j.hashes[:0], j.hbuf[:0]
	ends := j.ends[:0]
	for _, r := range batch {
		for i := range r.recs {
			j.hbuf = e.appendLeaf(j.hbuf, r.leaves[i])
			ends = append(ends, len(j.hbuf))
			j.enc = append(j.enc, r.enc[i])
		}
	}
	j.ends = ends
	j.hashes = splitAt(j.hashes, j.hbuf, ends)
	sy, err := j.log.WriteEncoded(j.enc, j.hashes)
	if err != nil {
		return nil, fmt.Errorf("sqlite: journal append: %w", err)
	}
	seq := j.written.size
	for _, r := range batch {
		for i := range r.recs {
			r.recs[i].Seq = seq
			seq++
		}
	}
	clear(j.enc) // drop the references to the callers' buffers
	j.written = e
	return &ticket{reqs: slices.Clone(batch), edge: e, sync: sy}, nil
}

// Records implements storage.Journal.
func (j *Journal) Records(ctx context.Context, start, end int64, fn func(storage.JournalRecord) error) error {
	if start < j.legacyEnd {
		if err := j.legacyRecords(ctx, start, min(end, j.legacyEnd), fn); err != nil {
			return err
		}
	}
	if end <= j.legacyEnd {
		return nil
	}
	err := j.log.Records(max(start, j.legacyEnd), end, func(r recordlog.Record) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		return fn(r.JournalRecord)
	})
	if err != nil {
		return fmt.Errorf("sqlite: journal records: %w", err)
	}
	return nil
}

// legacyRecords reads records of table records (journals written before
// the record log).
func (j *Journal) legacyRecords(ctx context.Context, start, end int64, fn func(storage.JournalRecord) error) error {
	rows, err := j.rd.QueryContext(ctx, `SELECT seq, time, direction, kind, from_jid, to_jid, stanza_type, stanza_size, data, purged_by
		FROM records WHERE seq >= ? AND seq < ? ORDER BY seq`, start, end)
	if err != nil {
		return fmt.Errorf("sqlite: journal records: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var r storage.JournalRecord
		var t int64
		var dir, kind string
		if err := rows.Scan(&r.Seq, &t, &dir, &kind, &r.From, &r.To, &r.StanzaType, &r.StanzaSize, &r.Data, &r.PurgedBy); err != nil {
			return fmt.Errorf("sqlite: journal records: %w", err)
		}
		r.Purged = r.PurgedBy >= 0
		r.Time = time.Unix(0, t).UTC()
		r.Direction, r.Kind = storage.Direction(dir), storage.RecordKind(kind)
		if err := fn(r); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("sqlite: journal records: %w", err)
	}
	return nil
}

// TreeHead implements storage.Journal.
func (j *Journal) TreeHead(context.Context) (storage.TreeHead, error) {
	j.mu.Lock()
	e := j.head
	j.mu.Unlock()
	h, err := e.root()
	if err != nil {
		return storage.TreeHead{}, err
	}
	return storage.TreeHead{Size: e.size, Hash: h}, nil
}

// ReadHashes implements storage.Journal.
func (j *Journal) ReadHashes(ctx context.Context, indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	var legacy *sql.Stmt
	var tx *sql.Tx
	defer func() {
		if tx != nil {
			tx.Rollback()
		}
	}()
	var lastRec int64 = -1
	var raw []byte
	for i, x := range indexes {
		rec, off := hashHome(x)
		if rec != lastRec {
			var err error
			if rec >= j.legacyEnd {
				raw, err = j.log.Hashes(rec)
			} else {
				if legacy == nil {
					if tx, err = j.rd.BeginTx(ctx, &sql.TxOptions{ReadOnly: true}); err != nil {
						return nil, fmt.Errorf("sqlite: journal hashes: %w", err)
					}
					if legacy, err = tx.PrepareContext(ctx, "SELECT hashes FROM records WHERE seq = ?"); err != nil {
						return nil, fmt.Errorf("sqlite: journal hashes: %w", err)
					}
				}
				err = legacy.QueryRowContext(ctx, rec).Scan(&raw)
				if errors.Is(err, sql.ErrNoRows) {
					err = fmt.Errorf("stored hash %d missing (record %d)", x, rec)
				}
			}
			if err != nil {
				return nil, fmt.Errorf("sqlite: journal hashes: %w", err)
			}
			lastRec = rec
		}
		if len(raw) < (off+1)*tlog.HashSize {
			return nil, fmt.Errorf("sqlite: journal hashes: stored hash %d: record %d holds %d bytes of hashes", x, rec, len(raw))
		}
		copy(out[i][:], raw[off*tlog.HashSize:])
	}
	return out, nil
}

// hashHome returns the record whose append wrote stored hash x, and x's
// position among the hashes kept with that record. A node at level l
// covering records [k<<l, (k+1)<<l) is written with the last of them.
func hashHome(x int64) (rec int64, off int) {
	level, k := tlog.SplitStoredHashIndex(x)
	rec = ((k + 1) << uint(level)) - 1
	return rec, int(x - tlog.StoredHashIndex(0, rec))
}

// AddCheckpoint implements storage.Journal.
func (j *Journal) AddCheckpoint(ctx context.Context, c storage.Checkpoint) error {
	if j.readOnly {
		return ErrJournalReadOnly
	}
	_, err := j.wr.ExecContext(ctx, "INSERT INTO checkpoints (size, time, note) VALUES (?, ?, ?)",
		c.Size, c.Time.UnixNano(), c.Note)
	if err != nil {
		return fmt.Errorf("sqlite: journal checkpoint: %w", err)
	}
	return nil
}

// Checkpoints implements storage.Journal.
func (j *Journal) Checkpoints(ctx context.Context) ([]storage.Checkpoint, error) {
	tx, err := j.rd.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("sqlite: journal checkpoints: %w", err)
	}
	defer tx.Rollback()
	cosigs := map[int64][]storage.Cosignature{}
	rows, err := tx.QueryContext(ctx, "SELECT size, witness, key_hash, time, line FROM cosignatures ORDER BY id")
	if err != nil {
		return nil, fmt.Errorf("sqlite: journal cosignatures: %w", err)
	}
	for rows.Next() {
		var c storage.Cosignature
		var t int64
		if err := rows.Scan(&c.Size, &c.Witness, &c.KeyHash, &t, &c.Line); err != nil {
			rows.Close()
			return nil, fmt.Errorf("sqlite: journal cosignatures: %w", err)
		}
		c.Time = time.Unix(t, 0).UTC()
		cosigs[c.Size] = append(cosigs[c.Size], c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: journal cosignatures: %w", err)
	}
	rows, err = tx.QueryContext(ctx, "SELECT size, time, note FROM checkpoints ORDER BY size, id")
	if err != nil {
		return nil, fmt.Errorf("sqlite: journal checkpoints: %w", err)
	}
	defer rows.Close()
	var out []storage.Checkpoint
	for rows.Next() {
		var c storage.Checkpoint
		var t int64
		if err := rows.Scan(&c.Size, &t, &c.Note); err != nil {
			return nil, fmt.Errorf("sqlite: journal checkpoints: %w", err)
		}
		c.Time = time.Unix(0, t).UTC()
		c.Cosignatures = cosigs[c.Size]
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: journal checkpoints: %w", err)
	}
	return out, nil
}

// AddCosignature implements storage.Journal. The same line twice is kept
// once.
func (j *Journal) AddCosignature(ctx context.Context, c storage.Cosignature) error {
	if j.readOnly {
		return ErrJournalReadOnly
	}
	_, err := j.wr.ExecContext(ctx, `INSERT INTO cosignatures (size, witness, key_hash, time, line) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (size, line) DO NOTHING`,
		c.Size, c.Witness, int64(c.KeyHash), c.Time.Unix(), c.Line)
	if err != nil {
		return fmt.Errorf("sqlite: journal cosignature: %w", err)
	}
	return nil
}

// CosignedSize implements storage.Journal.
func (j *Journal) CosignedSize(ctx context.Context, witness string, keyHash uint32) (int64, error) {
	var n int64
	err := j.rd.QueryRowContext(ctx, "SELECT COALESCE(MAX(size), 0) FROM cosignatures WHERE witness = ? AND key_hash = ?",
		witness, int64(keyHash)).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("sqlite: journal cosigned size: %w", err)
	}
	return n, nil
}

// Close commits what is queued, stops the committer and closes the files.
func (j *Journal) Close() error {
	j.closeMu.Do(func() {
		if j.stop != nil {
			close(j.stop)
			<-j.done
		}
	})
	return j.closeDBs()
}

func (j *Journal) closeDBs() error {
	var errs []error
	if j.log != nil {
		errs = append(errs, j.log.Close())
	}
	for _, db := range []*sql.DB{j.rd, j.wr} {
		if db != nil {
			errs = append(errs, db.Close())
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("sqlite: journal close: %w", err)
	}
	return nil
}

// journalMigrations[i] moves the journal schema from version i to i+1.
// Append only; never edit a released step. Rows of records are never
// updated except by a retention purge, which clears data and sets
// purged_by but keeps the hashes.
var journalMigrations = []string{
	// 1: records, the tlog stored hashes, checkpoints.
	`
CREATE TABLE records (
	seq         INTEGER PRIMARY KEY, -- leaf index in the Merkle tree, from 0
	time        INTEGER NOT NULL,    -- Unix nanoseconds, acceptance time
	direction   TEXT NOT NULL,
	kind        TEXT NOT NULL,
	from_jid    TEXT NOT NULL,
	to_jid      TEXT NOT NULL,
	stanza_type TEXT NOT NULL,
	stanza_size INTEGER NOT NULL,
	data        BLOB NOT NULL,       -- the record bytes; leaf = RFC 6962 hash of these
	-- tlog.StoredHashes(seq, data): the tree hashes this record's append
	-- completes (32 bytes each, from stored-hash index StoredHashIndex(0, seq)).
	-- A purge may clear data; hashes stay, so the tree still verifies.
	hashes      BLOB NOT NULL
) STRICT;

CREATE TABLE checkpoints (
	id   INTEGER PRIMARY KEY AUTOINCREMENT,
	size INTEGER NOT NULL,
	time INTEGER NOT NULL, -- Unix nanoseconds
	note BLOB NOT NULL     -- signed note, as issued
) STRICT;
`,
	// 2: retention (locked policies, purged content) and legal holds.
	`
ALTER TABLE records ADD COLUMN purged_by INTEGER NOT NULL DEFAULT -1; -- seq of the disposition record that cleared data; -1: content present

CREATE TABLE retention_locks (
	name      TEXT PRIMARY KEY,
	scope     TEXT NOT NULL,
	targets   TEXT NOT NULL,    -- JSON array: the domain or the bare JIDs, sorted
	keep_days INTEGER NOT NULL, -- only ever raised
	recorded  INTEGER NOT NULL  -- Unix nanoseconds
) STRICT;

CREATE TABLE holds (
	name           TEXT PRIMARY KEY,
	custodians     TEXT NOT NULL,    -- JSON array of bare JIDs
	from_time      INTEGER NOT NULL, -- Unix nanoseconds, 0: open
	to_time        INTEGER NOT NULL, -- Unix nanoseconds, exclusive, 0: open
	reason         TEXT NOT NULL,
	placed_by      TEXT NOT NULL,
	placed_at      INTEGER NOT NULL,
	released_at    INTEGER NOT NULL DEFAULT 0,
	released_by    TEXT NOT NULL DEFAULT '',
	release_reason TEXT NOT NULL DEFAULT ''
) STRICT;
`,
	// 3: officer encryption at rest: wrapped epoch data keys.
	`
CREATE TABLE epoch_keys (
	id      TEXT PRIMARY KEY,
	created INTEGER NOT NULL, -- Unix nanoseconds
	wrapped BLOB NOT NULL     -- OpenPGP message to the officer keys holding the AES-256 key
) STRICT;
`,
	// 4: C2SP tlog-witness cosignatures of checkpoints. A witness's last
	// cosigned size is the largest size of its rows.
	`
CREATE TABLE cosignatures (
	id       INTEGER PRIMARY KEY AUTOINCREMENT,
	size     INTEGER NOT NULL, -- tree size of the checkpoint cosigned
	witness  TEXT NOT NULL,    -- the witness's key name
	key_hash INTEGER NOT NULL, -- its key ID (uint32)
	time     INTEGER NOT NULL, -- the cosignature's timestamp, Unix seconds
	line     TEXT NOT NULL,    -- the note signature line as received
	UNIQUE (size, line)
) STRICT;
CREATE INDEX cosignatures_witness ON cosignatures (witness, key_hash, size);
`,
	// 5: the group memberships retention of scope "groups" has seen.
	`
CREATE TABLE group_members (
	grp        TEXT NOT NULL, -- Palisade group ([groups] name)
	jid        TEXT NOT NULL, -- bare JID
	first_seen INTEGER NOT NULL, -- Unix nanoseconds
	PRIMARY KEY (grp, jid)
) STRICT, WITHOUT ROWID;
`,
	// 6: records are appended to the record log (JournalRecordsDir) from
	// here on; table records keeps those written before, all below
	// first_seq. Earlier builds refuse this version, so none of them can
	// append rows that the log's numbers already use.
	`
CREATE TABLE record_log (
	first_seq INTEGER NOT NULL -- the log's first record
) STRICT;
INSERT INTO record_log (first_seq) SELECT COALESCE(MAX(seq) + 1, 0) FROM records;
`,
}
