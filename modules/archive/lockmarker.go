package archive

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/palisade-im/palisade/server/config"
	"github.com/palisade-im/palisade/storage"
	"github.com/palisade-im/palisade/storage/sqlite"
	"golang.org/x/mod/sumdb/tlog"
)

// The lock marker: a journal's locked retention policies and active legal
// holds bind for as long as its data exists, so they are also remembered
// outside it, in data_dir/archive-locks.json. Start-up and check-config
// (CheckLockBinding) refuse a configuration that turns the archive off, or
// points journal_file at another journal, while the marker (or a journal
// at the default path) holds a lock or a hold. The server rewrites the
// marker at start and whenever a lock or hold is recorded or a hold is
// released (RefreshLockMarker).

// LockMarkerFile is the marker's name in server.data_dir.
const LockMarkerFile = "archive-locks.json"

// lockMarkerVersion is the marker's format version.
const lockMarkerVersion = 1

// LockMarker is the content of the marker file.
type LockMarker struct {
	Version int `json:"version"`
	// Journal is the journal file's absolute path.
	Journal string `json:"journal"`
	// JournalID identifies the journal: the hex leaf hash of its first
	// record ("" for an empty journal). A journal's first record never
	// changes (a purge keeps the leaf hashes), so a file with another is
	// another journal.
	JournalID string `json:"journal_id"`
	// Size is the journal's tree size when the marker was written: a
	// journal of the same identity but fewer records is an older copy.
	Size int64 `json:"size"`
	// LastRecord is the time of the journal's newest record then.
	LastRecord time.Time `json:"last_record"`
	// Updated is when the marker was written.
	Updated time.Time `json:"updated"`
	// Policies are the locked retention policies the journal recorded.
	Policies []MarkedPolicy `json:"locked_policies"`
	// Holds are the legal holds active then.
	Holds []MarkedHold `json:"active_holds"`
}

// MarkedPolicy is a locked policy in the marker.
type MarkedPolicy struct {
	Name     string `json:"name"`
	Scope    string `json:"scope"`
	KeepDays int    `json:"keep_days"`
	// Until is the earliest day the policy can stop binding: the newest
	// record then plus keep_days.
	Until time.Time `json:"until"`
}

// MarkedHold is an active legal hold in the marker.
type MarkedHold struct {
	Name       string    `json:"name"`
	Custodians []string  `json:"custodians"`
	PlacedBy   string    `json:"placed_by"`
	PlacedAt   time.Time `json:"placed_at"`
}

// BindError is a configuration that would leave a journal holding locked
// retention policies or legal holds: the archive turned off, or pointed at
// another journal. Start-up and check-config refuse it (exit 2).
type BindError struct{ Msg string }

func (e *BindError) Error() string { return e.Msg }

// LockMarkerPath is the marker file of cfg's data directory.
func LockMarkerPath(cfg *config.Config) string {
	return filepath.Join(cfg.Server.DataDir, LockMarkerFile)
}

// ReadLockMarker reads the marker at path; nil, nil when there is none.
func ReadLockMarker(path string) (*LockMarker, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("archive: lock marker: %w", err)
	}
	var m LockMarker
	if err := json.Unmarshal(b, &m); err != nil || m.Version != lockMarkerVersion || m.Journal == "" {
		if err == nil {
			err = fmt.Errorf("version %d, journal %q", m.Version, m.Journal)
		}
		return nil, fmt.Errorf("archive: lock marker %s is damaged (%v)", path, err)
	}
	return &m, nil
}

// markerProblem explains a marker that cannot be read.
func markerProblem(err error) string {
	return err.Error() + " (it remembers the journal's locked retention policies and legal holds: run as the server's user, or restore it)"
}

// writeLockMarker writes m to path atomically, mode 0600.
func writeLockMarker(path string, m *LockMarker) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("archive: lock marker: %w", err)
	}
	f, err := os.CreateTemp(dir, ".archive-locks-*")
	if err != nil {
		return fmt.Errorf("archive: lock marker: %w", err)
	}
	_, werr := f.Write(append(b, '\n'))
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr, os.Chmod(f.Name(), 0o600), os.Rename(f.Name(), path)); err != nil {
		_ = os.Remove(f.Name())
		return fmt.Errorf("archive: lock marker %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}

// journalState is what the marker remembers of a journal, read from it.
func journalState(ctx context.Context, path string, j storage.Journal, r storage.Retention) (*LockMarker, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	m := &LockMarker{Version: lockMarkerVersion, Journal: abs, Policies: []MarkedPolicy{}, Holds: []MarkedHold{}}
	head, err := j.TreeHead(ctx)
	if err != nil {
		return nil, err
	}
	m.Size = head.Size
	if head.Size > 0 {
		h, err := j.ReadHashes(ctx, []int64{tlog.StoredHashIndex(0, 0)})
		if err != nil {
			return nil, fmt.Errorf("archive: journal %s: first record: %w", path, err)
		}
		m.JournalID = hex.EncodeToString(h[0][:])
		err = j.Records(ctx, head.Size-1, head.Size, func(rec storage.JournalRecord) error {
			m.LastRecord = rec.Time.UTC()
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("archive: journal %s: last record: %w", path, err)
		}
	}
	locked, err := r.LockedPolicies(ctx)
	if err != nil {
		return nil, err
	}
	for _, p := range locked {
		last := m.LastRecord
		if last.IsZero() {
			last = p.Recorded
		}
		m.Policies = append(m.Policies, MarkedPolicy{Name: p.Name, Scope: scopeText(p.Scope, p.Targets), KeepDays: p.KeepDays,
			Until: last.UTC().Add(time.Duration(p.KeepDays) * 24 * time.Hour)})
	}
	holds, err := r.Holds(ctx)
	if err != nil {
		return nil, err
	}
	for _, h := range holds {
		if h.Active() {
			m.Holds = append(m.Holds, MarkedHold{Name: h.Name, Custodians: slices.Clone(h.Custodians), PlacedBy: h.PlacedBy, PlacedAt: h.PlacedAt.UTC()})
		}
	}
	return m, nil
}

func (m *LockMarker) binds() bool { return len(m.Policies) > 0 || len(m.Holds) > 0 }

// RefreshLockMarker rewrites cfg's lock marker from the open journal j at
// path (locks and holds from r). It writes nothing when there is no marker
// and the journal holds no lock or active hold. It refuses (a *BindError)
// to replace a marker that names another journal: the server was pointed
// away from a journal that holds locks.
func RefreshLockMarker(ctx context.Context, cfg *config.Config, path string, j storage.Journal, r storage.Retention) error {
	mpath := LockMarkerPath(cfg)
	old, err := ReadLockMarker(mpath)
	if err != nil {
		return &BindError{Msg: markerProblem(err)}
	}
	cur, err := journalState(ctx, path, j, r)
	if err != nil {
		return err
	}
	if old == nil && !cur.binds() {
		return nil
	}
	if old != nil && old.binds() && old.JournalID != "" && (old.JournalID != cur.JournalID || cur.Size < old.Size) {
		return &BindError{Msg: fmt.Sprintf("archive: the journal %s (first record %.16s, %d records) is not the journal that holds %s (%s: first record %.16s, %d records; lock marker %s)",
			cur.Journal, cur.JournalID, cur.Size, old.what(), old.Journal, old.JournalID, old.Size, mpath)}
	}
	cur.Updated = time.Now().UTC()
	return writeLockMarker(mpath, cur)
}

// what names the marker's policies and holds, e.g. `locked retention
// policy "finra" (keep_days 2190, until at least 2032-12-06)`.
func (m *LockMarker) what() string {
	var parts []string
	for _, p := range m.Policies {
		parts = append(parts, policyText(p))
	}
	for _, h := range m.Holds {
		parts = append(parts, holdText(h))
	}
	s := ""
	for i, p := range parts {
		if i > 0 {
			s += ", "
		}
		s += p
	}
	return s
}

func policyText(p MarkedPolicy) string {
	return fmt.Sprintf("locked retention policy %q (%s, keep_days %d, until at least %s)", p.Name, p.Scope, p.KeepDays, p.Until.Format(time.DateOnly))
}

func holdText(h MarkedHold) string {
	return fmt.Sprintf("active legal hold %q (placed %s by %s, until `palisade archive hold release`)", h.Name, h.PlacedAt.Format(time.DateOnly), h.PlacedBy)
}

// readJournalState opens the journal at path read-only and reads its
// state; nil, nil when there is no file.
func readJournalState(ctx context.Context, path string) (*LockMarker, error) {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	j, err := sqlite.OpenJournalReadOnly(ctx, path)
	if err != nil {
		return nil, err
	}
	defer j.Close()
	return journalState(ctx, path, j, j)
}

// samePath tells whether a and b name the same file: equal absolute paths,
// or both exist and are the same file.
func samePath(a, b string) bool {
	aa, err1 := filepath.Abs(a)
	bb, err2 := filepath.Abs(b)
	if err1 == nil && err2 == nil && aa == bb {
		return true
	}
	fa, err1 := os.Stat(a)
	fb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(fa, fb)
}

// CheckLockBinding refuses (a *BindError, each problem named) a
// configuration that leaves a journal holding locked retention policies or
// active legal holds: the lock marker's journal, and a journal at the
// default path data_dir/journal.db. The archive must stay on and use that
// journal: the same file, or a move of it (the configured file has the
// same first record and at least as many records, and the old file is
// gone or no longer than it). The note says what was checked.
func CheckLockBinding(ctx context.Context, cfg *config.Config) (note string, err error) {
	mpath := LockMarkerPath(cfg)
	marker, err := ReadLockMarker(mpath)
	if err != nil {
		return "", &BindError{Msg: markerProblem(err)}
	}
	type candidate struct {
		path   string
		marker *LockMarker // nil: found at the default path
	}
	var cands []candidate
	if marker != nil {
		cands = append(cands, candidate{marker.Journal, marker})
	}
	def := filepath.Join(cfg.Server.DataDir, "journal.db")
	if marker == nil || !samePath(def, marker.Journal) {
		cands = append(cands, candidate{path: def})
	}
	conf := Paths(cfg).Journal
	var confState *LockMarker
	var confErr error
	if cfg.Archive.Enabled {
		confState, confErr = readJournalState(ctx, conf)
	}
	var errs []error
	checked := 0
	for _, c := range cands {
		state, rerr := readJournalState(ctx, c.path)
		b := state
		if b == nil {
			b = c.marker
		}
		if rerr != nil && c.marker == nil {
			// A file at the default path this build cannot read: no
			// knowledge of locks in it.
			note += fmt.Sprintf("%-17s could not read %s (%v)\n", "lock binding:", c.path, rerr)
			continue
		}
		if b == nil || !b.binds() {
			continue
		}
		checked++
		if !cfg.Archive.Enabled {
			for _, p := range b.Policies {
				errs = append(errs, &BindError{Msg: fmt.Sprintf("archive.enabled = false: the journal %s holds %s", c.path, policyText(p))})
			}
			for _, h := range b.Holds {
				errs = append(errs, &BindError{Msg: fmt.Sprintf("archive.enabled = false: the journal %s holds %s", c.path, holdText(h))})
			}
			continue
		}
		if !samePath(c.path, conf) {
			// Moved? The configured file must be the same journal, no
			// shorter than the marker and the old file.
			minSize := b.Size
			if state != nil {
				minSize = max(minSize, state.Size)
			}
			if confErr == nil && confState != nil && b.JournalID != "" && confState.JournalID == b.JournalID && confState.Size >= minSize {
				note += fmt.Sprintf("%-17s the journal moved from %s to %s\n", "lock binding:", c.path, conf)
				continue
			}
			why := "is another journal"
			switch {
			case confErr != nil:
				why = fmt.Sprintf("cannot be read (%v)", confErr)
			case confState == nil:
				why = "does not exist"
			case confState.JournalID == b.JournalID:
				why = "is an older copy of it"
			}
			for _, p := range b.Policies {
				errs = append(errs, &BindError{Msg: fmt.Sprintf("archive.journal_file = %q: the journal %s holds %s; %s %s", cfg.Archive.JournalFile, c.path, policyText(p), conf, why)})
			}
			for _, h := range b.Holds {
				errs = append(errs, &BindError{Msg: fmt.Sprintf("archive.journal_file = %q: the journal %s holds %s; %s %s", cfg.Archive.JournalFile, c.path, holdText(h), conf, why)})
			}
			continue
		}
		// The configured journal: it must be the marker's.
		if c.marker == nil || c.marker.JournalID == "" {
			continue
		}
		why := ""
		switch {
		case rerr != nil:
			// E.g. an older schema that start-up migrates: the server
			// checks its identity once open (RefreshLockMarker).
			note += fmt.Sprintf("%-17s could not read %s (%v): start-up checks it\n", "lock binding:", c.path, rerr)
			continue
		case state == nil:
			why = "is missing"
		case state.JournalID != c.marker.JournalID:
			why = fmt.Sprintf("is another journal (first record %.16s, the marker's %.16s)", state.JournalID, c.marker.JournalID)
		case state.Size < c.marker.Size:
			why = fmt.Sprintf("is an older copy (%d records, the marker saw %d)", state.Size, c.marker.Size)
		}
		if why == "" {
			continue
		}
		for _, p := range c.marker.Policies {
			errs = append(errs, &BindError{Msg: fmt.Sprintf("the journal %s %s, but it holds %s (lock marker %s)", c.path, why, policyText(p), mpath)})
		}
		for _, h := range c.marker.Holds {
			errs = append(errs, &BindError{Msg: fmt.Sprintf("the journal %s %s, but it holds %s (lock marker %s)", c.path, why, holdText(h), mpath)})
		}
	}
	if err := errors.Join(errs...); err != nil {
		return note, &BindError{Msg: err.Error()}
	}
	if checked > 0 {
		note += fmt.Sprintf("%-17s %s: the archive keeps the journal holding locks\n", "lock binding:", mpath)
	}
	return note, nil
}
