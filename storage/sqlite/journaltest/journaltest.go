// Package journaltest reads and changes a journal's files behind its back,
// as an intruder with access to the files could: for the tests that show
// such changes are found. Nothing outside tests imports it.
package journaltest

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"

	"github.com/palisade-im/palisade/storage"
	"github.com/palisade-im/palisade/storage/recordlog"
	"github.com/palisade-im/palisade/storage/sqlite"
)

// Records returns every record of the journal at path.
func Records(path string) ([]storage.JournalRecord, error) {
	ctx := context.Background()
	j, err := sqlite.OpenJournalReadOnly(ctx, path)
	if err != nil {
		return nil, err
	}
	defer j.Close()
	var out []storage.JournalRecord
	err = j.Records(ctx, 0, 1<<62, func(r storage.JournalRecord) error {
		out = append(out, r)
		return nil
	})
	return out, err
}

// Count returns how many records of the journal at path match keep.
func Count(path string, keep func(storage.JournalRecord) bool) (int, error) {
	rs, err := Records(path)
	n := 0
	for _, r := range rs {
		if keep(r) {
			n++
		}
	}
	return n, err
}

// Find returns the first record whose data contains s.
func Find(path, s string) (int64, error) {
	rs, err := Records(path)
	if err != nil {
		return 0, err
	}
	for _, r := range rs {
		if bytes.Contains(r.Data, []byte(s)) {
			return r.Seq, nil
		}
	}
	return 0, fmt.Errorf("journaltest: no record of %s holds %q", path, s)
}

// locate finds record seq in the record log of a journal that has no
// legacy records.
func locate(path string, seq int64) (recordlog.Location, error) {
	l, err := recordlog.Open(sqlite.JournalRecordsDir(path), 0, true)
	if err != nil {
		return recordlog.Location{}, err
	}
	defer l.Close()
	return l.Locate(seq)
}

// Replace replaces old by new (of the same length) in the stored data of
// record seq, in place.
func Replace(path string, seq int64, old, new string) error {
	if len(old) != len(new) {
		return fmt.Errorf("journaltest: %q and %q differ in length", old, new)
	}
	loc, err := locate(path, seq)
	if err != nil {
		return err
	}
	return edit(loc.Path, func(b []byte) error {
		data := b[loc.DataOff : loc.DataOff+loc.DataLen]
		i := bytes.Index(data, []byte(old))
		if i < 0 {
			return fmt.Errorf("journaltest: record %d does not hold %q", seq, old)
		}
		copy(data[i:], new)
		return nil
	})
}

// ForgePurge clears record seq's data and marks it purged by record by, in
// place, as a purge would but without one.
func ForgePurge(path string, seq, by int64) error {
	loc, err := locate(path, seq)
	if err != nil {
		return err
	}
	return edit(loc.Path, func(b []byte) error {
		binary.LittleEndian.PutUint64(b[loc.RecordOff+8:], uint64(by))
		clear(b[loc.DataOff : loc.DataOff+loc.DataLen])
		return nil
	})
}

// Cut removes the records from seq on; seq must start a frame of the log
// (each Append of one record outside group commit makes one).
func Cut(path string, seq int64) error {
	loc, err := locate(path, seq)
	if err != nil {
		return err
	}
	if loc.FirstInFrame != seq {
		return fmt.Errorf("journaltest: record %d does not start a frame", seq)
	}
	return os.Truncate(loc.Path, loc.FrameOff)
}

// edit changes file's bytes in place with fn.
func edit(file string, fn func([]byte) error) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	if err := fn(b); err != nil {
		return err
	}
	return os.WriteFile(file, b, 0o600)
}
