package recordlog

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/palisade-im/palisade/storage"
)

func rec(data string) storage.JournalRecord {
	return storage.JournalRecord{
		Time: time.Unix(1700000000, 123).UTC(), Direction: storage.DirLocal, Kind: storage.KindMessage,
		From: "alice@example.com/a", To: "bob@example.com", StanzaType: "chat", StanzaSize: len(data), Data: []byte(data),
	}
}

// hashesOf is a stand-in for the tree hashes: one or two 32-byte values
// derived from the seq.
func hashesOf(seq int64) []byte {
	n := 1 + int(seq%2)
	return bytes.Repeat([]byte{byte(seq)}, 32*n)
}

// mustOpen opens the log in dir for appending, from record 0, until the
// test ends.
func mustOpen(t *testing.T, dir string) *Log {
	t.Helper()
	l, err := Open(dir, 0, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// filled makes a closed log of frames frames of per records each, and
// returns its directory, its one segment and where record seq lies.
func filled(t *testing.T, frames, per int, seq int64) (dir, seg string, loc Location) {
	t.Helper()
	dir = t.TempDir()
	l := mustOpen(t, dir)
	for range frames {
		appendN(t, l, per, "a")
	}
	seg = l.segs[0].path
	loc, err := l.Locate(seq)
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	return dir, seg, loc
}

// appendRecords encodes recs and appends them as one frame.
func appendRecords(l *Log, recs []storage.JournalRecord, hashes [][]byte) error {
	enc := make([][]byte, len(recs))
	for i := range recs {
		enc[i] = Encode(nil, &recs[i])
	}
	return l.AppendEncoded(enc, hashes)
}

// appendN appends one frame of n records through a full Begin/End round.
func appendN(t *testing.T, l *Log, n int, tag string) int64 {
	t.Helper()
	first, err := l.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer l.End()
	recs := make([]storage.JournalRecord, n)
	hs := make([][]byte, n)
	for i := range recs {
		recs[i] = rec(fmt.Sprintf("%s-%d", tag, first+int64(i)))
		hs[i] = hashesOf(first + int64(i))
	}
	if err := appendRecords(l, recs, hs); err != nil {
		t.Fatal(err)
	}
	return first
}

// check reads the whole log and compares it with want (data by seq).
func check(t *testing.T, l *Log, want []string) {
	t.Helper()
	var got []string
	err := l.Records(0, 1<<62, func(r Record) error {
		if r.Seq != l.First()+int64(len(got)) {
			return fmt.Errorf("record %d where %d was due", r.Seq, l.First()+int64(len(got)))
		}
		if r.From != "alice@example.com/a" || r.Kind != storage.KindMessage || !r.Time.Equal(time.Unix(1700000000, 123)) {
			return fmt.Errorf("record %d metadata %+v", r.Seq, r.JournalRecord)
		}
		if !bytes.Equal(r.Hashes, hashesOf(r.Seq)) {
			return fmt.Errorf("record %d hashes differ", r.Seq)
		}
		got = append(got, string(r.Data))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("log holds %q, want %q", got, want)
	}
	for i := range want {
		seq := l.First() + int64(i)
		h, err := l.Hashes(seq)
		if err != nil || !bytes.Equal(h, hashesOf(seq)) {
			t.Fatalf("Hashes(%d) = %x, %v", seq, h, err)
		}
	}
}

func names(first int64, tag string, n int) []string {
	var out []string
	for i := range n {
		out = append(out, fmt.Sprintf("%s-%d", tag, first+int64(i)))
	}
	return out
}

// TestLogRoundTrip appends frames over several segments, reads them back
// in the same log and in a reopened one, read-only and writable.
func TestLogRoundTrip(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "log")
	l, err := Open(dir, 5, false)
	if err != nil {
		t.Fatal(err)
	}
	l.segMax = 300 // a few frames per segment
	var want []string
	for i := range 12 {
		first := appendN(t, l, 1+i%3, "a")
		want = append(want, names(first, "a", 1+i%3)...)
	}
	check(t, l, want)
	l.Close()
	segs, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	if len(segs) < 3 {
		t.Fatalf("%d segments, want several", len(segs))
	}
	ro, err := Open(dir, 5, true)
	if err != nil {
		t.Fatal(err)
	}
	check(t, ro, want)
	if _, err := ro.Begin(); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("Begin on a read-only log = %v", err)
	}
	ro.Close()
	if _, err := Open(dir, 0, true); err == nil {
		t.Fatal("a log opened with the wrong first record")
	}
	rw, err := Open(dir, 5, false)
	if err != nil {
		t.Fatal(err)
	}
	defer rw.Close()
	first := appendN(t, rw, 2, "b")
	check(t, rw, append(want, names(first, "b", 2)...))
}

// TestLogTornTail: what a crash left half written after the last whole
// frame is cut on a writable open, a lost index is rebuilt, and appends go
// on where the whole frames end.
func TestLogTornTail(t *testing.T) {
	dir := t.TempDir()
	l, err := Open(dir, 0, false)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		appendN(t, l, 2, "a")
	}
	seg := l.segs[0].path
	last, err := l.Locate(5)
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	end := last.FrameEnd
	// A frame torn half way, where the next frame goes (in the zeros
	// preallocated there): its header and part of its records.
	b, _ := os.ReadFile(seg)
	if int64(len(b)) < end {
		t.Fatalf("segment of %d bytes, frames end at %d", len(b), end)
	}
	torn := append(b[:end:end], b[:headerSize+10]...)
	copy(torn[end+4:], []byte{6, 0, 0, 0, 0, 0, 0, 0})
	if err := os.WriteFile(seg, torn, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(idxPath(seg)); err != nil {
		t.Fatal(err)
	}
	ro, err := Open(dir, 0, true)
	if err != nil {
		t.Fatal(err)
	}
	check(t, ro, names(0, "a", 6))
	ro.Close()
	if fi, _ := os.Stat(seg); fi.Size() != int64(len(torn)) {
		t.Fatal("a read-only open changed the segment")
	}
	l, err = Open(dir, 0, false)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if fi, _ := os.Stat(seg); fi.Size() != end {
		t.Fatalf("segment is %d bytes after repair, want %d", fi.Size(), end)
	}
	if idx, _ := os.ReadFile(idxPath(seg)); len(idx) != 3*idxSize {
		t.Fatalf("rebuilt index has %d bytes", len(idx))
	}
	first := appendN(t, l, 1, "b")
	if first != 6 {
		t.Fatalf("next record %d after repair, want 6", first)
	}
	check(t, l, append(names(0, "a", 6), "b-6"))
}

// TestLogTwoHandles appends through two opens of one log, as two
// processes do: each sees the other's records and numbers follow on.
func TestLogTwoHandles(t *testing.T) {
	// Small segments: several rotations; large ones: appends into the
	// zeros the other preallocated.
	for _, segMax := range []int64{200, 1 << 20} {
		t.Run(fmt.Sprint(segMax), func(t *testing.T) { testTwoHandles(t, segMax) })
	}
}

func testTwoHandles(t *testing.T, segMax int64) {
	dir := t.TempDir()
	a := mustOpen(t, dir)
	b := mustOpen(t, dir)
	a.segMax, b.segMax = segMax, segMax
	var want []string
	for i := range 10 {
		l, tag := a, "a"
		if i%3 == 1 {
			l, tag = b, "b"
		}
		first := appendN(t, l, 1+i%2, tag)
		if first != int64(len(want)) {
			t.Fatalf("append %d got record %d, want %d", i, first, len(want))
		}
		want = append(want, names(first, tag, 1+i%2)...)
	}
	check(t, a, want)
	check(t, b, want)
}

// TestLogPurge clears records' data in place: the rest, the hashes and
// later appends stay, in this log and in another open of it.
func TestLogPurge(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, dir)
	other := mustOpen(t, dir)
	l.segMax = 400
	for range 6 {
		appendN(t, l, 2, "a")
	}
	check(t, other, names(0, "a", 12)) // other has the old files open
	// What an interrupted purge of a segment left (no such segment now).
	stale := filepath.Join(dir, "00000000000000000099.seg.purge")
	os.WriteFile(stale, []byte("left by a crash"), 0o600)
	if err := l.Purge([]int64{1, 4, 5, 11}, 12); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a purge left a stale purge file: %v", err)
	}
	// Purging again changes nothing: the first disposition stays.
	if err := l.Purge([]int64{4}, 13); err != nil {
		t.Fatal(err)
	}
	appendN(t, other, 1, "b") // into the renamed active segment
	for _, lg := range []*Log{l, other} {
		var purged []string
		err := lg.Records(0, 1<<62, func(r Record) error {
			if !bytes.Equal(r.Hashes, hashesOf(r.Seq)) {
				return fmt.Errorf("record %d hashes differ", r.Seq)
			}
			switch {
			case r.Purged:
				if r.Data != nil || r.PurgedBy != 12 {
					return fmt.Errorf("purged record %d: data %q, by %d", r.Seq, r.Data, r.PurgedBy)
				}
				purged = append(purged, fmt.Sprint(r.Seq))
			case string(r.Data) != fmt.Sprintf("a-%d", r.Seq) && string(r.Data) != "b-12":
				return fmt.Errorf("record %d holds %q", r.Seq, r.Data)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(purged) != "[1 4 5 11]" {
			t.Fatalf("purged %v", purged)
		}
	}
	segs, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	for _, s := range segs {
		b, _ := os.ReadFile(s)
		for _, gone := range []string{"a-1", "a-4", "a-5", "a-11"} {
			if bytes.Contains(b, []byte(gone+"\x00")) || bytes.HasSuffix(b, []byte(gone)) {
				t.Fatalf("%s still holds %s", s, gone)
			}
		}
	}
	reopened, err := Open(dir, 0, true)
	if err != nil {
		t.Fatal(err)
	}
	defer reopened.Close()
	if n := reopened.Next(); n != 13 {
		t.Fatalf("reopened log ends at %d, want 13", n)
	}
}

// TestLogLocked: an append lock held elsewhere fails Begin after a while,
// rather than holding up the message path.
func TestLogLocked(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, dir)
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Begin(); !errors.Is(err, ErrLocked) {
		t.Fatalf("Begin under another's lock = %v", err)
	}
	syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	appendN(t, l, 1, "a")
	check(t, l, []string{"a-0"})
}

// TestLogDamagedFrame: a frame whose header was changed is reported by
// reads, naming its records; the frames before it still read.
func TestLogDamagedFrame(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, dir)
	for range 3 {
		appendN(t, l, 1, "a")
	}
	loc, err := l.Locate(1)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(loc.Path)
	b[loc.FrameOff+12] = 9 // the record count
	os.WriteFile(loc.Path, b, 0o600)
	var seen int
	err = l.Records(0, 3, func(Record) error { seen++; return nil })
	if err == nil || seen != 1 || !bytes.Contains([]byte(err.Error()), []byte("records 1..")) {
		t.Fatalf("read of a damaged frame: %d records, %v", seen, err)
	}
}

// TestLogOpenMissingReadOnly: a journal without a record log yet reads as
// empty.
func TestLogOpenMissingReadOnly(t *testing.T) {
	l, err := Open(filepath.Join(t.TempDir(), "none"), 7, true)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if l.Next() != 7 {
		t.Fatalf("next %d", l.Next())
	}
	if err := l.Records(0, 100, func(Record) error { return errors.New("a record") }); err != nil {
		t.Fatal(err)
	}
}

// TestLogPurgeWhileAppending purges records of the active segment through
// one open while another keeps appending to it: nothing appended during
// the rewrite is lost, and the purged records stay purged.
func TestLogPurgeWhileAppending(t *testing.T) {
	dir := t.TempDir()
	a := mustOpen(t, dir)
	b := mustOpen(t, dir)
	for range 50 {
		appendN(t, a, 20, "a")
	}
	done := make(chan int64)
	go func() {
		var last int64
		for i := 0; i < 200; i++ {
			first, err := a.Begin()
			if err != nil {
				t.Error(err)
				break
			}
			r := []storage.JournalRecord{rec(fmt.Sprintf("a-%d", first))}
			err = appendRecords(a, r, [][]byte{hashesOf(first)})
			a.End()
			if err != nil {
				t.Error(err)
				break
			}
			last = first
		}
		done <- last
	}()
	var purge []int64
	for s := int64(0); s < 1000; s += 7 {
		purge = append(purge, s)
	}
	for k := 0; k < len(purge); k += 30 {
		if err := b.Purge(purge[k:min(k+30, len(purge))], 5000); err != nil {
			t.Fatal(err)
		}
	}
	last := <-done
	purged := map[int64]bool{}
	for _, s := range purge {
		purged[s] = true
	}
	for _, lg := range []*Log{a, b} {
		n := int64(0)
		err := lg.Records(0, 1<<62, func(r Record) error {
			if r.Seq != n {
				return fmt.Errorf("record %d where %d was due", r.Seq, n)
			}
			n++
			if !bytes.Equal(r.Hashes, hashesOf(r.Seq)) {
				return fmt.Errorf("record %d hashes differ", r.Seq)
			}
			if purged[r.Seq] != r.Purged || (!r.Purged && string(r.Data) != fmt.Sprintf("a-%d", r.Seq)) {
				return fmt.Errorf("record %d: purged %v, data %q", r.Seq, r.Purged, r.Data)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if n != last+1 {
			t.Fatalf("log holds %d records, %d were appended", n, last+1)
		}
	}
}

// TestLogDamagedBytes changes single bytes of a segment behind the log's
// back: opening and reading it never panics, and whatever is read either
// decodes or is reported as an error.
func TestLogDamagedBytes(t *testing.T) {
	_, seg, last := filled(t, 8, 3, 23)
	orig, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	orig = orig[:last.FrameEnd] // without the zeros ahead
	idx, _ := os.ReadFile(idxPath(seg))
	for i := 0; i < len(orig); i += 7 {
		dir := t.TempDir()
		b := bytes.Clone(orig)
		b[i] ^= 0x5a
		name := filepath.Join(dir, filepath.Base(seg))
		os.WriteFile(name, b, 0o600)
		os.WriteFile(idxPath(name), idx, 0o600)
		for _, ro := range []bool{true, false} {
			lg, err := Open(dir, 0, ro)
			if err != nil {
				continue
			}
			_ = lg.Records(0, 1<<62, func(Record) error { return nil })
			for s := range int64(24) {
				_, _ = lg.Hashes(s)
			}
			lg.Close()
		}
	}
}

// TestLogMidDamageNotCut: a byte changed in a middle frame while the
// index is lost looks like the end of the log to a scan, but whole frames
// follow it: a writable open refuses (ErrDamaged) and cuts nothing, where
// a crash's torn last frames (the in-flight ones) are cut.
func TestLogMidDamageNotCut(t *testing.T) {
	dir, seg, mid := filled(t, 6, 2, 4)
	b, _ := os.ReadFile(seg)
	b[mid.DataOff] ^= 0xff
	os.WriteFile(seg, b, 0o600)
	os.Remove(idxPath(seg))
	if _, err := Open(dir, 0, false); !errors.Is(err, ErrDamaged) {
		t.Fatalf("writable open of a damaged segment = %v", err)
	}
	if after, _ := os.ReadFile(seg); !bytes.Equal(after, b) {
		t.Fatal("the damaged segment was changed")
	}
	ro, err := Open(dir, 0, true)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if n := ro.Next(); n != mid.FirstInFrame {
		t.Fatalf("read-only open reads to record %d, want the frame before the damage (%d)", n, mid.FirstInFrame)
	}

	// The same bytes with only the last two frames torn: cut.
	dir2, seg2, fifth := filled(t, 6, 2, 8)
	b2, _ := os.ReadFile(seg2)
	b2[fifth.DataOff] ^= 0xff // frame 5 torn, frame 6 whole: both in flight
	os.WriteFile(seg2, b2, 0o600)
	os.Remove(idxPath(seg2))
	l3, err := Open(dir2, 0, false)
	if err != nil {
		t.Fatalf("open after a crash with two frames in flight: %v", err)
	}
	defer l3.Close()
	if n := l3.Next(); n != 8 {
		t.Fatalf("log ends at %d after the repair, want 8", n)
	}
}

// TestLogLargeFrame: a frame of more pieces than one pwritev takes (four
// per record) is written whole, read back in the log and after a reopen.
func TestLogLargeFrame(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, dir)
	n := 3*iovMax/4 + 5 // 3 pwritevs
	first := appendN(t, l, n, "big")
	want := names(first, "big", n)
	check(t, l, want)
	l.Close()
	check(t, mustOpen(t, dir), want)
}

// rawPwritev writes its buffers in order, empty ones included, over
// several pwritevs.
func TestRawPwritev(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "v"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var bufs [][]byte
	var want []byte
	for i := range 2*iovMax + 7 {
		b := bytes.Repeat([]byte{byte(i)}, i%5) // every fifth is empty
		bufs = append(bufs, b)
		want = append(want, b...)
	}
	var iov []syscall.Iovec
	if err := rawPwritev(f.Fd(), bufs, 3, &iov); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, append(make([]byte, 3), want...)) {
		t.Fatalf("file holds %d bytes, want %d at offset 3", len(got), len(want)+3)
	}
	for _, v := range iov[:cap(iov)] {
		if v.Base != nil {
			t.Fatal("rawPwritev kept a reference to a buffer")
		}
	}
}
