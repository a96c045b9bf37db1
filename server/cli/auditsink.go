package cli

import (
	"errors"
	"fmt"
	"io"
	"log/syslog"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"github.com/palisade-im/palisade/server/config"
	"go.uber.org/zap/zapcore"
)

// Audit sinks: besides stderr, which always has every line, the audit
// events (loggers "audit" and "audit.*") may also go to a file rotated by
// size ([log] audit_file) and to syslog ([log] audit_syslog).

// auditFileMode is the mode of the audit file and its rotated copies.
const auditFileMode = 0o600

// rotatingFile appends whole writes (one log line each: zap hands every
// entry to one Write) to a file, and renames it path.1 (path.1 to path.2,
// ...; the oldest past keep is removed) before a write that would take it
// past max bytes. A write is never split across two files, and when a
// rename or the new file fails the line goes to the file still open, so
// none is lost. Safe for concurrent use.
type rotatingFile struct {
	path string
	max  int64 // 0: never rotate
	keep int

	mu   sync.Mutex
	f    *os.File
	size int64
	// failed is the last rotation error, reported once by Write.
	failed error
}

// openRotatingFile opens (creates, mode 0600) path for appending.
func openRotatingFile(path string, maxBytes int64, keep int) (*rotatingFile, error) {
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("audit file: %w", err)
		}
	}
	r := &rotatingFile{path: path, max: maxBytes, keep: keep}
	if err := r.open(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *rotatingFile) open() error {
	f, err := os.OpenFile(r.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, auditFileMode)
	if err != nil {
		return fmt.Errorf("audit file: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return fmt.Errorf("audit file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		_ = f.Close()
		return fmt.Errorf("audit file %s: not a regular file", r.path)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		// An existing file others could read: narrow it.
		if err := f.Chmod(auditFileMode); err != nil {
			_ = f.Close()
			return fmt.Errorf("audit file: %w", err)
		}
	}
	r.f, r.size = f, fi.Size()
	return nil
}

// Write implements io.Writer.
func (r *rotatingFile) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f == nil {
		return 0, errors.New("audit file: closed")
	}
	if r.max > 0 && r.size > 0 && r.size+int64(len(p)) > r.max {
		r.failed = r.rotate()
	}
	n, err := r.f.Write(p)
	r.size += int64(n)
	if err == nil && r.failed != nil {
		// The line is written; say once that rotation failed.
		err, r.failed = r.failed, nil
		return n, err
	}
	return n, err
}

// rotate shifts the rotated files up by one, renames the current file to
// path.1 and opens a new one. On error the file open before stays open
// (under whatever name it has now), so the next lines still land.
func (r *rotatingFile) rotate() error {
	if err := r.f.Sync(); err != nil {
		return fmt.Errorf("audit file rotation: %w", err)
	}
	name := func(i int) string { return r.path + "." + strconv.Itoa(i) }
	if err := os.Remove(name(r.keep)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("audit file rotation: %w", err)
	}
	for i := r.keep - 1; i >= 1; i-- {
		if err := os.Rename(name(i), name(i+1)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("audit file rotation: %w", err)
		}
	}
	if err := os.Rename(r.path, name(1)); err != nil {
		return fmt.Errorf("audit file rotation: %w", err)
	}
	old := r.f
	if err := r.open(); err != nil {
		r.f = old // now path.1: lines still land
		return err
	}
	_ = old.Close()
	return nil
}

// Sync implements zapcore.WriteSyncer.
func (r *rotatingFile) Sync() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f == nil {
		return nil
	}
	return r.f.Sync()
}

// Close syncs and closes the file.
func (r *rotatingFile) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f == nil {
		return nil
	}
	err := errors.Join(r.f.Sync(), r.f.Close())
	r.f = nil
	return err
}

// syslogWriter sends each write (one audit line) as one syslog message.
type syslogWriter struct{ w *syslog.Writer }

func (s syslogWriter) Write(p []byte) (int, error) {
	// log/syslog redials once on a failed write; the line is then lost
	// to syslog only (stderr and the file have it).
	if _, err := s.w.Write(p); err != nil {
		return 0, fmt.Errorf("audit syslog: %w", err)
	}
	return len(p), nil
}

func (s syslogWriter) Sync() error { return nil }

// dialAuditSyslog connects to the syslog v names (see config.Log).
func dialAuditSyslog(v string) (*syslog.Writer, error) {
	network, addr := "", ""
	if v != "local" {
		u, err := url.Parse(v)
		if err != nil {
			return nil, fmt.Errorf("log.audit_syslog %q: %w", v, err)
		}
		network, addr = u.Scheme, u.Host
		if u.Scheme == "unix" || u.Scheme == "unixgram" {
			addr = u.Path
		}
	}
	w, err := syslog.Dial(network, addr, syslog.LOG_AUTHPRIV|syslog.LOG_INFO, "palisade-audit")
	if err != nil {
		return nil, fmt.Errorf("log.audit_syslog %q: %w", v, err)
	}
	return w, nil
}

// auditSinks are the extra destinations of audit events.
type auditSinks struct {
	cores   []zapcore.Core
	closers []io.Closer
}

// Close closes the sinks.
func (a *auditSinks) Close() error {
	var errs []error
	for _, c := range a.closers {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

// openAuditSinks opens the sinks c names, as cores writing with enc (each
// gets its own clone). rotate false never rotates the file (a short-lived
// command appends beside the running server, which rotates).
func openAuditSinks(c config.Log, enc zapcore.Encoder, rotate bool) (*auditSinks, error) {
	s := &auditSinks{}
	if c.AuditFile != "" {
		max := int64(c.AuditFileMaxMB) << 20
		if !rotate {
			max = 0
		}
		f, err := openRotatingFile(c.AuditFile, max, max1(c.AuditFileKeep))
		if err != nil {
			return nil, fmt.Errorf("log.audit_file: %w", err)
		}
		s.closers = append(s.closers, f)
		s.cores = append(s.cores, zapcore.NewCore(enc.Clone(), f, zapcore.InfoLevel))
	}
	if c.AuditSyslog != "" {
		w, err := dialAuditSyslog(c.AuditSyslog)
		if err != nil {
			_ = s.Close()
			return nil, err
		}
		s.closers = append(s.closers, w)
		s.cores = append(s.cores, zapcore.NewCore(enc.Clone(), syslogWriter{w}, zapcore.InfoLevel))
	}
	return s, nil
}

func max1(n int) int {
	if n < 1 {
		return 1
	}
	return n
}

// auditOnly passes on the audit events (loggers "audit", "audit.*") only.
type auditOnly struct{ zapcore.Core }

func (c auditOnly) With(fields []zapcore.Field) zapcore.Core {
	return auditOnly{c.Core.With(fields)}
}

func (c auditOnly) Check(ent zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if !isAudit(ent.LoggerName) {
		return ce
	}
	return c.Core.Check(ent, ce)
}

func (c auditOnly) Write(ent zapcore.Entry, fields []zapcore.Field) error {
	if !isAudit(ent.LoggerName) {
		return nil
	}
	return c.Core.Write(ent, fields)
}
