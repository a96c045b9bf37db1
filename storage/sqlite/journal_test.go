package sqlite

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/palisade-im/palisade/storage"
	"github.com/palisade-im/palisade/storage/recordlog"
	"golang.org/x/mod/sumdb/tlog"
)

func openJournal(t testing.TB) (*Journal, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "journal.db")
	j, err := OpenJournal(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = j.Close() })
	return j, path
}

func rec(data string) storage.JournalRecord {
	return storage.JournalRecord{
		Time: time.Now(), Direction: storage.DirLocal, Kind: storage.KindMessage,
		From: "alice@example.com/a", To: "bob@example.com", StanzaType: "chat", StanzaSize: len(data), Data: []byte(data),
	}
}

// memTree computes the tree of data independently of the journal.
func memTree(t *testing.T, data [][]byte) (tlog.Hash, map[int64]tlog.Hash) {
	t.Helper()
	hashes := map[int64]tlog.Hash{}
	r := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			h, ok := hashes[x]
			if !ok {
				return nil, fmt.Errorf("hash %d missing", x)
			}
			out[i] = h
		}
		return out, nil
	})
	for n, d := range data {
		hs, err := tlog.StoredHashes(int64(n), d, r)
		if err != nil {
			t.Fatal(err)
		}
		for k, h := range hs {
			hashes[tlog.StoredHashIndex(0, int64(n))+int64(k)] = h
		}
	}
	root, err := tlog.TreeHash(int64(len(data)), r)
	if err != nil {
		t.Fatal(err)
	}
	return root, hashes
}

func allData(t *testing.T, j *Journal) [][]byte {
	t.Helper()
	var out [][]byte
	err := j.Records(context.Background(), 0, 1<<62, func(r storage.JournalRecord) error {
		if r.Seq != int64(len(out)) {
			return fmt.Errorf("record %d where %d was expected", r.Seq, len(out))
		}
		out = append(out, r.Data)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestJournalAppendReopen(t *testing.T) {
	ctx := context.Background()
	j, path := openJournal(t)
	head, err := j.TreeHead(ctx)
	if err != nil || head.Size != 0 {
		t.Fatalf("empty journal head = %+v, %v", head, err)
	}
	var want [][]byte
	for i := range 10 {
		batch := []storage.JournalRecord{rec(fmt.Sprintf("<m%d/>", i)), rec(fmt.Sprintf("<n%d/>", i))}
		if err := j.Append(ctx, batch); err != nil {
			t.Fatal(err)
		}
		if batch[0].Seq != int64(2*i) || batch[1].Seq != int64(2*i+1) {
			t.Fatalf("batch %d got seqs %d, %d", i, batch[0].Seq, batch[1].Seq)
		}
		want = append(want, batch[0].Data, batch[1].Data)
	}
	root, _ := memTree(t, want)
	head, err = j.TreeHead(ctx)
	if err != nil || head.Size != 20 || head.Hash != root {
		t.Fatalf("head = %+v, %v; want size 20 hash %v", head, err, root)
	}
	if err := j.AddCheckpoint(ctx, storage.Checkpoint{Size: 20, Time: time.Now(), Note: []byte("note 20")}); err != nil {
		t.Fatal(err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if err := j.Append(ctx, []storage.JournalRecord{rec("late")}); !errors.Is(err, ErrJournalClosed) {
		t.Fatalf("Append after Close = %v, want ErrJournalClosed", err)
	}

	j2, err := OpenJournal(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer j2.Close()
	if head2, err := j2.TreeHead(ctx); err != nil || head2 != head {
		t.Fatalf("reopened head = %+v, %v; want %+v", head2, err, head)
	}
	got := allData(t, j2)
	for i := range want {
		if string(got[i]) != string(want[i]) {
			t.Fatalf("record %d = %q, want %q", i, got[i], want[i])
		}
	}
	// Appending after reopen continues the same tree.
	more := []storage.JournalRecord{rec("<after/>")}
	if err := j2.Append(ctx, more); err != nil || more[0].Seq != 20 {
		t.Fatalf("append after reopen: seq %d, %v", more[0].Seq, err)
	}
	root, _ = memTree(t, append(want, more[0].Data))
	if h, _ := j2.TreeHead(ctx); h.Hash != root || h.Size != 21 {
		t.Fatalf("head after reopen and append = %+v, want %v", h, root)
	}
	cps, err := j2.Checkpoints(ctx)
	if err != nil || len(cps) != 1 || cps[0].Size != 20 || string(cps[0].Note) != "note 20" {
		t.Fatalf("checkpoints = %+v, %v", cps, err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("journal file mode = %v, %v", fi.Mode(), err)
	}
}

// TestJournalGroupCommit appends from many goroutines at once: every record
// gets a distinct index, is stored with its own data, and the stored tree
// is the tree of the records in index order, with proofs that check.
func TestJournalGroupCommit(t *testing.T) {
	forEachCommitPath(t, testJournalGroupCommit)
}

// forEachCommitPath runs test with small frames flushed by the committer
// itself (the default) and with every frame handed to the syncers, where
// frames are written while earlier ones are still being flushed.
func forEachCommitPath(t *testing.T, test func(t *testing.T, inlineMax int)) {
	t.Run("inline", func(t *testing.T) { test(t, journalInlineMax) })
	t.Run("syncers", func(t *testing.T) { test(t, -1) })
}

func testJournalGroupCommit(t *testing.T, inlineMax int) {
	ctx := context.Background()
	j, _ := openJournal(t)
	j.inlineMax = inlineMax
	const writers, each = 64, 20
	seqOf := make([][]int64, writers)
	var wg sync.WaitGroup
	errc := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				r := []storage.JournalRecord{rec(fmt.Sprintf("w%d-%d", w, i))}
				if err := j.Append(ctx, r); err != nil {
					errc <- err
					return
				}
				seqOf[w] = append(seqOf[w], r[0].Seq)
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	data := allData(t, j)
	if len(data) != writers*each {
		t.Fatalf("%d records, want %d", len(data), writers*each)
	}
	seen := map[int64]bool{}
	for w := range writers {
		for i, s := range seqOf[w] {
			if seen[s] {
				t.Fatalf("index %d given twice", s)
			}
			seen[s] = true
			if want := fmt.Sprintf("w%d-%d", w, i); string(data[s]) != want {
				t.Fatalf("record %d = %q, want %q", s, data[s], want)
			}
			if i > 0 && s <= seqOf[w][i-1] {
				t.Fatalf("writer %d: index %d after %d", w, s, seqOf[w][i-1])
			}
		}
	}
	head := checkTree(t, j, data)
	hr := tlog.HashReaderFunc(func(ix []int64) ([]tlog.Hash, error) { return j.ReadHashes(ctx, ix) })
	for _, n := range []int64{0, 1, 517, head.Size - 1} {
		p, err := tlog.ProveRecord(head.Size, n, hr)
		if err != nil {
			t.Fatal(err)
		}
		if err := tlog.CheckRecord(p, head.Size, head.Hash, n, tlog.RecordHash(data[n])); err != nil {
			t.Fatalf("inclusion proof of %d: %v", n, err)
		}
	}
}

// TestJournalChangedByte changes one byte of a stored record behind the
// journal's back: its leaf no longer matches the stored hash.
func TestJournalChangedByte(t *testing.T) {
	ctx := context.Background()
	j, path := openJournal(t)
	for i := range 5 {
		if err := j.Append(ctx, []storage.JournalRecord{rec(fmt.Sprintf("<body>hello %d</body>", i))}); err != nil {
			t.Fatal(err)
		}
	}
	l, err := recordlog.Open(JournalRecordsDir(path), 0, true)
	if err != nil {
		t.Fatal(err)
	}
	loc, err := l.Locate(3)
	l.Close()
	if err != nil {
		t.Fatal(err)
	}
	seg, err := os.ReadFile(loc.Path)
	if err != nil {
		t.Fatal(err)
	}
	data := seg[loc.DataOff : loc.DataOff+loc.DataLen]
	copy(data[bytes.Index(data, []byte("hello 3")):], "jello 3")
	if err := os.WriteFile(loc.Path, seg, 0o600); err != nil {
		t.Fatal(err)
	}
	ro, err := OpenJournalReadOnly(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	for i, d := range allData(t, ro) {
		h, err := ro.ReadHashes(ctx, []int64{tlog.StoredHashIndex(0, int64(i))})
		if err != nil {
			t.Fatal(err)
		}
		if match := h[0] == tlog.RecordHash(d); match != (i != 3) {
			t.Errorf("record %d: leaf matches stored hash = %v", i, match)
		}
	}
	if err := ro.Append(ctx, []storage.JournalRecord{rec("x")}); !errors.Is(err, ErrJournalReadOnly) {
		t.Fatalf("read-only Append = %v", err)
	}
}

func TestJournalContextAndLock(t *testing.T) {
	j, path := openJournal(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := j.Append(ctx, []storage.JournalRecord{rec("x")}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Append with a cancelled context = %v", err)
	}
	// Another process holding the append lock makes Append fail, not hang,
	// and nothing of the failed batch is kept.
	lf, err := os.OpenFile(filepath.Join(JournalRecordsDir(path), "lock"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	if err := syscall.Flock(int(lf.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	if err := j.Append(context.Background(), []storage.JournalRecord{rec("locked")}); !errors.Is(err, recordlog.ErrLocked) {
		t.Fatalf("Append while another process held the lock = %v", err)
	}
	if err := syscall.Flock(int(lf.Fd()), syscall.LOCK_UN); err != nil {
		t.Fatal(err)
	}
	r := []storage.JournalRecord{rec("after")}
	if err := j.Append(context.Background(), r); err != nil || r[0].Seq != 0 {
		t.Fatalf("Append after the lock: seq %d, %v", r[0].Seq, err)
	}
	if h, _ := j.TreeHead(context.Background()); h.Size != 1 {
		t.Fatalf("size %d after one good append", h.Size)
	}
}

const journalCrashEnv = "PALISADE_JOURNAL_CRASH_CHILD_DB"

// journalCrashChild appends from four goroutines until killed, printing
// "SEQ DATA" once each Append has returned.
func journalCrashChild(path string) {
	j, err := OpenJournal(context.Background(), path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	for w := range 4 {
		go func() {
			for i := 0; ; i++ {
				r := []storage.JournalRecord{rec(fmt.Sprintf("w%d-%d", w, i))}
				if err := j.Append(context.Background(), r); err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(2)
				}
				mu.Lock()
				fmt.Fprintf(out, "%d %s\n", r[0].Seq, r[0].Data)
				out.Flush()
				mu.Unlock()
			}
		}()
	}
	select {}
}

// TestJournalCrash kills an appending child with SIGKILL: every record it
// saw acknowledged is in the reopened journal, and the stored tree is the
// tree of the stored records.
func TestJournalCrash(t *testing.T) {
	if path := os.Getenv(journalCrashEnv); path != "" {
		journalCrashChild(path)
		return
	}
	if testing.Short() {
		t.Skip("spawns a child process")
	}
	path := filepath.Join(t.TempDir(), "journal.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestJournalCrash$", "-test.count=1")
	cmd.Env = append(os.Environ(), journalCrashEnv+"="+path)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acked := map[int64]string{}
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		s, d, ok := strings.Cut(sc.Text(), " ")
		n, err := strconv.ParseInt(s, 10, 64)
		if !ok || err != nil {
			t.Fatalf("unexpected child output %q", sc.Text())
		}
		acked[n] = d
		if len(acked) == 400 {
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
		}
	}
	_ = cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child was not killed by SIGKILL (%d acknowledged)", len(acked))
	}
	j, err := OpenJournal(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	data := allData(t, j)
	for n, d := range acked {
		if n >= int64(len(data)) || string(data[n]) != d {
			t.Errorf("acknowledged record %d (%s) lost", n, d)
		}
	}
	root, _ := memTree(t, data)
	if h, err := j.TreeHead(context.Background()); err != nil || h.Hash != root || h.Size != int64(len(data)) {
		t.Fatalf("head after crash = %+v, %v; want the tree of the %d stored records", h, err, len(data))
	}
	t.Logf("%d acknowledged before SIGKILL, %d stored", len(acked), len(data))
}

// BenchmarkJournalAppend measures durable appends per second with 1, 16
// and 256 concurrent appenders (one record per call).
func BenchmarkJournalAppend(b *testing.B) {
	payload := strings.Repeat("x", 400)
	for _, n := range []int{1, 16, 256} {
		b.Run(fmt.Sprintf("appenders=%d", n), func(b *testing.B) {
			j, _ := openJournal(b)
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			if n == 1 {
				for range b.N {
					if err := j.Append(ctx, []storage.JournalRecord{rec(payload)}); err != nil {
						b.Fatal(err)
					}
				}
			} else {
				b.SetParallelism((n + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if err := j.Append(ctx, []storage.JournalRecord{rec(payload)}); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "appends/s")
		})
	}
}

// TestJournalTwoWriters appends through two Journal values on one file, as
// the server and the CLI do: every record gets its own index and the tree
// is the tree of the records in order.
func TestJournalTwoWriters(t *testing.T) {
	ctx := context.Background()
	j1, path := openJournal(t)
	j2, err := OpenJournal(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer j2.Close()
	var wg sync.WaitGroup
	errc := make(chan error, 16)
	for w := range 16 {
		j := j1
		if w%2 == 1 {
			j = j2
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 15 {
				if err := j.Append(ctx, []storage.JournalRecord{rec(fmt.Sprintf("w%d-%d", w, i))}); err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	j3, err := OpenJournalReadOnly(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer j3.Close()
	data := allData(t, j3)
	if len(data) != 16*15 {
		t.Fatalf("%d records, want %d", len(data), 16*15)
	}
	checkTree(t, j3, data)
}

// TestJournalCosignatures: cosignatures are kept per checkpoint size,
// returned with their checkpoints (every checkpoint of that size), a
// repeated line is kept once, each witness's cosigned size is the
// largest it cosigned, and a journal of schema 3 migrates with its
// checkpoints intact.
func TestJournalCosignatures(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "journal.db")
	// A journal as version 3 left it, with one checkpoint.
	db, err := sql.Open("sqlite3", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range journalMigrations[:3] {
		if _, err := db.Exec(m); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.Exec("PRAGMA user_version = 3; INSERT INTO checkpoints (size, time, note) VALUES (3, 1, CAST('note 3' AS BLOB))"); err != nil {
		t.Fatal(err)
	}
	db.Close()

	j, err := OpenJournal(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if n, err := j.CosignedSize(ctx, "w1", 7); err != nil || n != 0 {
		t.Fatalf("cosigned size before any = %d, %v", n, err)
	}
	for _, c := range []storage.Checkpoint{{Size: 5, Note: []byte("note 5")}, {Size: 5, Note: []byte("note 5 again")}, {Size: 9, Note: []byte("note 9")}} {
		c.Time = time.Now()
		if err := j.AddCheckpoint(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	at := time.Unix(1700000000, 0).UTC()
	for _, c := range []storage.Cosignature{
		{Size: 3, Witness: "w1", KeyHash: 7, Time: at, Line: "— w1 AAA=\n"},
		{Size: 5, Witness: "w1", KeyHash: 7, Time: at.Add(time.Second), Line: "— w1 BBB=\n"},
		{Size: 5, Witness: "w2", KeyHash: 0xfffffffe, Time: at, Line: "— w2 CCC=\n"},
		{Size: 5, Witness: "w1", KeyHash: 7, Time: at.Add(time.Second), Line: "— w1 BBB=\n"},
		{Size: 9, Witness: "w1", KeyHash: 8, Time: at, Line: "— w1 DDD=\n"},
	} {
		if err := j.AddCosignature(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name string
		hash uint32
		want int64
	}{{"w1", 7, 5}, {"w1", 8, 9}, {"w2", 0xfffffffe, 5}, {"w3", 7, 0}} {
		if n, err := j.CosignedSize(ctx, tc.name, tc.hash); err != nil || n != tc.want {
			t.Errorf("CosignedSize(%s, %x) = %d, %v; want %d", tc.name, tc.hash, n, err, tc.want)
		}
	}
	cps, err := j.Checkpoints(ctx)
	if err != nil || len(cps) != 4 {
		t.Fatalf("checkpoints = %+v, %v", cps, err)
	}
	lines := func(c storage.Checkpoint) string {
		var s []string
		for _, x := range c.Cosignatures {
			if x.Size != c.Size {
				t.Errorf("checkpoint %d carries a cosignature of size %d", c.Size, x.Size)
			}
			s = append(s, strings.TrimSpace(x.Line))
		}
		return strings.Join(s, "|")
	}
	for i, want := range []string{"— w1 AAA=", "— w1 BBB=|— w2 CCC=", "— w1 BBB=|— w2 CCC=", "— w1 DDD="} {
		if got := lines(cps[i]); got != want {
			t.Errorf("checkpoint %d (size %d): cosignatures %q, want %q", i, cps[i].Size, got, want)
		}
	}
	if string(cps[0].Note) != "note 3" {
		t.Errorf("migrated checkpoint = %q", cps[0].Note)
	}
	if c := cps[1].Cosignatures[1]; c.Witness != "w2" || c.KeyHash != 0xfffffffe || !c.Time.Equal(at) {
		t.Errorf("cosignature read back as %+v", c)
	}
	ro, err := OpenJournalReadOnly(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if err := ro.AddCosignature(ctx, storage.Cosignature{Size: 9, Line: "x"}); !errors.Is(err, ErrJournalReadOnly) {
		t.Errorf("read-only AddCosignature = %v", err)
	}
}

// TestJournalLegacyRecords opens a journal written before the record log
// (records as rows, schema version 5): the rows stay where they are, new
// records follow them in the log, and reads, proofs and purges span both.
func TestJournalLegacyRecords(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "journal.db")
	if err := createPrivate(path); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite3", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	if err := migrateDB(ctx, db, journalMigrations[:5]); err != nil {
		t.Fatal(err)
	}
	var data [][]byte
	stored := map[int64]tlog.Hash{}
	hr := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			out[i] = stored[x]
		}
		return out, nil
	})
	for i := range 5 {
		d := []byte(fmt.Sprintf("<body>old %d</body>", i))
		hs, err := tlog.StoredHashes(int64(i), d, hr)
		if err != nil {
			t.Fatal(err)
		}
		var raw []byte
		for k, h := range hs {
			stored[tlog.StoredHashIndex(0, int64(i))+int64(k)] = h
			raw = append(raw, h[:]...)
		}
		if _, err := db.Exec(`INSERT INTO records (seq, time, direction, kind, from_jid, to_jid, stanza_type, stanza_size, data, hashes)
			VALUES (?, ?, 'local', 'message', 'alice@example.com/a', 'bob@example.com', 'chat', ?, ?, ?)`,
			i, time.Now().UnixNano(), len(d), d, raw); err != nil {
			t.Fatal(err)
		}
		data = append(data, d)
	}
	db.Close()

	j, err := OpenJournal(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	for i := 5; i < 9; i++ {
		r := []storage.JournalRecord{rec(fmt.Sprintf("<body>new %d</body>", i))}
		if err := j.Append(ctx, r); err != nil || r[0].Seq != int64(i) {
			t.Fatalf("append after the legacy rows: seq %d, %v", r[0].Seq, err)
		}
		data = append(data, r[0].Data)
	}
	got := allData(t, j)
	if len(got) != len(data) {
		t.Fatalf("%d records, want %d", len(got), len(data))
	}
	for i := range data {
		if !bytes.Equal(got[i], data[i]) {
			t.Fatalf("record %d = %q, want %q", i, got[i], data[i])
		}
	}
	root, _ := memTree(t, data)
	head, err := j.TreeHead(ctx)
	if err != nil || head.Hash != root || head.Size != 9 {
		t.Fatalf("head %+v, %v; want the tree of all 9 records", head, err)
	}
	for n := range int64(9) {
		p, err := tlog.ProveRecord(head.Size, n, tlog.HashReaderFunc(func(ix []int64) ([]tlog.Hash, error) { return j.ReadHashes(ctx, ix) }))
		if err != nil {
			t.Fatal(err)
		}
		if err := tlog.CheckRecord(p, head.Size, head.Hash, n, tlog.RecordHash(data[n])); err != nil {
			t.Fatalf("inclusion proof of %d: %v", n, err)
		}
	}
	if err := j.Purge(ctx, []int64{2, 6}, 8); err != nil {
		t.Fatal(err)
	}
	err = j.Records(ctx, 0, 9, func(r storage.JournalRecord) error {
		if want := r.Seq == 2 || r.Seq == 6; r.Purged != want || (want && (len(r.Data) != 0 || r.PurgedBy != 8)) {
			return fmt.Errorf("record %d: purged %v by %d, data %q", r.Seq, r.Purged, r.PurgedBy, r.Data)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestJournalAnswersInOrder: frames whose fdatasyncs finish out of order
// are answered in write order, a frame only once every earlier one is
// durable; a later frame's fdatasync vouches for the earlier frames of its
// own segment only, and a failed one publishes nothing.
func TestJournalAnswersInOrder(t *testing.T) {
	j := &Journal{}
	mk := func(segment, size int64) *ticket {
		r := &appendReq{done: make(chan struct{}, 1)}
		r.state.Store(reqWaiting) // its waiter blocks: each answer signals done
		return &ticket{reqs: []*appendReq{r}, edge: treeEdge{size: size}, sync: &recordlog.Sync{Segment: segment}}
	}
	answered := func(ts ...*ticket) string {
		var out []string
		for i, tk := range ts {
			select {
			case <-tk.reqs[0].done:
				out = append(out, fmt.Sprintf("%d:%v", i, tk.reqs[0].err))
			default:
			}
		}
		return strings.Join(out, " ")
	}
	a, b, c, d := mk(0, 1), mk(0, 2), mk(10, 3), mk(10, 4)
	j.fifo = []*ticket{a, b, c, d}
	j.complete(d, nil) // vouches for c (segment 10), not for a and b
	if got := answered(a, b, c, d); got != "" || j.head.size != 0 {
		t.Fatalf("after d: answered %q, size %d", got, j.head.size)
	}
	j.complete(b, nil) // vouches for a
	if got := answered(a, b, c, d); got != "0:<nil> 1:<nil> 2:<nil> 3:<nil>" || j.head.size != 4 {
		t.Fatalf("after b: answered %q, size %d", got, j.head.size)
	}
	j.complete(a, nil) // late: answered already
	j.complete(c, nil)
	if got := answered(a, b, c, d); got != "" || len(j.fifo) != 0 {
		t.Fatalf("late fdatasyncs answered again: %q, %d waiting", got, len(j.fifo))
	}

	e, f := mk(10, 5), mk(10, 6)
	j.fifo = []*ticket{e, f}
	fail := errors.New("fdatasync failed")
	j.complete(e, fail)
	if got := answered(e, f); got != "0:fdatasync failed" || j.head.size != 4 {
		t.Fatalf("after a failed fdatasync: answered %q, size %d", got, j.head.size)
	}
	j.complete(f, nil)
	if got := answered(e, f); got != "1:<nil>" || j.head.size != 6 {
		t.Fatalf("after f: answered %q, size %d", got, j.head.size)
	}
}

// Every stored hash the committer computed, over frames of many sizes and
// a reopen, is the one tlog.StoredHashes gives.
func TestJournalStoredHashesMatchTlog(t *testing.T) {
	forEachCommitPath(t, testJournalStoredHashesMatchTlog)
}

func testJournalStoredHashesMatchTlog(t *testing.T, inlineMax int) {
	ctx := context.Background()
	j, path := openJournal(t)
	j.inlineMax = inlineMax
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 150 {
				batch := make([]storage.JournalRecord, 1+(i+w)%4)
				for k := range batch {
					batch[k] = rec(fmt.Sprintf("<w%d i%d k%d/>", w, i, k))
				}
				if err := j.Append(ctx, batch); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	j, err := OpenJournal(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	for i := range 37 { // after a reopen, from the edge read back
		if err := j.Append(ctx, []storage.JournalRecord{rec(fmt.Sprintf("<after%d/>", i))}); err != nil {
			t.Fatal(err)
		}
	}
	checkTree(t, j, allData(t, j))
}

// checkTree checks j's tree head and every stored hash against the tree of
// data computed by tlog alone, and returns the head.
func checkTree(t *testing.T, j *Journal, data [][]byte) storage.TreeHead {
	t.Helper()
	ctx := context.Background()
	root, want := memTree(t, data)
	head, err := j.TreeHead(ctx)
	if err != nil || head.Hash != root || head.Size != int64(len(data)) {
		t.Fatalf("head = %+v, %v; want %d %v", head, err, len(data), root)
	}
	idx := make([]int64, 0, len(want))
	for x := range want {
		idx = append(idx, x)
	}
	got, err := j.ReadHashes(ctx, idx)
	if err != nil {
		t.Fatal(err)
	}
	for i, x := range idx {
		if got[i] != want[x] {
			t.Fatalf("stored hash %d differs from tlog's (of %d records)", x, len(data))
		}
	}
	return head
}
