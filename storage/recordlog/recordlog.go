// Package recordlog keeps the compliance journal's records in append-only
// segment files: one frame per group commit, written with pwritev (one
// call per 1024 pieces, straight from the records' buffers) and made
// durable with one fdatasync, so that the message path pays no per-record
// database work.
//
// A log is a directory of segments named by the sequence number of their
// first record (20 digits, ".seg"), each with an index of its frames
// (".idx", rebuilt from the segment when short or missing), and a "lock"
// file: every append, recovery and purge holds an exclusive flock on it,
// so that several processes (the server, the CLI recording an export) may
// append to one log.
//
// A frame is a 32-byte header and the records it holds:
//
//	[0:4)   magic "PJF1"
//	[4:12)  sequence number of the first record (uint64, little-endian)
//	[12:16) record count (uint32)
//	[16:20) payload length in bytes (uint32)
//	[20:24) CRC-32C of bytes [4:20) and the payload
//	[24:32) zero
//
// and each record, in order:
//
//	time (int64, Unix nanoseconds), purged_by (int64, -1 while the content
//	is present), stanza size (uint32), hash count (uint8), then direction,
//	kind, from, to, stanza type and data, each a uvarint length and its
//	bytes, then the record's stored tree hashes (32 bytes each).
//
// The checksum only tells a frame torn by a crash from a whole one when a
// log is opened; the integrity of the records is the journal's Merkle tree,
// so reads deliver the stored bytes as they are. A purge clears a record's
// data bytes in place (same length, so frames keep their offsets) by
// writing the segment anew and renaming it over the old one.
package recordlog

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/palisade-im/palisade/storage"
	"golang.org/x/mod/sumdb/tlog"
)

const (
	frameMagic = "PJF1"
	headerSize = 32
	idxSize    = 24
	// segmentMax is the size past which the next frame starts a new segment.
	segmentMax = 128 << 20
	// maxFrame bounds a frame's payload (a frame is one group commit).
	maxFrame = 1 << 30
	// loadedMax bounds how many closed segments keep their frame index in
	// memory.
	loadedMax = 8
	// cachedFrames bounds the frames kept decoded for hash reads.
	cachedFrames = 64
	// preallocate is how far ahead of the frames the active segment is
	// filled with zeros, so that an append's fdatasync need not write the
	// file's new size too (measured here: ~330 us instead of ~570-810 us
	// per write and fdatasync).
	preallocate = 4 << 20
)

var zeros = make([]byte, 256<<10)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrReadOnly is returned by writes to a log opened read-only.
var ErrReadOnly = errors.New("recordlog: opened read-only")

// Record is a stored record with its tree hashes.
type Record struct {
	storage.JournalRecord
	// Hashes are tlog.StoredHashes(Seq, Data) as appended, 32 bytes each.
	Hashes []byte
}

type frameRef struct {
	first int64
	count int32
	len   int32 // payload bytes
	off   int64
}

func (f frameRef) end() int64 { return f.off + headerSize + int64(f.len) }

type segment struct {
	first  int64
	path   string
	frames []frameRef // nil until loaded
	end    int64      // offset after the last frame (when loaded)
	used   uint64     // last use, for unloading closed segments
	rf     *os.File   // for reads, opened on demand
	rino   uint64     // rf's inode
}

// closeReader closes the file reads use, if open.
func (s *segment) closeReader() {
	if s.rf != nil {
		s.rf.Close()
		s.rf = nil
	}
}

func (s *segment) next() int64 {
	if len(s.frames) == 0 {
		return s.first
	}
	f := s.frames[len(s.frames)-1]
	return f.first + int64(f.count)
}

// Log is an open record log.
type Log struct {
	dir      string
	first    int64
	readOnly bool
	lockf    *os.File
	segMax   int64 // segmentMax but in tests
	prealloc int64 // preallocate but in tests

	// amu and the flock on lockf make the append lock: one appender per
	// log across goroutines and processes. Only its holder touches wf,
	// idxf, broken and buf.
	amu sync.Mutex
	// pmu and a flock on purge.lock make the purge lock.
	pmu sync.Mutex

	mu     sync.Mutex // guards segs, next and the cache
	segs   []*segment // by first record; the last is the active one
	next   int64
	useSeq uint64
	cache  map[int64]*decoded // by frame first seq
	corder []int64

	// While locked (append lock held): the active segment's files.
	wf, idxf *os.File
	wino     uint64
	alloc    int64        // wf's size as this appender last saw or set it
	wfd      uintptr      // wf's descriptor, for the raw calls (rawio.go)
	broken   error        // a failed fdatasync: no append may follow (under mu)
	wsf      *syncFile    // wf, for the Syncs of frames written to it
	rawSyncs atomic.Int32 // Syncs in a raw fdatasync (at most one)
	// The frame being written (WriteEncoded, under the append lock): its
	// header, its records' hash counts, and the pieces of the vectored
	// write.
	hdr    [headerSize]byte
	counts []byte
	pieces [][]byte
	iov    []syscall.Iovec
}

type decoded struct {
	first  int64
	hashes [][]byte
}

// Open opens the log in dir, creating it (mode 0700) unless readOnly.
// first is the sequence number of the log's first record: the records
// before it are kept elsewhere. A writable open repairs the end of the log
// that a crash left torn (what was never made durable is cut off).
func Open(dir string, first int64, readOnly bool) (*Log, error) {
	l := &Log{dir: dir, first: first, readOnly: readOnly, next: first, segMax: segmentMax, prealloc: preallocate, cache: map[int64]*decoded{}}
	if readOnly {
		if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
			return l, nil
		}
	} else {
		if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return nil, fmt.Errorf("recordlog: %w", err)
			}
			if err := syncDir(filepath.Dir(dir)); err != nil {
				return nil, fmt.Errorf("recordlog: %w", err)
			}
		}
		lf, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("recordlog: %w", err)
		}
		l.lockf = lf
	}
	if err := l.lock(); err != nil {
		l.Close()
		return nil, err
	}
	err := l.refresh(true)
	l.unlock()
	if err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// Dir returns the log's directory.
func (l *Log) Dir() string { return l.dir }

// First returns the sequence number of the log's first record.
func (l *Log) First() int64 { return l.first }

// Next returns the sequence number the next record appended gets, as this
// process last saw the log.
func (l *Log) Next() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.next
}

// lockWait is how long an append waits for another process holding the
// append lock before it fails: a journal held up must fail the stanza
// (fail closed), not stall the message path.
const lockWait = 2 * time.Second

// ErrLocked is returned when another process held the append lock for
// longer than lockWait.
var ErrLocked = errors.New("recordlog: another process holds the journal's append lock")

func (l *Log) lock() error {
	l.amu.Lock()
	if l.lockf == nil {
		return nil
	}
	var deadline time.Time
	for delay := 50 * time.Microsecond; ; delay = min(2*delay, 20*time.Millisecond) {
		err := syscall.Flock(int(l.lockf.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			l.amu.Unlock()
			return fmt.Errorf("recordlog: lock: %w", err)
		}
		now := time.Now()
		if deadline.IsZero() {
			deadline = now.Add(lockWait)
		} else if now.After(deadline) {
			l.amu.Unlock()
			return ErrLocked
		}
		time.Sleep(delay)
	}
}

func (l *Log) unlock() {
	if l.lockf != nil {
		_ = syscall.Flock(int(l.lockf.Fd()), syscall.LOCK_UN)
	}
	l.amu.Unlock()
}

// Begin takes the append lock and brings the log up to date with what
// other processes appended; it returns the next record's sequence number.
// WriteEncoded or AppendEncoded may follow; End must.
func (l *Log) Begin() (int64, error) {
	if l.readOnly {
		return 0, ErrReadOnly
	}
	if err := l.lock(); err != nil {
		return 0, err
	}
	if err := l.brokenErr(); err != nil {
		l.unlock()
		return 0, err
	}
	if err := l.refresh(false); err != nil {
		l.unlock()
		return 0, err
	}
	return l.Next(), nil
}

// End releases the append lock.
func (l *Log) End() { l.unlock() }

// refresh brings the segment list and the active segment's frames up to
// date with the files. repair (on a writable open) also cuts a torn end.
// The append lock is held.
func (l *Log) refresh(repair bool) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !repair && len(l.segs) > 0 && l.wf != nil {
		// The usual case: nobody else appended, rotated or purged.
		act := l.segs[len(l.segs)-1]
		var st, pst syscall.Stat_t
		if err := syscall.Fstat(int(l.wf.Fd()), &st); err != nil {
			return fmt.Errorf("recordlog: %w", err)
		}
		if err := syscall.Stat(act.path, &pst); err != nil {
			return fmt.Errorf("recordlog: %w", err)
		}
		if pst.Ino == l.wino && act.end < l.segMax && (st.Size == act.end || st.Size == l.alloc && !l.frameAtEnd(act)) {
			return nil
		}
	}
	names, err := l.listSegments()
	if err != nil {
		return err
	}
	known := map[int64]*segment{}
	for _, s := range l.segs {
		known[s.first] = s
	}
	segs := make([]*segment, 0, len(names))
	for _, first := range names {
		s := known[first]
		if s == nil {
			s = &segment{first: first, path: l.segPath(first)}
		}
		segs = append(segs, s)
	}
	if len(segs) > 0 {
		if err := l.checkFirst(segs[0].first); err != nil {
			return err
		}
	}
	l.segs = segs
	if len(segs) == 0 {
		l.next = l.first
		return nil
	}
	// Closed segments must join up; the active one is rescanned.
	for i := 0; i+1 < len(segs); i++ {
		if segs[i].frames != nil && segs[i].next() != segs[i+1].first {
			segs[i].frames = nil // reload: it grew before it was closed
		}
	}
	act := segs[len(segs)-1]
	act.frames = nil
	if err := l.load(act, repair && !l.readOnly); err != nil {
		return err
	}
	l.next = act.next()
	if l.readOnly {
		return nil
	}
	return l.openActive(act)
}

// openActive opens the active segment's files for appending, when they are
// not open on the current file.
func (l *Log) openActive(act *segment) error {
	var pst syscall.Stat_t
	if err := syscall.Stat(act.path, &pst); err != nil {
		return fmt.Errorf("recordlog: %w", err)
	}
	if l.wf != nil && l.wino == pst.Ino && l.wf.Name() == act.path {
		return nil
	}
	l.closeActive()
	wf, err := os.OpenFile(act.path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("recordlog: %w", err)
	}
	idxf, err := os.OpenFile(idxPath(act.path), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		wf.Close()
		return fmt.Errorf("recordlog: %w", err)
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(wf.Fd()), &st); err != nil {
		wf.Close()
		idxf.Close()
		return fmt.Errorf("recordlog: %w", err)
	}
	l.wf, l.idxf, l.wino, l.alloc, l.wfd = wf, idxf, st.Ino, st.Size, wf.Fd()
	l.wsf = &syncFile{f: wf}
	return nil
}

// syncFile is a segment file opened for appending, shared by the Syncs of
// the frames written to it: it is closed once it is no longer the active
// file and no Sync holds it. Guarded by Log.mu.
type syncFile struct {
	f       *os.File
	refs    int
	retired bool
}

func (sf *syncFile) release() {
	sf.refs--
	if sf.retired && sf.refs == 0 {
		sf.f.Close()
	}
}

func (l *Log) brokenErr() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.broken
}

// frameAtEnd tells whether a frame starts where act's frames end: another
// process appended into the zeros preallocated there.
func (l *Log) frameAtEnd(act *segment) bool {
	var m [4]byte
	n, _ := l.wf.ReadAt(m[:], act.end)
	return n == 4 && string(m[:]) != "\x00\x00\x00\x00"
}

// extend fills [from, to) of the active segment with zeros.
func (l *Log) extend(from, to int64) error {
	for off := from; off < to; {
		n := min(int64(len(zeros)), to-off)
		if err := rawPwrite(l.wfd, zeros[:n], off); err != nil {
			return err
		}
		off += n
	}
	return nil
}

func (l *Log) closeActive() {
	if l.wf != nil {
		l.wsf.retired = true
		if l.wsf.refs == 0 {
			l.wf.Close()
		}
		l.idxf.Close()
		l.wf, l.idxf, l.wino, l.wsf = nil, nil, 0, nil
	}
}

func (l *Log) segPath(first int64) string {
	return filepath.Join(l.dir, fmt.Sprintf("%020d.seg", first))
}

func idxPath(seg string) string { return strings.TrimSuffix(seg, ".seg") + ".idx" }

// checkFirst checks that the first segment, which starts at record first,
// starts where the log does.
func (l *Log) checkFirst(first int64) error {
	if first != l.first {
		return fmt.Errorf("recordlog: %s: first segment starts at record %d, the journal expects %d", l.dir, first, l.first)
	}
	return nil
}

// listSegments returns the first record of every segment, sorted.
func (l *Log) listSegments() ([]int64, error) {
	ents, err := os.ReadDir(l.dir)
	if err != nil {
		if l.readOnly && errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("recordlog: %w", err)
	}
	var out []int64
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".seg")
		if !ok || len(name) != 20 {
			continue
		}
		n, err := strconv.ParseInt(name, 10, 64)
		if err != nil {
			continue
		}
		out = append(out, n)
	}
	slices.Sort(out)
	return out, nil
}

// load reads a segment's frame index, checks it against the segment and
// scans the segment past it. With repair, what follows the last whole
// frame is cut off and the index file rewritten to match.
func (l *Log) load(s *segment, repair bool) error {
	f, err := os.Open(s.path)
	if err != nil {
		return fmt.Errorf("recordlog: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("recordlog: %w", err)
	}
	size := fi.Size()
	var frames []frameRef
	idx, err := os.ReadFile(idxPath(s.path))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("recordlog: %w", err)
	}
	next, off := s.first, int64(0)
	for i := 0; i+idxSize <= len(idx); i += idxSize {
		e := idx[i : i+idxSize]
		fr := frameRef{
			first: int64(binary.LittleEndian.Uint64(e[0:])),
			off:   int64(binary.LittleEndian.Uint64(e[8:])),
			count: int32(binary.LittleEndian.Uint32(e[16:])),
			len:   int32(binary.LittleEndian.Uint32(e[20:])),
		}
		if fr.first != next || fr.off != off || fr.count <= 0 || fr.len < 0 || fr.end() > size {
			break
		}
		frames = append(frames, fr)
		next, off = fr.first+int64(fr.count), fr.end()
	}
	indexed := len(frames)
	s.frames, s.end = frames, off
	if s.frames == nil {
		s.frames = []frameRef{}
	}
	// Frames the index does not have yet (a crash before its write).
	if err := scanFrames(s, f, size); err != nil {
		return err
	}
	frames, off = s.frames, s.end
	if !repair {
		return nil
	}
	if size > off {
		// What follows the whole frames may only be a crash's torn tail,
		// never acknowledged; anything else is damage that no repair
		// may cut away.
		if err := checkTornTail(f, s, off, size, next); err != nil {
			return err
		}
		wf, err := os.OpenFile(s.path, os.O_RDWR, 0)
		if err != nil {
			return fmt.Errorf("recordlog: repair %s: %w", s.path, err)
		}
		err = wf.Truncate(off)
		if err == nil {
			err = wf.Sync()
		}
		wf.Close()
		if err != nil {
			return fmt.Errorf("recordlog: repair %s: %w", s.path, err)
		}
	}
	if indexed != len(frames) || len(idx) != indexed*idxSize {
		b := make([]byte, 0, len(frames)*idxSize)
		for _, fr := range frames {
			b = appendIdx(b, fr)
		}
		if err := os.WriteFile(idxPath(s.path), b, 0o600); err != nil {
			return fmt.Errorf("recordlog: rebuild index of %s: %w", s.path, err)
		}
	}
	return nil
}

// scanFrames adds to s the whole frames that follow s.end in f (of size
// bytes), up to the first that is not whole: torn, or being written.
func scanFrames(s *segment, f *os.File, size int64) error {
	next, off := s.next(), s.end
	hdr := make([]byte, headerSize)
	for off+headerSize <= size {
		if _, err := f.ReadAt(hdr, off); err != nil {
			return fmt.Errorf("recordlog: %s: %w", s.path, err)
		}
		fr, ok := parseHeader(hdr, off)
		if !ok || fr.first != next || fr.end() > size {
			break
		}
		payload := make([]byte, fr.len)
		if _, err := f.ReadAt(payload, off+headerSize); err != nil {
			return fmt.Errorf("recordlog: %s: %w", s.path, err)
		}
		if frameCRC(hdr, payload) != binary.LittleEndian.Uint32(hdr[20:]) {
			break
		}
		s.frames = append(s.frames, fr)
		next, off = fr.first+int64(fr.count), fr.end()
	}
	s.end = off
	return nil
}

// catchUp adds what other processes appended since this log last looked:
// frames at the end of the active segment, and segments they started.
// l.mu is held; nothing is repaired.
func (l *Log) catchUp() error {
	if len(l.segs) == 0 {
		names, err := l.listSegments()
		if err != nil || len(names) == 0 {
			return err
		}
		if err := l.checkFirst(names[0]); err != nil {
			return err
		}
		for _, first := range names {
			l.segs = append(l.segs, &segment{first: first, path: l.segPath(first)})
		}
		act := l.segs[len(l.segs)-1]
		if err := l.load(act, false); err != nil {
			return err
		}
		l.next = act.next()
		return nil
	}
	for {
		act := l.segs[len(l.segs)-1]
		if act.frames == nil {
			if err := l.load(act, false); err != nil {
				return err
			}
		} else {
			f, err := os.Open(act.path)
			if err != nil {
				return fmt.Errorf("recordlog: %w", err)
			}
			fi, err := f.Stat()
			if err == nil && fi.Size() > act.end {
				err = scanFrames(act, f, fi.Size())
			}
			f.Close()
			if err != nil {
				return err
			}
		}
		l.next = act.next()
		if act.end < l.segMax {
			return nil
		}
		next := l.segPath(act.next())
		if _, err := os.Stat(next); err != nil {
			return nil // not started yet
		}
		l.segs = append(l.segs, &segment{first: act.next(), path: next})
	}
}

// inFlight is how many frames may have been written and not yet made
// durable when a process stopped: the journal's fdatasyncs in flight.
const inFlight = 2

// ErrDamaged is returned by a writable Open when a segment holds
// something other than whole frames and a torn tail: a repair would cut
// records, so the log is left as it is for an investigation.
var ErrDamaged = errors.New("recordlog: segment damaged")

// checkTornTail checks that what follows the whole frames of s (they end
// at off; next is the record after them) is what a crash leaves: zeros,
// or at most inFlight frames written and not yet durable (whole or torn),
// then zeros. Another whole frame further on means the frame at off was
// damaged after it was written.
func checkTornTail(f *os.File, s *segment, off, size, next int64) error {
	rest := make([]byte, size-off)
	if _, err := f.ReadAt(rest, off); err != nil {
		return fmt.Errorf("recordlog: %s: %w", s.path, err)
	}
	last := len(rest) - 1
	for last >= 0 && rest[last] == 0 {
		last--
	}
	if last < 0 {
		return nil // preallocated zeros only
	}
	// Whole frames after the first bad byte: the in-flight ones may be.
	var whole []frameRef
	for i := 1; i+headerSize <= len(rest); {
		k := bytes.Index(rest[i:], []byte(frameMagic))
		if k < 0 {
			break
		}
		at := i + k
		fr, ok := parseHeader(rest[at:at+headerSize], off+int64(at))
		end := at + headerSize + int(fr.len)
		if ok && fr.first >= next && end <= len(rest) &&
			frameCRC(rest[at:at+headerSize], rest[at+headerSize:end]) == binary.LittleEndian.Uint32(rest[at+20:]) {
			whole = append(whole, fr)
			i = end
			continue
		}
		i = at + 1
	}
	bad := func(why string) error {
		return fmt.Errorf("%w: %s: at byte %d (after record %d): %s; not repaired", ErrDamaged, s.path, off, next-1, why)
	}
	if len(whole) > inFlight {
		return bad(fmt.Sprintf("%d whole frames follow (records %d..)", len(whole), whole[0].first))
	}
	limit := off + int64(last) + 1
	if len(whole) > 0 && whole[len(whole)-1].end() < limit {
		return bad("data follows the last whole frame")
	}
	if len(whole) == 0 && int64(last)+1 > maxFrame+headerSize {
		return bad("more data than one frame holds")
	}
	return nil
}

func parseHeader(h []byte, off int64) (frameRef, bool) {
	if string(h[0:4]) != frameMagic {
		return frameRef{}, false
	}
	fr := frameRef{
		first: int64(binary.LittleEndian.Uint64(h[4:])),
		count: int32(binary.LittleEndian.Uint32(h[12:])),
		len:   int32(binary.LittleEndian.Uint32(h[16:])),
		off:   off,
	}
	if fr.count <= 0 || fr.len < 0 || fr.first < 0 {
		return frameRef{}, false
	}
	return fr, true
}

// frameCRC is the checksum of a frame's header fields and its payload,
// given in one or more pieces.
func frameCRC(hdr []byte, payload ...[]byte) uint32 {
	c := crc32.Update(0, castagnoli, hdr[4:20])
	for _, p := range payload {
		c = crc32.Update(c, castagnoli, p)
	}
	return c
}

func appendIdx(b []byte, fr frameRef) []byte {
	b = binary.LittleEndian.AppendUint64(b, uint64(fr.first))
	b = binary.LittleEndian.AppendUint64(b, uint64(fr.off))
	b = binary.LittleEndian.AppendUint32(b, uint32(fr.count))
	return binary.LittleEndian.AppendUint32(b, uint32(fr.len))
}

// Encode appends the encoding of r, all but its tree hashes, to b: what
// WriteEncoded and AppendEncoded take. Callers encode their records before
// they queue them for a group commit, so that the committer only copies
// bytes.
func Encode(b []byte, r *storage.JournalRecord) []byte {
	return appendRecord(b, r, nil)
}

// AppendEncoded writes recs (made by Encode) as one frame, like
// WriteEncoded, and returns once it is durable.
func (l *Log) AppendEncoded(recs [][]byte, hashes [][]byte) error {
	sy, err := l.WriteEncoded(recs, hashes)
	if err != nil || sy == nil {
		return err
	}
	return sy.Wait()
}

// Sync is the pending fdatasync of a frame WriteEncoded wrote. Wait must
// be called once. A Sync that returns makes durable every frame written to
// the same segment before it was made, by any process.
type Sync struct {
	l    *Log
	sf   *syncFile
	path string
	// Segment is the first record of the segment written to: a Sync
	// vouches only for frames of its own segment.
	Segment int64
}

// Wait makes the frame durable. A failure breaks the log for this process
// (nothing more is appended until it is opened again), since what reached
// the disk is then unknown.
func (s *Sync) Wait() error {
	var err error
	if s.l.rawSyncs.CompareAndSwap(0, 1) {
		err = rawFdatasync(s.sf.f.Fd())
		s.l.rawSyncs.Store(0)
	} else {
		// One flush at a time holds its P: a disk that stalls must not
		// stall every goroutine of a small machine.
		err = fdatasync(s.sf.f)
	}
	s.l.mu.Lock()
	defer s.l.mu.Unlock()
	s.sf.release()
	if err != nil && s.l.broken == nil {
		s.l.broken = fmt.Errorf("recordlog: fdatasync of %s failed (%w): no record is appended until the journal is opened again", s.path, err)
	}
	// After a failed fdatasync a later one may succeed without the pages
	// the failure dropped: once broken, no Sync vouches for anything.
	return s.l.broken
}

// WriteEncoded writes recs (made by Encode) as one frame, numbered from the
// sequence number Begin returned, without waiting for it to be durable:
// the returned Sync does that, and may run after End, while the next frame
// is written. hashes[i] are recs[i]'s stored tree hashes. The append lock
// must be held (Begin). A failed write leaves the log as it was. Readers of
// this process see the frame at once; whoever reports it durable (a
// checkpoint, a delivery) must wait for its Sync.
func (l *Log) WriteEncoded(recs [][]byte, hashes [][]byte) (*Sync, error) {
	if l.readOnly {
		return nil, ErrReadOnly
	}
	if err := l.brokenErr(); err != nil {
		return nil, err
	}
	if len(recs) == 0 {
		return nil, nil
	}
	l.mu.Lock()
	if len(l.segs) == 0 || l.segs[len(l.segs)-1].end >= l.segMax {
		if err := l.rotate(); err != nil {
			l.mu.Unlock()
			return nil, err
		}
	}
	act := l.segs[len(l.segs)-1]
	first, off := l.next, act.end
	l.mu.Unlock()
	// The write runs without mu: reads go on meanwhile.
	size := headerSize
	for i := range recs {
		size += len(recs[i]) + len(hashes[i])
	}
	if size-headerSize > maxFrame {
		return nil, fmt.Errorf("recordlog: a frame of %d bytes is too large", size-headerSize)
	}
	// The frame goes out as one vectored write of the header and each
	// record's bytes, hash count and hashes, so the payload is not copied
	// into one buffer first (at 1000 pairs a frame is ~10 MB, and the
	// committer that writes it is the message path's serial stage).
	hdr := l.hdr[:]
	counts := slices.Grow(l.counts[:0], len(recs))[:len(recs)]
	pieces := append(slices.Grow(l.pieces[:0], 1+4*len(recs)), hdr)
	defer func() {
		clear(pieces) // no references to the callers' buffers
		l.pieces = pieces[:0]
	}()
	for i, r := range recs {
		if len(r) < recordFixed || len(hashes[i])%tlog.HashSize != 0 {
			return nil, fmt.Errorf("recordlog: record %d is not encoded", first+int64(i))
		}
		counts[i] = byte(len(hashes[i]) / tlog.HashSize)
		pieces = append(pieces, r[:hashCountAt], counts[i:i+1], r[hashCountAt+1:], hashes[i])
	}
	l.counts = counts[:0]
	clear(hdr)
	copy(hdr[0:4], frameMagic)
	binary.LittleEndian.PutUint64(hdr[4:], uint64(first))
	binary.LittleEndian.PutUint32(hdr[12:], uint32(len(recs)))
	binary.LittleEndian.PutUint32(hdr[16:], uint32(size-headerSize))
	binary.LittleEndian.PutUint32(hdr[20:], frameCRC(hdr, pieces[1:]...))
	fr := frameRef{first: first, count: int32(len(recs)), len: int32(size - headerSize), off: off}
	if want := fr.end(); want > l.alloc {
		// Zeros ahead, made durable by this frame's Sync.
		alloc := max(want, min(want+l.prealloc, l.segMax))
		if err := l.extend(want, alloc); err != nil {
			_ = l.wf.Truncate(l.alloc)
			return nil, fmt.Errorf("recordlog: write records %d-%d: %w", first, first+int64(len(recs))-1, err)
		}
		l.alloc = alloc
	}
	if err := rawPwritev(l.wfd, pieces, fr.off, &l.iov); err != nil {
		// Cut what part of the frame was written; the next frame goes
		// in its place.
		_ = l.wf.Truncate(fr.off)
		l.alloc = fr.off
		return nil, fmt.Errorf("recordlog: write records %d-%d: %w", first, first+int64(len(recs))-1, err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	// The index is rebuilt from the segment when a crash leaves it short.
	if _, err := l.idxf.WriteAt(appendIdx(nil, fr), int64(len(act.frames))*idxSize); err != nil && l.broken == nil {
		l.broken = fmt.Errorf("recordlog: write index of %s: %w", act.path, err)
	}
	act.frames = append(act.frames, fr)
	act.end = fr.end()
	l.next = first + int64(len(recs))
	l.wsf.refs++
	return &Sync{l: l, sf: l.wsf, path: act.path, Segment: act.first}, nil
}

// rotate starts a new segment at l.next. Another process may have started
// it already: then it is scanned instead.
func (l *Log) rotate() error {
	if l.wf != nil {
		// Every frame of the closing segment, whoever wrote it, is durable
		// before the next segment gets one: a Sync vouches only for its
		// own segment.
		if err := rawFdatasync(l.wfd); err != nil {
			return fmt.Errorf("recordlog: fdatasync of %s before the next segment: %w", l.wf.Name(), err)
		}
	}
	if n := len(l.segs); n > 0 && l.wf != nil && l.alloc > l.segs[n-1].end {
		// The closed segment keeps no zeros (a crash before this leaves
		// them, which reads skip).
		_ = l.wf.Truncate(l.segs[n-1].end)
	}
	path := l.segPath(l.next)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("recordlog: new segment: %w", err)
	}
	if err == nil {
		err = f.Close()
		if err == nil {
			err = syncDir(l.dir)
		}
		if err != nil {
			return fmt.Errorf("recordlog: new segment: %w", err)
		}
	}
	s := &segment{first: l.next, path: path}
	if err := l.load(s, true); err != nil {
		return err
	}
	l.segs = append(l.segs, s)
	l.next = s.next()
	l.unloadClosed()
	return l.openActive(s)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// recordFixed is the size of a record's fixed fields; its hash count
// byte is at hashCountAt.
const (
	recordFixed = 21
	hashCountAt = 20
)

func appendRecord(b []byte, r *storage.JournalRecord, hashes []byte) []byte {
	b = binary.LittleEndian.AppendUint64(b, uint64(r.Time.UnixNano()))
	purged := int64(-1)
	if r.Purged {
		purged = r.PurgedBy
	}
	b = binary.LittleEndian.AppendUint64(b, uint64(purged))
	b = binary.LittleEndian.AppendUint32(b, uint32(r.StanzaSize))
	b = append(b, byte(len(hashes)/tlog.HashSize))
	b = appendString(b, string(r.Direction))
	b = appendString(b, string(r.Kind))
	b = appendString(b, r.From)
	b = appendString(b, r.To)
	b = appendString(b, r.StanzaType)
	b = binary.AppendUvarint(b, uint64(len(r.Data)))
	b = append(b, r.Data...)
	return append(b, hashes...)
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// recordAt decodes the record at p[0:]; p[dataOff:dataOff+dataLen] is
// its data as stored (for purges) and n the record's encoded length.
func recordAt(p []byte, seq int64) (r Record, dataOff, dataLen, n int, err error) {
	bad := func(what string) (Record, int, int, int, error) {
		return Record{}, 0, 0, 0, fmt.Errorf("recordlog: record %d does not decode (%s)", seq, what)
	}
	if len(p) < recordFixed {
		return bad("short")
	}
	r.Seq = seq
	r.Time = time.Unix(0, int64(binary.LittleEndian.Uint64(p))).UTC()
	r.PurgedBy = int64(binary.LittleEndian.Uint64(p[8:]))
	r.Purged = r.PurgedBy >= 0
	r.StanzaSize = int(binary.LittleEndian.Uint32(p[16:]))
	nh := int(p[hashCountAt])
	i := recordFixed
	var strs [5]string
	for k := range strs {
		v, m := binary.Uvarint(p[i:])
		if m <= 0 || v > uint64(len(p)-i-m) {
			return bad("field")
		}
		i += m
		strs[k] = string(p[i : i+int(v)])
		i += int(v)
	}
	r.Direction, r.Kind = storage.Direction(strs[0]), storage.RecordKind(strs[1])
	r.From, r.To, r.StanzaType = strs[2], strs[3], strs[4]
	v, m := binary.Uvarint(p[i:])
	if m <= 0 || v > uint64(len(p)-i-m) {
		return bad("data")
	}
	i += m
	dataOff = i
	if !r.Purged {
		r.Data = p[i : i+int(v) : i+int(v)]
	}
	i += int(v)
	if len(p)-i < nh*tlog.HashSize {
		return bad("hashes")
	}
	r.Hashes = p[i : i+nh*tlog.HashSize : i+nh*tlog.HashSize]
	i += nh * tlog.HashSize
	return r, dataOff, int(v), i, nil
}

// frameAt returns the segment and frame holding seq.
func (l *Log) frameAt(seq int64) (*segment, int, error) {
	i, _ := slices.BinarySearchFunc(l.segs, seq, func(s *segment, x int64) int {
		switch {
		case s.first < x:
			return -1
		case s.first > x:
			return 1
		}
		return 0
	})
	if i == len(l.segs) || l.segs[i].first > seq {
		i--
	}
	if i < 0 {
		return nil, 0, fmt.Errorf("recordlog: record %d is not in the log", seq)
	}
	s := l.segs[i]
	if s.frames == nil {
		if err := l.load(s, false); err != nil {
			return nil, 0, err
		}
		l.unloadClosed()
	}
	l.useSeq++
	s.used = l.useSeq
	k, _ := slices.BinarySearchFunc(s.frames, seq, func(f frameRef, x int64) int {
		switch {
		case f.first+int64(f.count) <= x:
			return -1
		case f.first > x:
			return 1
		}
		return 0
	})
	if k == len(s.frames) || s.frames[k].first > seq {
		return nil, 0, fmt.Errorf("recordlog: record %d is not in the log", seq)
	}
	return s, k, nil
}

// unloadClosed drops the frame index of the least recently used closed
// segments beyond loadedMax.
func (l *Log) unloadClosed() {
	var loaded []*segment
	for _, s := range l.segs[:max(len(l.segs)-1, 0)] {
		if s.frames != nil {
			loaded = append(loaded, s)
		}
	}
	if len(loaded) <= loadedMax {
		return
	}
	slices.SortFunc(loaded, func(a, b *segment) int { return int(int64(a.used) - int64(b.used)) })
	for _, s := range loaded[:len(loaded)-loadedMax] {
		s.frames = nil
		s.closeReader()
	}
}

// readFrame reads frame k of s (l.mu held). A segment renamed over by a
// purge since it was opened is opened again.
func (l *Log) readFrame(s *segment, k int) ([]byte, error) {
	var pst syscall.Stat_t
	if err := syscall.Stat(s.path, &pst); err != nil {
		return nil, fmt.Errorf("recordlog: %w", err)
	}
	if s.rf == nil || s.rino != pst.Ino {
		s.closeReader()
		f, err := os.Open(s.path)
		if err != nil {
			return nil, fmt.Errorf("recordlog: %w", err)
		}
		var st syscall.Stat_t
		if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
			f.Close()
			return nil, fmt.Errorf("recordlog: %w", err)
		}
		s.rf, s.rino = f, st.Ino
	}
	fr := s.frames[k]
	p := make([]byte, headerSize+int(fr.len))
	if _, err := s.rf.ReadAt(p, fr.off); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("recordlog: %s: frame of records %d.. is cut short", s.path, fr.first)
		}
		return nil, fmt.Errorf("recordlog: %w", err)
	}
	if h, ok := parseHeader(p, fr.off); !ok || h.first != fr.first || h.count != fr.count || h.len != fr.len {
		return nil, fmt.Errorf("recordlog: %s: frame header of records %d.. damaged", s.path, fr.first)
	}
	return p[headerSize:], nil
}

// Records calls fn for the records with start <= Seq < end, in order.
// A record's Data and Hashes stay valid after fn returns.
func (l *Log) Records(start, end int64, fn func(Record) error) error {
	start = max(start, l.first)
	for start < end {
		l.mu.Lock()
		if start >= l.next {
			if err := l.catchUp(); err != nil {
				l.mu.Unlock()
				return err
			}
		}
		if start >= l.next {
			l.mu.Unlock()
			return nil
		}
		s, k, err := l.frameAt(start)
		var p []byte
		var fr frameRef
		if err == nil {
			fr = s.frames[k]
			p, err = l.readFrame(s, k)
		}
		l.mu.Unlock()
		if err != nil {
			return err
		}
		seq := fr.first
		for i := 0; i < int(fr.count); i++ {
			r, _, _, n, err := recordAt(p, seq)
			if err != nil {
				return err
			}
			p = p[n:]
			if seq >= start && seq < end {
				if err := fn(r); err != nil {
					return err
				}
			}
			seq++
		}
		start = seq
	}
	return nil
}

// Hashes returns the stored tree hashes of record seq.
func (l *Log) Hashes(seq int64) ([]byte, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if seq >= l.next {
		if err := l.catchUp(); err != nil {
			return nil, err
		}
	}
	if seq < l.first || seq >= l.next {
		return nil, fmt.Errorf("recordlog: record %d is not in the log", seq)
	}
	s, k, err := l.frameAt(seq)
	if err != nil {
		return nil, err
	}
	fr := s.frames[k]
	d := l.cache[fr.first]
	if d == nil {
		p, err := l.readFrame(s, k)
		if err != nil {
			return nil, err
		}
		d = &decoded{first: fr.first, hashes: make([][]byte, fr.count)}
		for i := range d.hashes {
			r, _, _, n, err := recordAt(p, fr.first+int64(i))
			if err != nil {
				return nil, err
			}
			d.hashes[i] = r.Hashes
			p = p[n:]
		}
		if len(l.corder) >= cachedFrames {
			delete(l.cache, l.corder[0])
			l.corder = l.corder[1:]
		}
		l.cache[fr.first] = d
		l.corder = append(l.corder, fr.first)
	}
	return d.hashes[seq-fr.first], nil
}

// Purge clears the data of the records seqs that still have it, marking
// them purged by the record disposition; their hashes stay. Each segment
// concerned is written anew and renamed over the old one, so a crash
// leaves it either before or after. Purges hold the log's purge lock (one
// at a time across processes); appends wait only while the frames
// appended to the active segment during its rewrite are copied and the
// new file renamed in.
func (l *Log) Purge(seqs []int64, disposition int64) error {
	if l.readOnly {
		return ErrReadOnly
	}
	if len(seqs) == 0 {
		return nil
	}
	unlock, err := l.purgeLock()
	if err != nil {
		return err
	}
	defer unlock()
	// Under the purge lock no other purge writes: a *.purge file is what
	// a purge interrupted by a crash left.
	stale, _ := filepath.Glob(filepath.Join(l.dir, "*.seg.purge"))
	for _, f := range stale {
		os.Remove(f)
	}
	// Begin brings the log up to date (and reports a broken one).
	if _, err := l.Begin(); err != nil {
		return err
	}
	l.End()
	seqs = slices.Clone(seqs)
	slices.Sort(seqs)
	for len(seqs) > 0 {
		l.mu.Lock()
		var s *segment
		err := fmt.Errorf("recordlog: purge: record %d is not in the log", seqs[0])
		if seqs[0] >= l.first && seqs[0] < l.next {
			s, _, err = l.frameAt(seqs[0])
		}
		var frames []frameRef
		var end, next int64
		if err == nil {
			frames, end, next = slices.Clone(s.frames), s.end, s.next()
		}
		l.mu.Unlock()
		if err != nil {
			return err
		}
		k := 0
		for k < len(seqs) && seqs[k] < next {
			k++
		}
		if err := l.purgeSegment(s, frames, end, seqs[:k], disposition); err != nil {
			return err
		}
		seqs = seqs[k:]
	}
	return nil
}

// purgeLock takes the purge lock: an in-process mutex and a flock on the
// file "purge.lock", waited for as long as another purge runs.
func (l *Log) purgeLock() (func(), error) {
	l.pmu.Lock()
	f, err := os.OpenFile(filepath.Join(l.dir, "purge.lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		l.pmu.Unlock()
		return nil, fmt.Errorf("recordlog: purge lock: %w", err)
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		l.pmu.Unlock()
		return nil, fmt.Errorf("recordlog: purge lock: %w", err)
	}
	return func() {
		f.Close() // releases the flock
		l.pmu.Unlock()
	}, nil
}

// purgeSegment rewrites segment s, whose frames were frames up to end
// when the purge looked, with seqs purged.
func (l *Log) purgeSegment(s *segment, frames []frameRef, end int64, seqs []int64, disposition int64) error {
	data, err := os.ReadFile(s.path)
	if err != nil {
		return fmt.Errorf("recordlog: purge: %w", err)
	}
	if int64(len(data)) < end {
		return fmt.Errorf("recordlog: purge: %s is shorter than its frames", s.path)
	}
	data = data[:end]
	changed := false
	for _, fr := range frames {
		if len(seqs) == 0 {
			break
		}
		if seqs[0] >= fr.first+int64(fr.count) {
			continue
		}
		hdr := data[fr.off : fr.off+headerSize]
		p := data[fr.off+headerSize : fr.end()]
		q := p
		touched := false
		for i := 0; i < int(fr.count); i++ {
			seq := fr.first + int64(i)
			r, dataOff, dataLen, n, err := recordAt(q, seq)
			if err != nil {
				return fmt.Errorf("recordlog: purge: %w", err)
			}
			if len(seqs) > 0 && seqs[0] == seq {
				seqs = seqs[1:]
				if !r.Purged {
					binary.LittleEndian.PutUint64(q[8:], uint64(disposition))
					clear(q[dataOff : dataOff+dataLen])
					touched = true
				}
			}
			q = q[n:]
		}
		if touched {
			binary.LittleEndian.PutUint32(hdr[20:], frameCRC(hdr, p))
			changed = true
		}
	}
	if !changed {
		return nil
	}
	tmp := s.path + ".purge"
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("recordlog: purge: %w", err)
	}
	fail := func(err error) error {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("recordlog: purge %s: %w", s.path, err)
	}
	if _, err := f.Write(data); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	// Appends wait from here until the new file is in place.
	if err := l.lock(); err != nil {
		return fail(err)
	}
	defer l.unlock()
	if err := l.refresh(false); err != nil {
		return fail(err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if s.end > end {
		// Frames appended during the rewrite (to the active segment).
		cur, err := os.Open(s.path)
		if err != nil {
			return fail(err)
		}
		tail := make([]byte, s.end-end)
		_, err = cur.ReadAt(tail, end)
		cur.Close()
		if err == nil {
			_, err = f.WriteAt(tail, end)
		}
		if err == nil {
			err = f.Sync()
		}
		if err != nil {
			return fail(err)
		}
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("recordlog: purge %s: %w", s.path, err)
	}
	if err := os.Rename(tmp, s.path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("recordlog: purge %s: %w", s.path, err)
	}
	if err := syncDir(l.dir); err != nil {
		return fmt.Errorf("recordlog: purge %s: %w", s.path, err)
	}
	// Reads open the new file; an append goes to it.
	s.closeReader()
	for first := range l.cache {
		if first >= s.first && first < s.next() {
			delete(l.cache, first)
		}
	}
	l.corder = slices.DeleteFunc(l.corder, func(first int64) bool { return first >= s.first && first < s.next() })
	if s == l.segs[len(l.segs)-1] && l.wf != nil {
		return l.openActive(s)
	}
	return nil
}

// Location is where a record lies in the log's files.
type Location struct {
	// Path is the segment file; the record's frame is [FrameOff, FrameEnd)
	// and the record [RecordOff, RecordEnd) of it.
	Path                 string
	FrameOff, FrameEnd   int64
	RecordOff, RecordEnd int64
	// DataOff and DataLen locate the record's data bytes.
	DataOff, DataLen int64
	// FirstInFrame is the first record of the frame.
	FirstInFrame int64
}

// Locate returns where record seq lies (for forensics, and for tests that
// change the log behind the journal's back).
func (l *Log) Locate(seq int64) (Location, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if seq < l.first || seq >= l.next {
		return Location{}, fmt.Errorf("recordlog: record %d is not in the log", seq)
	}
	s, k, err := l.frameAt(seq)
	if err != nil {
		return Location{}, err
	}
	fr := s.frames[k]
	p, err := l.readFrame(s, k)
	if err != nil {
		return Location{}, err
	}
	off := 0
	for i := fr.first; ; i++ {
		_, dataOff, dataLen, n, err := recordAt(p[off:], i)
		if err != nil {
			return Location{}, err
		}
		if i == seq {
			base := fr.off + headerSize + int64(off)
			return Location{
				Path: s.path, FrameOff: fr.off, FrameEnd: fr.end(),
				RecordOff: base, RecordEnd: base + int64(n),
				DataOff: base + int64(dataOff), DataLen: int64(dataLen),
				FirstInFrame: fr.first,
			}, nil
		}
		off += n
	}
}

// Close closes the log's files.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closeActive()
	for _, s := range l.segs {
		s.closeReader()
	}
	if l.lockf != nil {
		err := l.lockf.Close()
		l.lockf = nil
		if err != nil {
			return fmt.Errorf("recordlog: %w", err)
		}
	}
	return nil
}
